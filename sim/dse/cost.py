"""The DSE's hardware and cost model: the core a layer runs on and what a selection costs.

A layer runs on :func:`layer_config`, the accuracy study's configuration
(:func:`sim.predictors.sofa_config`: ``k_max = top_k``, a sorter of ``top_k + 12`` inputs,
``max_seq_len = 256``) with the default preset's lane ratio, ``dlzs_lanes = d`` and
``mac_lanes = d/4``, predicting ``predict_keys`` keys a cycle per lane: the smallest number
for which prediction does not bound SU-FA at the layer's smallest ``top_k``
(:func:`layer_predict_keys`, the rule :func:`spec.timing.predict_keys_for`; 1 under the
adaptive budget, whose gate takes one key a cycle). On it a selection costs:

* comparator evaluations: the comparators of the pruned SADS network (:func:`comparators`)
  times the sorter steps counted by the datapath, in units of :data:`SORT_REF_PER_KEY` per
  key (the paper's 16-to-4 sorter);
* exp2 evaluations: selected keys plus rescales (:func:`tile_rescales` counts them per tile);
* core cycles: a closed form of :func:`sim.perf.core_cycles` over the per-tile work
  (:func:`cycles_closed_form`: a tile's prediction takes ``ceil(size / predict_keys)`` beats
  of ``dlzs_cycles``, or longer where the SADS units are slower), or ``core_cycles`` itself
  (:func:`exact_cycles`);
* compute: the accuracy study's INT8-MAC equivalents, of which the DLZS prediction alone is
  :func:`prediction_share` (:func:`kept_full` is the formal stage's share without clipping).

A layer under the adaptive budget runs on the same core with ``adapt_bins`` bins (the gate of
``hw/adapt.py`` in each lane). Its time is added to each row's prediction in the closed form:
:func:`spec.timing.adapt_gate_cycles`, the cycle model's gate terms (counting and replaying
the buffered Â, two cycles a key each, the sweeps ``2·bins + 7``; the fill runs beside DLZS),
docs/numerics.md.
"""

import dataclasses
from functools import lru_cache

import numpy as np

from spec.config import RunParams
from spec.sortnet import top_k_network
from spec.timing import predict_keys_for, sads_bank_timing, sads_timing
from sim.perf import core_cycles
from sim.predictors import COST_WEIGHTS, sofa_config


__all__ = ["SORT_BATCH", "SORT_REF_PER_KEY", "MAC_LANE_DIV", "MAX_SEQ_LEN", "layer_config",
           "layer_predict_keys", "tile_predict_cycles", "tile_sizes", "dense_order",
           "comparators", "prediction_share", "kept_full", "tile_rescales",
           "cycles_closed_form", "exact_cycles"]

#: New keys per sorter step (the paper's 16-to-4 sorter), as in the accuracy study.
SORT_BATCH = 12
#: Comparator evaluations per key of the paper's design point (Bc 16, a 16-to-4 network of
#: 45 comparators, two steps per tile), the unit of L_sort.
SORT_REF_PER_KEY = 45 * 2 / 16
#: SU-FA multipliers per row are d / MAC_LANE_DIV (the default preset: 16 of 64).
MAC_LANE_DIV = 4
MAX_SEQ_LEN = 256

_NEG = np.iinfo(np.int64).min // 4


