"""Vectorised bit-exact SOFA pipeline: :mod:`sim.golden`, numpy over rows and heads.

:func:`sim.golden.sofa_attention` is a Python loop per query row, which is right for the RTL
checker and far too slow for a model-scale accuracy study (6 layers x 12 heads x ~200 rows x
dozens of configurations). This module computes the same integers with numpy over all rows of
several heads at once; ``tb/test_accuracy.py`` proves it equal to the golden model (outputs, Â,
per-tile selections and SADS counters, per-row m/l/o state, key order, miss and rescale counts)
on random data over several configurations, dense and sparse, with and without clipping, with
S not a multiple of ``block_size``.

How each stage is vectorised while staying exact:

* **DLZS**: ``dlzs(q, k) = sign(q)·(k << p(q)) = (sign(q)·2^p(q))·k``, so
  ``Â = Q_pow2 · Kᵀ`` with ``Q_pow2 = sign(Q)·2^floor(log2|Q|)``: one integer matmul (done in
  float64, exact while ``d·2^(2W-2) < 2^53``, which :func:`matmul_exact` checks).
* **SADS**: the kept set of a tile is the ``top_k`` best (descending Â, ties to the lower index)
  of the keys that *entered* the sorter, because the survivor list is always the top ``k_max``
  of everything entered so far and a key blocked as "cannot beat a full list" could never be
  among the ``top_k``. ``run_max`` before a batch is the prefix maximum of Â over the row's
  earlier keys. The per-batch "full list" threshold (the ``top_k``-th entered value) is kept per
  row with ``np.partition`` so the ``blocked_full``/``entered``/``steps`` counters match too.
* **SU-FA**: a loop over tiles with every row of every head updated at once. After the max
  assurance at the tile start, ``m`` changes inside a tile only on a miss, so a row with no
  selected key above ``m`` adds all its keys of the tile at one ``m`` in one step (integer sums
  are order-free); only rows with a miss in that tile go key by key. Misses, rescales, the exp2
  table and every named rounding of :mod:`sim.golden` are applied elementwise.
"""

from dataclasses import dataclass

import numpy as np

from spec.config import ConfigError, RunParams
from sim.golden import check_inputs, exp2_lut, tile_ranges
from spec.numerics import TAIL_FRAC
from spec.regmap import ADAPT_MASS_FRAC


__all__ = ["matmul_exact", "FastResult", "sofa_heads", "sofa_attention_fast", "dlzs_scores_fast",
           "exact_scores_fast", "sads_rows", "pow2_operand", "exp2_fx_vec", "exp_arg_vec",
           "divide_vec", "adaptive_eligible_vec", "adaptive_tail_vec", "tail_means_vec",
           "tail_blend_vec"]


_NEG = np.iinfo(np.int64).min


def matmul_exact(A, B, bound):
    """``A @ B`` of integer arrays, exact: through float64 BLAS when ``bound`` (a bound on the
    sum of the magnitudes of the products of one output element) is below 2^53, so every
    partial sum is an exactly representable integer; else in int64."""
    if bound < (1 << 53):
        return np.rint(np.asarray(A, np.float64) @ np.asarray(B, np.float64)).astype(np.int64)
    return np.asarray(A, np.int64) @ np.asarray(B, np.int64)


def leading_one(mag):
    """``floor(log2 m)`` elementwise for integer magnitudes ``m`` (0 where ``m = 0``)."""
    mag = np.asarray(mag, dtype=np.int64)
    p = np.zeros_like(mag)
    nz = mag > 0
    # frexp gives m = f·2^e with f in [0.5, 1), exact for int64 < 2^53.
    p[nz] = np.frexp(mag[nz].astype(np.float64))[1] - 1
    return p


def pow2_operand(Q):
    """``sign(q)·2^floor(log2|q|)`` elementwise (0 for q = 0): the DLZS log operand as a
    multiplier, so that ``dlzs(q, k) = pow2_operand(q)·k``."""
    Q = np.asarray(Q, dtype=np.int64)
    return np.sign(Q) * (np.int64(1) << leading_one(np.abs(Q)))


