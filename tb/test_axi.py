"""AXI pieces on the Amaranth simulator: the burst-splitting rule (exhaustive over small grids
around 4 KB boundaries), the reader's routing and flow control and the writer against
:class:`gen.rtlsim.axi.AxiSlaveModel` (random latency, READY/VALID gaps, R beats of different
IDs reordered and interleaved) under :class:`gen.rtlsim.axi.AxiProtocolChecker`, with random
client traffic; faults, flush and halt; the AXI4-Lite register slave; the timing properties;
and the checker itself on broken stimulus. Config matrix: data widths 64/128/512, ID widths
1-3, ``max_reads``/``max_writes`` 1 and 4."""

import random
import zlib

import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from gen.rtlsim.axi import CHANNELS, AxiProtocolChecker, AxiProtocolError, AxiSlaveModel
from hw.axi import (MAX_BURST, PAGE_BYTES, AxiReader, AxiWriter, BurstSplitter,
                    axi4_master_members, axil_slave_members)
from hw.axil import AxiLiteRegisters
from tb.streams import TRAFFIC, stream_get, stream_put


STEADY, BOTH, STRESS = TRAFFIC[0], TRAFFIC[3], TRAFFIC[4]
NAMES = [s for valid, ready, payload in CHANNELS.values() for s in (valid, ready, *payload)]
SLAVE_OUT = ("awready", "wready", "bid", "bresp", "bvalid", "arready", "rid", "rdata", "rresp",
             "rlast", "rvalid")


