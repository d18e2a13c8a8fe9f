"""Exp2: the fixed-point ``2^x`` of SU-FA, a table of ``2^frac`` and a saturating right shift."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.numerics import exp2_lut


__all__ = ["Exp2", "default_in_width", "exp2_in_layout", "exp2_out_layout"]


def default_in_width(cfg):
    """Signed bits of the smallest argument a caller must saturate to: ``-(w_frac+2)·2^exp_frac``.

    Every ``x < -w_frac·2^exp_frac`` already gives 0, so a caller clamps its argument to
    ``[-(w_frac+2)·2^exp_frac, 0]`` (or to anything this width holds) before the unit.
    """
    magnitude = (cfg.w_frac + 2) << cfg.exp_frac
    return (magnitude - 1).bit_length() + 1       # -2^(width-1) <= -magnitude


def exp2_in_layout(in_width, tag_shape=None):
    """The argument ``x`` (signed, ``exp_frac`` fractional bits) and an optional tag."""
    fields = {"x": signed(in_width)}
    if tag_shape is not None:
        fields["tag"] = tag_shape
    return data.StructLayout(fields)


def exp2_out_layout(cfg, tag_shape=None):
    """The weight ``w = 2^x`` in UQ1.``w_frac`` and the tag of its argument."""
    fields = {"w": cfg.w_frac + 1}
    if tag_shape is not None:
        fields["tag"] = tag_shape
    return data.StructLayout(fields)


class Exp2(wiring.Component):
    """``w = 2^(x / 2^exp_frac)`` in UQ1.``w_frac``, bit-exact with :func:`spec.numerics.exp2_fx`.

    The argument splits as ``x = n·2^exp_frac + f`` (floor, so ``n <= 0`` and
    ``0 <= f < 2^exp_frac``): ``f`` is the low ``exp_frac`` bits of ``x`` and ``n`` the
    arithmetic rest. ``LUT_ADDR_TRUNC``: the table address is ``f >> (exp_frac -
    exp_lut_bits)``. The ``2^exp_lut_bits``-entry table of ``2^frac`` (``LUT_ROUND``, taken from
    :func:`spec.numerics.exp2_lut`, ``w_frac + 1`` bits wide) is a :class:`~amaranth.lib.memory.Memory`
    ROM read through a synchronous port, so it maps to a block RAM. ``EXP_SHIFT_FLOOR``: the
    entry is shifted right by ``-n``; ``-n > w_frac`` is detected by a comparison on ``n`` and
    gives 0 directly (every entry is below ``2^(w_frac+1)``), so the barrel shifter only has
    ``bits(w_frac)`` select bits whatever ``in_width`` is.

    Two stages: the ROM's read register (with the saturation flag, shift amount and tag
    beside it) and the output register. The pipeline stalls as a whole when :py:`o` is not
    ready; the read port's enable is the advance signal, so a stalled read holds its data.

    Contract: ``x <= 0``. Every ``x < -w_frac·2^exp_frac`` gives ``w = 0`` (in particular
    everything below ``-(w_frac+1)·2^exp_frac``, where the comparison saturates), so callers
    clamp their argument to ``-(w_frac+2)·2^exp_frac`` to fit the default ``in_width``.
    ``x > 0`` is outside the contract and its output is unspecified (SU-FA's argument
    ``(s - m)·c`` is never positive).

    Parameters
    ----------
    cfg : SofaConfig
    in_width : int or None
        Signed bits of ``x``; default :func:`default_in_width`, just enough for
        ``-(w_frac+2)·2^exp_frac``. Any width works: a wider ``x`` only widens the comparison.
    tag_shape : shape-castable or None
        Side data (such as a key index) carried unchanged from :py:`i` to :py:`o`; no ``tag``
        field when None.

    Attributes
    ----------
    i : In(stream.Signature(exp2_in_layout(in_width, tag_shape)))
        ``{"x": signed(in_width), "tag": tag_shape}``.
    o : Out(stream.Signature(exp2_out_layout(cfg, tag_shape)))
        ``{"w": unsigned(w_frac + 1), "tag": tag_shape}``, in input order.
    lut : list of int
        The table contents, ``exp2_lut(cfg)``.
    latency : int
        Cycles from the acceptance of ``x`` to its ``w`` on :py:`o` without stalls: ``2``
        (ROM read register, output register).
    ii : int
        ``1``: a new argument every cycle.
    """

    def __init__(self, cfg, *, in_width=None, tag_shape=None):
        if in_width is None:
            in_width = default_in_width(cfg)
        if isinstance(in_width, bool) or not isinstance(in_width, int) or in_width < 1:
            raise ValueError(f"Exp2 in_width must be a positive integer, not {in_width!r}")
        self._cfg = cfg
        self._in_width = in_width
        self._tag_shape = tag_shape
        self._lut = exp2_lut(cfg)
        super().__init__({
            "i": In(stream.Signature(exp2_in_layout(in_width, tag_shape))),
            "o": Out(stream.Signature(exp2_out_layout(cfg, tag_shape))),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def in_width(self):
        return self._in_width

    @property
    def tag_shape(self):
        return self._tag_shape

    @property
    def lut(self):
        return list(self._lut)

    @property
    def latency(self):
        return 2

    @property
    def ii(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        cfg, der = self._cfg, self._cfg.derived
        F, B, WF = cfg.exp_frac, cfg.exp_lut_bits, cfg.w_frac
        has_tag = self._tag_shape is not None

        # -- global stall --------------------------------------------------------------------
        advance = Signal()                  # every pipeline register moves this cycle
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        # -- split x = n·2^F + f (floor) -------------------------------------------------------
        # Sign-extend so that n has at least one bit even when in_width <= exp_frac.
        x = Signal(signed(max(self._in_width, F + 1)))
        m.d.comb += x.eq(self.i.payload.x)
        f = x[:F]
        n = x[F:].as_signed()
        shift_width = WF.bit_length()       # shift amounts 0 … w_frac
        neg_n = Signal(shift_width)
        saturate = Signal()
        m.d.comb += [
            saturate.eq(n < -WF),           # -n > w_frac: the entry shifts out completely
            neg_n.eq(-n),                   # only its low bits matter when not saturating
        ]

        # -- stage 1: ROM read register, with flag, shift and tag beside it -----------------
        # In a block RAM: as logic, the table costs about 100 iCE40 LUTs at 64 entries.
        m.submodules.lut = rom = memory.Memory(shape=WF + 1, depth=der.exp_lut_depth,
                                               init=self._lut,
                                               attrs={"rom_style": "block"})
        rd = rom.read_port(domain="sync")
        m.d.comb += [
            rd.addr.eq(f[F - B:]),          # LUT_ADDR_TRUNC
            rd.en.eq(advance),              # a stalled read holds its data
        ]
        s1_valid = Signal()
        s1_saturate = Signal()
        s1_shift = Signal(shift_width)
        s1_tag = Signal(self._tag_shape) if has_tag else None
        with m.If(advance):
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                s1_saturate.eq(saturate),
                s1_shift.eq(neg_n),
            ]
            if has_tag:
                m.d.sync += s1_tag.eq(self.i.payload.tag)

        # -- stage 2: saturating right shift, output register --------------------------------
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(s1_valid),
                self.o.payload.w.eq(Mux(s1_saturate, 0, rd.data >> s1_shift)),  # EXP_SHIFT_FLOOR
            ]
            if has_tag:
                m.d.sync += self.o.payload.tag.eq(s1_tag)
        return m
