"""``sofa dse``: the DSE's options, their checks, and running it from them.

:func:`add_arguments` adds every option to the ``sofa dse`` parser; :func:`run` runs the DSE
from the parsed arguments and returns the exit status. Bad input (an option value out of range,
a storage URL that does not parse, a study made with other settings, no texts) raises
:class:`spec.config.ConfigError` with one line naming the option, the value and what is
allowed, before any work is done; ``sofa`` prints it as ``error: <message>`` with exit status 2
(and Ctrl-C as status 130 with :data:`INTERRUPTED`: the study in the storage resumes).
"""

import math
from pathlib import Path

from spec.config import RANGES, ConfigError
from spec.validate import (check_float, check_int, check_out_dir, float_arg, int_arg,
                           path_arg)
from sim.dse.cost import prediction_share
from sim.dse.pipeline import log_line, run_dse
from sim.dse.space import (BLOCK_SIZES, MASS_GRID, TAIL_ALPHA, TAIL_ALPHAS, TEMPERATURES,
                           AdaptiveRule, pct)
from sim.minilm import TEXT_DIR, ModelMissing, check_text_lengths, load_texts


__all__ = ["FULL", "QUICK", "FAILURES", "MAX_TRIALS", "add_arguments", "settings_from_args",
           "check", "run", "INTERRUPTED"]

#: Failures of the job rather than of its input, for the ``sofa`` dispatcher (exit status 1):
#: the MiniLM weights package is not installed.
FAILURES = (ModelMissing,)

#: Most trials a study, a radius study or a worker may be asked for.
MAX_TRIALS = 100_000
#: Largest ``--seed`` (Optuna's samplers seed numpy with it).
MAX_SEED = (1 << 32) - 1

#: Largest ``--adapt-temperature``: beyond it the selection softmax is nearly flat (every key
#: in the first bins), and ``adapt_shift`` saturates.
MAX_TEMPERATURE = 8.0

#: The range of a fixed ``--tail ALPHA`` (the long-input study swept 1.0 … 1.8; at 2.0 the
#: largest head's ``alpha·c`` still fits ``tail_scale``'s c_bits).
TAIL_RANGE = (0.5, 2.0)

#: What ``sofa`` adds to its "interrupted" line.
INTERRUPTED = "rerun the same command to resume the study"

#: Defaults of a full run and of ``--quick`` (test-sized: two texts cut to 48 tokens).
FULL = dict(budget=0.75, trials=200, radius_trials=30, search_texts=3, n_texts=None,
            max_tokens=None, calib_iters=7, finalists=8)
QUICK = dict(budget=0.5, trials=8, radius_trials=2, search_texts=1, n_texts=2,
             max_tokens=48, calib_iters=2, finalists=2)


