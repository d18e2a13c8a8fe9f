"""cocotb driver of the SOFA core (``sofa_top``), shared by the benchmark and the core's tests.

:class:`CoreDriver` loads K/V over ``kv_load``, writes and reads the run-time registers over the
register port, streams queries in (random idle cycles) and collects ``O`` (random
backpressure) against :func:`sim.golden.sofa_attention`, then reads the counters;
:meth:`CoreDriver.check` compares the output, the counters (a config without counters must
read 0) and the busy cycles (the ``busy`` port, counted here, equal to the ``busy_cycles``
counter) with :mod:`sim.perf`'s cycle model.

Runs inside the simulator (see :mod:`gen.rtlsim.runner`).
"""

from typing import NamedTuple

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from gen.rtlsim.streams import Checker, StreamSink, StreamSource
from hw.sufa import out_layout
from hw.top import kv_load_layout, query_layout
from sim.golden import sofa_attention
from sim.perf import core_cycles
from spec.config import RunParams
from spec.regmap import COUNTER_BASE, Reg, counter_names, expected_counters, parameter_writes


__all__ = ["CoreDriver", "CoreRun", "params_for", "MODEL_TOLERANCE"]

#: The cycle model is exact to 5 % where SADS takes a key per cycle (see sim/perf.py).
MODEL_TOLERANCE = 0.05


def params_for(cfg, S, *, top_k=None, dense=False, radius=None, c=1e-3):
    """Run-time parameters: ``top_k`` defaults to ``k_max``, ``radius`` to no clipping, ``c`` is
    the float scale ``s_q·s_k·log2(e)/sqrt(d)``."""
    return RunParams(seq_len=S, top_k=top_k or cfg.k_max,
                     radius=cfg.derived.radius_inf if radius is None else radius,
                     scale_log2e=RunParams.scale_from_float(cfg, c), dense=dense)


class CoreRun(NamedTuple):
    """What :meth:`CoreDriver.run` observed: the output checker, the counters read back (plus
    ``busy_seen``, the cycles ``busy`` was high, and ``status``) and the golden result."""
    checker: Checker
    counters: dict
    result: object


