"""SU-FA unit in the Amaranth simulator against :func:`sim.golden.sufa_row` + ``divide_row``.

Config matrix (tiny, wide = one chunk per key, odd = 3 chunks of 2 lanes and plain stage
registers instead of skid buffers, default) x traffic
on random selections in random order, and the adversarial cases: ascending score order (a
miss on every key), perfect order, single-key tiles, empty tiles (also the row's last, and
rows with nothing selected), extreme values, a scale so large that rescales floor ``l`` to 0,
and dense mode. Outputs, framing and the counters must match the golden model exactly;
latency and cycles per key are measured against the properties.
"""

import random
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.sufa import COUNTERS, SUFA
from sim.golden import exact_scores, tile_ranges
from tb.streams import TRAFFIC
from tb.support.configs import SUFA_CONFIGS as CONFIGS
from tb.support.sufa import (Row, expected, float_error, int8, kv_beats, random_selection,
                             scale, sorted_selection)

TINY, DEFAULT, ODD = CONFIGS["tiny"], CONFIGS["default"], CONFIGS["odd"]

_DUTS = {}


def dut_for(cfg):
    if cfg.name not in _DUTS:
        _DUTS[cfg.name] = SUFA(cfg)
    return _DUTS[cfg.name]


def seed_of(*parts):
    """A reproducible seed (``hash`` of a string changes between processes)."""
    return zlib.crc32(repr(parts).encode())


def run_sufa(cfg, rows, K, V, traffic=None, seed=0, timeout=200_000, trace=None):
    """Drive ``rows`` through SU-FA; returns (beats, counters, expected beats, totals).

    ``scale_log2e`` is set with each row's query and scrambled once it has been accepted.
    ``trace``, if a dict, receives the cycles of every kv acceptance and output beat.
    """
    dut = dut_for(cfg)
    want, totals = expected(cfg, rows, K, V)
    got, counters = [], {}
    rngs = {name: random.Random(seed * 11 + n) for n, name in enumerate(("q", "kv", "o", "c"))}
    cycle = [0]
    if trace is not None:
        trace.update(kv=[], o=[])

    async def put(ctx, port, payload, rng):
        if traffic is not None:
            for _ in range(traffic.gaps(rng, traffic.idle)):
                ctx.set(port.valid, 0)
                await ctx.tick()
        ctx.set(port.valid, 1)
        ctx.set(port.payload, payload)
        await ctx.tick().until(port.ready)

    async def q_source(ctx):
        for row in rows:
            ctx.set(dut.scale_log2e, row.c)
            await put(ctx, dut.q, {"data": [int(x) for x in row.q]}, rngs["q"])
            ctx.set(dut.scale_log2e, rngs["c"].randint(0, (1 << cfg.c_bits) - 1))
        ctx.set(dut.q.valid, 0)

    async def kv_source(ctx):
        for row in rows:
            for beat in kv_beats(row, K, V):
                await put(ctx, dut.kv, beat, rngs["kv"])
                if trace is not None:
                    trace["kv"].append(cycle[0])
        ctx.set(dut.kv.valid, 0)

    async def sink(ctx):
        for _ in range(len(want)):
            if traffic is not None:
                for _ in range(traffic.gaps(rngs["o"], traffic.backpressure)):
                    ctx.set(dut.o.ready, 0)
                    await ctx.tick()
            ctx.set(dut.o.ready, 1)
            payload, = await ctx.tick().sample(dut.o.payload).until(dut.o.valid)
            got.append({name: int(getattr(payload, name)) for name in ("value", "first", "last")})
            if trace is not None:
                trace["o"].append(cycle[0])
        for _ in range(cfg.d + 40):            # catch extra beats
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "extra output beat after the expected ones"
        for name in COUNTERS:
            counters[name] = ctx.get(getattr(dut, name))

    async def clock(ctx):
        for _ in range(timeout):
            await ctx.tick()
            cycle[0] += 1
        raise AssertionError(f"timeout after {timeout} cycles: {len(got)} of {len(want)} beats")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(q_source, background=True)
    sim.add_testbench(kv_source, background=True)
    sim.add_testbench(sink)
    sim.add_testbench(clock, background=True)
    sim.run()
    return got, counters, want, totals


