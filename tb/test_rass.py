"""RassScheduler (hw/rass.py) in the Amaranth simulator against sim.jobs.rass_order: the fetch
order of every tile, the markers, and the selections passed through to the feeds unchanged,
with random idle cycles on the selections and random backpressure on fetches and feeds."""

import functools
import random

import pytest
from amaranth.sim import Simulator

from hw.rass import RassScheduler
from sim.jobs import rass_order
from spec.config import preset
from tb.streams import TRAFFIC

CONFIGS = {
    "l2k2": preset("tiny").replace(name="l2k2", q_lanes=2),
    "l3k3": preset("tiny").replace(name="l3k3", q_lanes=3, k_max=3, sort_width=8),
    "l1k2": preset("tiny").replace(name="l1k2", q_lanes=1),
}


def random_block(rng, cfg, lanes, tiles, shared):
    """Per lane, per tile: the selected indices (distinct within a lane), drawn from a few
    keys of the tile so lanes overlap; lanes may end early (causal)."""
    B = cfg.block_size
    ends = [rng.randint(1, tiles) for _ in range(lanes)]
    ends[rng.randrange(lanes)] = tiles
    out = []
    for lane in range(lanes):
        per = []
        for t in range(ends[lane]):
            pool = list(range(t * B, t * B + (shared if shared else B)))
            n = rng.randint(0, min(cfg.k_max, len(pool)))
            per.append(rng.sample(pool, n))
        out.append(per)
    return out


def beats(sel, tile, last_tile):
    if not sel:
        return [dict(value=0, index=0, empty=1, first=1, last=1, row_last=int(last_tile))]
    return [dict(value=0, index=j, empty=0, first=int(k == 0), last=int(k == len(sel) - 1),
                 row_last=int(last_tile and k == len(sel) - 1)) for k, j in enumerate(sel)]


def run(cfg, blocks, rass, traffic, seed):
    dut = RassScheduler(cfg)
    L = cfg.q_lanes
    rng = random.Random(seed)
    got, fed = [], [[] for _ in range(L)]
    want_feed = [[] for _ in range(L)]

    async def source(ctx, lane, block_beats):
        for bb in block_beats:
            for beat in bb:
                if traffic:
                    for _ in range(traffic.gaps(rng, traffic.idle)):
                        ctx.set(dut.sel[lane].valid, 0)
                        await ctx.tick()
                ctx.set(dut.sel[lane].valid, 1)
                ctx.set(dut.sel[lane].payload, beat)
                await ctx.tick().until(dut.sel[lane].ready)
            ctx.set(dut.sel[lane].valid, 0)

    async def control(ctx):
        for block in blocks:
            while ctx.get(dut.busy):
                await ctx.tick()
            ctx.set(dut.start, 1)
            ctx.set(dut.lanes, (1 << len(block)) - 1)
            ctx.set(dut.rass, rass)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick()

    async def feeder(ctx, lane, n):
        for _ in range(n):
            if traffic:
                for _ in range(traffic.gaps(rng, traffic.backpressure)):
                    ctx.set(dut.feed[lane].ready, 0)
                    await ctx.tick()
            ctx.set(dut.feed[lane].ready, 1)
            payload, = await ctx.tick().sample(dut.feed[lane].payload).until(
                dut.feed[lane].valid)
            fed[lane].append((int(payload.index), int(payload.empty), int(payload.last),
                              int(payload.row_last)))
        ctx.set(dut.feed[lane].ready, 0)

    async def sink(ctx, n):
        for _ in range(n):
            if traffic:
                for _ in range(traffic.gaps(rng, traffic.backpressure)):
                    ctx.set(dut.fetch.ready, 0)
                    await ctx.tick()
            ctx.set(dut.fetch.ready, 1)
            payload, = await ctx.tick().sample(dut.fetch.payload).until(dut.fetch.valid)
            got.append(("marker",) if payload.marker else int(payload.index))

    # Expected: per block, per tile, the order of the active lanes' selections.
    want = []
    per_lane_beats = [[] for _ in range(L)]
    for block in blocks:
        tiles = max(len(per) for per in block)
        for t in range(tiles):
            lists = [block[lane][t] for lane in range(len(block)) if t < len(block[lane])]
            want += rass_order(lists, bool(rass)) + [("marker",)]
        for lane in range(L):
            if lane < len(block):
                bb = [b for t, sel in enumerate(block[lane])
                      for b in beats(sel, t, t == len(block[lane]) - 1)]
            else:
                bb = []
            per_lane_beats[lane].append(bb)
            want_feed[lane] += [(b["index"], b["empty"], b["last"], b["row_last"]) for b in bb]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(control, background=True)
    for lane in range(L):
        sim.add_testbench(functools.partial(source, lane=lane, block_beats=per_lane_beats[lane]),
                          background=True)
        sim.add_testbench(functools.partial(feeder, lane=lane, n=len(want_feed[lane])))
    sim.add_testbench(functools.partial(sink, n=len(want)))
    async def watchdog(ctx):
        for _ in range(100_000):
            await ctx.tick()
        raise AssertionError(f"timeout: {len(got)} of {len(want)} fetches")

    sim.add_testbench(watchdog, background=True)
    sim.run()
    assert got == want
    assert fed == want_feed


@pytest.mark.parametrize("traffic", [None, TRAFFIC[3]], ids=["full", "idle+bp"])
@pytest.mark.parametrize("rass", [1, 0])
@pytest.mark.parametrize("name", CONFIGS)
def test_order(name, rass, traffic):
    cfg = CONFIGS[name]
    rng = random.Random(hash((name, rass)) & 0xFFFF)
    blocks = [random_block(rng, cfg, rng.randint(1, cfg.q_lanes), rng.randint(1, 4),
                           shared=rng.choice([0, 3])) for _ in range(5)]
    run(cfg, blocks, rass, traffic, seed=7)


def test_shared_rows_first():
    """Two lanes: the row both select comes first, then each lane's own rows."""
    assert rass_order([[5, 3, 1], [1, 7]]) == [1, 5, 3, 7]
    assert rass_order([[5, 3, 1], [1, 7]], rass=False) == [5, 3, 1, 1, 7]
    assert rass_order([[], []]) == []
