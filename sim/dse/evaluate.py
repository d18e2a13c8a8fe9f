"""Evaluating a DSE plan on MiniLM with the bit-exact SOFA datapath.

:class:`Evaluator` holds the model, the texts and their dense embeddings and runs one plan
over one text: the MiniLM forward pass (:mod:`sim.minilm`) with *every* layer's attention
replaced by :func:`attend`, the bit-exact datapath of :mod:`sim.fastgolden` under the layer's
setting, which also sums the layer's cost terms (:mod:`sim.dse.cost`). It can also screen a
plan: estimate its compute saved from the selection alone on the dense model's cached Q, K, V,
without the forward pass (:meth:`Evaluator.screen_saved`).

A layer under the adaptive budget (:attr:`LayerSetting.adapt`) runs with the registers
``adapt_mass``/``adapt_scale``/``adapt_shift`` of :class:`sim.adaptive.SofaAdaptive` and is
charged the rule's own cost as the accuracy study charges it: ``adapt_key`` per query-key pair
and ``adapt_bin`` per bin and row (:data:`sim.predictors.COST_WEIGHTS`) in the compute; one
comparison per key (eligibility) and per bin (the cumulative-mass test) in the sorting term;
one exp2 per bin and row (the bin weights) in the exp term; the gate's cycles in each row's
prediction (:func:`spec.timing.adapt_gate_cycles`, the cycle model's terms for the gate). The
exact cycle count (``sim.perf.core_cycles``) needs the SADS counts per tile of the golden
model, which the DSE's vectorised run does not keep, so adaptive layers have none.

A layer whose rule has the tail blend on (``tail_alpha > 0``) runs with the register
``tail_scale`` of :class:`sim.adaptive.SofaAdaptiveTail` (:func:`tail_registers`, as the host
writes it) and is charged the blend's cost as the study charges it
(:func:`sim.adaptive.tail_ops`, :func:`tail_cost`); in the other terms, a compare (``b >
b_star``) and an exp2 per bin and row (the second weight sweep) and the gate's extra cycles
per row (:func:`spec.timing.tail_sweep_cycles`).

:func:`aggregate` turns per-text sums into the metrics of the objective
(:func:`objective_value`); :class:`Runner` evaluates ``(plan, text)`` tasks in this process or
in a pool of forked processes.
"""

import dataclasses
import math
import multiprocessing

import numpy as np

from sim.adaptive import tail_ops
from sim.dse.cost import (SORT_REF_PER_KEY, comparators, cycles_closed_form, dense_order,
                          exact_cycles, layer_config, layer_predict_keys, tile_rescales,
                          tile_sizes)
from sim.dse.space import BLOCK_SIZES
from sim.fastgolden import adaptive_eligible_vec, dlzs_scores_fast, sads_rows, sofa_heads
from sim.golden import exp2_lut
from sim.minilm import MiniLM, cosine
from sim.predictors import (COST_WEIGHTS, HeadData, head_registers, int8_equivalent,
                            radius_register)
from spec.timing import adapt_gate_cycles, tail_sweep_cycles


__all__ = ["SUMS", "Evaluator", "attend", "adapt_cost", "adapt_registers", "tail_cost",
           "tail_registers", "aggregate",
           "objective_value", "entry", "Runner"]

#: The per-text sums of :meth:`Evaluator.run_text` that :func:`aggregate` adds up.
SUMS = ("pairs", "rows", "kept", "cost", "dense_cost", "sort_ops", "exp", "exp_dense",
        "cycles", "cycles_dense")