def dlzs_scores_fast(Q, K, cfg):
    """DLZS predicted scores, ``[..., T, S]``, equal to :func:`sim.golden.dlzs_scores`."""
    bound = cfg.d << (2 * cfg.data_width - 2)
    return matmul_exact(pow2_operand(Q), np.swapaxes(np.asarray(K), -1, -2), bound)


def exact_scores_fast(Q, K, cfg):
    """Exact integer scores ``Q·Kᵀ``, ``[..., T, S]``."""
    bound = cfg.d << (2 * cfg.data_width - 2)
    return matmul_exact(Q, np.swapaxes(np.asarray(K), -1, -2), bound)


def exp_arg_vec(diff, c, cfg):
    """:func:`sim.golden.exp_arg` elementwise (``EXP_ARG_FLOOR``); ``c`` may be per row."""
    return (np.asarray(diff, np.int64) * np.asarray(c, np.int64)) >> (cfg.c_frac - cfg.exp_frac)


def exp2_fx_vec(x, cfg, lut):
    """:func:`sim.golden.exp2_fx` elementwise for ``x <= 0`` (``LUT_ADDR_TRUNC``,
    ``EXP_SHIFT_FLOOR``); ``lut`` is ``np.asarray(exp2_lut(cfg))``."""
    x = np.asarray(x, np.int64)
    if np.any(x > 0):
        raise ValueError("exp2_fx_vec: positive argument; the SU-FA argument is s - m <= 0")
    n = x >> cfg.exp_frac                                   # floor, <= 0
    f = x - (n << cfg.exp_frac)
    addr = f >> (cfg.exp_frac - cfg.exp_lut_bits)
    return lut[addr] >> np.minimum(-n, 62)


def divide_vec(o, l, cfg):
    """:func:`sim.golden.divide_row` for every row (``DIV_ROUND_HALF_AWAY``; zeros if l = 0)."""
    o = np.asarray(o, np.int64)
    l = np.asarray(l, np.int64)[..., None]
    num = o << cfg.out_frac
    den = np.where(l > 0, l, 1)
    mag = np.abs(num)
    q = mag // den
    r = mag - q * den
    q = q + (2 * r >= den)
    return np.where(l > 0, np.where(num < 0, -q, q), 0)


@dataclass
class FastResult:
    """Output and intermediates of :func:`sofa_heads` (leading axes ``[H, T]``).

    Attributes
    ----------
    out : int64 [H, T, d]
        O with ``out_frac`` fractional bits, as :attr:`sim.golden.GoldenResult.out`.
    ahat, scores : int64 [H, T, S]
        DLZS Â (None in dense mode) and exact scores.
    sel : int64 [H, T, n_tiles, kt]
        Visited keys per tile in visiting order, -1 padded (``kt = top_k``, or ``block_size``
        in dense mode).
    sel_ahat : int64 [H, T, n_tiles, kt]
        Their Â (0 where padded or in dense mode).
    blocked_radius, blocked_full, blocked_mass, entered, steps : int64 [H, T, n_tiles]
        SADS counters per tile (zeros in dense mode).
    m, l : int64 [H, T]; o : int64 [H, T, d]
        Final SU-FA state (``m`` undefined where ``has_m`` is false: no key visited).
    has_m : bool [H, T]
    keys, misses, rescales : int64 [H, T]
    tail_f : int64 [H, T] or None
        The tail blend's ``f`` per row (None when no head blends; 0 for a head that does
        not); ``out`` is then blended.
    vbar : int64 [H, d] or None
        Each head's mean V row (``out_frac`` fraction bits) when the blend is on somewhere.
    """
    out: np.ndarray
    ahat: np.ndarray
    scores: np.ndarray
    sel: np.ndarray
    sel_ahat: np.ndarray
    blocked_radius: np.ndarray
    blocked_full: np.ndarray
    blocked_mass: np.ndarray
    entered: np.ndarray
    steps: np.ndarray
    m: np.ndarray
    has_m: np.ndarray
    l: np.ndarray
    o: np.ndarray
    keys: np.ndarray
    misses: np.ndarray
    rescales: np.ndarray
    tail_f: np.ndarray = None
    vbar: np.ndarray = None

    def mask(self):
        """Boolean ``[H, T, S]`` of the visited keys."""
        H, T, S = self.scores.shape
        m = np.zeros((H * T, S + 1), dtype=bool)
        flat = self.sel.reshape(H * T, -1)
        m[np.arange(H * T)[:, None], np.where(flat >= 0, flat, S)] = True
        return m[:, :S].reshape(H, T, S)

    def counters(self):
        """Totals, as :meth:`sim.golden.GoldenResult.counters`."""
        return {"keys": int(self.keys.sum()), "misses": int(self.misses.sum()),
                "rescales": int(self.rescales.sum()),
                "blocked_radius": int(self.blocked_radius.sum()),
                "blocked_full": int(self.blocked_full.sum()),
                "blocked_mass": int(self.blocked_mass.sum()),
                "entered": int(self.entered.sum()), "sort_steps": int(self.steps.sum())}


