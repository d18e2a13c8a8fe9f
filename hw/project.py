"""ProjectionUnit: on-demand K/V's exact rows, ``K_j`` and ``V_j`` of one token row ``x_j``.

Bit-exact with :func:`sim.ondemand.project_rows` (docs/numerics.md, "On-demand K/V"): for each
output column ``c`` of K (then of V), ``acc = Σ_m x[m]·W[c, m] + b[c]`` with int8 ``x`` and
``W`` and an int32 bias, then ``clamp((acc·mult + 2^(rshift−1)) >> rshift, ±127)``
(``PROJ_ROUND``, ``PROJ_SAT``).

The array has ``macs`` multipliers; they take ``macs`` output columns at a time and one element
``x[m]`` a cycle (broadcast to all of them), so a row's ``2·d`` columns take ``2·d·d_model /
macs`` cycles, the weights being read one word of ``macs`` weights a cycle from an on-chip
memory at consecutive addresses. One row is in the unit at a time.

The weights are loaded on :py:`w` in the order they are stored in memory (spec.job: ``W_kᵀ``
then ``W_vᵀ``, row ``m`` of ``d`` bytes, ``macs`` bytes a word) and the biases on :py:`bias`
(``b_k`` then ``b_v``), both only while no row is in the unit; rows wait until both sets are
complete.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.config import ConfigError
from spec.job import PROJ_MULT_BITS, PROJ_RSHIFT_MAX
from spec.validate import check_int


__all__ = ["ProjectionUnit"]

#: Token and weight elements are int8; the projected rows too (``PROJ_SAT``).
ELEM = 8
#: Pipeline stages after a weight read: product, accumulate, bias, requantise, saturate.
STAGES = 6


class ProjectionUnit(wiring.Component):
    """The exact K and V rows of each X row (see the module docstring).

    Parameters
    ----------
    d : int
        Head dimension (columns of K and of V).
    d_model : int
        Elements of an X row.
    macs : int
        Multipliers; divides ``d``.
    tag_width : int
        Bits of a tag carried from a row to its result (the engine's ring slot and position).

    Attributes
    ----------
    w : In(stream.Signature(ArrayLayout(signed(8), macs)))
        The weights, ``2·d·d_model / macs`` words: word ``n`` holds ``W[c0 + i, m]`` for
        ``i < macs``, with ``(m, c0)`` the ``n``-th pair of ``W_kᵀ`` then ``W_vᵀ`` in
        row-major order (``c0`` a multiple of ``macs``).
    bias : In(stream.Signature(signed(32)))
        ``b_k[0 … d)`` then ``b_v[0 … d)``.
    x : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), d_model), "tag": tag_width})))
    o : Out(stream.Signature(StructLayout({"k": ArrayLayout(signed(8), d), "v": …, "tag": …})))
    k_mult, v_mult : In(16)
    k_rshift, v_rshift : In(range(PROJ_RSHIFT_MAX + 1))
        The requantisations (registers K_MULT …); stable while a row is in the unit.
    busy : Out(1)
        A row is in the unit (or its result waits on :py:`o`).
    cycles : int
        Cycles of the multiply loop a row: ``2·d·d_model / macs``.
    latency : int
        Cycles from a row's acceptance to its result on :py:`o`: ``cycles + STAGES + 1``.
    ii : int
        Cycles from one row's acceptance to the next's at full rate: ``latency + 1``.
    """

    def __init__(self, d, d_model, macs, tag_width=1):
        for name, value in (("d", d), ("d_model", d_model), ("macs", macs),
                            ("tag_width", tag_width)):
            check_int(name, value, 1)
        if d % macs:
            raise ConfigError(f"proj_macs = {macs} must divide d = {d}")
        self.d, self.d_model, self.macs = d, d_model, macs
        self.groups = 2 * d // macs                 # column groups of K, then V
        self.words = self.groups * d_model
        self.acc_width = (d_model * 127 * 128).bit_length() + 1
        super().__init__({
            "w": In(stream.Signature(data.ArrayLayout(signed(ELEM), macs))),
            "bias": In(stream.Signature(signed(32))),
            "x": In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(ELEM), d_model), "tag": tag_width}))),
            "o": Out(stream.Signature(data.StructLayout({
                "k": data.ArrayLayout(signed(ELEM), d), "v": data.ArrayLayout(signed(ELEM), d),
                "tag": tag_width}))),
            "k_mult": In(PROJ_MULT_BITS), "v_mult": In(PROJ_MULT_BITS),
            "k_rshift": In(range(PROJ_RSHIFT_MAX + 1)),
            "v_rshift": In(range(PROJ_RSHIFT_MAX + 1)),
            "busy": Out(1),
        })

    @property
    def cycles(self):
        return self.words

    @property
    def latency(self):
        return self.words + STAGES + 1

    @property
    def ii(self):
        return self.latency + 1

    def elaborate(self, platform):
        m = Module()
        d, dm, pm, G = self.d, self.d_model, self.macs, self.groups
        half = G // 2                               # groups of K
        m.submodules.wmem = wmem = memory.Memory(
            shape=data.ArrayLayout(signed(ELEM), pm), depth=self.words, init=[])
        wr, rd = wmem.write_port(), wmem.read_port(domain="sync")
        bias = Signal(data.ArrayLayout(signed(32), 2 * d))

        # -- loading, while no row is inside; a new set may follow the rows of the last -------
        per_row = d // pm                           # words of a W row
        lm = Signal(range(dm))                      # the load word's element m
        lg = Signal(range(G))                       # ... and column group (V's after K's)
        lg_row = Signal(range(per_row))
        w_loaded, b_loaded = Signal(), Signal()
        b_count = Signal(range(2 * d))
        idle = Signal()
        w_take = self.w.valid & self.w.ready
        m.d.comb += [self.w.ready.eq(idle), self.bias.ready.eq(idle),
                     wr.addr.eq(lg * dm + lm), wr.data.eq(self.w.payload), wr.en.eq(w_take)]
        with m.If(w_take):
            m.d.sync += w_loaded.eq(0)
            with m.If(lg_row == per_row - 1):
                m.d.sync += lg_row.eq(0)
                with m.If(lm == dm - 1):
                    m.d.sync += lm.eq(0)
                    with m.If(lg == G - 1):              # the whole set
                        m.d.sync += [lg.eq(0), w_loaded.eq(1)]
                    with m.Else():                       # K done: V's groups
                        m.d.sync += lg.eq(lg + 1)
                with m.Else():
                    m.d.sync += [lm.eq(lm + 1), lg.eq(lg - (per_row - 1))]
            with m.Else():
                m.d.sync += [lg_row.eq(lg_row + 1), lg.eq(lg + 1)]
        with m.If(self.bias.valid & self.bias.ready):
            m.d.sync += b_loaded.eq(b_count == 2 * d - 1)
            m.d.sync += b_count.eq(Mux(b_count == 2 * d - 1, 0, b_count + 1))
            with m.Switch(b_count):
                for i in range(2 * d):
                    with m.Case(i):
                        m.d.sync += bias[i].eq(self.bias.payload)
        loaded = w_loaded & b_loaded & (lg_row == 0) & (lm == 0) & (lg == 0) & (b_count == 0)

        # -- a row: the multiply loop, then the pipeline drains into the output row ------------
        x_row = Signal(data.ArrayLayout(signed(ELEM), dm))
        tag = Signal(self.x.payload.tag.shape())
        addr = Signal(range(self.words))
        mi = Signal(range(dm))                      # the element of this cycle's read
        gi = Signal(range(G))
        running = Signal()
        out_valid = Signal()
        out = Signal(self.o.payload.shape())
        m.d.comb += [idle.eq(~running & ~out_valid),
                     self.x.ready.eq(idle & loaded),
                     self.busy.eq(~idle)]
        with m.If(self.x.valid & self.x.ready):
            m.d.sync += [x_row.eq(self.x.payload.data), tag.eq(self.x.payload.tag),
                         running.eq(1), addr.eq(0), mi.eq(0), gi.eq(0)]
        issue = Signal()
        last_issue = Signal()
        m.d.comb += [issue.eq(running & ~last_issue), rd.addr.eq(addr), rd.en.eq(1)]
        with m.If(issue):
            m.d.sync += addr.eq(addr + 1)
            with m.If(mi == dm - 1):
                m.d.sync += [mi.eq(0), gi.eq(gi + 1)]
                with m.If(gi == G - 1):
                    m.d.sync += last_issue.eq(1)
            with m.Else():
                m.d.sync += mi.eq(mi + 1)

        # stage 1: the weight word is read; the element beside it
        s1 = Signal(data.StructLayout({"valid": 1, "first": 1, "end": 1, "g": range(G),
                                       "x": signed(ELEM)}))
        m.d.sync += [s1.valid.eq(issue), s1.first.eq(mi == 0), s1.end.eq(mi == dm - 1),
                     s1.g.eq(gi), s1.x.eq(x_row[mi])]
        # stage 2: the products
        s2 = Signal(data.StructLayout({"valid": 1, "first": 1, "end": 1, "g": range(G)}))
        prod = [Signal(signed(2 * ELEM), name=f"prod{j}") for j in range(pm)]
        m.d.sync += [s2.valid.eq(s1.valid), s2.first.eq(s1.first), s2.end.eq(s1.end),
                     s2.g.eq(s1.g), *(prod[j].eq(s1.x * rd.data[j]) for j in range(pm))]
        # stage 3: accumulate over the row's elements
        acc = [Signal(signed(self.acc_width), name=f"acc{j}") for j in range(pm)]
        s3_end, s3_g = Signal(), Signal(range(G))
        with m.If(s2.valid):
            m.d.sync += [acc[j].eq(Mux(s2.first, 0, acc[j]) + prod[j]) for j in range(pm)]
        m.d.sync += [s3_end.eq(s2.valid & s2.end), s3_g.eq(s2.g)]
        # stage 4: the bias of each column of the group
        sw = max(self.acc_width, 32) + 1          # the sum with an int32 bias
        total = [Signal(signed(sw), name=f"total{j}") for j in range(pm)]
        s4_end, s4_g = Signal(), Signal(range(G))
        m.d.sync += [s4_end.eq(s3_end), s4_g.eq(s3_g)]
        for j in range(pm):
            b = Signal(signed(32), name=f"bias_sel{j}")
            with m.Switch(s3_g):
                for g in range(G):
                    with m.Case(g):
                        m.d.comb += b.eq(bias[g * pm + j])
            m.d.sync += total[j].eq(acc[j] + b)
        # stage 5: the requantisation's product and rounding constant
        is_v = s4_g >= half
        mult = Mux(is_v, self.v_mult, self.k_mult)
        rshift = Mux(is_v, self.v_rshift, self.k_rshift)
        pw = sw + PROJ_MULT_BITS + 1
        scaled = [Signal(signed(pw), name=f"scaled{j}") for j in range(pm)]
        s5_end, s5_g, s5_shift = Signal(), Signal(range(G)), Signal(range(PROJ_RSHIFT_MAX + 1))
        m.d.sync += [s5_end.eq(s4_end), s5_g.eq(s4_g), s5_shift.eq(rshift)]
        for j in range(pm):
            m.d.sync += scaled[j].eq(total[j] * mult + ((Const(1, 1) << rshift) >> 1))
        # stage 6: shift, saturate, into the output row
        top = (1 << (ELEM - 1)) - 1
        s6_end = Signal()
        m.d.sync += s6_end.eq(s5_end & (s5_g == G - 1))
        with m.If(s5_end):
            for j in range(pm):
                q = Signal(signed(pw), name=f"q{j}")
                m.d.comb += q.eq(scaled[j] >> s5_shift)
                sat = Mux(q > top, top, Mux(q < -top, -top, q))
                with m.Switch(s5_g):
                    for g in range(G):
                        col = g * pm + j
                        with m.Case(g):
                            if g < half:
                                m.d.sync += out.k[col].eq(sat)
                            else:
                                m.d.sync += out.v[col - d].eq(sat)
        with m.If(s6_end):
            m.d.sync += [out_valid.eq(1), running.eq(0), last_issue.eq(0)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += out_valid.eq(0)
        m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.k.eq(out.k),
                     self.o.payload.v.eq(out.v), self.o.payload.tag.eq(tag)]
        return m

