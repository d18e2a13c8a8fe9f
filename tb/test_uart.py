"""UART receiver and transmitter in the Amaranth simulator: loopback with random idle cycles and
backpressure, a rate mismatch between the ends, the latency/ii formulas, framing errors, breaks,
glitches and overruns, and parameter validation."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.lib import stream
from amaranth.sim import Simulator

from hw.uart import MIN_DIVISOR, UARTRx, UARTTx, divisor_for
from tb.streams import TRAFFIC, run_streams


class Loopback(wiring.Component):
    """A transmitter with bit time ``tx_divisor`` wired to a receiver with ``rx_divisor``."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    frame_error: Out(1)
    overrun: Out(1)

    def __init__(self, tx_divisor, rx_divisor):
        super().__init__()
        self.utx = UARTTx(tx_divisor)
        self.urx = UARTRx(rx_divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.utx = self.utx
        m.submodules.urx = self.urx
        wiring.connect(m, wiring.flipped(self.i), self.utx.i)
        wiring.connect(m, self.urx.o, wiring.flipped(self.o))
        m.d.comb += [self.urx.rx.eq(self.utx.tx), self.frame_error.eq(self.urx.frame_error),
                     self.overrun.eq(self.urx.overrun)]
        return m


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("divisor", [4, 5, 16])
def test_loopback(divisor, traffic):
    """Bytes through TX and RX (every value at the smallest divisor); idle on the source, short
    backpressure on the sink (shorter than a character, so nothing may be lost)."""
    rng = random.Random(divisor)
    data = list(range(256)) if divisor == MIN_DIVISOR else [rng.randrange(256) for _ in range(48)]
    dut = Loopback(divisor, divisor)
    got, = run_streams(dut, [(dut.i, data)], [(dut.o, len(data))], traffic=traffic,
                       seed=divisor, timeout=len(data) * 14 * divisor + 1000)
    assert got == data


@pytest.mark.parametrize("tx_div,rx_div", [(33, 32), (31, 32), (97, 100), (103, 100)])
def test_rate_mismatch(tx_div, rx_div):
    """About 3 % between the two ends still receives correctly (sampling at bit middles)."""
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0x7E, 0x3C] * 4
    dut = Loopback(tx_div, rx_div)
    got, = run_streams(dut, [(dut.i, data)], [(dut.o, len(data))],
                       timeout=len(data) * 12 * max(tx_div, rx_div))
    assert got == data


def _drive_line(ctx, line, bits, divisor):
    """Coroutine helper: drive ``bits`` (list of 0/1), each for ``divisor`` cycles."""
    async def run():
        for b in bits:
            ctx.set(line, b)
            for _ in range(divisor):
                await ctx.tick()
    return run()


