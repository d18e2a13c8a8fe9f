"""Several memory-attached cores behind one AXI4 master (``cores > 1``, hw/axicore.py with
hw/axiarb.py) in the Amaranth simulator: whole jobs split across 2 and 4 cores
(spec.job.split_job) against the golden job model, under random bus latency, idle cycles and
backpressure on every channel with the protocol checker on the shared port. Every O bit-exact;
each core's block (its sub-job, its state, its exact counters) and the totals checked; jobs
that leave cores idle; a fault stopping every core."""

import numpy as np
import pytest

from sim.jobs import core_parts, golden_job, job_counters, memory_image, read_outputs
from spec.config import RunParams
from spec.job import JobError, k_followers, split_job
from spec.regmap import (core_address, counter_names, exact_counters, job_writes,
                         parameter_writes)
from tb.support.axicore import AXI_ODD, AXI_TINY, job_case, run_job

CONFIGS = {
    "tiny-2": AXI_TINY.replace(name="axi-tiny-c2", cores=2),
    "tiny-4": AXI_TINY.replace(name="axi-tiny-c4", cores=4),
    "odd-2": AXI_ODD.replace(name="axi-odd-c2", cores=2),
}


def core_reads(cfg):
    names = ["status", "error", "heads", "queries", "first_head", "first_query"]
    names += [f"counter_{n}" for n in counter_names(cfg)]
    return {(c, n): core_address(cfg, c, n) for c in range(cfg.cores) for n in names}