def add_arguments(p):
    """Add the DSE's options to the argparse parser ``p``."""
    p.add_argument("--trials", type=int_arg(), metavar="N",
                   help=f"complete trials the study should hold (default: {FULL['trials']}; "
                        f"with --quick: {QUICK['trials']})")
    p.add_argument("--budget", metavar="X",
                   help=f"minimum attention compute saved: a fraction (0.75) or a percentage "
                        f"(75%%) (default: {FULL['budget']}; with --quick: {QUICK['budget']}, "
                        f"since on its 48-token texts the first sorter batch of 12 keys alone "
                        f"is a quarter of a row)")
    p.add_argument("--seed", type=int_arg(), default=0,
                   help=f"sampler seed, 0 … {MAX_SEED} (default: 0)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage URL; a shared database lets workers on many machines "
                        "share the study (default: sqlite:///OUT/study.db)")
    p.add_argument("--study-name", metavar="NAME",
                   help="study name (default: sofa-dse; sofa-dse-quick with --quick; "
                        "-adaptive appended with --adaptive, -temperature with "
                        "--search-temperature, -per-head with --per-head)")
    p.add_argument("--workers", type=int_arg(), default=2, metavar="N",
                   help="local processes evaluating trials, 1 … 32; N trials are asked and "
                        "told together, so a run is reproducible for a given N (default: 2)")
    p.add_argument("--worker", action="store_true",
                   help="only work on the study's trials (no baselines, no report) and exit "
                        "when it holds --trials complete trials (default: off)")
    p.add_argument("--worker-trials", type=int_arg(), metavar="N",
                   help="with --worker: stop after N trials of this process (default: no "
                        "limit)")
    p.add_argument("--per-head", action="store_true",
                   help="top_k and R per head; Bc stays per layer: it fixes the hardware "
                        "(default: off, one top_k and R per layer)")
    p.add_argument("--adaptive", action="store_true",
                   help=f"search the adaptive budget instead: the mass p = n/256, n = "
                        f"{MASS_GRID[0]} … {MASS_GRID[-1]} in steps of "
                        f"{MASS_GRID[1] - MASS_GRID[0]}, per layer (per head with --per-head), "
                        f"at Bc {AdaptiveRule.block_size}, at most {AdaptiveRule.cap} keys a "
                        f"tile, {AdaptiveRule.bins} bins; no radius-only comparison "
                        f"(default: off)")
    p.add_argument("--adapt-temperature", type=float_arg(0, MAX_TEMPERATURE, lo_open=True),
                   metavar="T",
                   help=f"with --adaptive: temperature of the selection softmax, (0, "
                        f"{MAX_TEMPERATURE:g}] (default: {AdaptiveRule.temperature:g}, as "
                        f"sim.longstudy.ADAPTIVE)")
    p.add_argument("--search-temperature", action="store_true",
                   help=f"with --adaptive: search one temperature for the whole model too, "
                        f"from {', '.join(f'{t:g}' for t in TEMPERATURES)} (default: off)")
    p.add_argument("--tail", metavar="MODE",
                   help=f"with --adaptive: the tail blend (TAIL_SCALE = alpha·c, charged as the "
                        f"study charges it): off; on (alpha {TAIL_ALPHA:g} in every layer); "
                        f"search (alpha per layer from "
                        f"{', '.join('off' if a == 0 else f'{a:.1f}' for a in TAIL_ALPHAS)}); "
                        f"or a number, alpha in every layer, {TAIL_RANGE[0]:g} … "
                        f"{TAIL_RANGE[1]:g} (default: off)")
    p.add_argument("--quick", action="store_true",
                   help=f"test-sized: {QUICK['n_texts']} texts cut to {QUICK['max_tokens']} "
                        f"tokens, {QUICK['trials']} trials, a small fixed grid (default: off)")
    p.add_argument("--out", type=path_arg, default=Path("build/dse"), metavar="DIR",
                   help="output directory (default: build/dse)")
    p.add_argument("--alpha", type=float_arg(0), default=0.01,
                   help="weight of L_sort (default: 0.01)")
    p.add_argument("--beta", type=float_arg(0), default=0.01,
                   help="weight of L_exp (default: 0.01)")
    p.add_argument("--gamma", type=float_arg(0), default=0.01,
                   help="weight of L_cycle (default: 0.01)")
    p.add_argument("--radius-trials", type=int_arg(), metavar="N",
                   help=f"trials of the per-layer radius-only study, 0 skips it; not with "
                        f"--adaptive (default: "
                        f"{FULL['radius_trials']}; with --quick: {QUICK['radius_trials']})")
    p.add_argument("--skip-radius", action="store_true",
                   help="skip the radius-only comparison (adaptive selection) (default: off)")
    p.add_argument("--radius-bc", type=int_arg(), default=32, metavar="BC",
                   help=f"block size of the radius-only comparison, one of "
                        f"{', '.join(map(str, BLOCK_SIZES))} (default: 32)")
    p.add_argument("--search-texts", type=int_arg(), metavar="N",
                   help=f"texts the search runs on, the first N; the report uses all "
                        f"(default: {FULL['search_texts']}; with --quick: "
                        f"{QUICK['search_texts']})")
    p.add_argument("--texts", type=path_arg, default=None, metavar="DIR",
                   help="directory of *.txt texts (default: data/texts)")
    p.add_argument("--fresh", action="store_true",
                   help="delete the study (and its radius study) and start over (default: off)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (default: off, bars on stderr)")
    return p


