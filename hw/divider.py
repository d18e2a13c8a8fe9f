"""Divider: signed-by-unsigned integer division rounded half away from zero, for ``O = o / l``."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.timing import ITERATIVE_DIVIDER_STEPS, divider_timing


__all__ = ["Divider", "divider_in_layout", "divider_out_layout"]


def divider_in_layout(num_width, den_width, tag_shape=None):
    """A signed numerator, an unsigned denominator and an optional tag."""
    fields = {"num": signed(num_width), "den": den_width}
    if tag_shape is not None:
        fields["tag"] = tag_shape
    return data.StructLayout(fields)


def divider_out_layout(quot_width, tag_shape=None):
    """The (saturated) quotient, its overflow flag and the tag of its operands."""
    fields = {"quot": signed(quot_width), "overflow": 1}
    if tag_shape is not None:
        fields["tag"] = tag_shape
    return data.StructLayout(fields)


def _check_width(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Divider {name} must be a positive integer, not {value!r}")


class Divider(wiring.Component):
    """``quot = num / den`` rounded half away from zero (``DIV_ROUND_HALF_AWAY``).

    Bit-exact with :func:`spec.numerics.div_round_half_away` whenever the quotient fits
    ``quot_width`` signed bits. Method: with ``a = |num|``, a restoring division computes
    ``q2 = floor(2a / den)``, then ``|quot| = (q2 + 1) >> 1`` (which is ``a/den`` rounded half
    up) and the sign of ``num`` is applied. Only the ``quot_bits = quot_width + 1`` low bits of
    ``q2`` are computed (the extra bit reaches ``-2^(quot_width-1)``): an up-front comparison
    ``(2a >> quot_bits) >= den`` detects a longer quotient, so the numerator's width costs one
    comparator, not one stage per bit.

    Overflow: a quotient outside ``[-2^(quot_width-1), 2^(quot_width-1) - 1]`` saturates to the
    nearer end and sets :py:`overflow`. SU-FA never overflows (``spec.config`` bounds
    ``|O| < 2^data_width``, so ``out_width`` holds it); the flag is for checking.
    ``den == 0`` is outside the contract: it gives the saturated value of the numerator's sign
    (``2^(quot_width-1) - 1`` for ``num >= 0``) with :py:`overflow` set, and never stalls.
    (The golden :func:`~sim.golden.divide_row` returns 0 for ``l == 0``; that case is the
    caller's.)

    Two implementations, selected by ``iterative``:

    * pipelined: a preparation stage (``|num|``, the overflow comparison), one stage per
      quotient bit, an output stage (rounding, sign, saturation); the pipeline stalls as a
      whole when :py:`o` is not ready.
    * iterative: one set of registers loaded on acceptance, two quotient bits per cycle (two
      restoring steps in series; one in the last cycle when ``quot_bits`` is odd), then the
      output register; the next operands are accepted in the cycle the output register is
      loaded. For small FPGAs.

    Parameters
    ----------
    num_width : int
        Signed bits of the numerator.
    den_width : int
        Unsigned bits of the denominator (``den > 0``).
    quot_width : int
        Signed bits of the quotient.
    iterative : bool
        Two quotient bits per cycle in one unit instead of one per pipeline stage.
    tag_shape : shape-castable or None
        Side data carried unchanged from :py:`i` to :py:`o`; no ``tag`` field when None.
    src_loc_at : int
        Caller frames to skip for source locations (as in Amaranth's own constructors).

    Attributes
    ----------
    i : In(stream.Signature(divider_in_layout(num_width, den_width, tag_shape)))
        ``{"num": signed(num_width), "den": unsigned(den_width), "tag": tag_shape}``.
    o : Out(stream.Signature(divider_out_layout(quot_width, tag_shape)))
        ``{"quot": signed(quot_width), "overflow": 1, "tag": tag_shape}``, in input order.
    quot_bits : int
        Restoring-division steps: ``quot_width + 1``.
    latency : int
        Cycles from the acceptance of the operands to the quotient on :py:`o` without stalls:
        pipelined ``quot_bits + 2 = quot_width + 3`` (preparation register, one register per
        quotient bit, output register); iterative ``ceil(quot_bits / 2) + 2`` (the registers
        load on acceptance, step ``ceil(quot_bits / 2)`` times, then the output register).
    ii : int
        ``1`` pipelined; ``ceil(quot_bits / 2) + 1`` iterative.
    """

    #: Restoring steps per cycle of the iterative implementation.
    ITERATIVE_STEPS = ITERATIVE_DIVIDER_STEPS

    def __init__(self, num_width, den_width, quot_width, *, iterative=False, tag_shape=None,
                 src_loc_at=0):
        _check_width("num_width", num_width)
        _check_width("den_width", den_width)
        _check_width("quot_width", quot_width)
        self._num_width = num_width
        self._den_width = den_width
        self._quot_width = quot_width
        self._iterative = bool(iterative)
        self._tag_shape = tag_shape
        super().__init__({
            "i": In(stream.Signature(divider_in_layout(num_width, den_width, tag_shape))),
            "o": Out(stream.Signature(divider_out_layout(quot_width, tag_shape))),
        }, src_loc_at=src_loc_at)

    @classmethod
    def for_config(cls, cfg, **kwargs):
        """The SU-FA output divide ``O = o·2^out_frac / l`` of a :class:`SofaConfig`.

        Numerator ``o·2^out_frac``: signed ``o_width + out_frac`` bits; denominator ``l``:
        unsigned ``l_width`` bits; quotient: signed ``out_width`` bits. ``kwargs`` go to the
        constructor (``iterative``, ``tag_shape``).
        """
        der = cfg.derived
        return cls(der.o_width + cfg.out_frac, der.l_width, der.out_width, src_loc_at=1,
                   **kwargs)

    @property
    def num_width(self):
        return self._num_width

    @property
    def den_width(self):
        return self._den_width

    @property
    def quot_width(self):
        return self._quot_width

    @property
    def iterative(self):
        return self._iterative

    @property
    def tag_shape(self):
        return self._tag_shape

    @property
    def quot_bits(self):
        return self._quot_width + 1

    @property
    def latency(self):
        return divider_timing(self._quot_width, iterative=self._iterative)[0]

    @property
    def ii(self):
        return divider_timing(self._quot_width, iterative=self._iterative)[1]

    # -- datapath pieces shared by both implementations ---------------------------------------

    def _state_layout(self):
        fields = {
            "neg": 1,                        # num < 0
            "ovf": 1,                        # the quotient needs more than quot_bits bits
            "rem": self._den_width,          # partial remainder, < den
            "dq": self.quot_bits,            # dividend bits still to bring down | quotient bits
            "den": self._den_width,
        }
        if self._tag_shape is not None:
            fields["tag"] = self._tag_shape
        return data.StructLayout(fields)

    def _prepare(self, m, state):
        """Comb: the state for the operands on :py:`i` (``|num|``, split, overflow test)."""
        K = self.quot_bits
        num, den = self.i.payload.num, self.i.payload.den
        mag = Signal(self._num_width)                    # |-2^(num_width-1)| still fits
        m.d.comb += mag.eq(Mux(num < 0, -num, num))
        dividend = Signal(max(self._num_width + 1, K))  # 2·|num|
        m.d.comb += dividend.eq(mag << 1)
        high = dividend[K:] if len(dividend) > K else Const(0, 1)
        m.d.comb += [
            state.neg.eq(num < 0),
            state.ovf.eq(high >= den),                   # floor(2a / den) >= 2^K; den == 0 too
            state.rem.eq(high),                          # < den unless ovf
            state.dq.eq(dividend[:K]),
            state.den.eq(den),
        ]
        if self._tag_shape is not None:
            m.d.comb += state.tag.eq(self.i.payload.tag)

    def _step(self, m, cur, nxt, name):
        """Comb: one restoring-division step from ``cur`` to ``nxt``."""
        K, DW = self.quot_bits, self._den_width
        trial = Signal(DW + 1, name=f"trial_{name}")     # 2·rem + next dividend bit
        fits = Signal(name=f"fits_{name}")
        m.d.comb += [
            trial.eq(Cat(cur.dq[K - 1], cur.rem)),
            fits.eq(trial >= cur.den),
            nxt.eq(cur),
            nxt.rem.eq(Mux(fits, trial - cur.den, trial)),
            nxt.dq.eq(Cat(fits, cur.dq[:K - 1])),
        ]

    def _finish(self, m, cur):
        """Comb: rounding, sign and saturation of a finished state; returns ``(quot, ovf)``."""
        QW = self._quot_width
        top = (1 << (QW - 1)) - 1
        bottom = -(1 << (QW - 1))
        mag = Signal(QW + 1)                             # (q2 + 1) >> 1, at most 2^quot_width
        too_big = Signal()
        quot = Signal(signed(QW))
        ovf = Signal()
        m.d.comb += [
            mag.eq((cur.dq + 1) >> 1),
            too_big.eq(Mux(cur.neg, mag > -bottom, mag > top)),
            ovf.eq(cur.ovf | too_big),
            quot.eq(Mux(ovf, Mux(cur.neg, bottom, top), Mux(cur.neg, -mag, mag))),
        ]
        return quot, ovf

    def _emit(self, m, cur, quot, ovf):
        m.d.sync += [self.o.payload.quot.eq(quot), self.o.payload.overflow.eq(ovf)]
        if self._tag_shape is not None:
            m.d.sync += self.o.payload.tag.eq(cur.tag)

    # -- implementations ----------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        if self._iterative:
            self._elaborate_iterative(m)
        else:
            self._elaborate_pipelined(m)
        return m

    def _elaborate_pipelined(self, m):
        layout = self._state_layout()
        advance = Signal()                  # every pipeline register moves this cycle
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        prep = Signal(layout, name="prep")
        self._prepare(m, prep)
        # the stage registers take no reset (valid bits qualify them): fewer loads on a restart
        cur = Signal(layout, name="stage0", reset_less=True)
        cur_valid = Signal(name="stage0_valid")
        with m.If(advance):
            m.d.sync += [cur.eq(prep), cur_valid.eq(self.i.valid)]

        for k in range(self.quot_bits):
            nxt = Signal(layout, name=f"step{k}")
            self._step(m, cur, nxt, str(k))
            reg = Signal(layout, name=f"stage{k + 1}", reset_less=True)
            reg_valid = Signal(name=f"stage{k + 1}_valid")
            with m.If(advance):
                m.d.sync += [reg.eq(nxt), reg_valid.eq(cur_valid)]
            cur, cur_valid = reg, reg_valid

        quot, ovf = self._finish(m, cur)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(cur_valid)
            self._emit(m, cur, quot, ovf)

    def _elaborate_iterative(self, m):
        K, P = self.quot_bits, self.ITERATIVE_STEPS
        cycles = -(-K // P)
        layout = self._state_layout()
        state = Signal(layout, name="state", reset_less=True)
        busy = Signal()
        count = Signal(range(cycles + 1))   # cycles of steps done
        done = Signal()
        out_free = Signal()
        m.d.comb += [
            done.eq(count == cycles),
            out_free.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(~busy | (done & out_free)),
        ]

        prep = Signal(layout, name="prep")
        self._prepare(m, prep)
        steps = [state]
        for n in range(P):
            nxt = Signal(layout, name=f"step{n}")
            self._step(m, steps[-1], nxt, f"iter{n}")
            steps.append(nxt)
        # The last cycle takes only the steps that are left.
        short = K % P
        last = (Mux(count == cycles - 1, steps[short].as_value(), steps[P].as_value()) if short
                else steps[P])
        quot, ovf = self._finish(m, state)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(busy & ~done):
            m.d.sync += [state.eq(last), count.eq(count + 1)]
        with m.If(busy & done & out_free):
            m.d.sync += [busy.eq(0), self.o.valid.eq(1)]
            self._emit(m, state, quot, ovf)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [state.eq(prep), busy.eq(1), count.eq(0)]
