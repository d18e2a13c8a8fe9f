"""SADS stimulus and expected values, shared by ``tb/test_sads.py`` (Amaranth simulator) and
``tb/cocotb/sads/cocotb_sads.py`` (Verilator): rows are ``(ahat, top_k, radius)``."""

import random

import numpy as np
from amaranth.sim import Simulator

from tb.streams import stream_get
from tb.support.amsim import run_until

from hw.sads import COUNTERS
from sim.golden import sads_row


__all__ = ["expected", "random_rows", "edge_rows", "key_beats", "sel_timing", "drive_rows",
           "check_rows"]


def expected(cfg, rows):
    """Expected :py:`sel` beats and counter totals for ``rows`` = [(ahat, top_k, radius)]."""
    beats = []
    totals = dict.fromkeys(COUNTERS, 0)
    for ahat, top_k, radius in rows:
        tiles = sads_row(ahat, cfg, top_k=top_k, radius=radius)
        for t, sel in enumerate(tiles):
            row_last = int(t == len(tiles) - 1)
            if not sel.indices:
                beats.append(dict(value=0, index=0, empty=1, first=1, last=1, row_last=row_last))
            n = len(sel.indices)
            for r, (j, v) in enumerate(zip(sel.indices, sel.values)):
                beats.append(dict(value=v, index=j, empty=0, first=int(r == 0),
                                  last=int(r == n - 1), row_last=row_last))
            totals["blocked_radius"] += sel.blocked_radius
            totals["blocked_full"] += sel.blocked_full
            totals["entered"] += sel.entered
            totals["sort_steps"] += sel.steps
            totals["tiles"] += 1
    return beats, totals