def _parse_budget(text):
    t = str(text).strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ConfigError(f"--budget {text!r} is not a number (use 0.75 or 75%)") from None
    if not t.endswith("%") and v > 1:
        v /= 100
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"--budget {text}: the compute saved must be above 0 (use a "
                          f"fraction such as 0.75 or a percentage such as 75%)")
    return v


def _parse_tail(text):
    """``--tail``: ``None`` (off), ``"search"`` or a fixed alpha."""
    t = str(text).strip().lower()
    if t == "off":
        return None
    if t == "search":
        return "search"
    if t == "on":
        return TAIL_ALPHA
    allowed = (f"off, on (alpha {TAIL_ALPHA:g}), search, or an alpha {TAIL_RANGE[0]:g} … "
               f"{TAIL_RANGE[1]:g}")
    try:
        v = float(t)
    except ValueError:
        raise ConfigError(f"--tail {text!r} is not a mode or a number; allowed: "
                          f"{allowed}") from None
    if not (math.isfinite(v) and TAIL_RANGE[0] <= v <= TAIL_RANGE[1]):
        raise ConfigError(f"--tail {text}: alpha is out of range; allowed: {allowed}")
    return v


def _check_storage(url):
    """Parse the URL and load its dialect (no connection yet)."""
    if "://" not in url:
        raise ConfigError(f"--storage {url!r} is not a database URL (e.g. "
                          f"sqlite:///build/dse/study.db or postgresql://user@host/db)")
    try:
        from sqlalchemy.engine import make_url
        make_url(url).get_dialect()
    except Exception as e:                                   # noqa: BLE001 (one-line error)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--storage {url!r}: {msg}") from None


