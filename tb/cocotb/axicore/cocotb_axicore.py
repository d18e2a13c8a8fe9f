"""The memory-attached core (``sofa_top`` of a ``memory = "axi"`` config, hw/axicore.py) on
Verilator: cocotbext-axi's AxiRam as the memory (random read latency, random pauses on all five
channels; :func:`gen.rtlsim.axi.axi_ram`), or :class:`gen.rtlsim.axi.AxiSlaveModel` where DECERR
is needed, and cocotbext-axi's AxiLiteMaster on the registers. The protocol checker watches the
AXI4 master port in every test (a subclass that also records the handshakes: the V read order,
the responses, the bus activity after a fault). The bench is :mod:`tb.support.axicorebench`.

Every job's ``O`` is compared bit-exact with :func:`sim.jobs.golden_job` (and the bytes around
the rows, the write strobes, stay untouched), every exact counter with
:func:`sim.jobs.job_counters` (per core with several cores, summed), and in sparse
mode the AR addresses of ID 2 (V) with :func:`sim.jobs.fetch_schedule`.

Environment: ``SOFA_SEED``; ``SOFA_SMALL=1`` for a large config (the ``axi`` preset): shorter
sequences; ``SOFA_LONG_S`` / ``SOFA_LONG_T`` the shape of :func:`test_long`;
``SOFA_STRESS_ROUNDS`` of :func:`test_stress`.
"""

import os
import random

import cocotb
import numpy as np

from gen.rtlsim.axi import DECERR, SLVERR, AxiSlaveModel
from sim.jobs import fetch_schedule, golden_job, job_counters
from spec.job import JobError, check_job, k_packed, out_row_bytes, row_beats, row_bytes
from spec.regmap import Reg, job_writes, parameter_writes, register
from tb.support.axicorebench import (BC, BUS, CFG, DER, L, MEM, SEED, Bench, cycle_budget,
                                     data_for, layout, new_job, o_region, params_for, sizes,
                                     split_bursts)


# ---- tests -----------------------------------------------------------------------------------

