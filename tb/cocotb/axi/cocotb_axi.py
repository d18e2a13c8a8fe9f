"""CopyBench (tb/test_axi_verilator.py) on Verilator: copies (reader client 0 -> writer, data
XOR tag) and peeks (client 1) near 4 KB boundaries, against cocotbext-axi's AxiRam with random
read latency and random pauses on all five channels, or against AxiSlaveModel (reordered and
interleaved IDs, DECERR); random gaps on the command streams, random stalls of the internal
copy stream and backpressure on the peek stream; the protocol checker on the port throughout.
Also: throughput and latency, SLVERR/DECERR faults, flush and halt through the AXI4-Lite
registers, the Lite slave under cocotbext-axi's AxiLiteMaster, and the checker failing on a
deliberately broken slave."""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from gen.rtlsim.axi import (AxiProtocolChecker, AxiSlaveModel, attach_checker, axi_ram,
                            axil_master, drive_slave_model, quiet_cocotbext, set_pauses)
from gen.rtlsim.streams import StreamSink, StreamSource
from hw.axi import read_cmd_layout, read_data_layout, write_cmd_layout
from tb.test_axi_verilator import CLEAR, CONTROL, FLUSH, HALT, SCRATCH, STATUS


P = json.loads(os.environ["SOFA_AXI_BENCH"])
SEED = int(os.environ.get("SOFA_SEED", "1"))
A, D = P["addr_width"], P["data_width"]
NB = D // 8
CMD0, CMD1 = read_cmd_layout(A, D, 4), read_cmd_layout(A, D, 0)
WCMD, PEEK = write_cmd_layout(A, D), read_data_layout(D, 0)
MEM = 1 << 20
SRC, DST = 0x00000, 0x80000          # copy sources and peeks below DST, destinations above
quiet_cocotbext()


