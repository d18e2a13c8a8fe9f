"""Self-test of :func:`tb.cocotb_runner.run_cocotb` on a throwaway 2-stage stream register.

Checks that the sidecar reaches the cocotb module, that a passing module passes, that a failing
cocotb test is reported by name as an AssertionError, and that an unchanged design is not
rebuilt.
"""

import json

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spec.config import preset
from tb.cocotb_runner import build_dir_for, run_cocotb


class StreamReg2(wiring.Component):
    """Two pipeline registers on a stream of ``data_width``-bit words (full-stall)."""

    def __init__(self, cfg):
        super().__init__({
            "i": In(stream.Signature(cfg.data_width)),
            "o": Out(stream.Signature(cfg.data_width)),
        })

    @property
    def latency(self):
        return 2

    @property
    def ii(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        width = len(self.i.payload)
        stages = [stream.Signature(width).create() for _ in range(2)]
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += [
                stages[0].valid.eq(self.i.valid), stages[0].payload.eq(self.i.payload),
                stages[1].valid.eq(stages[0].valid), stages[1].payload.eq(stages[0].payload),
            ]
        m.d.comb += [self.o.valid.eq(stages[1].valid), self.o.payload.eq(stages[1].payload)]
        return m


def test_run_cocotb_passes_and_reuses_build():
    cfg = preset("tiny")
    results = run_cocotb("selftest", StreamReg2, cfg, "cocotb_selftest", testcase="test_passthrough",
                         seed=7)
    assert results.exists()
    build = build_dir_for("selftest", cfg.name)
    meta = json.loads((build / "selftest.json").read_text())
    assert meta["latency"] == 2 and meta["ii"] == 1 and meta["config"]["name"] == "tiny"
    assert [p["name"] for p in meta["ports"]][:2] == ["clk", "rst"]
    stamp_mtime = (build / "build.stamp").stat().st_mtime_ns
    run_cocotb("selftest", StreamReg2, cfg, "cocotb_selftest", testcase="test_passthrough")
    assert (build / "build.stamp").stat().st_mtime_ns == stamp_mtime   # not rebuilt


def test_run_cocotb_reports_failures_by_name():
    cfg = preset("tiny")
    with pytest.raises(AssertionError, match="test_deliberate_failure"):
        run_cocotb("selftest", StreamReg2, cfg, "cocotb_selftest",
                   extra_env={"SELFTEST_FAIL": "1"})
