"""SU-FA on Verilator against the golden model: query rows and their selected K/V rows in, the
output rows out, compared element by element with :func:`sim.golden.sufa_row` +
:func:`sim.golden.divide_row`; the counters compared with the golden totals; the error against
float64 attention checked against :func:`sim.reference.error_bound`. Random idle cycles on
both inputs, random backpressure on the output."""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from hw.sufa import COUNTERS, kv_layout, out_layout, q_layout
from sim.golden import exact_scores, tile_ranges
from gen.rtlsim.streams import (STRESS, TRAFFIC, Checker, StreamSink, StreamSource,
                                load_sidecar)
from tb.support.sufa import (Row, expected, float_error, int8, kv_beats, random_selection,
                             scale, sorted_selection)

CFG, SIDECAR = load_sidecar()
DER = CFG.derived
SEED = int(os.environ.get("SOFA_SEED", "1"))
Q_LAYOUT, KV_LAYOUT, OUT_LAYOUT = q_layout(CFG), kv_layout(CFG), out_layout(CFG)
CMAX = (1 << CFG.c_bits) - 1


def start_clock(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())


async def reset(dut):
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    dut.q__valid.value = 0
    dut.kv__valid.value = 0
    dut.o__ready.value = 0
    dut.scale_log2e.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def send_queries(dut, rows, *, idle, burst, seed):
    """The query of every row; ``scale_log2e`` is valid with it and scrambled otherwise."""
    junk = np.random.default_rng(seed + 5)

    def side(beat):
        dut.scale_log2e.value = beat["c"] if beat is not None else int(junk.integers(CMAX + 1))

    beats = [{"data": [int(x) for x in r.q], "c": r.c} for r in rows]
    source = StreamSource(dut, "q", Q_LAYOUT, idle=idle, burst=burst, seed=seed)
    await source.send(beats, on_cycle=side)


async def run(dut, rows, K, V, traffic, seed, *, want=None):
    """Reset, run ``rows``; returns (checker, received beats, counters, golden totals)."""
    await reset(dut)
    name, idle, bp, burst = traffic
    golden, totals = expected(CFG, rows, K, V)
    got = []
    checker = Checker(golden if want is None else want, name=f"o[{name}]")

    def on_beat(beat):
        got.append(beat)
        checker(beat)

    sink = StreamSink(dut, "o", OUT_LAYOUT, on_beat, backpressure=bp, burst=burst,
                      seed=seed + 2)
    sink_task = cocotb.start_soon(sink.run())
    cocotb.start_soon(send_queries(dut, rows, idle=idle, burst=burst, seed=seed))
    kv = [b for r in rows for b in kv_beats(r, K, V)]
    cocotb.start_soon(StreamSource(dut, "kv", KV_LAYOUT, idle=idle, burst=burst,
                                   seed=seed + 1).send(kv))
    budget = (4 + 2 * burst) * (len(kv) * (2 * DER.mac_cycles + 2) + len(golden)) + 20 * \
        SIDECAR["latency"] * len(rows)
    for _ in range(budget):
        await RisingEdge(dut.clk)
        if checker.done:
            break
    for _ in range(CFG.d + 2 * SIDECAR["latency"]):      # catch extra beats
        await RisingEdge(dut.clk)
    sink_task.cancel()
    counters = {n: int(getattr(dut, n).value) for n in COUNTERS}
    return checker, got, counters, totals


def check(checker, counters, totals):
    checker.check()
    for n in ("keys", "misses", "rescales", "rows"):
        assert counters[n] == totals[n], f"counter {n}: {counters[n]} != golden {totals[n]}"


def case(rng, rows, S, *, order="random", c=None, kv=None):
    """``rows`` query rows against ``S`` random keys; selections by ``order``: random subsets
    in random order, or whole tiles in ascending / perfect (descending) / natural (dense)
    score order."""
    K, V = kv if kv is not None else (int8(rng, (S, CFG.d)), int8(rng, (S, CFG.d)))
    out = []
    for _ in range(rows):
        q = int8(rng, CFG.d)
        cc = c if c is not None else scale(CFG, float(rng.choice([2e-4, 1e-3, 5e-3])))
        if order == "random":
            tiles = random_selection(rng, CFG, S)
        else:
            tiles = [list(range(a, b)) for a, b in tile_ranges(S, CFG.block_size)]
            if order != "natural":
                s = exact_scores(q[None, :], K)[0]
                tiles = sorted_selection(tiles, s, ascending=order == "ascending")
        out.append(Row(q, tiles, cc))
    return out, K, V


@cocotb.test()
async def test_traffic(dut):
    """Random selections in random order, with empty tiles, every traffic pattern."""
    start_clock(dut)
    rng = np.random.default_rng(SEED)
    S = min(CFG.max_seq_len, 3 * CFG.block_size + 3)
    for n, traffic in enumerate(TRAFFIC):
        rows, K, V = case(rng, 3, S)
        checker, _, counters, totals = await run(dut, rows, K, V, traffic, SEED * 10 + n)
        check(checker, counters, totals)