def settings_from_args(args, n_texts):
    """Resolve and check the arguments against ``n_texts`` available texts; returns the
    settings dict :func:`sim.dse.pipeline.run_dse` runs on. Raises
    :class:`spec.config.ConfigError` on the first bad one."""
    base = QUICK if args.quick else FULL
    s = {}
    s["budget"] = _parse_budget(base["budget"] if args.budget is None else args.budget)
    share = prediction_share(1)
    if s["budget"] >= 1 - share:
        raise ConfigError(f"--budget {args.budget} cannot be met: DLZS prediction alone costs "
                          f"{pct(share)} of dense attention (the budget must be below "
                          f"{pct(1 - share)})")
    s["trials"] = check_int("--trials", base["trials"] if args.trials is None
                            else args.trials, 1, MAX_TRIALS)
    s["radius_trials"] = check_int("--radius-trials", base["radius_trials"]
                                   if args.radius_trials is None else args.radius_trials,
                                   0, MAX_TRIALS)
    check_int("--workers", args.workers, 1, 32)
    if args.worker_trials is not None:
        if not args.worker:
            raise ConfigError(f"--worker-trials needs --worker (got --worker-trials "
                              f"{args.worker_trials} without it)")
        check_int("--worker-trials", args.worker_trials, 1, MAX_TRIALS)
    if args.adapt_temperature is not None and not args.adaptive:
        raise ConfigError(f"--adapt-temperature {args.adapt_temperature:g} needs --adaptive")
    if args.search_temperature and not args.adaptive:
        raise ConfigError("--search-temperature needs --adaptive")
    if args.search_temperature and args.adapt_temperature is not None:
        raise ConfigError(f"--adapt-temperature {args.adapt_temperature:g} cannot be used with "
                          f"--search-temperature (it searches the temperature)")
    if args.tail is not None and not args.adaptive:
        raise ConfigError(f"--tail {args.tail} needs --adaptive (the tail blend is part of "
                          f"the adaptive budget)")
    s["tail"] = None if args.tail is None else _parse_tail(args.tail)
    if args.adaptive and args.radius_trials is not None:
        raise ConfigError(f"--radius-trials {args.radius_trials}: the radius-only comparison "
                          f"is not run with --adaptive; leave it out")
    if args.worker and args.fresh:
        raise ConfigError("--fresh cannot be used with --worker (it would delete a shared "
                          "study)")
    check_int("--seed", args.seed, 0, MAX_SEED)
    for name in ("alpha", "beta", "gamma"):
        check_float(f"--{name}", getattr(args, name), 0)
    if args.radius_bc not in BLOCK_SIZES:
        raise ConfigError(f"--radius-bc {args.radius_bc} must be one of "
                          f"{', '.join(map(str, BLOCK_SIZES))}")
    if args.radius_bc > RANGES["k_max"][1]:
        raise ConfigError(f"--radius-bc {args.radius_bc}: top_k = Bc needs k_max = "
                          f"{args.radius_bc}, above the {RANGES['k_max'][1]} a core supports")
    n_all = n_texts if base["n_texts"] is None else min(n_texts, base["n_texts"])
    s["search_n"] = base["search_texts"] if args.search_texts is None else args.search_texts
    if not 1 <= s["search_n"] <= n_all:
        raise ConfigError(f"--search-texts {s['search_n']} must be 1 … {n_all} (the texts "
                          f"used)")
    s["n_texts"] = n_all
    if args.study_name is not None and not args.study_name.strip():
        raise ConfigError(f"--study-name {args.study_name!r} must not be empty")
    s["study"] = args.study_name or ("sofa-dse" + ("-quick" if args.quick else "")
                                     + ("-adaptive" if args.adaptive else "")
                                     + ("-temperature" if args.search_temperature else "")
                                     + ("" if s["tail"] is None else "-tail")
                                     + ("-per-head" if args.per_head else ""))
    s["storage"] = args.storage or f"sqlite:///{Path(args.out).resolve() / 'study.db'}"
    _check_storage(s["storage"])
    s["weights"] = {"alpha": args.alpha, "beta": args.beta, "gamma": args.gamma}
    # The adaptive rule's temperature (None: the main space).
    s["adapt_temperature"] = None if not args.adaptive else (
        AdaptiveRule.temperature if args.adapt_temperature is None
        else check_float("--adapt-temperature", args.adapt_temperature, 0, MAX_TEMPERATURE,
                         lo_open=True))
    s["search_temperature"] = args.search_temperature
    s.update(per_head=args.per_head, seed=args.seed, workers=args.workers,
             quick=args.quick, max_tokens=base["max_tokens"], calib_iters=base["calib_iters"],
             finalists=base["finalists"], radius_bc=args.radius_bc)
    # What the run does, beyond the search's definition.
    s.update(worker=args.worker, worker_trials=args.worker_trials, fresh=args.fresh,
             skip_radius=args.skip_radius, progress=not args.no_progress, out=Path(args.out))
    return s


def check(args):
    """Every input of ``sofa dse`` checked before any work: ``(settings, texts)``. The texts
    are read and their lengths checked with the model's tokenizer; ``--out`` and a SQLite
    ``--storage`` must be directories that can be written; nothing is created."""
    texts = load_texts(args.texts or TEXT_DIR)
    s = settings_from_args(args, len(texts))
    check_out_dir("--out", s["out"])
    if s["storage"].startswith("sqlite:///"):
        db = Path(s["storage"][len("sqlite:///"):])
        if db.is_dir():
            raise ConfigError(f"--storage {s['storage']!r}: {db} is a directory, not a "
                              f"database file")
        check_out_dir("--storage", db.parent)
    texts = dict(list(texts.items())[:s["n_texts"]])
    check_text_lengths(texts)
    return s, texts


def run(args, log=log_line):
    """Run the DSE from parsed arguments (:func:`add_arguments`); returns the exit status.

    Every argument is checked before any work (:func:`check`, a
    :class:`spec.config.ConfigError`); a missing MiniLM weights package is
    :class:`sim.minilm.ModelMissing` (in :data:`FAILURES`)."""
    s, texts = check(args)
    return run_dse(s, texts, log=log)
