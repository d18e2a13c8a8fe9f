"""Stream test toolbox for the Amaranth simulator: sources with random idle cycles, sinks with
random backpressure, and a runner that wires them to a component and checks the output.

Every stream test is parametrised over :data:`TRAFFIC`: steady traffic, idle cycles on the
sources, backpressure on the sinks, both, and a stress setting with long random gaps.
"""

import random

from amaranth.sim import Simulator


__all__ = ["TRAFFIC", "Traffic", "stream_put", "stream_get", "run_streams"]


class Traffic:
    """Probabilities of an idle source cycle and of a not-ready sink cycle."""

    def __init__(self, name, idle=0.0, backpressure=0.0, burst=1):
        self.name, self.idle, self.backpressure, self.burst = name, idle, backpressure, burst

    def __repr__(self):
        return self.name

    def gaps(self, rng, prob):
        """Number of wait cycles before the next beat."""
        n = 0
        while prob and rng.random() < prob:
            n += rng.randint(1, self.burst)
        return n


TRAFFIC = [
    Traffic("steady"),
    Traffic("idle", idle=0.4),
    Traffic("backpressure", backpressure=0.4),
    Traffic("both", idle=0.3, backpressure=0.3),
    Traffic("stress", idle=0.5, backpressure=0.5, burst=5),
]


async def stream_put(ctx, stream, payloads, *, rng=None, traffic=None):
    """Send ``payloads`` on ``stream``, holding each until accepted; optional idle cycles."""
    for payload in payloads:
        if traffic is not None:
            for _ in range(traffic.gaps(rng, traffic.idle)):
                ctx.set(stream.valid, 0)
                await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, payload)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, count, *, rng=None, traffic=None):
    """Receive ``count`` payloads from ``stream`` (as Python values); optional backpressure."""
    out = []
    for _ in range(count):
        if traffic is not None:
            for _ in range(traffic.gaps(rng, traffic.backpressure)):
                ctx.set(stream.ready, 0)
                await ctx.tick()
        ctx.set(stream.ready, 1)
        payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
        out.append(payload)
    ctx.set(stream.ready, 0)
    return out


def run_streams(dut, sources, sinks, *, traffic=None, seed=0, timeout=200_000, vcd=None):
    """Simulate ``dut`` with one testbench per source and sink; returns the sinks' payloads.

    ``sources`` is a list of ``(stream, payloads)``; ``sinks`` a list of ``(stream, count)``.
    Each process gets its own random generator derived from ``seed``. The run fails if the
    sinks have not received everything after ``timeout`` cycles.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    results = [None] * len(sinks)
    done = [False] * len(sinks)

    for n, (stream, payloads) in enumerate(sources):
        async def source(ctx, stream=stream, payloads=payloads, n=n):
            await stream_put(ctx, stream, payloads, rng=random.Random(seed * 1000 + n),
                             traffic=traffic)
        sim.add_testbench(source, background=True)

    for n, (stream, count) in enumerate(sinks):
        async def sink(ctx, stream=stream, count=count, n=n):
            results[n] = await stream_get(ctx, stream, count,
                                          rng=random.Random(seed * 1000 + 500 + n),
                                          traffic=traffic)
            done[n] = True
        sim.add_testbench(sink)

    async def watchdog(ctx):
        for _ in range(timeout):
            await ctx.tick()
            if all(done):
                return
        raise AssertionError(f"timeout: sinks still waiting after {timeout} cycles")
    sim.add_testbench(watchdog)

    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    if not all(done):
        raise AssertionError("simulation ended before the sinks received everything")
    return results