def check(cfg, rows, K, V, traffic=None, seed=0):
    got, counters, want, totals = run_sufa(cfg, rows, K, V, traffic, seed)
    for n, (g, e) in enumerate(zip(got, want)):
        assert g == e, f"output #{n} (row {n // cfg.d}, element {n % cfg.d}): got {g}, " \
                       f"expected {e}"
    assert len(got) == len(want)
    for name in ("keys", "misses", "rescales", "rows"):
        assert counters[name] == totals[name], f"counter {name}: {counters[name]} != {totals[name]}"
    return counters, totals


# -- stimulus --------------------------------------------------------------------------------

def random_case(cfg, seed, rows=3, S=None):
    rng = np.random.default_rng(seed)
    S = S or min(cfg.max_seq_len, 3 * cfg.block_size + 1)
    K, V = int8(rng, (S, cfg.d)), int8(rng, (S, cfg.d))
    out = []
    for _ in range(rows):
        q = int8(rng, cfg.d)
        c = scale(cfg, float(rng.choice([2e-4, 1e-3, 5e-3])))
        out.append(Row(q, random_selection(rng, cfg, S), c))
    return out, K, V


# -- random traffic, config matrix ---------------------------------------------------------

@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("name", ["tiny", "wide", "odd"])
def test_random(name, traffic):
    cfg = CONFIGS[name]
    rows, K, V = random_case(cfg, seed_of(name, traffic.name))
    check(cfg, rows, K, V, traffic, seed=5)


@pytest.mark.parametrize("traffic", [TRAFFIC[0], TRAFFIC[3]], ids=repr)
def test_random_default(traffic):
    rows, K, V = random_case(DEFAULT, seed_of("default", traffic.name), rows=2, S=40)
    check(DEFAULT, rows, K, V, traffic, seed=2)


