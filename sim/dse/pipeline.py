"""A whole DSE run from checked settings: the search, the baselines, the choice, the report.

:func:`run_dse` takes the settings of :func:`sim.dse.cli.settings_from_args` and the texts,
and then

1. builds the evaluator (MiniLM, the texts, their dense embeddings) and the process pool;
2. opens or resumes the main study (warm-started with the uniform configurations just inside
   the budget) and runs it until it holds the requested trials (:func:`sim.dse.study.search`);
   a ``--worker`` stops here;
3. evaluates the fixed-ratio baselines and chooses the best trial that meets the budget on
   all texts (registers and exact cycles);
4. the radius-only comparison (adaptive selection): with ``Bc = --radius-bc`` and
   ``top_k = Bc`` one radius is calibrated to the compute of the fixed top-k point at that
   ``Bc`` and a second study tunes R per layer under the same compute;
5. writes the outputs (:func:`sim.dse.report.write_outputs`).

With ``--adaptive`` the study searches the adaptive budget's mass per layer (or head)
instead (:func:`sim.dse.space.suggest_adaptive`), warm-started with the uniform masses just
inside the budget by the screen; step 3 adds the uniform adaptive points (one mass in every
layer and head, :func:`adaptive_grid`) and the best of them within the budget; step 4 is
not run. With ``--tail`` the rule has the tail blend: one alpha in every layer, or with
``--tail search`` an alpha per layer searched too (warm-started at
:data:`sim.longstudy.TAIL_ALPHA`); the uniform points are then evaluated with and without
the blend (at that alpha, or the fixed one).
"""

import time
from dataclasses import dataclass
from pathlib import Path

from sim.dse.baselines import best_fixed, calibrate_radius, fixed_grid, frontier_at, run_fixed
from sim.dse.evaluate import Evaluator, Runner, entry
from sim.dse.plan import layer_core
from sim.dse.report import write_outputs
from sim.dse.space import (MASS_GRID, TAIL_ALPHA, TAIL_ALPHAS, TEMPERATURES, AdaptiveRule,
                           adaptive_plan, pct, suggest_adaptive, suggest_main, suggest_radius,
                           warm_start)
from sim.dse.study import (best_trials, choose, counts, delete_study, open_storage, open_study,
                           quiet_optuna, search, trial_rows, worker_id)


__all__ = ["run_dse", "log_line", "adaptive_grid", "adaptive_warm_start", "adaptive_rule"]


def adaptive_grid(quick=False):
    """The masses of the uniform adaptive points (every layer and head alike)."""
    return (64, 128) if quick else MASS_GRID[::2]


def adaptive_warm_start(ev, rule, budget, search_idx, per_head,
                        search_temperature=False, search_tail=False):
    """Uniform starting points of the adaptive space: the largest mass whose screened
    compute saved on the search texts meets the budget, and the next one above it (the
    screen is an estimate beyond layer 0), as trial parameters (with
    ``search_temperature`` at the rule's temperature, with ``search_tail`` the tail blend at
    :data:`sim.longstudy.TAIL_ALPHA` in every layer, its cost in the screen)."""
    nl, nh = ev.n_layers, ev.n_heads
    alphas = [TAIL_ALPHA] * nl if search_tail else None
    ok = [m for m in MASS_GRID
          if ev.screen_saved(adaptive_plan([m] * nl, rule, nh, alphas),
                             search_idx) >= budget]
    if not ok:
        return []
    i = MASS_GRID.index(max(ok))
    tags = [f"H{h}" for h in range(nh)] if per_head else [""]
    temp = {"T": rule.temperature} if search_temperature else {}
    tail = {f"L{l}_tail": TAIL_ALPHA for l in range(nl)} if search_tail else {}
    return [{**temp, **{f"L{l}{t}_mass": m for l in range(nl) for t in tags}, **tail}
            for m in MASS_GRID[i:i + 2]]


def adaptive_rule(s):
    """The adaptive rule of the settings ``s`` (None without ``--adaptive``), with a fixed
    ``--tail`` alpha (``--tail search`` sets it per layer, from the trial; off: 0)."""
    t = s.get("adapt_temperature")
    if t is None:
        return None
    tail = s.get("tail")
    return AdaptiveRule(temperature=t, tail_alpha=0.0 if tail in (None, "search")
                        else float(tail))


