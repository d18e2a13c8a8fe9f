"""TailBlend: the adaptive budget's formal stage, ``O + f·(mean(V) − O)`` per output element.

Bit-exact with :func:`spec.numerics.tail_blend` (``TAIL_BLEND_ROUND``; docs/numerics.md,
"Tail blend"). With ``adapt_bins > 0`` the on-chip core (:class:`hw.top.SofaCore`) puts one
behind every lane's SU-FA: the lane's :class:`hw.adapt.AdaptiveGate` sends one ``f`` a row (the
row's dropped mass predicted from its histogram, UQ0.``TAIL_FRAC``) into this unit's ``f``
FIFO, and SU-FA's ``O`` stream passes through, each element ``e`` moved towards the head's
mean V row ``vbar[e]`` by the ``f`` of its row; the row's ``f`` is taken from the FIFO with its
last element. With :py:`en` low no ``f`` is taken and every element passes unchanged.

Two registered stages, stalled as a whole when :py:`o` is not ready: (1) the element, its
``vbar[e] − O`` and ``f``; (2) ``O + ((f·(vbar[e] − O) + 2^(TAIL_FRAC−1)) >> TAIL_FRAC)``.
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.sufa import out_layout
from spec.numerics import TAIL_FRAC


__all__ = ["TailBlend", "vbar_layout", "TAIL_LATENCY", "TAIL_FIFO_DEPTH"]

#: Cycles from an accepted element to its blended element on :py:`o` (no backpressure).
TAIL_LATENCY = 2
#: Rows whose ``f`` may wait for their output (the gate runs at most a row or two ahead).
TAIL_FIFO_DEPTH = 4


def vbar_layout(cfg):
    """The head's mean V row: ``d`` signed ``out_width``-bit elements, ``out_frac`` fraction
    bits (:func:`spec.numerics.tail_mean`)."""
    return data.ArrayLayout(signed(cfg.derived.out_width), cfg.d)


class TailBlend(wiring.Component):
    """The tail blend of one lane (see the module docstring).

    Attributes
    ----------
    f : In(stream.Signature(TAIL_FRAC))
        One ``f`` a row, in row order (buffered, :data:`TAIL_FIFO_DEPTH` rows).
    i : In(stream.Signature(out_layout(cfg)))
        SU-FA's ``O``, ``d`` elements a row (``first``/``last``).
    o : Out(stream.Signature(out_layout(cfg)))
        The blended elements, in order, with the same ``first``/``last``.
    vbar : In(vbar_layout(cfg))
        The head's mean V row; stable while a row is in the unit.
    en : In(1)
        The blend is on (the gate sends an ``f`` for every row); stable while rows are in
        flight.
    latency : int
        :data:`TAIL_LATENCY`.
    ii : int
        1: an element a cycle.

    Cost: one ``(TAIL_FRAC + 1) × (out_width + 1)``-bit signed multiplier, two adders of
    ``out_width + 1`` bits, a ``d``-way ``out_width``-bit multiplexer for ``vbar[e]``, about
    ``3·out_width + TAIL_FRAC + 16`` flip-flops and a ``TAIL_FIFO_DEPTH × TAIL_FRAC`` FIFO.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "f": In(stream.Signature(TAIL_FRAC)),
            "i": In(stream.Signature(out_layout(cfg))),
            "o": Out(stream.Signature(out_layout(cfg))),
            "vbar": In(vbar_layout(cfg)),
            "en": In(1),
        })

    @property
    def latency(self):
        return TAIL_LATENCY

    @property
    def ii(self):
        return 1

    def elaborate(self, platform):
        cfg = self._cfg
        ow = cfg.derived.out_width
        m = Module()
        m.submodules.fq = fq = fifo.SyncFIFOBuffered(width=TAIL_FRAC, depth=TAIL_FIFO_DEPTH)
        m.d.comb += [fq.w_data.eq(self.f.payload), fq.w_en.eq(self.f.valid),
                     self.f.ready.eq(fq.w_rdy)]

        e = Signal(range(cfg.d))                   # element of the row at the input
        adv = Signal()                             # the pipeline moves
        f_ok = Signal()                            # the row's f is there (or not needed)
        take = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready),
                     f_ok.eq(~self.en | fq.r_rdy),
                     self.i.ready.eq(adv & f_ok),
                     take.eq(self.i.valid & self.i.ready),
                     fq.r_en.eq(take & self.en & self.i.payload.last)]
        with m.If(take):
            m.d.sync += e.eq(Mux(self.i.payload.last, 0, e + 1))

        # Stage 1: the element, vbar[e] − O and f.
        s_valid = Signal()
        s_value = Signal(signed(ow))
        s_first = Signal()
        s_last = Signal()
        s_diff = Signal(signed(ow + 1))
        s_f = Signal(TAIL_FRAC)
        vbar = Array(self.vbar[k] for k in range(cfg.d))
        value = self.i.payload.value
        # Stage 2: O + ((f·(vbar − O) + 2^(F−1)) >> F), between O and vbar, so out_width bits.
        prod = Signal(signed(ow + 1 + TAIL_FRAC + 1))
        m.d.comb += prod.eq(s_f * s_diff + (1 << (TAIL_FRAC - 1)))
        with m.If(adv):
            m.d.sync += [s_valid.eq(take), s_value.eq(value),
                         s_first.eq(self.i.payload.first), s_last.eq(self.i.payload.last),
                         s_diff.eq(vbar[e] - value),
                         s_f.eq(Mux(self.en, fq.r_data, 0)),
                         self.o.valid.eq(s_valid),
                         self.o.payload.value.eq(s_value + (prod >> TAIL_FRAC)),
                         self.o.payload.first.eq(s_first),
                         self.o.payload.last.eq(s_last)]
        return m
