"""Leading-zero / leading-one counter as a log-depth tree."""

from amaranth.hdl import Cat, Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["LeadingCounter"]


class LeadingCounter(wiring.Component):
    """Counts the leading zeros (or ones) of a ``width``-bit value, combinationally.

    The value is padded at the LSB end to a power of two with the opposite bit, so an all-zero
    input counts exactly ``width``; the tree then pairs ``(all_match, count)`` nodes level by
    level: ``ceil(log2 width)`` two-input mux levels in all.

    Parameters
    ----------
    width : int
        Bits of :py:`value`, any positive integer.
    ones : bool
        Count leading ones instead of zeros (for the magnitude of a negative number).

    Attributes
    ----------
    value : In(width)
    count : Out(range(width + 1))
        Leading zeros (ones) of :py:`value`, ``width`` if all bits match.
    all : Out(1)
        Every bit of :py:`value` is zero (one).
    latency : int
        0: purely combinational.
    ii : int
        1: a new value every cycle.
    """

    def __init__(self, width, *, ones=False):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"LeadingCounter width must be a positive integer, not {width!r}")
        self._width = width
        self._ones = bool(ones)
        super().__init__({
            "value": In(width),
            "count": Out(range(width + 1)),
            "all": Out(1),
        })

    @property
    def width(self):
        return self._width

    @property
    def latency(self):
        return 0

    @property
    def ii(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        w = self._width
        size = 1 << (w - 1).bit_length()        # next power of two (1 for w == 1)
        bits = ~self.value if self._ones else self.value
        # Pad below with a single 1 (then zeros) so an all-zero value counts exactly w.
        padded = Cat(Const(1 << (size - w - 1), size - w), bits) if size > w else bits
        # Leaves: (is_zero, count) per bit, LSB first; a leaf's count has no bits yet.
        nodes = [(~padded[i], None) for i in range(size)]
        while len(nodes) > 1:
            merged = []
            for (z_lo, c_lo), (z_hi, c_hi) in zip(nodes[0::2], nodes[1::2]):
                if c_hi is None:
                    count = z_hi                  # 2-bit node: one leading zero if hi is zero
                else:
                    count = Mux(z_hi, Cat(c_lo, 1), Cat(c_hi, 0))
                merged.append((z_hi & z_lo, count))
            nodes = merged
        zero, count = nodes[0]
        if count is None:                         # width 1
            m.d.comb += self.count.eq(zero)
        else:
            m.d.comb += self.count.eq(Mux(zero, size, count))
        m.d.comb += self.all.eq(bits == 0)
        return m
