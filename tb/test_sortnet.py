"""Compare-exchange network generator: exhaustive 0-1 principle checks (bit-parallel over every
0-1 vector) and every permutation for small widths, random vectors for large ones, pruning and
padding simplification that remove comparators without changing the kept outputs, and the
pipelined :class:`SortNet` hardware in the Amaranth simulator (a new vector per cycle, random
stalls, the SADS tie rule encoded in the key)."""

import itertools
import random

import pytest
from amaranth.sim import Simulator

from hw.sortnet import SortNet
from spec.sortnet import KINDS, batcher_pairs, top_k_network


def zero_one_ok(net, presorted=0):
    """Every admissible 0-1 input at once (bit v of a mask is vector v), built independently
    of the generator: the presorted prefix of vector v has ``v // 2^free`` ones, the free
    inputs hold the bits of ``v % 2^free``. Rank r must be 1 iff the vector has more than r
    ones (bit-sliced counters)."""
    n, free = net.inputs, net.inputs - presorted
    count = (presorted + 1) << free
    masks = [0] * n
    for v in range(count):
        ones, rest = divmod(v, 1 << free)
        for p in range(ones):
            masks[p] |= 1 << v
        for p in range(free):
            if rest >> p & 1:
                masks[presorted + p] |= 1 << v
    all_ones = (1 << count) - 1
    ge = [all_ones] + [0] * net.keep          # ge[t]: at least t ones among the inputs seen
    for x in masks:
        for t in range(net.keep, 0, -1):
            ge[t] |= ge[t - 1] & x
    wire = list(masks)
    for c in net.comparators:
        x, y = wire[c.hi], wire[c.lo]
        wire[c.hi], wire[c.lo] = x | y, x & y
    return [wire[o] for o in net.outputs] == ge[1:]


def check_layers(net):
    """Layers are consistent: no wire twice in a layer, every comparator after its inputs."""
    last = {}
    for layer in net.layers():
        seen = set()
        for c in layer:
            assert c.hi != c.lo and not {c.hi, c.lo} & seen
            seen.update((c.hi, c.lo))
            assert last.get(c.hi, 0) < c.layer and last.get(c.lo, 0) < c.layer
        for c in layer:
            last[c.hi] = last[c.lo] = c.layer
    assert net.depth == (max(last.values()) if last else 0)


@pytest.mark.parametrize("kind", KINDS)
def test_full_batcher_sorts(kind):
    for m in range(0, 5):
        n = 1 << m
        net = top_k_network(n, n, kind, prune=False)
        assert net.size == net.generated == sum(map(len, batcher_pairs(n, kind)))
        assert zero_one_ok(net)
        check_layers(net)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_one_every_width(kind):
    """0-1 principle, every width 1 … 16, several keeps, with and without presorted inputs."""
    for n in range(1, 13):
        for keep in sorted({1, min(2, n), min(4, n), n}):
            for pre in sorted({0, min(keep, n - 1)}):
                net = top_k_network(n, keep, kind, presorted=pre)
                assert zero_one_ok(net, pre), (kind, n, keep, pre)
                check_layers(net)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,keep,pre", [(16, 4, 4), (16, 4, 0), (16, 1, 0), (16, 16, 0),
                                        (15, 3, 3), (13, 5, 0)])
def test_zero_one_sixteen(kind, n, keep, pre):
    assert zero_one_ok(top_k_network(n, keep, kind, presorted=pre), pre)


@pytest.mark.parametrize("kind", KINDS)
def test_every_permutation_small(kind):
    """All permutations (distinct values) for widths up to 7: the exact sorted top-k."""
    for n in range(1, 8):
        for keep in range(1, n + 1):
            net = top_k_network(n, keep, kind)
            for perm in itertools.permutations(range(n)):
                assert net.apply(list(perm)) == list(range(n - 1, n - 1 - keep, -1))


@pytest.mark.parametrize("kind", KINDS)
def test_random_large(kind):
    """Widths up to 64 (beyond the 0-1 enumeration limit): random values with many ties,
    presorted survivors at the front, tie rule by index through the key."""
    rng = random.Random(1)
    for n, keep in ((24, 4), (33, 5), (48, 8), (64, 32), (64, 1)):
        net = top_k_network(n, keep, kind, presorted=keep)
        for _ in range(150):
            surv = sorted(((rng.randint(0, 9), rng.randrange(1000)) for _ in range(keep)),
                          key=lambda e: (-e[0], e[1]))
            new = [(rng.randint(0, 9), 1000 + i) for i in range(n - keep)]
            entries = surv + new
            got = net.apply(entries, key=lambda e: (e[0], -e[1]))
            assert got == sorted(entries, key=lambda e: (-e[0], e[1]))[:keep]


@pytest.mark.parametrize("kind", KINDS)
def test_pruning_removes_and_preserves(kind):
    """Pruned networks are smaller and give exactly the unpruned network's kept outputs."""
    rng = random.Random(2)
    for n, keep in ((5, 3), (8, 2), (12, 4), (16, 4), (16, 1), (20, 6)):
        full = top_k_network(n, n, kind, prune=False)
        pruned = top_k_network(n, keep, kind)
        assert pruned.size <= full.size <= full.generated
        if n in (8, 16):
            assert pruned.size < full.size
        if n & (n - 1):
            assert full.size < full.generated          # padding comparators are gone
        for _ in range(300):
            v = [rng.randint(0, 5) for _ in range(n)]
            assert pruned.apply(v) == full.apply(v)[:keep]
        presorted = top_k_network(n, keep, kind, presorted=keep)
        assert presorted.size <= pruned.size


