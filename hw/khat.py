"""KhatPredictor: on-demand K/V's phase 1.1, the predicted keys ``K̂ = X·W̃_kᵀ`` by shift and add.

Bit-exact with :func:`sim.ondemand.predict_keys` (docs/numerics.md, "On-demand K/V"): W_k of
one head is held as 4-bit LZ codes (:func:`spec.numerics.lz_encode`, a sign and a shift ``p``
per weight, ``0b0111`` for zero), so each term ``x·w̃`` is the int8 token element shifted by
``p`` and negated for a negative weight; no multiplier. An X row of ``d_model`` elements arrives
in chunks of ``x_lanes``; every chunk meets all ``d`` output columns at once (``d × x_lanes``
shift-adders, one adder tree per column, one accumulator per column), and after the row's last
chunk each column is shifted right by ``khat_shift`` and saturated to ``khat_width`` bits
(``KHAT_SHIFT_FLOOR``, ``KHAT_SAT``).

The codes are loaded on :py:`w` before the rows, one word per chunk position; a new load may
start between two rows (the rows still inside keep the codes they read). The unit is not
wired into a core yet.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.config import ConfigError
from spec.numerics import LZ_BITS, LZ_ZERO
from spec.validate import check_int


__all__ = ["KhatPredictor"]

#: Token elements are int8 (X is quantised like Q, K and V).
X_WIDTH = 8


class KhatPredictor(wiring.Component):
    """The predicted key row ``K̂[j] = clamp((X[j]·W̃ᵀ) >> khat_shift)`` of each token row.

    Parameters
    ----------
    d : int
        Head dimension (output columns).
    d_model : int
        Token width (elements of an X row).
    x_lanes : int
        Elements of an X row taken a cycle; divides ``d_model``.
    khat_width : int
        Bits of a K̂ element (symmetric saturation).

    Attributes
    ----------
    w : In(stream.Signature(ArrayLayout(unsigned(4), d · x_lanes)))
        The LZ codes, ``d_model / x_lanes`` words in chunk order: element ``c·x_lanes + i`` of
        word ``k`` is the code of ``W[c, k·x_lanes + i]``. Accepted only between rows; X rows
        wait until a whole set is loaded.
    x : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), x_lanes), "last": 1})))
        X rows, chunk by chunk; ``last`` on the final chunk of the sequence's last row.
    khat : Out(stream.Signature(StructLayout({"data": ArrayLayout(signed(khat_width), d),
    "last": 1})))
        One K̂ row per X row, in order, with the row's ``last``.
    shift : In(range(shift_max + 1))
        The register ``khat_shift``; stable while a row is in the unit.
    latency : int
        Cycles from the acceptance of a row's last chunk to its K̂ on :py:`khat`: 3.
    ii : int
        Cycles per X row at full rate: ``d_model / x_lanes``.
    """

    def __init__(self, d, d_model, x_lanes, khat_width=8):
        for name, value in (("d", d), ("d_model", d_model), ("x_lanes", x_lanes)):
            check_int(name, value, 1)
        check_int("khat_width", khat_width, 2, 32)
        if d_model % x_lanes:
            raise ConfigError(f"x_lanes = {x_lanes} must divide d_model = {d_model}")
        self.d, self.d_model, self.x_lanes, self.khat_width = d, d_model, x_lanes, khat_width
        self.chunks = d_model // x_lanes
        # |acc| < d_model·127·64: the widest sum, and the largest useful shift.
        self.acc_width = (d_model * 127 * 64).bit_length() + 1
        self.shift_max = self.acc_width
        super().__init__({
            "w": In(stream.Signature(data.ArrayLayout(unsigned(LZ_BITS), d * x_lanes))),
            "x": In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(X_WIDTH), x_lanes), "last": 1}))),
            "khat": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(khat_width), d), "last": 1}))),
            "shift": In(range(self.shift_max + 1)),
        })

    @property
    def latency(self):
        return 3

    @property
    def ii(self):
        return self.chunks

    def elaborate(self, platform):
        m = Module()
        d, xl, n = self.d, self.x_lanes, self.chunks
        m.submodules.codes = codes = memory.Memory(
            shape=data.ArrayLayout(unsigned(LZ_BITS), d * xl), depth=n, init=[])
        wr = codes.write_port()
        rd = codes.read_port(domain="sync")

        loaded = Signal()                         # a whole set of codes is in the memory
        w_count = Signal(range(n + 1))            # words of the load in progress
        k = Signal(range(n))                      # chunk of the row being accepted
        out_valid = Signal()
        # The pipeline moves unless a finished row waits on khat.
        advance = ~out_valid | self.khat.ready

        # Loading the codes, only between rows: a row's chunks read their codes when they are
        # accepted, so the rows still in the pipeline are not disturbed by the new ones.
        idle = k == 0
        m.d.comb += [self.w.ready.eq(idle), wr.addr.eq(w_count), wr.data.eq(self.w.payload),
                     wr.en.eq(self.w.valid & idle)]
        with m.If(self.w.valid & idle):
            m.d.sync += loaded.eq(0)
            with m.If(w_count == n - 1):
                m.d.sync += [w_count.eq(0), loaded.eq(1)]
            with m.Else():
                m.d.sync += w_count.eq(w_count + 1)

        # Stage A: accept a chunk and read its codes.
        take = self.x.valid & self.x.ready
        m.d.comb += [self.x.ready.eq(loaded & (w_count == 0) & advance),
                     rd.addr.eq(k), rd.en.eq(advance)]
        a_valid, a_first, a_end, a_last = Signal(), Signal(), Signal(), Signal()
        a_x = Signal(data.ArrayLayout(signed(X_WIDTH), xl))
        with m.If(advance):
            m.d.sync += [a_valid.eq(take), a_x.eq(self.x.payload.data),
                         a_first.eq(k == 0), a_end.eq(k == n - 1),
                         a_last.eq(self.x.payload.last)]
        with m.If(take):
            m.d.sync += k.eq(Mux(k == n - 1, 0, k + 1))

        # Stage B: the shift-adders and one adder tree per column.
        tree_width = (xl * 127 * 64).bit_length() + 1
        b_valid, b_first, b_end, b_last = Signal(), Signal(), Signal(), Signal()
        b_sum = [Signal(signed(tree_width), name=f"b_sum{c}") for c in range(d)]
        with m.If(advance):
            m.d.sync += [b_valid.eq(a_valid), b_first.eq(a_first), b_end.eq(a_end),
                         b_last.eq(a_last)]
            for c in range(d):
                terms = []
                for i in range(xl):
                    code = rd.data[c * xl + i]
                    shifted = a_x[i] << code[:3]
                    terms.append(Mux(code == LZ_ZERO, 0, Mux(code[3], -shifted, shifted)))
                m.d.sync += b_sum[c].eq(_tree(terms))

        # Stage C: accumulate over the chunks; after the last, shift and saturate.
        acc = [Signal(signed(self.acc_width), name=f"acc{c}") for c in range(d)]
        top = (1 << (self.khat_width - 1)) - 1
        out_last = Signal()
        out = Signal(data.ArrayLayout(signed(self.khat_width), d))
        with m.If(self.khat.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(advance & b_valid):
            for c in range(d):
                total = Mux(b_first, 0, acc[c]) + b_sum[c]
                m.d.sync += acc[c].eq(total)
                q = Signal(signed(self.acc_width), name=f"q{c}")
                m.d.comb += q.eq(total >> self.shift)
                with m.If(b_end):
                    m.d.sync += out[c].eq(Mux(q > top, top, Mux(q < -top, -top, q)))
            with m.If(b_end):
                m.d.sync += [out_valid.eq(1), out_last.eq(b_last)]
        m.d.comb += [self.khat.valid.eq(out_valid), self.khat.payload.data.eq(out),
                     self.khat.payload.last.eq(out_last)]
        return m


def _tree(terms):
    """The sum of ``terms``, as a balanced tree of adds."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]
