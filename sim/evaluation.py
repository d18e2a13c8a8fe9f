"""``sofa eval`` (``make eval``): the accuracy study, its long-input part and the quick check.

* ``sofa eval``: the short-text study of :mod:`sim.accuracy` over ``--texts`` (the shipped
  paragraphs), then the long-input study of :mod:`sim.longstudy` over ``--long-texts`` (about
  512 tokens each, at 128, 256 and 512 tokens) and the on-demand study of :mod:`sim.xstudy`
  (keys predicted from X against from K, on the long texts), written together to ``--out``:
  ``report.md``, ``results.json`` (its ``"headline"`` holds every row of the long-input
  headline, ``"headline_best"`` the best adaptive row at ≥ 75 % saved at 512 tokens) and the
  plots.
* ``sofa eval --quick``: the test-sized short study with the audited SOFA run of
  :mod:`sim.quickcheck`; exits 1 when a limit of :data:`sim.quickcheck.QUICK_LIMITS` breaks.
"""

import json
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from sim.accuracy import (QUICK, build_dataset, embedding_cosines, evaluate_heads, jsonable,
                          run_study, write_outputs)
from sim.longstudy import best_adaptive, long_markdown, run_long, write_long_plots
from sim.predictors import SofaDLZS
from sim.minilm import (LONG_TEXT_DIR, MiniLM, ModelMissing, TEXT_DIR, check_text_lengths,
                        load_texts)
from sim.adaptive import SofaAdaptive
from sim.xstudy import from_x_markdown, run_from_x
from sim.quickcheck import (QUICK_ADAPTIVE, QUICK_ADAPTIVE_LIMITS, QUICK_LIMITS,
                            QuickCheckFailed, quick_check, quick_margins)
from spec.validate import check_out_dir, make_out_dir, path_arg


__all__ = ["add_arguments", "check", "run", "quick_sofa", "FAILURES"]


def quick_sofa(model, data, adaptive=False):
    """The audited SOFA entry of the quick check on ``data`` (the quick texts): the fixed
    budget (Bc 16, 25 %), or the adaptive one (:data:`sim.quickcheck.QUICK_ADAPTIVE`)."""
    pred = (SofaAdaptive(*QUICK_ADAPTIVE) if adaptive
            else SofaDLZS(QUICK["block_sizes"][0], QUICK["ratios"][0]))
    res = evaluate_heads(pred, data, audit=True)
    res.update(name=pred.name, family=pred.family, ratio=QUICK["ratios"][0],
               params=pred.params())
    cos = embedding_cosines(model, data, pred)
    res.update(cos_mean=float(np.mean(cos)), cos_min=float(np.min(cos)), cos_per_text=cos)
    return res


def add_arguments(parser):
    """``sofa eval``'s options."""
    parser.add_argument("--out", type=path_arg, default=Path("build/eval"),
                        help="output directory (default: build/eval)")
    parser.add_argument("--quick", action="store_true",
                        help="2 texts, 25 %% keys, Bc 16, R in {inf, 3}, audited: the quick "
                             "check of make test, no long inputs (default: the whole study)")
    parser.add_argument("--texts", type=path_arg, default=TEXT_DIR,
                        help="a directory of *.txt texts, or one .txt file "
                             "(default: data/texts)")
    parser.add_argument("--long-texts", type=path_arg, default=LONG_TEXT_DIR,
                        help="the long texts, run at 128, 256 and 512 tokens: a directory of "
                             "*.txt or one file (default: data/texts/long)")
    parser.add_argument("--split", action="store_true",
                        help="split a long text over the model's 512 tokens into pieces at "
                             "sentence ends (default: refuse it)")
    parser.add_argument("--no-long", action="store_true",
                        help="skip the long-input study")


def check(args):
    """Every input of ``sofa eval`` checked before the model runs: the texts (readable, not
    empty, within the model's tokens unless ``--split``) and ``--out``; returns
    ``(texts, long_texts)`` (``long_texts`` None when not run). Nothing is written."""
    texts = load_texts(args.texts)
    if args.quick:
        texts = dict(list(texts.items())[:QUICK["n_texts"]])
    check_out_dir("--out", args.out)
    check_text_lengths(texts)
    long_texts = None
    if not (args.quick or args.no_long):
        long_texts = load_texts(args.long_texts, what="--long-texts")
        if not args.split:
            check_text_lengths(long_texts, what="--long-texts")
    return texts, long_texts


def run(args):
    """``sofa eval``: the study over ``args.texts`` (and the long texts), written to
    ``args.out``; with ``--quick`` the quick check."""
    texts, long_texts = check(args)
    kw = {k: v for k, v in QUICK.items() if k != "n_texts"} if args.quick else {}
    out = make_out_dir("--out", args.out)
    t0 = time.time()
    model = MiniLM()
    res = run_study(texts, model=model, **kw)
    if long_texts is not None:
        with threadpool_limits(limits=1, user_api="blas"):
            res["long"] = run_long(model, long_texts, split=args.split)
            res["from_x"] = run_from_x(model, long_texts, texts, split=args.split)
        res["headline"] = res["long"]["rows"]
        res["headline_best"] = best_adaptive(res["headline"])
    res["wall_seconds"] = time.time() - t0
    write_outputs(res, out)
    if long_texts is not None:
        plots = write_long_plots(res["long"], out)
        extra = long_markdown(res["long"]) + "\n" + "\n".join(
            f"**{title}**\n\n![{title}]({f})\n" for title, f in plots) + "\n" + \
            from_x_markdown(res["from_x"])
        with open(out / "report.md", "a") as f:
            f.write("\n" + extra)
    print(f"wrote {out / 'report.md'} ({time.time() - t0:.0f} s)")
    if args.quick:
        with threadpool_limits(limits=1, user_api="blas"):
            data = build_dataset(model, texts)
            runs = [(quick_sofa(model, data), QUICK_LIMITS),
                    (quick_sofa(model, data, adaptive=True), QUICK_ADAPTIVE_LIMITS)]
        report, broken = {}, []
        for entry, limits in runs:
            bad = quick_check(entry, limits)
            broken += [f"{entry['name']}: {b}" for b in bad]
            report[entry["name"]] = {
                "passed": not bad, "broken": bad,
                "margins": {k: {"value": v, "limit": lim, "margin": mg}
                            for k, (v, lim, mg) in quick_margins(entry, limits).items()}}
        (out / "quick_check.json").write_text(json.dumps(jsonable(report), indent=1))
        if broken:
            raise QuickCheckFailed(f"quick check failed ({out / 'quick_check.json'}): "
                                   + "; ".join(broken))
        n = len(QUICK_LIMITS) + len(QUICK_ADAPTIVE_LIMITS)
        print(f"quick check passed: {n} limits held ({out / 'quick_check.json'})")
    return 0


#: Failures of a run that are not bad input (``sofa`` exits 1 with one line).
FAILURES = (ModelMissing, QuickCheckFailed)