def _per_head(value, H, name):
    arr = np.asarray(value, dtype=np.int64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, H)
    if arr.size != H:
        raise ConfigError(f"{name} must be one integer or one per head ({H}), got {arr.size}")
    return arr


def _histogram_vec(ahat, cfg, shift):
    """The adaptive gate's histogram of every row of ``ahat`` [N, S] at ``shift`` [N]:
    ``(bins [N, S], counts [N, bins], the bins' upper edges [N, bins])``."""
    ahat = np.asarray(ahat, np.int64)
    N, S = ahat.shape
    nb = cfg.adapt_bins
    shift = np.asarray(shift, np.int64)[:, None]
    bins = np.minimum(nb - 1, (ahat.max(axis=1, keepdims=True) - ahat) >> shift)
    cnt = np.zeros((N, nb), np.int64)
    np.add.at(cnt, (np.repeat(np.arange(N), S), bins.ravel()), 1)
    edge = -(np.arange(nb, dtype=np.int64)[None, :] << shift)       # the bins' upper edges
    return bins, cnt, edge


def adaptive_eligible_vec(ahat, cfg, mass, sel_scale, shift, lut):
    """:func:`sim.golden.adaptive_eligible` for every row of ``ahat`` [N, S]; ``mass``,
    ``sel_scale``, ``shift`` [N]. Returns ``(eligible [N, S] bool, b_star [N])``."""
    bins, cnt, edge = _histogram_vec(ahat, cfg, shift)
    weight = exp2_fx_vec(exp_arg_vec(edge, np.asarray(sel_scale, np.int64)[:, None], cfg),
                         cfg, lut)
    cum = np.cumsum(cnt * weight, axis=1)
    reach = (cum << ADAPT_MASS_FRAC) >= np.asarray(mass, np.int64)[:, None] * cum[:, -1:]
    b_star = np.argmax(reach, axis=1)          # the last bin always reaches it
    return bins <= b_star[:, None], b_star


def adaptive_tail_vec(ahat, cfg, b_star, tail_scale, shift, lut):
    """:func:`sim.golden.adaptive_tail` for every row of ``ahat`` [N, S]; ``b_star``,
    ``tail_scale``, ``shift`` [N]. Returns ``f`` [N] (``TAIL_FRAC_FLOOR``)."""
    nb = cfg.adapt_bins
    _, cnt, edges = _histogram_vec(ahat, cfg, shift)
    part = cnt * exp2_fx_vec(exp_arg_vec(edges, np.asarray(tail_scale, np.int64)[:, None], cfg),
                             cfg, lut)
    total = part.sum(axis=1)
    drop = (part * (np.arange(nb)[None, :] > np.asarray(b_star)[:, None])).sum(axis=1)
    return (drop << TAIL_FRAC) // total


