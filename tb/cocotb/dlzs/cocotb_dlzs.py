"""DLZS on Verilator against the golden model: monitor -> model -> checker, with random idle
cycles on both inputs and random backpressure on the output."""

import os

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from hw.dlzs import ahat_layout, row_layout
from sim.golden import dlzs_scores
from gen.rtlsim.streams import STRESS, TRAFFIC, Checker, StreamSink, StreamSource, load_sidecar

CFG, SIDECAR = load_sidecar()
SEED = int(os.environ.get("SOFA_SEED", "1"))
Q_LAYOUT = data.StructLayout({"data": row_layout(CFG)})
K_LAYOUT = data.StructLayout({"data": row_layout(CFG), "last": 1})
OUT_LAYOUT = ahat_layout(CFG)


async def reset(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


def make_problem(rng, rows, lengths, extreme=False):
    """Q rows and, per row, its own K sequence (length from ``lengths``)."""
    W = CFG.data_width
    lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
    def draw(shape):
        if extreme:
            return rng.choice(np.array([lo, hi, 0, 1, -1]), size=shape)
        return rng.integers(lo, hi + 1, size=shape)
    Q = draw((rows, CFG.d))
    Ks = [draw((n, CFG.d)) for n in lengths]
    return Q, Ks


def model(Q, Ks):
    """Expected output beats: the golden Â of each row's keys, with index and framing."""
    out = []
    for q, K in zip(Q, Ks):
        ahat = dlzs_scores(q[None], K, CFG)[0]
        out += [{"value": int(v), "index": j, "first": int(j == 0), "last": int(j == len(K) - 1)}
                for j, v in enumerate(ahat)]
    return out


async def run(dut, Q, Ks, traffic, seed, expected=None):
    name, idle, bp, burst = traffic
    checker = Checker(model(Q, Ks) if expected is None else expected, name=f"ahat[{name}]")
    q_src = StreamSource(dut, "q", Q_LAYOUT, idle=idle, burst=burst, seed=seed)
    k_src = StreamSource(dut, "k", K_LAYOUT, idle=idle, burst=burst, seed=seed + 1)
    sink = StreamSink(dut, "ahat", OUT_LAYOUT, checker, backpressure=bp, burst=burst,
                      seed=seed + 2)
    sink_task = cocotb.start_soon(sink.run())
    cocotb.start_soon(q_src.send([{"data": list(map(int, q))} for q in Q]))
    cocotb.start_soon(k_src.send([{"data": list(map(int, k)), "last": int(j == len(K) - 1)}
                                  for K in Ks for j, k in enumerate(K)]))
    budget = 20 * (sum(map(len, Ks)) + len(Q)) * max(1, SIDECAR["derived"]["dlzs_cycles"]) + 200
    for _ in range(budget):
        await RisingEdge(dut.clk)
        if checker.done:
            break
    for _ in range(5):                     # catch extra beats after the last expected one
        await RisingEdge(dut.clk)
    sink_task.cancel()
    return checker


@cocotb.test()
async def test_traffic(dut):
    """Random data, every traffic pattern, rows of different lengths."""
    await reset(dut)
    rng = np.random.default_rng(SEED)
    for n, traffic in enumerate(TRAFFIC):
        lengths = rng.integers(1, min(CFG.max_seq_len, 3 * CFG.block_size) + 1, size=3)
        Q, Ks = make_problem(rng, 3, lengths)
        (await run(dut, Q, Ks, traffic, SEED * 10 + n)).check()


@cocotb.test()
async def test_edges(dut):
    """-2^(W-1), 2^(W-1)-1, 0, ±1 only; all-zero query and key rows; single-key rows."""
    await reset(dut)
    rng = np.random.default_rng(SEED + 1)
    Q, Ks = make_problem(rng, 4, [5, 1, 7, 1], extreme=True)
    Q[0] = 0
    Q[2] = -(1 << (CFG.data_width - 1))
    Ks[2][3] = 0
    Ks[2][4] = -(1 << (CFG.data_width - 1))
    (await run(dut, Q, Ks, TRAFFIC[3], SEED)).check()


@cocotb.test()
async def test_stress(dut):
    """Many rows, long random gaps and backpressure bursts, lengths up to max_seq_len."""
    await reset(dut)
    rng = np.random.default_rng(SEED + 2)
    rows = int(os.environ.get("SOFA_STRESS_ROWS", "12"))
    lengths = rng.integers(1, CFG.max_seq_len + 1, size=rows)
    lengths[0] = CFG.max_seq_len
    Q, Ks = make_problem(rng, rows, lengths)
    (await run(dut, Q, Ks, STRESS, SEED + 7)).check()


@cocotb.test()
async def test_mutation_is_detected(dut):
    """The checker must fail when one expected value is corrupted (guards against a checker
    that cannot fail)."""
    await reset(dut)
    rng = np.random.default_rng(SEED + 3)
    Q, Ks = make_problem(rng, 2, [6, 4])
    expected = model(Q, Ks)
    victim = int(rng.integers(len(expected)))
    expected[victim] = dict(expected[victim], value=expected[victim]["value"] + 1)
    checker = await run(dut, Q, Ks, TRAFFIC[3], SEED, expected=expected)
    checker.check_catches(victim)


@cocotb.test()
async def test_latency_and_ii(dut):
    """Steady traffic: keys accepted every ii cycles, each Â exactly latency cycles later."""
    await reset(dut)
    rng = np.random.default_rng(SEED + 4)
    Q, Ks = make_problem(rng, 1, [8])
    accepted, emitted = [], []
    dut.ahat__ready.value = 1
    src_q = StreamSource(dut, "q", Q_LAYOUT)
    src_k = StreamSource(dut, "k", K_LAYOUT)
    cocotb.start_soon(src_q.send([{"data": list(map(int, Q[0]))}]))
    cocotb.start_soon(src_k.send([{"data": list(map(int, k)), "last": int(j == 7)}
                                  for j, k in enumerate(Ks[0])]))
    for cycle in range(200):
        await FallingEdge(dut.clk)
        await ReadOnly()
        if dut.k__valid.value and dut.k__ready.value:
            accepted.append(cycle)
        if dut.ahat__valid.value:
            emitted.append(cycle)
        if len(emitted) == 8:
            break
    latency, ii = SIDECAR["latency"], SIDECAR["ii"]
    assert all(b - a == ii for a, b in zip(accepted, accepted[1:])), accepted
    assert [e - a for a, e in zip(accepted, emitted)] == [latency] * 8, (accepted, emitted)