def random_rows(rng, cfg, count, *, spread=None, lengths=None):
    """``count`` random rows: Â in ±``spread`` (small: many ties and much radius blocking),
    lengths from ``lengths`` or random up to three tiles, random top_k and radius."""
    der = cfg.derived
    lim = 1 << (der.ahat_width - 1)
    spread = spread or lim
    rows = []
    for n in range(count):
        S = lengths[n] if lengths is not None else int(rng.integers(1, 3 * cfg.block_size + 1))
        S = min(S, cfg.max_seq_len)
        ahat = rng.integers(max(-lim, -spread), min(lim, spread), size=S)
        top_k = int(rng.integers(1, cfg.k_max + 1))
        radius = int(rng.choice([0, 1, spread // 8, spread // 2, der.radius_inf]))
        rows.append((ahat, top_k, radius))
    return rows


def edge_rows(cfg):
    """All equal, monotonic, ties at the k-th value, extremes, single-key and one-tile rows,
    at k = 1 and k_max, R = 0 and radius_inf."""
    der = cfg.derived
    B, K, inf = cfg.block_size, cfg.k_max, der.radius_inf
    lim = 1 << (der.ahat_width - 1)
    n = min(cfg.max_seq_len, 3 * B + 1)      # ragged: not a multiple of block_size
    inc = np.arange(n) * 3 - n
    b = der.batch
    # Ties at the k-th value: a batch whose k-th best equals later keys, across batches.
    tie = np.array([(5 if (j % B) < b else 5) if j % 3 else 9 for j in range(n)])
    tie_k = np.zeros(n, dtype=np.int64)
    tie_k[:K] = 7
    tie_k[K - 1] = 4
    tie_k[K:] = 4                             # later keys equal to the k-th survivor: blocked
    return [
        (np.full(n, 17), K, inf),                         # all equal, no clipping
        (np.full(n, -3), 1, 0),                           # all equal, R = 0
        (inc, K, inf),                                    # strictly increasing
        (inc, 1, 0),                                      # increasing, R = 0: nothing blocked
        (inc[::-1].copy(), K, 0),                         # strictly decreasing, R = 0
        (inc[::-1].copy(), 1, 2),                         # decreasing, small R
        (tie, K, inf),
        (tie_k, K, inf),
        (tie_k, 1, 0),
        (np.array([lim - 1, -lim, lim - 1, -lim] * B)[:n], K, 0),   # extremes, R = 0
        (np.array([-lim] * n), K, 0),
        (np.array([5]), 1, 0),                            # single-key rows
        (np.array([-lim]), K, inf),
        (np.array([lim - 1]), K, 3),
        (np.arange(B)[::-1].copy(), K, 1),                # exactly one tile
        (np.arange(B + 1), K, 0),                         # a one-key last tile
    ]


def key_beats(ahat):
    """A row's :py:`ahat` beats for :class:`hw.sads.SADS`, one key each."""
    return [{"value": int(v), "index": j, "first": int(j == 0), "last": int(j == len(ahat) - 1)}
            for j, v in enumerate(ahat)]


def sel_timing(dut, cfg, beats, top_k, n_tiles, limit):
    """Steady traffic, always ready, on :class:`hw.sads.SADS` or :class:`hw.sadsbank.SADSBank`:
    the cycle each of ``beats`` is accepted on :py:`ahat` and each of the ``n_tiles`` tiles'
    first :py:`sel` beat appears (cycle 0 = the first acceptance); fails after ``limit``
    cycles."""
    accepted, firsts = [], []

    async def bench(ctx):
        ctx.set(dut.sel.ready, 1)
        ctx.set(dut.top_k, top_k)
        ctx.set(dut.radius, cfg.derived.radius_inf)
        ctx.set(dut.ahat.valid, 1)
        j, cycle = 0, 0
        while len(firsts) < n_tiles:
            if j < len(beats):
                ctx.set(dut.ahat.payload, beats[j])
            else:
                ctx.set(dut.ahat.valid, 0)
            _, _, fire, out_valid, out_first = await ctx.tick().sample(
                dut.ahat.valid & dut.ahat.ready, dut.sel.valid, dut.sel.payload.first)
            if out_valid and out_first:
                firsts.append(cycle)
            if fire:
                accepted.append(cycle)
                j += 1
            cycle += 1
            assert cycle < limit

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    t0 = accepted[0]
    return [a - t0 for a in accepted], [f - t0 for f in firsts]


def drive_rows(dut, cfg, rows, want, counters_of, *, traffic=None, seed=0, settle=40,
               timeout=100_000):
    """Drive ``rows`` = [(beats, top_k, radius)] into :py:`ahat` of SADS or SADSBank and take
    ``len(want)`` beats from :py:`sel` (random idle cycles and backpressure with ``traffic``);
    returns ``(beats as dicts of want's fields, counters_of(ctx))``. ``top_k``/``radius``
    are set with a row's first beat and scrambled once it is accepted (the unit must hold the
    row's values); ``settle`` cycles after the last beat must bring no further one."""
    der = cfg.derived
    got, counters = [], {}
    src_rng, sink_rng, junk = (random.Random(seed * 7 + n) for n in (1, 2, 3))

    async def source(ctx):
        for beats, top_k, radius in rows:
            for n, beat in enumerate(beats):
                if traffic is not None:
                    for _ in range(traffic.gaps(src_rng, traffic.idle)):
                        ctx.set(dut.ahat.valid, 0)
                        await ctx.tick()
                ctx.set(dut.ahat.valid, 1)
                ctx.set(dut.ahat.payload, beat)
                if n == 0:
                    ctx.set(dut.top_k, top_k)
                    ctx.set(dut.radius, radius)
                await ctx.tick().until(dut.ahat.ready)
                ctx.set(dut.top_k, junk.randint(0, (1 << der.topk_width) - 1))
                ctx.set(dut.radius, junk.randint(0, der.radius_inf))
        ctx.set(dut.ahat.valid, 0)

    async def sink(ctx):
        beats = await stream_get(ctx, dut.sel, len(want), rng=sink_rng, traffic=traffic)
        got.extend({name: int(getattr(p, name)) for name in want[0]} for p in beats)
        ctx.set(dut.sel.ready, 1)
        for _ in range(settle):                                  # catch extra beats
            _, _, valid = await ctx.tick().sample(dut.sel.valid)
            assert not valid, "extra output beat after the expected ones"
        counters.update(counters_of(ctx))
        state["done"] = True

    state = {"done": False}
    run_until(dut, [source, sink], lambda: state["done"], timeout=timeout)
    return got, counters


def check_rows(got, counters, want, totals):
    """The beats and counters of :func:`drive_rows` against :func:`expected`'s; returns the
    expected totals."""
    for n, (g, e) in enumerate(zip(got, want)):
        assert g == e, f"beat #{n}: got {g}, expected {e}"
    assert len(got) == len(want)
    assert counters == totals
    return totals
