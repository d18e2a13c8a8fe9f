"""Gearbox: a stream of words of one width into words of another, one dividing the other."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spec.config import ConfigError


__all__ = ["Gearbox"]


class Gearbox(wiring.Component):
    """``i`` words of ``in_bits`` into ``o`` words of ``out_bits``, in order, the first piece
    in the low bits: a wide input word leaves as ``in_bits / out_bits`` narrow ones, a wide
    output word is gathered from ``out_bits / in_bits`` narrow ones.

    Parameters
    ----------
    in_bits, out_bits : int
        One divides the other.

    Attributes
    ----------
    i : In(stream.Signature(in_bits))
    o : Out(stream.Signature(out_bits))
    ii : int
        Cycles a word in steady traffic: ``max(1, out_bits / in_bits)`` per output word when
        gathering, one output word a cycle when splitting.
    """

    def __init__(self, in_bits, out_bits):
        if in_bits % out_bits and out_bits % in_bits:
            raise ConfigError(f"Gearbox: {in_bits} and {out_bits} bits: one must divide the "
                              f"other")
        self.in_bits, self.out_bits = in_bits, out_bits
        super().__init__({"i": In(stream.Signature(in_bits)),
                          "o": Out(stream.Signature(out_bits))})

    @property
    def ii(self):
        return max(1, self.out_bits // self.in_bits)

    def elaborate(self, platform):
        m = Module()
        I, O = self.in_bits, self.out_bits
        i, o = self.i, self.o
        if I == O:
            wiring.connect(m, wiring.flipped(i), wiring.flipped(o))
            return m
        if O > I:                                  # gather n input words
            n = O // I
            buf = Signal(O)
            count = Signal(range(n))
            m.d.comb += [i.ready.eq(~o.valid | o.ready), o.payload.eq(buf)]
            with m.If(o.valid & o.ready):
                m.d.sync += o.valid.eq(0)
            with m.If(i.valid & i.ready):
                m.d.sync += [buf.eq(Cat(buf[I:], i.payload)),
                             count.eq(Mux(count == n - 1, 0, count + 1))]
                with m.If(count == n - 1):
                    m.d.sync += o.valid.eq(1)
            return m
        n = I // O                                 # split an input word into n
        buf = Signal(I)
        held = Signal()
        index = Signal(range(n))
        end = index == n - 1
        m.d.comb += [o.valid.eq(held), o.payload.eq(buf.word_select(index, O)),
                     i.ready.eq(~held | (o.ready & end))]
        with m.If(o.valid & o.ready):
            m.d.sync += index.eq(index + 1)
            with m.If(end):
                m.d.sync += [held.eq(0), index.eq(0)]
        with m.If(i.valid & i.ready):
            m.d.sync += [buf.eq(i.payload), held.eq(1), index.eq(0)]
        return m
