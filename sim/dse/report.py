"""The DSE's report: ``summary.md``, ``pareto.png`` and ``results.json``.

:func:`write_outputs` writes them, with ``plan.json`` and the ``core_bc<Bc>.json`` files
(:mod:`sim.dse.plan`), from the context a run collects (:mod:`sim.dse.pipeline`): settings,
every trial, the fixed-ratio baselines, the chosen point and the radius-only comparison. Every
number in the report comes from that run.
"""

import json

import numpy as np

from sim.accuracy import jsonable
from sim.dse.cost import SORT_REF_PER_KEY
from sim.dse.plan import MODEL_NAME, head_predict_keys, layer_core, write_plan
from sim.dse.space import (BLOCK_SIZES, KEEP_DEN, KEEP_STEPS, MASS_GRID, RADII_NAT,
                           RADIUS_RANGE, TAIL_ALPHAS, TEMPERATURES, pct, radius_text)
from sim.dse.study import SCREEN_MARGIN


__all__ = ["summary_markdown", "write_plot", "entry_json", "write_outputs"]


def _predict_keys_text(ls, d):
    """A layer's ``predict_keys`` for the table: its core's, and the heads' range where
    their ``top_k`` need different numbers."""
    own, need = layer_core(ls, d).predict_keys, sorted(set(head_predict_keys(ls, d)))
    return str(own) if len(need) == 1 else f"{own} (heads {need[0]} … {need[-1]})"


def _alpha_text(rule):
    """A rule's tail-blend alpha for the tables: ``off`` or the number."""
    return f"{rule.tail_alpha:g}" if rule.tail else "off"


def _tail_text(tail):
    """The ``--tail`` setting of a run for the report's search space."""
    if tail is None:
        return "the tail blend off"
    if tail == "search":
        return ("the tail blend's alpha per layer from {" + ", ".join(
            "off" if a == 0 else f"{a:.1f}" for a in TAIL_ALPHAS) + "} (TAIL_SCALE = alpha·c; "
            "its cost charged: tail_bin per bin and row, tail_frac per row, tail_mac per "
            "output element, tail_vsum and tail_vdiv per head, sim.adaptive.tail_ops)")
    return (f"the tail blend at alpha {tail:g} in every layer (TAIL_SCALE = alpha·c; its "
            f"cost charged as sim.adaptive.tail_ops)")


def _layer_rows(entry, d):
    """The chosen configuration as a Markdown table, one row per layer (``d``: the head
    size, for the ``predict_keys`` each layer's top_k needs)."""
    plan = entry["plan"]
    lines = ["| layer | Bc | top_k (keep) | predict_keys | R (logit units) | keys kept |",
             "|---|---|---|---|---|---|"]
    if plan[0].adapt is not None:
        lines = ["| layer | Bc | cap | predict_keys | mass p (of 256) | tail alpha | "
                 "keys kept |",
                 "|---|---|---|---|---|---|---|"]
        for l, ls in enumerate(plan):
            ms = [h.adapt_mass for h in ls.heads]
            m = str(ms[0]) if len(set(ms)) == 1 else \
                f"{min(ms)} … {max(ms)} per head (mean {np.mean(ms):.1f})"
            lines.append(f"| {l} | {ls.block_size} | {ls.heads[0].top_k} | "
                         f"{_predict_keys_text(ls, d)} | {m} | {_alpha_text(ls.adapt)} | "
                         f"{pct(entry['all']['kept_per_layer'][l])} |")
        return "\n".join(lines)
    for l, ls in enumerate(plan):
        ks = sorted({h.top_k for h in ls.heads})
        rs = sorted({h.radius_nat for h in ls.heads})
        if len(ks) == 1:
            k = f"{ks[0]} ({pct(ks[0] / ls.block_size)})"
        else:
            mean = np.mean([h.top_k for h in ls.heads])
            k = f"{ks[0]} … {ks[-1]} per head (mean {mean:.1f})"
        r = radius_text(rs[0]) if len(rs) == 1 else \
            ", ".join(radius_text(x) for x in rs) + " per head"
        lines.append(f"| {l} | {ls.block_size} | {k} | {_predict_keys_text(ls, d)} | {r} | "
                     f"{pct(entry['all']['kept_per_layer'][l])} |")
    return "\n".join(lines)


def _point_row(name, e, key="all"):
    """One evaluated point as a row of the comparison tables."""
    m = e[key]
    held = e.get("held_out")
    held_s = f"{held['cos_mean']:.4f}" if held else "—"
    cyc = m.get("L_cycle_exact")
    cyc_s = (f"{m['L_cycle']:.3f} ({cyc:.3f})" if cyc is not None else f"{m['L_cycle']:.3f}")
    return (f"| {name} | {pct(m['saved'])} | {pct(m['kept'])} | "
            f"{m['cos_mean']:.4f} / {m['cos_min']:.4f} | {held_s} | "
            f"{m['sort_per_pair']:.2f} | {m['L_exp']:.3f} | {cyc_s} |")


