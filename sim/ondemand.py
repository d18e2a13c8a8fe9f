"""On-demand K/V in the golden model: keys predicted from the activations X with weights in
the LZ format (the paper's phase 1.1), and the exact K and V rows of the selected keys only.

Integer semantics (docs/numerics.md, "On-demand K/V"); every function is exact:

* **Weights.** ``W_k`` of one head, int8 ``[d, d_model]`` (``K = X·W_kᵀ``), is stored offline
  as 4-bit codes (:func:`lz_codes`, :func:`spec.numerics.lz_encode`): a sign and the position
  ``p`` of the leading one, standing for ``±2^p`` (``LZ_WEIGHT_FLOOR``).
* **Phase 1.1.** ``acc[j, c] = Σ_m x[j, m]·w̃[c, m]`` with ``w̃ = lz_decode(code)``: a shift of
  the int8 token element by ``p`` and an add, no multiplier (:func:`khat_acc`). ``K̂ =
  khat_truncate(acc, khat_shift, khat_width)`` element-wise (``KHAT_SHIFT_FLOOR``,
  ``KHAT_SAT``; :func:`predict_keys`). The key bias is left out: it adds ``Σ_c q̃_c·b_c`` to
  every key of a query row alike, which no per-row selection can see.
* **Phase 1.2.** ``Â = Σ_c sign(q_c)·(K̂[j, c] << floor(log2|q_c|))``, the core's DLZS with
  ``K̂`` in place of ``K`` (:func:`predict_scores`).
* **Exact rows.** ``K_j = clamp((x_j·W_kᵀ + b)·mult + 2^(rshift−1) >> rshift)`` with int8 X
  and W, an int32 bias in units of ``s_x·s_w``, and ``mult/2^rshift ≈ s_x·s_w/s_k``
  (``PROJ_ROUND`` half up, ``PROJ_SAT`` to the symmetric 8-bit range), the same for V
  (:func:`project_rows`, :func:`requant_params`).

``khat_shift`` is chosen offline per head from calibration inputs (:func:`khat_shift_for`):
the smallest shift that keeps the largest ``|acc|`` seen inside ``khat_width`` bits.
"""

import math

import numpy as np

from spec.config import ConfigError
from spec.validate import check_int
from spec.numerics import LZ_BITS, LZ_WEIGHT_MAX, LZ_ZERO, lz_decode
from sim.fastgolden import leading_one, matmul_exact, pow2_operand


__all__ = ["KHAT_WIDTHS", "lz_codes", "lz_values", "khat_acc", "khat_shift_for",
           "predict_keys", "predict_scores", "requant_params", "project_rows"]

#: K̂ widths the accuracy study compares (phase 1.2's linear operand; the paper: ≤ 16 bits).
KHAT_WIDTHS = (6, 8, 12, 16)


def _int_array(a, name):
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise ConfigError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a.astype(np.int64)


def lz_codes(W):
    """The 4-bit codes (uint8 array, W's shape) of int8 weights ``W`` (``-127 … 127``);
    ConfigError naming the first weight outside that range."""
    W = _int_array(W, "W")
    bad = np.flatnonzero((W < -LZ_WEIGHT_MAX) | (W > LZ_WEIGHT_MAX))
    if bad.size:
        at = np.unravel_index(bad[0], W.shape)
        raise ConfigError(f"weight W{list(map(int, at))} = {int(W[at])} is outside the LZ "
                          f"format's range -{LZ_WEIGHT_MAX} … {LZ_WEIGHT_MAX}")
    codes = ((W < 0).astype(np.int64) << 3) | leading_one(np.abs(W))
    return np.where(W == 0, LZ_ZERO, codes).astype(np.uint8)


def lz_values(codes):
    """The weights ``±2^p`` (or 0) of stored codes; ConfigError naming the first code outside
    the format (``0b1111`` or not a 4-bit word)."""
    codes = _int_array(codes, "LZ codes")
    bad = np.flatnonzero((codes < 0) | (codes >= 1 << LZ_BITS)
                         | ((codes & 0b111) == 7) & (codes != LZ_ZERO))
    if bad.size:
        at = np.unravel_index(bad[0], codes.shape)
        try:
            lz_decode(int(codes[at]))
        except ValueError as e:
            raise ConfigError(f"LZ code at {list(map(int, at))}: {e}") from None
    p = codes & 0b111
    mag = np.where(codes == LZ_ZERO, 0, np.int64(1) << np.where(p == 7, 0, p))
    return np.where(codes >> 3 == 1, -mag, mag)


