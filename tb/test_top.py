"""SofaCore in the Amaranth simulator against :func:`sim.golden.sofa_attention`.

Small configs only (the Verilator testbench ``tb/cocotb/top`` runs the presets and long
sequences): sparse and dense mode, S not a multiple of Bc, the register port (values, range
checks, writes while busy, counter clear) and every counter against the golden model.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from spec.config import ConfigError, RunParams, preset
from hw.top import SofaCore
from spec.regmap import COUNTER_BASE, Reg, counter_names, expected_counters, parameter_writes
from sim.golden import sofa_attention
from sim.perf import core_cycles
from tb.streams import TRAFFIC, stream_get
from tb.support.stimulus import peaked_case

TINY = preset("tiny")
ODD = TINY.replace(name="odd", d=6, block_size=5, sort_width=5, k_max=3, max_seq_len=40,
                   dlzs_lanes=3, mac_lanes=2, skid_buffers=False)
CONFIGS = {"tiny": TINY, "odd": ODD}
_DUTS = {}


def dut_for(cfg, iterative=False):
    key = (cfg.name, iterative)
    if key not in _DUTS:
        _DUTS[key] = SofaCore(cfg, iterative_divider=iterative)
    return _DUTS[key]


async def write_reg(ctx, dut, addr, value):
    """A register write: one cycle with the write enable."""
    ctx.set(dut.reg_addr, addr)
    ctx.set(dut.reg_wdata, value)
    ctx.set(dut.reg_we, 1)
    await ctx.tick()
    ctx.set(dut.reg_we, 0)


async def read_reg(ctx, dut, addr):
    """A register read: the address, then the data one cycle later."""
    ctx.set(dut.reg_addr, addr)
    await ctx.tick()
    return ctx.get(dut.reg_rdata)


def run_core(cfg, Q, K, V, params, traffic=None, seed=0, timeout=300_000, iterative=False):
    """Load K/V, write the registers, stream Q; returns (O beats, counters, busy-free)."""
    dut = dut_for(cfg, iterative)
    T = Q.shape[0]
    got, regs = [], {}
    rng_q, rng_o = random.Random(seed), random.Random(seed + 1)

    async def write(ctx, addr, value):
        await write_reg(ctx, dut, addr, value)

    async def read(ctx, addr):
        return await read_reg(ctx, dut, addr)

    async def host(ctx):
        for j in range(params.seq_len):
            ctx.set(dut.kv_load.valid, 1)
            ctx.set(dut.kv_load.payload, {"index": j, "k": [int(x) for x in K[j]],
                                          "v": [int(x) for x in V[j]]})
            await ctx.tick()
        ctx.set(dut.kv_load.valid, 0)
        for reg, value in parameter_writes(cfg, params):
            await write(ctx, reg, value)
            assert await read(ctx, reg) == value
        await write(ctx, Reg.STATUS, 0b11)      # clear counters and the error flag
        assert await read(ctx, Reg.STATUS) == 0
        for i in range(T):
            if traffic is not None:
                for _ in range(traffic.gaps(rng_q, traffic.idle)):
                    ctx.set(dut.q.valid, 0)
                    await ctx.tick()
            ctx.set(dut.q.valid, 1)
            ctx.set(dut.q.payload, {"data": [int(x) for x in Q[i]], "last": int(i == T - 1)})
            await ctx.tick().until(dut.q.ready)
            if i == 0:
                ctx.set(dut.q.valid, 0)
                await write(ctx, Reg.TOP_K, 1)  # while busy: rejected
                regs["error_while_busy"] = await read(ctx, Reg.STATUS)
                regs["error_addr"] = await read(ctx, Reg.ERROR_ADDR)
        ctx.set(dut.q.valid, 0)

    async def sink(ctx):
        beats = await stream_get(ctx, dut.o, T * cfg.d, rng=rng_o, traffic=traffic)
        got.extend(int(p.value) for p in beats)
        for _ in range(4):
            await ctx.tick()
        regs["busy_after"] = ctx.get(dut.busy)
        for n, name in enumerate(counter_names()):
            regs[name] = await read(ctx, COUNTER_BASE + n)

    async def watchdog(ctx):
        for _ in range(timeout):
            await ctx.tick()
        raise AssertionError(f"timeout after {timeout} cycles: {len(got)} outputs")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host, background=True)
    sim.add_testbench(sink)
    sim.add_testbench(watchdog, background=True)
    sim.run()
    return np.array(got).reshape(T, cfg.d), regs


def check(cfg, Q, K, V, params, traffic=None, seed=0, iterative=False):
    res = sofa_attention(Q, K, V, cfg, params)
    out, regs = run_core(cfg, Q, K, V, params, traffic, seed, iterative=iterative)
    assert np.array_equal(out, res.out), f"O differs:\n{out}\nexpected\n{res.out}"
    want = expected_counters(cfg, params, res.counters(), calls=[len(Q)])
    for name, value in want.items():
        assert regs[name] == value, f"counter {name}: {regs[name]} != expected {value}"
    assert regs["busy_after"] == 0
    assert regs["error_while_busy"] & 2 and regs["error_addr"] == Reg.TOP_K
    return res, regs


@pytest.mark.parametrize("traffic", [TRAFFIC[0], TRAFFIC[3]], ids=repr)
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_core(name, mode, traffic):
    cfg = CONFIGS[name]
    S = cfg.block_size * 3 + 2                  # a short last tile
    Q, K, V = peaked_case(cfg, 5, S=S)
    params = RunParams(seq_len=S, top_k=cfg.k_max - 1 if cfg.k_max > 1 else 1,
                       radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3),
                       dense=mode == "dense")
    check(cfg, Q, K, V, params, traffic, seed=3)


@pytest.mark.parametrize("width", [8, 0])
def test_counter_width(width):
    """Narrow counters wrap (the golden totals modulo 2^8); with none, they read 0."""
    cfg = CONFIGS["tiny"].replace(counter_width=width, name=f"tiny-cw{width}")
    S = cfg.max_seq_len
    Q, K, V = peaked_case(cfg, 6, T=5, S=S)
    params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3))
    res, regs = check(cfg, Q, K, V, params)
    if width:
        assert 5 * S > 1 << width, "k_rows_predict does not wrap"
    else:
        assert not any(regs[name] for name in counter_names())


def test_core_radius_and_cycle_model():
    """Sphere clipping on; the cycle model predicts the run within 5 %."""
    cfg = TINY
    Q, K, V = peaked_case(cfg, 9, T=4, S=cfg.max_seq_len)
    for dense in (False, True):
        params = RunParams(seq_len=cfg.max_seq_len, top_k=cfg.k_max, radius=2000,
                           scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
        res, regs = check(cfg, Q, K, V, params)
        if not dense:
            assert regs["blocked_radius"] > 0
        model = core_cycles(cfg, params, res, Q, K, V)
        assert abs(model - regs["busy_cycles"]) <= 0.05 * regs["busy_cycles"], \
            (model, regs["busy_cycles"])


@pytest.mark.parametrize("S", [16, 64])
def test_iterative_divider_cycle_model(S):
    """The iterative divider of the board builds (``out_width + 2`` cycles an element): exact
    output, and the cycle model within 5 %, also where the divide is the bottleneck (S = 16)."""
    cfg = TINY
    Q, K, V = peaked_case(cfg, 11, T=4, S=S)
    for dense in (False, True):
        params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                           scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
        res, regs = check(cfg, Q, K, V, params, iterative=True)
        model = core_cycles(cfg, params, res, Q, K, V, iterative_divider=True)
        assert abs(model - regs["busy_cycles"]) <= 0.05 * regs["busy_cycles"], \
            (dense, model, regs["busy_cycles"])


def test_register_range_checks():
    """Out-of-range writes are rejected (the error flag and address say which), never clamped."""
    cfg = TINY
    dut = dut_for(cfg)
    log = []

    async def bench(ctx):
        async def write(addr, value):
            await write_reg(ctx, dut, addr, value)
            v = await read_reg(ctx, dut, addr)
            st = await read_reg(ctx, dut, Reg.STATUS)
            log.append((addr, value, v, st, await read_reg(ctx, dut, Reg.ERROR_ADDR)))
            await write_clear()

        async def write_clear():
            ctx.set(dut.reg_addr, Reg.STATUS)
            ctx.set(dut.reg_wdata, 2)
            ctx.set(dut.reg_we, 1)
            await ctx.tick()
            ctx.set(dut.reg_we, 0)

        await write(Reg.SEQ_LEN, 0)
        await write(Reg.SEQ_LEN, cfg.max_seq_len + 1)
        await write(Reg.SEQ_LEN, 17)
        await write(Reg.TOP_K, cfg.k_max + 1)
        await write(Reg.TOP_K, 0)
        await write(Reg.RADIUS, cfg.derived.radius_inf + 1)
        await write(Reg.SCALE, 1 << cfg.c_bits)
        await write(Reg.DENSE, 2)
        await write(COUNTER_BASE, 5)             # counters are read-only

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    by = [(a, v, rd, st & 2, ea) for a, v, rd, st, ea in log]
    assert by[0] == (Reg.SEQ_LEN, 0, cfg.max_seq_len, 2, Reg.SEQ_LEN)
    assert by[1] == (Reg.SEQ_LEN, cfg.max_seq_len + 1, cfg.max_seq_len, 2, Reg.SEQ_LEN)
    assert by[2][2:4] == (17, 0)
    assert by[3][2:4] == (cfg.k_max, 2) and by[4][2:4] == (cfg.k_max, 2)
    assert by[5][2:4] == (cfg.derived.radius_inf, 2)
    assert by[6][3] == 2 and by[7][3] == 2
    assert by[8][3] == 2 and by[8][4] == COUNTER_BASE


def test_kv_index_range():
    """A K/V row beyond max_seq_len (40 in a 6-bit index) is not written and flags an error."""
    cfg = ODD
    dut = dut_for(cfg)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.kv_load.valid, 1)
        ctx.set(dut.kv_load.payload, {"index": 45, "k": [1] * cfg.d, "v": [2] * cfg.d})
        await ctx.tick()
        ctx.set(dut.kv_load.valid, 0)
        seen["status"] = await read_reg(ctx, dut, Reg.STATUS)
        seen["addr"] = await read_reg(ctx, dut, Reg.ERROR_ADDR)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"status": 2, "addr": 45}


#: data_width 16: the radius needs 36 bits, more than the 32-bit register port.
WIDE = TINY.replace(name="wide16", data_width=16)


def test_wide_radius():
    """A radius wider than the port (RADIUS_HI + RADIUS): a finite radius above 2^32 clips
    bit-exactly, and "no clipping" (radius_inf) can be written back afterwards."""
    cfg = WIDE
    assert cfg.derived.radius_width > 32
    rng = np.random.default_rng(21)
    S = cfg.max_seq_len
    # Q at full scale; keys of either extreme sign: Â of about ±2^32, far apart.
    Q = (1 << 15) - 1 - rng.integers(0, 64, size=(3, cfg.d))
    K = np.where(rng.random((S, 1)) < 0.5, (1 << 15) - 1, -(1 << 15)) \
        + rng.integers(0, 64, size=(S, cfg.d)) * np.array([[-1]])
    K = np.clip(K, -(1 << 15), (1 << 15) - 1)
    V = rng.integers(-(1 << 15), 1 << 15, size=(S, cfg.d))
    scale = RunParams.scale_from_float(cfg, 2e-9)
    finite = RunParams(seq_len=S, top_k=cfg.k_max, radius=(1 << 32) + (1 << 30),
                       scale_log2e=scale)
    assert len(parameter_writes(cfg, finite)) == 6             # RADIUS_HI, then RADIUS
    res, regs = check(cfg, Q, K, V, finite)
    assert regs["blocked_radius"] > 0
    check(cfg, Q, K, V, RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                                  scale_log2e=scale))


def test_kv_load_waits_while_busy():
    """kv_load is not ready while a query is in flight: a load offered during a query waits
    and does not change its output; the next query sees the new rows."""
    cfg = TINY
    dut = dut_for(cfg)
    rng = np.random.default_rng(5)
    S = cfg.max_seq_len
    Q = rng.integers(-128, 128, size=(1, cfg.d))
    K, V = (rng.integers(-128, 128, size=(S, cfg.d)) for _ in range(2))
    K2, V2 = (rng.integers(-128, 128, size=(S, cfg.d)) for _ in range(2))
    params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3))
    seen = {"refused": 0, "outs": []}

    def row(j, k, v):
        return {"index": j, "k": [int(x) for x in k[j]], "v": [int(x) for x in v[j]]}

    async def load(ctx, k, v):
        ctx.set(dut.kv_load.valid, 1)
        for j in range(S):
            ctx.set(dut.kv_load.payload, row(j, k, v))
            while True:
                _, _, ready = await ctx.tick().sample(dut.kv_load.ready)
                if ready:
                    break
                seen["refused"] += 1
        ctx.set(dut.kv_load.valid, 0)

    async def query(ctx):
        ctx.set(dut.q.valid, 1)
        ctx.set(dut.q.payload, {"data": [int(x) for x in Q[0]], "last": 1})
        await ctx.tick().until(dut.q.ready)
        ctx.set(dut.q.valid, 0)

    async def bench(ctx):
        await load(ctx, K, V)
        for reg, value in parameter_writes(cfg, params):
            ctx.set(dut.reg_addr, reg)
            ctx.set(dut.reg_wdata, value)
            ctx.set(dut.reg_we, 1)
            await ctx.tick()
        ctx.set(dut.reg_we, 0)
        await query(ctx)
        await load(ctx, K2, V2)            # offered while the query runs: waits
        await query(ctx)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(2 * cfg.d):
            payload, = await ctx.tick().sample(dut.o.payload).until(dut.o.valid)
            seen["outs"].append(int(payload.value))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench, background=True)
    sim.add_testbench(sink)
    sim.run()
    first = sofa_attention(Q, K, V, cfg, params).out
    second = sofa_attention(Q, K2, V2, cfg, params).out
    assert seen["refused"] > 0
    assert seen["outs"][:cfg.d] == list(first[0])
    assert seen["outs"][cfg.d:] == list(second[0])


LANES = {"tiny2": TINY.replace(name="tiny2", q_lanes=2),
         "odd3": ODD.replace(name="odd3", q_lanes=3)}


@pytest.mark.parametrize("traffic", [TRAFFIC[0], TRAFFIC[4]], ids=repr)
@pytest.mark.parametrize("name", LANES)
@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_query_lanes(name, mode, traffic):
    """Several query lanes share each K row read; 5 queries leave a partial last group;
    outputs stay in query order."""
    cfg = LANES[name]
    S = 2 * cfg.block_size + 3
    Q, K, V = peaked_case(cfg, 8, T=5, S=S)
    params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3),
                       dense=mode == "dense")
    check(cfg, Q, K, V, params, traffic, seed=6)


def test_query_lanes_cycle_model():
    """The cycle model with two lanes at S = max_seq_len (within 5 %)."""
    cfg = LANES["tiny2"]
    Q, K, V = peaked_case(cfg, 4, T=4, S=cfg.max_seq_len)
    for dense in (False, True):
        params = RunParams(seq_len=cfg.max_seq_len, top_k=cfg.k_max,
                           radius=cfg.derived.radius_inf,
                           scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
        res, regs = check(cfg, Q, K, V, params)
        model = core_cycles(cfg, params, res, Q, K, V)
        assert abs(model - regs["busy_cycles"]) <= 0.05 * regs["busy_cycles"], \
            (dense, model, regs["busy_cycles"])


@pytest.mark.parametrize("name", CONFIGS)
def test_latency(name):
    """A one-key dense query (S = 1): first output ``latency`` cycles after the query."""
    cfg = CONFIGS[name]
    dut = dut_for(cfg)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.kv_load.valid, 1)
        ctx.set(dut.kv_load.payload, {"index": 0, "k": [3] * cfg.d, "v": [5] * cfg.d})
        await ctx.tick()
        ctx.set(dut.kv_load.valid, 0)
        for reg, value in ((Reg.SEQ_LEN, 1), (Reg.DENSE, 1)):
            ctx.set(dut.reg_addr, reg)
            ctx.set(dut.reg_wdata, value)
            ctx.set(dut.reg_we, 1)
            await ctx.tick()
        ctx.set(dut.reg_we, 0)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.q.valid, 1)
        ctx.set(dut.q.payload, {"data": [1] * cfg.d, "last": 1})
        await ctx.tick().until(dut.q.ready)
        ctx.set(dut.q.valid, 0)
        for cycle in range(1, 500):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            if valid:
                seen["latency"] = cycle
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["latency"] == dut.latency


ADAPT = {"tiny-adapt": TINY.replace(name="tiny-adapt", adapt_bins=4),
         "odd-adapt": ODD.replace(name="odd-adapt", adapt_bins=5),
         "odd3-adapt": ODD.replace(name="odd3-adapt", q_lanes=3, adapt_bins=5)}


@pytest.mark.parametrize("traffic", [TRAFFIC[0], TRAFFIC[3]], ids=repr)
@pytest.mark.parametrize("name", ADAPT)
@pytest.mark.parametrize("mass", [128, 40, 0])
def test_core_adaptive_budget(name, mass, traffic):
    """The adaptive budget (hw/adapt.py in front of SADS; three query lanes in odd3-adapt): O
    and every counter equal the golden model's; ``ADAPT_MASS = 0`` is the fixed budget."""
    cfg = ADAPT[name]
    S = cfg.block_size * 3 + 2
    Q, K, V = peaked_case(cfg, 11, T=4, S=S)
    c_sel, shift = {128: (1e-4, 13), 40: (2e-4, 12), 0: (1e-4, 13)}[mass]
    params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), adapt_mass=mass,
                       adapt_scale=RunParams.scale_from_float(cfg, c_sel), adapt_shift=shift)
    res, regs = check(cfg, Q, K, V, params, traffic, seed=5)
    fixed = sofa_attention(Q, K, V, cfg, RunParams(seq_len=S, top_k=cfg.k_max,
                                                   radius=cfg.derived.radius_inf,
                                                   scale_log2e=params.scale_log2e))
    assert (res.counters()["blocked_mass"] > 0) == (mass > 0)
    if mass:
        assert regs["keys"] < fixed.counters()["keys"]
    else:
        assert regs["keys"] == fixed.counters()["keys"]
    if traffic is TRAFFIC[0]:
        model = core_cycles(cfg, params, res, Q, K, V)
        assert abs(model - regs["busy_cycles"]) <= 0.05 * regs["busy_cycles"], \
            (model, regs["busy_cycles"])


