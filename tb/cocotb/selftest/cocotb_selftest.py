"""cocotb side of tb/test_cocotb_runner.py: a 2-stage stream register on Verilator."""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge


with open(os.environ["SOFA_SIDECAR"]) as _f:
    SIDECAR = json.load(_f)
WIDTH = SIDECAR["config"]["data_width"]


async def reset(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def test_passthrough(dut):
    """Words come out in order, through random idle cycles and backpressure."""
    await reset(dut)
    rng = random.Random(1)
    words = [rng.randrange(1 << WIDTH) for _ in range(200)]
    sent, received = 0, []
    for _ in range(2000):
        await FallingEdge(dut.clk)
        if sent < len(words) and rng.random() < 0.7:
            dut.i__valid.value, dut.i__payload.value = 1, words[sent]
        else:
            dut.i__valid.value = 0
        dut.o__ready.value = int(rng.random() < 0.7)
        await ReadOnly()
        if dut.i__valid.value and dut.i__ready.value:
            sent += 1
        if dut.o__valid.value and dut.o__ready.value:
            received.append(int(dut.o__payload.value))
        if len(received) == len(words):
            break
    assert received == words
    assert SIDECAR["latency"] == 2


@cocotb.test(skip=os.environ.get("SELFTEST_FAIL") != "1")
async def test_deliberate_failure(dut):
    """Fails on purpose when SELFTEST_FAIL=1, to check the runner reports it."""
    await reset(dut)
    assert False, "deliberate failure"