async def reset(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in ("rd_cmd_0__valid", "rd_cmd_1__valid", "wr_cmd__valid", "peek__ready", "stall"):
        getattr(dut, name).value = 0
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def checker(dut, **kw):
    """The protocol checker on ``m_axi``; its monitor task is :py:`c.task`."""
    c = AxiProtocolChecker(data_width=D, ids=[0, 1, 2], incr_only=True, **kw)
    c.task = attach_checker(dut, c)
    return c


def near_boundary(rng, base, span):
    """A bus-aligned address in ``[base, base + span)``, usually close to a 4 KB boundary."""
    if rng.random() < 0.6:
        a = base + rng.randrange(1, span // 4096) * 4096 + rng.randint(-4, 3) * NB
    else:
        a = base + rng.randrange(span // NB) * NB
    return min(max(a, base), base + span - 64 * NB) // NB * NB


def jobs(rng, count, most):
    """Copies ``(src, dst, beats, tag)`` and peeks ``(addr, beats)``, at most ``most`` beats.
    Destinations get windows of their own (the expected memory does not depend on the order
    of the writes); their count is capped by the 512 KB above DST."""
    window = 1 << (most * NB + 0x1000 - 1).bit_length()
    count = min(count, (MEM - DST) // window)
    copies = []
    for i in range(count):
        offset = rng.choice([0x1000 - rng.randint(1, 3) * NB, rng.randrange(0x1000) // NB * NB])
        copies.append((near_boundary(rng, SRC, 0x40000), DST + i * window + offset,
                       rng.randint(1, most), rng.randrange(16)))
    peeks = [(near_boundary(rng, SRC, 0x40000), rng.randint(1, most)) for _ in range(count)]
    return copies, peeks


def word(mem_read, addr):
    return int.from_bytes(mem_read(addr, NB), "little")


async def run_jobs(dut, mem_read, copies, peeks, *, seed, idle=0.0, stall=0.0, backpressure=0.0,
                   burst=1, timeout=200_000):
    """Send the copies and peeks; check every peek beat; wait until both engines are idle."""
    peek_want = [(word(mem_read, a + k * NB), int(k == n - 1)) for a, n in peeks
                 for k in range(n)]
    got = []
    sink = StreamSink(dut, "peek", PEEK, lambda beat: got.append(beat),
                      backpressure=backpressure, burst=burst, seed=seed + 3)
    tasks = [cocotb.start_soon(sink.run())]
    sources = [
        (StreamSource(dut, "rd_cmd_0", CMD0, idle=idle, burst=burst, seed=seed),
         [{"addr": s, "beats": n, "tag": t} for s, _, n, t in copies]),
        (StreamSource(dut, "wr_cmd", WCMD, idle=idle, burst=burst, seed=seed + 1),
         [{"addr": d, "beats": n} for _, d, n, _ in copies]),
        (StreamSource(dut, "rd_cmd_1", CMD1, idle=idle, burst=burst, seed=seed + 2),
         [{"addr": a, "beats": n, "tag": 0} for a, n in peeks]),
    ]
    sends = [cocotb.start_soon(src.send(items)) for src, items in sources]

    async def stalls():
        rng = random.Random(seed + 4)
        while True:
            await FallingEdge(dut.clk)
            dut.stall.value = int(bool(stall) and rng.random() < stall)
    tasks.append(cocotb.start_soon(stalls()))
    for cycle in range(timeout):
        await RisingEdge(dut.clk)
        if len(got) >= len(peek_want) and all(s.done() for s in sends) and \
                dut.rd_idle.value and dut.wr_idle.value:
            break
    else:
        raise AssertionError(f"not done after {timeout} cycles: {len(got)} of "
                             f"{len(peek_want)} peek beats")
    for t in tasks:
        t.cancel()
    dut.stall.value = 0
    await ClockCycles(dut.clk, 20)
    assert len(got) == len(peek_want), f"{len(got)} peek beats, expected {len(peek_want)}"
    for k, (beat, (data, last)) in enumerate(zip(got, peek_want)):
        assert (beat["data"], beat["last"], beat["err"]) == (data, last, 0), \
            f"peek beat {k}: got {beat}, expected data {data:#x} last {last}"
    return cycle


def check_copies(mem_read, snapshot, copies):
    for s, d, n, t in copies:
        for k in range(n):
            want = word(snapshot, s + k * NB) ^ t
            got = word(mem_read, d + k * NB)
            assert got == want, f"copy {s:#x}->{d:#x} beat {k}: {got:#x} != {want:#x}"


def fill(ram, rng):
    ram.write(0, rng.randbytes(DST))
    return bytes(ram.read(0, MEM))


@cocotb.test()
async def test_copy_and_peek(dut):
    """Copies and peeks, AxiRam with random read latency, pauses on all channels, gaps,
    internal stalls and backpressure, at three intensities."""
    await reset(dut)
    rng = random.Random(SEED)
    c = checker(dut)
    ram = axi_ram(dut, size=MEM, seed=SEED, latency=8)
    snap = fill(ram, rng)
    for n, (idle, burst) in enumerate([(0.0, 1), (0.3, 1), (0.5, 6)]):
        set_pauses(ram.channels, SEED + n, idle, burst)
        copies, peeks = jobs(rng, 12, 3 * P["max_burst"] + 5)
        await run_jobs(dut, ram.read, copies, peeks, seed=SEED + 10 * n, idle=idle, stall=idle,
                       backpressure=idle, burst=burst)
        check_copies(ram.read, lambda a, k: snap[a:a + k], copies)
        c.check_quiet()
    assert c.counts["r"] > 0 and c.counts["b"] > 0


@cocotb.test()
async def test_stress(dut):
    """Many long copies and peeks at once with long pauses everywhere; ``SOFA_STRESS_ROUNDS``
    rounds (1 by default)."""
    await reset(dut)
    rng = random.Random(SEED + 1)
    c = checker(dut)
    ram = axi_ram(dut, size=MEM, seed=SEED + 1, idle=0.5, burst=8, latency=20)
    snap = fill(ram, rng)
    for n in range(int(os.environ.get("SOFA_STRESS_ROUNDS", "1"))):
        copies, peeks = jobs(rng, 30, 200)
        await run_jobs(dut, ram.read, copies, peeks, seed=SEED + 5 + n, idle=0.5, stall=0.5,
                       backpressure=0.5, burst=8, timeout=2_000_000)
        check_copies(ram.read, lambda a, k: snap[a:a + k], copies)
        c.check_quiet()


@cocotb.test()
async def test_interleaved_slave(dut):
    """AxiSlaveModel: bursts of the three IDs reordered and interleaved beat by beat."""
    await reset(dut)
    rng = random.Random(SEED + 2)
    c = checker(dut)
    model = AxiSlaveModel(data_width=D, size=MEM, seed=SEED, idle=0.3, latency=30)
    model.mem[:DST] = rng.randbytes(DST)
    snap = bytes(model.mem)
    drive_slave_model(dut, model)

    def read(a, k):
        return bytes(model.mem[a:a + k])
    copies, peeks = jobs(rng, 15, 3 * P["max_burst"] + 5)
    await run_jobs(dut, read, copies, peeks, seed=SEED + 6, idle=0.3, stall=0.3,
                   backpressure=0.3)
    check_copies(read, lambda a, k: snap[a:a + k], copies)
    c.check_quiet()
    assert model.quiet


@cocotb.test()
async def test_throughput_and_latency(dut):
    """No pauses, no latency: cmd -> ARVALID = ar_latency, R -> peek = r_latency, and a long
    copy moves one beat per cycle on R and on W."""
    await reset(dut)
    c = checker(dut)
    axi_ram(dut, size=MEM)
    dut.peek__ready.value = 1
    events = {}

    async def monitor():
        cycle = 0
        while True:
            await FallingEdge(dut.clk)
            await ReadOnly()
            for name, hit in (("cmd", dut.rd_cmd_1__valid.value and dut.rd_cmd_1__ready.value),
                              ("ar", dut.m_axi_arvalid.value),
                              ("r", dut.m_axi_rvalid.value and dut.m_axi_rready.value),
                              ("peek", dut.peek__valid.value and dut.peek__ready.value),
                              ("w", dut.m_axi_wvalid.value and dut.m_axi_wready.value)):
                if hit:
                    events.setdefault(name, []).append(cycle)
            cycle += 1
    cocotb.start_soon(monitor())
    await StreamSource(dut, "rd_cmd_1", CMD1).send([{"addr": 0x40, "beats": 1, "tag": 0}])
    await ClockCycles(dut.clk, 30)
    assert events["ar"][0] - events["cmd"][0] == P["ar_latency"], events
    assert events["peek"][0] - events["r"][0] == P["r_latency"], events
    events.clear()
    n = 16 * 4096 // NB
    await StreamSource(dut, "wr_cmd", WCMD).send([{"addr": DST, "beats": n}])
    await StreamSource(dut, "rd_cmd_0", CMD0).send([{"addr": 0, "beats": n, "tag": 0}])
    while not (dut.rd_idle.value and dut.wr_idle.value):
        await RisingEdge(dut.clk)
    r, w = events["r"], events["w"]
    dut._log.info("copy of %d beats: R %d cycles, W %d cycles", n, r[-1] - r[0] + 1,
                  w[-1] - w[0] + 1)
    if P["max_reads"] > 1:                  # AxiRam streams one burst after the other
        assert r[-1] - r[0] + 1 <= n * 1.1, (len(r), r[-1] - r[0])
    assert len(r) == len(w) == n
    c.check_quiet()


async def faults(dut, kind):
    """SLVERR (AxiRam error ranges) or DECERR (AxiSlaveModel): err on the peek beats, the
    clients' and the writer's faults in STATUS, cleared through CONTROL; the port stays legal
    and the engines go idle."""
    await reset(dut)
    c = checker(dut)
    lite = axil_master(dut, seed=SEED, idle=0.2)
    bad_rd, bad_wr = (0x3000, 0x3100), (DST + 0x1000, DST + 0x1100)
    if kind == "slverr":
        axi_ram(dut, size=MEM, seed=SEED, idle=0.2, latency=4, errors=[bad_rd, bad_wr])
    else:
        drive_slave_model(dut, AxiSlaveModel(data_width=D, size=MEM, seed=SEED, idle=0.2,
                                             latency=6, errors=[(*bad_rd, 3), (*bad_wr, 3)]))
    got = []
    cocotb.start_soon(StreamSink(dut, "peek", PEEK, got.append, backpressure=0.3,
                                 seed=SEED).run())
    await StreamSource(dut, "rd_cmd_1", CMD1).send(
        [{"addr": bad_rd[0] - 2 * NB, "beats": 4, "tag": 0}])
    await StreamSource(dut, "rd_cmd_0", CMD0).send([{"addr": bad_rd[0], "beats": 2, "tag": 1}])
    await StreamSource(dut, "wr_cmd", WCMD).send([{"addr": bad_wr[0], "beats": 2}])
    for _ in range(5000):
        await RisingEdge(dut.clk)
        if dut.rd_idle.value and dut.wr_idle.value and len(got) == 4:
            break
    assert [b["err"] for b in got] == [0, 0, 1, 1], got
    status = int.from_bytes((await lite.read(STATUS * 4, 4)).data, "little")
    assert status & 0b11111 == 0b11111, f"STATUS {status:#x}"
    await lite.write(CONTROL * 4, CLEAR.to_bytes(4, "little"))
    status = int.from_bytes((await lite.read(STATUS * 4, 4)).data, "little")
    assert status & 0b11111 == 0b00011, f"STATUS after clear {status:#x}"
    c.check_quiet()


@cocotb.test()
async def test_faults_slverr(dut):
    await faults(dut, "slverr")


@cocotb.test()
async def test_faults_decerr(dut):
    await faults(dut, "decerr")


@cocotb.test()
async def test_flush_and_halt(dut):
    """Long copies and peeks, then FLUSH and HALT through the Lite port with bursts in
    flight: the engines drain to idle with the protocol intact; after HALT is released a new
    copy works."""
    await reset(dut)
    rng = random.Random(SEED + 3)
    c = checker(dut)
    ram = axi_ram(dut, size=MEM, seed=SEED, idle=0.3, latency=10)
    snap = fill(ram, rng)
    lite = axil_master(dut, seed=SEED)
    copies, peeks = jobs(rng, 10, 150)
    sink = StreamSink(dut, "peek", PEEK, lambda beat: None, backpressure=0.5, seed=SEED)
    tasks = [cocotb.start_soon(sink.run())]
    for prefix, layout, items in (
            ("rd_cmd_0", CMD0, [{"addr": s, "beats": n, "tag": t} for s, _, n, t in copies]),
            ("wr_cmd", WCMD, [{"addr": d, "beats": n} for _, d, n, _ in copies]),
            ("rd_cmd_1", CMD1, [{"addr": a, "beats": n, "tag": 0} for a, n in peeks])):
        tasks.append(cocotb.start_soon(StreamSource(dut, prefix, layout, idle=0.2).send(items)))
    for _ in range(100_000):                 # wait for reads and writes in flight
        if c.outstanding["reads"] and c.outstanding["b"] + c.outstanding["writes_without_w"]:
            break
        await RisingEdge(dut.clk)
    await lite.write(CONTROL * 4, (FLUSH | HALT).to_bytes(4, "little"))
    for t in tasks[1:]:
        t.cancel()                       # the producers stop
    await FallingEdge(dut.clk)
    for name in ("rd_cmd_0__valid", "rd_cmd_1__valid", "wr_cmd__valid"):
        getattr(dut, name).value = 0
    for _ in range(100_000):
        status = int.from_bytes((await lite.read(STATUS * 4, 4)).data, "little")
        if status & 0b11 == 0b11:
            break
    else:
        raise AssertionError("not idle after flush and halt")
    ars = c.counts["ar"]
    await ClockCycles(dut.clk, 50)
    assert c.counts["ar"] == ars and not dut.m_axi_awvalid.value
    c.check_quiet()
    await lite.write(CONTROL * 4, bytes(4))
    tasks[0].cancel()
    copy = [(SRC + 0x100, DST + 0x3F000 - 3 * NB, 20, 5)]
    await run_jobs(dut, ram.read, copy, [], seed=SEED)
    check_copies(ram.read, lambda a, k: snap[a:a + k], copy)
    c.check_quiet()


@cocotb.test()
async def test_lite_registers(dut):
    """AxiLiteMaster with pauses on its channels: scratch registers read back; an address
    outside the 8 registers and a partial-strobe write answer SLVERR and change nothing."""
    from cocotbext.axi import AxiResp
    await reset(dut)
    lite = axil_master(dut, seed=SEED, idle=0.4, burst=3)
    rng = random.Random(SEED)
    shadow = {}
    for _ in range(30):
        reg = rng.choice(SCRATCH)
        value = rng.getrandbits(32)
        assert (await lite.write(reg * 4, value.to_bytes(4, "little"))).resp == AxiResp.OKAY
        shadow[reg] = value
        reg = rng.choice(SCRATCH)
        got = await lite.read(reg * 4, 4)
        assert got.resp == AxiResp.OKAY
        assert int.from_bytes(got.data, "little") == shadow.get(reg, 0)
    assert (await lite.write(8 * 4, b"\1\2\3\4")).resp == AxiResp.SLVERR
    assert (await lite.read(0x80, 4)).resp == AxiResp.SLVERR
    assert (await lite.write(SCRATCH[0] * 4, b"\xff\xff")).resp == AxiResp.SLVERR
    got = await lite.read(SCRATCH[0] * 4, 4)
    assert int.from_bytes(got.data, "little") == shadow.get(SCRATCH[0], 0)


@cocotb.test()
async def test_checker_catches_broken_slave(dut):
    """The protocol checker, fed by the monitor, flags a slave that sends an R beat nobody
    asked for, ends a burst early, or answers a write that never happened."""
    for fault, message in (("stray_r", "R beat for ID 0 with no read outstanding"),
                           ("early_rlast", "RLAST on ID 1 with 1 beats of the burst left"),
                           ("stray_b", "B for ID 0 without a completed write outstanding")):
        await reset(dut)
        c = checker(dut, strict=False)
        slave = drive_slave_model(dut, AxiSlaveModel(data_width=D, size=MEM, faults={fault}))
        dut.peek__ready.value = 1
        await ClockCycles(dut.clk, 8)
        if fault == "early_rlast":
            await StreamSource(dut, "rd_cmd_1", CMD1).send([{"addr": 0, "beats": 2, "tag": 0}])
        await ClockCycles(dut.clk, 30)
        assert any(message in e for e in c.errors), (fault, c.errors)
        slave.cancel()
        c.task.cancel()
