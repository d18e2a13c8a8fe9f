"""ProjectionUnit (hw/project.py), on-demand K/V's exact rows, against the golden model
(sim.ondemand.project_rows) in the Amaranth simulator, under every traffic setting."""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module

from hw.project import ProjectionUnit
from sim.ondemand import project_rows, requant_params
from spec.config import ConfigError
from tb.streams import TRAFFIC, stream_get, stream_put
from tb.support.amsim import run_until

#: (d, d_model, macs): tiny, an odd size, one multiplier, every column at once.
CONFIGS = {"tiny": (8, 16, 4), "odd": (6, 10, 3), "one-mac": (2, 6, 1), "full": (4, 8, 4)}


def load_words(W, macs):
    """The weight words of one matrix ``[d, d_model]`` as stored (``Wᵀ`` row-major), ``macs``
    weights a word."""
    flat = np.asarray(W).T.reshape(-1)
    return [[int(v) for v in flat[i:i + macs]] for i in range(0, flat.size, macs)]


class _Bench(Elaboratable):
    def __init__(self, dut, rq):
        self.dut, self.rq = dut, rq

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        km, kr, vm, vr = self.rq
        m.d.comb += [self.dut.k_mult.eq(km), self.dut.k_rshift.eq(kr),
                     self.dut.v_mult.eq(vm), self.dut.v_rshift.eq(vr)]
        return m


def head(rng, d, d_model):
    X = rng.integers(-127, 128, (5, d_model))
    X[0] = 127
    Wk = rng.integers(-127, 128, (d, d_model))
    Wv = rng.integers(-127, 128, (d, d_model))
    Wk[0] = 127                                     # a column that saturates
    bk = rng.integers(-(1 << 31), 1 << 31, d)
    bk[1:] //= 1 << 12
    bv = rng.integers(-100_000, 100_000, d)
    return X, Wk, Wv, bk, bv


def run(dut, rq, heads, traffic, seed):
    """Every head's weights, then its rows; the results in order."""
    n = sum(len(h[0]) for h in heads)
    got = []

    async def weights_and_rows(ctx):
        r = random.Random(seed)
        for X, Wk, Wv, bk, bv in heads:
            await stream_put(ctx, dut.w, load_words(Wk, dut.macs) + load_words(Wv, dut.macs),
                             rng=r, traffic=traffic)
            await stream_put(ctx, dut.bias, [int(b) for b in np.concatenate([bk, bv])],
                             rng=r, traffic=traffic)
            await stream_put(ctx, dut.x, [{"data": [int(v) for v in row], "tag": j % 8}
                                          for j, row in enumerate(X)], rng=r, traffic=traffic)

    async def sink(ctx):
        got.extend(await stream_get(ctx, dut.o, n, rng=random.Random(seed + 1),
                                    traffic=traffic))

    run_until(_Bench(dut, rq), [weights_and_rows, sink], lambda: len(got) == n,
              timeout=200_000)
    return got


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_projection_equals_golden(name, traffic):
    d, d_model, macs = CONFIGS[name]
    rng = np.random.default_rng(len(name) * 31 + TRAFFIC.index(traffic))
    heads = [head(rng, d, d_model) for _ in range(2)]       # a reload between the heads
    km, kr = requant_params(100 / (d_model * 127 * 60))
    vm, vr = requant_params(3e-4)
    got = run(ProjectionUnit(d, d_model, macs, tag_width=3), (km, kr, vm, vr), heads, traffic,
              seed=7)
    want_k = np.concatenate([project_rows(X, Wk, bk, km, kr, range(len(X)))
                             for X, Wk, _, bk, _ in heads])
    want_v = np.concatenate([project_rows(X, Wv, bv, vm, vr, range(len(X)))
                             for X, _, Wv, _, bv in heads])
    assert [[int(v) for v in o.k] for o in got] == want_k.tolist()
    assert [[int(v) for v in o.v] for o in got] == want_v.tolist()
    assert [int(o.tag) for o in got] == [j % 8 for h in heads for j in range(len(h[0]))]
    # the test sees saturation on both sides and values inside
    assert {127, -127} <= set(want_k.reshape(-1).tolist()) | set(want_v.reshape(-1).tolist())


def test_latency_and_ii():
    """Measured at full rate: a result ``latency`` cycles after its row is accepted, the
    next row accepted ``ii`` cycles after the one before."""
    from amaranth.sim import Simulator

    d, d_model, macs = CONFIGS["odd"]
    dut = ProjectionUnit(d, d_model, macs)
    assert dut.cycles == 2 * d * d_model // macs
    accepted, produced = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for word in load_words(np.ones((d, d_model), int), macs) * 2:
            ctx.set(dut.w.valid, 1)
            ctx.set(dut.w.payload, word)
            await ctx.tick()
        ctx.set(dut.w.valid, 0)
        for _ in range(2 * d):
            ctx.set(dut.bias.valid, 1)
            ctx.set(dut.bias.payload, 3)
            await ctx.tick()
        ctx.set(dut.bias.valid, 0)
        ctx.set(dut.k_rshift, 1)
        ctx.set(dut.v_rshift, 1)
        ctx.set(dut.x.valid, 1)
        for cycle in range(3 * dut.ii):
            if ctx.get(dut.x.ready):
                accepted.append(cycle)
            if ctx.get(dut.o.valid):
                produced.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert produced[0] - accepted[0] == dut.latency
    assert accepted[1] - accepted[0] == dut.ii
    assert produced[1] - produced[0] == dut.ii


@pytest.mark.parametrize("kw,message", [
    (dict(d=6, d_model=10, macs=4), r"^proj_macs = 4 must divide d = 6$"),
    (dict(d=0, d_model=8, macs=1), r"^d = 0 is out of range; allowed 1 … ∞$"),
    (dict(d=4, d_model=8, macs=True), r"^macs must be an integer 1 … ∞, not True$"),
])
def test_bad_parameters(kw, message):
    with pytest.raises(ConfigError, match=message):
        ProjectionUnit(**kw)
