"""The quick accuracy check of ``sofa eval --quick``: audits that fail on real bugs.

The quick study (:mod:`sim.accuracy`, two shipped texts, 25 % of the keys, Bc 16) runs the
bit-exact SOFA pipeline (:mod:`sim.fastgolden`) on all-MiniLM-L6-v2. Accuracy figures alone
(recall, embedding cosine) move too little under many bugs of the datapath to catch them, so
the SOFA run is also audited against references that share no code with the fast model
(:func:`audit_sofa`), and :data:`QUICK_LIMITS` holds it to exact rules and proven bounds.
``tb/test_quickcheck.py`` injects faults into the fast model and checks that each breaks a
limit.
"""

import math

import numpy as np

from sim.golden import adaptive_eligible, exp2_lut
from sim.golden import dlzs_scores as golden_dlzs_scores
from sim.reference import masked_attention_from_scores, topk_mask_tiles


__all__ = ["audit_sofa", "QUICK_LIMITS", "QUICK_ADAPTIVE_LIMITS", "QUICK_ADAPTIVE",
           "QuickCheckFailed", "quick_check", "quick_margins"]


def audit_sofa(pred, hd):
    """The quick check's audits of one layer's SOFA run against references that share no code
    with :mod:`sim.fastgolden` (sums over rows and heads; :func:`quick_check` reads them):

    * ``rows_agree``: rows whose selection equals the per-tile top-k of the DLZS scores
      computed by :func:`sim.golden.dlzs_scores` and ranked by
      :func:`sim.reference.topk_mask_tiles` (ties to the lower index); only without clipping;
      with the adaptive budget (:class:`sim.adaptive.SofaAdaptive`) among the keys that
      :func:`sim.golden.adaptive_eligible` (the row-by-row loop) makes eligible;
    * ``kept_expected``: keys a row keeps by the rule, ``min(top_k, tile length)`` per tile
      (adaptive: ``min(top_k, eligible keys of the tile)``);
    * ``l_over``, ``l_under``: how far each row's fixed-point sum ``l`` lies above
      ``G_hi·Σu`` or below ``G_lo·Σu − K·A − E`` (the bounds of
      :func:`sim.reference.error_bound`, ``u = 2^(c·(s − m))`` over the visited keys), in widths
      of that interval; the largest over the rows (at most 0 for a correct datapath);
    * ``fp_err``: ``‖O − O_ref‖/‖O_ref‖`` per head with ``O_ref`` float64 base-2 softmax with
      the quantised ``c`` over the same selection: the fixed-point error alone."""
    sel, res, cfg, scale = pred.run(hd)
    H, T, S, _ = hd.shape
    out = {"rows_agree": 0, "kept_expected": 0, "l_over": -np.inf, "l_under": -np.inf,
           "fp_err": 0.0}
    tiles = np.minimum(pred.top_k, np.diff(np.append(np.arange(0, S, cfg.block_size), S)))
    adaptive = hasattr(pred, "adapt_registers")
    out["kept_expected"] = 0 if adaptive else H * T * int(tiles.sum())
    if adaptive:
        a_scale, a_shift = pred.adapt_registers(cfg, hd)
        lut = exp2_lut(cfg)
    half = 2.0 ** -(cfg.w_frac + 1)
    for h in range(H):
        mask = sel.mask[h]
        if math.isinf(pred.radius_nat):
            ahat = golden_dlzs_scores(hd.Q[h], hd.K[h], cfg)
            if adaptive:
                elig = np.array([adaptive_eligible(row, cfg, mass=pred.mass,
                                                   sel_scale=a_scale[h], shift=a_shift[h],
                                                   lut=lut)[0] for row in ahat])
                low = ahat.min() - 1
                ref_mask = topk_mask_tiles(np.where(elig, ahat, low), cfg.block_size,
                                           pred.top_k) & elig
                out["kept_expected"] += int(ref_mask.sum())
            else:
                ref_mask = topk_mask_tiles(ahat, cfg.block_size, pred.top_k)
            out["rows_agree"] += int((ref_mask == mask).all(axis=1).sum())
        c = scale[h] / float(1 << cfg.c_frac)
        s = hd.scores[h].astype(np.float64)
        m = np.where(mask, s, -np.inf).max(axis=1, keepdims=True)
        u = np.where(mask, np.exp2(c * (s - m)), 0.0).sum(axis=1)
        n = res.rescales[h].astype(np.float64)
        g_hi = (1 + half) ** (n + 1)
        g_lo = 2.0 ** (-(n + 1) * 2.0 ** -cfg.exp_lut_bits) * (1 - half) ** (n + 1)
        A = 2.0 ** -cfg.w_frac * g_hi
        E = n * A
        hi = g_hi * u
        lo = g_lo * u - mask.sum(axis=1) * A - E
        lf = res.l[h] / float(1 << cfg.w_frac)
        width = hi - lo
        out["l_over"] = max(out["l_over"], float(((lf - hi) / width).max()))
        out["l_under"] = max(out["l_under"], float(((lo - lf) / width).max()))
        ref = masked_attention_from_scores(hd.scores[h], hd.V[h], c, mask)
        out["fp_err"] += float(np.linalg.norm(sel.out[h] - ref) /
                               max(np.linalg.norm(ref), 1e-30))
    return sel, out


