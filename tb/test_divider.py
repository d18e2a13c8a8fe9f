# amaranth: UnusedElaboratable=no
"""Divider unit (pipelined and iterative) in the Amaranth simulator against the golden
``div_round_half_away``, with saturation and the overflow flag outside the quotient range.

Exhaustive for a small divider (every numerator and denominator, den = 0 included); edge cases
and hypothesis property tests for the SU-FA widths of the tiny and default presets; every
traffic setting; latency and initiation interval measured against the properties.
"""

import random
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from spec.config import preset
from hw.divider import Divider
from sim.golden import div_round_half_away
from tb.streams import TRAFFIC, run_streams

# No shrinking: a failing list names its (num, den) in the assertion, and shrinking 50-pair
# lists through the simulator would take minutes.
HSET = settings(max_examples=10, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

IMPLS = {"pipelined": False, "iterative": True}


def make(name, iterative, tag_shape=None):
    if name in ("tiny", "default", "ice40"):
        return Divider.for_config(preset(name), iterative=iterative, tag_shape=tag_shape)
    if name == "small":
        return Divider(8, 4, 4, iterative=iterative, tag_shape=tag_shape)
    if name == "odd":                  # quotient wider than the numerator
        return Divider(5, 3, 7, iterative=iterative, tag_shape=tag_shape)
    if name == "wide":                 # numerator far wider: the up-front overflow test
        return Divider(9, 3, 2, iterative=iterative, tag_shape=tag_shape)
    raise KeyError(name)


def expect(num, den, quot_width):
    """The unit's contract: ``div_round_half_away``, saturated (with the flag) if it does not
    fit; ``den == 0`` saturates by the numerator's sign."""
    top, bottom = (1 << (quot_width - 1)) - 1, -(1 << (quot_width - 1))
    if den == 0:
        return (top if num >= 0 else bottom, 1)
    q = div_round_half_away(num, den)
    if q > top:
        return (top, 1)
    if q < bottom:
        return (bottom, 1)
    return (q, 0)


def run_div(dut, pairs, traffic=TRAFFIC[0], seed=0):
    has_tag = dut.tag_shape is not None
    beats = []
    for n, (num, den) in enumerate(pairs):
        beat = {"num": num, "den": den}
        if has_tag:
            beat["tag"] = n & ((1 << dut.tag_shape) - 1)
        beats.append(beat)
    out, = run_streams(dut, [(dut.i, beats)], [(dut.o, len(pairs))], traffic=traffic,
                       seed=seed, timeout=(dut.ii + 60) * len(pairs) * 4 + 1000)
    return out


def check(dut, pairs, out):
    assert len(out) == len(pairs)
    for n, ((num, den), beat) in enumerate(zip(pairs, out)):
        got = (beat.quot, beat.overflow)
        assert got == expect(num, den, dut.quot_width), (num, den, got)
        if dut.tag_shape is not None:
            assert beat.tag == n & ((1 << dut.tag_shape) - 1), n


def in_range(dut, pairs):
    lo, hi = -(1 << (dut.num_width - 1)), (1 << (dut.num_width - 1)) - 1
    dmax = (1 << dut.den_width) - 1
    return [(a, b) for a, b in pairs if lo <= a <= hi and 0 <= b <= dmax]


def edge_pairs(dut):
    """num = 0, ±1, den = 1 and max, exact halves, extreme numerators, the largest quotients
    that fit and the first that overflow (both signs), den = 0."""
    lo, hi = -(1 << (dut.num_width - 1)), (1 << (dut.num_width - 1)) - 1
    dmax = (1 << dut.den_width) - 1
    top, bottom = (1 << (dut.quot_width - 1)) - 1, -(1 << (dut.quot_width - 1))
    pairs = [(0, 1), (0, dmax), (1, 1), (-1, 1), (1, 2), (-1, 2), (1, 3), (-1, 3),
             (1, dmax), (-1, dmax), (3, 2), (-3, 2), (5, 2), (-5, 2), (7, 2), (-7, 2),
             (2, 4), (-2, 4), (6, 4), (-6, 4), (3, 6), (-3, 6), (5, 10), (-5, 10),
             (lo, dmax), (hi, dmax), (lo, 1), (hi, 1), (lo, 2), (lo, 3),
             (hi // 2, dmax), (lo // 2, dmax), (lo + 1, dmax),
             (0, 0), (1, 0), (-1, 0), (hi, 0), (lo, 0)]
    for den in sorted({1, 2, 3, 4, 5, 7, dmax // 3, dmax // 2 + 1, dmax - 1, dmax} - {0}):
        half_lo = (den - 1) // 2          # largest remainder that rounds down
        half_hi = (den + 1) // 2          # smallest remainder that rounds up (2r >= den)
        pairs += [
            (top * den, den), (top * den + half_lo, den),            # fits: top
            (top * den + half_hi, den), ((top + 1) * den, den),      # rounds to top + 1
            (bottom * den, den), (bottom * den - half_lo, den),      # fits: bottom
            (bottom * den - half_hi, den), ((bottom - 1) * den, den),
            (-(top * den + half_lo), den), (-(top * den + half_hi), den),
        ]
    return in_range(dut, pairs)


def random_pairs(rng, dut, count):
    """A mix of quotients that fit (most), near the range ends, and overflowing ones."""
    lo, hi = -(1 << (dut.num_width - 1)), (1 << (dut.num_width - 1)) - 1
    dmax = (1 << dut.den_width) - 1
    qlim = 1 << (dut.quot_width - 1)
    pairs = []
    for _ in range(count):
        den = rng.choice([rng.randint(1, dmax), rng.randint(1, min(dmax, 64)),
                          dmax - rng.randint(0, min(dmax - 1, 64))])
        kind = rng.random()
        if kind < 0.7:
            num = rng.randint(-qlim * den, qlim * den)
        elif kind < 0.85:
            num = rng.choice([qlim, -qlim]) * den + rng.randint(-den, den)
        else:
            num = rng.randint(lo, hi)
        pairs.append((max(lo, min(hi, num)), den))
    return pairs


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["small", "odd", "wide"])
def test_exhaustive_small(name, impl):
    """Every (num, den) of a small divider, den = 0 and overflow included."""
    dut = make(name, IMPLS[impl])
    pairs = [(a, b) for a in range(-(1 << (dut.num_width - 1)), 1 << (dut.num_width - 1))
             for b in range(1 << dut.den_width)]
    random.Random(name).shuffle(pairs)
    check(dut, pairs, run_div(dut, pairs, TRAFFIC[3] if impl == "pipelined" else TRAFFIC[0]))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["tiny", "default"])
def test_edges(name, impl):
    dut = make(name, IMPLS[impl], tag_shape=12)
    pairs = edge_pairs(dut)
    out = run_div(dut, pairs, TRAFFIC[3], seed=2)
    check(dut, pairs, out)
    # Spot checks of the brief's examples and both overflow directions.
    got = {p: (b.quot, b.overflow) for p, b in zip(pairs, out)}
    top, bottom = (1 << (dut.quot_width - 1)) - 1, -(1 << (dut.quot_width - 1))
    assert [got[(a, 2)] for a in (3, -3, 5, -5)] == [(2, 0), (-2, 0), (3, 0), (-3, 0)]
    assert got[(top * 7 + 3, 7)] == (top, 0) and got[(top * 7 + 4, 7)] == (top, 1)
    assert got[(bottom * 7 - 3, 7)] == (bottom, 0) and got[(bottom * 7 - 4, 7)] == (bottom, 1)
    assert got[(0, 0)] == (top, 1) and got[(-1, 0)] == (bottom, 1)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("impl", IMPLS)
def test_traffic(impl, traffic):
    dut = make("tiny", IMPLS[impl], tag_shape=10)
    rng = random.Random(zlib.crc32(f"{impl}-{traffic.name}".encode()))
    pairs = random_pairs(rng, dut, 120 if impl == "pipelined" else 60)
    check(dut, pairs, run_div(dut, pairs, traffic, seed=9))


@st.composite
def pair_lists(draw, num_width, den_width, quot_width, size=50):
    lo, hi = -(1 << (num_width - 1)), (1 << (num_width - 1)) - 1
    dmax = (1 << den_width) - 1
    qlim = 1 << (quot_width - 1)
    pairs = []
    for _ in range(size):
        den = draw(st.one_of(st.integers(1, dmax), st.integers(1, min(dmax, 300)),
                             st.sampled_from([1, 2, dmax])))
        num = draw(st.one_of(
            st.integers(max(lo, -qlim * den - den), min(hi, qlim * den + den)),   # fits, mostly
            st.integers(lo, hi),                                                 # anything
            st.integers(-4 * den, 4 * den).map(lambda v: max(lo, min(hi, v)))))  # small q
        pairs.append((num, den))
    return pairs


def _property(name, impl, pairs):
    dut = make(name, IMPLS[impl])
    check(dut, pairs, run_div(dut, pairs))


def _widths(name):
    """``(num_width, den_width, quot_width)`` of the SU-FA divide (no component built)."""
    cfg = preset(name)
    der = cfg.derived
    return der.o_width + cfg.out_frac, der.l_width, der.out_width


@pytest.mark.parametrize("impl", IMPLS)
@HSET
@given(pairs=pair_lists(*_widths("tiny")))
def test_property_tiny(impl, pairs):
    _property("tiny", impl, pairs)


@pytest.mark.parametrize("impl", IMPLS)
@HSET
@given(pairs=pair_lists(*_widths("default")))
def test_property_default(impl, pairs):
    _property("default", impl, pairs)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["small", "tiny", "default"])
def test_latency_and_ii(name, impl):
    """Input always valid, output always ready: operands accepted every ii cycles, each
    quotient latency cycles after its acceptance."""
    dut = make(name, IMPLS[impl])
    pairs = random_pairs(random.Random(1), dut, 6) + [(1, 0), (0, 1)]
    accepted, emitted, values = [], [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        cycle = j = 0
        while len(emitted) < len(pairs):
            if j < len(pairs):
                ctx.set(dut.i.payload, {"num": pairs[j][0], "den": pairs[j][1]})
            else:
                ctx.set(dut.i.valid, 0)
            _, _, fire, out_valid, quot, ovf = await ctx.tick().sample(
                dut.i.valid & dut.i.ready, dut.o.valid, dut.o.payload.quot,
                dut.o.payload.overflow)
            if out_valid:
                emitted.append(cycle)
                values.append((quot, ovf))
            if fire:
                accepted.append(cycle)
                j += 1
            cycle += 1
            assert cycle < 1000

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert np.all(np.diff(accepted) == dut.ii)
    assert [e - a for a, e in zip(accepted, emitted)] == [dut.latency] * len(pairs)
    assert values == [expect(a, b, dut.quot_width) for a, b in pairs]


def test_for_config_widths():
    for name in ("tiny", "default", "ice40", "ecp5"):
        cfg = preset(name)
        der = cfg.derived
        dut = Divider.for_config(cfg)
        assert (dut.num_width, dut.den_width, dut.quot_width) == \
            (der.o_width + cfg.out_frac, der.l_width, der.out_width)
        assert len(dut.i.payload.num) == der.o_width + cfg.out_frac
        assert len(dut.o.payload.quot) == der.out_width
        # SU-FA never overflows: |O| < 2^data_width fits out_width with out_frac bits.
        assert (1 << cfg.data_width) << cfg.out_frac <= 1 << (der.out_width - 1)


def test_properties():
    cfg = preset("default")
    pipe = Divider.for_config(cfg)
    it = Divider.for_config(cfg, iterative=True)
    qw = cfg.derived.out_width
    assert qw == 17
    assert (pipe.latency, pipe.ii) == (qw + 3, 1) == (20, 1)
    assert (it.latency, it.ii) == ((qw + 2) // 2 + 2, (qw + 2) // 2 + 1) == (11, 10)
    odd = Divider(8, 4, 4, iterative=True)               # 5 steps: 2 + 2 + 1
    assert (odd.latency, odd.ii) == (5, 4)
    assert [name for name, _ in pipe.o.payload.shape()] == ["quot", "overflow"]
    tagged = Divider(8, 4, 4, tag_shape=3)
    assert [name for name, _ in tagged.i.payload.shape()] == ["num", "den", "tag"]
    assert [name for name, _ in tagged.o.payload.shape()] == ["quot", "overflow", "tag"]
    with pytest.raises(ValueError, match="quot_width"):
        Divider(8, 4, 0)
