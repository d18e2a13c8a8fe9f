"""Bad input at every entry point ends the same way: exit status 2, one line ``error: …`` on
stderr naming the option or field, no traceback, nothing written.

Table-driven over every ``sofa`` subcommand (in process, through :func:`gen.cli.main`): presets
that are unknown, empty or not strings, every pathology of a config file (a list or an object
as preset, a 5,000-digit integer, deep nesting, a directory, an empty file, a file that is not
UTF-8, ``/dev/zero``, unknown keys beside a sidecar, NaN, duplicate keys, …), numbers that are
nan, infinite, negative, zero, huge or not integers, ``--out`` paths with a file in the way or
in an unwritable place, unknown boards, devices and units, texts that are directories, empty,
not UTF-8 or binary. Every case is caught before any tool, simulator or model runs. The plan
loader of the DSE (``sim.dse.load_plan``) gets the reproduced plan pathologies, and a few cases
go through ``make`` itself.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gen.cli import main
from sim.dse.cost import layer_config
from sim.dse.plan import MODEL_SHAPE, load_plan
from spec.config import ConfigError
from tb.support.plans import valid_plan

ROOT = Path(__file__).resolve().parent.parent

#: Config files, by name: their bytes (``None``: made by :func:`_files` otherwise).
CONFIGS = {
    "preset_list.json": b'{"preset": ["tiny"]}',
    "preset_object.json": b'{"preset": {"name": "tiny"}}',
    "preset_number.json": b'{"preset": 3}',
    "preset_empty.json": b'{"preset": ""}',
    "bigint.json": b'{"d": 1' + b"0" * 5000 + b"}",
    "bigint_in_range_digits.json": b'{"d": 1' + b"0" * 4000 + b"}",
    "deep.json": b"[" * 100_000 + b"]" * 100_000,
    "deep_object.json": b'{"d": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
    "empty.json": b"",
    "blank.json": b" \n\t ",
    "latin1.json": b'{"name": "caf\xe9"}',
    "binary.json": bytes(range(256)) * 4,
    "bom.json": b'\xef\xbb\xbf{"d": 8}',
    "sidecar_extra.json": b'{"config": {"d": 8}, "bogus": 1}',
    "unknown_key.json": b'{"preset": "tiny", "bogus": 1}',
    "float.json": b'{"preset": "tiny", "d": 8.5}',
    "float_integral.json": b'{"preset": "tiny", "d": 8.0}',
    "bool.json": b'{"preset": "tiny", "d": true}',
    "string_number.json": b'{"preset": "tiny", "d": "8"}',
    "null.json": b'{"preset": "tiny", "d": null}',
    "nan.json": b'{"preset": "tiny", "d": NaN}',
    "infinity.json": b'{"preset": "tiny", "d": Infinity}',
    "overflow_float.json": b'{"preset": "tiny", "d": 1e400}',
    "negative.json": b'{"preset": "tiny", "d": -8}',
    "zero.json": b'{"preset": "tiny", "d": 0}',
    "huge.json": b'{"preset": "tiny", "max_seq_len": 1000000000}',
    "duplicate.json": b'{"d": 8, "d": 16}',
    "axi_predict_keys.json": b'{"preset": "axi", "d": 48, "axi_data_width": 512, '
                             b'"predict_keys": 2}',
    "project_onchip.json": b'{"preset": "tiny", "kv_source": "project", "d_model": 16}',
    "project_dmodel.json": b'{"preset": "axi-project", "d_model": 2048}',
    "project_lanes.json": b'{"preset": "axi-project", "d_model": 100}',
    "project_source.json": b'{"preset": "axi", "kv_source": "x"}',
    "top_list.json": b"[1, 2]",
    "top_string.json": b'"tiny"',
    "top_number.json": b"8",
    "top_null.json": b"null",
    "truncated.json": b'{"d": ',
    "trailing.json": b'{"d": 8} {"d": 9}',
    "name_path.json": b'{"preset": "tiny", "name": "../../etc"}',
    "name_empty.json": b'{"preset": "tiny", "name": ""}',
    "skid.json": b'{"preset": "tiny", "skid_buffers": "yes"}',
    "memory.json": b'{"preset": "tiny", "memory": "dram"}',
    "cross.json": b'{"d": 48, "dlzs_lanes": 48, "mac_lanes": 32}',
    "counter_width.json": b'{"preset": "tiny", "counter_width": 4}',
    "large.json": b'{"d": 8, "pad": "' + b"x" * (2 << 20) + b'"}',
    "bad stem.json": b'{"d": 8, "dlzs_lanes": 8, "mac_lanes": 8}',
}

#: (case id, argv, what stderr must name); ``{tmp}`` is the test's directory, ``{cfg:NAME}``
#: a file of :data:`CONFIGS`; ``{out}`` a fresh output directory that must not appear.
CONFIG_CASES = [(f"config-{name}", name) for name in CONFIGS]

CASES = [
    # -- no command, unknown command, options ------------------------------------------------
    ("no-command", [], "COMMAND"),
    ("unknown-command", ["frob"], "frob"),
    ("unknown-option", ["verilog", "--bogus", "--out", "{out}"], "--bogus"),
    ("newline-in-value", ["verilog", "--preset", "a\nb", "--out", "{out}"], "preset"),
    ("undecodable-value", ["verilog", "--preset", "\udcff", "--out", "{out}"], "preset"),
    # -- verilog ----------------------------------------------------------------------------
    ("verilog-preset-unknown", ["verilog", "--preset", "nope", "--out", "{out}"], "preset"),
    ("verilog-preset-empty", ["verilog", "--preset", "", "--out", "{out}"], "preset"),
    ("verilog-preset-and-config", ["verilog", "--preset", "tiny", "--config", "{cfg:zero.json}",
                                   "--out", "{out}"], "--config"),
    ("verilog-config-empty-path", ["verilog", "--config", "", "--out", "{out}"], "--config"),
    ("verilog-config-missing", ["verilog", "--config", "{tmp}/missing.json", "--out", "{out}"],
     "--config"),
    ("verilog-config-directory", ["verilog", "--config", "{tmp}/adir", "--out", "{out}"],
     "--config"),
    ("verilog-config-dev-zero", ["verilog", "--config", "/dev/zero", "--out", "{out}"],
     "--config"),
    ("verilog-config-fifo", ["verilog", "--config", "{tmp}/fifo", "--out", "{out}"],
     "--config"),
    ("verilog-config-newline-name", ["verilog", "--config", "{tmp}/no\nsuch.json",
                                     "--out", "{out}"], "--config"),
    ("verilog-unit", ["verilog", "--preset", "tiny", "--unit", "fpu", "--out", "{out}"],
     "--unit"),
    ("verilog-out-file", ["verilog", "--preset", "tiny", "--out", "{tmp}/afile"], "--out"),
    ("verilog-out-under-file", ["verilog", "--preset", "tiny", "--out", "{tmp}/afile/sub"],
     "--out"),
    ("verilog-out-empty", ["verilog", "--preset", "tiny", "--out", ""], "--out"),
    ("verilog-out-unwritable", ["verilog", "--preset", "tiny", "--out", "/proc/sofa-out"],
     "--out"),
    ("verilog-out-too-long", ["verilog", "--preset", "tiny", "--out", "{tmp}/" + "x" * 300],
     "--out"),
    # -- regs -------------------------------------------------------------------------------
    ("regs-preset", ["regs", "--preset", "nope", "--out", "{out}"], "preset"),
    ("regs-config", ["regs", "--config", "{cfg:latin1.json}", "--out", "{out}"], "--config"),
    ("regs-out-file", ["regs", "--preset", "tiny", "--out", "{tmp}/afile"], "--out"),
    # -- synth-report -----------------------------------------------------------------------
    ("synth-device", ["synth-report", "--preset", "tiny", "--device", "xc7", "--out", "{out}"],
     "device"),
    ("synth-unit", ["synth-report", "--preset", "tiny", "--unit", "fpu", "--out", "{out}"],
     "--unit"),
    *[(f"synth-freq-{v}", ["synth-report", "--preset", "tiny", "--freq", v, "--out", "{out}"],
       "--freq") for v in ("nan", "inf", "-inf", "0", "-5", "1e9", "x", "")],
    *[(f"synth-seed-{v}", ["synth-report", "--preset", "tiny", "--seed", v, "--out", "{out}"],
       "--seed") for v in ("-1", "1.5", "99999999999", "x")],
    ("synth-placer", ["synth-report", "--preset", "tiny", "--placer", "hep", "--out", "{out}"],
     "--placer"),
    ("synth-router", ["synth-report", "--preset", "tiny", "--router", "3", "--out", "{out}"],
     "--router"),
    ("synth-congested", ["synth-report", "--preset", "tiny", "--congested", "--router",
                         "router1", "--out", "{out}"], "--congested"),
    ("synth-congested-default", ["synth-report", "--preset", "tiny", "--congested", "--out",
                                 "{out}"], "--congested"),
    ("synth-config", ["synth-report", "--config", "{cfg:deep.json}", "--out", "{out}"],
     "--config"),
    ("synth-out-file", ["synth-report", "--preset", "tiny", "--out", "{tmp}/afile"], "--out"),
    # -- bench ------------------------------------------------------------------------------
    *[(f"bench-seq-{v}", ["bench", "--seq", v, "--out", "{out}"], "--seq")
      for v in ("0", "-1", "100000", "nan", "x", "1.5", "9" * 5000)],
    *[(f"bench-rows-{v}", ["bench", "--rows", v, "--out", "{out}"], "--rows")
      for v in ("0", "-3", "nan", "inf")],
    ("bench-no-counters", ["bench", "--preset", "ice40", "--out", "{out}"], "counter_width"),
    ("bench-k-max", ["bench", "--preset", "tiny", "--out", "{out}"], "k_max"),
    ("bench-preset", ["bench", "--preset", "", "--out", "{out}"], "preset"),
    ("bench-config", ["bench", "--config", "{cfg:bigint.json}", "--out", "{out}"], "--config"),
    ("bench-out-empty", ["bench", "--out", ""], "--out"),
    ("bench-out-file", ["bench", "--out", "{tmp}/afile"], "--out"),
    ("bench-out-under-file", ["bench", "--out", "{tmp}/afile/sub"], "--out"),
    # -- eval -------------------------------------------------------------------------------
    ("eval-texts-empty-dir", ["eval", "--texts", "{tmp}/adir", "--out", "{out}"], "--texts"),
    ("eval-texts-txt-dir", ["eval", "--texts", "{tmp}/dir.txt", "--out", "{out}"], "--texts"),
    ("eval-texts-dir-with-dir", ["eval", "--texts", "{tmp}/nested", "--out", "{out}"],
     "--texts"),
    ("eval-texts-empty-file", ["eval", "--texts", "{tmp}/empty.txt", "--out", "{out}"],
     "--texts"),
    ("eval-texts-blank-file", ["eval", "--texts", "{tmp}/blank.txt", "--out", "{out}"],
     "--texts"),
    ("eval-texts-latin1", ["eval", "--texts", "{tmp}/latin1.txt", "--out", "{out}"],
     "--texts"),
    ("eval-texts-binary", ["eval", "--texts", "{tmp}/binary.txt", "--out", "{out}"],
     "--texts"),
    ("eval-texts-dev-zero", ["eval", "--texts", "/dev/zero", "--out", "{out}"], "--texts"),
    ("eval-texts-missing", ["eval", "--texts", "{tmp}/missing", "--out", "{out}"], "--texts"),
    ("eval-texts-empty-path", ["eval", "--texts", "", "--out", "{out}"], "--texts"),
    ("eval-texts-too-long", ["eval", "--texts", "{tmp}/long.txt", "--out", "{out}"],
     "--texts"),
    ("eval-out-file", ["eval", "--quick", "--out", "{tmp}/afile"], "--out"),
    ("eval-out-under-file", ["eval", "--quick", "--out", "{tmp}/afile/sub"], "--out"),
    # -- dse --------------------------------------------------------------------------------
    *[(f"dse-trials-{v}", ["dse", "--quick", "--trials", v, "--out", "{out}"], "--trials")
      for v in ("0", "-1", "x", "1e3", "1000000")],
    *[(f"dse-budget-{v}", ["dse", "--quick", "--budget", v, "--out", "{out}"], "--budget")
      for v in ("nan", "inf", "-1", "0", "abc", "", "0.95", "95%")],
    *[(f"dse-seed-{v}", ["dse", "--quick", "--seed", v, "--out", "{out}"], "--seed")
      for v in ("-1", str(1 << 40))],
    *[(f"dse-workers-{v}", ["dse", "--quick", "--workers", v, "--out", "{out}"], "--workers")
      for v in ("0", "33")],
    *[(f"dse-alpha-{v}", ["dse", "--quick", "--alpha", v, "--out", "{out}"], "--alpha")
      for v in ("nan", "-1", "inf")],
    ("dse-radius-bc", ["dse", "--quick", "--radius-bc", "24", "--out", "{out}"], "--radius-bc"),
    ("dse-radius-trials", ["dse", "--quick", "--radius-trials", "-1", "--out", "{out}"],
     "--radius-trials"),
    ("dse-search-texts", ["dse", "--quick", "--search-texts", "0", "--out", "{out}"],
     "--search-texts"),
    ("dse-worker-trials", ["dse", "--quick", "--worker-trials", "2", "--out", "{out}"],
     "--worker-trials"),
    ("dse-worker-fresh", ["dse", "--quick", "--worker", "--fresh", "--out", "{out}"], "--fresh"),
    ("dse-study-name", ["dse", "--quick", "--study-name", " ", "--out", "{out}"],
     "--study-name"),
    ("dse-storage-url", ["dse", "--quick", "--storage", "nonsense", "--out", "{out}"],
     "--storage"),
    ("dse-storage-under-file", ["dse", "--quick", "--storage", "sqlite:///{tmp}/afile/s.db",
                                "--out", "{out}"], "--storage"),
    ("dse-storage-directory", ["dse", "--quick", "--storage", "sqlite:///{tmp}/adir",
                               "--out", "{out}"], "--storage"),
    ("dse-texts-latin1", ["dse", "--quick", "--texts", "{tmp}/latin1.txt", "--out", "{out}"],
     "--texts"),
    ("dse-texts-empty-dir", ["dse", "--quick", "--texts", "{tmp}/adir", "--out", "{out}"],
     "--texts"),
    *[(f"dse-adapt-temperature-{v}", ["dse", "--quick", "--adaptive", "--adapt-temperature", v,
                                      "--out", "{out}"], "--adapt-temperature")
      for v in ("0", "-1", "nan", "inf", "9", "x", "")],
    ("dse-adapt-temperature-alone", ["dse", "--quick", "--adapt-temperature", "2", "--out",
                                     "{out}"], "--adapt-temperature"),
    ("dse-search-temperature-alone", ["dse", "--quick", "--search-temperature", "--out",
                                      "{out}"], "--search-temperature"),
    ("dse-search-and-adapt-temperature", ["dse", "--quick", "--adaptive", "--search-temperature",
                                          "--adapt-temperature", "2", "--out", "{out}"],
     "--adapt-temperature"),
    *[(f"dse-tail-{v or 'empty'}", ["dse", "--quick", "--adaptive", "--tail", v, "--out",
                                     "{out}"], "--tail")
      for v in ("0", "-1", "3", "nan", "inf", "x", "")],
    ("dse-tail-alone", ["dse", "--quick", "--tail", "on", "--out", "{out}"], "--tail"),
    ("dse-adaptive-radius-trials", ["dse", "--quick", "--adaptive", "--radius-trials", "2",
                                    "--out", "{out}"], "--radius-trials"),
    ("dse-out-file", ["dse", "--quick", "--out", "{tmp}/afile"], "--out"),
    ("dse-out-under-file", ["dse", "--quick", "--out", "{tmp}/afile/sub"], "--out"),
    # -- bitstream --------------------------------------------------------------------------
    ("bitstream-board", ["bitstream", "nope", "--out", "{out}"], "board"),
    ("bitstream-board-empty", ["bitstream", "", "--out", "{out}"], "board"),
    ("bitstream-no-board", ["bitstream", "--out", "{out}"], "BOARD"),
    *[(f"bitstream-baud-{v}", ["bitstream", "icebreaker", "--baud", v, "--out", "{out}"],
       "--baud") for v in ("0", "-1", "nan", "x", "13000000", "5000000")],
    *[(f"bitstream-clk-{v}", ["bitstream", "ulx3s-85f", "--clk-mhz", v, "--out", "{out}"],
       "--clk-mhz") for v in ("nan", "inf", "0", "-5", "1e6", "1")],
    ("bitstream-clk-no-pll", ["bitstream", "icebreaker", "--clk-mhz", "24", "--out", "{out}"],
     "--clk-mhz"),
    ("bitstream-axi", ["bitstream", "icebreaker", "--preset", "axi", "--out", "{out}"],
     "memory"),
    ("bitstream-preset", ["bitstream", "icebreaker", "--preset", "nope", "--out", "{out}"],
     "preset"),
    ("bitstream-config", ["bitstream", "icebreaker", "--config", "{cfg:nan.json}",
                          "--out", "{out}"], "--config"),
    ("bitstream-seed", ["bitstream", "icebreaker", "--seed", "-1", "--out", "{out}"], "--seed"),
    ("bitstream-out-file", ["bitstream", "icebreaker", "--out", "{tmp}/afile"], "--out"),
    # -- report -----------------------------------------------------------------------------
    ("report-runs-pair", ["report", "--runs", "tiny", "--out", "{out}"], "--runs"),
    ("report-runs-device", ["report", "--runs", "tiny:xc7", "--out", "{out}"], "--runs"),
    ("report-runs-preset", ["report", "--runs", "nope:ice40-up5k", "--out", "{out}"], "--runs"),
    ("report-runs-axi-ice40", ["report", "--runs", "axi:ice40-up5k", "--out", "{out}"],
     "--runs"),
    *[(f"report-runs-seed-{v}", ["report", "--runs", f"tiny:ice40-up5k:{v}", "--out", "{out}"],
       "--runs") for v in ("x", "-1", "", "2147483648", "1:2")],
    ("report-runs-empty", ["report", "--runs", "", "--out", "{out}"], "--runs"),
    *[(f"report-seq-{v}", ["report", "--seq", v, "--out", "{out}"], "--seq")
      for v in ("0", "-1", "x", "100000")],
    *[(f"report-baud-{v}", ["report", "--baud", v, "--out", "{out}"], "--baud")
      for v in ("0", "1000000000", "x", "5000000")],
    ("report-seed", ["report", "--seed", "x", "--out", "{out}"], "--seed"),
    ("report-out-file", ["report", "--out", "{tmp}/afile"], "--out"),
    # -- host -------------------------------------------------------------------------------
    ("host-no-board", ["host", "ident"], "--port"),
    ("host-port-and-sim", ["host", "--port", "/dev/null", "--sim", "tiny", "ident"], "--sim"),
    ("host-sim", ["host", "--sim", "nope", "ident"], "--sim"),
    ("host-port-missing", ["host", "--port", "{tmp}/no-such-tty", "ident"], "--port"),
    ("host-command", ["host", "--sim", "tiny", "frob"], "frob"),
    *[(f"host-expect-{n}", ["host", "--sim", "tiny", "--expect", v, "ident"], "--expect")
      for n, v in (("preset", "nope"), ("file", "{tmp}/no-such.json"), ("empty", ""))],
    *[(f"host-baud-{v}", ["host", "--sim", "tiny", "--baud", v, "ident"], "--baud")
      for v in ("0", "-1", "nan", "x")],
    *[(f"host-timeout-{v}", ["host", "--sim", "tiny", "--timeout", v, "ident"], "--timeout")
      for v in ("nan", "0", "-1", "inf", "1e9")],
    *[(f"host-read-reg-{a}", ["host", "--sim", "tiny", "read-reg", *a.split()], n)
      for a, n in (("300", "addr"), ("-1", "addr"), ("x", "addr"), ("35 10", "count"),
                   ("0 0", "count"))],
    *[(f"host-write-reg-{a}", ["host", "--sim", "tiny", "write-reg", *a.split()], n)
      for a, n in (("0 -1", "value"), (f"0 {1 << 32}", "value"), ("99 0", "addr"),
                   ("0 1.5", "value"), ("0", "value"))],
    *[(f"host-selftest-{o}-{v}", ["host", "--sim", "tiny", "selftest", f"--{o}", v], f"--{o}")
      for o, v in (("rows", "0"), ("rows", "-1"), ("rows", "70000"), ("scale", "nan"),
                   ("scale", "inf"), ("scale", "0"), ("scale", "-1"), ("scale", "1e9"),
                   ("scale", "1e-12"), ("top-k", "0"), ("top-k", "9"), ("seq", "0"),
                   ("seq", "65"), ("seq", "100000"), ("seed", "-1"))],
]


def _files(tmp):
    """The files and directories the cases point at."""
    (tmp / "cfg").mkdir()
    for name, data in CONFIGS.items():
        (tmp / "cfg" / name).write_bytes(data)
    (tmp / "afile").write_text("in the way\n")
    (tmp / "adir").mkdir()
    (tmp / "dir.txt").mkdir()
    (tmp / "nested").mkdir()
    (tmp / "nested" / "sub.txt").mkdir()
    (tmp / "empty.txt").write_bytes(b"")
    (tmp / "blank.txt").write_bytes(b"\n \n")
    (tmp / "latin1.txt").write_bytes("Über café".encode("latin-1"))
    (tmp / "binary.txt").write_bytes(bytes(range(256)))
    (tmp / "long.txt").write_text("word " * 2000)
    os.mkfifo(tmp / "fifo")


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _expand(argv, tmp, out):
    cfg = tmp / "cfg"
    return [a.replace("{tmp}", str(tmp)).replace("{out}", str(out))
            .replace("{cfg:", f"{cfg}/").replace(".json}", ".json") for a in argv]


def sofa(capsys, argv):
    """``sofa ARGV`` in process: (exit status, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as e:                               # argparse
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    _files(tmp_path)
    work = tmp_path / "cwd"               # default output directories would land here
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def _check(capsys, tmp, argv, names):
    out = tmp / "out"
    before = _tree(tmp)
    code, stdout, err = sofa(capsys, _expand(argv, tmp, out))
    assert code == 2, (code, err)
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and stdout == ""
    assert names in err, err
    assert _tree(tmp) == before, "bad input left files behind"
    return err


@pytest.mark.parametrize("argv,names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_command_line(capsys, tmp, argv, names):
    _check(capsys, tmp, argv, names)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("command", ["verilog", "synth-report", "bench", "bitstream"])
def test_bad_config_file(capsys, tmp, command, name):
    """Every config pathology, through each command that takes ``--config``."""
    argv = [command, *(["icebreaker"] if command == "bitstream" else []),
            "--config", f"{{cfg:{name}}}", "--out", "{out}"]
    err = _check(capsys, tmp, argv, "--config")
    assert name.split(".")[0].replace(" ", "") in err.replace(" ", "") or "\\n" in err


def test_messages_name_value_and_range(capsys, tmp):
    """A few messages in full: the parameter, the value and what is allowed."""
    def err(*argv):
        return _check(capsys, tmp, list(argv), "")

    assert "d = -8 is out of range; allowed 1 … 256" in err(
        "verilog", "--config", "{cfg:negative.json}", "--out", "{out}")
    assert "d must be an integer 1 … 256, not 8.5" in err(
        "verilog", "--config", "{cfg:float.json}", "--out", "{out}")
    assert "unknown preset list ['tiny']" in err(
        "verilog", "--config", "{cfg:preset_list.json}", "--out", "{out}")
    assert "--seq = 0 is out of range; allowed 1 … 1024" in err(
        "bench", "--seq", "0", "--out", "{out}")
    assert "argument --rows: 0 is out of range; allowed 1 … 65535" in err(
        "host", "--sim", "tiny", "selftest", "--rows", "0")
    assert "--seq = 65 is out of range; allowed 1 … 64" in err(
        "host", "--sim", "tiny", "selftest", "--seq", "65")
    assert "argument --freq: nan is not a finite number" in err(
        "synth-report", "--freq", "nan", "--out", "{out}")
    assert "exists and is not a directory" in err("verilog", "--out", "{tmp}/afile")
    assert ("predict_keys = 2 with memory = \"axi\": a K row of d · elem bytes = 48 bytes "
            "must divide the bus word (axi_data_width / 8 = 64 bytes) or be a multiple of it"
            in err("verilog", "--config", "{cfg:axi_predict_keys.json}", "--out", "{out}"))


def test_on_demand_messages(capsys, tmp):
    """On-demand K/V: the config's kv_source and d_model, and the job's weights and codes,
    each refused with the parameter, the value and what is allowed."""
    import numpy as np

    from sim.projjobs import Weights, golden_project_job, layout_project_job, project_workload
    from spec.config import RunParams, preset
    from spec.job import JobDescriptor

    def err(name):
        return _check(capsys, tmp, ["verilog", "--config", f"{{cfg:{name}}}", "--out",
                                    "{out}"], "")

    assert ('kv_source = "project" with memory = "onchip": the on-demand K/V mode is built '
            'for the memory-attached core' in err("project_onchip.json")
            and 'allowed memory = "axi"' in err("project_onchip.json"))
    assert "d_model = 2048 is out of range; allowed 0 … 1024" in err("project_dmodel.json")
    assert "khat_lanes = 8 must divide d_model = 100" in err("project_lanes.json")
    assert "kv_source = 'x' is unknown; choose one of given, project" in \
        err("project_source.json")
    cfg = preset("axi-project").replace(d_model=16, khat_lanes=8, proj_macs=4)
    job = layout_project_job(cfg, JobDescriptor(seq_len=20, queries=2))
    Q, X, w, job = project_workload(cfg, np.random.default_rng(0), job)
    params = RunParams(seq_len=20, top_k=1, radius=0, scale_log2e=1)
    bad = [(Weights(w.codes, w.wk, w.wv[:, :8], w.bk, w.bv),
            "weights wv have shape [1, 8, 16]; expected [1, 64, 16] (heads, d = 64, "
            "d_model = 16)"),
           (Weights(np.full_like(w.codes, 0b1111), w.wk, w.wv, w.bk, w.bv),
            "LZ code at [0, 0, 0]: ")]
    for weights, message in bad:
        with pytest.raises(ConfigError) as e:
            golden_project_job(cfg, params, job, Q, X, weights)
        assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^X rows of 24 elements: the config holds d_model = "
                                          r"16 \(allowed X \[1, 20, 16\]\)$"):
        golden_project_job(cfg, params, job, Q, np.zeros((1, 20, 24), np.int64), w)


@pytest.mark.parametrize("name", ["tiny", "ice40"])
def test_sidecar_is_a_config(capsys, tmp_path, name):
    """The control: ``sofa verilog``'s own sidecar (every key it writes) is a valid
    ``--config``, so the sidecar check refuses only what a sidecar never holds."""
    code, _, err = sofa(capsys, ["verilog", "--preset", name, "--out", str(tmp_path / "a")])
    assert code == 0, err
    code, _, err = sofa(capsys, ["regs", "--config", str(tmp_path / "a" / "sofa_top.json"),
                                 "--out", str(tmp_path / "b")])
    assert code == 0, err


# -- the DSE plan loader ------------------------------------------------------------------------

def _set(doc, path, value):
    *head, last = path
    for key in head:
        doc = doc[key]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()

#: (case id, path into the plan, value, what the message names).
PLAN_CASES = [
    ("top_k-float", ("layers", 0, "heads", 3, "top_k"), 2.7, "top_k"),
    ("top_k-true", ("layers", 0, "heads", 3, "top_k"), True, "top_k"),
    ("top_k-negative", ("layers", 0, "heads", 3, "top_k"), -4, "top_k"),
    ("top_k-1000", ("layers", 0, "heads", 3, "top_k"), 1000, "top_k"),
    ("top_k-string", ("layers", 0, "heads", 3, "top_k"), "4", "top_k"),
    ("top_k-missing", ("layers", 0, "heads", 3, "top_k"), _DELETE, "top_k"),
    ("radius-nan", ("layers", 1, "heads", 0, "radius_nat"), "nan", "radius_nat"),
    ("radius-negative", ("layers", 1, "heads", 0, "radius_nat"), -5, "radius_nat"),
    ("radius-list", ("layers", 1, "heads", 0, "radius_nat"), [1], "radius_nat"),
    ("radius-bool", ("layers", 1, "heads", 0, "radius_nat"), False, "radius_nat"),
    ("layers-short", ("layers",), "drop-one", "layers"),
    ("layers-not-list", ("layers",), {"0": 1}, "layers"),
    ("heads-short", ("layers", 2, "heads"), "drop-one", "heads"),
    ("head-not-object", ("layers", 2, "heads", 0), 7, "head 0"),
    ("layer-index", ("layers", 2, "layer"), 5, "layer"),
    ("layer-not-object", ("layers", 2), [], "layer 2"),
    ("head-size", ("cores", "bc16", "d"), 64, "d = 64"),
    ("config-head-size", ("layers", 0, "config"), "d64", "d = 64"),
    ("core-unknown", ("layers", 0, "core"), "bc99", "core"),
    ("core-not-string", ("layers", 0, "core"), ["bc16"], "core"),
    ("block-size", ("layers", 0, "block_size"), 32, "block_size"),
    ("cores-not-object", ("cores",), [], "cores"),
    ("core-config", ("cores", "bc16", "k_max"), 0, "k_max"),
    ("registers-not-object", ("layers", 0, "registers"), [], "registers"),
    ("registers-short", ("layers", 0, "registers", "text"), [], "register sets"),
    ("register-extra-key", ("layers", 0, "registers", "text", 0, "bogus"), 1, "fields"),
    ("register-top_k", ("layers", 0, "registers", "text", 0, "top_k"), 3, "top_k"),
    ("register-seq_len", ("layers", 0, "registers", "text", 0, "seq_len"), 0, "seq_len"),
    ("register-radius", ("layers", 0, "registers", "text", 0, "radius"), -1, "radius"),
    ("register-dense", ("layers", 0, "registers", "text", 0, "dense"), "no", "dense"),
    ("metrics", ("metrics",), 3, "metrics"),
    ("format", ("format",), "sofa-dse-plan/0", "format"),
]


@pytest.mark.parametrize("path,value,names", [c[1:] for c in PLAN_CASES],
                         ids=[c[0] for c in PLAN_CASES])
def test_bad_plan(tmp_path, path, value, names):
    doc = valid_plan()
    if value == "drop-one":
        _set(doc, path, doc[path[0]][:-1] if len(path) == 1 else
             doc["layers"][path[1]]["heads"][:-1])
    elif value == "d64":
        _set(doc, path, layer_config(64, 16, 4).to_dict())
    else:
        _set(doc, path, value)
    file = tmp_path / "plan.json"
    file.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as e:
        load_plan(file)
    message = str(e.value)
    assert "\n" not in message and str(file) in message and names in message, message


def test_valid_plan_loads(tmp_path):
    file = tmp_path / "plan.json"
    file.write_text(json.dumps(valid_plan()))
    plan = load_plan(file)
    assert len(plan["plan"]) == 6 and all(len(x.heads) == 12 for x in plan["plan"])
    assert plan["layers"][0]["registers"]["text"][0].top_k == 4


@pytest.mark.parametrize("name", ["empty.json", "latin1.json", "bigint.json", "deep.json",
                                  "top_list.json", "nan.json", "duplicate.json"])
def test_bad_plan_file(tmp_path, name):
    file = tmp_path / name
    file.write_bytes(CONFIGS[name])
    with pytest.raises(ConfigError, match="^plan "):
        load_plan(file)
    with pytest.raises(ConfigError, match="^plan .*: a directory"):
        load_plan(tmp_path)


def test_model_shape_is_minilm():
    """The plan's expected shape is the accuracy study's model."""
    minilm = pytest.importorskip("sim.minilm")
    try:
        path = minilm.model_dir()
    except minilm.ModelMissing:
        pytest.skip("the MiniLM weights package is not installed")
    cfg = json.loads((path / "config.json").read_text())
    heads = cfg["num_attention_heads"]
    assert MODEL_SHAPE == (cfg["num_hidden_layers"], heads, cfg["hidden_size"] // heads)


# -- through make -------------------------------------------------------------------------------

def _make_ready():
    """make is installed and the venv is up to date (a stale stamp would reinstall it)."""
    if not shutil.which("make"):
        return False
    r = subprocess.run(["make", "-q", ".venv/.stamp"], cwd=ROOT, capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _make_ready(), reason="make missing or the venv stamp is stale")
@pytest.mark.parametrize("target,variables,names", [
    ("verilog", {"CONFIG": "{cfg:empty.json}"}, "--config"),
    ("verilog", {"CONFIG": "{cfg:preset_object.json}"}, "preset"),
    ("synth-report", {"PRESET": "tiny", "FREQ": "nan"}, "--freq"),
    ("bench", {"BENCH_ARGS": "--seq 0"}, "--seq"),
    ("bitstream", {"BOARD": "nope"}, "board"),
])
def test_make_targets(tmp_path, target, variables, names):
    _files(tmp_path)
    stem = f"sofa-bad-input-{os.getpid()}"
    cfg = tmp_path / "cfg"
    args = []
    for k, v in variables.items():
        if v.startswith("{cfg:"):
            src = cfg / v[5:-1]
            v = str(cfg / f"{stem}.json")
            shutil.copy(src, v)
        args.append(f"{k}={v}")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "--no-print-directory", target, *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 2, r.stderr
    assert len(errors) == 1 and names in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (ROOT / "build" / stem).exists()


# -- the tail blend's parameters: each error names the parameter, the value and what is allowed --

def test_tail_blend_bad_parameters():
    from spec.config import RunParams, preset
    from sim.adaptive import SofaAdaptiveTail
    cfg = preset("tiny").replace(adapt_bins=4)
    top = (1 << cfg.c_bits) - 1
    base = dict(seq_len=8, top_k=1, radius=0, scale_log2e=1)
    cases = [
        (preset("tiny"), dict(adapt_mass=0, tail_scale=5),
         "tail_scale = 5 needs a core with adaptive selection (adapt_bins > 0); this config "
         "has adapt_bins = 0"),
        (cfg, dict(tail_scale=5),
         "tail_scale = 5 (the tail blend) needs the adaptive budget in sparse mode; this call "
         "has adapt_mass = 0, dense = False; allowed tail_scale = 0 there, or adapt_mass "
         "1 … 256 with dense = false"),
        (cfg, dict(adapt_mass=64, dense=True, tail_scale=5), "dense = True"),
        (cfg, dict(adapt_mass=64, tail_scale=top + 1),
         f"tail_scale = {top + 1} is out of range for this config; allowed 0 … {top}"),
        (cfg, dict(adapt_mass=64, tail_scale=-1), "tail_scale = -1 is out of range"),
        (cfg, dict(adapt_mass=64, tail_scale=1.5), "tail_scale must be an integer, not 1.5"),
    ]
    for c, kw, msg in cases:
        with pytest.raises(ConfigError) as e:
            RunParams(**base, **kw).validate(c)
        assert msg in str(e.value), (kw, str(e.value))
    for alpha in (0, -1.4, float("nan"), "1.4"):
        with pytest.raises(ConfigError, match=f"alpha = {alpha!r} must be a number > 0"):
            SofaAdaptiveTail(64, 32, 56, 2.0, alpha=alpha)
