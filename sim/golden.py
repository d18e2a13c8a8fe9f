"""Bit-exact integer golden model of SOFA: DLZS -> SADS -> SU-FA -> divide.

Every function here mirrors an RTL unit operator for operator, with the same widths and the
same rounding; each rounding step is named in its docstring. The RTL must match these
functions exactly. Integers are numpy int64 (``spec.config`` guarantees every intermediate fits)
or Python ints.

The named rounding steps (``EXP_ARG_FLOOR``, ``LUT_ADDR_TRUNC``, ``LUT_ROUND``,
``EXP_SHIFT_FLOOR``, ``RESCALE_FLOOR``, ``DIV_ROUND_HALF_AWAY``) and the functions that
implement the shared ones are in :mod:`spec.numerics`.
"""

from dataclasses import dataclass, field

import numpy as np

from spec.config import ConfigError
from spec.numerics import (div_round_half_away, exp2_fx, exp2_lut, exp_arg, tail_blend,
                           tail_fraction, tail_mean)
from spec.regmap import ADAPT_MASS_FRAC


__all__ = [
    "lzc", "log_shift", "dlzs_term", "dlzs_scores", "exact_scores",
    "tile_ranges", "sads_row", "TileSelection", "adaptive_eligible", "adaptive_tail",
    "tail_means", "tail_blend_row",
    "exp2_lut", "exp2_fx", "exp_arg", "div_round_half_away",
    "sufa_row", "RowTrace", "sofa_attention", "GoldenResult", "check_inputs",
]


# -- DLZS -----------------------------------------------------------------------------------

def lzc(value, width):
    """Leading zeros of the unsigned ``width``-bit ``value`` (``width`` for zero)."""
    value = int(value)
    if not 0 <= value < (1 << width):
        raise ValueError(f"lzc: {value} does not fit {width} unsigned bits")
    return width - value.bit_length()


def log_shift(q, width):
    """DLZS log operand: ``(negative, p, nonzero)`` with ``p = floor(log2|q|) = width-1-LZ(|q|)``.

    ``|q|`` of the most negative value is ``2^(width-1)``, which needs the full ``width`` bits:
    hence the LZ of a ``width``-bit magnitude.
    """
    q = int(q)
    if q == 0:
        return (False, 0, False)
    return (q < 0, width - 1 - lzc(abs(q), width), True)


def dlzs_term(q, k, width):
    """``dlzs(q, k) = 0 if q == 0 else sign(q)·(k << p(q))`` (the paper's Fig. 7: 6, 24 -> 96)."""
    neg, p, nz = log_shift(q, width)
    if not nz:
        return 0
    term = int(k) << p
    return -term if neg else term


def _log_operand(Q, width):
    """Vectorised :func:`log_shift`: (sign ∈ {-1,0,1}, p) arrays."""
    Q = np.asarray(Q, dtype=np.int64)
    mag = np.abs(Q)
    p = np.zeros_like(mag)
    for b in range(1, width):                   # p = bit_length(|q|) - 1, 0 for q == 0
        p = np.where(mag >= (1 << b), b, p)
    return np.sign(Q), p


def dlzs_scores(Q, K, cfg):
    """Predicted scores ``Â[i, j] = Σ_d dlzs(Q[i,d], K[j,d])``, exact integers, shape [T, S]."""
    sign, p = _log_operand(Q, cfg.data_width)
    K = np.asarray(K, dtype=np.int64)
    # (k << p) · sign, summed over d: [T,1,d] against [1,S,d].
    terms = (K[None, :, :] << p[:, None, :]) * sign[:, None, :]
    return terms.sum(axis=2)


def exact_scores(Q, K):
    """Exact integer scores ``s = Q·Kᵀ``, shape [T, S]."""
    return np.asarray(Q, dtype=np.int64) @ np.asarray(K, dtype=np.int64).T


# -- SADS -----------------------------------------------------------------------------------

def tile_ranges(seq_len, block_size):
    """``(start, stop)`` of each tile; the last tile is short when S is not a multiple of Bc."""
    return [(t, min(t + block_size, seq_len)) for t in range(0, seq_len, block_size)]