@pytest.mark.parametrize("name", ADAPT)
def test_cycle_model_with_the_gate_at_max_seq_len(name):
    """The cycle model with the adaptive gate (a row in, counted, swept, replayed), at S =
    max_seq_len, within 5 %, at p = 128/256 and 0 (every key eligible: SADS bounds)."""
    cfg = ADAPT[name]
    S = cfg.max_seq_len
    Q, K, V = peaked_case(cfg, 12, T=4, S=S)
    for mass in (128, 0):
        params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                           scale_log2e=RunParams.scale_from_float(cfg, 2e-3), adapt_mass=mass,
                           adapt_scale=RunParams.scale_from_float(cfg, 1e-4), adapt_shift=13)
        res, regs = check(cfg, Q, K, V, params)
        model = core_cycles(cfg, params, res, Q, K, V)
        assert abs(model - regs["busy_cycles"]) <= 0.05 * regs["busy_cycles"], \
            (mass, model, regs["busy_cycles"])


def test_memory_core_refuses_the_adaptive_budget():
    from hw.top import sofa_top
    from spec.config import ConfigError
    with pytest.raises(ConfigError, match="adapt_bins = 8: the memory-attached core has no "
                                          "adaptive selection yet"):
        sofa_top(preset("axi").replace(adapt_bins=8))