def _check_tokens(X, W):
    """int8 ``X [S, d_model]`` against weights (or codes) ``W [d, d_model]``."""
    X = _int_array(X, "X")
    if X.ndim != 2 or W.ndim != 2 or W.shape[1] != X.shape[1]:
        raise ConfigError(f"W_k has shape {W.shape} and X {X.shape}; expected W_k "
                          f"[d, d_model] and X [S, d_model] with the same d_model")
    if X.size and np.abs(X).max() > 127:
        raise ConfigError(f"X holds {int(np.abs(X).max())}; the tokens are int8 (-127 … 127)")
    return X


def khat_acc(X, codes):
    """Phase 1.1's sums ``acc [S, d]`` of int8 ``X [S, d_model]`` against the LZ codes
    ``[d, d_model]`` of ``W_k``, exact."""
    w = lz_values(codes)
    X = _check_tokens(X, w)
    return matmul_exact(X, w.T, X.shape[1] * 127 * 64)


def khat_shift_for(acc_max, width):
    """The smallest right shift that keeps ``|acc| ≤ acc_max`` inside the symmetric
    ``width``-bit range (0 if it already fits)."""
    check_int("khat_width", width, 2, 32)
    return max(0, int(acc_max).bit_length() - (width - 1))


def predict_keys(X, codes, shift, width):
    """``K̂ [S, d]``: phase 1.1 (:func:`khat_acc`) then ``KHAT_SHIFT_FLOOR`` and ``KHAT_SAT``."""
    top = (1 << (width - 1)) - 1
    return np.clip(khat_acc(X, codes) >> shift, -top, top)


def predict_scores(Q, khat):
    """Phase 1.2: ``Â [..., T, S]`` of int8 ``Q [..., T, d]`` (the log operand, as the core's
    DLZS) against ``K̂ [..., S, d]``."""
    khat = np.asarray(khat, dtype=np.int64)
    bound = Q.shape[-1] * 64 * (int(np.abs(khat).max()) if khat.size else 0)
    return matmul_exact(pow2_operand(Q), np.swapaxes(khat, -1, -2), bound)


def requant_params(ratio, mult_bits=16):
    """``(mult, rshift)`` with ``mult < 2^mult_bits`` and ``mult/2^rshift`` the closest such
    to ``ratio > 0`` (the projection's output scale step)."""
    if not (math.isfinite(ratio) and ratio > 0):
        raise ConfigError(f"requantisation ratio {ratio!r} must be finite and positive")
    m, e = math.frexp(ratio)                           # ratio = m·2^e, m in [0.5, 1)
    rshift = mult_bits - e
    mult = round(m * (1 << mult_bits))
    if mult == 1 << mult_bits:
        mult, rshift = mult >> 1, rshift - 1
    if rshift < 1:
        raise ConfigError(f"requantisation ratio {ratio} is too large for a {mult_bits}-bit "
                          f"multiplier")
    return mult, rshift


def project_rows(X, W, bias, mult, rshift, rows, width=8):
    """The exact projected rows ``[len(rows), d]`` of the keys ``rows`` (``PROJ_ROUND``,
    ``PROJ_SAT``): int8 ``X [S, d_model]``, int8 ``W [d, d_model]``, int ``bias [d]``."""
    W = _int_array(W, "W")
    X = _check_tokens(X, W)
    bias = _int_array(bias, "bias")
    if bias.shape != (W.shape[0],):
        raise ConfigError(f"bias has shape {bias.shape}; expected (d,) = ({W.shape[0]},)")
    rows = np.asarray(rows, dtype=np.int64)
    acc = matmul_exact(X[rows], W.T, X.shape[1] * 127 * 127) + bias
    top = (1 << (width - 1)) - 1
    return np.clip((acc * mult + (1 << (rshift - 1))) >> rshift, -top, top)
