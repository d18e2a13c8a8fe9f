"""The model of several memory-attached cores on one memory (sim/multiperf.py): one core is the
single-core model exactly, the split covers every head and query once, the bus saturates when
memory is the bound and the cores scale when it is not, the shared K stream reads fewer bytes,
and the cycle model's bus beats equal the traffic model's read bytes."""

import itertools

import numpy as np
import pytest

from sim.axiperf import axi_core_cycles, job_works
from sim.jobs import JobResult, golden_job, job_counters, traffic
from sim.multiperf import (bound_of, check_cores, multi_core_cycles, multi_traffic,
                           split_result)
from spec.config import CORES, ConfigError, RunParams, preset
from spec.job import JobDescriptor, bus_bytes, core_grid, query_lengths
from spec.timing import job_split_cycles
from tb.support.axicore import AXI_ODD, AXI_TINY, job_case

#: Slow compute (one MAC and one DLZS lane: 8 cycles a key each) against a 64-bit bus: a few
#: cores fit in the bus at 8 bytes a cycle, none at 1.
SLOW = AXI_TINY.replace(name="axi-slow", mac_lanes=1, dlzs_lanes=1)


def case(cfg, *, H=4, T=8, S=64, dense=False, causal=False, q_start=0, seed=1):
    rng = np.random.default_rng(seed)
    job, Q, K, V = job_case(cfg, rng, H=H, T=T, S=S, causal=causal, q_start=q_start,
                            base=4096)
    params = RunParams(seq_len=S, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
    res = golden_job(cfg, params, job, Q, K, V)
    return job, params, res, job_works(cfg, params, job, (Q, K, V))


def reads(tr):
    return tr["q"] + tr["k"] + tr["v"]


CASES = [(cfg, dense, causal) for cfg in (AXI_TINY, AXI_ODD)
         for dense in (False, True) for causal in (False, True)]


@pytest.mark.parametrize("cfg,dense,causal", CASES,
                         ids=[f"{c.name}-{'dense' if d else 'sparse'}{'-causal' if k else ''}"
                              for c, d, k in CASES])
def test_one_core_is_the_single_core_model(cfg, dense, causal):
    job, params, res, works = case(cfg, H=2, T=5, S=41, dense=dense, causal=causal,
                                   q_start=20 if causal else 0)
    for bpc, latency, rass in itertools.product((None, 3), (0, 7), (True, False)):
        one = axi_core_cycles(cfg, params, job, res, works=works, bytes_per_cycle=bpc,
                              latency=latency, rass=rass)
        for shared_k in (False, True):
            assert multi_core_cycles(cfg, params, job, res, works=works, cores=1,
                                     bytes_per_cycle=bpc, latency=latency, rass=rass,
                                     shared_k=shared_k) == one


@pytest.mark.parametrize("heads,queries", [(1, 1), (1, 5), (2, 3), (3, 7), (4, 16), (6, 2),
                                           (8, 9), (16, 1), (12, 33)])
def test_split_covers_every_head_and_query_once(heads, queries):
    cfg = AXI_TINY
    job = JobDescriptor(seq_len=10, queries=queries, heads=heads, causal=True, q_start=3)
    out = np.arange(heads * queries * cfg.d).reshape(heads, queries, cfg.d)
    sels = [[[[t, h]] for t in range(queries)] for h in range(heads)]
    res = JobResult(out=out, lengths=query_lengths(job), selections=sels, stats={})
    for cores in CORES:
        parts = split_result(job, res, cores)
        seen = []
        for p in parts:
            for h in range(p.job.heads):
                for t in range(p.job.queries):
                    seen.append((p.head + h, p.query + t))
                    # the part's golden slice is that (head, query) of the whole job
                    assert (p.result.out[h, t] == out[p.head + h, p.query + t]).all()
                    assert p.result.selections[h][t] == [[p.query + t, p.head + h]]
        assert sorted(seen) == [(h, t) for h in range(heads) for t in range(queries)]
        # idle cores: chunks of ceil(queries / P) past the last query
        G, P = core_grid(heads, cores)
        chunk = -(-queries // P)
        assert len(parts) == G * -(-queries // chunk)
        assert (len(parts) < cores) == ((P - 1) * chunk >= queries)
        assert len({p.core for p in parts}) == len(parts)


def test_idle_cores_cost_nothing():
    """One query on 4 cores: three cores idle, the job as long as on one core after the
    split."""
    job, params, res, works = case(AXI_TINY, H=1, T=1, S=64)
    one = axi_core_cycles(AXI_TINY, params, job, res, works=works, latency=2)
    got = multi_core_cycles(AXI_TINY, params, job, res, works=works, cores=4, latency=2,
                            breakdown=True)
    assert got.ends[1:] == [None, None, None]
    split = job_split_cycles(4)
    assert abs(got.total - split - one) <= 0.02 * one, (got.total, split, one)


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_memory_bound_saturates(dense):
    """1 byte a cycle: throughput stops growing with cores, at the bus's bound."""
    job, params, res, works = case(SLOW, dense=dense)
    T = job.heads * job.queries
    q = {}
    for cores in (1, 2, 4, 8):
        got = multi_core_cycles(SLOW, params, job, res, works=works, cores=cores,
                                bytes_per_cycle=1, latency=2, breakdown=True)
        free = multi_core_cycles(SLOW, params, job, res, works=works, cores=cores,
                                 bytes_per_cycle=1, latency=2, private=True)
        q[cores] = T / got.total
        assert bound_of(got.total, free, got.busy_fraction) == "memory"
        assert q[cores] <= 1 / (reads(multi_traffic(SLOW, params, job, res, cores)) / T)
    assert q[8] < 1.05 * q[4] and q[4] < 1.1 * q[1]


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_compute_bound_scales(dense):
    """8 bytes a cycle: two cores (and four in sparse mode) scale at least 90 %, compute-bound."""
    job, params, res, works = case(SLOW, dense=dense)
    one = multi_core_cycles(SLOW, params, job, res, works=works, cores=1, bytes_per_cycle=8,
                            latency=2)
    for cores in (2,) if dense else (2, 4):
        got = multi_core_cycles(SLOW, params, job, res, works=works, cores=cores,
                                bytes_per_cycle=8, latency=2, breakdown=True)
        free = multi_core_cycles(SLOW, params, job, res, works=works, cores=cores,
                                 bytes_per_cycle=8, latency=2, private=True)
        assert one / (cores * got.total) >= 0.9
        assert bound_of(got.total, free, got.busy_fraction) == "compute"


@pytest.mark.parametrize("dense,causal", [(False, False), (True, False), (False, True)],
                         ids=["sparse", "dense", "causal"])
def test_shared_k_reads_k_once_per_team(dense, causal):
    """Heads 2, 16 queries: from 4 cores on a head group has several cores, and with shared K
    its followers take the leader's K (not in a causal job). The model's bus beats equal the
    traffic model's read bytes, and the bytes saved are the RTL's ``bytes_k_shared``
    (sim.jobs.job_counters)."""
    cfg = AXI_TINY
    rng = np.random.default_rng(4)
    job, Q, K, V = job_case(cfg, rng, H=2, T=16, S=48, causal=causal,
                            q_start=30 if causal else 0, base=4096)
    params = RunParams(seq_len=48, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
    res = golden_job(cfg, params, job, Q, K, V)
    works = job_works(cfg, params, job, (Q, K, V))
    for cores, split_queries in itertools.product(CORES, (False, True)):
        plain = multi_traffic(cfg, params, job, res, cores, split_queries=split_queries)
        shared = multi_traffic(cfg, params, job, res, cores, shared_k=True,
                               split_queries=split_queries)
        teams = cores > (1 if split_queries else 2) and not causal
        assert (shared["k_saved"] > 0) == teams
        assert shared["k"] == plain["k"] - shared["k_saved"]
        assert shared["dram_bytes"] == plain["dram_bytes"] - shared["k_saved"]
        assert shared["v"] == plain["v"] and shared["q"] == plain["q"]
        if cores > 1:
            c = cfg.replace(name=f"c{cores}", cores=cores,
                            axi_id_width=2 + (cores - 1).bit_length())
            totals, _ = job_counters(c, params, job, Q, K, V, shared_k=True,
                                     split_queries=split_queries, wrap=False)
            assert totals["bytes_k_shared"] == shared["k_saved"]
            assert totals["bytes_k"] == plain["k"]
        for tr, shared_k in ((plain, False), (shared, True)):
            got = multi_core_cycles(cfg, params, job, res, works=works, cores=cores,
                                    bytes_per_cycle=4, latency=3, shared_k=shared_k,
                                    split_queries=split_queries, breakdown=True)
            assert got.read_beats * bus_bytes(cfg) == reads(tr)
    if not causal:
        # 8 cores: two teams of 4 read K a quarter as often; one team of 8, an eighth
        k = multi_traffic(cfg, params, job, res, 8)["k"]
        assert multi_traffic(cfg, params, job, res, 8, shared_k=True)["k"] * 4 == k
        assert multi_traffic(cfg, params, job, res, 8, shared_k=True,
                             split_queries=True)["k"] * 8 == k


def test_no_queries_split_keeps_the_single_core_traffic():
    """Split by heads, or by query chunks of whole blocks: the bytes of one core."""
    cfg = AXI_TINY
    job, params, res, _ = case(cfg, H=4, T=8, S=40)
    one = traffic(cfg, params, job, res)
    for cores in (1, 2, 4, 8, 16):          # chunks of 8, 8, 8, 4, 2 queries: whole blocks
        tr = multi_traffic(cfg, params, job, res, cores)
        assert {k: tr[k] for k in one} == one


@pytest.mark.parametrize("value,message", [
    (3, "cores = 3 must be a power of two: 1, 2, 4, 8, 16"),
    (32, "cores = 32 must be a power of two: 1, 2, 4, 8, 16"),
    (0, "cores = 0 is out of range; allowed 1 … ∞"),
    (2.0, "cores must be an integer 1 … ∞, not 2.0"),
    (True, "cores must be an integer 1 … ∞, not True"),
])
def test_bad_cores(value, message):
    job, params, res, works = case(AXI_TINY, H=1, T=2, S=16)
    for call in (lambda: check_cores(value),
                 lambda: multi_core_cycles(AXI_TINY, params, job, res, works=works,
                                           cores=value),
                 lambda: multi_traffic(AXI_TINY, params, job, res, value)):
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == message


def test_bad_arguments():
    job, params, res, works = case(AXI_TINY, H=1, T=2, S=16)
    for kwargs, message in (({"bytes_per_cycle": 0}, "bytes_per_cycle = 0.0 is out of range"),
                            ({"bytes_per_cycle": -2}, "bytes_per_cycle = -2.0 is out of range"),
                            ({"shared_k": 1}, "shared_k must be true or false, not 1"),
                            ({"private": "yes"}, "private must be true or false"),
                            ({"latency": -1}, "latency = -1 is out of range")):
        with pytest.raises(ConfigError, match=message):
            multi_core_cycles(AXI_TINY, params, job, res, works=works, cores=2, **kwargs)


def test_the_config_cores_is_the_default():
    cfg = preset("axi").replace(name="axi-c4", cores=4, axi_id_width=4, max_seq_len=64)
    job, params, res, works = case(cfg, H=2, T=4, S=32)
    assert multi_core_cycles(cfg, params, job, res, works=works) == \
        multi_core_cycles(cfg.replace(cores=1), params, job, res, works=works, cores=4)


@pytest.mark.parametrize("heads,queries,causal", [(1, 3, True), (3, 5, False), (6, 10, True),
                                                  (6, 10, False), (5, 1, False)])
def test_any_shape_and_core_count(heads, queries, causal):
    """Odd shapes (short blocks, idle cores, heads that are no power of two): every core's end
    is there when it has work, the job ends with the last, and the bus carries the bytes."""
    cfg = AXI_TINY
    job, params, res, works = case(cfg, H=heads, T=queries, S=24, causal=causal, q_start=5)
    for cores, shared_k, split in itertools.product(CORES, (False, True), (False, True)):
        got = multi_core_cycles(cfg, params, job, res, works=works, cores=cores,
                                bytes_per_cycle=2, latency=1, shared_k=shared_k,
                                split_queries=split, breakdown=True)
        working = {p.core for p in split_result(job, res, cores, split_queries=split)}
        assert {c for c, end in enumerate(got.ends) if end is not None} == working
        assert got.total == max(e for e in got.ends if e is not None)
        tr = multi_traffic(cfg, params, job, res, cores, shared_k=shared_k,
                           split_queries=split)
        assert got.read_beats * bus_bytes(cfg) == reads(tr)