#: predict_keys > 1: banked K, DLZS with several key slots, a SADSBank per lane.
MULTI = {"tiny-pk2": TINY.replace(name="tiny-pk2", predict_keys=2),
         "tiny-pk4": TINY.replace(name="tiny-pk4", predict_keys=4),
         # a tile a beat: eight SADS units
         "tiny-pk8": TINY.replace(name="tiny-pk8", predict_keys=8),
         "odd-pk2": ODD.replace(name="odd-pk2", block_size=6, max_seq_len=42, predict_keys=2),
         "odd3-pk2": ODD.replace(name="odd3-pk2", block_size=6, max_seq_len=42, q_lanes=3,
                                 predict_keys=2)}


@pytest.mark.parametrize("traffic", [TRAFFIC[3],
                                     pytest.param(TRAFFIC[0], marks=pytest.mark.slow),
                                     pytest.param(TRAFFIC[4], marks=pytest.mark.slow)], ids=repr)
@pytest.mark.parametrize("name", MULTI)
@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_predict_keys(name, mode, traffic):
    """Several keys predicted a cycle: O and every counter equal the golden model's with
    idle cycles and backpressure; S not a multiple of predict_keys nor of the tile, radius
    clipping on, a partial last group of lanes."""
    cfg = MULTI[name]
    S = cfg.block_size * 3 + 3
    Q, K, V = peaked_case(cfg, 7, T=4, S=S)
    params = RunParams(seq_len=S, top_k=cfg.k_max - 1 if cfg.k_max > 1 else 1, radius=1500,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3),
                       dense=mode == "dense")
    res, regs = check(cfg, Q, K, V, params, traffic, seed=4)
    if mode == "sparse":
        assert regs["blocked_radius"] > 0 and regs["k_rows_predict"] > 0


