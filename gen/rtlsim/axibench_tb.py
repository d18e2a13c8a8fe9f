"""The memory benchmark's testbench: the memory-attached core on Verilator with cocotbext-axi's
AxiRam as its memory and AxiLiteMaster on its registers. Each job of ``SOFA_AXIBENCH_JOBS`` (a
JSON list written by :mod:`gen.axibench`) is laid out in memory (structured data,
:func:`sim.workloads.structured`), run, and checked: every O element against
:func:`sim.jobs.golden_job`, every exact counter against :func:`spec.regmap.expected_counters`
with the traffic model. The counters of each job go to ``SOFA_AXIBENCH_OUT``.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from gen.axibench import job_data
from gen.rtlsim.axi import axi_ram, axil_master, run_memory_job
from gen.rtlsim.streams import load_sidecar
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
    cfg, _ = load_sidecar()
    jobs = json.loads(os.environ["SOFA_AXIBENCH_JOBS"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    size = int(os.environ.get("SOFA_AXIBENCH_MEM", str(1 << 22)))
    ram = axi_ram(dut, size=size)
    lite = axil_master(dut)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    results = [await run_job(dut, cfg, ram, lite, spec) for spec in jobs]
    with open(os.environ["SOFA_AXIBENCH_OUT"], "w") as f:
        json.dump({"jobs": results}, f, indent=2)
