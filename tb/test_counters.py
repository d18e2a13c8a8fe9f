"""hw.counters.CounterBank: every read, at every cycle, against a Python model of the counters
(random increments up to each counter's largest, random clears, narrow wrapping widths)."""

import random

import pytest
from amaranth.sim import Simulator

from hw.counters import CounterBank


CASES = {
    "one": ({"a": 1}, 8),                                   # N = 1: a counter flushed every cycle
    "two": ({"a": 3, "b": 1}, 6),
    "core": ({f"c{i}": top for i, top in enumerate([1, 1, 1, 2, 2, 1, 12, 12, 32, 1])}, 32),
    "wrap": ({"a": 7, "b": 1, "c": 5}, 4),                  # 4-bit counters wrap often
}


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_counter_bank(name, registered):
    events, width = CASES[name]
    dut = CounterBank(events, width=width, registered=registered)
    names = list(events)
    rng = random.Random(name)
    mask = (1 << width) - 1
    total = dict.fromkeys(names, 0)
    checked = []

    async def bench(ctx):
        pending = [None] * dut.latency         # (address, expected) of the reads in flight
        for cycle in range(3000):
            clear = rng.random() < 0.01
            inc = {n: (rng.randint(0, top) if rng.random() < 0.7 else top)
                   for n, top in events.items()}
            addr = rng.randrange(len(names))
            for n in names:
                ctx.set(dut.inc[n], inc[n])
            ctx.set(dut.clear, clear)
            ctx.set(dut.addr, addr)
            if pending[0] is not None:
                a, want = pending[0]
                got = ctx.get(dut.data)
                assert got == want, f"cycle {cycle}: counter {names[a]} reads {got}, " \
                                    f"expected {want}"
                checked.append(a)
            # the model: this cycle's increments count, unless the counters are cleared
            for n in names:
                total[n] = 0 if clear else total[n] + inc[n]
            pending = pending[1:] + [(addr, total[names[addr]] & mask)]
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert set(checked) == set(range(len(names)))


def test_counter_bank_errors():
    with pytest.raises(ValueError, match="at least one counter"):
        CounterBank({}, width=8)
    with pytest.raises(ValueError, match="largest increment of counter 'x' must be a positive"):
        CounterBank({"x": 0}, width=8)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        CounterBank({"x": 1}, width=0)
    assert CounterBank({"x": 1, "y": 2}, width=8).sweep_period == 2