@dataclass
class TileSelection:
    """SADS result for one tile of one row.

    Attributes
    ----------
    indices : list of int
        Selected key indices, in output order (descending Â, ties: lower index first).
    values : list of int
        Their Â.
    blocked_radius : int
        Keys blocked by the sphere rule ``Â < run_max - R``.
    blocked_full : int
        Keys blocked because they cannot enter a full survivor list (``Â <= min``).
    blocked_mass : int
        Keys blocked as not eligible under the adaptive budget (:func:`adaptive_eligible`).
    entered : int
        Keys that entered the sorter.
    steps : int
        Sorter steps that ran: batches with at least one entering key. A batch whose keys are
        all blocked skips the sorter, which is where clipping saves work.
    """
    indices: list
    values: list
    blocked_radius: int = 0
    blocked_full: int = 0
    blocked_mass: int = 0
    entered: int = 0
    steps: int = 0


def _histogram(ahat_row, cfg, shift):
    """The adaptive gate's histogram of one row: each key's bin
    ``min(adapt_bins − 1, (max Â − Â_j) >> shift)`` and the count of every bin."""
    a = [int(v) for v in ahat_row]
    nb, top = cfg.adapt_bins, max(a)
    bins = [min(nb - 1, (top - v) >> shift) for v in a]
    cnt = [0] * nb
    for b in bins:
        cnt[b] += 1
    return bins, cnt


def _bin_weights(cfg, shift, scale, lut=None):
    """Every bin's weight at its upper edge, ``exp2_fx(exp_arg(−(b << shift), scale))``."""
    lut = exp2_lut(cfg) if lut is None else lut
    return [exp2_fx(exp_arg(-(b << shift), scale, cfg), cfg, lut)
            for b in range(cfg.adapt_bins)]


def adaptive_eligible(ahat_row, cfg, *, mass, sel_scale, shift, lut=None):
    """The adaptive budget's eligible keys of one row: ``(eligible, b_star)``.

    The first passes over the row's Â (docs/numerics.md, "Adaptive budget"):

    1. ``M = max Â`` over the row;
    2. each key falls into bin ``b_j = min(adapt_bins − 1, (M − Â_j) >> shift)``; ``cnt[b]``
       counts the keys of bin ``b``;
    3. the bin's weight is that of its upper edge through the SU-FA exponent path,
       ``W[b] = exp2_fx(exp_arg(−(b << shift), sel_scale))`` (``EXP_ARG_FLOOR``,
       ``LUT_ADDR_TRUNC``, ``EXP_SHIFT_FLOOR``), UQ1.``w_frac``;
    4. ``b_star`` is the first bin at which the cumulative mass reaches the fraction
       ``mass / 2^ADAPT_MASS_FRAC`` of the total, exactly:
       ``(Σ_{b ≤ b_star} cnt[b]·W[b]) << ADAPT_MASS_FRAC ≥ mass · Σ_b cnt[b]·W[b]``;
    5. key ``j`` is eligible iff ``b_j ≤ b_star``.

    Every quantity is an exact integer; the row's best key is always eligible (``W[0]`` is 1.0).
    """
    nb = cfg.adapt_bins
    bins, cnt = _histogram(ahat_row, cfg, shift)
    weight = _bin_weights(cfg, shift, sel_scale, lut)
    total = sum(c * w for c, w in zip(cnt, weight))
    cum, b_star = 0, nb - 1
    for b in range(nb):
        cum += cnt[b] * weight[b]
        if (cum << ADAPT_MASS_FRAC) >= mass * total:
            b_star = b
            break
    return [b <= b_star for b in bins], b_star


