"""The ``sofa`` command line: outputs, the sidecar, reproducibility, and one-line errors with
exit status 2 for bad input (never a traceback)."""

import json

import pytest

from gen.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_verilog_and_sidecar(tmp_path, capsys):
    code, out, err = run(capsys, "verilog", "--preset", "tiny", "--out", str(tmp_path))
    assert code == 0, err
    v = (tmp_path / "sofa_top.v").read_text()
    meta = json.loads((tmp_path / "sofa_top.json").read_text())
    assert "module sofa_top" in v and "src =" not in v          # emit_src=False
    assert meta["config"]["name"] == "tiny" and meta["config"]["d"] == 8
    assert meta["derived"]["mac_cycles"] == 2
    assert {"q", "kv_load", "o", "reg_addr"} <= {p["name"].split("__")[0]
                                                  for p in meta["ports"]}
    assert isinstance(meta["latency"], int) and meta["ii"] == 2
    assert meta["register_map"]["seq_len"] == 0 and meta["register_map"]["counter_cycles"] == 16
    # reproducible: a second run writes the same bytes
    code, _, _ = run(capsys, "verilog", "--preset", "tiny", "--out", str(tmp_path))
    assert code == 0 and (tmp_path / "sofa_top.v").read_text() == v


@pytest.mark.parametrize("unit,module", [("dlzs", "dlzs"), ("sads", "sads"), ("sufa", "sufa")])
def test_unit(tmp_path, capsys, unit, module):
    code, _, err = run(capsys, "verilog", "--preset", "tiny", "--unit", unit,
                       "--out", str(tmp_path))
    assert code == 0, err
    assert f"module {module}" in (tmp_path / f"{module}.v").read_text()


@pytest.mark.parametrize("unit,what", [("adapt", "the adaptive gate"),
                                       ("tail", "the tail blend (built with the gate)")])
def test_unit_adapt(tmp_path, capsys, unit, what):
    """The adaptive gate and the tail blend alone need a config with bins; without, one
    message and exit 2."""
    code, _, err = run(capsys, "verilog", "--preset", "tiny", "--unit", unit,
                       "--out", str(tmp_path / "none"))
    assert code == 2 and f"--unit {unit}: {what} needs adapt_bins > 0; tiny has " \
        "adapt_bins = 0" in err
    assert not (tmp_path / "none").exists()
    cfg = tmp_path / "tiny-adapt.json"
    cfg.write_text('{"preset": "tiny", "adapt_bins": 4}')
    code, _, err = run(capsys, "verilog", "--config", str(cfg), "--unit", unit,
                       "--out", str(tmp_path / "gate"))
    assert code == 0, err
    assert f"module {unit}" in (tmp_path / "gate" / f"{unit}.v").read_text()


@pytest.mark.parametrize("content,message", [
    ('{"d": 48, "dlzs_lanes": 48, "mac_lanes": 32}', "mac_lanes = 32 must divide d = 48"),
    ('{"preset": "tiny", "bogus": 1}', "unknown parameter 'bogus'"),
    ('{"d": ', "config.json"),
    ('[1, 2]', "expected a JSON object of parameters"),
])
def test_bad_config_file(tmp_path, capsys, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    code, _, err = run(capsys, "verilog", "--config", str(path), "--out", str(tmp_path))
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_bad_arguments(tmp_path, capsys):
    code, _, err = run(capsys, "verilog", "--preset", "nope")
    assert code == 2 and err == "error: unknown preset 'nope'; known presets are tiny, " \
                                "default, ice40, ecp5, axi, ecp5-axi, axi-project\n"
    with pytest.raises(SystemExit) as e:
        main(["verilog", "--unit", "fpu"])
    assert e.value.code == 2
    code, _, err = run(capsys, "verilog", "--config", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err
