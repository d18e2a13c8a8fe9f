"""The DSE's reference points: fixed-ratio configurations and one calibrated sphere radius.

A fixed-ratio point has the same ``Bc`` and ``top_k`` in every layer and head and no clipping
(:func:`fixed_grid`, :func:`run_fixed`); the best of them within the budget
(:func:`best_fixed`) and their upper envelope (:func:`frontier_at`) are what the DSE's choice
is compared with. :func:`calibrate_radius` finds the one radius that, with ``top_k = Bc``
(selection by sphere clipping alone), costs a given compute.
"""

import math

from sim.dse.evaluate import entry
from sim.dse.space import uniform_plan
from sim.dse.study import progress_bar


__all__ = ["fixed_grid", "run_fixed", "best_fixed", "frontier_at", "calibrate_radius"]


def fixed_grid(quick=False):
    """``{Bc: top_k values}`` of the fixed-ratio baselines (every layer and head alike,
    R = ∞): dense around the usual budgets, and 50 % for the accurate end."""
    if quick:
        return {16: (2, 4), 32: (2, 4, 8)}
    return {16: (1, 2, 3, 4, 8), 32: (2, 3, 4, 5, 6, 8, 16),
            64: (4, 6, 7, 8, 9, 10, 12, 16, 32)}


def run_fixed(runner, ev, grid, search_idx, held_idx, progress):
    """Every fixed-ratio point of ``grid`` on every text."""
    plans = [(bc, k, uniform_plan(ev.n_layers, ev.n_heads, bc, k))
             for bc, ks in grid.items() for k in ks]
    all_idx = list(range(len(ev.names)))
    out = []
    bar = progress_bar(len(plans), "fixed-ratio points", progress)
    step = max(1, runner.jobs)
    for i in range(0, len(plans), step):
        chunk = plans[i:i + step]
        for (bc, k, plan), res in zip(chunk, runner.evaluate([p for *_, p in chunk], all_idx)):
            out.append(entry(f"fixed Bc={bc} top_k={k}", plan, res, search_idx, held_idx,
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
            cache[logr] = entry(f"R-only Bc={bc} R={r:.3g}", plan, res, search_idx,
                                held_idx, block_size=bc, top_k=bc, radius_nat=r)
            bar.update(1)
        return cache[logr]

    bar = progress_bar(iters + 2, f"radius calibration (Bc={bc})", progress)
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
