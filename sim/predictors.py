"""Sparse-attention predictors of the literature in one framework, with their prediction cost.

Every predictor takes the int8 Q, K, V of the heads of one layer (:class:`HeadData`, symmetric
per-head quantisation, docs/numerics.md) and returns a :class:`Selection`: the keys each query
row attends to, the operations the prediction and the formal computation take, and (SOFA only)
its own bit-exact output. The study in :mod:`sim.accuracy` scores them all with the same
metrics. The predictors and their sources:

* :class:`SofaDLZS`: SOFA's DLZS prediction, SADS selection and SU-FA, bit-exact through
  :mod:`sim.fastgolden` (Wang et al., MICRO 2024).
* :class:`Energon`: mix-precision multi-round filtering (Zhou et al., IEEE TCAD 2023).
* :class:`PadeGuard`: PADE's bit-serial guard filtering with query-only uncertainty bounds
  (Wang et al., HPCA 2026).
* :class:`SpattenMSB`: a SpAtten-style MSB-quantised predictor with a row top-k (Wang, Zhang
  and Han, HPCA 2021, arXiv 2012.09852).
* :class:`ExactTopK` and :class:`ExactTileTopK`: the oracles (exact scores; row top-k, and the
  per-tile top-k that SADS would pick with a perfect prediction); :class:`ExactTopP`, the
  exact cumulative-mass oracle (:mod:`sim.adaptive`).
* :class:`sim.adaptive.SofaAdaptive`: SOFA with the adaptive selection budget
  (docs/numerics.md), bit-exact.

Each class docstring lists the choices its paper leaves open and what this module takes.

**Cost model.** Operations are counted per kind over all query rows (``ops`` of a
:class:`Selection`); :func:`int8_equivalent` weighs them into INT8-MAC equivalents and
:func:`compute_saved` compares them with dense attention (``2·d`` INT8 MACs per query-key pair:
Q·Kᵀ and P·V). Weights (:data:`COST_WEIGHTS`), all assumptions:

* an ``a``-bit by ``b``-bit MAC costs ``a·b/64`` of an INT8 MAC (multiplier area grows with the
  product of the widths); a bit-plane MAC (8-bit Q by a 1-bit K plane) is ``8·1/64``;
* a DLZS shift-add costs 0.2: SOFA's Table III gives 0.351 mm² for 128x32 shift-adders with
  their LZEs (86 µm² each) and 0.875 mm² for 128x4 16-bit MACs (1709 µm² each, about
  430 µm² per INT8 MAC at a quadratic width scaling), a ratio of 0.2 [INFERRED];
* comparisons of top-k sorting and thresholding, and the exp/divide of the formal stage, are not
  counted (they are the same order for every predictor and not what the papers trade).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from spec.config import ConfigError, RunParams, SofaConfig
from sim.fastgolden import matmul_exact, sofa_heads


__all__ = ["HeadData", "Selection", "COST_WEIGHTS", "int8_equivalent", "compute_saved",
           "sofa_config", "radius_register", "head_registers", "SofaDLZS", "Energon", "PadeGuard", "SpattenMSB", "ExactTopK",
           "ExactTileTopK", "DenseFloat", "DenseDatapath", "topk_mask_rows", "keep_count",
           "int_matmul_t", "prediction_ops", "Predictor", "desc_order",
           "msb_truncate", "LOG2E"]

LOG2E = math.log2(math.e)
DATA_WIDTH = 8

#: INT8-MAC equivalents of one operation of each kind (see the module docstring).
COST_WEIGHTS = {
    "int8_mac": 1.0,              # formal stage: exact Q·K or P·V multiply-accumulate
    "pred_int8_mac": 1.0,         # an oracle's dense exact Q·K (prediction at full precision)
    "shift_add": 0.2,             # DLZS: K << p(Q), added (SOFA Table III area ratio)
    "mac_4x2": 4 * 2 / 64,        # Energon round 1: INT4 Q x INT2 K
    "mac_4x4": 4 * 4 / 64,        # Energon round 2, SpAtten-style MSB predictor
    "bitplane_mac": 8 * 1 / 64,   # PADE: 8-bit Q x one K bit plane
    # The adaptive budget (SofaAdaptive): per key, the bin of M - Â (a subtract, a shift, a
    # clamp, a counter increment) and the eligibility compare in the selecting pass, about
    # three 22-bit adders against an INT8 MAC's ~80 full adders [INFERRED]; per bin and row,
    # the count x weight multiply (11 x 16 bits), its exp2 and the running sum.
    "adapt_key": 0.6,
    "adapt_bin": 3.0,
    # The tail blend (SofaAdaptiveTail, docs/numerics.md "Tail blend") [INFERRED, the same
    # scaling]: per bin and row, the second weight sweep (as adapt_bin); per row, f's
    # TAIL_FRAC-step restoring division (12 subtracts of ~26 bits); per output element, the
    # blend f·(vbar − O) (a 12 x 18-bit multiply, 12·18/64 = 3.4, and two 18-bit adds);
    # per key and head, the column sum of V (d adds of ~17 bits, as a shift-add); per
    # element and head, the mean's division (about 25 subtracts of ~26 bits).
    "tail_bin": 3.0,
    "tail_frac": 4.0,
    "tail_mac": 4.0,
    "tail_vsum": 0.2,
    "tail_vdiv": 8.0,
}


def int8_equivalent(ops):
    """Weighted sum of an ``ops`` dict in INT8-MAC equivalents (unknown kinds are an error)."""
    total = 0.0
    for kind, n in ops.items():
        if kind not in COST_WEIGHTS:
            raise KeyError(f"operation kind {kind!r} has no cost weight; known: "
                           f"{', '.join(COST_WEIGHTS)}")
        total += COST_WEIGHTS[kind] * n
    return total


def prediction_ops(ops):
    """The prediction part of an ``ops`` dict (everything but the formal ``int8_mac``)."""
    return {k: v for k, v in ops.items() if k != "int8_mac"}


def compute_saved(ops, rows, seq_len, d):
    """``1 - cost / dense`` with dense attention ``2·d`` INT8 MACs per query-key pair."""
    return 1.0 - int8_equivalent(ops) / (2.0 * d * rows * seq_len)


@dataclass
class HeadData:
    """The heads of one attention layer, quantised: ``Q [H, T, d]``, ``K, V [H, S, d]`` int8
    (int64 arrays) and their per-head scales ``sq, sk, sv [H]`` (``x ≈ q·s``)."""
    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray
    sq: np.ndarray
    sk: np.ndarray
    sv: np.ndarray
    _scores: np.ndarray = field(default=None, repr=False)
    _rank: np.ndarray = field(default=None, repr=False)
    _probs: np.ndarray = field(default=None, repr=False)
    _dense: np.ndarray = field(default=None, repr=False)

    @classmethod
    def from_float(cls, q, k, v, bits=DATA_WIDTH):
        """Quantise float ``[H, S, d]`` q, k, v per head and per tensor (``quantise_sym``)."""
        from sim.minilm import quantise_sym
        out = {}
        for name, x in (("Q", q), ("K", k), ("V", v)):
            qs = [quantise_sym(x[h], bits) for h in range(x.shape[0])]
            out[name] = np.stack([a for a, _ in qs])
            out["s" + name.lower()] = np.array([s for _, s in qs])
        return cls(**out)

    @property
    def shape(self):
        """``(H, T, S, d)``."""
        H, T, d = self.Q.shape
        return H, T, self.K.shape[1], d

    @property
    def logit_scale(self):
        """Natural-log logit per integer score unit, per head: ``s_q·s_k/√d``."""
        return self.sq * self.sk / math.sqrt(self.Q.shape[2])

    @property
    def scores(self):
        """Exact integer scores ``[H, T, S]``."""
        if self._scores is None:
            self._scores = int_matmul_t(self.Q, self.K)
        return self._scores

    @property
    def rank(self):
        """Rank of each key in its row by exact score (0 = best; ties: lower index first)."""
        if self._rank is None:
            order = desc_order(self.scores)
            self._rank = _inverse(order)
        return self._rank

    def probs(self):
        """Dense softmax probabilities ``[H, T, S]`` of the dequantised logits, float64
        (cached)."""
        if self._probs is None:
            z = self.scores * self.logit_scale[:, None, None]
            z = z - z.max(axis=-1, keepdims=True)
            p = np.exp(z)
            self._probs = p / p.sum(axis=-1, keepdims=True)
        return self._probs

    def dense_output(self):
        """Dense float64 attention over the dequantised inputs, ``[H, T, d]`` in units of V's
        integer scale (cached): the reference of every output error."""
        if self._dense is None:
            self._dense = self.probs() @ self.V.astype(np.float64)
        return self._dense


def int_matmul_t(A, B):
    """Exact ``A·Bᵀ`` over the last two axes of integer arrays (``[..., T, d]``, ``[..., S, d]``)."""
    A, B = np.asarray(A, np.int64), np.asarray(B, np.int64)
    amax = int(np.abs(A).max(initial=0))
    bmax = int(np.abs(B).max(initial=0))
    return matmul_exact(A, np.swapaxes(B, -1, -2), A.shape[-1] * amax * bmax)


def desc_order(values):
    """Indices sorting the last axis by descending value, ties to the lower index (a stable
    sort of the negated values)."""
    return np.argsort(-np.asarray(values), axis=-1, kind="stable")


def topk_mask_rows(values, n):
    """Boolean mask of the ``n[..]`` largest of each row of ``values`` (ties: lower index);
    ``n`` is an int or an array over the leading axes."""
    n = np.broadcast_to(np.asarray(n), values.shape[:-1])
    return _inverse(desc_order(values)) < n[..., None]


def _inverse(order):
    """Inverse permutation along the last axis: the rank of each position."""
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(order.shape[-1]), order.shape),
                      axis=-1)
    return rank


def keep_count(ratio, seq_len):
    """Keys a row keeps under a row budget: ``max(1, round(ratio·S))``."""
    return max(1, int(round(ratio * seq_len)))


def msb_truncate(x, bits, width=DATA_WIDTH):
    """The top ``bits`` of a signed ``width``-bit integer: arithmetic right shift (floor)."""
    return np.asarray(x, np.int64) >> (width - bits)


@dataclass
class Selection:
    """What a predictor returns for the heads of one layer.

    Attributes
    ----------
    mask : bool [H, T, S]
        Keys each query row attends to.
    ops : dict
        Operation counts by kind (keys of :data:`COST_WEIGHTS`), prediction and formal stage.
    out : float [H, T, d] or None
        The predictor's own output in units of V's integer scale (SOFA: bit-exact); None means
        exact float64 softmax attention over ``mask`` (an ideal formal stage).
    info : dict
        Extra counters (SOFA: SADS and SU-FA events).
    """
    mask: np.ndarray
    ops: dict
    out: np.ndarray = None
    info: dict = field(default_factory=dict)


def sofa_config(d, block_size, top_k, max_seq_len=256, batch=12, *, mac_lanes=None,
                name=None):
    """The :class:`SofaConfig` the study runs: head dim ``d``, tile ``block_size``,
    ``k_max = top_k`` and a sorter of ``top_k + batch`` inputs (the paper's 16-to-4 takes 12 new
    keys a step), ``dlzs_lanes = d``, otherwise the defaults (exp/weight/output widths of the
    default preset).

    ``mac_lanes`` (default ``d``) and ``name`` (default ``minilm-bc<Bc>-k<top_k>``) change
    neither the selection nor the output, only the cycles: :mod:`sim.dse` sizes its cores with
    them (``mac_lanes = d/4``)."""
    return SofaConfig(name=name or f"minilm-bc{block_size}-k{top_k}", d=d,
                      block_size=block_size, max_seq_len=max_seq_len, k_max=top_k,
                      sort_width=top_k + batch, mac_lanes=d if mac_lanes is None else mac_lanes,
                      dlzs_lanes=d)


def radius_register(cfg, radius_nat, logit_scale):
    """The ``radius`` register (Â units) of a sphere radius ``radius_nat`` in natural-log logit
    units for a head with ``logit_scale`` (:attr:`HeadData.logit_scale`):
    ``round(radius_nat / logit_scale)``, at most ``radius_inf − 1`` so that a finite radius
    always clips; ``inf`` gives ``radius_inf`` (no clipping)."""
    inf = cfg.derived.radius_inf
    if math.isinf(radius_nat):
        return inf
    return int(min(inf - 1, round(radius_nat / logit_scale)))


def head_registers(cfg, hd, radius_nat, heads=None):
    """The per-head run-time registers ``(scale_log2e, radius)`` of ``cfg`` for the heads
    ``heads`` of ``hd`` (default all), two lists in the order of ``heads``.

    ``scale_log2e`` quantises ``c = s_q·s_k·log2(e)/√d``; ``radius`` is
    :func:`radius_register` of ``radius_nat``, one value for every head or one per head of
    ``heads``. :class:`SofaDLZS` and the DSE (:mod:`sim.dse`) both take their registers
    from here."""
    heads = range(hd.shape[0]) if heads is None else list(heads)
    d = hd.shape[3]
    lscale = hd.logit_scale
    radii = list(radius_nat) if np.ndim(radius_nat) else [radius_nat] * len(heads)
    if len(radii) != len(heads):
        raise ConfigError(f"radius_nat: {len(radii)} values for {len(heads)} heads")
    scale = [RunParams.scale_from_float(cfg, float(hd.sq[h] * hd.sk[h] * LOG2E /
                                                   math.sqrt(d))) for h in heads]
    radius = [radius_register(cfg, r, lscale[h]) for h, r in zip(heads, radii)]
    return scale, radius


class Predictor:
    """The base of every predictor: ``select(hd) -> Selection``, ``params()``, ``name``,
    ``family``."""
    name = "predictor"
    family = "predictor"

    def select(self, hd):
        raise NotImplementedError

    def params(self):
        return {}


class SofaDLZS(Predictor):
    """SOFA (Wang et al., MICRO 2024): DLZS → SADS → SU-FA, bit-exact.

    DLZS predicts ``Â = Σ sign(q)·(k << floor(log2|q|))`` (Q is the log operand, the paper's
    Fig. 7 convention); SADS keeps ``top_k = ratio·Bc`` keys per tile of ``Bc`` keys with
    sphere clipping at radius R against the row's running maximum; SU-FA computes exact
    attention over them in the fixed-point datapath of ``sim/golden.py`` (run through
    :mod:`sim.fastgolden`). Open choices, as fixed in docs/numerics.md: Fig. 7
    convention, ``run_max`` carried across tiles, blocked keys flagged invalid, exact-mode
    SU-FA (rescale on a miss). This study adds:

    * R is given in natural-log logit units (``radius_nat``) and converted per head to Â units
      with the head's scales, ``round(R·√d / (s_q·s_k))`` (Â underestimates |s| by up to 2x, so
      the clipping is somewhat looser than R suggests); ``inf`` disables clipping;
    * ``k_max = top_k`` and a sorter of ``top_k + 12`` inputs (12 new keys a step, as the
      paper's 16-to-4);
    * a short last tile (S not a multiple of Bc) keeps ``min(top_k, its length)`` keys, so the
      kept fraction is slightly above ``ratio``;
    * ``c = s_q·s_k·log2(e)/√d`` is quantised to the ``scale_log2e`` register per head.

    Cost: ``d`` shift-adds per query-key pair (DLZS on every key), ``2·d`` INT8 MACs per
    selected key (Q·K and P·V in SU-FA).
    """
    family = "SOFA"

    def __init__(self, block_size, ratio, radius_nat=math.inf, max_seq_len=256):
        top_k = block_size * ratio
        if not (isinstance(block_size, int) and block_size >= 2):
            raise ConfigError(f"block_size = {block_size!r} must be an integer >= 2")
        if abs(top_k - round(top_k)) > 1e-9 or round(top_k) < 1:
            raise ConfigError(f"ratio = {ratio} times block_size = {block_size} must be a "
                              f"positive integer top_k, got {top_k}")
        if not radius_nat > 0:
            raise ConfigError(f"radius_nat = {radius_nat} must be positive (inf disables "
                              f"clipping)")
        self.block_size, self.ratio, self.radius_nat = block_size, ratio, radius_nat
        self.top_k = int(round(top_k))
        self.max_seq_len = max_seq_len
        self._cfgs = {}
        r = "∞" if math.isinf(radius_nat) else f"{radius_nat:g}"
        self.name = f"SOFA Bc={block_size} R={r}"

    def params(self):
        return {"block_size": self.block_size, "top_k": self.top_k,
                "radius_nat": self.radius_nat}

    def config(self, d):
        if d not in self._cfgs:
            self._cfgs[d] = sofa_config(d, self.block_size, self.top_k, self.max_seq_len)
        return self._cfgs[d]

    def run_params(self, hd):
        """``(cfg, scale_log2e, radius)``: the config and the per-head registers
        (:func:`head_registers`)."""
        cfg = self.config(hd.shape[3])
        scale, radius = head_registers(cfg, hd, self.radius_nat)
        return cfg, scale, radius

    def select(self, hd):
        return self.run(hd)[0]

    def run(self, hd):
        """``(Selection, FastResult, cfg, scale_log2e)``: the selection and the bit-exact
        pipeline's whole result (final ``m``, ``l``, rescales per row), for the audits of the
        quick check (:func:`sim.accuracy.audit_sofa`)."""
        H, T, S, d = hd.shape
        cfg, scale, radius = self.run_params(hd)
        res = sofa_heads(hd.Q, hd.K, hd.V, cfg, seq_len=S, top_k=self.top_k, radius=radius,
                         scale_log2e=scale)
        mask = res.mask()
        ops = {"shift_add": H * T * S * d, "int8_mac": 2 * d * int(mask.sum())}
        out = res.out / float(1 << cfg.out_frac)
        return Selection(mask=mask, ops=ops, out=out, info=res.counters()), res, cfg, scale

    def tile_oracle(self, hd):
        """The exact per-tile top-k this configuration approximates (SADS with a perfect
        prediction and no clipping)."""
        return ExactTileTopK(self.block_size, self.ratio).tile_mask(hd)


class DenseDatapath(Predictor):
    """Dense mode of the bit-exact SOFA datapath (every key, natural order): the int8 +
    fixed-point baseline every SOFA configuration is measured against on the same hardware."""
    family = "dense"
    name = "dense, bit-exact int8 datapath"

    def __init__(self, block_size=16, max_seq_len=256):
        self.block_size, self.max_seq_len = block_size, max_seq_len

    def select(self, hd):
        H, T, S, d = hd.shape
        cfg = sofa_config(d, self.block_size, 1, self.max_seq_len)
        scale, _ = head_registers(cfg, hd, math.inf)
        res = sofa_heads(hd.Q, hd.K, hd.V, cfg, seq_len=S, top_k=1, scale_log2e=scale,
                         dense=True)
        return Selection(mask=np.ones((H, T, S), dtype=bool),
                         ops={"int8_mac": 2 * d * H * T * S},
                         out=res.out / float(1 << cfg.out_frac), info=res.counters())


class DenseFloat(Predictor):
    """Dense float64 attention on the int8 inputs: the quantisation-only baseline."""
    family = "dense"
    name = "dense, float64 on int8 inputs"

    def select(self, hd):
        H, T, S, d = hd.shape
        return Selection(mask=np.ones((H, T, S), dtype=bool),
                         ops={"int8_mac": 2 * d * H * T * S})


class Energon(Predictor):
    """Energon's mix-precision multi-round filtering (MP-MRF; Zhou et al., IEEE TCAD 42(1)
    2023, arXiv 2110.09310).

    Round ``r`` computes ``Q_r·K_rᵀ`` at low precision for the keys that survived round
    ``r-1`` and keeps those at or above a row threshold built from the row's max, min and mean
    over those keys; the survivors get exact attention. What is sourced: several rounds at
    INT2/INT4 ("INT4xINT2 and INT4xINT4 in first and second iteration"), a threshold from the
    row mean with a parameter moving it towards max/min, no sort, survivors attended at high
    precision. Open choices, taken here:

    * rounds ``((4, 2), (4, 4))`` (Q bits, K bits) and the low-bit operands are the MSBs of the
      int8 values (arithmetic right shift, i.e. floor), as if bit-sliced in memory [INFERRED];
    * threshold ``θ = α·max + (1−α)·mean`` for ``α >= 0`` and ``θ = −α·min + (1+α)·mean`` for
      ``α < 0`` over the round's surviving keys [as the paper recalls it], keep ``score >= θ``
      (the row maximum always survives);
    * one ``α`` for both rounds, a global hyperparameter; the study calibrates it by bisection
      so the mean kept fraction over the data matches the target ratio.

    Cost: ``d`` low-bit MACs of the round's width per key entering the round; ``2·d`` INT8 MACs
    per survivor.
    """
    family = "Energon"

    def __init__(self, alpha, rounds=((4, 2), (4, 4)), label=None):
        if not -1.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha = {alpha} must be in -1 … 1")
        for qb, kb in rounds:
            if f"mac_{qb}x{kb}" not in COST_WEIGHTS:
                raise ConfigError(f"rounds: {qb}x{kb} bits has no cost weight; supported "
                                  f"{[k for k in COST_WEIGHTS if k.startswith('mac_')]}")
        self.alpha, self.rounds = float(alpha), tuple(rounds)
        self.name = label or f"Energon α={alpha:+.3f}"

    def params(self):
        return {"alpha": self.alpha, "rounds": [list(r) for r in self.rounds]}

    def threshold(self, score, alive):
        """Row threshold over the ``alive`` keys (float64 ``[H, T]``)."""
        a = self.alpha
        n = alive.sum(axis=-1)
        s = np.where(alive, score, 0).astype(np.float64)
        mean = s.sum(axis=-1) / np.maximum(n, 1)
        if a >= 0:
            mx = np.where(alive, score, np.iinfo(np.int64).min).max(axis=-1)
            return a * mx + (1 - a) * mean
        mn = np.where(alive, score, np.iinfo(np.int64).max).min(axis=-1)
        return -a * mn + (1 + a) * mean

    def select(self, hd):
        H, T, S, d = hd.shape
        alive = np.ones((H, T, S), dtype=bool)
        ops = {}
        for qb, kb in self.rounds:
            ql, kl = msb_truncate(hd.Q, qb), msb_truncate(hd.K, kb)
            score = int_matmul_t(ql, kl)
            key = f"mac_{qb}x{kb}"
            ops[key] = ops.get(key, 0) + d * int(alive.sum())
            theta = self.threshold(score, alive)
            alive = alive & (score >= theta[..., None])
        ops["int8_mac"] = 2 * d * int(alive.sum())
        return Selection(mask=alive, ops=ops)


class PadeGuard(Predictor):
    """PADE's bit-serial guard filtering, BUI-GF (Wang et al., HPCA 2026, arXiv 2512.14322).

    K is processed one bit plane at a time, MSB (the two's-complement sign plane, weight −128)
    first, against the full 8-bit Q. After ``r`` planes the partial score ``S^r`` is known and
    the unknown low bits of every K element lie in ``[0, 2^(8−r) − 1]``, so the exact score lies
    in ``[S^r + I_min, S^r + I_max]`` with query-only bounds
    ``I_max = (2^(8−r)−1)·Σ_{q>0} q`` and ``I_min = (2^(8−r)−1)·Σ_{q<0} q``. Each round the row
    threshold is ``T = max_j(S^r_j + I_min) − margin`` and a key whose upper bound
    ``S^r + I_max <= T`` is pruned (no more planes fetched); the survivors of the last plane
    have exact scores. Because no bound is ever violated, the final set is exactly
    ``{j : s_j > max(s) − margin}`` (tested): the filter trades planes, not accuracy.

    Open choices, taken here:

    * ``margin = α·radius`` is in natural-log logit units (dequantised, 1/√d scaled) and
      converted per head [inferred: the paper leaves it open]; the paper's operating point is radius 5
      with α ≈ 0.5–0.6 (:meth:`paper_point`: 0.55·5); the study otherwise calibrates the margin
      so the mean kept fraction matches the target ratio;
    * the threshold is row-global (all keys of the row); ISTA's tile-local thresholds can only
      prune less (monotone), head-tail interleaving and BS-OOE scheduling are not modelled;
    * bidirectional bit sparsity is not exploited in the count: every plane of a live key costs
      ``d`` bit-plane MACs.

    Cost: ``d`` bit-plane MACs per live key per plane; the survivors' Q·K comes out of the
    planes, so the formal stage adds only P·V, ``d`` INT8 MACs per survivor.
    """
    family = "PADE"

    def __init__(self, margin_nat, label=None):
        if not margin_nat > 0:
            raise ConfigError(f"margin_nat = {margin_nat} must be > 0 (the decision keeps "
                              f"keys strictly above the threshold, so 0 would keep none)")
        self.margin_nat = float(margin_nat)
        self.name = label or f"PADE margin={margin_nat:.3f}"

    @classmethod
    def paper_point(cls, alpha=0.55, radius=5.0):
        return cls(alpha * radius, label=f"PADE paper point (α·radius = {alpha}·{radius:g})")

    def params(self):
        return {"margin_nat": self.margin_nat}

    def margin_int(self, hd):
        return self.margin_nat / hd.logit_scale                     # [H], score units

    def closed_form(self, hd):
        """The final selection without the plane-by-plane simulation (equal, tested)."""
        s = hd.scores
        thr = s.max(axis=-1) - self.margin_int(hd)[:, None]
        return s > thr[..., None]

    @staticmethod
    def bounds(Q, K, planes, width=DATA_WIDTH):
        """``(lo, hi)`` of the exact score ``Q·Kᵀ`` after the top ``planes`` bit planes of K:
        ``S^r + I_min`` and ``S^r + I_max`` (equal to the score once ``planes == width``)."""
        Q = np.asarray(Q, np.int64)
        low = width - planes                                        # unknown low bits
        known = (np.asarray(K, np.int64) >> low) << low             # planes b7 … b_low
        part = int_matmul_t(Q, known)                               # S^r, exact ints
        tail = (1 << low) - 1
        pos = np.where(Q > 0, Q, 0).sum(axis=-1)                    # query-only terms
        neg = np.where(Q < 0, Q, 0).sum(axis=-1)
        return part + (tail * neg)[..., None], part + (tail * pos)[..., None]

    def select(self, hd, width=DATA_WIDTH):
        H, T, S, d = hd.shape
        margin = self.margin_int(hd)[:, None]
        alive = np.ones((H, T, S), dtype=bool)
        planes = 0
        for r in range(1, width + 1):
            lo, hi = self.bounds(hd.Q, hd.K, r, width)
            planes += int(alive.sum())
            T_r = np.where(alive, lo, np.iinfo(np.int64).min).max(axis=-1) - margin
            alive = alive & (hi > T_r[..., None])
        ops = {"bitplane_mac": d * planes, "int8_mac": d * int(alive.sum())}
        return Selection(mask=alive, ops=ops, info={"planes_per_key": planes / (H * T * S)})


class SpattenMSB(Predictor):
    """A SpAtten-style MSB-quantised predictor (Wang, Zhang and Han, HPCA 2021,
    arXiv 2012.09852).

    SpAtten's progressive quantisation fetches the MSBs of Q and K first and computes the
    attention from them; its top-k engine keeps the ``k`` largest per row. Here the prediction
    is ``(Q >> 4)·(K >> 4)ᵀ`` (the top ``msb_bits`` of the int8 values, floor), the row keeps
    its ``max(1, round(ratio·S))`` best predicted keys (ties: lower index), and the survivors
    get exact attention. Not modelled (open for a predictor study): SpAtten's LSB re-fetch when
    the MSB softmax is flat (it recomputes with full precision, i.e. pays a dense Q·K for those
    rows), and cascade token and head pruning, which remove keys across layers rather than per
    query. Cost: ``d`` 4x4-bit MACs per query-key pair, ``2·d`` INT8 MACs per kept key.
    """
    family = "SpAtten"

    def __init__(self, ratio, msb_bits=4):
        if not 0 < ratio <= 1:
            raise ConfigError(f"ratio = {ratio} must be in (0, 1]")
        if f"mac_{msb_bits}x{msb_bits}" not in COST_WEIGHTS:
            raise ConfigError(f"msb_bits = {msb_bits}: no cost weight for "
                              f"mac_{msb_bits}x{msb_bits}")
        self.ratio, self.msb_bits = ratio, msb_bits
        self.name = f"SpAtten-style MSB{msb_bits}"

    def params(self):
        return {"ratio": self.ratio, "msb_bits": self.msb_bits}

    def select(self, hd):
        H, T, S, d = hd.shape
        b = self.msb_bits
        pred = int_matmul_t(msb_truncate(hd.Q, b), msb_truncate(hd.K, b))
        mask = topk_mask_rows(pred, keep_count(self.ratio, S))
        ops = {f"mac_{b}x{b}": H * T * S * d, "int8_mac": 2 * d * int(mask.sum())}
        return Selection(mask=mask, ops=ops)


class ExactTopK(Predictor):
    """Oracle: the exact top ``max(1, round(ratio·S))`` keys of each row by true score.
    Cost: the dense Q·K (``d`` INT8 MACs per pair) plus P·V over the kept keys."""
    family = "exact"

    def __init__(self, ratio):
        if not 0 < ratio <= 1:
            raise ConfigError(f"ratio = {ratio} must be in (0, 1]")
        self.ratio = ratio
        self.name = "exact top-k (oracle)"

    def params(self):
        return {"ratio": self.ratio}

    def select(self, hd):
        H, T, S, d = hd.shape
        mask = hd.rank < keep_count(self.ratio, S)
        return Selection(mask=mask, ops={"pred_int8_mac": H * T * S * d,
                                         "int8_mac": d * int(mask.sum())})


class ExactTileTopK(Predictor):
    """Oracle per tile: the exact top ``ratio·Bc`` keys of every tile of ``Bc`` keys (what SADS
    would select with a perfect prediction and no clipping). Cost as :class:`ExactTopK`."""
    family = "exact"

    def __init__(self, block_size, ratio):
        top_k = block_size * ratio
        if abs(top_k - round(top_k)) > 1e-9 or round(top_k) < 1:
            raise ConfigError(f"ratio = {ratio} times block_size = {block_size} must be a "
                              f"positive integer")
        self.block_size, self.ratio, self.top_k = block_size, ratio, int(round(top_k))
        self.name = f"exact per-tile top-k (oracle, Bc={block_size})"

    def params(self):
        return {"block_size": self.block_size, "top_k": self.top_k}

    def tile_mask(self, hd):
        """Boolean ``[H, T, S]`` of the exact per-tile top-k (a short last tile keeps
        ``min(top_k, length)``; ties to the lower index)."""
        s = hd.scores
        S, Bc = s.shape[-1], self.block_size
        nt = -(-S // Bc)
        pad = np.full(s.shape[:-1] + (nt * Bc,), -(1 << 62), dtype=np.int64)
        pad[..., :S] = s
        tiles = pad.reshape(s.shape[:-1] + (nt, Bc))
        rank = _inverse(desc_order(tiles))          # padding ranks last in its tile
        return (rank < self.top_k).reshape(pad.shape)[..., :S]

    def select(self, hd):
        H, T, S, d = hd.shape
        mask = self.tile_mask(hd)
        return Selection(mask=mask, ops={"pred_int8_mac": H * T * S * d,
                                         "int8_mac": d * int(mask.sum())})
