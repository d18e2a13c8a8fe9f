"""Self-test of :func:`gen.rtlsim.runner.run_cocotb` on a throwaway 2-stage stream register.

Checks that the sidecar reaches the cocotb module, that a passing module passes, that a failing
cocotb test is reported by name as a SimulationError (an AssertionError), that an unchanged
design is not rebuilt, and that a module the simulator could not import is refused up front.
"""

import json
import shutil

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from gen.rtlsim.runner import SimulationError, build_dir_for, run_cocotb, simulator
from spec.config import preset

#: The cocotb side, by its dotted name (the simulator imports it from sys.path).
SELFTEST = "tb.cocotb.selftest.cocotb_selftest"


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
    results = run_cocotb("selftest", StreamReg2, cfg, SELFTEST, testcase="test_passthrough",
                         seed=7)
    assert results.exists()
    build = build_dir_for("selftest", cfg.name)
    meta = json.loads((build / "selftest.json").read_text())
    assert meta["latency"] == 2 and meta["ii"] == 1 and meta["config"]["name"] == "tiny"
    assert [p["name"] for p in meta["ports"]][:2] == ["clk", "rst"]
    stamp_mtime = (build / "build.stamp").stat().st_mtime_ns
    run_cocotb("selftest", StreamReg2, cfg, SELFTEST, testcase="test_passthrough")
    assert (build / "build.stamp").stat().st_mtime_ns == stamp_mtime   # not rebuilt


def test_run_cocotb_reports_failures_by_name():
    cfg = preset("tiny")
    with pytest.raises(SimulationError, match="test_deliberate_failure"):
        run_cocotb("selftest", StreamReg2, cfg, SELFTEST,
                   extra_env={"SELFTEST_FAIL": "1"})


@pytest.mark.parametrize("module", ["tb/cocotb/selftest/cocotb_selftest.py",
                                    "tb.cocotb.selftest.no_such_module", "cocotb_selftest"])
def test_run_cocotb_refuses_unimportable_modules(module):
    """Paths and names the simulator could not import fail before anything is built."""
    with pytest.raises(ModuleNotFoundError, match="is not importable"):
        run_cocotb("selftest", StreamReg2, preset("tiny"), module, name="never-built")
    assert not build_dir_for("selftest", "never-built").exists()


def test_later_builds_link_the_shared_runtime_objects():
    """A second design's build copies Verilator's runtime objects (verilated.o …) kept from an
    earlier build instead of compiling them again, and runs."""
    if simulator() != "verilator":
        pytest.skip("Verilator builds only")
    cfg = preset("tiny").replace(name="selftest-w5", data_width=5)
    run_cocotb("selftest", StreamReg2, preset("tiny"), SELFTEST, testcase="test_passthrough")
    build = build_dir_for("selftest", cfg.name)
    shutil.rmtree(build, ignore_errors=True)                  # a fresh build in any case
    run_cocotb("selftest", StreamReg2, cfg, SELFTEST, testcase="test_passthrough")
    log = (build / "build.log").read_text()
    assert "Vtop__ALL.o" in log and "verilated.o" in log     # compiled the design, linked
    assert "-o verilated.o" not in log and (build / "verilated.o").is_file()