@cocotb.test()
async def test_orders_and_error(dut):
    """Ascending order (a miss on every key after a tile's first two), perfect order (no
    miss), dense mode (natural order); output error against float64 within the derived
    bound, reported."""
    start_clock(dut)
    rng = np.random.default_rng(SEED + 1)
    S = min(CFG.max_seq_len, 4 * CFG.block_size)
    for n, order in enumerate(("ascending", "perfect", "natural")):
        rows, K, V = case(rng, 3, S, order=order, c=scale(CFG, 2e-3))
        checker, got, counters, totals = await run(dut, rows, K, V, TRAFFIC[3], SEED + n)
        check(checker, counters, totals)
        metrics, within = float_error(CFG, rows, K, V, got)
        dut._log.info(f"{order}: misses {totals['misses']}, rescales {totals['rescales']}, "
                      f"error vs float64 max {metrics['max_abs']:.4f} mean "
                      f"{metrics['mean_abs']:.4f}")
        assert within, f"{order}: error beyond the derived bound: {metrics}"
        if order == "ascending":
            assert totals["misses"] > 0
        if order == "perfect":
            assert totals["misses"] == 0


@cocotb.test()
async def test_edges(dut):
    """Single-key tiles, empty tiles (also last), a row with nothing selected (zeros),
    extreme values (-128 everywhere, ±127/-128), zero rows, the largest and smallest scale."""
    start_clock(dut)
    rng = np.random.default_rng(SEED + 2)
    B = CFG.block_size
    S = min(CFG.max_seq_len, 4 * B)
    rows, K, V = case(rng, 0, S)
    q = int8(rng, (5, CFG.d))
    c = scale(CFG, 3e-3)
    rows = [Row(q[0], [[a] for a, _ in tile_ranges(S, B)], c),
            Row(q[1], [[1, 0], [], [B + 2], []], c),
            Row(q[2], [[], [], []], c),
            Row(q[3], [[S - 1]], CMAX),
            Row(q[4], [[], [B, B + 1]], 1)]
    checker, _, counters, totals = await run(dut, rows, K, V, TRAFFIC[0], SEED)
    check(checker, counters, totals)
    lo = np.full((S, CFG.d), -128)
    mixed = np.tile(np.array([127, -128] * CFG.d)[:CFG.d], (S, 1))
    for n, (Kx, Vx) in enumerate(((lo, lo), (mixed, lo), (lo, mixed), (np.zeros_like(lo), lo))):
        tiles = [list(range(a, b)) for a, b in tile_ranges(S, B)]
        rows = [Row(np.full(CFG.d, -128), tiles, CMAX), Row(np.zeros(CFG.d), tiles, 1),
                Row(mixed[0], tiles[::-1], scale(CFG, 1e-3))]
        checker, _, counters, totals = await run(dut, rows, Kx, Vx, TRAFFIC[3], SEED + n)
        check(checker, counters, totals)


@cocotb.test()
async def test_stress(dut):
    """Many rows back to back (one over the whole max_seq_len), long gaps, backpressure."""
    start_clock(dut)
    rng = np.random.default_rng(SEED + 3)
    count = int(os.environ.get("SOFA_STRESS_ROWS", "10"))
    S = CFG.max_seq_len
    K, V = int8(rng, (S, CFG.d)), int8(rng, (S, CFG.d))
    rows, _, _ = case(rng, count, S, kv=(K, V))
    rows += case(rng, 1, S, order="ascending", kv=(K, V))[0]
    checker, _, counters, totals = await run(dut, rows, K, V, STRESS, SEED + 7)
    check(checker, counters, totals)


@cocotb.test()
async def test_mutation_is_detected(dut):
    """The checker must fail when one expected output is corrupted."""
    start_clock(dut)
    rng = np.random.default_rng(SEED + 4)
    rows, K, V = case(rng, 2, min(CFG.max_seq_len, 2 * CFG.block_size))
    want, _ = expected(CFG, rows, K, V)
    victim = int(rng.integers(len(want)))
    want = [dict(b) for b in want]
    want[victim]["value"] += 1
    checker, _, _, _ = await run(dut, rows, K, V, TRAFFIC[3], SEED, want=want)
    checker.check_catches(victim)


@cocotb.test()
async def test_latency_and_ii(dut):
    """A one-key row: first output ``latency`` cycles after the key; a long tile in perfect
    order in steady traffic: a key every ``ii`` cycles."""
    start_clock(dut)
    rng = np.random.default_rng(SEED + 5)
    S = min(CFG.max_seq_len, 24)
    K, V = int8(rng, (S, CFG.d), -20, 20), int8(rng, (S, CFG.d))
    q = int8(rng, CFG.d, -20, 20)
    s = exact_scores(q[None, :], K)[0]
    tile = sorted(range(S), key=lambda j: (-s[j], j))
    for row in (Row(q, [[S - 1]], scale(CFG, 1e-3)), Row(q, [tile], scale(CFG, 1e-3))):
        await reset(dut)
        dut.o__ready.value = 1
        cocotb.start_soon(send_queries(dut, [row], idle=0, burst=1, seed=0))
        cocotb.start_soon(StreamSource(dut, "kv", KV_LAYOUT).send(kv_beats(row, K, V)))
        accepted, first = [], None
        for cycle in range(4 * S * (DER.mac_cycles + 2) + 8 * SIDECAR["latency"]):
            await FallingEdge(dut.clk)
            await ReadOnly()
            if dut.kv__valid.value and dut.kv__ready.value:
                accepted.append(cycle)
            if dut.o__valid.value:
                first = cycle
                break
        if len(row.tiles[0]) == 1:
            assert first - accepted[0] == SIDECAR["latency"], (accepted, first)
        else:
            gaps = set(np.diff(accepted[8:]).tolist())
            assert gaps == {SIDECAR["ii"]}, (gaps, SIDECAR["ii"])
        for _ in range(CFG.d + 2 * SIDECAR["latency"]):
            await RisingEdge(dut.clk)