def test_reported_sizes():
    """The SADS networks at the presets (16-to-4 as in the paper, 8-to-2, 5-to-3)."""
    sizes = {(n, k): top_k_network(n, k, "oddeven", presorted=k) for n, k in
             ((16, 4), (8, 2), (5, 3), (8, 4))}
    assert (sizes[16, 4].size, sizes[16, 4].depth, sizes[16, 4].generated) == (45, 10, 63)
    assert (sizes[8, 2].size, sizes[8, 2].depth) == (14, 6)
    assert (sizes[5, 3].size, sizes[5, 3].depth) == (6, 5)
    assert top_k_network(16, 4, "bitonic", presorted=4).size == 58


def test_bad_arguments():
    with pytest.raises(ValueError, match="keep"):
        top_k_network(4, 5)
    with pytest.raises(ValueError, match="presorted"):
        top_k_network(4, 2, presorted=5)
    with pytest.raises(ValueError, match="kind"):
        top_k_network(4, 2, "bubble")
    with pytest.raises(ValueError, match="power of two"):
        batcher_pairs(6)


# -- hardware ------------------------------------------------------------------------------

VAL_W, IDX_W = 4, 5


def key(value, index):
    """Larger value wins, then lower index (as in SADS)."""
    return (value << IDX_W) | ((1 << IDX_W) - 1 - index)


@pytest.mark.parametrize("n,keep,kind,lps", [(16, 4, "oddeven", 1), (8, 2, "bitonic", 1),
                                             (5, 3, "oddeven", 2), (11, 4, "bitonic", 3)])
def test_sortnet_hardware(n, keep, kind, lps):
    net = top_k_network(n, keep, kind)
    dut = SortNet(net, VAL_W + IDX_W, tag_width=8, layers_per_stage=lps)
    assert dut.stages == max(1, -(-net.depth // lps)) and dut.latency == dut.stages
    rng = random.Random(n)
    vectors = []
    for t in range(120):
        vals = [rng.randint(0, 3) for _ in range(n)]      # many ties: index decides
        vectors.append([key(v, i) for i, v in enumerate(vals)])
    expect = [sorted(v, reverse=True)[:keep] for v in vectors]
    got = []

    async def bench(ctx):
        sent, cycle = 0, 0
        while len(got) < len(vectors):
            en = rng.random() < 0.8
            ctx.set(dut.en, en)
            ctx.set(dut.i_valid, sent < len(vectors))
            if sent < len(vectors):
                ctx.set(dut.i, vectors[sent])
                ctx.set(dut.i_tag, sent & 0xff)
            _, _, ov, o, tag = await ctx.tick().sample(dut.o_valid, dut.o, dut.o_tag)
            if ov and en:                                  # the output moves on this edge
                got.append([int(x) for x in o])
                assert tag == (len(got) - 1) & 0xff
            if en and sent < len(vectors):
                sent += 1
            cycle += 1
            assert cycle < 2000

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == expect


def test_sortnet_latency():
    """Without stalls a vector entering at cycle t is on the output at t + stages."""
    net = top_k_network(16, 4)
    dut = SortNet(net, VAL_W + IDX_W, layers_per_stage=3)
    seen = []

    async def bench(ctx):
        ctx.set(dut.en, 1)
        ctx.set(dut.i_valid, 1)
        ctx.set(dut.i, [key(i % 4, i) for i in range(16)])
        await ctx.tick()
        ctx.set(dut.i_valid, 0)
        for cycle in range(1, 10):
            _, _, ov = await ctx.tick().sample(dut.o_valid)
            if ov:
                seen.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [dut.latency] == [4]


@pytest.mark.parametrize("n,keep,lps", [(16, 4, 1), (8, 2, 2), (5, 3, 1), (6, 1, 4)])
def test_sortnet_select(n, keep, lps):
    """``select=True``: o_sel is the i_rank-th output of the latest vector that entered with
    i_sel_en, on the same cycle as o, held in between; free running (en high) and with stalls."""
    net = top_k_network(n, keep)
    dut = SortNet(net, VAL_W + IDX_W, layers_per_stage=lps, select=True)
    rng = random.Random(n * 10 + keep)
    vectors = [[key(rng.randint(0, 3), i) for i in range(n)] for _ in range(100)]
    plan = [(rng.random() < 0.7, rng.randrange(keep), rng.random() < 0.5) for _ in vectors]
    seen = []

    async def bench(ctx):
        sent = 0
        for _ in range(600):
            en = rng.random() < 0.85
            ctx.set(dut.en, en)
            valid, rank, sel_en = plan[sent] if sent < len(vectors) else (False, 0, False)
            ctx.set(dut.i_valid, valid)
            if sent < len(vectors):
                ctx.set(dut.i, vectors[sent])
            ctx.set(dut.i_rank, rank)
            ctx.set(dut.i_sel_en, sel_en)
            _, _, ov, o, osel = await ctx.tick().sample(dut.o_valid, dut.o, dut.o_sel)
            seen.append((en, int(ov), [int(x) for x in o], int(osel)))
            if en and sent < len(vectors):
                sent += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # Replay: the output changes only after an edge with en high; every valid output in order
    # must match its vector, and o_sel the selection of the latest one with i_sel_en.
    expect = [(sorted(v, reverse=True)[:keep], p) for v, p in zip(vectors, plan) if p[0]]
    held, k, moved = 0, 0, True
    for en, ov, o, osel in seen:
        if moved and ov:
            want, (_, rank, sel_en) = expect[k]
            assert o == want
            if sel_en:
                held = want[rank]
            k += 1
        assert osel == held
        moved = en
    assert k == len(expect)