def adaptive_tail(ahat_row, cfg, *, b_star, tail_scale, shift, lut=None):
    """The tail blend's dropped mass ``f`` of one row (docs/numerics.md, "Tail blend"), from
    the adaptive gate's histogram (the bins of :func:`adaptive_eligible`, same ``shift``) and
    its ``b_star``: a second weight sweep at the scale ``tail_scale`` (``alpha·c``),

    ``W2[b] = exp2_fx(exp_arg(−(b << shift), tail_scale))`` (the bin's upper edge),
    ``total = Σ_b cnt[b]·W2[b]``, ``drop = Σ_{b > b_star} cnt[b]·W2[b]``,
    ``f = floor(drop · 2^TAIL_FRAC / total)`` (``TAIL_FRAC_FLOOR``).

    The bins above ``b_star`` are the keys that are not eligible; keys eligible but dropped
    by the per-tile cap are not counted. ``W2[0]`` is 1.0 and bin 0 is never dropped, so
    ``drop < total``."""
    _, cnt = _histogram(ahat_row, cfg, shift)
    weight = _bin_weights(cfg, shift, tail_scale, lut)
    total = sum(c * w for c, w in zip(cnt, weight))
    drop = sum(c * w for b, (c, w) in enumerate(zip(cnt, weight)) if b > b_star)
    return tail_fraction(drop, total)


def tail_means(V, seq_len, cfg):
    """The head's mean V row, ``d`` elements with ``out_frac`` fraction bits: the column sums
    of V's rows ``0 … S−1``, each divided by S (``TAIL_MEAN_ROUND``)."""
    colsum = np.asarray(V, dtype=np.int64)[:seq_len].sum(axis=0)
    return np.array([tail_mean(c, seq_len, cfg) for c in colsum], dtype=np.int64)


def tail_blend_row(out_row, vbar, f):
    """One output row blended with the mean V row by ``f`` (``TAIL_BLEND_ROUND``)."""
    return np.array([tail_blend(o, v, f) for o, v in zip(out_row, vbar)], dtype=np.int64)


def sads_row(ahat_row, cfg, *, top_k, radius, seq_len=None, eligible=None):
    """SADS selection for one query row: a :class:`TileSelection` per tile.

    Keys arrive in batches of ``sort_width - k_max`` consecutive keys of a tile (the last batch
    of a tile may be short). ``run_max`` is the largest Â of the row's earlier batches (-∞ for
    the first), carried across tiles. A key is blocked if ``Â < run_max - R`` (unless
    ``R == radius_inf``), or if the tile already holds ``top_k`` survivors and ``Â`` is not
    larger than the ``top_k``-th of them (a later key loses the tie). Both tests use the state
    before the batch. The tile yields the ``top_k`` best survivors.

    ``eligible`` (adaptive budget, :func:`adaptive_eligible`): a key that is not eligible is
    blocked (``blocked_mass``), tested after the radius and before the full list.
    """
    der = cfg.derived
    ahat_row = np.asarray(ahat_row, dtype=np.int64)
    seq_len = len(ahat_row) if seq_len is None else seq_len
    clip = radius != der.radius_inf
    run_max = None
    tiles = []
    for start, stop in tile_ranges(seq_len, cfg.block_size):
        survivors = []                        # (value, index), best first
        sel = TileSelection([], [])
        for b0 in range(start, stop, der.batch):
            batch = range(b0, min(b0 + der.batch, stop))
            full_thr = survivors[top_k - 1][0] if len(survivors) >= top_k else None
            entering = []
            for j in batch:
                v = int(ahat_row[j])
                if clip and run_max is not None and v < run_max - radius:
                    sel.blocked_radius += 1
                elif eligible is not None and not eligible[j]:
                    sel.blocked_mass += 1
                elif full_thr is not None and v <= full_thr:
                    sel.blocked_full += 1
                else:
                    entering.append((v, j))
            sel.entered += len(entering)
            sel.steps += bool(entering)
            survivors = sorted(survivors + entering, key=lambda e: (-e[0], e[1]))[:cfg.k_max]
            batch_max = max(int(ahat_row[j]) for j in batch)
            run_max = batch_max if run_max is None else max(run_max, batch_max)
        kept = survivors[:top_k]
        sel.values = [v for v, _ in kept]
        sel.indices = [j for _, j in kept]
        tiles.append(sel)
    return tiles


# -- SU-FA ----------------------------------------------------------------------------------

@dataclass
class RowTrace:
    """SU-FA state of one row after the last key, plus event counts."""
    m: int = None
    l: int = 0
    o: np.ndarray = None
    keys: int = 0
    misses: int = 0
    rescales: int = 0
    order: list = field(default_factory=list)   # keys in processing order
    steps: list = field(default_factory=list)   # (key, s, m, w) per key, for debugging


