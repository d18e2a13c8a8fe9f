""":func:`sim.workloads.structured` replaced four copies of the structured stimulus (the bench's
testbench and projection, the host self-test, the core's cocotb test, the core's and the host
link's Amaranth tests). The figures and cases depend on the exact random sequences, so each
former copy is kept here, verbatim, as the reference the shared function must reproduce."""

import numpy as np
import pytest

from spec.config import preset
from sim.workloads import structured
from tb.support.stimulus import peaked_case


def bench_copy(d, rng, T, S, dominant):
    """tb/cocotb/top/cocotb_top.py ``structured`` (the bench, the core's and the host link's
    cocotb tests; the projection's copy was this one with ``size=S // 64``)."""
    Q = rng.integers(-128, 128, size=(T, d))
    K = rng.integers(-64, 64, size=(S, d))
    V = rng.integers(-128, 128, size=(S, d))
    for i in range(T):
        for j in rng.choice(S, size=min(dominant, S), replace=False):
            K[j] = np.clip(Q[i] // 2 + rng.integers(-6, 7, size=d), -128, 127)
    return Q, K, V


def host_copy(cfg, rng, T, S):
    """gen/host.py ``_structured`` (the self-test)."""
    Q = rng.integers(-128, 128, size=(T, cfg.d))
    K = rng.integers(-64, 64, size=(S, cfg.d))
    V = rng.integers(-128, 128, size=(S, cfg.d))
    lo, hi = -(1 << (cfg.data_width - 1)), (1 << (cfg.data_width - 1)) - 1
    for i in range(T):
        for j in rng.choice(S, size=min(3, S), replace=False):
            K[j] = Q[i] // 2 + rng.integers(-6, 7, size=cfg.d)
    return tuple(np.clip(a, lo, hi) for a in (Q, K, V))


def case_copy(cfg, seed, T=3, S=None):
    """tb/test_top.py ``case`` (and tb/test_hostlink.py's, with the tiny preset)."""
    rng = np.random.default_rng(seed)
    S = S or cfg.max_seq_len
    Q = rng.integers(-128, 128, size=(T, cfg.d))
    K = rng.integers(-128, 128, size=(S, cfg.d))
    V = rng.integers(-128, 128, size=(S, cfg.d))
    for i in range(T):
        for j in rng.choice(S, size=2, replace=False):
            K[j] = np.clip(Q[i] + rng.integers(-8, 9, size=cfg.d), -128, 127)
    return Q, K, V


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", ["tiny", "default", "ice40", "ecp5"])
@pytest.mark.parametrize("T,S,dominant", [(2, 128, 3), (4, 1024, 16), (3, 2, 3), (2, 4096, 64)])
def test_bench_and_core_sequences(name, T, S, dominant):
    cfg = preset(name)
    for seed in (1, 7):
        want = bench_copy(cfg.d, np.random.default_rng(seed), T, S, dominant)
        got = structured(cfg, np.random.default_rng(seed), T, S, dominant=dominant)
        assert same(got, want)


@pytest.mark.parametrize("name", ["tiny", "ice40"])
@pytest.mark.parametrize("T,S", [(4, 256), (3, 40), (1, 2)])
def test_host_selftest_sequence(name, T, S):
    cfg = preset(name)
    want = host_copy(cfg, np.random.default_rng(1), T, S)
    assert same(structured(cfg, np.random.default_rng(1), T, S), want)
    narrow = cfg.replace(data_width=5)           # the saturation to the data width
    want = host_copy(narrow, np.random.default_rng(1), T, S)
    got = structured(narrow, np.random.default_rng(1), T, S)
    assert same(got, want) and all(a.min() >= -16 and a.max() <= 15 for a in got)


@pytest.mark.parametrize("seed,T,S", [(5, 3, 26), (6, 5, None), (8, 5, 19), (13, 2, 17)])
def test_peaked_case_sequence(seed, T, S):
    cfg = preset("tiny")
    assert same(peaked_case(cfg, seed, T=T, S=S), case_copy(cfg, seed, T=T, S=S))
