"""The SOFA core on Verilator end to end against :func:`sim.golden.sofa_attention`, through the
product's driver (:class:`gen.rtlsim.core.CoreDriver`): K/V loaded over ``kv_load``, the
run-time registers written over the register port, queries streamed in with random idle
cycles, ``O`` streamed out with random backpressure, every element compared; the counters
compared with the golden model (a config without counters must read 0), and the busy cycles
(the ``busy`` port, counted here, equal to the ``busy_cycles`` counter) with :mod:`sim.perf`'s
model.

With ``adapt_bins`` also the adaptive budget, and the adaptive budget with the tail blend.

Data: random int8, and data with attention structure (a few dominant keys per query, as real
attention has, :func:`sim.workloads.structured`), in sparse mode at several top_k and in dense
mode, up to S = max_seq_len.
"""

import os

import cocotb
import numpy as np

from gen.rtlsim.core import CoreDriver, params_for
from gen.rtlsim.streams import STRESS, TRAFFIC, load_sidecar
from sim.golden import sofa_attention
from spec.config import RunParams
from sim.workloads import structured

CFG, SIDECAR = load_sidecar()
DER = CFG.derived
SEED = int(os.environ.get("SOFA_SEED", "1"))
S_MAX = int(os.environ.get("SOFA_TOP_SEQ", str(CFG.max_seq_len)))
ROWS = int(os.environ.get("SOFA_TOP_ROWS", "3"))


def started(dut):
    """A driver with its clock running (once per cocotb test: the clock ends with the test)."""
    core = CoreDriver(dut, CFG)
    core.start_clock()
    return core


@cocotb.test()
async def test_sparse_and_dense(dut):
    """Structured data at S = max_seq_len: dense, and sparse at every top_k; the model."""
    core = started(dut)
    rng = np.random.default_rng(SEED)
    Q, K, V = structured(CFG, rng, ROWS, S_MAX)
    for n, params in enumerate([params_for(CFG, S_MAX, dense=True)] +
                               [params_for(CFG, S_MAX, top_k=k)
                                for k in range(1, CFG.k_max + 1)]):
        run = await core.run(Q, K, V, params, TRAFFIC[0], SEED + n)
        # sim.perf does not model the adaptive gate (a core with adapt_bins always has it).
        core.check(Q, K, V, params, run, model=not CFG.adapt_bins)


@cocotb.test()
async def test_traffic(dut):
    """Random data, S not a multiple of Bc, sphere clipping, every traffic pattern."""
    core = started(dut)
    rng = np.random.default_rng(SEED + 1)
    S = min(S_MAX, 3 * CFG.block_size + 3)
    for n, traffic in enumerate(TRAFFIC + [STRESS]):
        Q = rng.integers(-128, 128, size=(ROWS, CFG.d))
        K = rng.integers(-128, 128, size=(S, CFG.d))
        V = rng.integers(-128, 128, size=(S, CFG.d))
        params = params_for(CFG, S, top_k=int(rng.integers(1, CFG.k_max + 1)), dense=n == 2,
                            radius=int(rng.choice([0, 5000, DER.radius_inf])))
        run = await core.run(Q, K, V, params, traffic, SEED + 10 * n)
        core.check(Q, K, V, params, run, model=False)


@cocotb.test(skip=not CFG.adapt_bins)
async def test_adaptive_budget(dut):
    """The adaptive budget (a config with ``adapt_bins``): structured data, p = 128, 40 and
    0/256 in turn under every traffic pattern; O and the counters against the golden model
    (the cycle model does not cover the adaptive gate)."""
    import dataclasses
    core = started(dut)
    rng = np.random.default_rng(SEED + 3)
    S = min(S_MAX, 3 * CFG.block_size + 2)
    c_sel = RunParams.scale_from_float(CFG, 1e-4)
    blocked = 0
    for n, traffic in enumerate(TRAFFIC + [STRESS]):
        Q, K, V = structured(CFG, rng, ROWS, S)
        params = dataclasses.replace(params_for(CFG, S, c=2e-3), adapt_mass=(128, 40, 0)[n % 3],
                                     adapt_scale=c_sel, adapt_shift=13)
        run = await core.run(Q, K, V, params, traffic, SEED + 20 * n)
        core.check(Q, K, V, params, run, model=False)
        blocked += run.result.counters()["blocked_mass"]
    assert blocked > 0, "no key was blocked by the adaptive budget: the test proves nothing"


@cocotb.test(skip=not CFG.adapt_bins)
async def test_tail_blend(dut):
    """The adaptive budget with the tail blend (``TAIL_SCALE`` set): structured data and
    random data, p = 128 and 40/256, under every traffic pattern; O (blended: f from the gate,
    the mean V row swept before the first query) and the counters against the golden
    model. K/V are reloaded for every run, so the mean is swept again each time."""
    import dataclasses
    core = started(dut)
    rng = np.random.default_rng(SEED + 4)
    S = min(S_MAX, 3 * CFG.block_size + 2)
    c_sel = RunParams.scale_from_float(CFG, 1e-4)
    t_scale = RunParams.scale_from_float(CFG, 3e-4)
    moved = 0
    for n, traffic in enumerate(TRAFFIC + [STRESS]):
        if n % 2:
            Q = rng.integers(-128, 128, size=(ROWS, CFG.d))
            K = rng.integers(-128, 128, size=(S, CFG.d))
            V = rng.integers(-128, 128, size=(S, CFG.d))
        else:
            Q, K, V = structured(CFG, rng, ROWS, S)
        params = dataclasses.replace(params_for(CFG, S, c=2e-3), adapt_mass=(128, 40)[n % 2],
                                     adapt_scale=c_sel, adapt_shift=13 - n % 2,
                                     tail_scale=t_scale)
        run = await core.run(Q, K, V, params, traffic, SEED + 30 * n)
        core.check(Q, K, V, params, run, model=False)
        moved += sum(f > 0 for f in run.result.tail_f)
    assert moved > 0, "no row was blended (f = 0 everywhere): the test proves nothing"


@cocotb.test()
async def test_mutation_is_detected(dut):
    """The checker must fail when one expected element is corrupted."""
    core = started(dut)
    rng = np.random.default_rng(SEED + 2)
    S = min(S_MAX, 2 * CFG.block_size)
    Q, K, V = structured(CFG, rng, 2, S)
    params = params_for(CFG, S)
    res = sofa_attention(Q, K, V, CFG, params)
    want = [{"value": int(v), "first": int(e == 0), "last": int(e == CFG.d - 1)}
            for row in res.out for e, v in enumerate(row)]
    victim = int(rng.integers(len(want)))
    want[victim]["value"] += 1
    run = await core.run(Q, K, V, params, TRAFFIC[3], SEED, want=want)
    run.checker.check_catches(victim)