def log_line(msg):
    """The default log: one line on stdout, flushed (progress bars go to stderr)."""
    print(msg, flush=True)


@dataclass
class _Run:
    """What every step of a run needs: the settings, the evaluator, the process pool and the
    split of the texts into search and held-out texts."""
    s: dict
    ev: Evaluator
    runner: Runner
    names: list
    search_idx: list
    held_idx: list
    all_idx: list
    t0: float
    log: object

    @property
    def progress(self):
        return self.s["progress"]

    @property
    def rule(self):
        """The adaptive rule of an ``--adaptive`` run (None otherwise)."""
        return adaptive_rule(self.s)

    @property
    def search_tail(self):
        return self.s.get("tail") == "search"

    @property
    def weights(self):
        w = self.s["weights"]
        return w["alpha"], w["beta"], w["gamma"]


def run_dse(s, texts, log=log_line):
    """Run the DSE with the settings ``s`` (:func:`sim.dse.cli.settings_from_args`) on
    ``texts`` (``{name: text}``, the first ``s["n_texts"]`` are used); returns the exit
    status."""
    t0 = time.time()
    texts = dict(list(texts.items())[:s["n_texts"]])
    names = list(texts)
    search_idx = list(range(s["search_n"]))
    ev = Evaluator(texts, max_tokens=s["max_tokens"], screen=search_idx)
    jobs = 1 if s["worker"] else s["workers"]
    runner = Runner(ev, jobs)                  # forks before any thread or connection exists
    r = _Run(s, ev, runner, names, search_idx, list(range(s["search_n"], len(names))),
             list(range(len(names))), t0, log)
    try:
        code = _main_study(r)
    except BaseException:
        runner.close(terminate=True)
        raise
    runner.close()
    return code


