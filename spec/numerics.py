"""Fixed-point rules that the RTL generator and the golden model share.

The hardware builds its tables from these functions and the golden model computes with them,
so the two cannot drift apart. Every rounding step of the datapath has a name, used in the
docstrings of the golden model (:mod:`sim.golden`) and of the units (:mod:`hw`):

``EXP_ARG_FLOOR``
    The exponent argument ``(s - m)·c`` is floored to ``exp_frac`` fractional bits (an
    arithmetic right shift by ``c_frac - exp_frac``): :func:`exp_arg`.
``LUT_ADDR_TRUNC``
    The ``2^frac`` table is addressed by the top ``exp_lut_bits`` bits of the fraction.
``LUT_ROUND``
    Table entries are ``round_half_up(2^(a/depth) · 2^w_frac)``: :func:`exp2_lut`.
``EXP_SHIFT_FLOOR``
    The integer part of the exponent right-shifts the entry (to 0 at most): :func:`exp2_fx`.
``RESCALE_FLOOR``
    ``l`` and ``o`` are multiplied by a rescale weight and floored (arithmetic right shift by
    ``w_frac``).
``DIV_ROUND_HALF_AWAY``
    ``O = o·2^out_frac / l`` rounded half away from zero: :func:`div_round_half_away`.
"""

import math


__all__ = ["ROUNDING_STEPS", "exp2_lut", "exp2_fx", "exp_arg", "div_round_half_away"]


#: The named rounding steps, in datapath order.
ROUNDING_STEPS = ("EXP_ARG_FLOOR", "LUT_ADDR_TRUNC", "LUT_ROUND", "EXP_SHIFT_FLOOR",
                  "RESCALE_FLOOR", "DIV_ROUND_HALF_AWAY")


def exp2_lut(cfg):
    """``LUT_ROUND``: entry ``a`` is ``round_half_up(2^(a / depth) · 2^w_frac)``, UQ1.w_frac.

    The table of :class:`hw.exp2.Exp2` and of the golden model; ``depth = 2^exp_lut_bits``.
    """
    depth = cfg.derived.exp_lut_depth
    # Exact in float64: 2^(a/depth) has a 53-bit mantissa, w_frac <= 24.
    return [math.floor(2.0 ** (a / depth) * (1 << cfg.w_frac) + 0.5) for a in range(depth)]


def exp2_fx(x, cfg, lut=None):
    """``2^(x / 2^exp_frac)`` for an integer ``x <= 0``, as UQ1.w_frac.

    ``x = n·2^exp_frac + f`` with ``0 <= f < 2^exp_frac`` (floor division, so ``n <= 0``);
    ``LUT_ADDR_TRUNC``: address ``f >> (exp_frac - exp_lut_bits)``; ``EXP_SHIFT_FLOOR``:
    the entry is shifted right by ``-n`` (0 once ``-n > w_frac``).
    """
    x = int(x)
    if x > 0:
        raise ValueError(f"exp2_fx: argument {x} is positive; the SU-FA argument is s - m <= 0")
    lut = exp2_lut(cfg) if lut is None else lut
    n, f = divmod(x, 1 << cfg.exp_frac)
    addr = f >> (cfg.exp_frac - cfg.exp_lut_bits)
    return lut[addr] >> -n


def exp_arg(diff, scale_log2e, cfg):
    """``EXP_ARG_FLOOR``: ``floor(diff·c / 2^(c_frac - exp_frac))`` for ``diff = s - m <= 0``."""
    return (int(diff) * int(scale_log2e)) >> (cfg.c_frac - cfg.exp_frac)


def div_round_half_away(num, den):
    """``DIV_ROUND_HALF_AWAY``: ``num / den`` rounded to the nearest integer, ties away from 0."""
    num, den = int(num), int(den)
    if den <= 0:
        raise ValueError(f"div_round_half_away: denominator {den} must be positive")
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return -q if num < 0 else q
