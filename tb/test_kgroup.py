"""KeyGrouper (hw/kgroup.py): the beats of packed K reads regrouped into words of
``predict_keys`` rows, in memory order with ``last`` on a read's final word, under every
traffic pattern (idle source cycles, sink backpressure, both, stress), for a split beat (one or
several words a beat) and gathered words (several beats a word, a read's last beat ending a
word early); latency 1 and the documented ii."""

import random

import pytest
from amaranth.sim import Simulator

from hw.kgroup import KeyGrouper
from spec.config import preset
from spec.job import bus_bytes, row_bytes
from tb.streams import TRAFFIC, run_streams

TINY = preset("tiny").replace(memory="axi", max_seq_len=256)     # rows of 8 bytes
#: (bus bits, predict_keys): words per beat 4, 2, 1; beats per word 2, 4
SHAPES = [(256, 2), (128, 2), (128, 4), (64, 2), (64, 4)]


def _cfg(bus, P):
    return TINY.replace(name=f"kg-{bus}-{P}", axi_data_width=bus, predict_keys=P)


def _expected(cfg, reads):
    """The words of ``reads`` (each a list of beats): split beats or gathered beats, a read's
    last beat closing its word; ``(data, last)`` as the sink sees them."""
    W, G = 8 * bus_bytes(cfg), 8 * cfg.predict_keys * row_bytes(cfg)
    out = []
    for beats in reads:
        if G <= W:
            for n, b in enumerate(beats):
                for g in range(W // G):
                    last = n == len(beats) - 1 and g == W // G - 1
                    out.append(((b >> (g * G)) & ((1 << G) - 1), int(last)))
        else:
            k = G // W
            for s in range(0, len(beats), k):
                part = beats[s:s + k]
                word = sum(b << (j * W) for j, b in enumerate(part))
                out.append((word, int(s + k >= len(beats))))
    return out


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("bus,P", SHAPES, ids=[f"bus{b}-p{p}" for b, p in SHAPES])
def test_words_in_order(bus, P, traffic):
    cfg = _cfg(bus, P)
    W = 8 * bus_bytes(cfg)
    rng = random.Random(bus * 10 + P)
    reads = [[rng.getrandbits(W) for _ in range(rng.randint(1, 7))] for _ in range(30)]
    beats = [{"data": b, "last": int(n == len(r) - 1)} for r in reads for n, b in enumerate(r)]
    want = _expected(cfg, reads)
    dut = KeyGrouper(cfg)
    got, = run_streams(dut, [(dut.i, beats)], [(dut.o, len(want))], traffic=traffic, seed=2)
    # a gathered word closed early keeps stale upper beats: only its read's beats count
    G = 8 * P * row_bytes(cfg)
    for n, (p, (data, last)) in enumerate(zip(got, want)):
        assert p.last == last, n
        if not (G > W and last):
            assert p.data == data, n
    # the closing words: the beats of the read from its last word's start
    if G > W:
        k = G // W
        closing = [(r, len(r) % k or k) for r in reads]
        lasts = [p for p in got if p.last]
        for p, (r, used) in zip(lasts, closing):
            part = r[len(r) - used:]
            assert p.data & ((1 << (used * W)) - 1) == sum(b << (j * W)
                                                           for j, b in enumerate(part))


@pytest.mark.parametrize("bus,P", SHAPES, ids=[f"bus{b}-p{p}" for b, p in SHAPES])
def test_latency_and_ii(bus, P):
    """A steady stream of one long read: the first word a cycle after the beat completing it,
    then a word every ``ii`` cycles (split beats: one a cycle)."""
    dut = KeyGrouper(_cfg(bus, P))
    n_beats = 8
    seen = {"take": [], "out": []}

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        sent = 0
        for cycle in range(60):
            if sent < n_beats:
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"data": sent + 1, "last": int(sent == n_beats - 1)})
            else:
                ctx.set(dut.i.valid, 0)
            _, _, iv, ir, ov = await ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid)
            if iv and ir:
                seen["take"].append(cycle)
                sent += 1
            if ov:
                seen["out"].append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    per = dut.beats_per_word
    words = n_beats * dut.words_per_beat // per
    assert len(seen["out"]) == words
    assert seen["out"][0] == seen["take"][per - 1] + dut.latency
    gaps = {b - a for a, b in zip(seen["out"], seen["out"][1:])}
    assert gaps == {dut.ii}, (gaps, dut.ii)
