"""The memory-attached core in the on-demand K/V mode (kv_source = "project") in the Amaranth
simulator: jobs from X and the weights bit-exact against sim.projjobs, with their counters,
on a tiny and an odd config, sparse and dense, with random bus timing."""

import numpy as np
import pytest

from sim.jobs import read_outputs
from sim.projjobs import (golden_project_job, layout_project_job, project_image,
                          project_traffic, project_workload)
from spec.config import RunParams
from spec.job import JobDescriptor, JobError
from spec.regmap import expected_counters, job_writes, parameter_writes, query_groups
from tb.support.axicore import PROJ_ODD, PROJ_TINY, run_job

PROJ_CONFIGS = {c.name: c for c in (PROJ_TINY, PROJ_ODD)}


def check_project_run(cfg, job, seed=0, *, dense=False, rass=True, shared_x=False, idle=0.0,
                      latency=0, top_k=1, gap=0):
    rng = np.random.default_rng(seed)
    desc = layout_project_job(cfg, job, gap=gap, shared_x=shared_x)
    Q, X, w, desc = project_workload(cfg, rng, desc)
    params = RunParams(seq_len=job.seq_len, top_k=top_k, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
    writes = parameter_writes(cfg, params) + job_writes(cfg, desc, rass=rass, irq=True)
    model, got = run_job(cfg, writes, image=project_image(cfg, desc, Q, X, w).items(),
                         seed=seed, idle=idle, latency=latency, timeout=200_000)
    assert got["job_error"] == JobError.NONE and got["irq"] == 1
    res, _ = golden_project_job(cfg, params, desc, Q, X, w)
    out = read_outputs(cfg, desc, lambda a, n: bytes(model.mem[a:a + n]))
    assert np.array_equal(out, res.out), f"O differs:\n{out}\nexpected\n{res.out}"
    tr = project_traffic(cfg, params, desc, res, rass)
    calls = [n for _ in range(desc.heads) for n in query_groups(desc.queries, cfg.q_lanes)]
    want = expected_counters(cfg, params, res.stats, calls=calls,
                             lengths=res.lengths * desc.heads, traffic=tr, rass=rass)
    for name, value in want.items():
        assert got[name] == value, f"counter {name}: {got[name]} != expected {value}"
    return got


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("name", PROJ_CONFIGS)
def test_project_job(name, dense):
    cfg = PROJ_CONFIGS[name]
    check_project_run(cfg, JobDescriptor(seq_len=2 * cfg.block_size + 3, queries=3, heads=2),
                      seed=1, dense=dense)


@pytest.mark.slow
def test_project_causal_rass_off_timing():
    """Causal with q_start, RASS off (a row two lanes select projected twice), rows further
    apart than a row, one X for both heads, random bus latency and pauses (make test-all;
    make test has the same on Verilator, tb/test_axicore_verilator.py)."""
    cfg = PROJ_TINY
    job = JobDescriptor(seq_len=2 * cfg.block_size + 5, queries=5, heads=2, causal=True,
                        q_start=cfg.block_size - 2)
    on = check_project_run(cfg, job, seed=3, rass=True, shared_x=True, gap=1, idle=0.3,
                           latency=6, top_k=2)
    off = check_project_run(cfg, job, seed=3, rass=False, shared_x=True, gap=1, idle=0.3,
                            latency=6, top_k=2)
    assert on["rows_projected"] <= off["rows_projected"]
    assert on["bytes_k"] == on["bytes_v"] == 0 < on["bytes_x"]


@pytest.mark.parametrize("tensor,code", [("x", JobError.READ_X), ("wk", JobError.READ_W),
                                         ("bias", JobError.READ_W)])
def test_project_fault(tensor, code):
    """SLVERR on X or on a weight tensor: JOB_ERROR names the stream."""
    from spec.job import weight_address
    cfg = PROJ_TINY
    rng = np.random.default_rng(5)
    desc = layout_project_job(cfg, JobDescriptor(seq_len=cfg.block_size + 3, queries=2))
    Q, X, w, desc = project_workload(cfg, rng, desc)
    params = RunParams(seq_len=desc.seq_len, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3))
    a = desc.address("x", 0, 4) if tensor == "x" else weight_address(desc, tensor, 0)
    writes = parameter_writes(cfg, params) + job_writes(cfg, desc, irq=True)
    _, got = run_job(cfg, writes, image=project_image(cfg, desc, Q, X, w).items(), seed=1,
                     idle=0.1, latency=3, errors=[(a, a + 8, 2)], timeout=40_000)
    assert got["job_error"] == code and got["irq"] == 1


@pytest.mark.parametrize("change,code", [
    (lambda j: dict(x_stride=8), JobError.STRIDE),
    (lambda j: dict(wv_base=j.wv_base + 4), JobError.ALIGN),
    (lambda j: dict(w_head_stride=(1 << 32) - 64), JobError.RANGE),
    (lambda j: dict(x_base=(1 << 32) - 64), JobError.RANGE),
])
def test_project_checks(change, code):
    """The core's start checks of X and the weights, as spec.job.check_job; nothing runs."""
    from spec.job import check_job
    cfg = PROJ_TINY
    desc = layout_project_job(cfg, JobDescriptor(seq_len=9, queries=2, heads=2))
    bad = desc.replace(**change(desc))
    assert check_job(cfg, bad) == code
    params = RunParams(seq_len=9, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3))
    model, got = run_job(cfg, parameter_writes(cfg, params) + job_writes(cfg, bad),
                         timeout=20_000)
    assert got["job_error"] == code and got["bytes_x"] == got["bytes_w"] == 0
