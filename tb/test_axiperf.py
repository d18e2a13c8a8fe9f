"""The cycle model of the memory-attached core (sim/axiperf.py) against the RTL (Amaranth
simulator, AXI memory model with a fixed latency): within 5 % on the test config and on the axi
preset, sparse and dense, at the memory latencies the tests use; with ``predict_keys`` 2 and 4
(packed K) on the test config with a 128- and a 256-bit bus and on the axi preset with a
512-bit bus (a K row a beat, where P = 4 predicts a key a cycle)."""

import numpy as np
import pytest

from sim.axiperf import axi_core_cycles
from sim.jobs import golden_job, memory_image
from spec.config import RunParams, preset
from spec.regmap import job_writes, parameter_writes
from tb.support.axicore import (AXI_P2, AXI_P2_WIDE, AXI_P4, AXI_TINY, PROJ_ODD, PROJ_TINY,
                                job_case, run_job)

AXI = preset("axi").replace(name="axi-4k", max_seq_len=4096)
AXI_512 = {P: AXI.replace(name=f"axi-4k-512-p{P}", axi_data_width=512, predict_keys=P)
           for P in (2, 4)}
SLOW = pytest.mark.slow
CASES = [(AXI_TINY, 200, dense, lat) for dense in (False, True) for lat in (0, 10)] + \
        [(AXI, 100, dense, 10) for dense in (False, True)] + \
        [(AXI_P2, 200, False, 10), (AXI_512[4], 100, False, 10)] + \
        [pytest.param(c, S, dense, lat, marks=SLOW) for c, S, dense, lat in [
            *((AXI_P2, 200, dense, lat) for dense in (False, True) for lat in (0, 10)
              if (dense, lat) != (False, 10)),
            *((c, 200, dense, lat) for c in (AXI_P4, AXI_P2_WIDE) for dense in (False, True)
              for lat in (0, 10)),
            (AXI_512[2], 100, False, 10), (AXI_512[2], 100, True, 10),
            (AXI_512[4], 100, True, 10)]]


def _id(case):
    c, s, d, lat = case.values if hasattr(case, "values") else case
    return f"{c.name}-S{s}-{'dense' if d else 'sparse'}-lat{lat}"


@pytest.mark.parametrize("cfg,S,dense,latency", CASES, ids=[_id(c) for c in CASES])
def test_model_matches_the_rtl(cfg, S, dense, latency):
    rng = np.random.default_rng(1)
    job, Q, K, V = job_case(cfg, rng, H=1, T=2 * cfg.q_lanes, S=S, base=4096)
    params = RunParams(seq_len=S, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
    writes = parameter_writes(cfg, params) + job_writes(cfg, job)
    _, got = run_job(cfg, writes, image=memory_image(cfg, job, Q, K, V).items(),
                     latency=latency, fixed=True, timeout=2_000_000)
    res = golden_job(cfg, params, job, Q, K, V)
    model = axi_core_cycles(cfg, params, job, res, (Q, K, V), latency=latency)
    rtl = got["busy_cycles"]
    assert abs(model - rtl) <= 0.05 * rtl, (model, rtl)


PROJ_CASES = [(PROJ_TINY, False, 10)] + [
    pytest.param(c, dense, lat, marks=SLOW) for c, dense, lat in [
        (PROJ_TINY, False, 0), (PROJ_TINY, True, 0), (PROJ_TINY, True, 10),
        (PROJ_ODD, False, 0), (PROJ_ODD, False, 10), (PROJ_ODD, True, 0), (PROJ_ODD, True, 10)]]


@pytest.mark.parametrize("cfg,dense,latency", PROJ_CASES)
def test_model_matches_the_rtl_projecting(cfg, dense, latency):
    """On-demand K/V (kv_source = "project"): the weight loads, phase 1.1's pace and the
    projection unit's rows, S = 100, two heads; within 5 % (measured within 0.3 %)."""
    from sim.projjobs import (golden_project_job, layout_project_job, project_image,
                              project_workload)
    from spec.job import JobDescriptor
    S = 100
    rng = np.random.default_rng(1)
    job = layout_project_job(cfg, JobDescriptor(seq_len=S, queries=2 * cfg.q_lanes, heads=2),
                             base=4096)
    Q, X, w, job = project_workload(cfg, rng, job)
    params = RunParams(seq_len=S, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
    writes = parameter_writes(cfg, params) + job_writes(cfg, job)
    _, got = run_job(cfg, writes, image=project_image(cfg, job, Q, X, w).items(),
                     latency=latency, fixed=True, timeout=3_000_000)
    res, (khat, K, V) = golden_project_job(cfg, params, job, Q, X, w)
    model = axi_core_cycles(cfg, params, job, res, (Q, K, V, khat), latency=latency)
    rtl = got["busy_cycles"]
    assert abs(model - rtl) <= 0.05 * rtl, (model, rtl)