def sufa_row(q, K, V, tiles, scale_log2e, cfg, lut=None, keep_steps=False):
    """Exact attention over the keys of ``tiles`` (a list of index lists, in visiting order).

    ``m`` starts at -∞. At each non-empty tile start ``m <- max(m, s(first), s(second))``
    (max assurance); a later key with ``s > m`` is a miss and sets ``m <- s``. Whenever ``m``
    grows while ``l > 0``, ``l`` and ``o`` are rescaled once by ``exp2_fx(exp_arg(m_old -
    m_new))`` (``RESCALE_FLOOR``). Each key adds ``w = exp2_fx(exp_arg(s - m))`` to ``l`` and
    ``w·V[j]`` to ``o``.
    """
    lut = exp2_lut(cfg) if lut is None else lut
    q = np.asarray(q, dtype=np.int64)
    tr = RowTrace(o=np.zeros(cfg.d, dtype=np.int64))

    def raise_max(new_m):
        if tr.m is not None and tr.l > 0:
            r = exp2_fx(exp_arg(tr.m - new_m, scale_log2e, cfg), cfg, lut)
            tr.l = (tr.l * r) >> cfg.w_frac
            tr.o = (tr.o * r) >> cfg.w_frac
            tr.rescales += 1
        tr.m = new_m

    for sel in tiles:
        if len(sel) == 0:
            continue
        scores = [int(np.dot(q, np.asarray(K[j], dtype=np.int64))) for j in sel]
        cand = max(scores[:2])
        if tr.m is None or cand > tr.m:
            raise_max(cand)
        for j, s in zip(sel, scores):
            if s > tr.m:
                tr.misses += 1
                raise_max(s)
            w = exp2_fx(exp_arg(s - tr.m, scale_log2e, cfg), cfg, lut)
            tr.l += w
            tr.o = tr.o + w * np.asarray(V[j], dtype=np.int64)
            tr.keys += 1
            tr.order.append(int(j))
            if keep_steps:
                tr.steps.append((int(j), s, tr.m, w))
    return tr


def divide_row(tr, cfg):
    """``O = o·2^out_frac / l`` per element (``DIV_ROUND_HALF_AWAY``); zeros if ``l == 0``."""
    if tr.l == 0:
        return np.zeros(cfg.d, dtype=np.int64)
    return np.array([div_round_half_away(int(v) << cfg.out_frac, tr.l) for v in tr.o],
                    dtype=np.int64)


# -- whole head -----------------------------------------------------------------------------

@dataclass
class GoldenResult:
    """Output and named intermediates of :func:`sofa_attention`.

    Attributes
    ----------
    out : ndarray [T, d]
        O in units of V's integer scale with ``out_frac`` fractional bits.
    ahat : ndarray [T, S] or None
        DLZS predicted scores (None in dense mode).
    scores : ndarray [T, S]
        Exact integer scores (all of them, for analysis; the RTL computes only selected ones).
    selection : list of list of TileSelection
        Per row, per tile (None in dense mode).
    rows : list of RowTrace
        Final SU-FA state and counts per row.
    tail_f : list of int or None
        The tail blend's ``f`` per row (None when the blend is off); ``out`` is then the
        blended output.
    vbar : ndarray [d] or None
        The head's mean V row of the tail blend (None when it is off).
    """
    out: np.ndarray
    ahat: np.ndarray
    scores: np.ndarray
    selection: list
    rows: list
    tail_f: list = None
    vbar: np.ndarray = None

    def counters(self):
        """Totals of the events the hardware counts."""
        sel = [t for row in (self.selection or []) for t in row]
        return {
            "keys": sum(r.keys for r in self.rows),
            "misses": sum(r.misses for r in self.rows),
            "rescales": sum(r.rescales for r in self.rows),
            "blocked_radius": sum(t.blocked_radius for t in sel),
            "blocked_full": sum(t.blocked_full for t in sel),
            "blocked_mass": sum(t.blocked_mass for t in sel),
            "entered": sum(t.entered for t in sel),
            "sort_steps": sum(t.steps for t in sel),
        }