class Evaluator:
    """The model, the texts and their dense embeddings; runs one plan over one text.

    Parameters
    ----------
    texts : dict
        ``{name: text}``.
    max_tokens : int, optional
        Truncate every text to this many tokens (keeping ``[SEP]``): the quick version.
    model : MiniLM, optional
        The model (default: a new :class:`sim.minilm.MiniLM`).
    screen : sequence of int
        Texts (indices) whose dense Â are cached for :meth:`screen_saved`.
    """

    def __init__(self, texts, max_tokens=None, model=None, screen=()):
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
        counts are cached per (text, layer, Bc, top_k, R, mass, rule). With the adaptive
        budget the kept count depends on the data: it comes from the eligible keys of the
        cached Â (:func:`sim.fastgolden.adaptive_eligible_vec`), exact for layer 0 and an
        estimate for the later layers. The texts must have been given as ``screen`` to the
        constructor."""
        cost = dense = 0.0
        d = self.d
        for ti in text_idx:
            for layer, setting in enumerate(plan):
                H, T, S = self.dense[ti][layer][0].shape
                kept = 0
                for h, hs in enumerate(setting.heads):
                    kept += self.kept(ti, layer, setting.block_size, hs.top_k,
                                      hs.radius_nat, hs.adapt_mass, setting.adapt)[h]
                cost += (COST_WEIGHTS["shift_add"] * H * T * S * d
                         + COST_WEIGHTS["int8_mac"] * 2 * d * kept
                         + adapt_cost(setting.adapt_bins, H * T, S)
                         + tail_cost(setting.adapt, H, T, S, d))
                dense += 2.0 * d * H * T * S
        return 1.0 - cost / dense

    def kept(self, ti, layer, bc, top_k, radius_nat, adapt_mass=0, rule=None):
        """Keys kept per head ``[H]`` of the dense run's ``layer`` on text ``ti`` under one
        setting, every head alike (cached; the text must be one of ``screen``); with
        ``adapt_mass > 0`` under the adaptive budget of ``rule``."""
        if rule is not None and rule.tail:       # the blend does not change the selection
            rule = dataclasses.replace(rule, tail_alpha=0.0)
        key = (ti, layer, bc, top_k, radius_nat, adapt_mass, rule)
        if key not in self._kept_cache:
            ahat, lscale = self.dense[ti][layer]
            H, T, S = ahat.shape
            if math.isinf(radius_nat) and not adapt_mass:
                n = T * int(np.minimum(tile_sizes(S, bc), top_k).sum())
                kept = np.full(H, n, np.int64)
            else:
                cfg = layer_config(self.d, bc, top_k, adapt_bins=rule.bins if adapt_mass else 0)
                r = np.array([radius_register(cfg, radius_nat, s) for s in lscale], np.int64)
                eligible = None
                if adapt_mass:
                    scale, shift = adapt_registers(rule, cfg, lscale)
                    eligible, _ = adaptive_eligible_vec(
                        ahat.reshape(-1, S), cfg, np.full(H * T, adapt_mass),
                        np.repeat(scale, T), np.repeat(shift, T),
                        np.asarray(exp2_lut(cfg), np.int64))
                sel, _, _ = sads_rows(ahat.reshape(-1, S), cfg, top_k, np.repeat(r, T), S,
                                      eligible)
                kept = (sel >= 0).reshape(H, -1).sum(axis=1)
            self._kept_cache[key] = kept
        return self._kept_cache[key]

    def run_text(self, plan, ti, registers=False, exact=False):
        """Metrics of ``plan`` (a tuple of :class:`LayerSetting`) on text ``ti``: the cosine,
        the sums of :data:`SUMS` and per layer ``kept``/``pairs``; with ``registers`` the
        run-time registers of every layer and head; with ``exact`` the cycles of
        :func:`sim.perf.core_cycles` as ``cycles_exact``/``cycles_dense_exact``."""
        tot = dict.fromkeys(SUMS, 0.0)
        if exact and not any(ls.adapt_bins for ls in plan):
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


class _Scales:
    """What :meth:`sim.adaptive.SofaAdaptive.adapt_registers` reads of a
    :class:`sim.predictors.HeadData`: the head count and the logit scales."""

    def __init__(self, logit_scale):
        self.logit_scale = np.asarray(logit_scale)
        self.shape = self.logit_scale.shape


def adapt_registers(rule, cfg, logit_scale):
    """``(adapt_scale, adapt_shift)`` per head of the logit scales ``logit_scale``
    (:attr:`HeadData.logit_scale`) under ``rule``: those of :class:`sim.adaptive.SofaAdaptive`
    itself, so the DSE and the accuracy study cannot differ."""
    return rule.predictor().adapt_registers(cfg, _Scales(logit_scale))


def tail_registers(rule, cfg, logit_scale):
    """``tail_scale`` per head of the logit scales ``logit_scale`` under ``rule`` (0 each
    with the blend off): those of :class:`sim.adaptive.SofaAdaptiveTail` itself."""
    if rule is None or not rule.tail:
        return [0] * len(logit_scale)
    return rule.predictor().tail_registers(cfg, _Scales(logit_scale))


def tail_cost(rule, heads, rows, seq_len, d):
    """The tail blend's compute (INT8-MAC equivalents) for ``heads`` heads of ``rows`` rows
    of ``seq_len`` keys under ``rule`` (0 with the blend off or no rule): the
    :func:`sim.adaptive.tail_ops` that :class:`sim.adaptive.SofaAdaptiveTail` charges."""
    if rule is None or not rule.tail:
        return 0.0
    return int8_equivalent(tail_ops(heads, rows, seq_len, d, rule.bins))


def adapt_cost(bins, rows, seq_len):
    """The adaptive rule's own compute (INT8-MAC equivalents) over ``rows`` rows of
    ``seq_len`` keys: ``adapt_key`` per pair, ``adapt_bin`` per bin and row (0 without
    bins), as :class:`sim.adaptive.SofaAdaptive` charges it."""
    if not bins:
        return 0.0
    return (COST_WEIGHTS["adapt_key"] * rows * seq_len
            + COST_WEIGHTS["adapt_bin"] * rows * bins)


def attend(setting, hd, registers=False, exact=False):
    """One layer (:class:`sim.predictors.HeadData`) under ``setting``: the output
    ``[H, T, d]`` in V's integer units and the layer's cost sums (heads with the same
    ``top_k`` run together through :func:`sim.fastgolden.sofa_heads`). Under the adaptive
    budget ``exact`` is ignored (see the module docstring)."""
    H, T, S, d = hd.shape
    bc = setting.block_size
    rule, bins = setting.adapt, setting.adapt_bins
    exact = exact and not bins
    # The cycles: the core without the gate, predicting as many keys a cycle as the rule
    # sizes for the layer's smallest top_k (one with the gate).
    P = layer_predict_keys(d, bc, setting.k_max, [hs.top_k for hs in setting.heads], bins)
    cfg_layer = layer_config(d, bc, setting.k_max, predict_keys=P)
    tail = bool(bins) and rule.tail
    extra_row = adapt_gate_cycles(S, bins) + (tail_sweep_cycles(bins) if tail else 0)
    out = np.empty((H, T, d))
    st = dict.fromkeys(SUMS, 0.0)
    if exact:
        st.update(cycles_exact=0.0, cycles_dense_exact=0.0)
    regs = [None] * H
    groups = {}
    for h, hs in enumerate(setting.heads):
        groups.setdefault(hs.top_k, []).append(h)
    dense_sel = dense_order(S, bc)
    for top_k, heads in sorted(groups.items()):
        cfg = layer_config(d, bc, top_k, adapt_bins=bins)
        scale, radius = head_registers(cfg, hd, [setting.heads[h].radius_nat for h in heads],
                                       heads)
        adapt = {}
        if bins:
            a_scale, a_shift = adapt_registers(rule, cfg, hd.logit_scale[heads])
            adapt = {"adapt_mass": [setting.heads[h].adapt_mass for h in heads],
                     "adapt_scale": a_scale, "adapt_shift": a_shift,
                     "tail_scale": tail_registers(rule, cfg, hd.logit_scale[heads])}
        res = sofa_heads(hd.Q[heads], hd.K[heads], hd.V[heads], cfg, seq_len=S,
                         top_k=top_k, radius=radius, scale_log2e=scale, **adapt)
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
                       + COST_WEIGHTS["int8_mac"] * 2 * d * kept + adapt_cost(bins, G * T, S)
                       + tail_cost(rule, G, T, S, d))
        st["dense_cost"] += 2.0 * d * G * T * S
        # The adaptive rule: an eligibility compare a key, a mass compare and a weight a bin;
        # the tail blend: a compare (b > b_star) and a weight a bin.
        st["sort_ops"] += (comparators(top_k) * int(res.steps.sum())
                           + (G * T * (S + bins) if bins else 0)
                           + (G * T * bins if tail else 0))
        st["exp"] += kept + int(resc.sum()) + G * T * bins * (2 if tail else 1)
        st["exp_dense"] += G * T * S + int(resc_d.sum())
        # Cycles on the layer's core (k_max of the layer: its sorter sets key_time).
        shp = (G, T, -1)
        st["cycles"] += float(cycles_closed_form(cfg_layer, S, n_sel.reshape(shp),
                                                 resc.reshape(shp), extra_row=extra_row).sum())
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
                if bins:
                    regs[h].update({k: int(v[g]) for k, v in adapt.items()})
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


def entry(name, plan, res, search_idx, held_idx, **extra):
    """One evaluated point for the report: ``plan``, its per-text results ``res`` and their
    aggregates over all texts, the search texts and (if any) the held-out texts."""
    e = {"name": name, "plan": plan, "per_text": res, "all": aggregate(res),
         "search": aggregate(res, search_idx)}
    if held_idx:
        e["held_out"] = aggregate(res, held_idx)
    e.update(extra)
    return e


# -- processes -----------------------------------------------------------------------------

#: The evaluator of this process (inherited by the forked pool), set by :class:`Runner`.
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
    """Evaluates ``(plan, text)`` tasks in this process or in a pool of ``jobs`` forked
    processes (create it before any thread or database connection exists)."""

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