@cocotb.test()
async def test_sparse_and_dense(dut):
    """Two heads, T not a multiple of the lanes (the last block is short), S not a multiple of
    the tile; sparse (top_k 1 and k_max, a finite radius) and dense; V reads = fetch_schedule."""
    bench = Bench(dut)
    await bench.start(seed=SEED, latency=4)
    rng = np.random.default_rng(SEED)
    S = sizes(3 * BC + 2, 2 * BC + 3)
    job = layout(new_job(S, L + 1, 2), base=0x1000 - 3 * BUS)
    Q, K, V = data_for(rng, job)
    for params in (params_for(S, top_k=1), params_for(S), params_for(S, radius=DER.radius_inf // 8),
                   params_for(S, dense=True)):
        await bench.run_job(job, Q, K, V, params)


@cocotb.test()
async def test_causal_multihead_strided(dut):
    """Causal with q_start (queries see different numbers of keys, tiles past a query are
    skipped), three heads, rows further apart than a row, heads further apart than their rows,
    tensors apart; sparse and dense; with pauses."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 1, idle=0.2, latency=6)
    rng = np.random.default_rng(SEED + 1)
    S = sizes(3 * BC + 3, 2 * BC + 1)
    T = 2 * L + 1
    job = layout(new_job(S, T, 3, causal=True, q_start=BC - 2), base=0x3000 - 5 * BUS,
                 gap=1, head_gap=3, tensor_gap=7)
    assert check_job(CFG, job) == JobError.NONE
    Q, K, V = data_for(rng, job)
    for params in (params_for(S), params_for(S, dense=True)):
        await bench.run_job(job, Q, K, V, params, idle=0.2)
    # prefill: every query sees its own prefix
    job = layout(new_job(S, S, 1, causal=True), base=0x20000, gap=2)
    Q, K, V = data_for(rng, job)
    await bench.run_job(job, Q, K, V, params_for(S), idle=0.2)


@cocotb.test()
async def test_rass(dut):
    """RASS on and off on the same job: the same O; bytes_v is traffic's v (on) and v_no_rass
    (off), v <= v_no_rass; the V reads follow fetch_schedule either way."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 2, idle=0.1, latency=3)
    rng = np.random.default_rng(SEED + 2)
    S = sizes(5 * BC, 3 * BC - 1)
    job = layout(new_job(S, 2 * L, 2), base=0x8000, gap=1)
    Q, K, V = data_for(rng, job)
    params = params_for(S)
    res, on = await bench.run_job(job, Q, K, V, params, rass=True)
    _, off = await bench.run_job(job, Q, K, V, params, rass=False)
    with_rass = job_counters(CFG, params, job, Q, K, V, rass=True, wrap=False)[0]["bytes_v"]
    without = job_counters(CFG, params, job, Q, K, V, rass=False, wrap=False)[0]["bytes_v"]
    assert on["bytes_v"] == with_rass <= off["bytes_v"] == without, (on, off)
    if L > 1:
        assert with_rass < without, "the case shares no V row between lanes"


@cocotb.test()
async def test_back_to_back(dut):
    """Jobs of different shapes one after the other without a reset (done cleared by the
    start, counters cleared in between), with and without irq (polled)."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 3, latency=2)
    rng = np.random.default_rng(SEED + 3)
    shapes = [(BC + 1, 1, 1, False, 0, True), (2 * BC, L, 2, True, 1, False),
              (sizes(4 * BC - 1, 2 * BC + 5), L + 1, 1, False, 0, True),
              (1, 1, 1, False, 0, False), (BC, 2 * L, 2, True, BC // 2, True)]
    base = 0x400
    for n, (S, T, H, causal, q0, dense) in enumerate(shapes):
        job = layout(new_job(S, T, H, causal=causal, q_start=q0), base=base, gap=n % 2)
        base = o_region(job)[1] // BUS * BUS + BUS
        Q, K, V = data_for(rng, job)
        await bench.run_job(job, Q, K, V, params_for(S, dense=dense), irq=n % 2 == 0)


@cocotb.test()
async def test_timing_intensities(dut):
    """The same job under no pauses, light, heavy and bursty pauses on the five memory
    channels and the register port, with random read latency: same O, same counters."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 4, latency=8)
    rng = np.random.default_rng(SEED + 4)
    S = sizes(3 * BC + 5, 2 * BC + 1)
    job = layout(new_job(S, L + 1, 2, causal=True, q_start=2), base=0x1F00, gap=1)
    Q, K, V = data_for(rng, job)
    cycles = []
    for n, (idle, burst) in enumerate([(0.0, 1), (0.2, 1), (0.5, 1), (0.3, 6)]):
        bench.pauses(SEED + 10 * n, idle, burst)
        t0 = bench.mon.tick
        await bench.run_job(job, Q, K, V, params_for(S, dense=n == 3), idle=idle, burst=burst)
        cycles.append(bench.mon.tick - t0)
    dut._log.info(f"cycles per intensity: {cycles}")


@cocotb.test()
async def test_stress(dut):
    """Long pauses everywhere (idle 0.5 in bursts up to 8, read latency up to 20), random
    shapes; ``SOFA_STRESS_ROUNDS`` rounds."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 5, idle=0.5, burst=8, latency=20, lite_idle=0.5)
    rng = np.random.default_rng(SEED + 5)
    pick = random.Random(SEED + 5)
    for n in range(int(os.environ.get("SOFA_STRESS_ROUNDS", "1"))):
        S = pick.randint(1, sizes(4 * BC, 2 * BC))
        T, H = pick.randint(1, 2 * L + 1), pick.randint(1, 2)
        causal = pick.random() < 0.5
        job = layout(new_job(S, T, H, causal=causal, q_start=pick.randint(0, S)),
                     base=pick.randrange(0, 0x10000, BUS), gap=pick.randint(0, 2),
                     head_gap=pick.randint(0, 3))
        Q, K, V = data_for(rng, job)
        params = params_for(S, dense=pick.random() < 0.3, top_k=pick.randint(1, CFG.k_max))
        await bench.run_job(job, Q, K, V, params, rass=pick.random() < 0.7,
                            idle=0.5, burst=8)


def descriptor_errors():
    """``(what, job)`` for every start-time JobError code (each job fails only that check)."""
    S = 2 * BC + 1
    good = layout(new_job(S, L + 1, 2), base=0x2000)
    assert check_job(CFG, good) == JobError.NONE
    top = 1 << CFG.axi_addr_width
    cases = [("S = 0", good.replace(seq_len=0)),
             ("queries = 0", good.replace(queries=0)),
             ("heads = 0", good.replace(heads=0)),
             ("Q base misaligned", good.replace(q_base=good.q_base + BUS // 2)),
             ("V stride misaligned", good.replace(v_stride=good.v_stride + BUS // 2)),
             ("O head stride misaligned",
              good.replace(o_head_stride=good.o_head_stride + BUS // 2)),
             ("K stride shorter than a row",
              good.replace(k_stride=(row_beats(CFG) - 1) * BUS)),
             ("O stride shorter than a row",
              good.replace(o_stride=(row_beats(CFG, out=True) - 1) * BUS)),
             ("O range past the top", good.replace(o_base=top - BUS)),
             ("K heads past the top", good.replace(k_head_stride=(top - BUS) // BUS * BUS)),
             ("V rows past the top", good.replace(v_stride=top // 2))]
    if k_packed(CFG) and row_beats(CFG) * BUS != row_bytes(CFG):
        cases.insert(7, ("K stride padded to the bus, not packed",
                         good.replace(k_stride=row_beats(CFG) * BUS)))
    s_max = CFG.max_seq_len + 1
    if s_max <= register("seq_len").legal(CFG)[1]:
        cases.insert(1, ("S > max_seq_len", good.replace(seq_len=s_max)))
    return good, cases


@cocotb.test()
async def test_descriptor_errors(dut):
    """Each check of the start: JOB_ERROR is check_job's code, done (and irq) rise, not a
    single bus access; afterwards a good job runs."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 6, latency=2)
    good, cases = descriptor_errors()
    seen = set()
    for what, job in cases:
        code = check_job(CFG, job)
        assert code not in (JobError.NONE,), what
        seen.add(code)
        params = params_for(good.seq_len)
        for addr, value in parameter_writes(CFG, params) + job_writes(CFG, job, irq=True):
            await bench.wr(addr, value)
        await bench.launch()
        await bench.wait_done(2000)
        got = await bench.rd(Reg.JOB_ERROR)
        assert got == code, f"{what}: JOB_ERROR {got}, expected {code.name} ({int(code)})"
        assert int(dut.irq.value) == 1, what
        assert not bench.mon.ar_new and not bench.mon.aw_new and bench.mon.last_valid < 0, \
            f"{what}: the bus was used"
        got = await bench.counters()
        assert all(got[n] == 0 for n in ("bytes_q", "bytes_k", "bytes_v", "bytes_o")), got
    assert seen == {JobError.SEQ_LEN, JobError.QUERIES, JobError.HEADS, JobError.ALIGN,
                    JobError.STRIDE, JobError.RANGE}, seen
    rng = np.random.default_rng(SEED + 6)
    Q, K, V = data_for(rng, good)
    await bench.run_job(good, Q, K, V, params_for(good.seq_len))


# -- faults --

def fault_cases(job, res, params):
    """``(stream, code, (start, stop))``: a byte range of one Q row, one K row, one V row the
    job fetches and one O row, each in the middle of the job."""
    h, t = job.heads - 1, job.queries // 2
    j = job.seq_len // 2
    sched = fetch_schedule(CFG, job, res) if not params.dense else [(h, j)]
    vh, vj = sched[len(sched) // 2]

    def rng_of(tensor, head, row, nbytes):
        a = job.address(tensor, head, row)
        return a, a + nbytes
    return [("Q", JobError.READ_Q, rng_of("q", h, t, row_bytes(CFG))),
            ("K", JobError.READ_K, rng_of("k", 0, j, row_bytes(CFG))),
            ("V", JobError.READ_V, rng_of("v", vh, vj, row_bytes(CFG))),
            ("O", JobError.WRITE_O, rng_of("o", 0, job.queries - 1, out_row_bytes(CFG)))]


async def fault_run(bench, job, Q, K, V, params, stream, code, bad, irq):
    """Start a job that meets an error response on the byte range ``bad``; check the code,
    done/irq, the rows written, the bus after the fault."""
    mon = bench.mon
    bench.load(job, Q, K, V)
    await bench.program(job, params, irq=irq)
    a0 = len(mon.aw)
    await bench.launch()
    await bench.wait_done(cycle_budget(job, params), irq=irq)
    assert int(bench.dut.irq.value) == int(irq)
    got = await bench.rd(Reg.JOB_ERROR)
    assert got == code, f"{stream} fault: JOB_ERROR {got}, expected {code.name} ({int(code)})"
    assert mon.bad, f"{stream} fault: no error response seen"
    first = mon.bad[0][0]
    # rows whose AW went out before the fault may be written, nothing after
    late = [t for t in mon.aw_new if t > first + FAULT_SLACK]
    assert not late, f"{stream} fault at cycle {first}: new AW at cycles {late}"
    late = [t for t in mon.ar_new if t > first + FAULT_SLACK]
    assert not late, f"{stream} fault at cycle {first}: new AR at cycles {late}"
    # the rows whose bursts all went out; the rows after them in job order must be untouched
    issued = {a for _, _, a, _ in mon.aw[a0:]}
    order = [(h, t) for h in range(job.heads) for t in range(job.queries)]
    started = [(h, t) for h, t in order if job.address("o", h, t) in issued]
    assert started == order[:len(started)], f"{stream} fault: the rows started are not a prefix"
    for h, t in started:
        a = job.address("o", h, t)
        parts = split_bursts(a, row_beats(CFG, out=True) * BUS)
        assert set(parts) <= issued, f"{stream} fault: O row ({h}, {t}) only partly written"
    written = {(h, t) for h, t in started
               if not bad[0] < job.address("o", h, t) + out_row_bytes(CFG)
               or not job.address("o", h, t) < bad[1]}
    res = golden_job(CFG, params, job, Q, K, V)
    bench.check_outputs(job, res.out, written=written)
    await bench.quiet()
    n = len(started)
    bench.dut._log.info(f"{stream} fault ({code.name}): AW issued {n} of {len(order)} rows, "
                        f"last new AW {max(mon.aw_new, default=-1) - first:+d} cycles from "
                        f"the fault, last new AR {max(mon.ar_new, default=-1) - first:+d}")
    return first


#: Cycles from the faulting handshake within which a command the core had already decided on
#: may still be presented on AR/AW (the R/B input register, the sticky fault, the job FSM
#: entering STOP, the AR/AW output registers).
FAULT_SLACK = 6


async def fault_test(dut, kind, stream):
    """One job meeting SLVERR (AxiRam error range) or DECERR (AxiSlaveModel: reordered,
    interleaved read data) on one row of ``stream``; then a job elsewhere runs right."""
    rng = np.random.default_rng(SEED + 7)
    S = 3 * BC + 1
    job = layout(new_job(S, 2 * L + 1, 2), base=0x4000, gap=1)
    Q, K, V = data_for(rng, job)
    params = params_for(S)
    res = golden_job(CFG, params, job, Q, K, V)
    after = layout(new_job(S, L + 1, 1), base=0x80000)      # clear of the error range
    Q2, K2, V2 = data_for(rng, after)
    n = "QKVO".index(stream)
    _, code, bad = fault_cases(job, res, params)[n]
    bench = Bench(dut)
    if kind == "slverr":
        await bench.start(seed=SEED + 20 + n, idle=0.2, latency=5, errors=[bad])
    else:
        model = AxiSlaveModel(data_width=CFG.axi_data_width, size=MEM, seed=SEED + n,
                              idle=0.2, latency=8, errors=[(*bad, DECERR)])
        await bench.start(seed=SEED + 20 + n, model=model)
    await fault_run(bench, job, Q, K, V, params, stream, code, bad, irq=n % 2 == 0)
    resp = {r for _, _, _, r in bench.mon.bad}
    assert resp == {SLVERR if kind == "slverr" else DECERR}, resp
    await bench.run_job(after, Q2, K2, V2, params_for(after.seq_len))


def _fault(kind, stream):
    name = f"test_fault_{kind}_{stream}"

    async def run(dut):
        await fault_test(dut, kind, stream)
    run.__doc__ = (f"{kind.upper()} on a {stream} {'write' if stream == 'O' else 'read'}: "
                   f"JOB_ERROR names the stream, done (irq when enabled), no O row after the "
                   f"fault, the bus quiet, the next job right.")
    run.__name__ = run.__qualname__ = name
    return name, cocotb.test(name=name)(run)


for _kind in ("slverr", "decerr"):
    for _stream in "QKVO":
        _name, _test = _fault(_kind, _stream)
        globals()[_name] = _test


@cocotb.test()
async def test_write_while_busy(dut):
    """While a job runs: JOB_STATUS running, STATUS busy; writes of a parameter, a descriptor
    register and CONTROL are refused (error flag, ERROR_ADDR, value unchanged); STATUS bit 1
    clears the flag; the job is unaffected."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 8, latency=4)
    rng = np.random.default_rng(SEED + 8)
    S = sizes(4 * BC, 3 * BC)
    job = layout(new_job(S, L + 1, 2), base=0x600, gap=1)
    Q, K, V = data_for(rng, job)
    params = params_for(S)

    async def during(b):
        assert await b.rd(Reg.JOB_STATUS) == 0b10, "JOB_STATUS not running"
        assert await b.rd(Reg.STATUS) == 0b01, "STATUS not busy"
        for name, value in (("seq_len", S - 1), ("q_base", job.q_base + BUS), ("top_k", 1),
                            ("rass", 0), ("control", 1)):
            reg = register(name)
            before = await b.rd(reg.address)
            await b.wr(reg.address, value)
            assert await b.rd(Reg.STATUS) == 0b11, f"{name}: no error flag"
            assert await b.rd(Reg.ERROR_ADDR) == reg.address, name
            assert await b.rd(reg.address) == before, f"{name} changed while busy"
            await b.wr(Reg.STATUS, 0b10)
            assert await b.rd(Reg.STATUS) == 0b01, f"{name}: error flag not cleared"

    await bench.run_job(job, Q, K, V, params, during=during)


@cocotb.test()
async def test_long(dut):
    """One long sequence: ``SOFA_LONG_S`` keys (default 4 × block_size), ``SOFA_LONG_T``
    queries (default q_lanes), sparse, random read latency and light pauses."""
    S = int(os.environ.get("SOFA_LONG_S", str(4 * BC)))
    T = int(os.environ.get("SOFA_LONG_T", str(L)))
    bench = Bench(dut)
    await bench.start(seed=SEED + 9, idle=0.1, latency=4)
    rng = np.random.default_rng(SEED + 9)
    job = layout(new_job(S, T, 1), base=0x1000)
    assert o_region(job)[1] <= MEM
    Q, K, V = data_for(rng, job)
    await bench.run_job(job, Q, K, V, params_for(S), idle=0.1)