class CoreDriver:
    """Drives one ``sofa_top`` DUT generated with ``cfg``.

    Parameters
    ----------
    dut : cocotb handle
        The top level.
    cfg : SofaConfig
        The config the DUT was generated with (:func:`gen.rtlsim.streams.load_sidecar`).
    clock_ns : int
        Clock period.
    """

    def __init__(self, dut, cfg, *, clock_ns=10):
        self.dut, self.cfg, self.clock_ns = dut, cfg, clock_ns

    def start_clock(self):
        """Once per cocotb test (the clock task ends with the test)."""
        cocotb.start_soon(Clock(self.dut.clk, self.clock_ns, unit="ns").start())

    async def reset(self):
        """Two cycles of reset with every input idle; the clock must be running."""
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.rst.value = 1
        for port in ("q__valid", "kv_load__valid", "reg_we"):
            getattr(dut, port).value = 0
        dut.o__ready.value = 0
        for _ in range(2):
            await RisingEdge(dut.clk)
        dut.rst.value = 0

    async def write_reg(self, addr, value):
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.reg_addr.value, dut.reg_wdata.value, dut.reg_we.value = int(addr), int(value), 1
        await FallingEdge(dut.clk)
        dut.reg_we.value = 0

    async def read_reg(self, addr):
        """The address, then the data one cycle later (the core's read latency)."""
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.reg_addr.value = int(addr)
        await FallingEdge(dut.clk)
        await ReadOnly()
        return int(dut.reg_rdata.value)

    async def load_kv(self, K, V):
        source = StreamSource(self.dut, "kv_load", kv_load_layout(self.cfg))
        await source.send([{"index": j, "k": [int(x) for x in K[j]],
                            "v": [int(x) for x in V[j]]} for j in range(len(K))])

    async def set_params(self, params):
        """The run-time registers (:func:`spec.regmap.parameter_writes`), then clear the
        counters and the error flag."""
        for reg, value in parameter_writes(self.cfg, params):
            await self.write_reg(reg, value)
        await self.write_reg(Reg.STATUS, 0b11)

    async def run(self, Q, K, V, params, traffic, seed, *, want=None):
        """Reset, load K/V, set ``params``, run the queries ``Q``; returns a :class:`CoreRun`.

        Parameters
        ----------
        Q, K, V : numpy.ndarray
            int8 values; ``K``/``V`` rows ``0 … len(K) - 1`` are loaded.
        params : RunParams
        traffic : tuple
            ``(name, idle, backpressure, longest gap)``, one of
            :data:`gen.rtlsim.streams.TRAFFIC`.
        seed : int
            Of the query source's idle cycles (the sink uses ``seed + 1``).
        want : list of dict, optional
            Expected output beats instead of the golden model's (the mutation tests).
        """
        dut, cfg, der = self.dut, self.cfg, self.cfg.derived
        await self.reset()
        await self.load_kv(K, V)
        await self.set_params(params)
        busy_seen = [0]

        async def count_busy():
            while True:
                await RisingEdge(dut.clk)
                busy_seen[0] += int(dut.busy.value)

        busy_task = cocotb.start_soon(count_busy())
        res = sofa_attention(Q, K, V, cfg, params)
        beats = [{"value": int(v), "first": int(e == 0), "last": int(e == cfg.d - 1)}
                 for row in res.out for e, v in enumerate(row)]
        name, idle, bp, burst = traffic
        checker = Checker(beats if want is None else want, name=f"o[{name}]")
        sink = StreamSink(dut, "o", out_layout(cfg), checker, backpressure=bp, burst=burst,
                          seed=seed + 1)
        sink_task = cocotb.start_soon(sink.run())
        source = StreamSource(dut, "q", query_layout(cfg), idle=idle, burst=burst, seed=seed)
        cocotb.start_soon(source.send([{"data": [int(x) for x in q],
                                        "last": int(i == len(Q) - 1)}
                                       for i, q in enumerate(Q)]))
        S = params.seq_len
        # Generous: every key through prediction and SU-FA, every gap at its longest.
        budget = (3 + 2 * burst) * len(Q) * (S * (der.mac_cycles + der.dlzs_cycles + 2) +
                                             4 * cfg.d + 200)
        for _ in range(budget):
            await RisingEdge(dut.clk)
            if checker.done:
                break
        for _ in range(3 * cfg.d):                   # catch extra beats, let busy fall
            await RisingEdge(dut.clk)
        sink_task.cancel()
        busy_task.cancel()
        counters = {n: await self.read_reg(COUNTER_BASE + i)
                    for i, n in enumerate(counter_names())}
        counters["busy_seen"] = busy_seen[0]
        counters["status"] = await self.read_reg(Reg.STATUS)
        return CoreRun(checker, counters, res)

    def check(self, Q, K, V, params, run, *, model=True):
        """Assert that ``run`` (a :class:`CoreRun` of these inputs) is right: every output
        beat, a clear status, the counters against
        :func:`spec.regmap.expected_counters`, ``busy_cycles`` against the ``busy`` port and,
        if ``model``, the busy cycles against :func:`sim.perf.core_cycles` within
        :data:`MODEL_TOLERANCE`."""
        cfg = self.cfg
        checker, counters, res = run
        checker.check()
        assert counters["status"] == 0, f"status {counters['status']:#x}: busy or error"
        busy = counters["busy_seen"]
        want = expected_counters(cfg, params, res.counters(), calls=[len(Q)])
        for n, v in want.items():
            assert counters[n] == v, f"counter {n}: {counters[n]} != expected {v}"
        if cfg.counter_width:
            assert abs(counters["busy_cycles"] - busy) <= 1, (counters["busy_cycles"], busy)
        else:
            assert all(counters[n] == 0 for n in counter_names()), counters
        if model:
            predicted = core_cycles(cfg, params, res, Q, K, V)
            self.dut._log.info(
                f"S={params.seq_len} top_k={params.top_k} dense={params.dense}: busy {busy} "
                f"cycles, model {predicted} ({(predicted - busy) / busy:+.1%})")
            assert abs(predicted - busy) <= MODEL_TOLERANCE * busy, (predicted, busy)