# -- adversarial orders and edge cases ---------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "odd"])
@pytest.mark.parametrize("order", ["ascending", "perfect", "random"])
def test_orders(name, order):
    """Ascending score order: a miss on every key after a tile's first two; perfect order:
    no miss at all."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_of(name, order))
    S = min(cfg.max_seq_len, 4 * cfg.block_size)
    K, V = int8(rng, (S, cfg.d)), int8(rng, (S, cfg.d))
    rows = []
    for _ in range(3):
        q = int8(rng, cfg.d)
        s = exact_scores(q[None, :], K)[0]
        tiles = [list(range(a, b)) for a, b in tile_ranges(S, cfg.block_size)]
        if order != "random":
            tiles = sorted_selection(tiles, s, ascending=order == "ascending")
        else:
            tiles = [list(rng.permutation(t)) for t in tiles]
        rows.append(Row(q, tiles, scale(cfg, 2e-3)))
    counters, totals = check(cfg, rows, K, V, TRAFFIC[3], seed=1)
    if order == "perfect":
        assert totals["misses"] == 0
    if order == "ascending":
        assert totals["misses"] > 0 and totals["rescales"] > 0


def test_edge_tiles():
    """Single-key tiles, empty tiles in the middle and at the row's end, a row with nothing
    selected (l = 0: zeros), a one-tile row."""
    cfg = ODD
    rng = np.random.default_rng(7)
    S = 4 * cfg.block_size
    K, V = int8(rng, (S, cfg.d)), int8(rng, (S, cfg.d))
    q = [int8(rng, cfg.d) for _ in range(6)]
    c = scale(cfg, 3e-3)
    rows = [
        Row(q[0], [[0], [7], [12], [19]], c),              # single-key tiles
        Row(q[1], [[3, 1], [], [9, 8, 5], []], c),          # empty tiles, last one empty
        Row(q[2], [[], [], [], []], c),                     # nothing selected
        Row(q[3], [[4]], c),                                # one tile, one key
        Row(q[4], [[], [6, 5]], c),                         # starts with an empty tile
        Row(q[5], [[2, 0, 4], [5, 6, 7], [14, 10], [15]], c),
    ]
    for traffic in (TRAFFIC[0], TRAFFIC[4]):
        check(cfg, rows, K, V, traffic, seed=3)


@pytest.mark.parametrize("name", ["tiny", "odd"])
def test_extremes(name):
    """-128 everywhere (the largest score), mixed ±127/-128, all-zero rows."""
    cfg = CONFIGS[name]
    S = 2 * cfg.block_size
    lo = np.full((S, cfg.d), -128)
    mixed = np.tile(np.array([127, -128] * cfg.d)[:cfg.d], (S, 1))
    zero = np.zeros((S, cfg.d), dtype=np.int64)
    tiles = [list(range(a, b))[:cfg.k_max] for a, b in tile_ranges(S, cfg.block_size)]
    cmax = (1 << cfg.c_bits) - 1
    for K, V in ((lo, lo), (mixed, lo), (lo, mixed), (zero, lo), (lo, zero)):
        rows = [Row(np.full(cfg.d, -128), tiles, cmax), Row(np.zeros(cfg.d), tiles, 1),
                Row(mixed[0], tiles[::-1], scale(cfg, 1e-3))]
        check(cfg, rows, K, V)


def test_steep_scale():
    """The largest scale and ascending order: every miss rescales by a weight that floors
    ``l`` and ``o`` to (nearly) 0 before the missing key adds its weight of 1.0."""
    cfg = TINY
    rng = np.random.default_rng(11)
    S = 4 * cfg.block_size
    K, V = int8(rng, (S, cfg.d)), int8(rng, (S, cfg.d))
    rows = []
    for n in range(4):
        q = int8(rng, cfg.d)
        s = exact_scores(q[None, :], K)[0]
        tiles = sorted_selection([list(range(a, b)) for a, b in tile_ranges(S, cfg.block_size)],
                                 s, ascending=True)
        rows.append(Row(q, tiles, (1 << cfg.c_bits) - 1 - n))
    counters, totals = check(cfg, rows, K, V, TRAFFIC[3], seed=9)
    assert totals["rescales"] > 10


@pytest.mark.parametrize("name", ["tiny", "odd"])
def test_dense_mode(name):
    """Dense mode is every key in natural order; within the float64 dense attention error."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed_of("dense", name))
    S = min(cfg.max_seq_len, 3 * cfg.block_size + 2)
    K, V = int8(rng, (S, cfg.d)), int8(rng, (S, cfg.d))
    Q = int8(rng, (3, cfg.d))
    c = scale(cfg, 2e-3)
    tiles = [list(range(a, b)) for a, b in tile_ranges(S, cfg.block_size)]
    rows = [Row(q, tiles, c) for q in Q]
    got, _, want, _ = run_sufa(cfg, rows, K, V, TRAFFIC[3], seed=4)
    assert got == want
    metrics, within = float_error(cfg, rows, K, V, got)
    assert within, metrics
    assert metrics["max_abs"] < 1.0, metrics


# -- timing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "wide", "odd", "default"])
def test_latency_and_ii(name):
    """One long tile without misses (perfect order): keys are accepted every ``ii`` cycles;
    a one-key row measures ``latency``."""
    cfg = CONFIGS[name]
    dut = dut_for(cfg)
    rng = np.random.default_rng(3)
    S = 12                                     # SU-FA does not limit a tile's keys
    K, V = int8(rng, (S, cfg.d), -20, 20), int8(rng, (S, cfg.d))
    q = int8(rng, cfg.d, -20, 20)
    s = exact_scores(q[None, :], K)[0]
    tile = sorted(range(S), key=lambda j: (-s[j], j))
    trace = {}
    run_sufa(cfg, [Row(q, [tile], scale(cfg, 1e-3))], K, V, trace=trace)
    gaps = np.diff(trace["kv"][6:])            # after the tile-start stall
    assert set(gaps.tolist()) == {dut.ii}, gaps
    # latency: the key of a one-key row, pipeline empty.
    trace = {}
    run_sufa(cfg, [Row(q, [[S - 1]], scale(cfg, 1e-3))], K, V, trace=trace)
    assert trace["o"][0] - trace["kv"][0] == dut.latency
