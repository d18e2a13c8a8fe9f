"""``predict_keys = P > 1`` on the memory-attached core (hw/axiengine.py with
hw/kgroup.py, DLZS with P key slots and SADSBank) in the Amaranth simulator: O bit-exact with
the golden job model and every exact counter, for P = 2 and 4 on configs where a word of P rows
is one beat, part of a beat (several words a beat, the rest of the last beat dropped) and
several beats; odd S, causal, several heads, random bus timing. The cocotb tests on Verilator
are in tb/test_axicore_verilator.py (``axi-p2``, ``axi-p4``)."""

import numpy as np
import pytest

from spec.config import RunParams
from spec.job import JobError, bus_bytes, check_job, row_beats, row_bytes
from spec.regmap import job_writes, parameter_writes
from tb.support.axicore import AXI_P_CONFIGS, job_case, run_job
from tb.test_axicore import check_job_run


CASES = [(name, dense) for name in AXI_P_CONFIGS for dense in (False, True)]


@pytest.mark.parametrize("name,dense", CASES, ids=[f"{n}-{'dense' if d else 'sparse'}"
                                                   for n, d in CASES])
def test_job(name, dense):
    cfg = AXI_P_CONFIGS[name]
    rng = np.random.default_rng(1)
    job, Q, K, V = job_case(cfg, rng, H=2, T=cfg.q_lanes + 1, S=3 * cfg.block_size + 3)
    check_job_run(cfg, job, Q, K, V, dense=dense, top_k=1)


@pytest.mark.parametrize("name", AXI_P_CONFIGS)
def test_causal_timing(name):
    """Causal with q_start (lanes of a block see different key counts, a word's keys split
    between them), random bus timing and latency."""
    cfg = AXI_P_CONFIGS[name]
    rng = np.random.default_rng(2)
    job, Q, K, V = job_case(cfg, rng, H=2, T=5, S=2 * cfg.block_size + 5, causal=True,
                            q_start=cfg.block_size - 3, gap=1)
    check_job_run(cfg, job, Q, K, V, seed=3, idle=0.3, latency=6)


def test_k_not_packed_is_refused():
    """K laid out with a stride other than one row (padded to the bus, or one row plus a bus
    word) is STRIDE in check_job and in the core, before any bus access; the packed stride,
    not a multiple of the bus, is no ALIGN error."""
    cfg = AXI_P_CONFIGS["axi-p2-wide"]
    rng = np.random.default_rng(5)
    job, Q, K, V = job_case(cfg, rng, H=1, T=2, S=2 * cfg.block_size + 1)
    assert job.k_stride == row_bytes(cfg) and check_job(cfg, job) == JobError.NONE
    params = RunParams(seq_len=job.seq_len, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3))
    for stride in (row_beats(cfg) * bus_bytes(cfg), row_bytes(cfg) + bus_bytes(cfg)):
        bad = job.replace(k_stride=stride)
        assert check_job(cfg, bad) == JobError.STRIDE
        writes = parameter_writes(cfg, params) + job_writes(cfg, bad, irq=True)
        model, got = run_job(cfg, writes)
        assert got["job_error"] == JobError.STRIDE and got["irq"] == 1
        assert got["bytes_k"] == got["bytes_q"] == 0
