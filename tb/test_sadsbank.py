"""SADSBank (``predict_keys`` keys a cycle over several SADS units) in the Amaranth simulator
against :func:`sim.golden.sads_row`.

Config matrix (tiny, default, an odd-sized one with batches of 2, ice40's slow SADS) x
``predict_keys`` 2, 4 (8 where the tile allows) x traffic (steady, idle, backpressure, both,
stress) on random rows with many ties and much radius blocking, the edge rows of
``tb/support/sads.py``, and empty tiles. Selected keys, order, framing and the summed
counters must match the golden model exactly; latency and ii are measured against the
properties.
"""

import zlib

import numpy as np
import pytest

from spec.config import preset
from hw.sads import COUNTERS
from hw.sadsbank import SADSBank
from tb.streams import TRAFFIC
from tb.support.sads import check_rows, drive_rows, edge_rows, expected, random_rows, sel_timing

TINY = preset("tiny")
CONFIGS = {
    "tiny-pk2": TINY.replace(name="tiny-pk2", predict_keys=2),
    "tiny-pk4": TINY.replace(name="tiny-pk4", predict_keys=4),
    "tiny-pk8": TINY.replace(name="tiny-pk8", predict_keys=8),
    # Tiles of 6 in batches of 2 (three steps a tile), 40 keys at most.
    "odd-pk2": TINY.replace(name="odd-pk2", d=6, block_size=6, sort_width=5, k_max=3,
                            max_seq_len=42, dlzs_lanes=3, mac_lanes=2, predict_keys=2),
    "default-pk4": preset("default").replace(name="default-pk4", predict_keys=4),
    # SADS ii 1.625: seven units for four keys a cycle.
    "ice40-pk4": preset("ice40").replace(name="ice40-pk4", predict_keys=4),
}
_DUTS = {}


def dut_for(cfg):
    if cfg.name not in _DUTS:
        _DUTS[cfg.name] = SADSBank(cfg, counter_width=32)
    return _DUTS[cfg.name]


def beats_of(cfg, ahat):
    """A row's beats: ``predict_keys`` Â each, the last possibly partial (padded with 0)."""
    P, S = cfg.predict_keys, len(ahat)
    out = []
    for j in range(0, S, P):
        vals = [int(v) for v in ahat[j:j + P]]
        out.append({"value": vals + [0] * (P - len(vals)), "index": j, "count": len(vals),
                    "first": int(j == 0), "last": int(j + P >= S)})
    return out


def run_bank(cfg, rows, traffic=None, seed=0, timeout=100_000):
    """``rows`` = [(ahat, top_k, radius)] through the bank: (beats, counter sums)
    (:func:`tb.support.sads.drive_rows`)."""
    dut = dut_for(cfg)
    want, _ = expected(cfg, rows)
    return drive_rows(
        dut, cfg, [(beats_of(cfg, ahat), top_k, radius) for ahat, top_k, radius in rows],
        want, lambda ctx: {n: sum(ctx.get(getattr(u, n)) for u in dut.units_list)
                           for n in COUNTERS},
        traffic=traffic, seed=seed, settle=3 * cfg.block_size + 40, timeout=timeout)


def check(cfg, rows, traffic=None, seed=0):
    want, totals = expected(cfg, rows)
    return check_rows(*run_bank(cfg, rows, traffic, seed), want, totals)


#: Every traffic pattern on the small configs; idle + backpressure (and the rest in make
#: test-all) on default and ice40 sizes.
RANDOM = [(name, t) if name in ("tiny-pk2", "tiny-pk4", "odd-pk2") or t is TRAFFIC[3]
          else pytest.param(name, t, marks=pytest.mark.slow)
          for name in CONFIGS for t in TRAFFIC]


@pytest.mark.parametrize("name,traffic", RANDOM, ids=str)
def test_random(name, traffic):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name}-{traffic.name}".encode()))
    rows = random_rows(rng, cfg, 3, spread=40) + random_rows(rng, cfg, 2)
    check(cfg, rows, traffic, seed=3)


@pytest.mark.parametrize("name", CONFIGS)
def test_edges(name):
    cfg = CONFIGS[name]
    totals = check(cfg, edge_rows(cfg), TRAFFIC[3], seed=5)
    assert totals["blocked_radius"] > 0 and totals["blocked_full"] > 0


@pytest.mark.parametrize("name", ["tiny-pk2", "odd-pk2", "default-pk4"])
def test_empty_tiles_and_short_rows(name):
    """R = 0 after a large first tile empties later tiles (one empty beat each, in order);
    many short rows back to back, so rows start on every unit."""
    cfg = CONFIGS[name]
    B = cfg.block_size
    ahat = np.concatenate([np.full(B, 100), np.full(2 * B, 10), np.full(B, 200),
                           np.full(3, 10)])[:cfg.max_seq_len]
    rng = np.random.default_rng(21)
    lengths = rng.integers(1, 3 * B + 1, size=10)
    rows = [(ahat, cfg.k_max, 0), (ahat, 1, 50), (np.array([1, 2, 3]), 1, 0)]
    rows += random_rows(rng, cfg, 10, spread=30, lengths=lengths)
    for traffic in (TRAFFIC[0], TRAFFIC[4]):
        check(cfg, rows, traffic, seed=11)


def test_checker_detects_mutation():
    cfg = CONFIGS["tiny-pk2"]
    rows = random_rows(np.random.default_rng(8), cfg, 2, spread=30)
    got, _ = run_bank(cfg, rows)
    want, _ = expected(cfg, rows)
    assert got == want
    want[len(want) // 2]["index"] ^= 1
    assert got != want


def measure(cfg, ahat, top_k):
    """Steady traffic, always ready: the cycle each beat is accepted and each tile's first
    ``sel`` beat appears (cycle 0 = the first beat's acceptance)."""
    return sel_timing(dut_for(cfg), cfg, beats_of(cfg, ahat), top_k,
                      -(-len(ahat) // cfg.block_size), 20 * len(ahat) + 200)


@pytest.mark.parametrize("name", CONFIGS)
def test_latency_and_ii(name):
    """A one-key row: the first ``sel`` beat ``latency`` cycles after its beat; a long row
    of strictly increasing Â (every batch enters the sorter): a beat every ``ii ·
    predict_keys`` cycles."""
    cfg = CONFIGS[name]
    dut = dut_for(cfg)
    acc, firsts = measure(cfg, np.array([3]), 1)
    assert firsts == [dut.latency]
    S = cfg.max_seq_len
    acc, firsts = measure(cfg, np.arange(S) - S // 2, cfg.k_max)
    a, b = len(acc) // 4, len(acc) - 1
    per_key = (acc[b] - acc[a]) / ((b - a) * cfg.predict_keys)
    assert per_key == pytest.approx(dut.ii, rel=0.1)


def test_unit_sads_builds_the_bank():
    """``--unit sads`` of a config with predict_keys > 1 is the bank; with 1, plain SADS."""
    from gen.design import check_unit
    from hw.sads import SADS
    assert check_unit("sads", CONFIGS["tiny-pk4"])[0] is SADSBank
    assert check_unit("sads", TINY)[0] is SADS
