"""The memory-attached core in the Amaranth simulator: test configs, a job with its data, and a
run against the Python AXI memory model with the protocol checker on the port and a register
master on AXI4-Lite (shared by tb/test_axicore.py and tb/test_axiperf.py)."""

import numpy as np

from gen.rtlsim.axi import CHANNELS, AxiProtocolChecker, AxiSlaveModel
from hw.axicore import SofaAxiCore
from sim.jobs import layout_job
from sim.workloads import structured
from spec.config import preset
from spec.job import JobDescriptor, JobError, check_job
from spec.regmap import Reg, counters
from tb.support.amsim import run_until

__all__ = ["PROJ_TINY", "PROJ_ODD", "PROJ_SMALL", "AXI_P_CONFIGS", "AXI_SMALL_P2", "AXI_ODD_P4", "axi_ids", "AXI_SMALL_C2", "AXI_ODD_C4", "AXI_TINY", "AXI_ODD", "AXI_SMALL", "CONFIGS", "dut_for", "run_job", "job_case"]

AXI_TINY = preset("tiny").replace(name="axi-tiny", memory="axi", q_lanes=2, max_seq_len=256,
                                  axi_data_width=64, axi_max_burst=8, axi_max_reads=4)
AXI_ODD = preset("tiny").replace(name="axi-odd", memory="axi", q_lanes=3, d=6, block_size=5,
                                 sort_width=5, k_max=3, dlzs_lanes=3, mac_lanes=2,
                                 max_seq_len=128, axi_data_width=64, axi_max_burst=4,
                                 axi_max_reads=2, k_tiles=2, skid_buffers=False)
#: The tiny compute with two lanes and a 64-bit bus, S up to 64k (the Verilator tests).
AXI_SMALL = preset("tiny").replace(name="axi-small", memory="axi", q_lanes=2,
                                   max_seq_len=65536, axi_data_width=64, axi_max_burst=8,
                                   axi_max_reads=4)
#: Several cores on one bus (tb/test_multicore.py, tb/test_axicore_verilator.py).
AXI_SMALL_C2 = AXI_SMALL.replace(name="axi-small-c2", cores=2)
AXI_ODD_C4 = AXI_ODD.replace(name="axi-odd-c4", cores=4)
CONFIGS = {"axi-tiny": AXI_TINY, "axi-odd": AXI_ODD}
#: ``predict_keys > 1`` (tb/test_axicore_predict.py): rows of 8 bytes on a 128-bit bus (two a
#: beat: a word of two rows is a beat, of four rows two beats), on a 256-bit bus (four a beat:
#: two words a beat), and the odd config's shape with rows of 4 bytes on a 64-bit bus.
AXI_P2 = AXI_TINY.replace(name="axi-p2", axi_data_width=128, predict_keys=2)
AXI_P4 = AXI_TINY.replace(name="axi-p4", axi_data_width=128, predict_keys=4)
AXI_P2_WIDE = AXI_TINY.replace(name="axi-p2-wide", axi_data_width=256, predict_keys=2)
AXI_P2_ODD = AXI_ODD.replace(name="axi-p2-odd", d=4, block_size=6, sort_width=6,
                             dlzs_lanes=2, predict_keys=2)
AXI_P_CONFIGS = {c.name: c for c in (AXI_P2, AXI_P4, AXI_P2_WIDE, AXI_P2_ODD)}
#: The Verilator tests of predict_keys (tb/test_axicore_verilator.py): the small config on a
#: 256-bit bus (four rows a beat, two words of two rows each), and the odd config's shape with
#: four keys a cycle from rows of 4 bytes on a 64-bit bus (a word is two beats).
AXI_SMALL_P2 = AXI_SMALL.replace(name="axi-small-p2", axi_data_width=256, predict_keys=2)
AXI_ODD_P4 = AXI_ODD.replace(name="axi-odd-p4", d=4, block_size=8, sort_width=6, dlzs_lanes=2,
                             predict_keys=4)
#: On-demand K/V (kv_source = "project"): the tiny and the small compute with d_model = 24
#: (three beats an X row, 4 multipliers) and the odd config's shape with d_model = 16 (two
#: beats, 2 multipliers, a code word of three beats).
PROJ_TINY = AXI_TINY.replace(name="axi-tiny-project", kv_source="project", d_model=24,
                             khat_lanes=4, proj_macs=4)
PROJ_ODD = AXI_ODD.replace(name="axi-odd-project", kv_source="project", d_model=16,
                           khat_lanes=8, proj_macs=2)
PROJ_SMALL = AXI_SMALL.replace(name="axi-small-project", kv_source="project", d_model=24,
                               khat_lanes=4, proj_macs=4)
MEM = 1 << 16
_DUTS = {}


def dut_for(cfg):
    if cfg.name not in _DUTS:
        _DUTS[cfg.name] = SofaAxiCore(cfg)
    return _DUTS[cfg.name]


def axi_ids(cfg):
    """The IDs the core may use: streams 0 … 3, the core's index above them."""
    shift = cfg.axi_id_width - (cfg.cores - 1).bit_length()
    return [(c << shift) | s for c in range(cfg.cores) for s in range(4)]


def run_job(cfg, writes, *, image=(), seed=0, idle=0.0, latency=0, fixed=False, errors=(),
            reads=(), timeout=400_000):
    """Write the registers, start, wait for done; returns (memory model, register reads)."""
    dut = dut_for(cfg)
    model = AxiSlaveModel(data_width=cfg.axi_data_width, size=MEM, seed=seed, idle=idle,
                          latency=latency, min_latency=latency if fixed else 0,
                          errors=errors)
    for addr, data in image:
        model.mem[addr:addr + len(data)] = data
    checker = AxiProtocolChecker(data_width=cfg.axi_data_width, ids=axi_ids(cfg),
                                 incr_only=True)
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
        for c in counters(cfg):
            got[c.name] = await lite_read(ctx, c.address)
        state["done"] = True

    run_until(dut, [slave, host], lambda: state["done"], timeout=timeout)
    assert model.quiet and not any(checker.outstanding.values()), "the bus is busy after done"
    return model, got


def job_case(cfg, rng, *, H=2, T=3, S=20, causal=False, q_start=0, gap=0, base=256):
    parts = [structured(cfg, rng, T, S) for _ in range(H)]
    Q, K, V = (np.stack([p[i] for p in parts]) for i in range(3))
    job = layout_job(cfg, JobDescriptor(seq_len=S, queries=T, heads=H, causal=causal,
                                        q_start=q_start), base=base, gap=gap)
    assert check_job(cfg, job) == JobError.NONE
    return job, Q, K, V
