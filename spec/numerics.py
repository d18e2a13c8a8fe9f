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

The tail blend (docs/numerics.md, "Tail blend") adds three:

``TAIL_MEAN_ROUND``
    The head's mean V row ``vbar = (Σ_{j<S} V[j]) · 2^out_frac / S``, rounded half away
    from zero (``DIV_ROUND_HALF_AWAY``): :func:`tail_mean`.
``TAIL_FRAC_FLOOR``
    The dropped mass ``f = floor(drop · 2^TAIL_FRAC / total)``, UQ0.``TAIL_FRAC``:
    :func:`tail_fraction`.
``TAIL_BLEND_ROUND``
    ``O + f·(vbar − O) / 2^TAIL_FRAC`` rounded half up (add ``2^(TAIL_FRAC−1)``, arithmetic
    shift right): :func:`tail_blend`.

The on-demand K/V mode (prediction from the activations X, docs/numerics.md) adds the stored
weight format of phase 1.1, :func:`lz_encode` / :func:`lz_decode`, and two steps:

``LZ_WEIGHT_FLOOR``
    A weight ``w`` is stored as ``sign(w)·2^floor(log2|w|)`` (its leading one).
``KHAT_SHIFT_FLOOR``, ``KHAT_SAT``
    The phase-1.1 sum is shifted right arithmetically by a per-head ``khat_shift`` and
    saturated to the symmetric ``khat_width``-bit range: :func:`khat_truncate`.
"""

import math


__all__ = ["ROUNDING_STEPS", "exp2_lut", "exp2_fx", "exp_arg", "div_round_half_away",
           "TAIL_FRAC", "tail_mean", "tail_fraction", "tail_blend",
           "LZ_BITS", "LZ_ZERO", "LZ_WEIGHT_MAX", "lz_encode", "lz_decode", "khat_truncate"]


#: The named rounding steps, in datapath order.
ROUNDING_STEPS = ("EXP_ARG_FLOOR", "LUT_ADDR_TRUNC", "LUT_ROUND", "EXP_SHIFT_FLOOR",
                  "RESCALE_FLOOR", "DIV_ROUND_HALF_AWAY", "TAIL_MEAN_ROUND", "TAIL_FRAC_FLOOR",
                  "TAIL_BLEND_ROUND")


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


# -- the tail blend (the adaptive budget's formal stage) ---------------------------------

#: Fraction bits of the tail blend's dropped mass ``f`` (UQ0.TAIL_FRAC; ``f < 1`` always,
#: since the row's best bin is kept).
TAIL_FRAC = 12


def tail_mean(colsum, seq_len, cfg):
    """``TAIL_MEAN_ROUND``: one element of the head's mean V row with ``out_frac`` fraction
    bits, ``round_half_away(colsum · 2^out_frac / S)`` for ``colsum = Σ_{j<S} V[j, e]``."""
    return div_round_half_away(int(colsum) << cfg.out_frac, seq_len)


def tail_fraction(drop, total):
    """``TAIL_FRAC_FLOOR``: ``floor(drop · 2^TAIL_FRAC / total)`` for ``0 <= drop < total``,
    the row's predicted dropped mass (0 … 2^TAIL_FRAC - 1)."""
    drop, total = int(drop), int(total)
    if not 0 <= drop < total:
        raise ValueError(f"tail_fraction: need 0 <= drop < total, got {drop}, {total}")
    return (drop << TAIL_FRAC) // total


def tail_blend(o, vbar, f):
    """``TAIL_BLEND_ROUND``: ``o + ((f·(vbar − o) + 2^(TAIL_FRAC−1)) >> TAIL_FRAC)``, one
    output element ``o`` (``out_frac`` fraction bits) moved towards ``vbar`` by ``f``."""
    o = int(o)
    return o + ((int(f) * (int(vbar) - o) + (1 << (TAIL_FRAC - 1))) >> TAIL_FRAC)


# -- on-demand K/V: the stored weight format of phase 1.1 ---------------------------------

#: Bits of one stored weight: a sign bit (bit 3) over a 3-bit shift ``p`` (bits 2 … 0).
LZ_BITS = 4
#: The code of a zero weight: sign 0, ``p = 7`` (no int8 magnitude up to 127 has p = 7).
LZ_ZERO = 0b0111
#: Largest weight magnitude the format takes: int8 symmetric, as every int8 tensor here.
LZ_WEIGHT_MAX = 127


def lz_encode(w):
    """``LZ_WEIGHT_FLOOR``: the 4-bit code of an int8 weight ``w`` (``-127 … 127``).

    ``(sign << 3) | p`` with ``p = floor(log2|w|)`` (``0 … 6``), standing for
    ``(-1)^sign·2^p``; zero is :data:`LZ_ZERO`. Phase 1.1 multiplies by shifting the token
    by ``p``, so no multiplier and no leading-zero counter is needed at run time.
    """
    if isinstance(w, bool) or not isinstance(w, int):
        raise ValueError(f"weight {w!r} is not an integer; the LZ format takes int8 weights "
                         f"-{LZ_WEIGHT_MAX} … {LZ_WEIGHT_MAX}")
    if not -LZ_WEIGHT_MAX <= w <= LZ_WEIGHT_MAX:
        raise ValueError(f"weight {w} is outside the LZ format's range "
                         f"-{LZ_WEIGHT_MAX} … {LZ_WEIGHT_MAX}")
    if w == 0:
        return LZ_ZERO
    return (int(w < 0) << 3) | (abs(w).bit_length() - 1)


def lz_decode(code):
    """The weight ``±2^p`` (or 0) a 4-bit code stands for; ValueError for ``0b1111`` (the
    one code outside the format) or a value outside ``0 … 15``."""
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < 1 << LZ_BITS:
        raise ValueError(f"LZ code {code!r} is not a {LZ_BITS}-bit word (0 … 15)")
    if code == LZ_ZERO:
        return 0
    p = code & 0b111
    if p == 7:
        raise ValueError(f"LZ code {code} (0b{code:04b}) is outside the format: 0 … 6 and "
                         f"8 … 14 are ±2^p, {LZ_ZERO} is zero")
    return -(1 << p) if code >> 3 else 1 << p


def khat_truncate(acc, shift, width):
    """``KHAT_SHIFT_FLOOR`` then ``KHAT_SAT``: ``clamp(acc >> shift, -(2^(width-1) - 1),
    2^(width-1) - 1)``, the predicted key element phase 1.2 takes."""
    top = (1 << (width - 1)) - 1
    return max(-top, min(top, int(acc) >> shift))