def run_split_job(cfg, *, H, T, S, causal=False, q_start=0, dense=False, seed=0, idle=0.0,
                  latency=0, error_at=None, shared_k=True, split_queries=False):
    rng = np.random.default_rng(seed)
    job, Q, K, V = job_case(cfg, rng, H=H, T=T, S=S, causal=causal, q_start=q_start, gap=1)
    params = RunParams(seq_len=S, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
    writes = parameter_writes(cfg, params) + job_writes(cfg, job, irq=True, shared_k=shared_k,
                                                  split_queries=split_queries)
    where = core_reads(cfg)
    errors = ()
    if error_at:
        a = job.address(*error_at)
        errors = [(a, a + 8, 2)]
    model, got = run_job(cfg, writes, image=memory_image(cfg, job, Q, K, V).items(),
                         seed=seed, idle=idle, latency=latency, reads=where.values(),
                         errors=errors)
    per_core = {key: got[a] for key, a in where.items()}
    return job, (Q, K, V), params, model, got, per_core, (shared_k, split_queries)


def check(cfg, job, data, params, model, got, per_core, flags):
    shared_k, split_queries = flags
    assert got["job_error"] == JobError.NONE and got["irq"] == 1
    res = golden_job(cfg, params, job, *data)
    out = read_outputs(cfg, job, lambda a, n: bytes(model.mem[a:a + n]))
    assert np.array_equal(out, res.out), "O differs from the golden model"
    totals, want = job_counters(cfg, params, job, *data, shared_k=shared_k,
                                split_queries=split_queries)
    follows = k_followers(job, cfg.cores, shared_k, split_queries)
    parts = {c: (sub, h0, t0)
             for c, sub, h0, t0, _ in core_parts(cfg, job, *data, split_queries)}
    for c, sub in enumerate(split_job(job, cfg.cores, split_queries)):
        blk = {n: v for (core, n), v in per_core.items() if core == c}
        if sub is None:
            assert c not in parts
            assert blk["status"] == 0b110 and blk["queries"] == 0, f"core {c}: {blk}"
            assert all(blk[f"counter_{n}"] == 0 for n in exact_counters(cfg)), f"core {c}"
            continue
        _, h0, t0 = parts[c]
        assert (blk["heads"], blk["queries"], blk["first_head"], blk["first_query"],
                blk["status"], blk["error"]) == (sub.heads, sub.queries, h0, t0,
                                                 0b010 | follows[c] << 3, 0), \
            f"core {c}: {blk}"
        for n, value in want[c].items():
            assert blk[f"counter_{n}"] == value, \
                f"core {c} counter {n}: {blk[f'counter_{n}']} != {value}"
    for n, value in totals.items():
        assert got[n] == value, f"total {n}: {got[n]} != {value}"
    assert got["cycles"] >= got["busy_cycles"] > 0
    return res


SHAPES = [("tiny-2", 2, 3),        # heads split
          ("tiny-2", 1, 5),        # queries split, 3 + 2
          ("tiny-4", 2, 5),        # 2 head groups × 2 query chunks
          ("tiny-4", 3, 5),        # odd heads: 1 group, chunks 2, 2, 1, 0 (one idle core)
          ("odd-2", 3, 4)]         # a follower (chunks 2, 2)


@pytest.mark.parametrize("name,H,T,shared_k", [
    *((*shape, True) for shape in SHAPES),
    # without the shared K stream only where it had followers in make test; all in test-all
    *(pytest.param(*shape, False, marks=() if shape[0] == "odd-2" else pytest.mark.slow)
      for shape in SHAPES)])
def test_split_job(name, H, T, shared_k):
    cfg = CONFIGS[name]
    check(cfg, *run_split_job(cfg, H=H, T=T, S=2 * cfg.block_size + 3, seed=H * 10 + T,
                              idle=0.3, latency=5, shared_k=shared_k))


@pytest.mark.parametrize("name", ["tiny-2", "tiny-4"])
def test_causal_dense_and_idle_cores(name):
    cfg = CONFIGS[name]
    # causal with q_start: each core's chunk keeps its positions
    check(cfg, *run_split_job(cfg, H=1, T=6, S=3 * cfg.block_size, causal=True,
                              q_start=cfg.block_size - 3, seed=4, idle=0.2, latency=3))
    check(cfg, *run_split_job(cfg, H=2, T=2, S=cfg.block_size + 1, dense=True, seed=5))
    # fewer queries than cores: the other cores stay idle
    check(cfg, *run_split_job(cfg, H=1, T=1, S=cfg.block_size + 2, seed=6, idle=0.4))


def test_fault_stops_every_core():
    cfg = CONFIGS["tiny-2"]
    S = 2 * cfg.block_size
    *_, got, per_core, _ = run_split_job(cfg, H=2, T=3, S=S, seed=7, idle=0.1, latency=3,
                                         error_at=("k", 1, S // 2))   # head 1: core 1's
    assert got["job_error"] == JobError.READ_K and got["irq"] == 1
    assert [per_core[(c, "error")] for c in range(2)] == [0, JobError.READ_K]
    assert [per_core[(c, "status")] & 1 for c in range(2)] == [0, 0]
    assert got["status"] & 1 == 0


@pytest.mark.parametrize("name,H,T", [("tiny-4", 2, 8),
                                      pytest.param("odd-2", 2, 5, marks=pytest.mark.slow),
                                      pytest.param("tiny-2", 4, 3, marks=pytest.mark.slow)])
def test_split_queries(name, H, T):
    """SPLIT_QUERIES: every core a chunk of every head, K shared by all cores of the job."""
    cfg = CONFIGS[name]
    check(cfg, *run_split_job(cfg, H=H, T=T, S=2 * cfg.block_size + 1, seed=H + T, idle=0.3,
                              latency=4, split_queries=True))


@pytest.mark.parametrize("name", ["tiny-2", "tiny-4"])
def test_fault_in_shared_k(name):
    """A K row fails under the shared stream: every core of the group receives the error beat,
    the job stops with READ_K, and nobody waits for a stopped partner."""
    cfg = CONFIGS[name]
    S = 2 * cfg.block_size
    *_, got, per_core, _ = run_split_job(cfg, H=1, T=8, S=S, seed=8, idle=0.2, latency=4,
                                         error_at=("k", 0, S - 3))
    assert got["job_error"] == JobError.READ_K and got["irq"] == 1
    assert [per_core[(c, "error")] for c in range(cfg.cores)] == [JobError.READ_K] * cfg.cores
    assert got["status"] & 1 == 0