def tail_means_vec(V, seq_len, cfg):
    """:func:`sim.golden.tail_means` for every head of ``V`` [H, S, d]: [H, d]
    (``TAIL_MEAN_ROUND``)."""
    colsum = np.asarray(V, np.int64)[:, :seq_len].sum(axis=1)
    return divide_vec(colsum, np.full(len(colsum), seq_len), cfg)   # the same rounding as O


def tail_blend_vec(out, vbar, f):
    """:func:`spec.numerics.tail_blend` elementwise: ``out`` [..., d], ``vbar`` [..., d] and
    ``f`` [...] broadcast (``TAIL_BLEND_ROUND``)."""
    out = np.asarray(out, np.int64)
    f = np.asarray(f, np.int64)[..., None]
    return out + ((f * (np.asarray(vbar, np.int64) - out) + (1 << (TAIL_FRAC - 1)))
                  >> TAIL_FRAC)


def sads_rows(ahat, cfg, top_k, radius, seq_len, eligible=None):
    """Vectorised :func:`sim.golden.sads_row` over the rows of ``ahat`` [N, S] and over the
    tiles (batch ``b`` of every tile at once); ``radius`` [N]; ``eligible`` [N, S] (adaptive
    budget) or None.

    Returns ``sel`` [N, n_tiles, top_k] (-1 padded), ``sel_ahat`` and the counters
    [N, n_tiles]. Public for callers that need the selection alone (the DSE's screening runs
    it on cached Â without the SU-FA stage)."""
    der = cfg.derived
    N = ahat.shape[0]
    Bc = cfg.block_size
    nt = -(-seq_len // Bc)
    starts = np.arange(nt, dtype=np.int64) * Bc
    exists = (starts[:, None] + np.arange(Bc)[None, :]) < seq_len          # [nt, Bc]
    A = np.zeros((N, nt * Bc), dtype=np.int64)
    A[:, :seq_len] = ahat
    A = A.reshape(N, nt, Bc)
    E = np.ones((N, nt * Bc), dtype=bool)
    if eligible is not None:
        E[:, :seq_len] = eligible
    E = E.reshape(N, nt, Bc)
    pmax = np.maximum.accumulate(ahat, axis=1)            # max of Â[:, :j+1]
    clip = (radius != der.radius_inf)[:, None, None]
    ent = np.full((N, nt, Bc), _NEG, dtype=np.int64)      # entered values, _NEG if not
    n_ent = np.zeros((N, nt), dtype=np.int64)
    cnt = {k: np.zeros((N, nt), dtype=np.int64)
           for k in ("blocked_radius", "blocked_full", "blocked_mass", "entered", "steps")}
    for b0 in range(0, Bc, der.batch):
        b1 = min(b0 + der.batch, Bc)
        v = A[:, :, b0:b1]
        ex = exists[None, :, b0:b1]
        g0 = starts + b0                                  # the batch's first key, per tile
        # run_max before the batch: max Â of the row's earlier keys (none for key 0).
        run_max = pmax[:, np.clip(g0 - 1, 0, seq_len - 1)]    # [N, nt]; unused if absent
        rb = (ex & clip & (g0 > 0)[None, :, None]
              & (v < (run_max - radius[:, None])[:, :, None]))
        mb = ex & ~rb & ~E[:, :, b0:b1]
        has_thr = n_ent >= top_k
        thr = np.partition(ent, Bc - top_k, axis=2)[:, :, Bc - top_k]
        fb = ex & ~rb & ~mb & has_thr[:, :, None] & (v <= thr[:, :, None])
        entering = ex & ~rb & ~mb & ~fb
        ent[:, :, b0:b1] = np.where(entering, v, _NEG)
        n_ent += entering.sum(axis=2)
        cnt["blocked_radius"] += rb.sum(axis=2)
        cnt["blocked_full"] += fb.sum(axis=2)
        cnt["blocked_mass"] += mb.sum(axis=2)
        cnt["entered"] += entering.sum(axis=2)
        cnt["steps"] += entering.any(axis=2)
    # Kept: top_k entered, descending Â, ties to the lower index (a unique composite key).
    pos = np.arange(Bc, dtype=np.int64)
    em = ent != _NEG
    ck = np.where(em, np.where(em, ent, 0) * (Bc + 1) + (Bc - pos), _NEG)
    order = np.argsort(ck, axis=2)[:, :, ::-1][:, :, :top_k]   # unique among entered keys
    ok = np.arange(top_k)[None, None, :] < np.minimum(n_ent, top_k)[:, :, None]
    sel = np.where(ok, starts[None, :, None] + order, -1)
    sel_ahat = np.where(ok, np.take_along_axis(ent, order, axis=2), 0)
    return sel, sel_ahat, cnt


def sofa_heads(Q, K, V, cfg, *, seq_len=None, top_k=1, radius=None, scale_log2e,
               dense=False, adapt_mass=0, adapt_scale=0, adapt_shift=0, tail_scale=0,
               ahat=None):
    """The SOFA pipeline of :func:`sim.golden.sofa_attention` for ``H`` heads at once.

    Parameters
    ----------
    Q : int [H, T, d];  K, V : int [H, S, d]
        Integer inputs in the signed ``data_width``-bit range (checked).
    cfg : SofaConfig
    seq_len : int, optional
        S (default ``K.shape[1]``).
    top_k : int
        Keys kept per tile (``1 … k_max``); ignored in dense mode.
    radius : int or sequence of int (one per head), optional
        Sphere radius in Â units; None or ``radius_inf`` disables clipping.
    scale_log2e : int or sequence of int (one per head)
        The ``c`` register of each head.
    dense : bool
        Dense mode: every key, natural order.
    adapt_mass, adapt_scale, adapt_shift : int or sequence of int (one per head)
        The adaptive budget's registers (:class:`spec.config.RunParams`); ``adapt_mass = 0``
        is the fixed budget.
    tail_scale : int or sequence of int (one per head)
        The tail blend's register (``alpha·c``; 0: off), only with ``adapt_mass > 0``.
    ahat : int [H, T, S], optional
        Predicted scores to select from instead of DLZS on ``Q``, ``K`` (the on-demand mode
        predicts them from the activations X: :func:`sim.ondemand.predict_scores`); SU-FA
        still attends over the exact ``K``, ``V``.
    """
    Q, K, V = (np.asarray(a, dtype=np.int64) for a in (Q, K, V))
    if Q.ndim != 3 or K.ndim != 3 or V.ndim != 3 or not (Q.shape[0] == K.shape[0] ==
                                                         V.shape[0]):
        raise ConfigError(f"Q, K, V must be [H, T, d], [H, S, d], [H, S, d]; got "
                          f"{Q.shape}, {K.shape}, {V.shape}")
    H, T = Q.shape[:2]
    S = K.shape[1] if seq_len is None else seq_len
    der = cfg.derived
    radius = der.radius_inf if radius is None else radius
    rad = _per_head(radius, H, "radius")
    cs = _per_head(scale_log2e, H, "scale_log2e")
    am, asc, ash, tsc = (_per_head(v, H, n) for v, n in ((adapt_mass, "adapt_mass"),
                                                          (adapt_scale, "adapt_scale"),
                                                          (adapt_shift, "adapt_shift"),
                                                          (tail_scale, "tail_scale")))
    for h in range(H):                       # ranges and shapes, with the golden model's messages
        check_inputs(Q[h], K[h], V[h], cfg,
                     RunParams(seq_len=S, top_k=top_k, radius=int(rad[h]),
                               scale_log2e=int(cs[h]), dense=dense, adapt_mass=int(am[h]),
                               adapt_scale=int(asc[h]), adapt_shift=int(ash[h]),
                               tail_scale=int(tsc[h])))
    N = H * T
    lut = np.asarray(exp2_lut(cfg), dtype=np.int64)
    scores = exact_scores_fast(Q, K, cfg)                       # [H, T, S]
    flat_scores = scores.reshape(N, S)
    tiles = tile_ranges(S, cfg.block_size)
    nt = len(tiles)
    tail_f = None
    if dense:
        ahat = None
        kt = cfg.block_size
        sel = np.full((N, nt, kt), -1, dtype=np.int64)
        for t, (a, b) in enumerate(tiles):
            sel[:, t, :b - a] = np.arange(a, b)
        sel_ahat = np.zeros_like(sel)
        cnt = {k: np.zeros((N, nt), dtype=np.int64)
               for k in ("blocked_radius", "blocked_full", "blocked_mass", "entered", "steps")}
    else:
        if ahat is None:
            ahat = dlzs_scores_fast(Q, K, cfg)
        else:
            ahat = np.asarray(ahat, dtype=np.int64)
            if ahat.shape != (H, T, S):
                raise ConfigError(f"ahat has shape {ahat.shape}; expected [H, T, S] = "
                                  f"{(H, T, S)}")
        kt = top_k
        eligible = None
        if (am > 0).any():
            rows_m = np.repeat(am, T)
            eligible, b_star = adaptive_eligible_vec(ahat.reshape(N, S), cfg, rows_m,
                                                     np.repeat(asc, T), np.repeat(ash, T), lut)
            eligible |= (rows_m == 0)[:, None]        # heads on the fixed budget
            if (tsc > 0).any():
                rows_t = np.repeat(tsc, T)
                tail_f = adaptive_tail_vec(ahat.reshape(N, S), cfg, b_star, rows_t,
                                           np.repeat(ash, T), lut) * (rows_t > 0)
        sel, sel_ahat, cnt = sads_rows(ahat.reshape(N, S), cfg, top_k, np.repeat(rad, T), S,
                                       eligible)

    # -- SU-FA over all rows ---------------------------------------------------------------
    c = np.repeat(cs, T)
    vbase = np.repeat(np.arange(H, dtype=np.int64) * S, T)
    Vflat = V.reshape(H * S, cfg.d)
    m = np.zeros(N, dtype=np.int64)
    has_m = np.zeros(N, dtype=bool)
    l = np.zeros(N, dtype=np.int64)
    o = np.zeros((N, cfg.d), dtype=np.int64)
    keys = np.zeros(N, dtype=np.int64)
    misses = np.zeros(N, dtype=np.int64)
    rescales = np.zeros(N, dtype=np.int64)

    def raise_max(r, new_m):
        """Rows ``r`` (index array) set ``m <- new_m``; rescale where ``m`` existed, ``l > 0``."""
        resc = has_m[r] & (l[r] > 0)
        rr = r[resc]
        if rr.size:
            f = exp2_fx_vec(exp_arg_vec(m[rr] - new_m[resc], c[rr], cfg), cfg, lut)
            l[rr] = (l[rr] * f) >> cfg.w_frac                      # RESCALE_FLOOR
            o[rr] = (o[rr] * f[:, None]) >> cfg.w_frac
            rescales[rr] += 1
        m[r] = new_m
        has_m[r] = True

    def accumulate(r, s_r, idx_r, val_r):
        """Rows ``r`` add their keys ``idx_r`` (scores ``s_r``, ``val_r`` valid) at the current
        ``m``: ``w = exp2_fx(exp_arg(s - m))``, ``l += Σw``, ``o += Σ w·V`` (exact integer sums,
        so the order of the additions does not matter)."""
        diff = np.where(val_r, s_r - m[r][:, None], 0)
        w = exp2_fx_vec(exp_arg_vec(diff, c[r][:, None], cfg), cfg, lut) * val_r
        l[r] += w.sum(axis=1)
        Vg = Vflat[vbase[r][:, None] + np.where(val_r, idx_r, 0)]        # [n, p, d]
        o[r] += np.einsum("np,npd->nd", w, Vg)
        keys[r] += val_r.sum(axis=1)

    for t in range(nt):
        idx = sel[:, t, :]
        rt = np.flatnonzero(idx[:, 0] >= 0)                 # rows with a non-empty tile
        if rt.size == 0:
            continue
        idx_t = idx[rt]
        val_t = idx_t >= 0
        s_t = np.where(val_t, flat_scores[rt[:, None], np.where(val_t, idx_t, 0)], 0)
        # Max assurance: m <- max(m, s(first), s(second)).
        cand = s_t[:, 0]
        if kt >= 2:
            cand = np.where(val_t[:, 1], np.maximum(s_t[:, 0], s_t[:, 1]), cand)
        up = ~has_m[rt] | (cand > m[rt])
        raise_max(rt[up], cand[up])
        # Rows where no later key beats m: every key of the tile uses the same m, one step.
        slow = (val_t & (s_t > m[rt][:, None])).any(axis=1)
        fast = ~slow
        if fast.any():
            accumulate(rt[fast], s_t[fast], idx_t[fast], val_t[fast])
        if slow.any():
            # Rows with a miss: key by key, m <- s on each miss (rescaling l and o).
            rs, s_s, idx_s, val_s = rt[slow], s_t[slow], idx_t[slow], val_t[slow]
            for p in range(kt):
                act = val_s[:, p]
                sp = s_s[:, p]
                miss = act & (sp > m[rs])
                if miss.any():
                    misses[rs[miss]] += 1
                    raise_max(rs[miss], sp[miss])
                a = np.flatnonzero(act)
                if a.size:
                    accumulate(rs[a], s_s[a, p:p + 1], idx_s[a, p:p + 1], val_s[a, p:p + 1])
    out = divide_vec(o, l, cfg)
    vbar = None
    if tail_f is not None:
        vbar = tail_means_vec(V, S, cfg)
        out = tail_blend_vec(out, np.repeat(vbar, T, axis=0), tail_f)
        tail_f = tail_f.reshape(H, T)
    shape = (H, T)
    return FastResult(
        out=out.reshape(H, T, cfg.d), ahat=ahat, scores=scores,
        sel=sel.reshape(H, T, nt, kt), sel_ahat=sel_ahat.reshape(H, T, nt, kt),
        blocked_radius=cnt["blocked_radius"].reshape(H, T, nt),
        blocked_full=cnt["blocked_full"].reshape(H, T, nt),
        blocked_mass=cnt["blocked_mass"].reshape(H, T, nt),
        entered=cnt["entered"].reshape(H, T, nt), steps=cnt["steps"].reshape(H, T, nt),
        m=m.reshape(shape), has_m=has_m.reshape(shape), l=l.reshape(shape),
        o=o.reshape(H, T, cfg.d), keys=keys.reshape(shape), misses=misses.reshape(shape),
        rescales=rescales.reshape(shape), tail_f=tail_f, vbar=vbar)


def sofa_attention_fast(Q, K, V, cfg, params):
    """One head with a :class:`RunParams`, as :func:`sim.golden.sofa_attention`; returns a
    :class:`FastResult` with ``H = 1``."""
    params.validate(cfg)
    Q, K, V = (np.asarray(a)[None] for a in (Q, K, V))
    return sofa_heads(Q, K, V, cfg, seq_len=params.seq_len, top_k=params.top_k,
                      radius=params.radius, scale_log2e=params.scale_log2e,
                      dense=params.dense, adapt_mass=params.adapt_mass,
                      adapt_scale=params.adapt_scale, adapt_shift=params.adapt_shift,
                      tail_scale=params.tail_scale)
