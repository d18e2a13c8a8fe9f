"""The memory-attached core (``sofa_top`` of a ``memory = "axi"`` config, hw/axicore.py) on
Verilator (cocotb, ``tb/cocotb/axicore/cocotb_axicore.py``): cocotbext-axi's AxiRam as the memory
(random read latency, random pauses on all five channels), AxiSlaveModel for DECERR, the
AxiLiteMaster on the registers, the AXI4 protocol checker on the port in every test; every O
bit-exact against :func:`sim.jobs.golden_job`, every exact counter against
:func:`spec.regmap.expected_counters`, the V reads against :func:`sim.jobs.fetch_schedule`.

Configs: ``axi-small`` (the tiny compute, two lanes, a 64-bit bus, S up to 64k), ``axi-odd``
(tb/support/axicore.py: three lanes, d = 6, tiles of 5, bursts of 4, two reads in flight) and
the ``axi`` preset itself (d = 64, a 128-bit bus) at small S; ``predict_keys`` 2 and 4
(``axi-small-p2``, ``axi-odd-p4``: packed K). One Verilator build per config
(``build/cocotb/sofa_top/<name>``), shared with tb/test_regwalk_verilator.py.
"""

import pytest

from gen.rtlsim.runner import run_cocotb
from hw.top import sofa_top
from spec.config import preset
from tb.support.axicore import (AXI_ODD, AXI_ODD_C4, AXI_ODD_P4, AXI_SMALL, AXI_SMALL_C2,
                                AXI_SMALL_P2, PROJ_ODD, PROJ_SMALL)


CONFIGS = {"axi-small": AXI_SMALL, "axi-odd": AXI_ODD, "axi": preset("axi"),
           "axi-small-c2": AXI_SMALL_C2, "axi-odd-c4": AXI_ODD_C4,
           "axi-small-p2": AXI_SMALL_P2, "axi-odd-p4": AXI_ODD_P4,
           "axi-small-project": PROJ_SMALL, "axi-odd-project": PROJ_ODD}
MODULE = "tb.cocotb.axicore.cocotb_axicore"

#: cocotb tests by group (one simulator run each).
JOBS = ["test_sparse_and_dense", "test_causal_multihead_strided", "test_rass",
        "test_back_to_back"]
TIMING = ["test_timing_intensities", "test_stress"]
ERRORS = ["test_descriptor_errors", "test_write_while_busy"]
FAULTS = [f"test_fault_{kind}_{stream}" for kind in ("slverr", "decerr") for stream in "QKVO"]
GROUPS = {"jobs": JOBS, "timing": TIMING, "errors": ERRORS, "faults": FAULTS}


def run(name, tests, module=MODULE, **env):
    cfg = CONFIGS[name]
    extra = {k.upper(): v for k, v in env.items()}
    if name == "axi":
        extra["SOFA_SMALL"] = 1
    run_cocotb("sofa_top", sofa_top, cfg, module, name=name, testcase=tests, extra_env=extra)


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("name", ["axi-small", "axi-odd"])
def test_axicore_verilator(name, group):
    run(name, GROUPS[group])


@pytest.mark.parametrize("name,group", [
    ("axi-small-c2", "jobs"), ("axi-small-c2", "errors"),
    # four cores (a second build), the idle × backpressure intensities and the stress run:
    # make test-all (tb/test_multicore.py runs four cores in make test)
    pytest.param("axi-odd-c4", "jobs", marks=pytest.mark.slow),
    pytest.param("axi-small-c2", "timing", marks=pytest.mark.slow),
    pytest.param("axi-odd-c4", "timing", marks=pytest.mark.slow)])
def test_multicore_verilator(name, group):
    """Two and four cores behind the arbiter (``cores > 1``): whole jobs split across them
    (queries that do not divide by the cores, idle cores in the odd config's short blocks),
    every O and total counter exact, each core's V reads in fetch_schedule order, the
    protocol checker on the shared port; faults are in tb/test_multicore.py."""
    run(name, GROUPS[group])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["axi-small-p2", "axi-odd-p4"])
@pytest.mark.parametrize("group", GROUPS)
def test_predict_keys_verilator(group, name):
    """``predict_keys > 1`` (packed K, hw/kgroup.py, DLZS with P slots, SADSBank): P = 2 on
    a 256-bit bus (two words of two rows a beat, the rest of a tile's last beat dropped) and
    P = 4 in the odd config's shape (three lanes, tiles of 8, a word of two beats), every
    group of tests: O and counters exact, V reads in fetch_schedule order, random latency
    and pauses, the descriptor checks (a K stride that is not one row is STRIDE) and faults.
    make test-all (two builds of about a minute each); make test has the same configs' jobs
    in the Amaranth simulator (tb/test_axicore_predict.py)."""
    run(name, GROUPS[group])


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_axi_preset_verilator(group):
    """The ``axi`` preset itself, at S of two or three tiles (make test-all: its build alone
    takes two minutes; axi-small and axi-odd cover the same logic in make test)."""
    run("axi", GROUPS[group])


def test_axicore_4k():
    """S = 4096, two queries (one lane block), the small config."""
    run("axi-small", ["test_long"], sofa_long_s=4096, sofa_long_t=2)


@pytest.mark.slow
@pytest.mark.parametrize("S,T", [(16384, 3), (65536, 2)])
def test_axicore_long(S, T):
    run("axi-small", ["test_long"], sofa_long_s=S, sofa_long_t=T)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["axi-small", "axi-odd"])
def test_axicore_long_stress(name):
    """Ten stress rounds with another seed."""
    run(name, ["test_stress"], sofa_stress_rounds=10, sofa_seed=7)


#: The on-demand K/V mode's cocotb tests (tb/cocotb/axicore/cocotb_axiproject.py).
PROJECT = ["test_project_sparse_and_dense", "test_project_timing"]


@pytest.mark.parametrize("name", [
    "axi-small-project", pytest.param("axi-odd-project", marks=pytest.mark.slow)])
def test_project_verilator(name):
    """On-demand K/V (``kv_source = "project"``): X and the weights over AXI, K̂ by
    shift-add, the selected rows' K and V projected on chip; O and every exact counter
    bit-exact against sim.projjobs, sparse and dense, causal, RASS on and off, one X for
    every head, random latency and pauses on all five channels, the protocol checker on the
    port. The odd config (three lanes, d = 6, tiles of 5) in make test-all."""
    run(name, PROJECT, module="tb.cocotb.axicore.cocotb_axiproject")
