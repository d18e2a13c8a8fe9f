"""``sofa synth-report``: synthesis and place-and-route report of one design inside the
synthesis harness, with the YoWASP Yosys and nextpnr of :mod:`gen.toolchain`.

Flow, per design and device, in ``<out>/synth-<device>/``:

1. Elaborate ``hw.top.sofa_top(cfg)`` (or one unit) inside :class:`gen.harness.SynthHarness`
   (the core's ports are far wider than any package) to ``harness.v``.
2. Yosys ``synth_ecp5 -abc9`` or ``synth_ice40 -dsp -spram -abc9``, netlist ``synth.json``;
   cell counts from ``stat -json`` (``stat.json``). When Yosys 0.70's abc9 fails on a netlist
   the flow retries with ``-dff`` and records the command used as ``yosys_command``. An
   unchanged ``harness.v`` reuses the previous counts.
3. If the cell counts already exceed the device, stop with :class:`DoesNotFit`.
4. nextpnr with the device's pin file, ``--freq`` and the seed; post-route Fmax and
   utilisation from its ``--report``.
5. Unless disabled, the harness alone (around a core-less stub with the same signature) is
   synthesised once more with Yosys to estimate the harness overhead.

The result is ``report.json`` and ``report.md`` in ``<out>/`` (and a copy in the work
directory). Entry points: :func:`synth_report`, and :func:`add_arguments` / :func:`run` for the
command line.
"""

import json
import sys
import time
from pathlib import Path

from spec.config import ConfigError
from spec.validate import check_float, check_out_dir, float_arg
from gen.artifacts import elaborate, write_if_changed
from gen.design import (add_design_arguments, check_unit, default_out_dir, load_cfg,
                        unit_factory)
from gen.harness import SynthHarness, harness_stub
from gen.toolchain import (DEVICES, HARNESS_SYNTH, ROOT, DoesNotFit, SynthError,
                           add_seed_argument, fit_problems, get_device, place_and_route,
                           post_route_fmax, resources, run_yosys, stat_cells, synth_attempts,
                           tool_versions, yosys_script)


__all__ = ["default_device", "synth_report", "render_markdown", "add_arguments", "check", "run",
           "FAILURES", "MAX_FREQ_MHZ"]


HARNESS_TOP = "sofa_harness"
#: Highest clock target nextpnr is given (far above what these FPGAs reach).
MAX_FREQ_MHZ = 1000.0
#: Errors of this job that the command line reports with exit status 1.
FAILURES = (SynthError,)


def default_device(cfg):
    """The device a preset is meant for: ``ice40`` → iCE40 UP5K, everything else → ECP5-85F."""
    return "ice40-up5k" if cfg.name == "ice40" else "ecp5-85f"


def _synthesise(component, work, device, log):
    """Elaborate ``component`` (a harness) into ``work`` and run Yosys; returns (cells, times,
    synth command)."""
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    verilog = elaborate(component, name=HARNESS_TOP)
    t_elab = time.monotonic() - t0
    changed = write_if_changed(work / "harness.v", verilog)
    read = "read_verilog harness.v"
    scripts = {yosys_script(read, a, HARNESS_TOP): a
               for a in synth_attempts(HARNESS_SYNTH[device.family])}
    previous = (work / "synth.ys").read_text() if (work / "synth.ys").exists() else None
    # Unchanged Verilog and a finished run of the same script: the counts still hold.
    if not changed and previous in scripts and (work / "stat.json").exists() \
            and (work / "synth.json").exists():
        log(f"yosys: {work / 'harness.v'} unchanged, reusing stat.json")
        used, t_yosys = scripts[previous], 0.0
    else:
        (work / "stat.json").unlink(missing_ok=True)
        used, t_yosys = run_yosys(work, read, HARNESS_SYNTH[device.family], HARNESS_TOP, log)
    cells = stat_cells(work / "stat.json")
    return (cells, {"elaborate": round(t_elab, 2), "yosys": round(t_yosys, 2)},
            f"{used} -top {HARNESS_TOP} -json synth.json")


# -- report -------------------------------------------------------------------------------------

