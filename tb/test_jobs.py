"""Jobs of the memory-attached core (spec/job.py, sim/jobs.py): descriptor checks, causal and
multi-head golden outputs, the memory image, and the traffic model."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sim.golden import sofa_attention
from sim.jobs import blocks, golden_job, layout_job, memory_image, read_outputs, traffic
from sim.workloads import structured
from spec.config import RunParams, preset
from spec.job import (JobDescriptor, JobError, bus_bytes, check_job, out_row_bytes,
                      query_lengths, row_bytes)

CFG = preset("tiny").replace(name="axi-tiny", memory="axi", q_lanes=2, max_seq_len=256)


def tensors(cfg, rng, H, T, S):
    parts = [structured(cfg, rng, T, S) for _ in range(H)]
    return tuple(np.stack([p[i] for p in parts]) for i in range(3))


def params(cfg, S, dense=False, top_k=None):
    return RunParams(seq_len=S, top_k=top_k or cfg.k_max, radius=cfg.derived.radius_inf,
                     scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)


def test_checks_in_order():
    job = layout_job(CFG, JobDescriptor(seq_len=20, queries=3, heads=2))
    assert check_job(CFG, job) == JobError.NONE
    bus = bus_bytes(CFG)
    cases = [
        (dict(seq_len=0), JobError.SEQ_LEN),
        (dict(seq_len=CFG.max_seq_len + 1), JobError.SEQ_LEN),
        (dict(queries=0), JobError.QUERIES),
        (dict(heads=0), JobError.HEADS),
        (dict(k_base=job.k_base + 1), JobError.ALIGN),
        (dict(v_stride=job.v_stride + bus // 2), JobError.ALIGN),
        (dict(o_head_stride=3), JobError.ALIGN),
        (dict(q_stride=0), JobError.STRIDE),
        (dict(o_stride=out_row_bytes(CFG) - bus), JobError.STRIDE),
        (dict(o_base=(1 << CFG.axi_addr_width) - bus), JobError.RANGE),
        (dict(k_head_stride=(1 << CFG.axi_addr_width) - bus), JobError.RANGE),
    ]
    for change, err in cases:
        assert check_job(CFG, job.replace(**change)) == err, change
    # A whole tensor that ends exactly at the top of the address space is legal.
    top = 1 << CFG.axi_addr_width
    last = job.replace(o_base=top - 2 * job.o_head_stride)
    assert check_job(CFG, last) == JobError.NONE
    assert check_job(CFG, last.replace(o_base=last.o_base + bus)) == JobError.RANGE


def test_query_lengths():
    job = JobDescriptor(seq_len=10, queries=4)
    assert query_lengths(job) == [10] * 4
    assert query_lengths(job.replace(causal=True)) == [1, 2, 3, 4]
    assert query_lengths(job.replace(causal=True, q_start=8)) == [9, 10, 10, 10]


@pytest.mark.parametrize("dense", [False, True])
def test_golden_job_is_per_query_attention(dense):
    rng = np.random.default_rng(3)
    H, T, S = 2, 5, 37
    Q, K, V = tensors(CFG, rng, H, T, S)
    job = JobDescriptor(seq_len=S, queries=T, heads=H, causal=True, q_start=30)
    p = params(CFG, S, dense)
    res = golden_job(CFG, p, job, Q, K, V)
    for h in range(H):
        for t in range(T):
            L = min(S, 30 + t + 1)
            one = sofa_attention(Q[h, t:t + 1], K[h, :L], V[h, :L], CFG,
                                 RunParams(L, p.top_k, p.radius, p.scale_log2e, dense))
            assert np.array_equal(res.out[h, t], one.out[0])
            if not dense:
                assert res.selections[h][t] == [tl.indices for tl in one.selection[0]]
    full = golden_job(CFG, p, job.replace(causal=False), Q, K, V)
    for h in range(H):
        assert np.array_equal(full.out[h], sofa_attention(Q[h], K[h], V[h], CFG, p).out)


def test_memory_round_trip():
    rng = np.random.default_rng(4)
    H, T, S = 2, 3, 9
    Q, K, V = tensors(CFG, rng, H, T, S)
    job = layout_job(CFG, JobDescriptor(seq_len=S, queries=T, heads=H), base=4096, gap=1)
    assert check_job(CFG, job) == JobError.NONE
    image = memory_image(CFG, job, Q, K, V)
    assert len(image) == H * (T + 2 * S)
    assert all(len(b) == row_bytes(CFG) for b in image.values())
    k0 = image[job.address("k", 1, 4)]
    assert list(np.frombuffer(k0, dtype=np.int8)) == list(K[1, 4])
    # O read back: 32-bit little-endian elements.
    O = rng.integers(-1000, 1000, size=(H, T, CFG.d))
    mem = {job.address("o", h, t): b"".join(int(x).to_bytes(4, "little", signed=True)
                                            for x in O[h, t])
           for h in range(H) for t in range(T)}
    assert np.array_equal(read_outputs(CFG, job, lambda a, n: mem[a][:n]), O)


def test_traffic_by_brute_force():
    rng = np.random.default_rng(5)
    H, T, S = 2, 5, 40
    Q, K, V = tensors(CFG, rng, H, T, S)
    job = JobDescriptor(seq_len=S, queries=T, heads=H, causal=True, q_start=20)
    row = bus_bytes(CFG) * -(-row_bytes(CFG) // bus_bytes(CFG))
    p = params(CFG, S, top_k=1)
    res = golden_job(CFG, p, job, Q, K, V)
    tr = traffic(CFG, p, job, res)
    lengths = query_lengths(job)
    k = v = v_no = 0
    for h in range(H):
        for first, n in blocks(CFG, job):
            k += max(lengths[first:first + n]) * row
            sel = [j for t in range(first, first + n) for tile in res.selections[h][t]
                   for j in tile]
            v += len(set(sel)) * row
            v_no += len(sel) * row
    assert (tr["k"], tr["v"], tr["v_no_rass"]) == (k, v, v_no)
    assert tr["dram_bytes"] <= tr["dram_bytes_no_rass"] <= tr["dram_bytes_dense"] + v_no
    assert tr["dram_bytes"] < tr["dram_bytes_dense"]
    dense = traffic(CFG, params(CFG, S, dense=True), job, golden_job(
        CFG, params(CFG, S, dense=True), job, Q, K, V))
    assert dense["v"] == dense["v_dense"] == dense["k"]


@settings(max_examples=60, deadline=None)
@given(S=st.integers(1, 300), T=st.integers(1, 70), H=st.integers(1, 4),
       gap=st.integers(0, 3), base=st.integers(0, 1 << 20))
def test_laid_out_jobs_pass_the_checks(S, T, H, gap, base):
    """Every packed layout at a bus-aligned base passes; shifting any base by a byte fails."""
    bus = bus_bytes(CFG)
    job = layout_job(CFG, JobDescriptor(seq_len=min(S, CFG.max_seq_len), queries=T, heads=H),
                     base=base * bus, gap=gap)
    assert check_job(CFG, job) == JobError.NONE
    assert check_job(CFG, job.replace(v_base=job.v_base + 1)) == JobError.ALIGN
