# amaranth: UnusedElaboratable=no
"""Exp2 unit in the Amaranth simulator against the golden ``exp2_fx``.

Exhaustive over the whole signed input range (a superset of ``[-(w_frac+2)·2^exp_frac, 0]``)
for small configs, with and without address truncation, under every traffic setting; the
default preset exhaustively at steady traffic; wide and narrow ``in_width``; the tag passes
through; latency and initiation interval measured against the properties.
"""

import random

import numpy as np
import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from spec.config import preset
from hw.exp2 import Exp2, default_in_width
from sim.golden import exp2_fx, exp2_lut
from tb.streams import TRAFFIC, run_streams

CONFIGS = {
    "tiny": preset("tiny"),
    # exp_lut_bits < exp_frac: LUT_ADDR_TRUNC drops the three low fraction bits.
    "trunc": preset("tiny").replace(name="trunc", exp_lut_bits=3),
    # The narrowest legal weight and exponent: 1-bit table address, 4 fraction bits.
    "narrow": preset("tiny").replace(name="narrow", exp_frac=2, exp_lut_bits=1, w_frac=4),
    "ice40": preset("ice40"),
}

TAG = data.StructLayout({"index": 16, "last": 1})


def full_range(dut):
    """Every ``x <= 0`` the input holds: ``-2^(in_width-1) … 0``."""
    return list(range(-(1 << (dut.in_width - 1)), 1))


def run_exp2(dut, xs, traffic, seed=0):
    """Stream ``xs`` through ``dut`` (tag = position) and return ``(w, tag)`` per output."""
    has_tag = dut.tag_shape is not None
    beats = []
    for n, x in enumerate(xs):
        beat = {"x": x}
        if has_tag:
            beat["tag"] = {"index": n & 0xffff, "last": int(n == len(xs) - 1)}
        beats.append(beat)
    out, = run_streams(dut, [(dut.i, beats)], [(dut.o, len(xs))], traffic=traffic, seed=seed,
                       timeout=100 * len(xs) + 1000)
    return out


def check(dut, xs, out):
    cfg = dut.cfg
    lut = exp2_lut(cfg)
    assert len(out) == len(xs)
    for n, (x, beat) in enumerate(zip(xs, out)):
        assert beat.w == exp2_fx(x, cfg, lut), (cfg.name, x, beat.w)
        if dut.tag_shape is not None:
            assert (beat.tag.index, beat.tag.last) == (n & 0xffff, int(n == len(xs) - 1)), n


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("name", ["tiny", "trunc"])
def test_exhaustive(name, traffic):
    """Every input value, in a shuffled order, under every traffic setting."""
    dut = Exp2(CONFIGS[name], tag_shape=TAG)
    xs = full_range(dut)
    assert xs[0] <= -(dut.cfg.w_frac + 2) << dut.cfg.exp_frac
    random.Random(name).shuffle(xs)
    check(dut, xs, run_exp2(dut, xs, traffic, seed=len(name)))


@pytest.mark.parametrize("name", ["narrow", "ice40"])
def test_exhaustive_other(name):
    dut = Exp2(CONFIGS[name], tag_shape=TAG)
    xs = full_range(dut)
    check(dut, xs, run_exp2(dut, xs, TRAFFIC[3], seed=4))


def test_default_exhaustive():
    """Default preset: every fraction value for every integer part (the whole range), steady."""
    cfg = preset("default")
    dut = Exp2(cfg)
    xs = full_range(dut)
    F = cfg.exp_frac
    ints = {x >> F for x in xs}
    assert min(ints) <= -(cfg.w_frac + 2) and max(ints) == 0
    check(dut, xs, run_exp2(dut, xs, TRAFFIC[0]))


def test_default_stress():
    """Default preset under stress traffic: one random fraction per integer part, plus edges."""
    cfg = preset("default")
    dut = Exp2(cfg, tag_shape=TAG)
    rng = random.Random(3)
    F = cfg.exp_frac
    xs = [(n << F) + rng.randrange(1 << F) for n in range(-(cfg.w_frac + 3), 0)]
    xs += [0, -1, -(1 << F), -(cfg.w_frac << F), -(cfg.w_frac << F) - 1, full_range(dut)[0]]
    rng.shuffle(xs)
    check(dut, xs, run_exp2(dut, xs, TRAFFIC[4], seed=5))


@pytest.mark.parametrize("in_width", [1, 4, 6, 7, 24, 40])
def test_in_width(in_width):
    """A wider input only widens the saturation compare; a narrow one still splits by floor."""
    cfg = CONFIGS["tiny"]
    dut = Exp2(cfg, in_width=in_width, tag_shape=8)
    lo = -(1 << (in_width - 1))
    rng = random.Random(in_width)
    xs = [x for x in range(max(lo, -2000), 1)]
    xs += [lo, lo + 1] + [rng.randrange(lo, 1) for _ in range(200)]
    rng.shuffle(xs)
    beats = [{"x": x, "tag": n & 0xff} for n, x in enumerate(xs)]
    out, = run_streams(dut, [(dut.i, beats)], [(dut.o, len(xs))], traffic=TRAFFIC[2], seed=1)
    lut = exp2_lut(cfg)
    for n, (x, beat) in enumerate(zip(xs, out)):
        assert (beat.w, beat.tag) == (exp2_fx(x, cfg, lut), n & 0xff), (in_width, x)