def summary_markdown(ctx, plots):
    """``summary.md`` of a run's context ``ctx``; ``plots`` are ``(title, file)`` pairs."""
    s = ctx["settings"]
    ch, fb = ctx["chosen"], ctx["fixed_best"]
    w = s["weights"]
    ad = s.get("adaptive")
    if ad:
        space = (f"the adaptive budget's mass p = n/256, n ∈ {MASS_GRID[0]} … "
                 f"{MASS_GRID[-1]} in steps of {MASS_GRID[1] - MASS_GRID[0]}"
                 + (" per head" if s["per_head"] else "") + f", under Bc = "
                 f"{ad['block_size']}, at most {ad['cap']} keys a tile, temperature "
                 + (f"searched from {{{', '.join(f'{t:g}' for t in TEMPERATURES)}}} (one for "
                    f"the model)" if s.get("search_temperature") else f"{ad['temperature']:g}")
                 + f", {ad['bins']} bins, beta {ad['beta']:g} (the rule's own "
                 f"cost charged: adapt_key per pair, adapt_bin per bin and row); "
                 + _tail_text(s.get("tail")))
    else:
        space = (f"Bc ∈ {{{', '.join(map(str, BLOCK_SIZES))}}}, keep "
                 f"{KEEP_STEPS[0]}/{KEEP_DEN} … {KEEP_STEPS[-1]}/{KEEP_DEN} of a tile, R ∈ "
                 f"{{{', '.join(radius_text(r) for r in RADII_NAT)}}}"
                 + (" (top_k and R per head)" if s["per_head"] else ""))
    L = [
        "# Design-space exploration: " + ("the adaptive budget's mass per layer" if ad else
                                          "per-layer tile size, top-k and sphere radius"),
        "",
        f"Model: {MODEL_NAME}, {ctx['n_layers']} layers × {ctx['n_heads']} heads, every "
        f"layer's attention replaced by the bit-exact SOFA datapath. Texts: "
        f"{', '.join(f'{n} ({t})' for n, t in zip(s['texts'], ctx['tokens']))}; the search "
        f"runs on {', '.join(s['search_texts'])}, the chosen point and every baseline are "
        f"evaluated on all of them. Generated by `sofa dse` (`make dse`).",
        "",
        f"Objective: L = (1 − embedding cosine) + α·L_sort + β·L_exp + γ·L_cycle with "
        f"α = {w['alpha']:g}, β = {w['beta']:g}, γ = {w['gamma']:g}, subject to compute saved "
        f"≥ {pct(s['budget'])}. Optuna {ctx['optuna']} TPE (multivariate, constant liar, "
        f"the budget as a constraint), seed {s['seed']}, study `{s['study']}`: "
        f"{ctx['n_complete']} complete trials ({ctx['n_feasible']} within the budget; "
        f"{ctx['n_screened']} screened out: their compute saved, estimated without the "
        f"forward pass, missed the budget by more than {pct(SCREEN_MARGIN)}). "
        f"Search space per layer: {space}. Wall time "
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
        ab = ctx.get("adaptive_best")
        if ab is not None:
            L.append(_point_row(f"best uniform adaptive mass within the budget: p = "
                                f"{ab['adapt_mass']}/256" + (f", tail alpha "
                                f"{ab['tail_alpha']:g}" if ab.get("tail_alpha") else ""),
                                ab))
        off = ctx.get("adaptive_best_off")
        if off is not None:
            L.append(_point_row(f"best uniform adaptive mass without the tail blend: p = "
                                f"{off['adapt_mass']}/256", off))
        if fb is not None:
            L.append(_point_row(f"best fixed ratio within the budget: Bc = "
                                f"{fb['block_size']}, top_k = {fb['top_k']}", fb))
        fi = ctx.get("fixed_interp")
        L += [""]
        if fi is not None:
            L += [f"The fixed-ratio frontier (every fixed point below, upper envelope, "
                  f"interpolated) reaches cosine {fi:.4f} at the DSE point's "
                  f"{pct(ch['all']['saved'])} saved; the DSE point is "
                  f"{ch['all']['cos_mean'] - fi:+.4f} from it.", ""]
        if ch.get("below_budget_on_all_texts"):
            L += ["Note: no finalist met the budget on all texts; this one meets it on the "
                  "search texts only.", ""]
        L += ["Chosen configuration (`plan.json`; `predict_keys`: keys predicted a cycle, the "
              "smallest for which prediction does not bound SU-FA at the layer's smallest "
              "top_k, `spec.timing.predict_keys_for`, which the cycles assume):", "",
              _layer_rows(ch, ctx["d"]), ""]
        if ch["plan"][0].adapt is not None:
            L += [f"Temperature of the adaptive rule: {ch['plan'][0].adapt.temperature:g}.", ""]
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
    if ctx.get("adaptive_uniform"):
        L += [
            "## Uniform adaptive points (all texts)",
            "",
            "One mass in every layer and head, under the search's rule (with `--tail`, each "
            "mass without and with the tail blend); no exact cycle "
            "count (`sim.perf.core_cycles` does not model the adaptive gate).",
            "",
            "| selection | compute saved | keys kept | cosine mean / min | held-out cosine "
            "| comparisons / pair | exp / dense | cycles / dense |",
            "|---|---|---|---|---|---|---|---|",
        ]
        L += [_point_row(f"p = {e['adapt_mass']}/256" + (f", tail alpha {e['tail_alpha']:g}"
                                                        if e.get("tail_alpha") else ""), e)
              for e in ctx["adaptive_uniform"]]
        L.append("")
    L += [
        "## Fixed-ratio points (all texts)",
        "",
        "Every layer and head alike, R = ∞.",
        "",
        "| Bc | top_k | predict_keys | compute saved | keys kept | cosine mean / min "
        "| comparisons / pair | exp / dense | cycles / dense |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in ctx["fixed"]:
        m = e["all"]
        P = layer_core(e["plan"][0], ctx["d"]).predict_keys
        L.append(f"| {e['block_size']} | {e['top_k']} | {P} | {pct(m['saved'])} | "
                 f"{pct(m['kept'])} "
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
        "default preset's ratio) and predicts `predict_keys` keys a cycle, sized by "
        "`spec.timing.predict_keys_for` for each layer's smallest top_k (1 under the "
        "adaptive budget), so prediction does not bound the cycles below 25 % kept; the "
        "compute saved does not price the extra predictors' area.",
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
        au = sorted(ctx.get("adaptive_uniform") or [], key=lambda e: e[key]["saved"])
        for tail, color in ((False, "C4"), (True, "C5")):     # without / with the blend
            pts = [e for e in au if bool(e.get("tail_alpha")) == tail]
            if pts:
                ax.plot([100 * e[key]["saved"] for e in pts],
                        [e[key]["cos_mean"] for e in pts], "-D", color=color, ms=4,
                        label="adaptive, one mass"
                        + (f", tail alpha {pts[0]['tail_alpha']:g}" if tail else ""))
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


def entry_json(e, d=None):
    """An evaluated point (:func:`sim.dse.evaluate.entry`) for ``results.json``: its
    aggregates and its plan as lists, without the per-text results; with the head size ``d``
    also the ``predict_keys`` of each layer's core."""
    if e is None:
        return None
    plan = e["plan"]
    return jsonable({
        **{k: v for k, v in e.items() if k not in ("plan", "per_text")},
        "plan": [{"block_size": ls.block_size,
                  **({"predict_keys": layer_core(ls, d).predict_keys} if d else {}),
                  "top_k": [h.top_k for h in ls.heads],
                  "radius_nat": [h.radius_nat for h in ls.heads],
                  **({"adapt_mass": [h.adapt_mass for h in ls.heads],
                      "tail_alpha": ls.adapt.tail_alpha} if ls.adapt else {})}
                 for ls in plan],
    })


def write_outputs(ctx, out, ev):
    """Write every output of a run into the directory ``out`` (created): ``plan.json`` and
    the core files if a point was chosen, ``pareto.png``, ``summary.md`` and
    ``results.json``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    ctx["d"] = ev.d
    ch = ctx["chosen"]
    files = []
    if ch is not None:
        files += write_plan(ch, ev.names, ev.d, ctx["plan_settings"], out)
    plots = write_plot(ctx, out)
    (out / "summary.md").write_text(summary_markdown(ctx, plots))
    rad = ctx.get("radius")
    results = {
        "settings": ctx["settings"], "wall_seconds": ctx["wall"],
        "trials": ctx["trials"],
        "chosen": entry_json(ch, ev.d), "fixed_best": entry_json(ctx["fixed_best"], ev.d),
        "fixed_interp_cos": ctx.get("fixed_interp"),
        "fixed": [entry_json(e, ev.d) for e in ctx["fixed"]],
        "adaptive_uniform": [entry_json(e) for e in ctx.get("adaptive_uniform") or []],
        "adaptive_best": entry_json(ctx.get("adaptive_best")),
        "adaptive_best_off": entry_json(ctx.get("adaptive_best_off")),
        "radius": None if not rad else {
            "bc": rad["bc"], "study": rad["study"], "ref": entry_json(rad["ref"]),
            "uniform": entry_json(rad.get("uniform")),
            "per_layer": entry_json(rad.get("per_layer")),
            "trials": rad.get("trials", [])},
    }
    (out / "results.json").write_text(json.dumps(jsonable(results), indent=1,
                                                 allow_nan=False) + "\n")
    return files + [out / "summary.md", out / "pareto.png", out / "results.json"]
