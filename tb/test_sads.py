"""SADS unit in the Amaranth simulator against :func:`sim.golden.sads_row`.

Config matrix (tiny, default, odd) x traffic (steady, idle, backpressure, both, stress) on
random rows, and the edge cases: all equal, strictly increasing/decreasing, ties at the k-th
value, k = 1, k = k_max, R = 0, R = radius_inf, ragged and single-key rows, many rows
back-to-back with per-row top_k/radius. Selected keys, order, framing and the counters must
match the golden model exactly; latency, tile latency and ii are measured against the
properties.
"""

import zlib

import numpy as np
import pytest

from spec.config import preset
from hw.sads import COUNTERS, SADS
from spec.timing import sads_timing
from tb.streams import TRAFFIC
from tb.support.configs import SADS_CONFIGS as CONFIGS
from tb.support.sads import (check_rows, drive_rows, edge_rows, expected, key_beats,
                              random_rows, sel_timing)

TINY, DEFAULT = CONFIGS["tiny"], CONFIGS["default"]

_DUTS = {}


def dut_for(cfg):
    """One elaborated-once component per config (the simulator elaborates it per run)."""
    if cfg.name not in _DUTS:
        _DUTS[cfg.name] = SADS(cfg)
    return _DUTS[cfg.name]


def run_sads(cfg, rows, traffic=None, seed=0, timeout=100_000):
    """Drive ``rows`` = [(ahat, top_k, radius)] through SADS; returns (beats, counters,
    expected beats, expected totals) (:func:`tb.support.sads.drive_rows`)."""
    dut = dut_for(cfg)
    beats, totals = expected(cfg, rows)
    got, counters = drive_rows(
        dut, cfg, [(key_beats(ahat), top_k, radius) for ahat, top_k, radius in rows], beats, lambda ctx: {n: ctx.get(getattr(dut, n)) for n in COUNTERS},
        traffic=traffic, seed=seed, settle=cfg.block_size + 2 * dut.stages + 8,
        timeout=timeout)
    return got, counters, beats, totals


def check(cfg, rows, traffic=None, seed=0):
    return check_rows(*run_sads(cfg, rows, traffic, seed))


# -- random traffic, config matrix ---------------------------------------------------------

@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("name", CONFIGS)
def test_random(name, traffic):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name}-{traffic.name}".encode()))
    # Small spread: plenty of ties and of radius blocking.
    rows = random_rows(rng, cfg, 3, spread=40) + random_rows(rng, cfg, 2)
    check(cfg, rows, traffic, seed=3)