def test_saturation_boundary():
    """``w`` is nonzero down to ``-w_frac·2^exp_frac`` and zero below it."""
    for cfg in CONFIGS.values():
        F, WF = cfg.exp_frac, cfg.w_frac
        assert exp2_fx(-(WF << F), cfg) >= 1
        assert exp2_fx(-(WF << F) - 1, cfg) == 0
    # The hardware agrees at the boundary (the exhaustive tests cover the rest).
    dut = Exp2(CONFIGS["tiny"])
    WF, F = dut.cfg.w_frac, dut.cfg.exp_frac
    xs = [-(WF << F) + 1, -(WF << F), -(WF << F) - 1, -((WF + 1) << F), -((WF + 2) << F)]
    out = run_exp2(dut, xs, TRAFFIC[0])
    assert [b.w for b in out] == [exp2_fx(x, dut.cfg) for x in xs]
    assert [b.w > 0 for b in out] == [True, True, False, False, False]


def test_layouts():
    cfg = CONFIGS["tiny"]
    plain = Exp2(cfg)
    assert [name for name, _ in plain.i.payload.shape()] == ["x"]
    assert [name for name, _ in plain.o.payload.shape()] == ["w"]
    assert len(plain.o.payload.w) == cfg.w_frac + 1
    assert len(plain.i.payload.x) == default_in_width(cfg)
    tagged = Exp2(cfg, tag_shape=TAG)
    assert [name for name, _ in tagged.i.payload.shape()] == ["x", "tag"]
    assert [name for name, _ in tagged.o.payload.shape()] == ["w", "tag"]
    with pytest.raises(ValueError, match="in_width"):
        Exp2(cfg, in_width=0)


@pytest.mark.parametrize("name", ["tiny", "trunc", "ice40", "default"])
def test_latency_and_ii(name):
    """Steady traffic: x_j is accepted every ii cycles and its w appears latency cycles later."""
    cfg = preset("default") if name == "default" else CONFIGS[name]
    dut = Exp2(cfg)
    xs = [0, -1, -(1 << cfg.exp_frac) - 3, -5 << cfg.exp_frac, -7, -1000, 0, -2]
    accepted, emitted, values = [], [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        cycle = j = 0
        while len(emitted) < len(xs):
            if j < len(xs):
                ctx.set(dut.i.payload.x, xs[j])
            else:
                ctx.set(dut.i.valid, 0)
            _, _, fire, out_valid, w = await ctx.tick().sample(
                dut.i.valid & dut.i.ready, dut.o.valid, dut.o.payload.w)
            if out_valid:
                emitted.append(cycle)
                values.append(w)
            if fire:
                accepted.append(cycle)
                j += 1
            cycle += 1
            assert cycle < 200

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert np.all(np.diff(accepted) == dut.ii)
    assert [e - a for a, e in zip(accepted, emitted)] == [dut.latency] * len(xs)
    assert values == [exp2_fx(x, cfg) for x in xs]


def test_stall_holds_rom_output():
    """A full pipeline held for many cycles keeps every value (the read port's enable)."""
    cfg = CONFIGS["trunc"]
    dut = Exp2(cfg)
    xs = [-(a << 3) - 1 for a in range(8)] + [-700, 0, -64, -65]
    got = []

    async def bench(ctx):
        j = 0
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload.x, xs[0])
        for cycle in range(400):
            ready = (cycle // 7) % 3 == 2           # long stalls, short bursts
            ctx.set(dut.o.ready, ready)
            if j < len(xs):
                ctx.set(dut.i.payload.x, xs[j])
            else:
                ctx.set(dut.i.valid, 0)
            _, _, fire, take, w = await ctx.tick().sample(
                dut.i.valid & dut.i.ready, dut.o.valid & dut.o.ready, dut.o.payload.w)
            if take:
                got.append(w)
            if fire:
                j += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [exp2_fx(x, cfg) for x in xs]


def test_properties():
    default = preset("default")
    assert Exp2(default).latency == 2
    assert Exp2(default).ii == 1
    assert default_in_width(default) == 14          # -(15+2)·2^8 = -4352 >= -2^13
    assert default_in_width(CONFIGS["tiny"]) == 11  # -(10+2)·2^6 = -768 >= -2^10
    for cfg in list(CONFIGS.values()) + [default]:
        w = default_in_width(cfg)
        assert -(1 << (w - 1)) <= -((cfg.w_frac + 2) << cfg.exp_frac) < -(1 << (w - 2))
        dut = Exp2(cfg)
        assert dut.lut == exp2_lut(cfg)
        assert len(dut.lut) == cfg.derived.exp_lut_depth
        assert max(dut.lut) < 1 << (cfg.w_frac + 1)
