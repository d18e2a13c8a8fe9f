"""The memory-attached core in the on-demand K/V mode (``kv_source = "project"``) on Verilator:
the bench of :mod:`tb.support.axicorebench` (cocotbext-axi's AxiRam with random read
latency and random pauses on all five channels, the AXI4-Lite master, the recording protocol
checker) with jobs from X and the weights: every ``O`` bit-exact against
:func:`sim.projjobs.golden_project_job`, every exact counter against
:func:`sim.projjobs.project_counters`, no read of K or V (ARIDs 0 Q, 1 X, 2 the weights), the
weights read once a head.

Environment: ``SOFA_SEED``.
"""

import numpy as np
import cocotb

from sim.projjobs import (golden_project_job, layout_project_job, project_counters,
                          project_image, project_workload)
from spec.job import JobDescriptor, JobError, WEIGHTS, check_job, weight_address
from spec.regmap import Reg
from tb.support.axicorebench import BC, CFG, DER, L, SEED, Bench, o_region, params_for

assert CFG.kv_source == "project", "this module tests kv_source = project"


class ProjectBench(Bench):
    """:class:`Bench` with on-demand jobs."""

    def load_project(self, job, Q, X, w):
        for addr, data in project_image(CFG, job, Q, X, w).items():
            self.write(addr, data)
        lo, hi = o_region(job)
        self.write(lo, bytes([0xA5]) * (hi - lo))

    async def run_project(self, job, Q, X, w, params, *, rass=True, idle=0.0, burst=1):
        self.load_project(job, Q, X, w)
        await self.program(job, params, rass=rass, irq=True)
        a0 = len(self.mon.ar)
        await self.launch()
        t0 = self.mon.tick
        await self.wait_done(budget(job, params, idle, burst))
        cycles = self.mon.tick - t0
        self.dut._log.info(f"project job S={job.seq_len} T={job.queries} H={job.heads} "
                           f"causal={job.causal} dense={params.dense} rass={rass}: "
                           f"{cycles} cycles")
        got = await self.counters()
        assert await self.rd(Reg.JOB_ERROR) == JobError.NONE
        assert await self.rd(Reg.STATUS) == 0, "STATUS: busy or error after the job"
        res, _ = golden_project_job(CFG, params, job, Q, X, w)
        self.check_outputs(job, res.out)
        want = project_counters(CFG, params, job, Q, X, w, rass=rass)
        for name, value in want.items():
            assert got[name] == value, f"counter {name}: {got[name]} != expected {value}"
        # the weights: each head's four tensors once, from their bases (ARID 2)
        ars = self.mon.ar[a0:]
        starts = {weight_address(job, wt, h) for wt in WEIGHTS for h in range(job.heads)}
        wreads = [a for _, ident, a, _ in ars if ident == 2]
        assert starts <= set(wreads) and len(wreads) >= len(starts)
        assert {ident for _, ident, _, _ in ars} <= {0, 1, 2}
        await self.quiet()
        return res, got, cycles


def budget(job, params, idle=0.0, burst=1):
    """Generous: every block's keys through prediction, every one of its lanes' keys
    projected, with pauses."""
    blocks = -(-job.queries // L) * job.heads
    per_row = 2 * CFG.d * CFG.d_model // CFG.proj_macs + 16
    slow = 1 + 4 * idle * burst
    return int(20_000 + 6 * slow * blocks * job.seq_len * (L * per_row + 20))


def case(rng, S, T, H, *, base=0, gap=0, shared_x=False, **kw):
    job = layout_project_job(CFG, JobDescriptor(seq_len=S, queries=T, heads=H, **kw),
                             base=base, gap=gap, shared_x=shared_x)
    Q, X, w, job = project_workload(CFG, rng, job)
    assert check_job(CFG, job) == JobError.NONE
    return job, Q, X, w


@cocotb.test()
async def test_project_sparse_and_dense(dut):
    """Two heads, T not a multiple of the lanes, S not a multiple of the tile; sparse
    (top_k 1 and k_max, a finite radius) and dense."""
    bench = ProjectBench(dut)
    await bench.start(seed=SEED, latency=4)
    rng = np.random.default_rng(SEED)
    S = 3 * BC + 2
    job, Q, X, w = case(rng, S, L + 1, 2, base=0x1000 - 3 * (CFG.axi_data_width // 8))
    for params in (params_for(S, top_k=1), params_for(S),
                   params_for(S, radius=DER.radius_inf // 8), params_for(S, dense=True)):
        await bench.run_project(job, Q, X, w, params)


@cocotb.test()
async def test_project_timing(dut):
    """Causal with q_start, rows further apart than a row, one X for every head; RASS on and
    off (the same O, fewer rows projected with RASS); pauses of increasing intensity on the
    five memory channels and the register port."""
    bench = ProjectBench(dut)
    await bench.start(seed=SEED + 1, latency=8)
    rng = np.random.default_rng(SEED + 1)
    S = 2 * BC + 3
    job, Q, X, w = case(rng, S, 2 * L + 1, 2, base=0x3000, gap=1, shared_x=True,
                        causal=True, q_start=BC - 2)
    rows = {}
    for n, (idle, burst, rass) in enumerate([(0.0, 1, True), (0.0, 1, False), (0.3, 1, True),
                                             (0.3, 6, False)]):
        bench.pauses(SEED + 10 * n, idle, burst)
        _, got, _ = await bench.run_project(job, Q, X, w, params_for(S, top_k=CFG.k_max),
                                            rass=rass, idle=idle, burst=burst)
        rows[rass] = got["rows_projected"]
    assert rows[True] <= rows[False]