#: What ``sofa eval --quick`` holds the bit-exact SOFA run (Bc 16, 25 %, R = ∞, the first two
#: shipped texts) to: ``(metric, "min" or "max", limit)``; the audits are those of
#: :func:`audit_sofa`. Measured with the correct model: selection agreement 1, kept over the
#: rule 0, l above/below its bounds −0.0046 / −0.35 widths, fixed-point error 0.00075, recall
#: 0.649, tile recall 0.918, cosine 0.945 / 0.930. The audits are exact or proven bounds, so the
#: injected faults of ``tb/test_quickcheck.py`` (exponent off by one, table address off by one,
#: rescale skipped on a miss, reversed tie order, ``top_k + 1`` kept) fail them by far; the
#: accuracy limits leave about 0.02 for float32 BLAS differences between machines.
QUICK_LIMITS = (
    ("audit.selection_agrees", "min", 1.0),
    ("audit.kept_over_rule", "max", 0.0),
    ("audit.l_over", "max", 0.0),
    ("audit.l_under", "max", 0.0),
    ("audit.fp_err", "max", 0.003),
    ("recall", "min", 0.62),
    ("tile_recall", "min", 0.89),
    ("cos_mean", "min", 0.93),
    ("cos_min", "min", 0.915),
)


#: The limits of the adaptive budget's quick run (Bc 64, at most 16 a tile, p = 128/256,
#: :data:`QUICK_ADAPTIVE`): the audits, and its cosine (measured: selection agreement 1,
#: l beyond its bounds −0.0055 / −0.33 widths, fixed-point error 0.00063, kept 18.0 %,
#: cosine 0.952 / 0.937).
QUICK_ADAPTIVE_LIMITS = tuple(x for x in QUICK_LIMITS if x[0].startswith("audit.")) + (
    ("cos_mean", "min", 0.935),
)
#: The adaptive budget of the quick check: ``SofaAdaptive(*QUICK_ADAPTIVE)``.
QUICK_ADAPTIVE = (64, 16, 128)


class QuickCheckFailed(RuntimeError):
    """``sofa eval --quick``: the bit-exact SOFA run broke a limit of :data:`QUICK_LIMITS`."""


def _metric(entry, key):
    for part in key.split("."):
        entry = entry[part]
    return entry


def quick_check(entry, limits=QUICK_LIMITS):
    """The limits of ``limits`` that ``entry`` (an audited SOFA entry) breaks, one line each
    (empty: the check passes)."""
    bad = []
    for key, kind, limit in limits:
        value = _metric(entry, key)
        if value is None or (value < limit if kind == "min" else value > limit):
            bad.append(f"{key} = {value:.6g} {'<' if kind == 'min' else '>'} {limit:g}")
    return bad


def quick_margins(entry, limits=QUICK_LIMITS):
    """``{metric: (value, limit, margin)}``, the margin positive when the limit holds."""
    return {key: (_metric(entry, key), limit,
                  (_metric(entry, key) - limit) * (1 if kind == "min" else -1))
            for key, kind, limit in limits}