def _main_study(r):
    import optuna
    quiet_optuna()
    s, ev, runner, log = r.s, r.ev, r.runner, r.log
    names, search_idx = r.names, r.search_idx
    budget = s["budget"]
    nl, nh, d = ev.n_layers, ev.n_heads, ev.d
    rule = r.rule
    signature = {"kind": "main", "space": 1, "texts": names,
                 "search_texts": [names[i] for i in search_idx], "max_tokens": s["max_tokens"],
                 "budget": budget, "weights": s["weights"], "per_head": s["per_head"]}
    search_t = bool(s.get("search_temperature"))
    if rule is not None:
        signature.update(kind="adaptive", adaptive=rule.to_dict())
        if search_t:
            signature["temperatures"] = list(TEMPERATURES)
        if r.search_tail:
            signature["tail_alphas"] = list(TAIL_ALPHAS)
        warm = adaptive_warm_start(ev, rule, budget, search_idx, s["per_head"], search_t,
                                   r.search_tail)
    else:
        # the cycle term changed with predict_keys: older studies priced one key a cycle
        signature["cycle_model"] = "predict_keys by spec.timing.predict_keys_for"
        warm = warm_start(budget, nl, nh, s["per_head"], d,
                          [len(ev.ids[i]) for i in search_idx])
    storage = open_storage(s["storage"])
    n_startup = max(2, min(20, s["trials"] // 5))
    study, created = open_study(storage, s["study"], signature, s["seed"], n_startup,
                                fresh=s["fresh"], warm=warm)
    rstudy_name = f"{s['study']}-radius"
    if s["fresh"]:
        delete_study(storage, rstudy_name)
    done, _ = counts(study)
    log(f"study {s['study']!r}: {done} complete trials of {s['trials']} "
        f"({'new' if created else 'resumed'}); search on {len(search_idx)} of {len(names)} "
        f"texts, {runner.jobs} process(es); budget {pct(budget)} saved")

    def suggest(trial):
        if rule is not None:
            return suggest_adaptive(trial, nl, nh, s["per_head"], rule, search_t,
                                    r.search_tail)
        return suggest_main(trial, nl, nh, s["per_head"])

    t1 = time.time()
    mine = search(study, runner, suggest, search_idx, s["trials"], r.weights, budget,
                  own_limit=s["worker_trials"] if s["worker"] else None,
                  wait=not s["worker"], progress=r.progress)
    t_search = time.time() - t1
    done, _ = counts(study)
    if s["worker"]:
        log(f"worker {worker_id()}: {mine} trials; the study holds {done} complete trials "
            f"({time.time() - r.t0:.0f} s)")
        return 0
    ctx = {"n_layers": nl, "n_heads": nh, "optuna": optuna.__version__,
           "tokens": [int(len(i)) for i in ev.ids], "wall": {"search": t_search}}
    feasible = best_trials(study, budget)
    ctx["n_complete"], ctx["n_feasible"] = done, len(feasible)
    ctx["trials"] = trial_rows(study)
    ctx["n_screened"] = sum(bool((t["metrics"] or {}).get("screened")) for t in ctx["trials"])
    log(f"search: {done} complete trials, {len(feasible)} within the budget, "
        f"{ctx['n_screened']} screened out ({t_search:.0f} s)")
    _baselines_and_choice(r, study, ctx)
    t1 = time.time()
    ctx["radius"] = None if s["skip_radius"] or rule is not None else \
        _radius_study(r, storage, ctx["fixed"], rstudy_name)
    ctx["wall"]["radius"] = time.time() - t1
    ctx["wall"]["total"] = time.time() - r.t0
    ctx["settings"] = {
        "budget": budget, "weights": s["weights"], "seed": s["seed"], "trials": s["trials"],
        "radius_trials": s["radius_trials"], "per_head": s["per_head"],
        "workers": s["workers"], "study": s["study"], "texts": names,
        "search_texts": [names[i] for i in search_idx], "max_tokens": s["max_tokens"],
        "quick": s["quick"], "adaptive": None if rule is None else rule.to_dict(),
        "search_temperature": search_t, "tail": s.get("tail")}
    ctx["plan_settings"] = {k: ctx["settings"][k] for k in
                            ("budget", "weights", "seed", "trials", "per_head", "study",
                             "texts", "search_texts", "max_tokens", "adaptive",
                             "search_temperature", "tail")}
    ch = ctx["chosen"]
    ctx["plan_settings"]["trial"] = None if ch is None else ch["trial"]
    files = write_outputs(ctx, Path(s["out"]), ev)
    log(f"wrote {', '.join(str(f) for f in files)} ({ctx['wall']['total']:.0f} s)")
    return 0


def _baselines_and_choice(r, study, ctx):
    """The fixed-ratio points, the best of them within the budget (again with registers and
    exact cycles) and the chosen trial, into ``ctx``."""
    s, ev, runner, log = r.s, r.ev, r.runner, r.log
    budget = s["budget"]
    t1 = time.time()
    ctx["fixed"] = run_fixed(runner, ev, fixed_grid(s["quick"]), r.search_idx, r.held_idx,
                             r.progress)
    fb = best_fixed(ctx["fixed"], budget)
    if fb is not None:                         # again, with registers and exact cycles
        res = runner.evaluate([fb["plan"]], r.all_idx, exact=True)[0]
        fb = entry(fb["name"], fb["plan"], res, r.search_idx, r.held_idx,
                   block_size=fb["block_size"], top_k=fb["top_k"])
    ctx["fixed_best"] = fb
    rule = r.rule
    ctx["adaptive_uniform"], ctx["adaptive_best"] = [], None
    if rule is not None:                       # one mass in every layer and head
        masses = adaptive_grid(s["quick"])
        # with the tail blend: each mass without it and with it (the search's default alpha
        # or the fixed one)
        alphas = [0.0] if s.get("tail") is None else \
            [0.0, TAIL_ALPHA if r.search_tail else rule.tail_alpha]
        points = [(m, a) for a in alphas for m in masses]
        plans = [adaptive_plan([m] * ev.n_layers, rule, ev.n_heads, [a] * ev.n_layers)
                 for m, a in points]
        for (m, a), plan, res in zip(points, plans, runner.evaluate(plans, r.all_idx)):
            name = f"adaptive p={m}/256" + (f" tail alpha={a:g}" if a else "")
            ctx["adaptive_uniform"].append(entry(name, plan, res, r.search_idx, r.held_idx,
                                                 adapt_mass=m, tail_alpha=a))
        ctx["adaptive_best"] = best_fixed(ctx["adaptive_uniform"], budget)
        ab = ctx["adaptive_best"]
        if ab is not None:
            log(f"best uniform adaptive mass within the budget: p={ab['adapt_mass']}/256"
                + (f", tail alpha {ab['tail_alpha']:g}" if ab["tail_alpha"] else "")
                + f", saved {pct(ab['all']['saved'])}, cosine {ab['all']['cos_mean']:.4f}")
        if len(alphas) > 1:                    # the best without the blend, for comparison
            off = best_fixed([e for e in ctx["adaptive_uniform"] if not e["tail_alpha"]],
                             budget)
            if off is not ab:                  # shown when the blend's best is another
                ctx["adaptive_best_off"] = off
            if off is not None and off is not ab:
                log(f"best uniform adaptive mass without the tail blend: "
                    f"p={off['adapt_mass']}/256, saved {pct(off['all']['saved'])}, cosine "
                    f"{off['all']['cos_mean']:.4f}")
    ctx["wall"]["fixed"] = time.time() - t1

    t1 = time.time()
    ch = choose(runner, study, budget, r.all_idx, r.search_idx, r.held_idx, s["finalists"],
                ev.n_layers, ev.n_heads, adaptive=rule)
    ctx["chosen"] = ch
    if ch is not None:
        ctx["fixed_interp"] = frontier_at(ctx["fixed"], ch["all"]["saved"])
        P = "/".join(str(layer_core(ls, ev.d).predict_keys) for ls in ch["plan"])
        tail = "" if rule is None or s.get("tail") is None else "; tail alpha per layer " + \
            "/".join(f"{ls.adapt.tail_alpha:g}" if ls.adapt.tail else "off"
                     for ls in ch["plan"])
        log(f"best: trial {ch['trial']}, saved {pct(ch['all']['saved'])}, cosine "
            f"{ch['all']['cos_mean']:.4f} (all texts); predict_keys per layer {P}{tail}")
    if fb is not None:
        log(f"best fixed ratio within the budget: Bc={fb['block_size']} top_k={fb['top_k']}, "
            f"saved {pct(fb['all']['saved'])}, cosine {fb['all']['cos_mean']:.4f}")
    ctx["wall"]["final"] = time.time() - t1


def _radius_study(r, storage, fixed, name):
    """Sphere clipping alone at ``Bc = --radius-bc``: the fixed top-k reference, one
    calibrated R, and R per layer from a second study."""
    s, ev, runner, log = r.s, r.ev, r.runner, r.log
    names, search_idx = r.names, r.search_idx
    bc = s["radius_bc"]
    refs = [e for e in fixed if e["block_size"] == bc and e["all"]["saved"] >= s["budget"]]
    if not refs:
        log(f"radius-only: no fixed top-k point at Bc={bc} meets the budget; skipped")
        return None
    ref = max(refs, key=lambda e: e["all"]["kept"])
    target = ref["all"]["saved"]
    out = {"bc": bc, "ref": ref, "study": name, "n_complete": 0}
    uni = calibrate_radius(runner, ev, bc, target, r.all_idx, search_idx, r.held_idx,
                           s["calib_iters"], r.progress)
    out["uniform"] = uni
    if uni is None:
        return out
    log(f"radius-only: one R = {uni['radius_nat']:.3g} saves {pct(uni['all']['saved'])}, "
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
    search(study, runner, lambda t: suggest_radius(t, nl, nh, bc), search_idx,
           s["radius_trials"], r.weights, target, progress=r.progress,
           desc="radius-only search")
    out["n_complete"] = counts(study)[0]
    out["trials"] = trial_rows(study)
    pl = choose(runner, study, target, r.all_idx, search_idx, r.held_idx, s["finalists"], nl,
                nh, radius_bc=bc)
    out["per_layer"] = pl
    if pl is not None:
        log(f"radius-only: R per layer saves {pct(pl['all']['saved'])}, cosine "
            f"{pl['all']['cos_mean']:.4f}")
    return out
