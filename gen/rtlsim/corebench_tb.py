"""The multi-core benchmark's testbench: ``cores`` memory-attached cores (:class:`hw.axicore.
SofaAxiCore`) on Verilator, with cocotbext-axi's AxiRam as the one memory they share and
AxiLiteMaster on the registers. Each job of ``SOFA_COREBENCH_JOBS`` (a JSON list written by
:mod:`gen.corebench`) is laid out in memory, run with its SHARED_K and SPLIT_QUERIES, and
checked: every O element against :func:`sim.jobs.golden_job`, every exact counter (the totals
and each core's block) against :func:`sim.jobs.job_counters`. The counters of each job go to
``SOFA_COREBENCH_OUT``.

A job's ``bytes_per_cycle`` is the memory's read bandwidth: AxiRam's R channel may carry a beat
only on every ``bus bytes / bytes_per_cycle``-th cycle (a fixed pause pattern), the model's
beat slots (:class:`sim.axiperf.Bus`). The write channel is not throttled (the model does not
share it either).
"""

import itertools

import cocotb
import numpy as np

from gen.axibench import job_data
from gen.rtlsim.axi import run_memory_bench, run_memory_job
from sim.jobs import golden_job, job_counters
from spec.job import bus_bytes
from spec.regmap import core_address, counter_names, job_writes, parameter_writes


def read_pauses(cfg, bytes_per_cycle):
    """AxiRam's R pause pattern for ``bytes_per_cycle``: one free cycle in every
    ``bus bytes / bytes_per_cycle``."""
    every = bus_bytes(cfg) // bytes_per_cycle
    return itertools.cycle([False] + [True] * (every - 1))


async def run_job(dut, cfg, ram, lite, spec):
    job, params, (Q, K, V) = job_data(cfg, spec)
    ram.read_if.r_channel.set_pause_generator(read_pauses(cfg, spec["bytes_per_cycle"]))
    writes = parameter_writes(cfg, params) + job_writes(
        cfg, job, shared_k=spec["shared_k"], split_queries=spec["split_queries"])
    counters, out = await run_memory_job(dut, cfg, ram, lite, job, (Q, K, V), writes, poll=500)
    names = counter_names(cfg)
    per_core = {}
    if cfg.cores > 1:
        for c in range(cfg.cores):
            per_core[c] = {name: await lite.read_dword(4 * core_address(cfg, c, f"counter_{name}"))
                           for name in names}
    res = golden_job(cfg, params, job, Q, K, V)
    assert np.array_equal(out, res.out), "O differs from the golden model"
    want, want_cores = job_counters(cfg, params, job, Q, K, V, shared_k=spec["shared_k"],
                                    split_queries=spec["split_queries"])
    for name, value in want.items():
        assert counters[name] == value, f"counter {name}: {counters[name]} != {value}"
    for c, got in per_core.items():
        for name, value in want_cores.get(c, {}).items():
            assert got[name] == value, f"core {c} counter {name}: {got[name]} != {value}"
    return {**spec, "counters": counters,
            "core_busy_cycles": [per_core[c]["busy_cycles"] for c in sorted(per_core)]}


@cocotb.test()
async def bench(dut):
    await run_memory_bench(dut, run_job, "SOFA_COREBENCH")
