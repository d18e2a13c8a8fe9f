# amaranth: UnusedElaboratable=no
"""TailBlend (hw/tail.py) in the Amaranth simulator against spec.numerics.tail_blend: rows of
random and extreme O and f, the mean V row at its extremes, every traffic setting (idle
cycles on both inputs, backpressure on the output), the blend off (O unchanged, no f taken),
and the latency and initiation interval the unit states."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from hw.tail import TAIL_LATENCY, TailBlend
from spec.config import preset
from spec.numerics import TAIL_FRAC, tail_blend
from tb.streams import TRAFFIC, run_streams

CONFIGS = {
    "tiny": preset("tiny").replace(adapt_bins=4),
    "odd": preset("tiny").replace(name="odd", d=6, block_size=5, sort_width=5, k_max=3,
                                  max_seq_len=40, dlzs_lanes=3, mac_lanes=2, adapt_bins=5),
}


class Bench(Elaboratable):
    """The unit with ``vbar`` and ``en`` tied to constants."""

    def __init__(self, unit, vbar, en):
        self.unit, self.vbar, self.en = unit, vbar, en

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = u = self.unit
        m.d.comb += [u.en.eq(self.en)] + [u.vbar[k].eq(v) for k, v in enumerate(self.vbar)]
        return m


def case(cfg, rng, n_rows):
    ow = cfg.derived.out_width
    lo, hi = -(1 << (ow - 1)), (1 << (ow - 1)) - 1
    top = (1 << (cfg.data_width - 1 + cfg.out_frac))     # |O|, |vbar| <= 2^(W-1+out_frac)
    vbar = [rng.choice([-top, top - 1, 0, rng.randint(-top, top - 1)]) for _ in range(cfg.d)]
    rows, fs = [], []
    for r in range(n_rows):
        rows.append([rng.choice([max(lo, -top), min(hi, top - 1), 0, rng.randint(-top, top - 1)])
                     for _ in range(cfg.d)])
        fs.append(rng.choice([0, 1, (1 << TAIL_FRAC) - 1, 1 << (TAIL_FRAC - 1),
                              rng.randrange(1 << TAIL_FRAC)]))
    return vbar, rows, fs


@pytest.mark.parametrize("en", [1, 0])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_blend_equals_golden(name, traffic, en):
    cfg = CONFIGS[name]
    rng = random.Random(f"{name}{traffic!r}{en}")
    vbar, rows, fs = case(cfg, rng, 12)
    beats = [{"value": v, "first": int(e == 0), "last": int(e == cfg.d - 1)}
             for row in rows for e, v in enumerate(row)]
    unit = TailBlend(cfg)
    out, = run_streams(Bench(unit, vbar, en), [(unit.i, beats), (unit.f, fs if en else [])],
                       [(unit.o, len(beats))], traffic=traffic, seed=len(beats) + en,
                       timeout=30 * len(beats) + 1000)
    k = 0
    for row, f in zip(rows, fs):
        for e, v in enumerate(row):
            want = tail_blend(v, vbar[e], f) if en else v
            got = out[k]
            assert (got.value, got.first, got.last) == \
                (want, int(e == 0), int(e == cfg.d - 1)), (e, v, vbar[e], f)
            k += 1


def test_latency_and_ii():
    """An element leaves ``TAIL_LATENCY`` cycles after it was taken, one a cycle after that
    (the f of every row already waiting)."""
    cfg = CONFIGS["tiny"]
    unit = TailBlend(cfg)
    bench = Bench(unit, [5] * cfg.d, 1)
    n_rows = 3
    took, gave = [], []

    async def testbench(ctx):
        ctx.set(unit.o.ready, 1)
        for r in range(n_rows):                          # queue the f of every row first
            ctx.set(unit.f.valid, 1)
            ctx.set(unit.f.payload, 1000 * r)
            await ctx.tick()
        ctx.set(unit.f.valid, 0)
        n = 0
        for cycle in range(n_rows * cfg.d + 10):
            ctx.set(unit.i.valid, n < n_rows * cfg.d)
            ctx.set(unit.i.payload, {"value": n, "first": int(n % cfg.d == 0),
                                     "last": int(n % cfg.d == cfg.d - 1)})
            _, _, t, g = await ctx.tick().sample(unit.i.valid & unit.i.ready,
                                                 unit.o.valid & unit.o.ready)
            if t:
                took.append(cycle)
                n += 1
            if g:
                gave.append(cycle)

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert len(took) == len(gave) == n_rows * cfg.d
    assert {b - a for a, b in zip(took, took[1:])} == {unit.ii}
    assert gave[0] - took[0] == TAIL_LATENCY == unit.latency
    assert {b - a for a, b in zip(gave, gave[1:])} == {1}