def split_model(addr, beats, nbytes, max_burst):
    """The bursts of a command: ``(byte address, beats)``, never across 4 KB."""
    out, addr = [], addr // nbytes * nbytes
    while beats:
        n = min(beats, max_burst, (PAGE_BYTES - addr % PAGE_BYTES) // nbytes)
        out.append((addr, n))
        addr, beats = addr + n * nbytes, beats - n
    return out


def near_boundaries(nbytes, rng, count):
    """Word-aligned addresses, most of them close to a 4 KB boundary."""
    page = PAGE_BYTES // nbytes
    out = []
    for _ in range(count):
        if rng.random() < 0.6:
            word = rng.randrange(1, 16) * page + rng.randint(-3, 2)
        else:
            word = rng.randrange(16 * page)
        out.append(word * nbytes)
    return out


class Bench:
    """A simulation of ``dut`` with an optional AXI slave model and protocol checker on its
    ``m_axi`` port, background stimulus and a watchdog."""

    def __init__(self, dut, *, model=None, checker=None):
        self.dut, self.model, self.checker = dut, model, checker
        self.sim = Simulator(dut)
        self.sim.add_clock(1e-8)
        self.cycle = 0
        if model is not None or checker is not None:
            self.sim.add_testbench(self._slave, background=True)

    async def _slave(self, ctx):
        dut = self.dut
        names = [n for n in NAMES if hasattr(dut, f"m_axi_{n}")]
        sigs = [getattr(dut, f"m_axi_{n}") for n in names]
        outs = {n: getattr(dut, f"m_axi_{n}") for n in names if n in SLAVE_OUT}
        while True:
            if self.model is not None:
                for k, v in self.model.outputs().items():
                    if k in outs:
                        ctx.set(outs[k], v)
            _, _, *values = await ctx.tick().sample(*sigs)
            sampled = dict(zip(names, values))
            if self.checker is not None:
                self.checker.step(sampled)
            if self.model is not None:
                self.model.clock(sampled)
            self.cycle += 1

    def add(self, bench, *, background=True):
        self.sim.add_testbench(bench, background=background)

    def run(self, main, *, timeout=50_000):
        """Run until ``main`` (a testbench) returns; fail after ``timeout`` cycles."""
        finished = []

        async def top(ctx):
            await main(ctx)
            finished.append(True)

        async def watchdog(ctx):
            for _ in range(timeout):
                await ctx.tick()
                if finished:
                    return
            raise AssertionError(f"timeout after {timeout} cycles")
        self.sim.add_testbench(top)
        self.sim.add_testbench(watchdog)
        self.sim.run()
        assert finished


# ---- members and parameters -------------------------------------------------------------------

MASTER_NAMES = ("awid awaddr awlen awsize awburst awlock awcache awprot awvalid awready wdata "
                "wstrb wlast wvalid wready bid bresp bvalid bready arid araddr arlen arsize "
                "arburst arlock arcache arprot arvalid arready rid rdata rresp rlast rvalid "
                "rready").split()
LITE_NAMES = ("awaddr awprot awvalid awready wdata wstrb wvalid wready bresp bvalid bready "
              "araddr arprot arvalid arready rdata rresp rvalid rready").split()


def test_member_names_and_flows():
    members = axi4_master_members("m_axi", addr_width=32, data_width=128, id_width=4)
    assert list(members) == [f"m_axi_{n}" for n in MASTER_NAMES]
    inputs = {"awready", "wready", "bid", "bresp", "bvalid", "arready", "rid", "rdata", "rresp",
              "rlast", "rvalid"}
    for n in MASTER_NAMES:
        assert members[f"m_axi_{n}"].flow.name == ("In" if n in inputs else "Out"), n
    widths = {n: Shape.cast(members[f"m_axi_{n}"].shape).width for n in MASTER_NAMES}
    assert widths["awaddr"] == 32 and widths["wdata"] == 128 and widths["wstrb"] == 16
    assert widths["awid"] == widths["bid"] == widths["rid"] == 4 and widths["arlen"] == 8
    lite = axil_slave_members("s_axil", addr_width=12)
    assert list(lite) == [f"s_axil_{n}" for n in LITE_NAMES]
    lite_out = {"awready", "wready", "bresp", "bvalid", "arready", "rdata", "rresp", "rvalid"}
    for n in LITE_NAMES:
        assert lite[f"s_axil_{n}"].flow.name == ("Out" if n in lite_out else "In"), n


def test_verilog_port_names():
    from gen.artifacts import elaborate
    dut = AxiReader(addr_width=16, data_width=64, id_width=1, max_burst=4, max_reads=2,
                    clients=[(0, 4, 0)])
    text = elaborate(dut, name="rd")
    for n in MASTER_NAMES:
        assert (f" m_axi_{n};" in text) == n.startswith(("ar", "r")), n
    text = elaborate(AxiLiteRegisters(addr_width=8, reg_addr_width=4), name="lite")
    for n in LITE_NAMES:
        assert f" s_axil_{n};" in text, n


@pytest.mark.parametrize("make, message", [
    (lambda: BurstSplitter(addr_width=11, data_width=64, max_burst=4),
     "BurstSplitter addr_width must be an integer from 12 to 64, not 11"),
    (lambda: BurstSplitter(addr_width=16, data_width=96, max_burst=4),
     "BurstSplitter data_width must be a power of two from 8 to 1024, not 96"),
    (lambda: BurstSplitter(addr_width=16, data_width=64, max_burst=257),
     "BurstSplitter max_burst must be an integer from 1 to 256, not 257"),
    (lambda: AxiReader(addr_width=16, data_width=64, id_width=1, max_burst=4, max_reads=0,
                       clients=[(0, 4, 0)]),
     "AxiReader max_reads must be an integer of at least 1, not 0"),
    (lambda: AxiReader(addr_width=16, data_width=64, id_width=1, max_burst=4, max_reads=1,
                       clients=[(0, 4, 0), (0, 4, 0)]),
     "AxiReader clients[1] arid 0 is already used by another client; ARIDs must be distinct"),
    (lambda: AxiReader(addr_width=16, data_width=64, id_width=1, max_burst=4, max_reads=1,
                       clients=[(2, 4, 0)]),
     "AxiReader clients[0] arid must be an integer from 0 to 1, not 2"),
    (lambda: AxiReader(addr_width=16, data_width=64, id_width=1, max_burst=4, max_reads=1,
                       clients=[(0, 0, 0)]),
     "AxiReader clients[0] buffer_beats must be an integer of at least 1, not 0"),
    (lambda: AxiReader(addr_width=16, data_width=64, id_width=1, max_burst=4, max_reads=1,
                       clients=[]),
     "AxiReader clients must be a non-empty list of (arid, buffer_beats, tag_width), not []"),
    (lambda: AxiWriter(addr_width=16, data_width=64, id_width=2, awid=4, max_burst=4,
                       max_writes=1),
     "AxiWriter awid must be an integer from 0 to 3, not 4"),
    (lambda: AxiWriter(addr_width=16, data_width=64, id_width=33, awid=0, max_burst=4,
                       max_writes=1),
     "AxiWriter id_width must be an integer from 1 to 32, not 33"),
    (lambda: AxiLiteRegisters(addr_width=5, reg_addr_width=4),
     "AxiLiteRegisters addr_width must be an integer from 6 to 64, not 5"),
    (lambda: AxiLiteRegisters(addr_width=8, reg_addr_width=4, rdata_latency=3),
     "AxiLiteRegisters rdata_latency must be an integer from 1 to 2, not 3"),
])
def test_bad_parameters(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_bad_parameter_types():
    with pytest.raises(TypeError, match=r"AxiWriter max_writes must be an integer of at least "
                                        r"1, not 2\.0"):
        AxiWriter(addr_width=16, data_width=64, id_width=1, awid=0, max_burst=4, max_writes=2.0)
    with pytest.raises(TypeError, match="prefix must be an identifier"):
        axi4_master_members("m-axi", addr_width=16, data_width=64, id_width=1)


# ---- burst splitting ----------------------------------------------------------------------------

def run_splitter(data_width, max_burst, cmds, *, seed=0, traffic=STEADY):
    nbytes = data_width // 8
    dut = BurstSplitter(addr_width=32, data_width=data_width, max_burst=max_burst, tag_width=8)
    want = [(a, n, t % 256, int(k == len(bursts) - 1))
            for t, (addr, beats) in enumerate(cmds)
            for bursts in [split_model(addr, beats, nbytes, max_burst)]
            for k, (a, n) in enumerate(bursts)]
    got = []
    bench = Bench(dut)

    async def source(ctx):
        await stream_put(ctx, dut.cmd, [{"addr": a, "beats": b, "tag": t % 256}
                                        for t, (a, b) in enumerate(cmds)],
                         rng=random.Random(seed), traffic=traffic)

    async def sink(ctx):
        for p in await stream_get(ctx, dut.burst, len(want), rng=random.Random(seed + 1),
                                  traffic=traffic):
            got.append((p.addr, p.len, p.tag, p.last))
    bench.add(source)
    bench.run(sink, timeout=10 * len(want) + 1000)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"burst {k}: got {g}, expected {w}"
    assert dut.max_len == min(max_burst, PAGE_BYTES // nbytes)


def boundary_grid(nbytes, offsets):
    page = PAGE_BYTES // nbytes
    return [(p * page + o) * nbytes for p in (1, 7) for o in offsets if 0 <= p * page + o]


@pytest.mark.parametrize("data_width, max_burst", [(64, 1), (64, 2), (64, 16), (128, 2),
                                                   (512, 16), (512, 64), (1024, 256)])
def test_split_exhaustive(data_width, max_burst):
    """Every length 1 … 3·max_burst from word offsets -3 … +2 around 4 KB boundaries and in
    the middle of a page (max_burst capped at a page: 512-bit 64, 1024-bit 32)."""
    nbytes = data_width // 8
    page = PAGE_BYTES // nbytes
    top = 3 * min(max_burst, page)
    addrs = boundary_grid(nbytes, [-3, -2, -1, 0, 1, 2, page // 2])
    cmds = [(a, b) for a in addrs for b in range(1, top + 1)]
    run_splitter(data_width, max_burst, cmds, traffic=BOTH)


@pytest.mark.parametrize("data_width", [64, 512])
def test_split_max_burst_256(data_width):
    """max_burst 256: the lengths around multiples of the burst and of the page, and random
    ones up to 768."""
    nbytes, rng = data_width // 8, random.Random(data_width)
    page = PAGE_BYTES // nbytes
    lengths = sorted({b for k in (1, 2, 3) for m in (256, page) for b in (k * m - 1, k * m,
                                                                          k * m + 1)}
                     | {1, 2, 768} | {rng.randint(1, 768) for _ in range(20)})
    addrs = boundary_grid(nbytes, [-2, -1, 0, 1, page // 2])
    run_splitter(data_width, 256, [(a, b) for a in addrs for b in lengths if b > 0])


@pytest.mark.slow
@pytest.mark.parametrize("data_width", [64, 512])
def test_split_max_burst_256_exhaustive(data_width):
    nbytes = data_width // 8
    page = PAGE_BYTES // nbytes
    addrs = boundary_grid(nbytes, [-3, -1, 0, 1, page // 2])
    run_splitter(data_width, 256, [(a, b) for a in addrs for b in range(1, 769)])


def test_split_zero_beats_and_wrap():
    """A command of 0 beats produces nothing; address bits below the bus width are ignored."""
    dut = BurstSplitter(addr_width=16, data_width=64, max_burst=4, tag_width=2)
    bench, got = Bench(dut), []

    async def source(ctx):
        await stream_put(ctx, dut.cmd, [{"addr": 0x100, "beats": 0, "tag": 1},
                                        {"addr": 0xFFD, "beats": 2, "tag": 2}])

    async def sink(ctx):
        got.extend((p.addr, p.len, p.tag, p.last) for p in await stream_get(ctx, dut.burst, 2))
        for _ in range(10):
            await ctx.tick()
        assert not ctx.get(dut.burst.valid) and not ctx.get(dut.busy)
    bench.add(source)
    bench.run(sink)
    assert got == [(0xFF8, 1, 2, 0), (0x1000, 1, 2, 1)]


# ---- reader -------------------------------------------------------------------------------------

READER_CONFIGS = {
    "w64_id2_r4": dict(addr_width=16, data_width=64, id_width=2, max_burst=4, max_reads=4,
                       clients=[(0, 8, 3), (3, 4, 0)]),
    "w128_id1_r1": dict(addr_width=16, data_width=128, id_width=1, max_burst=2, max_reads=1,
                        clients=[(1, 4, 2), (0, 2, 1)]),
    "w512_id3_r4": dict(addr_width=20, data_width=512, id_width=3, max_burst=16, max_reads=4,
                        clients=[(5, 16, 4), (2, 8, 0), (7, 1, 2)]),
}


def reader_jobs(dut, rng, count):
    """Per client: commands ``(addr, beats, tag)`` near 4 KB boundaries."""
    nbytes = len(dut.m_axi_rdata) // 8
    jobs = []
    for (arid, buf, tw), max_len in zip(dut.clients, dut.max_len):
        addrs = near_boundaries(nbytes, rng, count)
        jobs.append([(a, rng.randint(1, 3 * max_len + 1), rng.randrange(1 << tw))
                     for a in addrs])
    return jobs


def expected_beats(model, nbytes, cmds):
    """The beats of read commands; the model answers an error beat with data 0."""
    out = []
    for a, n, tag in cmds:
        for k in range(n):
            err = model.resp(a + k * nbytes) >= 2
            out.append((0 if err else model.read_word(a + k * nbytes), tag, int(k == n - 1),
                        int(err)))
    return out


def run_reader(cfg, *, seed, traffic, idle=0.0, latency=0, count=20, errors=(), interleave=True,
               flush_at=None, stall=None):
    """Commands on every client, data checked beat by beat; ``flush_at`` pulses flush at that
    cycle and then checks that nothing more is delivered; ``stall`` holds one client's data
    (never ready) until every other client is done."""
    dut = AxiReader(**cfg)
    nbytes = cfg["data_width"] // 8
    rng = random.Random(seed)
    model = AxiSlaveModel(data_width=cfg["data_width"], size=1 << 16, seed=seed, idle=idle,
                          latency=latency, interleave=interleave, errors=errors)
    model.mem[:] = rng.randbytes(len(model.mem))
    checker = AxiProtocolChecker(data_width=cfg["data_width"], ids=[c[0] for c in cfg["clients"]],
                                 incr_only=True)
    bench = Bench(dut, model=model, checker=checker)
    jobs = reader_jobs(dut, rng, count)
    want = [expected_beats(model, nbytes, cmds) for cmds in jobs]
    got = [[] for _ in jobs]
    done = [False] * len(jobs)
    flushed = []

    for i, cmds in enumerate(jobs):
        async def source(ctx, i=i, cmds=cmds):
            r = random.Random(seed * 10 + i)
            for a, n, t in cmds:
                for _ in range(traffic.gaps(r, traffic.idle)):
                    ctx.set(dut.cmd[i].valid, 0)
                    await ctx.tick()
                if flushed:                     # the producer stops with the flush
                    break
                ctx.set(dut.cmd[i].valid, 1)
                ctx.set(dut.cmd[i].payload, {"addr": a, "beats": n, "tag": t})
                await ctx.tick().until(dut.cmd[i].ready)
            ctx.set(dut.cmd[i].valid, 0)
        bench.add(source)

        async def sink(ctx, i=i):
            r = random.Random(seed * 10 + 5 + i)
            stream = dut.data[i]
            while True:
                if stall == i and not all(done[k] for k in range(len(jobs)) if k != i):
                    ctx.set(stream.ready, 0)
                else:
                    ctx.set(stream.ready, int(not traffic.backpressure
                                              or r.random() >= traffic.backpressure))
                _, _, valid, ready, p = await ctx.tick().sample(stream.valid, stream.ready,
                                                                stream.payload)
                if valid and ready:
                    got[i].append((p.data, p.tag, p.last, p.err))
                    done[i] = len(got[i]) >= len(want[i])
        bench.add(sink)

    async def main(ctx):
        if flush_at is not None:
            for _ in range(flush_at):
                await ctx.tick()
            while not checker.outstanding["reads"]:     # flush with bursts in flight
                await ctx.tick()
            ctx.set(dut.flush, 1)
            flushed.append(True)
            await ctx.tick()
            ctx.set(dut.flush, 0)
            counts = [len(g) for g in got]
            while not ctx.get(dut.idle):
                await ctx.tick()
            for _ in range(10):
                await ctx.tick()
            assert [len(g) for g in got] == counts, "beats delivered after the flush"
            checker.check_quiet()
            # then it works normally: one more command per client
            for i, (a, n, t) in enumerate(cmds[0] for cmds in jobs):
                want[i] = got[i] + expected_beats(model, nbytes, [(a, n, t)])
                await stream_put(ctx, dut.cmd[i], [{"addr": a, "beats": n, "tag": t}])
                while len(got[i]) < len(want[i]):
                    await ctx.tick()
        else:
            while not all(done):
                await ctx.tick()
        for _ in range(30):
            await ctx.tick()
        assert ctx.get(dut.idle), "not idle at the end"
        checker.check_quiet()
        assert model.quiet
        bench.fault = ctx.get(dut.fault)
    bench.run(main, timeout=200 * sum(len(w) for w in want) + 5000)
    for i, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w), f"client {i}: {len(g)} beats, expected {len(w)}"
        for k, (a, b) in enumerate(zip(g, w)):
            assert a == b, f"client {i} beat {k}: got {a}, expected {b}"
    return bench, checker, model


@pytest.mark.parametrize("traffic", [STEADY, BOTH, STRESS], ids=repr)
@pytest.mark.parametrize("name", list(READER_CONFIGS))
def test_reader(name, traffic):
    cfg = READER_CONFIGS[name]
    idle = {"steady": 0.0, "both": 0.3, "stress": 0.5}[traffic.name]
    bench, checker, model = run_reader(cfg, seed=zlib.crc32(name.encode()) % 1000,
                                       traffic=traffic, idle=idle, latency=12)
    assert checker.counts["ar"] > len(cfg["clients"]) and bench.fault == 0
    if cfg["max_reads"] > 1:
        assert model.interleaved > 0, "the slave model never interleaved two IDs"


def test_reader_no_head_of_line_blocking():
    """A client that takes none of its data does not hold back the others (RREADY stays
    high; its bursts wait for FIFO room instead)."""
    cfg = READER_CONFIGS["w64_id2_r4"]
    _, checker, _ = run_reader(cfg, seed=3, traffic=STEADY, latency=4, count=10, stall=1)
    assert checker.counts["r"] > 0


def test_reader_in_order_bursts_one_id():
    """Bursts of one ID stay in order when the slave never interleaves."""
    run_reader(READER_CONFIGS["w64_id2_r4"], seed=5, traffic=BOTH, idle=0.2, latency=20,
               interleave=False)


@pytest.mark.parametrize("name", ["w64_id2_r4", "w512_id3_r4"])
def test_reader_faults(name):
    """SLVERR and DECERR beats are flagged (``err``) and set the client's sticky fault;
    ``clear`` clears it."""
    cfg = READER_CONFIGS[name]
    errors = [(0x1000, 0x1400, 2), (0x3000, 0x3080, 3)]
    dut_bench, _, _ = run_reader(cfg, seed=11, traffic=BOTH, idle=0.2, latency=6, count=10,
                                 errors=errors)
    assert dut_bench.fault != 0
    # which clients touched an error range is checked by the beat comparison (err); now clear
    dut = AxiReader(**cfg)
    bench = Bench(dut, model=AxiSlaveModel(data_width=cfg["data_width"], errors=[(0, 64, 3)]))

    async def main(ctx):
        await stream_put(ctx, dut.cmd[0], [{"addr": 0, "beats": 1, "tag": 0}])
        p, = await stream_get(ctx, dut.data[0], 1)
        assert p.err and p.last
        await ctx.tick()
        assert ctx.get(dut.fault) == 1
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await ctx.tick()
        assert ctx.get(dut.fault) == 0
    bench.run(main)


@pytest.mark.parametrize("flush_at", [30, 80, 200])
@pytest.mark.parametrize("name", ["w64_id2_r4", "w128_id1_r1"])
def test_reader_flush(name, flush_at):
    """A flush pulse mid-traffic: no beat after it, every burst in flight drained with the
    protocol intact, then idle; the reader works normally afterwards."""
    cfg = READER_CONFIGS[name]
    run_reader(cfg, seed=flush_at, traffic=BOTH, idle=0.3, latency=10, count=12,
               flush_at=flush_at)


# ---- writer -------------------------------------------------------------------------------------

WRITER_CONFIGS = {
    "w64_id1_w4": dict(addr_width=16, data_width=64, id_width=1, awid=1, max_burst=4,
                       max_writes=4),
    "w128_id2_w1": dict(addr_width=16, data_width=128, id_width=2, awid=2, max_burst=16,
                        max_writes=1, buffer_beats=8),
    "w512_id3_w4": dict(addr_width=20, data_width=512, id_width=3, awid=5, max_burst=2,
                        max_writes=4),
}


def writer_jobs(cfg, rng, count):
    """Commands ``(addr, beats)`` and their beats ``(data, strb)``; every fifth beat has a
    random strobe."""
    nbytes = cfg["data_width"] // 8
    full = (1 << nbytes) - 1
    cmds = [(a, rng.randint(1, 3 * min(cfg["max_burst"], PAGE_BYTES // nbytes) + 1))
            for a in near_boundaries(nbytes, rng, count)]
    beats = [(rng.getrandbits(8 * nbytes), full if rng.random() < 0.8 else rng.getrandbits(nbytes))
             for _, n in cmds for _ in range(n)]
    return cmds, beats


def apply_writes(mem, nbytes, bursts, errors=()):
    """``bursts``: ``[(addr, [(data, strb), …])]`` written in order; error ranges skipped."""
    for addr, beats in bursts:
        for k, (data, strb) in enumerate(beats):
            a = addr + k * nbytes
            if any(lo <= a < hi for lo, hi, _ in errors):
                continue
            for j, byte in enumerate(data.to_bytes(nbytes, "little")):
                if strb >> j & 1:
                    mem[(a + j) % len(mem)] = byte


def burst_list(cfg, cmds, beats):
    nbytes = cfg["data_width"] // 8
    max_len = min(cfg["max_burst"], cfg.get("buffer_beats") or MAX_BURST)
    out, k = [], 0
    for addr, n in cmds:
        for a, m in split_model(addr, n, nbytes, max_len):
            out.append((a, beats[k:k + m]))
            k += m
    return out


def run_writer(cfg, *, seed, traffic, idle=0.0, latency=0, count=20, errors=(), halt_at=None,
               producer_continues=False):
    """Commands and data with random gaps against the slave model; the memory is compared
    with the expected writes. ``halt_at``: raise halt then (with bursts awaiting B), hold it
    until idle, check that exactly the issued bursts were written, then write once more."""
    dut = AxiWriter(**cfg)
    nbytes = cfg["data_width"] // 8
    rng = random.Random(seed)
    model = AxiSlaveModel(data_width=cfg["data_width"], size=1 << 16, seed=seed, idle=idle,
                          latency=latency, errors=errors)
    model.mem[:] = rng.randbytes(len(model.mem))
    start = bytearray(model.mem)
    checker = AxiProtocolChecker(data_width=cfg["data_width"], ids=[cfg["awid"]], incr_only=True)
    bench = Bench(dut, model=model, checker=checker)
    cmds, beats = writer_jobs(cfg, rng, count)
    bursts = burst_list(cfg, cmds, beats)
    halted, sent = [], []

    async def put(ctx, stream, items, r, stop_on_halt):
        for item in items:
            for _ in range(traffic.gaps(r, traffic.idle)):
                ctx.set(stream.valid, 0)
                await ctx.tick()
            if halted and stop_on_halt:
                break
            ctx.set(stream.valid, 1)
            ctx.set(stream.payload, item)
            await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)
        sent.append(stream)

    async def cmd_source(ctx):
        await put(ctx, dut.cmd, [{"addr": a, "beats": n} for a, n in cmds],
                  random.Random(seed + 1), True)

    async def data_source(ctx):
        await put(ctx, dut.data, [{"data": d, "strb": s} for d, s in beats],
                  random.Random(seed + 2), not producer_continues)
    bench.add(cmd_source)
    bench.add(data_source)

    async def main(ctx):
        if halt_at is not None:
            for _ in range(halt_at):
                await ctx.tick()
            while not checker.outstanding["b"] and not checker.outstanding["writes_without_w"]:
                await ctx.tick()
            ctx.set(dut.halt, 1)
            halted.append(True)
            while not (ctx.get(dut.idle) and len(sent) == 2):    # the producer has stopped
                await ctx.tick()
            for _ in range(20):
                await ctx.tick()
                assert ctx.get(dut.idle) and not ctx.get(dut.m_axi_awvalid)
            ctx.set(dut.halt, 0)
            issued = checker.counts["aw"]
            want = bytearray(start)
            apply_writes(want, nbytes, bursts[:issued], errors)
            assert model.mem == want, f"memory differs from the {issued} issued bursts"
            # and then it works normally
            a, n = cmds[0]
            more = [(rng.getrandbits(8 * nbytes), (1 << nbytes) - 1) for _ in range(n)]
            await stream_put(ctx, dut.cmd, [{"addr": a, "beats": n}])
            await stream_put(ctx, dut.data, [{"data": d, "strb": s} for d, s in more])
            apply_writes(want, nbytes, burst_list(cfg, [(a, n)], more), errors)
            bench.want = want
        else:
            bench.want = bytearray(start)
            apply_writes(bench.want, nbytes, bursts, errors)
        await ctx.tick()
        while not (len(sent) == 2 and ctx.get(dut.idle) and model.quiet):
            await ctx.tick()
        for _ in range(10):
            await ctx.tick()
        checker.check_quiet()
        bench.fault = ctx.get(dut.fault)
    bench.run(main, timeout=100 * len(beats) + 5000)
    assert model.mem == bench.want, "memory differs from the expected writes"
    return bench, checker, bursts


@pytest.mark.parametrize("traffic", [STEADY, BOTH, STRESS], ids=repr)
@pytest.mark.parametrize("name", list(WRITER_CONFIGS))
def test_writer(name, traffic):
    cfg = WRITER_CONFIGS[name]
    idle = {"steady": 0.0, "both": 0.3, "stress": 0.5}[traffic.name]
    # AWREADY held low more often, so that W also goes first
    slave_idle = {ch: idle for ch in ("w", "b")} | {"aw": 1.6 * idle}
    bench, checker, bursts = run_writer(cfg, seed=zlib.crc32(name.encode()) % 1000,
                                        traffic=traffic, idle=slave_idle, latency=10)
    assert checker.counts["aw"] == checker.counts["b"] == len(bursts) and bench.fault == 0
    if idle:
        assert checker.counts["w_leads"] > 0, "W never went before its AW"


@pytest.mark.parametrize("name", ["w64_id1_w4", "w512_id3_w4"])
def test_writer_faults(name):
    """SLVERR and DECERR B responses set the sticky fault; the port stays legal."""
    cfg = WRITER_CONFIGS[name]
    errors = [(0x1000, 0x1400, 2), (0x3000, 0x3080, 3)]
    bench, _, _ = run_writer(cfg, seed=7, traffic=BOTH, idle=0.2, latency=5, errors=errors)
    assert bench.fault == 1
    dut = AxiWriter(**cfg)
    bench = Bench(dut, model=AxiSlaveModel(data_width=cfg["data_width"], errors=[(0, 64, 3)]))

    async def main(ctx):
        await stream_put(ctx, dut.cmd, [{"addr": 0, "beats": 1}])
        await stream_put(ctx, dut.data, [{"data": 1, "strb": 1}])
        while not ctx.get(dut.fault):
            await ctx.tick()
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await ctx.tick()
        assert ctx.get(dut.fault) == 0 and ctx.get(dut.idle)
    bench.run(main)


@pytest.mark.parametrize("producer_continues", [False, True])
@pytest.mark.parametrize("halt_at", [40, 150])
@pytest.mark.parametrize("name", ["w64_id1_w4", "w128_id2_w1"])
def test_writer_halt(name, halt_at, producer_continues):
    """Halt with bursts in flight: their W beats complete, every B arrives, nothing else is
    written (whether the producer stops or keeps sending), idle; then a normal write."""
    run_writer(WRITER_CONFIGS[name], seed=halt_at, traffic=BOTH, idle=0.3, latency=8,
               halt_at=halt_at, producer_continues=producer_continues)


# ---- AXI4-Lite registers --------------------------------------------------------------------

LITE = ("awaddr", "awprot", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp",
        "bvalid", "bready", "araddr", "arprot", "arvalid", "arready", "rdata", "rresp", "rvalid",
        "rready")


class LiteMaster:
    """A testbench-side AXI4-Lite master with random delays and an AW/W order per write."""

    def __init__(self, dut, rng, idle=0.0):
        self.p = {n: getattr(dut, f"s_axil_{n}") for n in LITE}
        self.rng, self.idle = rng, idle

    async def _gap(self, ctx):
        while self.idle and self.rng.random() < self.idle:
            await ctx.tick()

    async def write(self, ctx, addr, value, strb=0xF, order="together"):
        p = self.p
        await self._gap(ctx)
        lead = self.rng.randint(1, 4)
        ctx.set(p["awaddr"], addr)
        ctx.set(p["wdata"], value)
        ctx.set(p["wstrb"], strb)
        aw = w = False
        cycle = 0
        while not (aw and w):
            ctx.set(p["awvalid"], int(not aw and (order != "w_first" or cycle >= lead)))
            ctx.set(p["wvalid"], int(not w and (order != "aw_first" or cycle >= lead)))
            _, _, awv, awr, wv, wr = await ctx.tick().sample(p["awvalid"], p["awready"],
                                                             p["wvalid"], p["wready"])
            aw, w, cycle = aw or (awv and awr), w or (wv and wr), cycle + 1
        ctx.set(p["awvalid"], 0)
        ctx.set(p["wvalid"], 0)
        return await self._response(ctx, "b")

    async def read(self, ctx, addr):
        p = self.p
        await self._gap(ctx)
        ctx.set(p["araddr"], addr)
        ctx.set(p["arvalid"], 1)
        await ctx.tick().until(p["arready"])
        ctx.set(p["arvalid"], 0)
        return await self._response(ctx, "r")

    async def _response(self, ctx, ch):
        p = self.p
        while True:
            ready = int(not self.idle or self.rng.random() >= self.idle)
            ctx.set(p[f"{ch}ready"], ready)
            _, _, valid, resp, data = await ctx.tick().sample(
                p[f"{ch}valid"], p[f"{ch}resp"], p["rdata"])
            if valid and ready:
                ctx.set(p[f"{ch}ready"], 0)
                return (resp, data) if ch == "r" else resp


def lite_bench(dut, regs, writes, rdata_latency=1, write_lead=False):
    """The core's side: ``regs`` written on ``reg_we`` (logged in ``writes``), read with
    ``rdata_latency`` cycles of latency; with ``write_lead``, checks that a write's address
    and data were shown the cycle before ``reg_we``."""
    async def core(ctx):
        addrs = [0] * rdata_latency               # the addresses of the reads in flight
        before = None
        while True:
            _, _, addr, we, wdata = await ctx.tick().sample(dut.reg_addr, dut.reg_we,
                                                            dut.reg_wdata)
            if we:
                if write_lead:
                    assert before == (addr, wdata)
                regs[addr] = wdata
                writes.append((addr, wdata))
            before = (addr, wdata)
            addrs = addrs[1:] + [addr]
            ctx.set(dut.reg_rdata, regs[addrs[0]])
    return core


@pytest.mark.parametrize("idle,rdata_latency,write_lead",
                         [(0.0, 1, False), (0.4, 1, False), (0.0, 2, True), (0.4, 2, True)])
def test_lite_registers(idle, rdata_latency, write_lead):
    """Writes with AW first, W first and both together, read back; out-of-range addresses and
    partial strobes are SLVERR and touch nothing; the two directions run concurrently."""
    dut = AxiLiteRegisters(addr_width=12, reg_addr_width=4, rdata_latency=rdata_latency,
                           write_lead=write_lead)
    regs, writes = [0] * 16, []
    bench = Bench(dut)
    bench.add(lite_bench(dut, regs, writes, rdata_latency, write_lead))
    rng = random.Random(int(idle * 10))
    master = LiteMaster(dut, rng, idle)
    shadow = [0] * 16

    async def main(ctx):
        for k in range(40):
            addr, value = rng.randrange(16), rng.getrandbits(32)
            order = ("aw_first", "w_first", "together")[k % 3]
            assert await master.write(ctx, addr * 4 + rng.randrange(4), value,
                                      order=order) == 0
            shadow[addr] = value
            resp, _ = await master.read(ctx, rng.randrange(16) * 4)
            assert resp == 0
        for addr in range(16):
            assert await master.read(ctx, addr * 4) == (0, shadow[addr])
        count = len(writes)
        assert await master.write(ctx, 16 * 4, 5) == 2                   # out of range
        assert await master.write(ctx, 0xFFC, 5, order="w_first") == 2
        assert await master.write(ctx, 4, 5, strb=0b0111) == 2            # partial strobe
        assert await master.write(ctx, 4, 5, strb=0) == 2
        assert await master.read(ctx, 16 * 4) == (2, 0)
        assert await master.read(ctx, 0x800) == (2, 0)
        assert len(writes) == count and regs == shadow
    bench.run(main)
    assert regs == shadow


@pytest.mark.parametrize("rdata_latency,write_lead", [(1, False), (2, True)])
def test_lite_concurrent_read_and_write(rdata_latency, write_lead):
    """A read and a write in flight together share the register port; both complete."""
    dut = AxiLiteRegisters(addr_width=6, reg_addr_width=4, rdata_latency=rdata_latency,
                           write_lead=write_lead)
    regs, writes = list(range(100, 116)), []
    bench = Bench(dut)
    bench.add(lite_bench(dut, regs, writes, rdata_latency, write_lead))
    rng = random.Random(2)
    results = []

    async def writer(ctx):
        m = LiteMaster(dut, random.Random(3))
        for k in range(30):
            results.append(("w", await m.write(ctx, (k % 8) * 4 + 32, k)))
    bench.add(writer, background=False)

    async def main(ctx):
        m = LiteMaster(dut, rng)
        for k in range(30):
            resp, data = await m.read(ctx, (k % 8) * 4)
            results.append(("r", resp, data))
            assert data == 100 + k % 8
    bench.run(main)
    assert sorted(results).count(("w", 0)) == 30
    assert regs[8:16] == [24, 25, 26, 27, 28, 29, 22, 23]


# ---- timing properties --------------------------------------------------------------------------

def test_reader_latency_and_ii():
    """cmd -> ARVALID is ``ar_latency``; R -> data is ``r_latency``; a long read into an
    always-ready client runs at one beat per cycle (``ii``), RREADY always high."""
    dut = AxiReader(addr_width=16, data_width=64, id_width=1, max_burst=8, max_reads=4,
                    clients=[(0, 32, 0), (1, 4, 0)])
    model = AxiSlaveModel(data_width=64)
    bench = Bench(dut, model=model, checker=AxiProtocolChecker(data_width=64, ids=[0, 1]))
    events = {}

    async def monitor(ctx):
        cycle = 0
        async for _, _, cv, cr, arv, rv, rr, dv, dr in ctx.tick().sample(
                dut.cmd[0].valid, dut.cmd[0].ready, dut.m_axi_arvalid, dut.m_axi_rvalid,
                dut.m_axi_rready, dut.data[0].valid, dut.data[0].ready):
            for name, hit in (("cmd", cv and cr), ("ar", arv), ("r", rv and rr),
                              ("data", dv and dr)):
                if hit:
                    events.setdefault(name, []).append(cycle)
            assert rr
            cycle += 1
    bench.add(monitor)

    async def main(ctx):
        ctx.set(dut.data[0].ready, 1)
        await stream_put(ctx, dut.cmd[0], [{"addr": 0x100, "beats": 1, "tag": 0}])
        while "data" not in events:
            await ctx.tick()
        assert events["ar"][0] - events["cmd"][0] == dut.ar_latency
        assert events["data"][0] - events["r"][0] == dut.r_latency
        events.clear()
        await stream_put(ctx, dut.cmd[0], [{"addr": 0x2000, "beats": 200, "tag": 0}])
        while len(events.get("data", ())) < 200:
            await ctx.tick()
        d = events["data"]
        assert d[-1] - d[0] == 199 * dut.ii                   # no bubble in 200 beats
    bench.run(main)


def test_writer_latency_and_ii():
    """Last data beat of a burst -> AWVALID ``aw_latency``, -> WVALID ``w_latency``; buffered
    data: cmd -> AWVALID ``cmd_latency``; a long write runs at one beat per cycle."""
    dut = AxiWriter(addr_width=16, data_width=64, id_width=1, awid=0, max_burst=8, max_writes=4)
    model = AxiSlaveModel(data_width=64)
    bench = Bench(dut, model=model, checker=AxiProtocolChecker(data_width=64, ids=[0]))
    events = {}

    async def monitor(ctx):
        cycle = 0
        async for _, _, cv, cr, dv, dr, awv, wv, wr in ctx.tick().sample(
                dut.cmd.valid, dut.cmd.ready, dut.data.valid, dut.data.ready,
                dut.m_axi_awvalid, dut.m_axi_wvalid, dut.m_axi_wready):
            for name, hit in (("cmd", cv and cr), ("data", dv and dr), ("aw", awv),
                              ("w", wv and wr)):
                if hit:
                    events.setdefault(name, []).append(cycle)
            cycle += 1
    bench.add(monitor)

    async def main(ctx):
        await stream_put(ctx, dut.cmd, [{"addr": 0x100, "beats": 1}])
        for _ in range(8):
            await ctx.tick()
        await stream_put(ctx, dut.data, [{"data": 1, "strb": 0xFF}])
        while "w" not in events:
            await ctx.tick()
        assert events["aw"][0] - events["data"][0] == dut.aw_latency
        assert events["w"][0] - events["data"][0] == dut.w_latency
        events.clear()
        await stream_put(ctx, dut.data, [{"data": 2, "strb": 0xFF}])
        for _ in range(8):
            await ctx.tick()
        await stream_put(ctx, dut.cmd, [{"addr": 0x200, "beats": 1}])
        while "aw" not in events:
            await ctx.tick()
        assert events["aw"][0] - events["cmd"][0] == dut.cmd_latency
        while not ctx.get(dut.idle):
            await ctx.tick()
        events.clear()
        await stream_put(ctx, dut.cmd, [{"addr": 0x1000, "beats": 300}])
        await stream_put(ctx, dut.data, [{"data": k, "strb": 0xFF} for k in range(300)])
        while len(events.get("w", ())) < 300:
            await ctx.tick()
        w, d = events["w"], events["data"]
        assert d[-1] - d[0] == 299 and w[-1] - w[0] == 299 * dut.ii
    bench.run(main)


@pytest.mark.parametrize("rdata_latency,write_lead", [(1, False), (2, True)])
def test_lite_latencies(rdata_latency, write_lead):
    dut = AxiLiteRegisters(addr_width=8, reg_addr_width=4, rdata_latency=rdata_latency,
                           write_lead=write_lead)
    bench = Bench(dut)
    bench.add(lite_bench(dut, [7] * 16, [], rdata_latency, write_lead))
    p = {n: getattr(dut, f"s_axil_{n}") for n in LITE}

    async def main(ctx):
        ctx.set(p["awvalid"], 1)
        ctx.set(p["wvalid"], 1)
        ctx.set(p["wstrb"], 0xF)
        ctx.set(p["wdata"], 9)
        await ctx.tick().until(p["awready"] & p["wready"])
        ctx.set(p["awvalid"], 0)
        ctx.set(p["wvalid"], 0)
        ctx.set(p["bready"], 1)
        n = 1                                      # counted from the handshake's cycle
        while not ctx.get(p["bvalid"]):
            await ctx.tick()
            n += 1
        assert n == dut.write_latency
        await ctx.tick()
        ctx.set(p["arvalid"], 1)
        await ctx.tick().until(p["arready"])
        ctx.set(p["arvalid"], 0)
        n = 1
        while not ctx.get(p["rvalid"]):
            await ctx.tick()
            n += 1
        assert n == dut.read_latency and ctx.get(p["rdata"]) == 9
    bench.run(main)


# ---- the protocol checker on broken stimulus ------------------------------------------------

def quiet_port(**values):
    sig = {n: 0 for n in NAMES}
    sig.update(arsize=3, awsize=3, arburst=1, awburst=1)
    sig.update(values)
    return sig


def feed(checker, cycles):
    for sig in cycles:
        checker.step(quiet_port(**sig))


def ar(addr=0, arlen=0, arid=0, **kw):
    return dict(arvalid=1, arready=1, araddr=addr, arlen=arlen, arid=arid, **kw)


def aw(addr=0, awlen=0, awid=0, **kw):
    return dict(awvalid=1, awready=1, awaddr=addr, awlen=awlen, awid=awid, **kw)


def r(rid=0, rlast=0):
    return dict(rvalid=1, rready=1, rid=rid, rlast=rlast)


def w(wlast=0):
    return dict(wvalid=1, wready=1, wlast=wlast)


def b(bid=0):
    return dict(bvalid=1, bready=1, bid=bid)


def test_checker_accepts_legal_traffic():
    c = AxiProtocolChecker(data_width=64, ids=[0, 1], incr_only=True)
    feed(c, [ar(0xFF8, 0, 0), ar(0x1000, 2, 1), r(1), r(0, 1), r(1), r(1, 1),
             w(), dict(**w(1), **aw(0x100, 1)),          # W leads its AW
             aw(0x200, 0, 1), {}, w(1), b(0), {}, b(1),
             dict(arvalid=1, araddr=8), dict(arvalid=1, araddr=8, arready=1), r(0, 1)])
    c.check_quiet()
    assert c.counts["r"] == 5 and c.counts["b"] == 2 and not c.errors


@pytest.mark.parametrize("cycles, message", [
    ([ar(0xFF8, 1)], "crosses a 4 KB boundary"),
    ([aw(0x1F00, 32)], "crosses a 4 KB boundary"),
    ([dict(arvalid=1, araddr=8), {}], "ARVALID dropped before ARREADY"),
    ([dict(awvalid=1, awaddr=8), dict(awvalid=1, awaddr=16)], "AW payload changed before "
                                                              "AWREADY: awaddr"),
    ([dict(wvalid=1, wdata=1), dict(wvalid=1, wdata=2)], "W payload changed"),
    ([ar(arsize=4)], "ARSIZE 4 is wider than the 8-byte bus"),
    ([ar(arburst=3)], "reserved ARBURST 3"),
    ([ar(arburst=2, arlen=2)], "a WRAP burst needs 2, 4, 8 or 16 beats"),
    ([ar(arburst=0, arlen=16)], "a FIXED burst has at most 16 beats"),
    ([ar(arid=2)], "ARID 2 is not one of [0, 1]"),
    ([aw(awid=3)], "AWID 3 is not one of [0, 1]"),
    ([aw(0, 2), w(), w(1)], "WLAST on beat 2 of a burst of 3 beats"),
    ([aw(0, 1), w(), w()], "no WLAST on beat 2, the last of the burst"),
    ([w(), w(1), aw(0, 0)], "AW of 1 beats (id 0) came after its W burst of 2 beats"),
    ([w(), w(), aw(0, 0)], "came after 2 W beats of its burst"),
    ([b(0)], "B for ID 0 without a completed write outstanding"),
    ([aw(0, 1), w(), b(0)], "B for ID 0 without a completed write outstanding"),
    ([r(1, 1)], "R beat for ID 1 with no read outstanding"),
    ([ar(0, 2), r(0), r(0, 1)], "RLAST on ID 0 with 1 beats of the burst left"),
    ([ar(0, 1), r(0), r(0)], "no RLAST on the last beat of a burst of ID 0"),
    ([ar(0, 1), r(0, 0)], None),
])
def test_checker_catches(cycles, message):
    """Each broken sequence fails with its message (the last entry: a read left in flight)."""
    c = AxiProtocolChecker(data_width=64, ids=[0, 1])
    with pytest.raises(AxiProtocolError) as info:
        feed(c, cycles)
        c.check_quiet()
    assert message is None and "still in flight" in str(info.value) or \
        message in str(info.value), str(info.value)


def test_checker_incr_only_and_lenient():
    c = AxiProtocolChecker(data_width=128, incr_only=True, strict=False)
    feed(c, [ar(arburst=0), ar(arsize=3), r(0, 1), r(0, 1), r(0, 1)])
    assert len(c.errors) == 3 and "expected INCR of the bus width" in c.errors[1]
    assert "R beat for ID 0 with no read outstanding" in c.errors[2]
