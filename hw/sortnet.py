"""SortNet: a compare-exchange network of :mod:`spec.sortnet` in hardware, pipelined.

The networks themselves (generation, pruning, layering) are data in :mod:`spec.sortnet`, shared
with the models; this unit turns one into comparators on unsigned keys (the larger key wins),
with a pipeline register every ``layers_per_stage`` layers, global-stall enable and an optional
held selection of one output rank in the last stage.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["SortNet"]


class SortNet(wiring.Component):
    """A :class:`spec.sortnet.Network` in hardware on unsigned keys (the larger key wins), pipelined.

    A pipeline register follows every ``layers_per_stage`` comparator layers and the last
    layer, so ``stages = ceil(depth / layers_per_stage)`` (at least 1); only wires still live
    at a register boundary are registered. A new input vector can enter on every cycle
    :py:`en` is high; every register (data, valid and tag) moves only when :py:`en` is high
    (global stall). Tie :py:`en` high for a free-running pipeline (the enable logic then
    disappears).

    With ``select=True`` the last stage also selects one output rank per vector, chosen by
    :py:`i_rank` on entry: the rank multiplexer sits in front of the last register, in
    parallel with the last comparator layer, so the selected key appears on :py:`o_sel` in
    the same cycle as :py:`o`. That register loads only for vectors that entered with
    :py:`i_valid` and :py:`i_sel_en` high, and holds its value otherwise: :py:`o_sel` is the
    selected rank of the most recent such vector (0 after reset).

    Parameters
    ----------
    network : spec.sortnet.Network
    key_width : int
        Bits of a key.
    tag_width : int
        Bits of a side tag that travels with each vector (0 for none).
    layers_per_stage : int
        Comparator layers between pipeline registers (``>= 1``).
    select : bool
        Add the held rank selection (:py:`i_rank`, :py:`i_sel_en`, :py:`o_sel`).

    Attributes
    ----------
    en : In(1)
        Pipeline advance.
    i_valid, i, i_tag : In
        Input vector (``network.inputs`` keys), sampled when :py:`en` is high.
    o_valid, o, o_tag : Out
        The ``network.keep`` best keys, best first, ``latency`` advancing cycles later.
    i_rank, i_sel_en : In (``select=True`` only)
        Output rank to select (``0 … keep-1``) and whether this vector updates :py:`o_sel`.
    o_sel : Out(key_width) (``select=True`` only)
        Rank ``i_rank`` of the most recent vector that entered with :py:`i_sel_en`; held.
    latency : int
        Cycles from input to output without stalls: ``stages``.
    ii : int
        1: a new vector every cycle.
    comparators, depth : int
        Comparator count and layer count of the network.
    """

    def __init__(self, network, key_width, *, tag_width=0, layers_per_stage=1, select=False):
        if layers_per_stage < 1:
            raise ValueError(f"layers_per_stage = {layers_per_stage} must be at least 1")
        self._net = network
        self._key_width = key_width
        self._tag_width = tag_width
        self._lps = layers_per_stage
        self._select = select
        sig = {
            "en": In(1),
            "i_valid": In(1),
            "i": In(data.ArrayLayout(key_width, network.inputs)),
            "o_valid": Out(1),
            "o": Out(data.ArrayLayout(key_width, network.keep)),
        }
        if tag_width:
            sig["i_tag"] = In(tag_width)
            sig["o_tag"] = Out(tag_width)
        if select:
            sig["i_rank"] = In(range(network.keep))
            sig["i_sel_en"] = In(1)
            sig["o_sel"] = Out(key_width)
        super().__init__(sig)

    @property
    def network(self):
        return self._net

    @property
    def comparators(self):
        return self._net.size

    @property
    def depth(self):
        return self._net.depth

    @property
    def stages(self):
        return max(1, -(-self._net.depth // self._lps))

    @property
    def latency(self):
        return self.stages

    @property
    def ii(self):
        return 1

    def boundaries(self):
        """Layers after which a register sits (the last is ``depth``, or 0 if empty)."""
        d = self._net.depth
        return [min(d, s * self._lps) for s in range(1, self.stages + 1)]

    def elaborate(self, platform):
        m = Module()
        net, W = self._net, self._key_width
        wires = {w: self.i[w] for w in range(net.inputs)}
        valid = self.i_valid
        tag = self.i_tag if self._tag_width else None
        rank, sel_en = (self.i_rank, self.i_sel_en) if self._select else (None, None)
        layers = net.layers()
        boundaries = self.boundaries()
        done = 0
        for stage, boundary in enumerate(boundaries):
            for layer in range(done, boundary):
                for c in layers[layer]:
                    a, b = wires[c.hi], wires[c.lo]
                    win = Signal(name=f"l{layer + 1}_{c.hi}_{c.lo}_win")
                    hi = Signal(W, name=f"l{layer + 1}_{c.hi}_hi")
                    lo = Signal(W, name=f"l{layer + 1}_{c.lo}_lo")
                    m.d.comb += [win.eq(a >= b), hi.eq(Mux(win, a, b)), lo.eq(Mux(win, b, a))]
                    wires[c.hi], wires[c.lo] = hi, lo
            done = boundary
            if rank is not None and stage == len(boundaries) - 1:
                # The held rank selection, registered together with the last stage.
                pick = Signal(W, name="sel_pick")
                with m.Switch(rank):
                    for r, w in enumerate(net.outputs):
                        with m.Case(r):
                            m.d.comb += pick.eq(wires[w])
                with m.If(self.en & valid & sel_en):
                    m.d.sync += self.o_sel.eq(pick)
            elif rank is not None:
                rank_r = Signal.like(rank, name=f"s{stage + 1}_rank")
                sel_en_r = Signal(name=f"s{stage + 1}_sel_en")
                with m.If(self.en):
                    m.d.sync += [rank_r.eq(rank), sel_en_r.eq(sel_en)]
                rank, sel_en = rank_r, sel_en_r
            regs = {}
            # no reset on the data: the valid bits qualify it, and the core's restart would
            # otherwise reach every stage register (a net of thousands of loads)
            for w in net.live_after(boundary):
                r = Signal(W, name=f"s{stage + 1}_w{w}", reset_less=True)
                with m.If(self.en):
                    m.d.sync += r.eq(wires[w])
                regs[w] = r
            wires = regs
            v = Signal(name=f"s{stage + 1}_valid")
            with m.If(self.en):
                m.d.sync += v.eq(valid)
            valid = v
            if tag is not None:
                t = Signal(self._tag_width, name=f"s{stage + 1}_tag", reset_less=True)
                with m.If(self.en):
                    m.d.sync += t.eq(tag)
                tag = t
        m.d.comb += self.o_valid.eq(valid)
        for r, w in enumerate(net.outputs):
            m.d.comb += self.o[r].eq(wires[w])
        if tag is not None:
            m.d.comb += self.o_tag.eq(tag)
        return m
