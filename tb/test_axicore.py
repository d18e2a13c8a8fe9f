"""The memory-attached core (hw/axicore.py) in the Amaranth simulator, against the golden job
model: a Python AXI4 memory (gen.rtlsim.axi.AxiSlaveModel: random latency, interleaved and
reordered read data, random READY/VALID gaps on every channel) with the protocol checker on
the port, and a register master on AXI4-Lite. Sparse and dense, causal and multi-head, with and
without RASS, strides longer than a row, S not a multiple of the tile, the descriptor checks,
and faults on every stream. The cocotb tests (tb/test_axicore_verilator.py) repeat the
important ones with cocotbext-axi's AxiRam on Verilator."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from gen.rtlsim.axi import CHANNELS, AxiProtocolChecker, AxiSlaveModel
from hw.axicore import SofaAxiCore
from sim.jobs import golden_job, layout_job, memory_image, read_outputs, traffic
from sim.workloads import structured
from spec.config import RunParams, preset
from spec.job import JobDescriptor, JobError, check_job
from spec.regmap import (COUNTER_BASE, Reg, counter_names, expected_counters, job_writes,
                         parameter_writes)

AXI_TINY = preset("tiny").replace(name="axi-tiny", memory="axi", q_lanes=2, max_seq_len=256,
                                  axi_data_width=64, axi_max_burst=8, axi_max_reads=4)
AXI_ODD = preset("tiny").replace(name="axi-odd", memory="axi", q_lanes=3, d=6, block_size=5,
                                 sort_width=5, k_max=3, dlzs_lanes=3, mac_lanes=2,
                                 max_seq_len=128, axi_data_width=64, axi_max_burst=4,
                                 axi_max_reads=2, k_tiles=2, skid_buffers=False)
CONFIGS = {"axi-tiny": AXI_TINY, "axi-odd": AXI_ODD}
MEM = 1 << 16
_DUTS = {}


def dut_for(cfg):
    if cfg.name not in _DUTS:
        _DUTS[cfg.name] = SofaAxiCore(cfg)
    return _DUTS[cfg.name]


def run_job(cfg, writes, *, image=(), seed=0, idle=0.0, latency=0, errors=(), reads=(),
            timeout=400_000):
    """Write the registers, start, wait for done; returns (memory model, register reads)."""
    dut = dut_for(cfg)
    model = AxiSlaveModel(data_width=cfg.axi_data_width, size=MEM, seed=seed, idle=idle,
                          latency=latency, errors=errors)
    for addr, data in image:
        model.mem[addr:addr + len(data)] = data
    checker = AxiProtocolChecker(data_width=cfg.axi_data_width, ids=range(4), incr_only=True)
    master = [n for ch in CHANNELS.values() for n in (ch[0], ch[1], *ch[2])]
    state = {"done": False}
    got = {}

    async def slave(ctx):
        while True:
            out = model.outputs()
            for k, v in out.items():
                ctx.set(getattr(dut, f"m_axi_{k}"), v)
            values = await ctx.tick().sample(*(getattr(dut, f"m_axi_{n}") for n in master))
            sig = dict(zip(master, (int(v) for v in values[2:])))
            checker.step(sig)
            model.clock(sig)

    async def lite_write(ctx, addr, value):
        ctx.set(dut.s_axil_awaddr, 4 * addr)
        ctx.set(dut.s_axil_wdata, value)
        ctx.set(dut.s_axil_wstrb, 0xF)
        ctx.set(dut.s_axil_awvalid, 1)
        ctx.set(dut.s_axil_wvalid, 1)
        ctx.set(dut.s_axil_bready, 1)
        aw = w = False
        while not (aw and w):
            _, _, awr, wr = await ctx.tick().sample(dut.s_axil_awready, dut.s_axil_wready)
            aw, w = aw or awr, w or wr
            if aw:
                ctx.set(dut.s_axil_awvalid, 0)
            if w:
                ctx.set(dut.s_axil_wvalid, 0)
        _, _, bvalid = await ctx.tick().sample(dut.s_axil_bvalid)
        while not bvalid:
            _, _, bvalid = await ctx.tick().sample(dut.s_axil_bvalid)

    async def lite_read(ctx, addr):
        ctx.set(dut.s_axil_araddr, 4 * addr)
        ctx.set(dut.s_axil_arvalid, 1)
        ctx.set(dut.s_axil_rready, 1)
        _, _, ready = await ctx.tick().sample(dut.s_axil_arready)
        while not ready:
            _, _, ready = await ctx.tick().sample(dut.s_axil_arready)
        ctx.set(dut.s_axil_arvalid, 0)
        _, _, valid, value = await ctx.tick().sample(dut.s_axil_rvalid, dut.s_axil_rdata)
        while not valid:
            _, _, valid, value = await ctx.tick().sample(dut.s_axil_rvalid, dut.s_axil_rdata)
        return int(value)

    async def host(ctx):
        for addr, value in writes:
            await lite_write(ctx, addr, value)
        await lite_write(ctx, Reg.STATUS, 0b11)
        await lite_write(ctx, Reg.CONTROL, 1)
        while not (await lite_read(ctx, Reg.JOB_STATUS)) & 1:
            for _ in range(20):
                await ctx.tick()
        got["irq"] = ctx.get(dut.irq)
        got["job_error"] = await lite_read(ctx, Reg.JOB_ERROR)
        got["status"] = await lite_read(ctx, Reg.STATUS)
        for a in reads:
            got[a] = await lite_read(ctx, a)
        for n, name in enumerate(counter_names(cfg)):
            got[name] = await lite_read(ctx, COUNTER_BASE + n)
        state["done"] = True

    async def watchdog(ctx):
        for _ in range(timeout):
            await ctx.tick()
            if state["done"]:
                return
        raise AssertionError(f"timeout after {timeout} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(slave, background=True)
    sim.add_testbench(host, background=True)
    sim.add_testbench(watchdog)
    sim.run()
    assert model.quiet and not any(checker.outstanding.values()), "the bus is busy after done"
    return model, got


def job_case(cfg, rng, *, H=2, T=3, S=20, causal=False, q_start=0, gap=0, base=256):
    parts = [structured(cfg, rng, T, S) for _ in range(H)]
    Q, K, V = (np.stack([p[i] for p in parts]) for i in range(3))
    job = layout_job(cfg, JobDescriptor(seq_len=S, queries=T, heads=H, causal=causal,
                                        q_start=q_start), base=base, gap=gap)
    assert check_job(cfg, job) == JobError.NONE
    return job, Q, K, V


def check_job_run(cfg, job, Q, K, V, *, dense=False, top_k=None, rass=True, seed=0, idle=0.0,
                  latency=0):
    params = RunParams(seq_len=job.seq_len, top_k=top_k or cfg.k_max,
                       radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
    writes = parameter_writes(cfg, params) + job_writes(cfg, job, rass=rass, irq=True)
    model, got = run_job(cfg, writes, image=memory_image(cfg, job, Q, K, V).items(), seed=seed,
                         idle=idle, latency=latency)
    assert got["job_error"] == JobError.NONE and got["irq"] == 1
    res = golden_job(cfg, params, job, Q, K, V)
    out = read_outputs(cfg, job, lambda a, n: bytes(model.mem[a:a + n]))
    assert np.array_equal(out, res.out), f"O differs:\n{out}\nexpected\n{res.out}"
    tr = traffic(cfg, params, job, res)
    calls = [n for _ in range(job.heads) for n in [min(cfg.q_lanes, job.queries - b)
                                                    for b in range(0, job.queries,
                                                                   cfg.q_lanes)]]
    want = expected_counters(cfg, params, res.stats, calls=calls,
                             lengths=res.lengths * job.heads, traffic=tr, rass=rass)
    for name, value in want.items():
        assert got[name] == value, f"counter {name}: {got[name]} != expected {value}"
    return res, got, tr


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("name", CONFIGS)
def test_job(name, dense):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(1)
    job, Q, K, V = job_case(cfg, rng, S=3 * cfg.block_size + 2)
    check_job_run(cfg, job, Q, K, V, dense=dense, top_k=1)


@pytest.mark.parametrize("name", CONFIGS)
def test_causal_strided_timing(name):
    """Causal with q_start, rows further apart than a row, random bus timing."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(2)
    job, Q, K, V = job_case(cfg, rng, H=2, T=5, S=2 * cfg.block_size + 3, causal=True,
                            q_start=cfg.block_size - 2, gap=1)
    check_job_run(cfg, job, Q, K, V, seed=3, idle=0.3, latency=6)


def test_rass_reads_fewer():
    cfg = AXI_TINY
    rng = np.random.default_rng(4)
    job, Q, K, V = job_case(cfg, rng, H=1, T=4, S=40)
    _, on, tr = check_job_run(cfg, job, Q, K, V, rass=True)
    _, off, _ = check_job_run(cfg, job, Q, K, V, rass=False)
    assert on["bytes_v"] == tr["v"] <= off["bytes_v"] == tr["v_no_rass"]
