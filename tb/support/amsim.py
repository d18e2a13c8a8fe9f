"""Running Amaranth-simulator testbenches under a watchdog."""

from amaranth.sim import Simulator


__all__ = ["run_until"]


def run_until(dut, testbenches, done, *, timeout, period=1e-8):
    """Simulate ``dut`` with the async ``testbenches`` running in the background until
    ``done()`` is true; an ``AssertionError`` if it is not within ``timeout`` cycles."""
    async def watchdog(ctx):
        for _ in range(timeout):
            await ctx.tick()
            if done():
                return
        raise AssertionError(f"timeout after {timeout} cycles")

    sim = Simulator(dut)
    sim.add_clock(period)
    for testbench in testbenches:
        sim.add_testbench(testbench, background=True)
    sim.add_testbench(watchdog)
    sim.run()
