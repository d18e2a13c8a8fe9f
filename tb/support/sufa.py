"""SU-FA stimulus and expected values, shared by ``tb/test_sufa.py`` (Amaranth simulator) and
``tb/cocotb/sufa/cocotb_sufa.py`` (Verilator): a query row is a :class:`Row`, its selected keys
a list of tiles in visiting order."""

import numpy as np

from hw.sufa import COUNTERS
from sim.golden import divide_row, exact_scores, sufa_row, tile_ranges
from sim.reference import error_bound, error_metrics, scale_of
from spec.config import RunParams


__all__ = ["Row", "kv_beats", "expected", "float_error", "int8", "scale", "random_selection",
           "sorted_selection"]


class Row:
    """One query row: ``q``, the visiting order as a list of tiles (index lists), ``c``."""

    def __init__(self, q, tiles, c):
        self.q, self.tiles, self.c = np.asarray(q), [list(t) for t in tiles], int(c)


def kv_beats(row, K, V):
    """The ``kv`` beats of one row: its tiles' K/V rows, an empty tile as one ``empty`` beat."""
    beats = []
    for t, sel in enumerate(row.tiles):
        row_last = int(t == len(row.tiles) - 1)
        if not sel:
            beats.append(dict(index=0, k=[0] * K.shape[1], v=[0] * K.shape[1], empty=1,
                              first=1, last=1, row_last=row_last))
        for r, j in enumerate(sel):
            beats.append(dict(index=j, k=[int(x) for x in K[j]], v=[int(x) for x in V[j]],
                              empty=0, first=int(r == 0), last=int(r == len(sel) - 1),
                              row_last=row_last))
    return beats


def expected(cfg, rows, K, V):
    """Expected output beats and counter totals."""
    outs, totals = [], dict.fromkeys(COUNTERS, 0)
    for row in rows:
        tr = sufa_row(row.q, K, V, row.tiles, row.c, cfg)
        out = divide_row(tr, cfg)
        outs += [dict(value=int(v), first=int(i == 0), last=int(i == cfg.d - 1))
                 for i, v in enumerate(out)]
        totals["keys"] += tr.keys
        totals["misses"] += tr.misses
        totals["rescales"] += tr.rescales
        totals["rows"] += 1
    return outs, totals


def float_error(cfg, rows, K, V, got):
    """Error of the output beats ``got`` against float64 attention over the same keys: the
    :func:`sim.reference.error_metrics` of all rows, and whether every element is within
    :func:`sim.reference.error_bound` (rows with no key are skipped)."""
    out = np.array([g["value"] for g in got], dtype=np.float64).reshape(len(rows), cfg.d)
    out /= 1 << cfg.out_frac
    refs, ok = [], True
    for n, row in enumerate(rows):
        keys = sorted(j for t in row.tiles for j in t)
        if not keys:
            assert not out[n].any()
            continue
        mask = np.zeros((1, len(K)), dtype=bool)
        mask[0, keys] = True
        scores = exact_scores(np.asarray(row.q)[None, :], K)
        tr = sufa_row(row.q, K, V, row.tiles, row.c, cfg)
        ref, bound = error_bound(cfg, scores, V, scale_of(cfg, row.c), mask, [tr.rescales])
        ok &= bool(np.all(np.abs(out[n] - ref[0]) <= bound[0]))
        refs.append((out[n], ref[0]))
    metrics = error_metrics(np.array([o for o, _ in refs]), np.array([r for _, r in refs]))
    return metrics, ok


def int8(rng, shape, lo=-128, hi=127):
    """Uniform integers in [lo, hi]."""
    return rng.integers(lo, hi + 1, size=shape)


def scale(cfg, c):
    """The ``scale_log2e`` register value of the float scale ``c``."""
    return RunParams.scale_from_float(cfg, c)


def random_selection(rng, cfg, S, *, empty_prob=0.15):
    """Per tile a random subset of at most k_max keys, in random order."""
    tiles = []
    for a, b in tile_ranges(S, cfg.block_size):
        n = 0 if rng.random() < empty_prob else int(rng.integers(1, min(cfg.k_max, b - a) + 1))
        tiles.append([int(j) for j in rng.permutation(np.arange(a, b))[:n]])
    return tiles


def sorted_selection(tiles, scores, *, ascending):
    """Each tile's keys by score (ties by index): ascending is SU-FA's worst order."""
    sign = 1 if ascending else -1
    return [sorted(t, key=lambda j: (sign * scores[j], j)) for t in tiles]
