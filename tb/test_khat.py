"""KhatPredictor (hw/khat.py), on-demand K/V's phase 1.1, against the golden model
(sim.ondemand.predict_keys) in the Amaranth simulator, under every traffic setting."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module

from hw.khat import KhatPredictor
from sim.ondemand import khat_shift_for, lz_codes, predict_keys
from spec.config import ConfigError
from tb.streams import TRAFFIC, run_streams
from tb.support.amsim import run_until

#: (d, d_model, x_lanes, khat_width): tiny, odd sizes, one lane, a MiniLM-like head at 16 bits.
CONFIGS = {"tiny": (4, 8, 4, 8), "odd": (3, 12, 4, 6), "one-lane": (2, 5, 1, 8),
           "wide": (8, 48, 16, 16)}


def words(codes, x_lanes):
    """The load words of a head's codes ``[d, d_model]`` (chunk-major, column-minor)."""
    d, d_model = codes.shape
    return [[int(codes[c, k * x_lanes + i]) for c in range(d) for i in range(x_lanes)]
            for k in range(d_model // x_lanes)]


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_khat_equals_golden(name, traffic):
    d, d_model, xl, width = CONFIGS[name]
    rng = np.random.default_rng(abs(hash((name, repr(traffic)))) % 2**32)
    S = 6
    X = rng.integers(-127, 128, (S, d_model))
    X[0] = 127                                     # a row that saturates
    X[1] = 0
    W = rng.integers(-127, 128, (d, d_model))
    W[:, ::3] = 0                                  # zero weights (LZ_ZERO)
    W[0] = 127
    codes = lz_codes(W)
    for shift in (0, khat_shift_for(d_model * 127 * 64 // 3, width)):
        dut = KhatPredictor(d, d_model, xl, width)
        beats = [{"data": [int(v) for v in X[j, k * xl:(k + 1) * xl]],
                  "last": int(j == S - 1 and k == d_model // xl - 1)}
                 for j in range(S) for k in range(d_model // xl)]
        bench = _Bench(dut, shift)
        out, = run_streams(bench, [(dut.w, words(codes, xl)), (dut.x, beats)],
                           [(dut.khat, S)], traffic=traffic, seed=shift + 7)
        want = predict_keys(X, codes, shift, width)
        assert [[int(v) for v in o.data] for o in out] == want.tolist(), (name, shift)
        assert [int(o.last) for o in out] == [0] * (S - 1) + [1]


class _Bench(Elaboratable):
    """The unit with its ``shift`` register held."""

    def __init__(self, dut, shift):
        self.dut, self.shift = dut, shift

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.d.comb += self.dut.shift.eq(self.shift)
        return m


def test_latency_and_ii():
    """Measured: rows back to back at full rate, a row every ii cycles, its K̂ latency
    cycles after its last chunk."""
    from amaranth.sim import Simulator

    assert KhatPredictor(32, 384, 16, 8).ii == 24
    d, d_model, xl, width = CONFIGS["odd"]
    dut = KhatPredictor(d, d_model, xl, width)
    codes = lz_codes(np.ones((d, d_model), np.int64))
    accepted, produced = [], []

    async def bench(ctx):
        ctx.set(dut.khat.ready, 1)
        for word in words(codes, xl):
            ctx.set(dut.w.valid, 1)
            ctx.set(dut.w.payload, word)
            await ctx.tick()
        ctx.set(dut.w.valid, 0)
        ctx.set(dut.x.valid, 1)
        ctx.set(dut.x.payload, {"data": [1] * xl, "last": 0})
        for cycle in range(40):
            if ctx.get(dut.x.ready):
                accepted.append(cycle)
            if ctx.get(dut.khat.valid):
                produced.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    n = dut.ii
    assert accepted[:2 * n] == list(range(accepted[0], accepted[0] + 2 * n))
    assert produced[0] - accepted[n - 1] == dut.latency
    assert produced[1] - produced[0] == n


@pytest.mark.parametrize("kw,message", [
    (dict(d=4, d_model=10, x_lanes=4), "x_lanes = 4 must divide d_model = 10"),
    (dict(d=0, d_model=8, x_lanes=4), "d = 0 is out of range; allowed 1 … ∞"),
    (dict(d=4, d_model=8, x_lanes=4, khat_width=40),
     "khat_width = 40 is out of range; allowed 2 … 32"),
    (dict(d=4, d_model=8, x_lanes=True), "x_lanes must be an integer 1 … ∞, not True"),
])
def test_bad_parameters(kw, message):
    with pytest.raises(ConfigError, match=message):
        KhatPredictor(**kw)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_reload_waits_for_the_rows_inside(traffic):
    """The next head's codes are offered as soon as the last chunk of this head's rows is
    accepted: the rows still inside finish with the old codes."""
    import random

    from tb.streams import stream_get, stream_put

    d, d_model, xl, width = CONFIGS["odd"]
    rng = np.random.default_rng(5)
    sets = []
    for _ in range(2):
        X = rng.integers(-127, 128, (3, d_model))
        codes = lz_codes(rng.integers(-127, 128, (d, d_model)))
        sets.append((X, codes))
    dut = KhatPredictor(d, d_model, xl, width)
    bench = _Bench(dut, 2)
    got = []

    async def source(ctx):
        r = random.Random(1)
        for X, codes in sets:
            await stream_put(ctx, dut.w, words(codes, xl), rng=r, traffic=traffic)
            await stream_put(ctx, dut.x, [{"data": [int(v) for v in X[j, k * xl:(k + 1) * xl]],
                                           "last": 0}
                                          for j in range(3) for k in range(d_model // xl)],
                             rng=r, traffic=traffic)

    async def sink(ctx):
        got.extend(await stream_get(ctx, dut.khat, 6, rng=random.Random(2), traffic=traffic))

    run_until(bench, [source, sink], lambda: len(got) == 6, timeout=20_000)
    want = np.concatenate([predict_keys(X, c, 2, width) for X, c in sets])
    assert [[int(v) for v in o.data] for o in got] == want.tolist()
