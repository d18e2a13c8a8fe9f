"""SkidBuffer: every beat in order under every traffic pattern, ready is a register, latency 1."""

import random

import pytest
from amaranth.sim import Simulator

from hw.skid import SkidBuffer
from tb.streams import TRAFFIC, run_streams


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("skid", [True, False], ids=["skid", "plain"])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_order(traffic, skid):
    data = [random.Random(1).randrange(1 << 12) for _ in range(300)]
    data = [(x * 7919 + n) & 0xfff for n, x in enumerate(data)]
    dut = SkidBuffer(12, skid=skid)
    got, = run_streams(dut, [(dut.i, data)], [(dut.o, len(data))], traffic=traffic, seed=4)
    assert got == data


def test_ready_is_registered_and_latency():
    dut = SkidBuffer(8)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 5)
        await ctx.tick()                         # 5 into the output register
        seen["latency_valid"] = ctx.get(dut.o.valid)
        ctx.set(dut.i.payload, 6)
        await ctx.tick()                         # 6 into the skid register
        seen["ready_full"] = ctx.get(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)                  # ready toggling must not reach i.ready
        seen["ready_same_cycle"] = ctx.get(dut.i.ready)
        out = []
        for _ in range(3):
            _, _, v, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if v:
                out.append(p)
        seen["out"] = out

    _simulate(dut, bench)
    assert seen["latency_valid"] == 1 == dut.latency
    assert seen["ready_full"] == 0 and seen["ready_same_cycle"] == 0
    assert seen["out"] == [5, 6]


def test_plain_stage():
    """``skid=False``: one register, ready passes through combinationally, latency 1."""
    dut = SkidBuffer(8, skid=False)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 5)
        seen["ready_empty"] = ctx.get(dut.i.ready)
        await ctx.tick()                         # 5 into the output register
        seen["latency_valid"] = ctx.get(dut.o.valid)
        seen["ready_held"] = ctx.get(dut.i.ready)
        ctx.set(dut.i.payload, 6)
        ctx.set(dut.o.ready, 1)                  # the consumer's ready reaches i.ready at once
        seen["ready_same_cycle"] = ctx.get(dut.i.ready)
        out = []
        for _ in range(2):
            _, _, v, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if v:
                out.append(p)
            ctx.set(dut.i.valid, 0)
        seen["out"] = out

    _simulate(dut, bench)
    assert seen["latency_valid"] == 1 == dut.latency
    assert seen["ready_empty"] == 1 and seen["ready_held"] == 0 and seen["ready_same_cycle"] == 1
    assert seen["out"] == [5, 6]