def _frame_bits(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


@pytest.mark.parametrize("divisor", [4, 7, 10])
def test_rx_latency(divisor):
    """Cycles from the start bit's falling edge to ``o.valid`` equal :attr:`UARTRx.latency`."""
    dut = UARTRx(divisor)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.rx, 1)
        for _ in range(5):
            await ctx.tick()
        ctx.set(dut.rx, 0)                 # the falling edge, before this clock edge
        cycles = 0
        bits = _frame_bits(0xA7)
        for n in range(len(bits) * divisor + 3 * divisor):
            ctx.set(dut.rx, bits[n // divisor] if n // divisor < len(bits) else 1)
            await ctx.tick()
            cycles += 1
            if ctx.get(dut.o.valid) and "latency" not in seen:
                seen["latency"] = cycles
                seen["byte"] = ctx.get(dut.o.payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["byte"] == 0xA7
    assert seen["latency"] == dut.latency, (seen["latency"], dut.latency)


@pytest.mark.parametrize("divisor", [4, 9])
def test_tx_latency_and_ii(divisor):
    """The start bit appears ``latency`` cycles after acceptance; back-to-back characters are
    ``ii = 10·divisor`` cycles apart, with exactly ``divisor`` cycles per bit."""
    dut = UARTTx(divisor)
    data = [0x0F, 0xF0, 0x00]
    trace = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        accepted = []
        cycle = 0
        pending = list(data)
        while cycle < (len(data) + 1) * 10 * divisor + 5:
            if pending:
                ctx.set(dut.i.payload, pending[0])
            ctx.set(dut.i.valid, bool(pending))
            ready, tx = ctx.get(dut.i.ready), ctx.get(dut.tx)
            trace.append(tx)
            if pending and ready:
                accepted.append(cycle)
                pending.pop(0)
            await ctx.tick()
            cycle += 1
        trace.append(ctx.get(dut.tx))
        assert [b - a for a, b in zip(accepted, accepted[1:])] == [dut.ii] * (len(data) - 1)
        start = accepted[0] + dut.latency
        assert trace[start - 1] == 1 and trace[start] == 0
        for n, byte in enumerate(data):
            bits = _frame_bits(byte)
            line = trace[start + n * dut.ii: start + (n + 1) * dut.ii]
            assert line == [b for b in bits for _ in range(divisor)], (n, line)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_rx_errors():
    """A low stop bit is a framing error (byte dropped); a long break gives one error; a
    glitch shorter than half a bit is ignored; afterwards bytes are received again."""
    N = 8
    dut = UARTRx(N)
    events = {"bytes": [], "frame_error": 0, "overrun": 0}

    async def line(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3)
        await _drive_line(ctx, dut.rx, _frame_bits(0x12, stop=0) + [1] * 3, N)
        await _drive_line(ctx, dut.rx, [0] * 30 + [1] * 2, N)          # break
        ctx.set(dut.rx, 0)                                              # glitch: 2 cycles
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * N)
        await _drive_line(ctx, dut.rx, _frame_bits(0x34) + _frame_bits(0x56) + [1] * 2, N)

    async def monitor(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(70 * N):
            await ctx.tick()
            if ctx.get(dut.frame_error):
                events["frame_error"] += 1
            if ctx.get(dut.overrun):
                events["overrun"] += 1
            if ctx.get(dut.o.valid):
                events["bytes"].append(ctx.get(dut.o.payload))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(line, background=True)
    sim.add_testbench(monitor)
    sim.run()
    assert events == {"bytes": [0x34, 0x56], "frame_error": 2, "overrun": 0}


def test_rx_overrun():
    """A byte that completes while the previous one waits is dropped and flagged."""
    N = 4
    dut = UARTRx(N)
    result = {}

    async def line(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2)
        bits = sum((_frame_bits(b) for b in (0xA1, 0xB2, 0xC3)), [])
        await _drive_line(ctx, dut.rx, bits + [1] * 4, N)

    async def sink(ctx):
        overruns = 0
        for _ in range(25 * N):                      # past the second character's stop bit
            await ctx.tick()
            overruns += ctx.get(dut.overrun)
        result["first"] = ctx.get(dut.o.payload)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        payload, = await ctx.tick().sample(dut.o.payload).until(dut.o.valid)
        result["next"] = payload
        result["overruns"] = overruns

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(line, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert result == {"first": 0xA1, "next": 0xC3, "overruns": 1}


def test_parameters():
    with pytest.raises(ValueError, match="divisor = 3"):
        UARTRx(MIN_DIVISOR - 1)
    with pytest.raises(TypeError, match="divisor"):
        UARTTx(4.5)
    assert divisor_for(12e6, 115200) == 104
    assert divisor_for(25e6, 115200) == 217
    with pytest.raises(ValueError, match="baud = 4e\\+06 is too fast"):
        divisor_for(12e6, 4_000_000)
    with pytest.raises(ValueError, match="baud = 1.6e\\+06 is 6.2% off"):
        divisor_for(12e6, 1_600_000)
    with pytest.raises(ValueError, match="clk_hz"):
        divisor_for(0, 9600)
