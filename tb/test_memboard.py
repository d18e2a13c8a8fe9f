"""A memory board (:class:`hw.board.SofaLinkCore` of a memory-attached config:
:class:`hw.axicore.SofaAxiCore` on :class:`hw.axiram.AxiBram`, registers through
:class:`hw.axil.AxiLiteBridge`) in the Amaranth simulator, on byte streams: a host that writes
Q, K and V with WRITE_MEM, programs the job over WRITE_REG, polls JOB_STATUS and reads O back
with READ_MEM gets the golden model's O bit for bit, with random idle cycles on the request
bytes and backpressure on the reply bytes; the memory commands' errors; the host library
(:class:`gen.host.SofaHost`) running a job on the board."""

import queue
import random
import threading

import numpy as np
import pytest
from amaranth.sim import Simulator

from gen.host import JobFailed, SofaHost, config_from_ident
from hw.board import SofaLinkCore
from sim.jobs import golden_job, layout_job, memory_image, read_outputs
from spec.config import ConfigError, RunParams
from spec.job import OUT_ELEM_BYTES, JobDescriptor, JobError
from spec.protocol import (Cmd, ReplyParser, Status, encode_request, ident_mismatch,
                           parse_ident, read_mem_payload, read_regs_payload, write_mem_payload,
                           write_reg_payload)
from spec.regmap import Reg, job_writes, parameter_writes
from tb.streams import TRAFFIC
from tb.support.axicore import AXI_ODD, AXI_TINY
from sim.workloads import structured
from tb.support.amsim import run_until

MAX_PAYLOAD = 128
TIMEOUT = 64
MEM = 1 << 14
_DUT = {}


def board_dut(cfg):
    if cfg.name not in _DUT:
        _DUT[cfg.name] = SofaLinkCore(cfg, max_payload=MAX_PAYLOAD, timeout_cycles=TIMEOUT,
                                      clk_hz=1_000_000, divisor=8, mem_bytes=MEM)
    return _DUT[cfg.name]


def run_host(cfg, program, *, traffic=TRAFFIC[0], seed=0, timeout=2_000_000):
    """Run ``program(request)`` against the board: an async function whose ``request(cmd,
    payload)`` sends a frame (with ``traffic``'s idle cycles between bytes) and returns its
    reply. Returns what the program returns."""
    dut = board_dut(cfg)
    rng_i, rng_o = random.Random(seed), random.Random(seed + 1)
    parser = ReplyParser()
    state = {"replies": [], "done": False, "result": None}

    async def host(ctx):
        async def request(cmd, payload=b""):
            for n, byte in enumerate(encode_request(cmd, payload)):
                if n:
                    for _ in range(min(traffic.gaps(rng_i, traffic.idle), TIMEOUT // 2)):
                        ctx.set(dut.rx.valid, 0)
                        await ctx.tick()
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, byte)
                await ctx.tick()
            ctx.set(dut.rx.valid, 0)
            waited = 0
            while not state["replies"]:
                await ctx.tick()
                waited += 1
                assert waited < 200_000, f"no reply to command {cmd:#x}"
            reply = state["replies"].pop(0)
            assert not state["replies"], "more than one reply"
            return reply

        async def tick(n):
            for _ in range(n):
                await ctx.tick()

        state["result"] = await program(request, tick)
        state["done"] = True

    async def sink(ctx):
        while True:
            for _ in range(traffic.gaps(rng_o, traffic.backpressure)):
                ctx.set(dut.tx.ready, 0)
                await ctx.tick()
            ctx.set(dut.tx.ready, 1)
            valid = 0
            while not valid:
                _, _, byte, valid = await ctx.tick().sample(dut.tx.payload, dut.tx.valid)
            state["replies"].extend(parser.feed(bytes([byte])))

    run_until(dut, [host, sink], lambda: state["done"], timeout=timeout)
    return state["result"]


def ok(reply, cmd):
    assert (reply.cmd, reply.status) == (cmd, Status.OK), reply
    return reply.payload


def job_case(cfg, seed, *, H=2, T=3, S=13, causal=False, gap=0):
    rng = np.random.default_rng(seed)
    parts = [structured(cfg, rng, T, S) for _ in range(H)]
    Q, K, V = (np.stack([p[i] for p in parts]) for i in range(3))
    job = layout_job(cfg, JobDescriptor(seq_len=S, queries=T, heads=H, causal=causal),
                     base=64, gap=gap)
    return job, Q, K, V


def params_for(cfg, S, dense=False):
    return RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                     scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)