# -- edge cases ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CONFIGS)
def test_edges(name):
    cfg = CONFIGS[name]
    totals = check(cfg, edge_rows(cfg), TRAFFIC[3], seed=5)
    # The cases must actually exercise both blocking rules and skipped steps.
    assert totals["blocked_radius"] > 0 and totals["blocked_full"] > 0
    assert totals["sort_steps"] < sum(-(-len(a) // cfg.derived.batch)
                                      for a, _, _ in edge_rows(cfg))


@pytest.mark.parametrize("name", CONFIGS)
def test_empty_tiles(name):
    """R = 0 after a large first tile: later tiles are blocked entirely and emit one empty
    beat each, in order with the surrounding non-empty tiles."""
    cfg = CONFIGS[name]
    B = cfg.block_size
    ahat = np.concatenate([np.full(B, 100), np.full(2 * B, 10), np.full(B, 200),
                           np.full(3, 10)])[:cfg.max_seq_len]
    rows = [(ahat, cfg.k_max, 0), (ahat, 1, 50), (np.array([1, 2, 3]), 1, 0)]
    for traffic in (TRAFFIC[0], TRAFFIC[4]):
        beats, _ = expected(cfg, rows)
        assert any(b["empty"] for b in beats)
        check(cfg, rows, traffic, seed=11)


@pytest.mark.parametrize("name", CONFIGS)
def test_many_rows_back_to_back(name):
    """Many short rows (1 … 2 tiles), per-row top_k and radius, steady and stress traffic."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(21)
    lengths = rng.integers(1, 2 * cfg.block_size + 1, size=12)
    lengths[:4] = 1
    rows = random_rows(rng, cfg, 12, spread=30, lengths=lengths)
    check(cfg, rows, TRAFFIC[0])
    check(cfg, rows, TRAFFIC[4], seed=9)


def test_k_one_and_k_max_long_row():
    cfg = TINY
    rng = np.random.default_rng(4)
    ahat = rng.integers(-20, 20, size=cfg.max_seq_len)
    check(cfg, [(ahat, 1, 5), (ahat, cfg.k_max, 5), (ahat, 1, cfg.derived.radius_inf),
                (ahat, cfg.k_max, cfg.derived.radius_inf)], TRAFFIC[1])


def test_checker_detects_mutation():
    """The comparison must fail on a corrupted expectation."""
    cfg = TINY
    rng = np.random.default_rng(8)
    rows = random_rows(rng, cfg, 2, spread=30)
    got, counters, beats, totals = run_sads(cfg, rows)
    assert got == beats and counters == totals
    victim = len(beats) // 2
    mutated = [dict(b) for b in beats]
    mutated[victim]["index"] ^= 1
    assert got != mutated


# -- timing ----------------------------------------------------------------------------------

def measure(cfg, ahat, top_k):
    """Steady traffic, always ready: the cycle each key is accepted and each tile's first
    output beat appears (cycle 0 = the first key's acceptance)."""
    return sel_timing(dut_for(cfg), cfg, key_beats(ahat), top_k,
                      -(-len(ahat) // cfg.block_size), 20 * len(ahat) + 200)


@pytest.mark.parametrize("name", CONFIGS)
def test_schedule_matches_hardware(name):
    """Worst case (strictly increasing Â: every batch enters the sorter): the hardware's accept
    and first-beat cycles equal :meth:`SADS.schedule` cycle for cycle."""
    cfg = CONFIGS[name]
    dut = dut_for(cfg)
    S = min(cfg.max_seq_len, 6 * cfg.block_size + 3)
    ahat = np.arange(S) - S // 2
    acc, firsts = measure(cfg, ahat, cfg.k_max)
    assert (acc, firsts) == dut.schedule(S, top_k=cfg.k_max)


@pytest.mark.parametrize("name", CONFIGS)
def test_latency_and_ii(name):
    cfg = CONFIGS[name]
    dut = dut_for(cfg)
    B, der = cfg.block_size, cfg.derived
    # latency: a one-key row (a tile of one batch), key accepted at 0.
    acc, firsts = measure(cfg, np.array([3]), 1)
    assert firsts == [dut.latency]
    # Steady state over full tiles: ii and tile latency.
    tiles = min(cfg.max_seq_len // B, 10)
    acc, firsts = measure(cfg, np.arange(tiles * B), cfg.k_max)
    a, b = 2, tiles - 1
    ii = (acc[b * B] - acc[a * B]) / ((b - a) * B)
    assert ii == pytest.approx(dut.ii)
    assert firsts[a] - acc[(a + 1) * B - 1] == dut.tile_latency
    P, nb, bpt = dut.stages, der.batch, der.batches_per_tile
    r = B - (bpt - 1) * nb
    if bpt > 1 and (bpt == 2 or P + 1 <= nb) and 1 + max(0, P + 1 - r) <= nb:
        assert dut.ii == 1
        assert dut.tile_latency == P + 4 + max(0, P + 1 - r)
    elif bpt == 1:
        assert dut.ii == 1 and dut.tile_latency == dut.latency == P + 4


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_figures():
    """The reported figures at the presets (see the report in the PR)."""
    tiny, default = SADS(TINY), SADS(DEFAULT)
    assert default.ii == 1 and tiny.ii == 1
    assert default.depth == 10 and default.stages == 10 and default.latency == 14
    assert default.tile_latency == 21 and default.queue_depth == 2
    assert tiny.depth == 6 and tiny.latency == 10 and tiny.tile_latency == 15
    ice40 = SADS(preset("ice40"))
    assert ice40.latency == 7 and ice40.tile_latency == 12 and ice40.ii == 1.625
    assert default.comparators < default.network.generated
    assert SADS(DEFAULT, layers_per_stage=2).stages == 5
    assert SADS(DEFAULT, kind="bitonic").comparators > default.comparators


@pytest.mark.filterwarnings("ignore:.*created but never used")
@pytest.mark.parametrize("lps", [2, 3])
def test_layers_per_stage(lps):
    cfg = TINY
    dut = SADS(cfg, layers_per_stage=lps)
    _DUTS[f"tiny-lps{lps}"] = dut
    c = cfg.replace(name=f"tiny-lps{lps}")
    rng = np.random.default_rng(lps)
    check(c, random_rows(rng, cfg, 4, spread=30), TRAFFIC[3])
    acc, firsts = measure(c, np.array([3]), 1)
    assert firsts == [dut.stages + 4]
    acc, firsts = measure(c, np.arange(4 * cfg.block_size), cfg.k_max)
    assert (acc, firsts) == dut.schedule(4 * cfg.block_size, top_k=cfg.k_max)


EXTRA = {
    # One new key per step (batch = 1) and k_max = 1: the degenerate ends of the sorter.
    "batch1": TINY.replace(name="batch1", sort_width=3, k_max=2, block_size=4, max_seq_len=32),
    "kmax1": TINY.replace(name="kmax1", sort_width=4, k_max=1, block_size=7, max_seq_len=40),
}


@pytest.mark.parametrize("name", EXTRA)
def test_degenerate_configs(name):
    cfg = EXTRA[name]
    rng = np.random.default_rng(31)
    check(cfg, random_rows(rng, cfg, 5, spread=20) + edge_rows(cfg), TRAFFIC[4], seed=2)
    S = min(cfg.max_seq_len, 4 * cfg.block_size + 1)
    assert measure(cfg, np.arange(S), cfg.k_max) == dut_for(cfg).schedule(S, top_k=cfg.k_max)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_timing_formulas_sweep():
    """Over many configs (block size, sort width, k_max, layers per stage) the documented
    sufficient condition gives ii = 1 and the closed-form tile latency, and the output queue
    depth never limits the steady state (one more slot changes nothing)."""
    for B in (2, 3, 5, 8, 9, 13, 16, 24):
        for sw in (2, 3, 5, 8, 12, 16):
            for K in sorted({1, 2, sw // 2, sw - 1}):
                if not 1 <= K < sw or K > B:
                    continue
                for lps in (1, 2, 3):
                    cfg = TINY.replace(name="sweep", block_size=B, sort_width=sw, k_max=K,
                                       max_seq_len=16 * B)
                    dut = SADS(cfg, layers_per_stage=lps)
                    der = cfg.derived
                    P, nb, bpt = dut.stages, der.batch, der.batches_per_tile
                    r = B - (bpt - 1) * nb
                    assert dut.latency == P + 4
                    if bpt == 1:
                        assert dut.ii == 1 and dut.tile_latency == P + 4
                    elif (bpt == 2 or P + 1 <= nb) and 1 + max(0, P + 1 - r) <= nb:
                        assert dut.ii == 1, (B, sw, K, lps)
                        assert dut.tile_latency == P + 4 + max(0, P + 1 - r), (B, sw, K, lps)
                    timing = sads_timing(cfg, layers_per_stage=lps)
                    assert timing.steady(timing.queue_depth + 1) == \
                        timing.steady(timing.queue_depth), (B, sw, K, lps)