def check_inputs(Q, K, V, cfg, params):
    """Shapes, dtypes and ranges of one call; a :class:`ConfigError` naming the bad input."""
    params.validate(cfg)
    lo, hi = -(1 << (cfg.data_width - 1)), (1 << (cfg.data_width - 1)) - 1
    arrays = {}
    for name, arr, rows in (("Q", Q, None), ("K", K, params.seq_len), ("V", V, params.seq_len)):
        a = np.asarray(arr)
        if a.ndim != 2 or a.shape[1] != cfg.d:
            raise ConfigError(f"{name} must have shape [{'T' if rows is None else rows}, "
                              f"{cfg.d}] (d = {cfg.d}), got {list(a.shape)}")
        if rows is not None and a.shape[0] != rows:
            raise ConfigError(f"{name} has {a.shape[0]} rows but seq_len = {rows}")
        if not np.issubdtype(a.dtype, np.integer):
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise ConfigError(f"{name} must hold integers (quantise first)")
        a = a.astype(np.int64)
        if a.size and (a.min() < lo or a.max() > hi):
            bad = a.min() if a.min() < lo else a.max()
            raise ConfigError(f"{name} holds {bad}, outside the signed {cfg.data_width}-bit "
                              f"range {lo} … {hi}")
        arrays[name] = a
    if arrays["Q"].shape[0] == 0:
        raise ConfigError("Q has no rows")
    return arrays["Q"], arrays["K"], arrays["V"]


def sofa_attention(Q, K, V, cfg, params, keep_steps=False, kpred=None):
    """The whole SOFA pipeline for one head; returns a :class:`GoldenResult`.

    ``kpred`` (``[S, d]``, default K): the keys DLZS predicts from; on-demand K/V passes
    ``K̂`` (:func:`sim.ondemand.predict_keys`) while SU-FA attends over the exact K.

    Sparse mode: DLZS Â, the adaptive budget's eligible keys if ``params.adaptive``, SADS
    per tile, SU-FA over the selection in SADS order; with ``params.tail`` each output row is
    then blended with the head's mean V row by its predicted dropped mass
    (:func:`adaptive_tail`, :func:`tail_means`, :func:`tail_blend_row`). Dense mode:
    every key of every tile in natural order through the same SU-FA.
    """
    Q, K, V = check_inputs(Q, K, V, cfg, params)
    lut = exp2_lut(cfg)
    scores = exact_scores(Q, K)
    tiles_nat = [list(range(a, b)) for a, b in tile_ranges(params.seq_len, cfg.block_size)]
    if kpred is not None:
        kpred = check_inputs(Q, kpred, kpred, cfg, params)[1]
    ahat = None if params.dense else dlzs_scores(Q, K if kpred is None else kpred, cfg)
    selection, rows, out = [], [], []
    tail_f, vbar = ([], tail_means(V, params.seq_len, cfg)) if params.tail else (None, None)
    for i in range(Q.shape[0]):
        if params.dense:
            order = tiles_nat
        else:
            eligible = None
            if params.adaptive:
                eligible, b_star = adaptive_eligible(ahat[i], cfg, mass=params.adapt_mass,
                                                     sel_scale=params.adapt_scale,
                                                     shift=params.adapt_shift, lut=lut)
                if params.tail:
                    tail_f.append(adaptive_tail(ahat[i], cfg, b_star=b_star,
                                                tail_scale=params.tail_scale,
                                                shift=params.adapt_shift, lut=lut))
            sel = sads_row(ahat[i], cfg, top_k=params.top_k, radius=params.radius,
                           eligible=eligible)
            selection.append(sel)
            order = [t.indices for t in sel]
        tr = sufa_row(Q[i], K, V, order, params.scale_log2e, cfg, lut, keep_steps)
        rows.append(tr)
        o_row = divide_row(tr, cfg)
        if params.tail:
            o_row = tail_blend_row(o_row, vbar, tail_f[-1])
        out.append(o_row)
    return GoldenResult(out=np.array(out, dtype=np.int64), ahat=ahat, scores=scores,
                        selection=None if params.dense else selection, rows=rows,
                        tail_f=tail_f, vbar=vbar)