def job_program(cfg, job, Q, K, V, params):
    """The host side of one job over the protocol; returns (O, JOB_ERROR, IDENT)."""
    async def program(request, tick):
        info = parse_ident(ok(await request(Cmd.IDENT), Cmd.IDENT))
        chunk = MAX_PAYLOAD - 4
        for addr, data in memory_image(cfg, job, Q, K, V).items():
            for i in range(0, len(data), chunk):
                ok(await request(Cmd.WRITE_MEM, write_mem_payload(addr + i, data[i:i + chunk])),
                   Cmd.WRITE_MEM)
        for addr, value in parameter_writes(cfg, params) + job_writes(cfg, job):
            status = ok(await request(Cmd.WRITE_REG, write_reg_payload(addr, value)),
                        Cmd.WRITE_REG)
            assert not int.from_bytes(status, "little") & 2, f"register {addr} refused"
        ok(await request(Cmd.WRITE_REG, write_reg_payload(Reg.CONTROL, 1)), Cmd.WRITE_REG)
        while True:
            raw = ok(await request(Cmd.READ_REGS, read_regs_payload(Reg.JOB_STATUS, 1)),
                     Cmd.READ_REGS)
            if int.from_bytes(raw, "little") & 1:
                break
            await tick(200)
        err = int.from_bytes(ok(await request(Cmd.READ_REGS,
                                              read_regs_payload(Reg.JOB_ERROR, 1)),
                                Cmd.READ_REGS), "little")
        mem = {}

        async def read(addr, n):
            out = b""
            while len(out) < n:
                k = min(n - len(out), MAX_PAYLOAD)
                out += ok(await request(Cmd.READ_MEM, read_mem_payload(addr + len(out), k)),
                          Cmd.READ_MEM)
            return out

        for h in range(job.heads):
            for t in range(job.queries):
                a = job.address("o", h, t)
                mem[a] = await read(a, cfg.d * OUT_ELEM_BYTES)
        out = read_outputs(cfg, job, lambda a, n: mem[a][:n])
        return out, err, info
    return program


@pytest.mark.parametrize("cfg,traffic,causal,dense", [
    pytest.param(AXI_TINY, TRAFFIC[0], False, False, marks=pytest.mark.slow),
    (AXI_TINY, TRAFFIC[3], True, False),
    pytest.param(AXI_TINY, TRAFFIC[1], False, True, marks=pytest.mark.slow),
    (AXI_ODD, TRAFFIC[2], False, True),
], ids=["tiny-steady", "tiny-stress-causal", "tiny-idle-dense", "odd-backpressure-dense"])
def test_job_over_link(cfg, traffic, causal, dense):
    """A whole job through the link, bit-exact against the golden model."""
    job, Q, K, V = job_case(cfg, 3, causal=causal, S=13 if cfg is AXI_TINY else 11)
    params = params_for(cfg, job.seq_len, dense)
    out, err, info = run_host(cfg, job_program(cfg, job, Q, K, V, params), traffic=traffic,
                              seed=7)
    assert err == JobError.NONE
    assert (info["memory"], info["mem_bytes"]) == (1, MEM) and host_cfg_matches(info, cfg)
    want = golden_job(cfg, params, job, Q, K, V).out
    np.testing.assert_array_equal(out, want)


def test_memory_commands():
    """WRITE_MEM/READ_MEM round trip at odd addresses and lengths; their errors; the on-chip
    commands are unknown; register addresses end at the core's register space."""
    cfg = AXI_TINY
    data = bytes(random.Random(5).randrange(256) for _ in range(77))

    async def program(request, tick):
        got = {}
        for addr in (0, 5, MEM - len(data)):
            ok(await request(Cmd.WRITE_MEM, write_mem_payload(addr, data)), Cmd.WRITE_MEM)
            got[addr] = ok(await request(Cmd.READ_MEM, read_mem_payload(addr, len(data))),
                           Cmd.READ_MEM)
        got["one"] = ok(await request(Cmd.READ_MEM, read_mem_payload(6, 1)), Cmd.READ_MEM)
        errs = [
            await request(Cmd.WRITE_MEM, write_mem_payload(MEM - 3, b"abcd")),
            await request(Cmd.WRITE_MEM, (0).to_bytes(4, "little")),
            await request(Cmd.READ_MEM, read_mem_payload(MEM - 1, 2)),
            await request(Cmd.READ_MEM, (0).to_bytes(4, "little") + b"\0\0"),
            await request(Cmd.READ_MEM, read_mem_payload(0, MAX_PAYLOAD + 1)),
            await request(Cmd.READ_MEM, b"\0" * 5),
            await request(Cmd.LOAD_KV, b"\0" * 8),
            await request(Cmd.QUERY, b"\0" * 8),
            await request(Cmd.READ_REGS, read_regs_payload(info_regs, 1)),
        ]
        # nothing of the refused write landed
        got["tail"] = ok(await request(Cmd.READ_MEM, read_mem_payload(MEM - 3, 3)),
                         Cmd.READ_MEM)
        got["last_reg"] = ok(await request(Cmd.READ_REGS, read_regs_payload(info_regs - 1, 1)),
                             Cmd.READ_REGS)
        return got, errs

    from spec.regmap import address_words
    info_regs = address_words(cfg)
    got, errs = run_host(cfg, program, traffic=TRAFFIC[3], seed=11)
    for addr in (0, 5, MEM - len(data)):
        assert got[addr] == data
    assert got["one"] == data[1:2]
    assert got["tail"] == data[-3:]
    assert len(got["last_reg"]) == 4
    assert [e.status for e in errs] == [Status.BAD_ARG, Status.BAD_LENGTH, Status.BAD_ARG,
                                        Status.BAD_ARG, Status.BAD_ARG, Status.BAD_LENGTH,
                                        Status.UNKNOWN_CMD, Status.UNKNOWN_CMD,
                                        Status.BAD_ARG]