@lru_cache(maxsize=None)
def layer_config(d, block_size, k_max, max_seq_len=MAX_SEQ_LEN, adapt_bins=0, predict_keys=1):
    """The :class:`spec.config.SofaConfig` a layer runs on: the accuracy study's
    :func:`sim.predictors.sofa_config` (``k_max``, a sorter of ``k_max + 12`` inputs) with
    ``dlzs_lanes = d`` and ``mac_lanes = d/4``; ``adapt_bins > 0`` adds the adaptive
    budget's gate (name suffix ``-a<bins>``), ``predict_keys > 1`` predicts that many keys a
    cycle (suffix ``-p<predict_keys>``). Neither changes the selection, only the cycles."""
    cfg = sofa_config(d, block_size, k_max, max_seq_len, SORT_BATCH,
                      mac_lanes=max(1, d // MAC_LANE_DIV),
                      name=f"dse-bc{block_size}-k{k_max}"
                      + (f"-a{adapt_bins}" if adapt_bins else "")
                      + (f"-p{predict_keys}" if predict_keys > 1 else ""))
    if adapt_bins or predict_keys > 1:
        cfg = cfg.replace(adapt_bins=adapt_bins, predict_keys=predict_keys)
    return cfg


def layer_predict_keys(d, block_size, k_max, top_ks, adapt_bins=0):
    """``predict_keys`` of the core :func:`layer_config` ``(d, block_size, k_max,
    adapt_bins=adapt_bins)`` that runs heads keeping ``top_ks`` (one ``top_k`` or several):
    :func:`spec.timing.predict_keys_for` at the smallest of them, since the fewer keys a head
    keeps the sooner prediction bounds it."""
    top_ks = (top_ks,) if isinstance(top_ks, (int, np.integer)) else tuple(top_ks)
    return _predict_keys(d, block_size, k_max, min(top_ks), adapt_bins)


@lru_cache(maxsize=None)
def _predict_keys(d, block_size, k_max, top_k, adapt_bins):
    return predict_keys_for(layer_config(d, block_size, k_max, adapt_bins=adapt_bins), top_k)


def tile_predict_cycles(cfg, size):
    """Cycles prediction streams a tile of ``size`` keys on ``cfg`` (as :mod:`sim.perf`):
    ``size · max(dlzs_cycles, SADS ii)`` with one key a cycle; with ``predict_keys = P > 1``
    ``ceil(size / P)`` beats of ``dlzs_cycles``, or ``size`` times the SADS bank's ii where
    its units are slower. ``size`` may be an array."""
    der, P = cfg.derived, cfg.predict_keys
    if P == 1:
        return size * float(max(der.dlzs_cycles, sads_timing(cfg).ii))
    return np.maximum(-(-np.asarray(size) // P) * der.dlzs_cycles,
                      np.asarray(size) * float(sads_bank_timing(cfg).ii)).astype(np.float64)


def tile_sizes(seq_len, block_size):
    """Keys in each tile of a ``seq_len``-key row (the last tile may be short)."""
    nt = -(-seq_len // block_size)
    sizes = np.full(nt, block_size, np.int64)
    sizes[-1] = seq_len - (nt - 1) * block_size
    return sizes


def dense_order(seq_len, block_size):
    """Dense mode's visiting order ``[n_tiles, block_size]``: every key, natural order, -1
    padded (the ``sel`` of :func:`tile_rescales` for one row)."""
    sizes = tile_sizes(seq_len, block_size)
    sel = np.full((len(sizes), block_size), -1, np.int64)
    for t, n in enumerate(sizes):
        sel[t, :n] = t * block_size + np.arange(n)
    return sel


@lru_cache(maxsize=None)
def comparators(top_k):
    """Comparators of the pruned SADS network that carries ``top_k`` survivors."""
    return top_k_network(top_k + SORT_BATCH, top_k, "oddeven", presorted=top_k).size


def prediction_share(d):
    """The DLZS prediction's share of dense attention's compute (``d`` shift-adds against
    ``2·d`` INT8 MACs per query-key pair): no budget at or above ``1 − share`` can be met."""
    return COST_WEIGHTS["shift_add"] * d / (2.0 * d)


def kept_full(seq_lens, bc, k):
    """Kept fraction of a fixed ``top_k = k`` without clipping over sequences ``seq_lens``
    (a short last tile keeps ``min(k, its length)``)."""
    kept = sum(S * sum(min(k, int(n)) for n in tile_sizes(S, bc)) for S in seq_lens)
    return kept / sum(S * S for S in seq_lens)


@lru_cache(maxsize=None)
def _cycle_consts(cfg):
    """``(sparse_const, dense_const, mac_cycles, sparse_gap, dense_gap, row_floor)`` of
    :func:`sim.perf.core_cycles` for ``cfg``: the fixed cycles of a call (pipeline fill,
    output tail), the gap between rows, and the shortest sparse row (``predict_keys > 1``:
    SU-FA hands a row over only once the divider has taken the previous one, ``d`` cycles),
    measured by running ``core_cycles`` itself on one and on two rows, so that they follow
    the model."""
    der = cfg.derived
    M, B = der.mac_cycles, cfg.block_size
    tile = float(tile_predict_cycles(cfg, B))
    sp = RunParams(seq_len=B, top_k=1, radius=der.radius_inf, scale_log2e=0)
    dp = dataclasses.replace(sp, dense=True)
    # Rows of one tile: one selected key (M cycles plus the row's first-m cycle) after B
    # predicted keys (prediction-bound), or every key (B·M + 1 cycles) in dense mode.
    s1, s2 = (core_cycles(cfg, sp, None, work=[[(B, 1, 0)]] * n) for n in (1, 2))
    d1, d2 = (core_cycles(cfg, dp, None, work=[[(B, B, 0)]] * n) for n in (1, 2))
    sparse_gap, dense_gap = s2 - s1 - tile, d2 - d1 - (B * M + 1)
    sparse = s1 - tile - (M + 1)
    dense = d1 - (B * M + 1)
    floor = 0.0
    if cfg.predict_keys > 1:
        # A one-tile row is shorter than the divide, so the gap comes from rows of empty
        # tiles (prediction-bound) longer than it; the divide (d cycles: the DSE's cores
        # have the pipelined divider) is the floor of a row.
        n = int(2 * cfg.d // tile) + 2
        e1, e2 = (core_cycles(cfg, sp, None, work=[[(B, 0, 0)] * n] * r) for r in (1, 2))
        sparse_gap = e2 - e1 - n * tile
        floor = cfg.d - sparse_gap
    return float(sparse), float(dense), M, float(sparse_gap), float(dense_gap), floor


def tile_rescales(sel, scores):
    """Selected keys, misses and rescales per row and tile of a SU-FA run.

    ``sel`` is ``[N, n_tiles, kt]`` (visiting order, -1 padded at the end) and ``scores``
    ``[N, S]`` the exact scores. At a tile start ``m ← max(m, s(first), s(second))`` (a rescale
    if ``m`` existed and grows); a later key above ``m`` is a miss and a rescale (docs/numerics.md).
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


def cycles_closed_form(cfg, seq_len, n_sel, rescales, dense=False, extra_row=0):
    """Closed form of :func:`sim.perf.core_cycles` for rows ``[..., T, n_tiles]`` of one head
    each (leading axes are independent calls); returns the cycles of each call.

    Sparse: a row takes the longer of its prediction (:func:`tile_predict_cycles` summed over
    its tiles: ``S·key_time`` with one key a cycle, about ``S / predict_keys`` beats with
    more) and its SU-FA work (``(selected + rescales)·mac_cycles`` per tile, one cycle for an
    empty tile), plus the row gap; then the pipeline fill and the output tail once (taken
    from ``core_cycles``).
    Prediction runs up to three tiles ahead and into the next row, so the row, not the tile,
    is the unit that overlaps (within a few % of ``core_cycles`` on MiniLM, tested). Dense:
    SU-FA alone over every key, which is exactly ``core_cycles``' dense recurrence.
    ``extra_row`` cycles are added to each row's prediction (the adaptive gate,
    :func:`spec.timing.adapt_gate_cycles`); ``cfg`` is the core without the gate."""
    sparse_const, dense_const, M, sparse_gap, dense_gap, floor = _cycle_consts(cfg)
    sizes = tile_sizes(seq_len, cfg.block_size)
    T = n_sel.shape[-2]
    cost = np.where(n_sel > 0, (n_sel + rescales) * M, 1).astype(np.float64)
    cost[..., 0] += n_sel[..., 0] > 0
    if dense:
        return dense_const + cost.sum(axis=(-1, -2)) + dense_gap * (T - 1)
    predict = float(np.sum(tile_predict_cycles(cfg, sizes)))
    row = np.maximum(np.maximum(predict + extra_row, cost.sum(axis=-1)), floor)
    return sparse_const + row.sum(axis=-1) + sparse_gap * (T - 1)


def exact_cycles(cfg, seq_len, n_sel, rescales, dense=False):
    """:func:`sim.perf.core_cycles` itself for one head (rows ``[T, n_tiles]``)."""
    sizes = tile_sizes(seq_len, cfg.block_size)
    work = [[(int(sizes[t]), int(n_sel[i, t]), int(rescales[i, t]))
             for t in range(len(sizes))] for i in range(n_sel.shape[0])]
    params = RunParams(seq_len=seq_len, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=0, dense=dense)
    return core_cycles(cfg, params, None, work=work)
