"""Float64 references and error/algorithm metrics.

The references work on the same integer inputs as the bit-exact model, with the scale given as
the real number ``c`` (exponent base 2): ``P[i, j] ∝ 2^(c·s[i, j])``. With ``c`` the quantised
register value (``scale_log2e / 2^c_frac``) they isolate the fixed-point error of the datapath;
with the true ``s_q·s_k·log2(e)/√d`` they also include the error of quantising ``c``. Outputs are
in units of V's integer scale, like the golden model's ``out / 2^out_frac``.
"""

import numpy as np

from sim.golden import exact_scores, tile_ranges


__all__ = ["softmax_rows", "dense_attention", "masked_attention", "topk_mask_global",
           "topk_mask_tiles", "selection_mask", "error_metrics", "recall", "mass_kept",
           "work_counts", "scale_of", "error_bound", "masked_attention_from_scores"]


def scale_of(cfg, scale_log2e):
    """The real ``c`` that a ``scale_log2e`` register value encodes."""
    return scale_log2e / (1 << cfg.c_frac)


def softmax_rows(logits2, mask=None):
    """Base-2 softmax of each row of ``logits2`` over the entries where ``mask`` is true."""
    x = np.asarray(logits2, dtype=np.float64)
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    x = x - x.max(axis=1, keepdims=True)
    p = np.exp2(x)
    return p / p.sum(axis=1, keepdims=True)


def masked_attention(Q, K, V, c, mask=None):
    """``softmax2(c·QKᵀ)·V`` in float64 over the keys where ``mask`` is true (all if None)."""
    return masked_attention_from_scores(exact_scores(Q, K), V, c, mask)


def dense_attention(Q, K, V, c):
    """Dense attention: the float64 reference every output error is measured against."""
    return masked_attention(Q, K, V, c)


def topk_mask_global(scores, keep):
    """Exact top-``keep`` keys of each row by true score (ties: lower index)."""
    scores = np.asarray(scores)
    order = np.lexsort((np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), -scores))
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, order[:, :keep], True, axis=1)
    return mask


def topk_mask_tiles(scores, block_size, top_k):
    """Exact top-``top_k`` of every tile by true score: the oracle for a per-tile selector."""
    scores = np.asarray(scores)
    mask = np.zeros(scores.shape, dtype=bool)
    for a, b in tile_ranges(scores.shape[1], block_size):
        mask[:, a:b] = topk_mask_global(scores[:, a:b], min(top_k, b - a))
    return mask


def selection_mask(result, seq_len):
    """Boolean [T, S] mask of the keys a golden result visited."""
    mask = np.zeros((len(result.rows), seq_len), dtype=bool)
    for i, row in enumerate(result.rows):
        mask[i, row.order] = True
    return mask


def error_metrics(out, ref):
    """Max abs, mean abs and relative (Frobenius) error of ``out`` against ``ref``."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    err = out - ref
    norm = np.linalg.norm(ref)
    return {
        "max_abs": float(np.max(np.abs(err))) if err.size else 0.0,
        "mean_abs": float(np.mean(np.abs(err))) if err.size else 0.0,
        "rel": float(np.linalg.norm(err) / norm) if norm > 0 else float(np.linalg.norm(err)),
    }


def recall(selected, oracle):
    """Mean over rows of |selected ∩ oracle| / |oracle|."""
    selected, oracle = np.asarray(selected, bool), np.asarray(oracle, bool)
    hit = (selected & oracle).sum(axis=1)
    return float(np.mean(hit / np.maximum(oracle.sum(axis=1), 1)))


def mass_kept(scores, c, selected):
    """Mean over rows of the dense softmax probability mass on the selected keys."""
    p = softmax_rows(c * np.asarray(scores, dtype=np.float64))
    return float(np.mean((p * np.asarray(selected, bool)).sum(axis=1)))


def work_counts(result, cfg, seq_len):
    """MACs and K/V rows fetched by a golden run, next to dense mode on the same shape.

    Prediction work is counted as DLZS shift-adds (``T·S·d``), formal work as MACs (``2·d`` per
    visited key: Q·K and w·V).
    """
    T = len(result.rows)
    keys = sum(r.keys for r in result.rows)
    dense_keys = T * seq_len
    return {
        "formal_macs": 2 * cfg.d * keys,
        "dense_macs": 2 * cfg.d * dense_keys,
        "shift_adds": 0 if result.ahat is None else T * seq_len * cfg.d,
        "keys_visited": keys,
        "keys_dense": dense_keys,
        "kept_fraction": keys / dense_keys,
    }


def error_bound(cfg, scores, V, c, mask, rescales):
    """Worst-case |O_fx/2^out_frac − O_ref| per row and element, from the fixed-point widths.

    ``O_ref`` is :func:`masked_attention` with the same ``c`` and ``mask``; ``rescales`` holds the
    rescale count of each row. With ``n`` rescales, the key weights of the datapath are
    ``u·g − a`` where ``u = 2^(c·(s − max))`` is exact and

    * ``g ∈ [G_lo, G_hi]``: every exponent argument is floored to ``exp_lut_bits`` fraction bits
      (``EXP_ARG_FLOOR`` + ``LUT_ADDR_TRUNC``: ``≤ 2^-exp_lut_bits``, at most ``n + 1`` times per
      key) and every table entry is within half an ulp (``LUT_ROUND``):
      ``G_hi = (1 + 2^-(w_frac+1))^(n+1)``, ``G_lo = 2^(-(n+1)·2^-exp_lut_bits)·(1 − 2^-(w_frac+1))^(n+1)``;
    * ``0 ≤ a ≤ A = 2^-w_frac·G_hi`` (``EXP_SHIFT_FLOOR``, one ulp, then rescaled);

    and ``RESCALE_FLOOR`` lowers ``l`` and each ``o`` by at most ``E = n·2^-w_frac·G_hi``. Since
    ``Σ u (V − O_ref) = 0``, the numerator error is at most
    ``(G_hi − G_lo)/2 · Σ u|V − O_ref| + A·Σ|V − O_ref| + E·(1 + |O_ref|)``, the denominator is
    at least ``G_lo·Σu − K·A − E`` for ``K`` visited keys, and ``DIV_ROUND_HALF_AWAY`` adds half
    an output ulp.
    """
    scores = np.asarray(scores, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    ref = masked_attention_from_scores(scores, V, c, mask)
    half = 2.0 ** -(cfg.w_frac + 1)
    bounds = np.zeros_like(ref)
    for i in range(scores.shape[0]):
        sel = np.flatnonzero(mask[i])
        n = int(rescales[i])
        g_hi = (1 + half) ** (n + 1)
        g_lo = 2.0 ** (-(n + 1) * 2.0 ** -cfg.exp_lut_bits) * (1 - half) ** (n + 1)
        A = 2.0 ** -cfg.w_frac * g_hi
        E = n * 2.0 ** -cfg.w_frac * g_hi
        s = scores[i, sel]
        u = np.exp2(c * (s - s.max()))
        dev = np.abs(V[sel] - ref[i])                      # [keys, d]
        num = (g_hi - g_lo) / 2 * (u @ dev) + A * dev.sum(axis=0) + E * (1 + np.abs(ref[i]))
        den = g_lo * u.sum() - len(sel) * A - E
        bounds[i] = num / den + 2.0 ** -(cfg.out_frac + 1)
    return ref, bounds


def masked_attention_from_scores(scores, V, c, mask):
    """:func:`masked_attention` from precomputed integer scores."""
    return softmax_rows(c * np.asarray(scores, dtype=np.float64), mask) @ \
        np.asarray(V, dtype=np.float64)