class RtlTransport:
    """A :class:`gen.host.SofaHost` transport onto the simulated board: the host runs in a
    thread, the simulator in the test's; bytes cross in queues."""

    def __init__(self):
        self.to_dut, self.from_dut = queue.Queue(), queue.Queue()

    def write(self, data):
        for byte in bytes(data):
            self.to_dut.put(byte)

    def read(self, n, timeout):
        try:
            out = bytearray([self.from_dut.get(timeout=timeout)])
        except queue.Empty:
            return b""
        while len(out) < n:
            try:
                out.append(self.from_dut.get_nowait())
            except queue.Empty:
                break
        return bytes(out)

    def drain(self):
        while not self.from_dut.empty():
            self.from_dut.get_nowait()

    def close(self):
        pass


def run_with_host(cfg, work, *, timeout=3_000_000):
    """Run ``work(host)`` (a :class:`SofaHost` on the simulated board) in a thread while the
    simulator runs; returns its result or raises its exception."""
    dut = board_dut(cfg)
    transport = RtlTransport()
    done = threading.Event()
    box = {}

    def host_thread():
        try:
            box["result"] = work(SofaHost(transport, timeout=60.0))
        except BaseException as e:          # re-raised in the test's thread
            box["error"] = e
        finally:
            done.set()

    async def feeder(ctx):
        for _ in range(timeout):
            if done.is_set():
                return
            try:
                byte = transport.to_dut.get_nowait()
            except queue.Empty:
                ctx.set(dut.rx.valid, 0)
                await ctx.tick()
                continue
            ctx.set(dut.rx.valid, 1)
            ctx.set(dut.rx.payload, byte)
            await ctx.tick()
        raise AssertionError(f"the host did not finish in {timeout} cycles")

    async def sink(ctx):
        ctx.set(dut.tx.ready, 1)
        async for _, _, byte, valid in ctx.tick().sample(dut.tx.payload, dut.tx.valid):
            if valid:
                transport.from_dut.put(int(byte))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(sink, background=True)
    sim.add_testbench(feeder)
    thread = threading.Thread(target=host_thread, daemon=True)
    thread.start()
    sim.run()
    thread.join(5)
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_host_library():
    """:meth:`SofaHost.run_job` and ``selftest``'s memory path on the RTL board: bit-exact; a
    bad descriptor comes back as :class:`JobFailed`; memory bounds are checked before any
    byte is sent."""
    cfg = AXI_TINY
    job, Q, K, V = job_case(cfg, 9, H=2, T=3, S=10, causal=True)
    params = params_for(cfg, job.seq_len)

    def work(host):
        info = host.ident()
        out = host.run_job(job, Q, K, V, params)
        with pytest.raises(JobFailed, match="STRIDE|ALIGN|RANGE"):
            host.run_job(job.replace(k_stride=1), Q, K, V, params)
        with pytest.raises(ConfigError, match="beyond the board's"):
            host.run_job(job.replace(o_base=MEM - 8), Q, K, V, params)
        data = host.read_mem(job.q_base, cfg.d)
        return info, out, data

    info, out, data = run_with_host(cfg, work)
    assert host_cfg_matches(info, cfg)
    np.testing.assert_array_equal(out, golden_job(cfg, params, job, Q, K, V).out)
    assert data == memory_image(cfg, job, Q, K, V)[job.q_base]


def host_cfg_matches(info, cfg):
    """Every config field a memory board's IDENT carries is the build's (cores and
    axi_id_width too)."""
    board = config_from_ident(info)
    return board.memory == "axi" and ident_mismatch(board, cfg) == []
