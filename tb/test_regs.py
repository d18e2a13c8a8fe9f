"""Register exports (gen/regs.py): the SystemRDL map compiles and says what spec.regmap says;
the C header compiles with the system C compiler and carries the same offsets and resets."""

import re
import shutil
import subprocess

import pytest

from gen.regs import compile_rdl, rdl_text, write_register_files
from spec.config import PRESETS, preset
from spec.regmap import register_map

CONFIGS = {**PRESETS, "axi64": preset("axi").replace(name="axi64", axi_addr_width=48),
           "lanes2": preset("tiny").replace(name="lanes2", q_lanes=2),
           "wide": preset("tiny").replace(name="wide", data_width=12, counter_width=16),
           "cores4": preset("axi").replace(name="cores4", cores=4)}


def rdl_registers(root):
    """``{name: (byte offset, {field: (lsb, width, reset, sw, min, max)})}`` of the map."""
    out = {}
    for reg in root.top.registers():
        fields = {}
        for f in reg.fields():
            fields[f.inst_name] = (f.lsb, f.width, f.get_property("reset"),
                                   f.get_property("sw").name,
                                   f.get_property("sofa_min", default=None),
                                   f.get_property("sofa_max", default=None))
        out[reg.inst_name] = (reg.address_offset, fields)
    return out


@pytest.mark.parametrize("name", CONFIGS)
def test_rdl_is_the_register_map(tmp_path, name):
    cfg = CONFIGS[name]
    rdl, header, doc = write_register_files(cfg, tmp_path)
    regs = rdl_registers(compile_rdl(rdl))
    expected = [e for e in register_map(cfg) if e["width"] > 0]
    assert list(regs) == [e["name"] for e in expected]
    for e in expected:
        offset, fields = regs[e["name"]]
        assert offset == 4 * e["address"], e["name"]
        if e["access"] == "status":
            assert fields["busy"][:2] == (0, 1) and fields["error"][:2] == (1, 1)
            continue
        if e["access"] == "control":
            assert fields["start"][:2] == (0, 1) and fields["start"][3] == "w"
            continue
        if e["access"] == "job_status":
            assert fields["done"][:2] == (0, 1) and fields["running"][:2] == (1, 1)
            continue
        lsb, width, reset, sw, lo, hi = fields["value"]
        assert (lsb, width, reset) == (0, e["width"], e["reset"]), e["name"]
        if e["access"] == "rw":
            # a wide parameter's low word takes any value; the whole one is checked
            assert sw == "rw" and [lo, hi] == [e["legal"][0], min(e["legal"][1],
                                                                  (1 << width) - 1)], e["name"]
        else:
            assert sw == "r", e["name"]
    assert "sofa_regs address map" in doc.read_text()
    if cfg.counter_width == 0:
        assert not any(n.startswith("counter_") for n in regs)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
@pytest.mark.parametrize("name", CONFIGS)
def test_header_compiles(tmp_path, name):
    cfg = CONFIGS[name]
    _, header, _ = write_register_files(cfg, tmp_path)
    for std in ([], ["-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror"]):
        run = subprocess.run(["cc", "-fsyntax-only", *std, "-x", "c", str(header)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    text = header.read_text()
    for e in register_map(cfg):
        if e["width"] and e["access"] not in ("status", "control", "job_status"):
            reset = re.search(rf"#define SOFA_REGS__{e['name'].upper()}__VALUE_reset (\w+)",
                              text)
            assert reset and int(reset.group(1), 0) == e["reset"], e["name"]


def test_reproducible(tmp_path):
    """The same config writes the same bytes (no dates, no absolute paths)."""
    a = write_register_files(preset("default"), tmp_path / "a")
    b = write_register_files(preset("default"), tmp_path / "b")
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes(), x.name
        assert str(tmp_path) not in x.read_text()


def test_bad_rdl_is_reported(tmp_path):
    """The compiler's errors reach the caller as one ValueError (the check can fail)."""
    path = tmp_path / "sofa_regs.rdl"
    path.write_text(rdl_text(preset("tiny")).replace("value[6:0]", "value[40:0]", 1))
    with pytest.raises(ValueError, match="SystemRDL does not compile"):
        compile_rdl(path)


def test_docs_show_the_default_map():
    """docs/registers.md's tables are those of spec.regmap for the default preset."""
    from pathlib import Path
    from gen.regs import markdown_tables
    text = (Path(__file__).resolve().parent.parent / "docs" / "registers.md").read_text()
    regs, counters = markdown_tables(preset("default"))
    assert f"<!-- registers:begin -->\n{regs}<!-- registers:end -->" in text
    assert f"<!-- counters:begin -->\n{counters}<!-- counters:end -->" in text


def test_ident_counts_the_link_counters():
    """IDENT's counter block is the on-chip core's (the memory core's extra counters are not
    on the link)."""
    from spec.protocol import N_REGS, ident_bytes, parse_ident
    from spec.regmap import COUNTER_BASE
    info = parse_ident(ident_bytes(preset("tiny"), max_payload=256, clk_hz=1, divisor=8,
                                   timeout_cycles=9))
    assert info["n_counters"] == N_REGS - COUNTER_BASE == 20
    assert info["counter_base"] == COUNTER_BASE and info["n_regs"] == N_REGS