def _fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(report):
    """The Markdown summary of a :func:`synth_report` result."""
    r = report
    res = r.get("resources") or {}
    met = r.get("timing_met")
    met_text = "–" if met is None else ("yes" if met else "no")
    lines = [
        f"# Synthesis report: `{r['design']}` on {r['device']} ({r['part']})",
        "",
        "| device | LUT | FF | DSP | BRAM/EBR | Fmax MHz | target MHz | timing met |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        f"| {r['device']} | {_fmt(res.get('lut'))} | {_fmt(res.get('ff'))} | "
        f"{_fmt(res.get('dsp'))} | {_fmt(res.get('bram'))} | {_fmt(r.get('fmax_mhz'))} | "
        f"{_fmt(r.get('target_mhz'))} | {met_text} |",
        "",
    ]
    if not r.get("fits", True):
        lines += [f"**Does not fit:** {r.get('message')}", ""]
    lines += [
        "Counts are Yosys cells of the core *inside the synthesis harness* "
        f"(LUT = LUT4{' + 2×CCU2C' if r['family'] == 'ecp5' else ''}). The harness drives "
        f"the core's {r['harness']['n_in']} input bits from a serial shift register and "
        f"XOR-folds its {r['harness']['n_out']} output bits onto one pin.",
        "",
    ]
    overhead, core = r.get("harness_overhead"), r.get("core_estimate")
    if overhead:
        lines += [
            "| part | LUT | FF | DSP | BRAM/EBR |",
            "|---|---:|---:|---:|---:|",
            f"| total (core + harness) | {res.get('lut')} | {res.get('ff')} | "
            f"{res.get('dsp')} | {res.get('bram')} |",
            f"| harness overhead (est.) | {overhead.get('lut')} | {overhead.get('ff')} | "
            f"{overhead.get('dsp')} | {overhead.get('bram')} |",
            f"| core (est.) | {core.get('lut')} | {core.get('ff')} | {core.get('dsp')} | "
            f"{core.get('bram')} |",
            "",
        ]
    util = r.get("utilization") or {}
    used = {k: v for k, v in util.items() if v.get("used")}
    if used:
        lines += ["nextpnr utilisation:", "", "| BEL type | used | available | % |",
                  "|---|---:|---:|---:|"]
        for bel, v in sorted(used.items()):
            pct = 100.0 * v["used"] / v["available"] if v.get("available") else 0.0
            lines.append(f"| {bel} | {v['used']} | {v.get('available')} | {pct:.1f} |")
        lines.append("")
    if r.get("nextpnr_args"):
        lines += [f"nextpnr options: `{' '.join(r['nextpnr_args'])}`", ""]
    times = r.get("times_s") or {}
    if times:
        lines.append("Run times (s): " + ", ".join(f"{k} {v}" for k, v in times.items()))
        lines.append("")
    return "\n".join(lines)


def _write_reports(report, out_dir, work):
    text = json.dumps(report, indent=2, sort_keys=False) + "\n"
    md = render_markdown(report)
    for directory in (out_dir, work):
        (directory / "report.json").write_text(text)
        (directory / "report.md").write_text(md)


#: nextpnr's placers and routers ``sofa synth-report`` may choose (``--placer``, ``--router``).
PLACERS = ("heap", "sa", "static")
ROUTERS = ("router1", "router2")


