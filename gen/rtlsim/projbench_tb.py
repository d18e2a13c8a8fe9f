"""The on-demand K/V benchmark's testbench: the memory-attached core with ``kv_source =
"project"`` on Verilator, AxiRam as its memory. Each job of ``SOFA_PROJBENCH_JOBS`` (written by
:mod:`gen.projbench`) is laid out in memory (:func:`gen.projbench.project_job_data`), run and
checked: every O element against :func:`sim.projjobs.golden_project_job`, every exact counter
against :func:`sim.projjobs.project_counters`. The counters go to ``SOFA_PROJBENCH_OUT``.
"""

import cocotb
import numpy as np

from gen.projbench import project_job_data
from gen.rtlsim.axi import run_memory_bench, run_memory_job
from sim.projjobs import golden_project_job, project_image, project_traffic
from spec.regmap import expected_counters, job_writes, parameter_writes, query_groups


async def run_job(dut, cfg, ram, lite, spec):
    job, params, (Q, X, w) = project_job_data(cfg, spec)
    writes = parameter_writes(cfg, params) + job_writes(cfg, job, rass=spec["rass"])
    counters, out = await run_memory_job(dut, cfg, ram, lite, job, None, writes,
                                         image=project_image(cfg, job, Q, X, w))
    res, _ = golden_project_job(cfg, params, job, Q, X, w)
    assert np.array_equal(out, res.out), "O differs from the golden model"
    tr = project_traffic(cfg, params, job, res, spec["rass"])
    calls = [n for _ in range(job.heads) for n in query_groups(job.queries, cfg.q_lanes)]
    want = expected_counters(cfg, params, res.stats, calls=calls,
                             lengths=res.lengths * job.heads, traffic=tr, rass=spec["rass"])
    for name, value in want.items():
        assert counters[name] == value, f"counter {name}: {counters[name]} != {value}"
    return {**spec, "counters": counters, "traffic": tr}


@cocotb.test()
async def bench(dut):
    await run_memory_bench(dut, run_job, "SOFA_PROJBENCH")
