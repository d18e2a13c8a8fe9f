"""Board builds without the slow steps: every board of ``gen.boards`` elaborates through its
amaranth-boards platform into a build plan (pins, PLL, synthesis options), the ECP5 PLL
calculator, and one cheap synthesis smoke test of the plain flow (Yosys on the ``tiny`` board
top for the iCE40 UP5K, about 30 s)."""

import pytest

from gen.boards import BOARDS, NAME, prepare_board
from gen.toolchain import DEVICES
from hw.board import ecp5_pll_params
from spec.config import ConfigError, preset

TINY = preset("tiny")


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_plan(name):
    board, plat, design, cfg, kwargs = prepare_board(name, cfg=TINY)
    plan = plat.build(design, name=NAME, do_build=False, **kwargs)
    files = plan.files
    il = files[f"{NAME}.il"]
    il = il if isinstance(il, str) else il.decode()
    if board.family == "ice40":
        pcf = files[f"{NAME}.pcf"]
        assert "set_io uart_0__rx__io 6" in pcf and "set_io uart_0__tx__io 9" in pcf
        assert "synth_ice40 -dsp" in files[f"{NAME}.ys"]
    else:
        lpf = files[f"{NAME}.lpf"]
        rx = "M1" if "ulx3s" in name else "N17"
        assert f'LOCATE COMP "uart_0__rx__io" SITE "{rx}"' in lpf
    assert ("EHXPLLL" in il) == (board.clk_mhz is not None)
    assert kwargs["nextpnr_opts"].startswith(f"--report {NAME}.report.json")
    top = design.top
    assert top.divisor == round(design.resolved_clk_hz / 115200)


def test_pll_params():
    clki, fb, op, f = ecp5_pll_params(25e6, 50e6)
    assert f == 50e6 and 400e6 <= f * op <= 800e6 and 3.125e6 <= 25e6 / clki
    clki, fb, op, f = ecp5_pll_params(48e6, 60e6)
    assert abs(f - 60e6) <= 0.005 * 60e6
    with pytest.raises(ConfigError, match="clock 900 MHz"):
        ecp5_pll_params(25e6, 900e6)


def test_unknown_board():
    with pytest.raises(ConfigError, match="unknown board 'nope'; known boards are icebreaker"):
        prepare_board("nope")


@pytest.mark.synth
def test_synthesis_smoke():
    """The plain flow's first steps on the tiny board top for the iCE40 UP5K: Verilog with the
    pins of constraints/, Yosys synthesis (about 30 s), cell counts and the fit check; the
    throughput columns from the cycle model."""
    from gen.report import ROOT, run_one
    out = ROOT / "build" / "test-report"          # not /tmp: YoWASP cannot see it
    row = run_one("tiny", "ice40-up5k", out_dir=out, place=False)
    res = row["resources"]
    assert res["lut"] > 1000 and res["ff"] > 500 and res["dsp"] >= TINY.mac_lanes
    assert res["bram"] >= 3                       # K (two read ports) and V buffers at least
    capacity = DEVICES["ice40-up5k"].capacity
    assert row["fits"] == all(res.get(k, 0) <= n for k, n in capacity.items())
    assert row["seq_len"] == TINY.max_seq_len and row["cycles_sparse"] < row["cycles_dense"]
    v = (out / "tiny-ice40-up5k" / "sofa_board.v").read_text()
    for pin in ("osc", "btn", "uart_rx", "uart_tx", "led_busy", "led_error"):
        assert f"input {pin};" in v or f"output {pin};" in v