@pytest.mark.parametrize("name", [pytest.param("tiny-pk2", marks=pytest.mark.slow), "tiny-pk4",
                                  "tiny2-pk4"])
def test_predict_keys_cycle_model(name):
    """The cycle model with several keys a cycle (within 5 %), at every top_k, with and
    without sphere clipping, sparse and dense; prediction is faster than with one key."""
    cfg = MULTI.get(name) or TINY.replace(name=name, q_lanes=2, predict_keys=4)
    S = cfg.max_seq_len
    Q, K, V = peaked_case(cfg, 9, T=4, S=S)
    for top_k, radius, dense in ((1, cfg.derived.radius_inf, False), (2, 2000, False),
                                 (2, cfg.derived.radius_inf, False),
                                 (1, cfg.derived.radius_inf, True)):
        params = RunParams(seq_len=S, top_k=top_k, radius=radius,
                           scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
        res, regs = check(cfg, Q, K, V, params)
        model = core_cycles(cfg, params, res, Q, K, V)
        assert abs(model - regs["busy_cycles"]) <= 0.05 * regs["busy_cycles"], \
            (top_k, radius, dense, model, regs["busy_cycles"])
        if not dense:
            groups = -(-len(Q) // cfg.q_lanes)
            assert regs["predict_cycles"] <= groups * (S // cfg.predict_keys + 4)


@pytest.mark.parametrize("name", ["default", "ecp5", "tiny"])
def test_predict_keys_sizing_rule(name):
    """spec.timing.predict_keys_for against the cycle model at S = 1024: at the rule's value
    prediction streams no longer than SU-FA works, and half of it (if above 1) streams longer
    than SU-FA's least work, top_k · mac_cycles a tile; the axi preset takes 1."""
    from sim.perf import tile_work
    from spec.timing import predict_keys_for
    base = preset(name).replace(max_seq_len=1024)
    S, T = 1024, 2
    Q, K, V = peaked_case(base, 3, T=T, S=S)
    for top_k in range(1, base.k_max + 1):
        P = predict_keys_for(base, top_k)
        params = RunParams(seq_len=S, top_k=top_k, radius=base.derived.radius_inf,
                           scale_log2e=RunParams.scale_from_float(base, 2e-3))
        res = sofa_attention(Q, K, V, base, params)
        work = tile_work(base, Q, K, V, params, res)
        at = core_cycles(base.replace(predict_keys=P), params, res, work=work, breakdown=True)
        assert at.predict <= at.sufa, (top_k, P, at)
        if P > 1:
            half = core_cycles(base.replace(predict_keys=P // 2), params, res, work=work,
                               breakdown=True)
            least = top_k * base.derived.mac_cycles * (S // base.block_size) * T
            assert half.predict > least, (top_k, P, half)
    assert [predict_keys_for(preset("default"), k) for k in (1, 2, 3, 4)] == [4, 2, 2, 1]
    assert predict_keys_for(preset("axi"), 1) == 1
    with pytest.raises(ConfigError, match=r"^top_k = 0 is out of range; allowed 1 … 16$"):
        predict_keys_for(preset("default"), 0)


@pytest.mark.parametrize("traffic", [TRAFFIC[0], TRAFFIC[3]], ids=repr)
@pytest.mark.parametrize("name", ADAPT)
@pytest.mark.parametrize("mass", [128, 40])
def test_core_tail_blend(name, mass, traffic):
    """The tail blend (TAIL_SCALE != 0; hw/tail.py behind each lane's SU-FA, f from the gate,
    the mean V row swept before the first query): O and every counter equal the golden
    model's, and the blend moved some rows."""
    cfg = ADAPT[name]
    S = cfg.block_size * 3 + 2
    Q, K, V = peaked_case(cfg, 13, T=4, S=S)
    c_sel, shift = {128: (1e-4, 13), 40: (2e-4, 12)}[mass]
    base = dict(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                scale_log2e=RunParams.scale_from_float(cfg, 2e-3), adapt_mass=mass,
                adapt_scale=RunParams.scale_from_float(cfg, c_sel), adapt_shift=shift)
    params = RunParams(**base, tail_scale=RunParams.scale_from_float(cfg, 3e-4))
    res, regs = check(cfg, Q, K, V, params, traffic, seed=7)
    plain = sofa_attention(Q, K, V, cfg, RunParams(**base))
    assert any(res.tail_f) and not np.array_equal(res.out, plain.out)
    assert res.counters() == plain.counters()
    if traffic is TRAFFIC[0]:
        model = core_cycles(cfg, params, res, Q, K, V)
        assert abs(model - regs["busy_cycles"]) <= 0.05 * regs["busy_cycles"], \
            (model, regs["busy_cycles"])


def test_tail_register_range():
    """TAIL_SCALE (address 53, with adapt_bins) takes 0 … 2^c_bits − 1; a larger value is
    rejected with the error flag and its address, never clamped; a core without bins has no
    such register (a write there is rejected as an unused address)."""
    log = []
    for cfg in (ADAPT["tiny-adapt"], TINY):
        dut = dut_for(cfg)

        async def bench(ctx, dut=dut, cfg=cfg):
            for value in ((1 << cfg.c_bits) - 1, 1 << cfg.c_bits):
                ctx.set(dut.reg_addr, Reg.STATUS)
                ctx.set(dut.reg_wdata, 2)
                ctx.set(dut.reg_we, 1)
                await ctx.tick()
                ctx.set(dut.reg_addr, 53)
                ctx.set(dut.reg_wdata, value)
                await ctx.tick()
                ctx.set(dut.reg_we, 0)
                log.append((cfg.name, value, await read_reg(ctx, dut, 53),
                            await read_reg(ctx, dut, Reg.STATUS) & 2,
                            await read_reg(ctx, dut, Reg.ERROR_ADDR)))

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
    top = (1 << ADAPT["tiny-adapt"].c_bits) - 1
    assert Reg.TAIL_SCALE == 53
    assert log[0] == ("tiny-adapt", top, top, 0, 0)
    assert log[1][1:4] == (top + 1, top, 2) and log[1][4] == 53
    assert log[2][3] == 2 and log[2][4] == 53 and log[3][3] == 2


def test_tail_mean_follows_loads_and_seq_len():
    """The mean V row is swept again after a K/V load and after a SEQ_LEN write, without a
    reset in between: three calls on one core (new V rows, then a shorter S), each O equal to
    the golden model's with its own mean; a call with the blend off needs no sweep."""
    cfg = ADAPT["odd-adapt"]
    S = cfg.block_size * 3 + 2
    dut = dut_for(cfg)
    rng = np.random.default_rng(21)
    Q, K, V = peaked_case(cfg, 14, T=3, S=S)
    V2 = rng.integers(-128, 128, size=V.shape)
    base = dict(top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                scale_log2e=RunParams.scale_from_float(cfg, 2e-3), adapt_mass=40,
                adapt_scale=RunParams.scale_from_float(cfg, 2e-4), adapt_shift=12,
                tail_scale=RunParams.scale_from_float(cfg, 3e-4))
    calls = [(V, RunParams(seq_len=S, **base), True), (V2, RunParams(seq_len=S, **base), True),
             (V2, RunParams(seq_len=S - 7, **base), False),
             (V2, RunParams(seq_len=S - 7, **dict(base, tail_scale=0)), False)]
    got = []

    async def host(ctx):
        async def write(addr, value):
            await write_reg(ctx, dut, addr, value)

        for Vc, params, load in calls:
            if load:                         # waits for the previous call to leave the core
                for j in range(S):
                    ctx.set(dut.kv_load.valid, 1)
                    ctx.set(dut.kv_load.payload, {"index": j, "k": [int(x) for x in K[j]],
                                                  "v": [int(x) for x in Vc[j]]})
                    await ctx.tick().until(dut.kv_load.ready)
                ctx.set(dut.kv_load.valid, 0)
            else:
                while ctx.get(dut.busy):
                    await ctx.tick()
            for reg, value in parameter_writes(cfg, params):
                await write(reg, value)
            for i in range(len(Q)):
                ctx.set(dut.q.valid, 1)
                ctx.set(dut.q.payload, {"data": [int(x) for x in Q[i]],
                                        "last": int(i == len(Q) - 1)})
                await ctx.tick().until(dut.q.ready)
            ctx.set(dut.q.valid, 0)
            await ctx.tick()

    async def sink(ctx):
        for _ in calls:
            beats = await stream_get(ctx, dut.o, len(Q) * cfg.d)
            got.append(np.array([int(p.value) for p in beats]).reshape(len(Q), cfg.d))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert len(got) == len(calls)
    outs = []
    for (Vc, params, _), o in zip(calls, got):
        res = sofa_attention(Q, K[:params.seq_len], Vc[:params.seq_len], cfg, params)
        assert np.array_equal(o, res.out), params
        outs.append(res.out)
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[1], outs[2])