def synth_report(cfg, *, device=None, freq_mhz=None, out_dir=None, overhead=True, seed=1,
                 placer=None, router=None, congested=False, component_factory=None, log=None):
    """Synthesise, place and route ``component_factory(cfg)`` and write the report.

    Parameters
    ----------
    cfg : SofaConfig
    device : str, optional
        A key of :data:`gen.toolchain.DEVICES`; defaults to :func:`default_device`.
    freq_mhz : float, optional
        nextpnr's ``--freq`` target; defaults to the device's ``default_freq_mhz``.
    out_dir : path, optional
        Defaults to ``build/<cfg.name>`` under the repository root. The tools run in
        ``<out_dir>/synth-<device>/``; ``report.json`` and ``report.md`` go to ``out_dir``.
    overhead : bool
        Also synthesise the harness around a stub core to estimate its overhead.
    seed : int
        nextpnr placement seed.
    placer, router : str, optional
        nextpnr's placer (:data:`PLACERS`) and router (:data:`ROUTERS`); its defaults
        (HeAP, router1) if None. A design that fills much of an ECP5 routes far better with
        ``static`` and ``router2``, as the board flows use them.
    congested : bool
        For a design too dense to route otherwise: placement by wire length alone
        (``--no-tmdriv``) and router2's alternate weights (``--router2-alt-weights``). Needs
        ``router = "router2"``. Two ``ecp5-axi`` cores on the ECP5-85F route only this way.
    component_factory : callable, optional
        ``cfg -> wiring.Component``; defaults to ``hw.top.sofa_top``.
    log : callable, optional
        Progress messages (one string each); defaults to printing on stderr.

    Returns
    -------
    dict
        The report (also written as JSON). Raises :class:`DoesNotFit` (after writing the
        report, with ``fits: false``) when the design is too large for the device, and
        :class:`SynthError` when a tool fails; :class:`spec.config.ConfigError` for an unknown
        device or a bad frequency.
    """
    if log is None:
        def log(message):
            print(message, file=sys.stderr, flush=True)
    dev = get_device(device or default_device(cfg))
    freq = dev.default_freq_mhz if freq_mhz is None else \
        check_float("freq_mhz", freq_mhz, 0, MAX_FREQ_MHZ, lo_open=True)
    if placer is not None and placer not in PLACERS:
        raise ConfigError(f"placer {placer!r} is unknown; choose {', '.join(PLACERS)}")
    if router is not None and router not in ROUTERS:
        raise ConfigError(f"router {router!r} is unknown; choose {', '.join(ROUTERS)}")
    if congested and router != "router2":
        raise ConfigError(f"congested placement and routing use router2's alternate weights; "
                          f"router {router or 'router1 (nextpnr default)'} has none: choose "
                          f"router2")
    pnr_args = ["--freq", f"{freq:g}", "--seed", str(seed)]
    pnr_args += ["--placer", placer] if placer else []
    pnr_args += ["--router", router] if router else []
    pnr_args += ["--no-tmdriv", "--router2-alt-weights"] if congested else []
    if component_factory is None:
        from hw.top import sofa_top as component_factory
    out_dir = Path(out_dir) if out_dir is not None else ROOT / "build" / cfg.name
    work = (out_dir / f"synth-{dev.name}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir.resolve()

    core = component_factory(cfg)
    harness = SynthHarness(core)
    cells, times, yosys_command = _synthesise(harness, work, dev, log)
    used = resources(dev.family, cells)
    report = {
        "design": cfg.name,
        "top": "sofa_top",
        "device": dev.name,
        "family": dev.family,
        "part": dev.part,
        "target_mhz": freq,
        "fmax_mhz": None,
        "timing_met": None,
        "fits": True,
        "message": None,
        "resources": used,
        "harness_overhead": None,
        "core_estimate": None,
        "harness": {"n_in": harness.n_in, "n_out": harness.n_out,
                    "fold_width": harness.fold_width},
        "latency": getattr(core, "latency", None),
        "ii": getattr(core, "ii", None),
        "cells": cells,
        "yosys_command": yosys_command,
        "nextpnr_args": pnr_args,
        "utilization": None,
        "clocks": None,
        "config": cfg.to_dict(),
        "tools": tool_versions(dev.family),
        "times_s": times,
        "work_dir": str(work),
    }

    if overhead:
        t0 = time.monotonic()
        stub_cells, _, _ = _synthesise(harness_stub(core), work / "overhead", dev, log)
        stub = resources(dev.family, stub_cells)
        report["harness_overhead"] = stub
        report["core_estimate"] = {k: max(0, used.get(k, 0) - stub.get(k, 0)) for k in used}
        times["overhead"] = round(time.monotonic() - t0, 2)

    problems = fit_problems(used, dev)
    if problems:
        report["fits"] = False
        report["message"] = (f"design does not fit {dev.part} ({dev.name}): "
                             f"{', '.join(problems)} (Yosys cell counts, harness included)")
        _write_reports(report, out_dir, work)
        raise DoesNotFit(report["message"])

    try:
        pnr, t_pnr = place_and_route(work, dev, dev.constraints, pnr_args, log,
                                     allow_unconstrained=True)
    except DoesNotFit as e:
        report["fits"] = False
        report["message"] = str(e)
        _write_reports(report, out_dir, work)
        raise
    times["nextpnr"] = round(t_pnr, 2)
    fmax, clocks = post_route_fmax(pnr)
    report["fmax_mhz"] = round(fmax, 2) if fmax is not None else None
    report["timing_met"] = (fmax >= freq) if fmax is not None else None
    report["clocks"] = clocks
    report["utilization"] = pnr.get("utilization")
    _write_reports(report, out_dir, work)
    return report


# -- command line -------------------------------------------------------------------------------

def add_arguments(parser):
    """The options of ``sofa synth-report``: the design (``--preset``/``--config``, ``--unit``,
    ``--out``, as ``sofa verilog`` takes them) and the flow (``--device``, ``--freq``,
    ``--seed``, ``--placer``, ``--router``, ``--congested``, ``--no-overhead``)."""
    add_design_arguments(parser, unit=True)
    parser.add_argument("--device", metavar="DEV",
                        help=f"target device: {', '.join(DEVICES)} (default: ice40-up5k for "
                             f"the ice40 preset, else ecp5-85f)")
    parser.add_argument("--freq", type=float_arg(0, MAX_FREQ_MHZ, lo_open=True), metavar="MHZ",
                        help=f"clock target for nextpnr in MHz, above 0 and at most "
                             f"{MAX_FREQ_MHZ:g} (default: the device's, 100 on ECP5, 24 on "
                             f"iCE40)")
    add_seed_argument(parser, 1)
    parser.add_argument("--placer", choices=PLACERS,
                        help="nextpnr's placer (default: nextpnr's, heap); the board flows "
                             "use static")
    parser.add_argument("--router", choices=ROUTERS,
                        help="nextpnr's router (default: nextpnr's, router1); the board "
                             "flows use router2")
    parser.add_argument("--congested", action="store_true",
                        help="place by wire length alone and route with router2's alternate "
                             "weights, for designs too dense to route otherwise (needs "
                             "--router router2)")
    parser.add_argument("--no-overhead", dest="overhead", action="store_false",
                        help="skip the extra Yosys run that measures the harness overhead "
                             "(default: measure it)")


def check(args):
    """Every input of ``sofa synth-report`` checked, nothing run: ``(cfg, out_dir, component
    factory)``; raises :class:`~spec.config.ConfigError`."""
    unit_factory(args.unit)
    if args.device is not None:
        get_device(args.device)
    if args.freq is not None:
        check_float("--freq", args.freq, 0, MAX_FREQ_MHZ, lo_open=True)
    if args.congested and args.router != "router2":
        raise ConfigError(f"--congested needs --router router2 (router2's alternate weights), "
                          f"not {args.router or 'the default router1'}")
    cfg = load_cfg(args)
    factory, _ = check_unit(args.unit, cfg)
    return cfg, check_out_dir("--out", default_out_dir(args, cfg)), factory


def run(args):
    """``sofa synth-report``: :func:`synth_report` of the design ``args`` select; prints the
    summary and the files written. Returns the exit status (0); raises
    :class:`~spec.config.ConfigError` for bad input (:func:`check`, before any work) and
    :class:`SynthError` (also :class:`DoesNotFit`, after writing the report) when the flow
    fails."""
    cfg, out_dir, factory = check(args)
    report = synth_report(cfg, device=args.device, freq_mhz=args.freq, out_dir=out_dir,
                          overhead=args.overhead, seed=args.seed, placer=args.placer,
                          router=args.router, congested=args.congested,
                          component_factory=factory)
    res = report["resources"]
    met = {True: "met", False: "NOT met", None: "unknown"}[report["timing_met"]]
    fmax = report["fmax_mhz"]
    print(f"{report['device']}: LUT {res.get('lut')}, FF {res.get('ff')}, DSP {res.get('dsp')}, "
          f"BRAM {res.get('bram')}; Fmax {fmax if fmax is not None else '?'} MHz, "
          f"target {report['target_mhz']:g} MHz: timing {met}")
    print(f"wrote {Path(out_dir) / 'report.json'} and {Path(out_dir) / 'report.md'}")
    return 0
