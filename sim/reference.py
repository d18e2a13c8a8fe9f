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
           "work_counts", "scale_of"]


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
    s = exact_scores(Q, K).astype(np.float64)
    return softmax_rows(c * s, mask) @ np.asarray(V, dtype=np.float64)


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
