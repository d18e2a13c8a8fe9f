"""SADS on Verilator against the golden model: Â rows in (with per-row top_k/radius), the
selected keys of every tile out, compared beat by beat with :func:`sim.golden.sads_row`, and
the counters compared with the golden totals. Random idle cycles on the input, random
backpressure on the output."""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from hw.dlzs import ahat_layout
from hw.sads import COUNTERS, sel_layout
from gen.rtlsim.streams import (STRESS, TRAFFIC, Checker, Packer, StreamSink, StreamSource,
                                load_sidecar)
from tb.support.sads import edge_rows, expected, random_rows

CFG, SIDECAR = load_sidecar()
DER = CFG.derived
SEED = int(os.environ.get("SOFA_SEED", "1"))
IN_LAYOUT = ahat_layout(CFG)
OUT_LAYOUT = sel_layout(CFG)


def start_clock(dut):
    """Once per cocotb test (the clock task ends with the test)."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())


async def reset(dut):
    """Clears the unit and its counters; the clock must be running."""
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    dut.ahat__valid.value = 0
    dut.sel__ready.value = 0
    dut.top_k.value = 0
    dut.radius.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def send_rows(dut, rows, *, idle=0.0, burst=1, seed=0):
    """Drive the Â rows; top_k/radius are set with each row's first key and scrambled on every
    other cycle (the unit holds the values it sampled with the first key)."""
    junk = random.Random(seed + 99)

    def side_ports(beat):
        if beat is not None and beat["first"]:
            dut.top_k.value, dut.radius.value = beat["top_k"], beat["radius"]
        else:
            dut.top_k.value = junk.randint(0, (1 << DER.topk_width) - 1)
            dut.radius.value = junk.randint(0, DER.radius_inf)

    beats = [{"value": int(v), "index": j, "first": int(j == 0), "last": int(j == len(ahat) - 1),
              "top_k": top_k, "radius": radius}
             for ahat, top_k, radius in rows for j, v in enumerate(ahat)]
    source = StreamSource(dut, "ahat", IN_LAYOUT, idle=idle, burst=burst, seed=seed)
    await source.send(beats, on_cycle=side_ports)


def counters(dut):
    return {name: int(getattr(dut, name).value) for name in COUNTERS}


async def run(dut, rows, traffic, seed, *, beats=None):
    """Reset, run ``rows``, return (checker, counters, golden totals)."""
    await reset(dut)
    name, idle, bp, burst = traffic
    want, totals = expected(CFG, rows)
    checker = Checker(want if beats is None else beats, name=f"sel[{name}]")
    sink = StreamSink(dut, "sel", OUT_LAYOUT, checker, backpressure=bp, burst=burst,
                      seed=seed + 2)
    sink_task = cocotb.start_soon(sink.run())
    cocotb.start_soon(send_rows(dut, rows, idle=idle, burst=burst, seed=seed))
    keys = sum(len(a) for a, _, _ in rows)
    for _ in range(30 * (keys + len(checker.expected)) + 500):
        await RisingEdge(dut.clk)
        if checker.done:
            break
    for _ in range(CFG.block_size + 2 * SIDECAR["latency"] + 8):   # catch extra beats
        await RisingEdge(dut.clk)
    sink_task.cancel()
    return checker, counters(dut), totals


def check(checker, got, totals):
    checker.check()
    assert got == totals, f"counters {got} != golden totals {totals}"


@cocotb.test()
async def test_traffic(dut):
    """Random rows (ragged lengths, per-row top_k/radius, many ties), every traffic pattern."""
    start_clock(dut)
    rng = np.random.default_rng(SEED)
    for n, traffic in enumerate(TRAFFIC):
        rows = random_rows(rng, CFG, 3, spread=40) + random_rows(rng, CFG, 2)
        check(*await run(dut, rows, traffic, SEED * 10 + n))


@cocotb.test()
async def test_edges(dut):
    """All equal, increasing, decreasing, ties at the k-th value, k = 1 and k_max, R = 0 and
    radius_inf, extremes, single-key rows, one-key last tile; then tiles blocked entirely."""
    start_clock(dut)
    check(*await run(dut, edge_rows(CFG), TRAFFIC[3], SEED))
    B = CFG.block_size
    ahat = np.concatenate([np.full(B, 100), np.full(2 * B, 10), np.full(B, 200),
                           np.full(3, 10)])[:CFG.max_seq_len]
    rows = [(ahat, CFG.k_max, 0), (ahat, 1, 50), (np.array([1, 2, 3]), 1, 0)]
    assert any(b["empty"] for b in expected(CFG, rows)[0])
    check(*await run(dut, rows, TRAFFIC[0], SEED + 1))


@cocotb.test()
async def test_stress(dut):
    """Many rows back to back (a max_seq_len one first), long gaps and backpressure bursts."""
    start_clock(dut)
    rng = np.random.default_rng(SEED + 2)
    count = int(os.environ.get("SOFA_STRESS_ROWS", "12"))
    lengths = rng.integers(1, 3 * CFG.block_size + 1, size=count)
    lengths[0] = CFG.max_seq_len
    lengths[1:4] = 1
    rows = random_rows(rng, CFG, count, spread=60, lengths=lengths)
    check(*await run(dut, rows, STRESS, SEED + 7))


@cocotb.test()
async def test_mutation_is_detected(dut):
    """The checker must fail when one expected beat is corrupted."""
    start_clock(dut)
    rng = np.random.default_rng(SEED + 3)
    rows = random_rows(rng, CFG, 2, spread=40)
    beats, _ = expected(CFG, rows)
    victim = int(rng.integers(len(beats)))
    beats = [dict(b) for b in beats]
    beats[victim]["index"] ^= 1
    checker, _, _ = await run(dut, rows, TRAFFIC[3], SEED, beats=beats)
    checker.check_catches(victim)


@cocotb.test()
async def test_latency_and_ii(dut):
    """A one-key row: first beat ``latency`` cycles after the key; full tiles of increasing Â
    (every batch enters the sorter) in steady traffic: ``ii`` cycles per key."""
    start_clock(dut)
    await reset(dut)
    dut.sel__ready.value = 1
    B = CFG.block_size
    tiles = min(CFG.max_seq_len // B, 8)
    for ahat, top_k in ((np.array([3]), 1), (np.arange(tiles * B), CFG.k_max)):
        accepted, firsts = [], []
        cocotb.start_soon(send_rows(dut, [(ahat, top_k, DER.radius_inf)]))
        n_tiles = -(-len(ahat) // B)
        for cycle in range(40 * len(ahat) + 200):
            await FallingEdge(dut.clk)
            await ReadOnly()
            if dut.ahat__valid.value and dut.ahat__ready.value:
                accepted.append(cycle)
            if dut.sel__valid.value and Packer(OUT_LAYOUT).unpack(dut.sel__payload.value)["first"]:
                firsts.append(cycle)
                if len(firsts) == n_tiles:
                    break
        if len(ahat) == 1:
            assert firsts[0] - accepted[0] == SIDECAR["latency"], (accepted, firsts)
        else:
            a, b = 2, tiles - 1
            ii = (accepted[b * B] - accepted[a * B]) / ((b - a) * B)
            assert abs(ii - SIDECAR["ii"]) < 1e-9, (ii, SIDECAR["ii"])
        for _ in range(5):
            await RisingEdge(dut.clk)
