"""The memory benchmark's testbench: the memory-attached core on Verilator with cocotbext-axi's
AxiRam as its memory and AxiLiteMaster on its registers. Each job of ``SOFA_AXIBENCH_JOBS`` (a
JSON list written by :mod:`gen.axibench`) is laid out in memory (structured data,
:func:`sim.workloads.structured`), run, and checked: every O element against
:func:`sim.jobs.golden_job`, every exact counter against :func:`spec.regmap.expected_counters`
with the traffic model. The counters of each job go to ``SOFA_AXIBENCH_OUT``.
"""

import cocotb
import numpy as np

from gen.axibench import job_data
from gen.rtlsim.axi import run_memory_bench, run_memory_job
from sim.jobs import golden_job, traffic
from spec.regmap import expected_counters, job_writes, parameter_writes


async def run_job(dut, cfg, ram, lite, spec):
    job, params, (Q, K, V) = job_data(cfg, spec)
    writes = parameter_writes(cfg, params) + job_writes(cfg, job, rass=spec["rass"])
    counters, out = await run_memory_job(dut, cfg, ram, lite, job, (Q, K, V), writes)
    res = golden_job(cfg, params, job, Q, K, V)
    assert np.array_equal(out, res.out), "O differs from the golden model"
    tr = traffic(cfg, params, job, res)
    calls = [min(cfg.q_lanes, job.queries - b) for b in range(0, job.queries, cfg.q_lanes)]
    want = expected_counters(cfg, params, res.stats, calls=calls * job.heads,
                             lengths=res.lengths * job.heads, traffic=tr, rass=spec["rass"])
    for name, value in want.items():
        assert counters[name] == value, f"counter {name}: {counters[name]} != {value}"
    return {**spec, "counters": counters, "traffic": tr}


@cocotb.test()
async def bench(dut):
    await run_memory_bench(dut, run_job, "SOFA_AXIBENCH")
