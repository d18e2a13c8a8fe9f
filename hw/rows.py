"""Rows to and from bus words: :class:`RowAssembler` (words read from memory -> one Q/K/V row)
and :class:`RowPacker` (O elements -> words written to memory)."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["RowAssembler", "RowPacker", "unpack_row"]


def unpack_row(raw, cfg, elem_bytes):
    """The ``d`` elements of a row from its raw memory bytes: element ``j`` is the low
    ``data_width`` bits of bytes ``j·elem_bytes …`` (little-endian, as :mod:`spec.job` lays
    them out). Wiring only."""
    return Cat(*(raw[8 * elem_bytes * j:8 * elem_bytes * j + cfg.data_width]
                 for j in range(cfg.d)))


class RowAssembler(wiring.Component):
    """Collects ``words`` consecutive bus words of a read into one row.

    A read command may cover several rows (a contiguous run); :py:`seq` numbers the rows of
    a command and :py:`last` marks its final row, so a consumer can place each row.

    Parameters
    ----------
    words : int
        Bus words per row.
    width : int
        Bits of a bus word.
    tag_shape : shape-castable or None
        The command's tag, passed on with each of its rows.

    Attributes
    ----------
    i : In(stream) of ``{data, tag, last}``
        Read beats, ``last`` on the command's final beat (as :class:`hw.axi.AxiReader` emits
        them).
    o : Out(stream) of ``{row, tag, seq, last}``
        One row; ``row`` is ``words·width`` bits, the first word in the low bits.
    latency : int
        1: a row is on :py:`o` the cycle after its last word was taken.
    ii : int
        ``words``: a row per ``words`` beats.
    """

    def __init__(self, words, width, tag_shape=None, *, max_rows=1 << 16):
        self._words, self._width, self._tag = words, width, tag_shape
        tag = {"tag": tag_shape} if tag_shape is not None else {}
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"data": width, **tag, "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "row": words * width, **tag, "seq": range(max_rows), "last": 1}))),
        })

    @property
    def latency(self):
        return 1

    @property
    def ii(self):
        return self._words

    def elaborate(self, platform):
        m = Module()
        W, N = self._width, self._words
        # the row data takes no reset (o.valid qualifies it): fewer loads on a core's restart
        row = Signal(N * W, reset_less=True)
        out_row = Signal(N * W, reset_less=True)
        m.d.comb += self.o.payload.row.eq(out_row)
        word = Signal(range(N))
        seq = Signal.like(self.o.payload.seq)
        take = Signal()
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready),
                     take.eq(self.i.valid & self.i.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += row.eq(Cat(row[W:], self.i.payload.data) if N > 1
                               else self.i.payload.data)
            with m.If(word == N - 1):
                m.d.sync += [word.eq(0), self.o.valid.eq(1),
                             out_row.eq(Cat(row[W:], self.i.payload.data)
                                        if N > 1 else self.i.payload.data),
                             self.o.payload.seq.eq(seq),
                             self.o.payload.last.eq(self.i.payload.last)]
                if self._tag is not None:
                    m.d.sync += self.o.payload.tag.eq(self.i.payload.tag)
                # the row number within its command: 0 after a command's last row
                m.d.sync += seq.eq(Mux(self.i.payload.last, 0, seq + 1))
            with m.Else():
                m.d.sync += word.eq(word + 1)
        return m


class RowPacker(wiring.Component):
    """Packs the elements of ``O`` rows into bus words, each element sign-extended to 32 bits
    (the memory layout of :mod:`spec.job`).

    Parameters
    ----------
    out_width : int
        Bits of an element (signed).
    d : int
        Elements per row.
    width : int
        Bits of a bus word, a multiple of 32.

    Attributes
    ----------
    i : In(stream) of ``{value, first, last}``
        Elements, ``last`` on a row's final one (:func:`hw.sufa.out_layout`).
    o : Out(stream) of ``{data, strb, last}``
        Words; a row's final word may be partly filled (``strb`` marks its bytes) and carries
        ``last``.
    latency : int
        1.
    """

    def __init__(self, out_width, d, width):
        if width % 32:
            raise ValueError(f"RowPacker: width = {width} must be a multiple of 32")
        self._ow, self._d, self._width = out_width, d, width
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "value": signed(out_width), "first": 1, "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "data": width, "strb": width // 8, "last": 1}))),
        })

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        E = self._width // 32
        slots = [Signal(32, name=f"elem{e}") for e in range(E)]
        n = Signal(range(E))
        take = Signal()
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready),
                     take.eq(self.i.valid & self.i.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        value = Signal(signed(32))
        m.d.comb += value.eq(self.i.payload.value)
        with m.If(take):
            full = (n == E - 1) | self.i.payload.last
            words = []
            for e in range(E):
                words.append(Signal(32, name=f"word{e}"))
                m.d.comb += words[e].eq(Mux(n == e, value.as_unsigned(), slots[e]))
            with m.Switch(n):
                for e in range(E):
                    with m.Case(e):
                        m.d.sync += slots[e].eq(value.as_unsigned())
            with m.If(full):
                strb = Signal(self._width // 8)
                for e in range(E):
                    m.d.comb += strb[4 * e:4 * e + 4].eq(Mux(n >= e, 0xF, 0))
                m.d.sync += [n.eq(0), self.o.valid.eq(1), self.o.payload.data.eq(Cat(*words)),
                             self.o.payload.strb.eq(strb),
                             self.o.payload.last.eq(self.i.payload.last)]
            with m.Else():
                m.d.sync += n.eq(n + 1)
        return m
