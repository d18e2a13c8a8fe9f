"""LeadingCounter: exhaustive for small widths, random for wide and odd ones."""

import random

import pytest
from amaranth.sim import Simulator

from hw.lzc import LeadingCounter
from sim.golden import lzc as golden_lzc


def _check(width, ones, values):
    dut = LeadingCounter(width, ones=ones)
    mask = (1 << width) - 1

    async def bench(ctx):
        for v in values:
            ctx.set(dut.value, v)
            expect = golden_lzc((~v & mask) if ones else v, width)
            assert ctx.get(dut.count) == expect, (width, ones, v)
            assert ctx.get(dut.all) == (v == (mask if ones else 0)), (width, ones, v)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("ones", [False, True])
@pytest.mark.parametrize("width", range(1, 11))
def test_exhaustive(width, ones):
    _check(width, ones, range(1 << width))


@pytest.mark.parametrize("width", [13, 16, 17, 31, 33])
def test_random_wide(width):
    rng = random.Random(width)
    # Random values plus every single-bit and all-ones-below-bit pattern.
    values = [rng.getrandbits(width) >> rng.randrange(width) for _ in range(300)]
    values += [1 << b for b in range(width)] + [(1 << b) - 1 for b in range(width + 1)]
    _check(width, False, values)
    _check(width, True, values)


def test_properties():
    dut = LeadingCounter(12)
    assert (dut.latency, dut.ii, dut.width) == (0, 1, 12)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        LeadingCounter(0)
