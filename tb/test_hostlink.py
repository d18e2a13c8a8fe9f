"""The host link (:class:`hw.hostlink.HostLink` driving :class:`hw.top.SofaCore`, as
:class:`hw.board.SofaLinkCore`) in the Amaranth simulator, on byte streams: whole transactions
against the golden model with random idle cycles on the request bytes and backpressure on the
reply bytes, every error reply, the guarantee that a rejected frame changes nothing, the reply
latency, and the Python board model (:class:`gen.host.SimulatedBoard`) answering byte for byte
like the RTL. The host library itself is tested on the board model."""

import random

import numpy as np
import pytest

from gen.host import CoreRejected, LinkError, SimulatedBoard, SofaHost
from hw.board import SofaLinkCore
from spec.config import ConfigError, RunParams, preset
from hw.hostlink import HostLink
from spec.protocol import (N_REGS, NO_CMD, PROTOCOL_VERSION, Cmd, ProtocolError, ReplyParser, Status,
                           crc16, decode_out, decode_reply, encode_reply, encode_request,
                           ident_bytes, link_regs, load_kv_payload, out_bytes, parse_ident,
                           query_payload, read_regs_payload, write_reg_payload)
from spec.regmap import COUNTER_BASE, Reg, counter_names, expected_counters
from sim.golden import sofa_attention
from tb.streams import TRAFFIC
from tb.support.hostlink import Step, kv_requests, malformed_script, param_requests
from tb.support.stimulus import peaked_case
from tb.support.amsim import run_until

CFG = preset("tiny")
MAX_PAYLOAD = 256
TIMEOUT = 64
_DUT = {}


def link_dut(cfg=CFG, queue_bytes=None):
    key = (cfg.name, queue_bytes)
    if key not in _DUT:
        _DUT[key] = SofaLinkCore(cfg, max_payload=MAX_PAYLOAD, timeout_cycles=TIMEOUT,
                                 clk_hz=1_000_000, divisor=8, queue_bytes=queue_bytes)
    return _DUT[key]


# -- a scripted host on the byte streams -----------------------------------------------------------

def run_script(steps, *, traffic=None, seed=0, timeout=400_000, cfg=CFG):
    """Run ``steps`` on the RTL; returns (replies per step, raw reply bytes per step,
    latencies: cycles from a request's last byte to its reply's first byte)."""
    dut = link_dut(cfg)
    rng_i, rng_o = random.Random(seed), random.Random(seed + 1)
    parser = ReplyParser()
    replies, raw, latency = [], [], []
    state = {"pending": [], "done": False}

    async def host(ctx):
        for step in steps:
            raw.append(bytearray())
            state["pending"] = []
            for n, byte in enumerate(step.data):
                if traffic is not None and n:
                    gap = min(traffic.gaps(rng_i, traffic.idle), TIMEOUT // 2)
                    for _ in range(gap):
                        ctx.set(dut.rx.valid, 0)
                        await ctx.tick()
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, byte)
                ctx.set(dut.rx_error, int(step.line_error_at == n))
                await ctx.tick()
            ctx.set(dut.rx.valid, 0)
            ctx.set(dut.rx_error, 0)
            for _ in range(step.pause):
                await ctx.tick()
            waited, first = 0, None
            while len(state["pending"]) < step.replies:
                await ctx.tick()
                waited += 1
                if first is None and ctx.get(dut.tx.valid):
                    first = waited
                assert waited < 200_000, f"no reply to {step.data[:8].hex()}…"
            if step.replies == 0:
                for _ in range(TIMEOUT * 2):       # junk: make sure nothing answers
                    await ctx.tick()
                assert not state["pending"], "junk bytes were answered"
            replies.append(state["pending"])
            if step.replies and not step.pause:
                latency.append(first)
        state["done"] = True

    async def sink(ctx):
        while True:
            if traffic is not None:
                for _ in range(traffic.gaps(rng_o, traffic.backpressure)):
                    ctx.set(dut.tx.ready, 0)
                    await ctx.tick()
            ctx.set(dut.tx.ready, 1)
            valid = 0
            while not valid:          # not `until`: it cannot be closed at the end of a run
                _, _, byte, valid = await ctx.tick().sample(dut.tx.payload, dut.tx.valid)
            if raw:
                raw[-1].append(byte)
            state["pending"].extend(parser.feed(bytes([byte])))

    run_until(dut, [host, sink], lambda: state["done"], timeout=timeout)
    return replies, [bytes(r) for r in raw], latency


# -- data ---------------------------------------------------------------------------------------

def params_for(S, *, dense=False, top_k=None, radius=None):
    return RunParams(seq_len=S, top_k=top_k or CFG.k_max,
                     radius=CFG.derived.radius_inf if radius is None else radius,
                     scale_log2e=RunParams.scale_from_float(CFG, 2e-3), dense=dense)


def only(replies):
    assert len(replies) == 1, replies
    return replies[0]


def ok(replies, cmd):
    r = only(replies)
    assert (r.cmd, r.status) == (cmd, Status.OK), r
    return r.payload


# -- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,traffic", [("sparse", t) for t in TRAFFIC] +
                         [("dense", TRAFFIC[0]), ("dense", TRAFFIC[3])],
                         ids=lambda v: v if isinstance(v, str) else repr(v))
def test_transaction(mode, traffic):
    """IDENT, K/V over several frames, registers, queries, counters — O and counters equal the
    golden model's, with idle cycles between request bytes and backpressure on reply bytes."""
    S = CFG.max_seq_len if mode == "sparse" else 2 * CFG.block_size + 3
    Q, K, V = peaked_case(CFG, 7, S=S)
    params = params_for(S, dense=mode == "dense", top_k=1 if mode == "sparse" else None,
                        radius=3000 if mode == "sparse" else None)
    kv = kv_requests(K, V, cfg=CFG, max_payload=MAX_PAYLOAD)
    steps = [Step(encode_request(Cmd.IDENT)), *map(Step, kv), *map(Step, param_requests(CFG, params)),
             Step(encode_request(Cmd.QUERY, query_payload(CFG, Q))),
             Step(encode_request(Cmd.READ_REGS, read_regs_payload(COUNTER_BASE, len(counter_names())))),
             Step(encode_request(Cmd.READ_REGS, read_regs_payload(0, COUNTER_BASE)))]
    replies, _, _ = run_script(steps, traffic=traffic, seed=3)
    dut = link_dut()
    info = parse_ident(ok(replies[0], Cmd.IDENT))
    assert ok(replies[0], Cmd.IDENT) == dut.link.ident
    assert info["max_payload"] == MAX_PAYLOAD and info["timeout_cycles"] == TIMEOUT
    for n in range(len(kv)):
        assert ok(replies[1 + n], Cmd.LOAD_KV) == b""
    base = 1 + len(kv)
    for n in range(6):
        assert int.from_bytes(ok(replies[base + n], Cmd.WRITE_REG), "little") == 0
    res = sofa_attention(Q, K, V, CFG, params)
    out = decode_out(CFG, ok(replies[base + 6], Cmd.QUERY), len(Q))
    assert np.array_equal(out, res.out), f"O differs:\n{out}\nexpected\n{res.out}"
    data = ok(replies[base + 7], Cmd.READ_REGS)
    counters = dict(zip(counter_names(), (int.from_bytes(data[i:i + 4], "little")
                                   for i in range(0, len(data), 4))))
    want = expected_counters(CFG, params, res.counters(), calls=[len(Q)])
    for name, value in want.items():
        assert counters[name] == value, f"counter {name}: {counters[name]} != expected {value}"
    regs = ok(replies[base + 8], Cmd.READ_REGS)
    regs = [int.from_bytes(regs[i:i + 4], "little") for i in range(0, len(regs), 4)]
    assert regs[:5] == [params.seq_len, params.top_k, params.radius, params.scale_log2e,
                        int(params.dense)]
    assert regs[Reg.STATUS] == 0


@pytest.mark.parametrize("traffic", [TRAFFIC[0], TRAFFIC[3]], ids=repr)
def test_malformed_frames(traffic):
    """Every error reply; after all of them the registers and K/V are untouched and a good
    query still matches the golden model."""
    S = CFG.max_seq_len
    Q, K, V = peaked_case(CFG, 11, S=S)
    params = params_for(S)
    steps, want = malformed_script(CFG, K, V, params, max_payload=MAX_PAYLOAD, pause=2 * TIMEOUT)
    steps.append(Step(encode_request(Cmd.QUERY, query_payload(CFG, Q))))
    want.append((Cmd.QUERY, Status.OK))
    replies, _, _ = run_script(steps, traffic=traffic, seed=5)
    for n, (got, exp) in enumerate(zip(replies, want)):
        if exp is None:
            assert got == []
            continue
        r = only(got)
        assert (r.cmd, r.status) == exp, (n, steps[n].data[:6].hex(), r, exp)
        if r.status != Status.OK:
            assert r.payload == b""
    # the core refused top_k = 0: error bit, error address, value unchanged
    rej = int.from_bytes(replies[-4][0].payload, "little")
    assert rej & 2
    regs = replies[-3][0].payload
    regs = [int.from_bytes(regs[i:i + 4], "little") for i in range(0, len(regs), 4)]
    assert regs[:5] == [params.seq_len, params.top_k, params.radius, params.scale_log2e, 0]
    assert regs[Reg.STATUS] == 2 and regs[Reg.ERROR_ADDR] == Reg.TOP_K
    assert int.from_bytes(replies[-2][0].payload, "little") == 0     # error cleared
    out = decode_out(CFG, replies[-1][0].payload, len(Q))
    assert np.array_equal(out, sofa_attention(Q, K, V, CFG, params).out)


def test_two_query_lanes():
    """With q_lanes = 2 the last query of a frame closes a partial group: frames of 3 and 1
    rows both complete and match the golden model."""
    cfg = CFG.replace(name="tiny2", q_lanes=2)
    S = 2 * cfg.block_size + 3
    Q, K, V = peaked_case(CFG, 17, T=4, S=S)
    params = params_for(S, top_k=1)
    steps = [*map(Step, kv_requests(K, V, cfg=cfg, max_payload=MAX_PAYLOAD)),
             *map(Step, param_requests(CFG, params)),
             Step(encode_request(Cmd.QUERY, query_payload(cfg, Q[:3]))),
             Step(encode_request(Cmd.QUERY, query_payload(cfg, Q[3:])))]
    replies, _, _ = run_script(steps, cfg=cfg, traffic=TRAFFIC[3], seed=2)
    out = np.concatenate([decode_out(cfg, ok(replies[-2], Cmd.QUERY), 3),
                          decode_out(cfg, ok(replies[-1], Cmd.QUERY), 1)])
    assert np.array_equal(out, sofa_attention(Q, K, V, cfg, params).out)


KNOBS = {"tiny-p2": CFG.replace(name="tiny-p2", predict_keys=2),
         "tiny-adapt": CFG.replace(name="tiny-adapt", adapt_bins=4)}


@pytest.mark.parametrize("name", KNOBS)
def test_knobs_over_the_link(name):
    """A board built with predict_keys = 2 or with the adaptive selection: the RTL's IDENT
    names exactly its config; the adaptive budget's registers (above the counters) are
    reached, read back and used (fewer keys than the fixed budget); O equals the golden
    model's, and the board model answers the session byte for byte like the RTL."""
    from gen.host import config_from_ident
    cfg = KNOBS[name]
    S = cfg.block_size * 3 + 2
    Q, K, V = peaked_case(cfg, 11, T=4, S=S)
    adapt = {"adapt_mass": 128, "adapt_scale": RunParams.scale_from_float(cfg, 1e-4),
             "adapt_shift": 13} if cfg.adapt_bins else {}
    params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), **adapt)
    steps = [Step(encode_request(Cmd.IDENT)),
             *map(Step, kv_requests(K, V, cfg=cfg, max_payload=MAX_PAYLOAD)),
             *map(Step, param_requests(cfg, params)),
             Step(encode_request(Cmd.READ_REGS, read_regs_payload(
                 48 if cfg.adapt_bins else 0, 3))),
             Step(encode_request(Cmd.QUERY, query_payload(cfg, Q))),
             Step(encode_request(Cmd.READ_REGS, read_regs_payload(
                 COUNTER_BASE + counter_names().index("keys"), 1)))]
    replies, rtl, _ = run_script(steps, cfg=cfg, traffic=TRAFFIC[3], seed=4)
    ident = ok(replies[0], Cmd.IDENT)
    assert ident == link_dut(cfg).link.ident and config_from_ident(parse_ident(ident)) == cfg
    regs = ok(replies[-3], Cmd.READ_REGS)
    if cfg.adapt_bins:
        assert [int.from_bytes(regs[i:i + 4], "little") for i in range(0, 12, 4)] == \
            list(adapt.values())
    res = sofa_attention(Q, K, V, cfg, params)
    assert np.array_equal(decode_out(cfg, ok(replies[-2], Cmd.QUERY), len(Q)), res.out)
    keys = int.from_bytes(ok(replies[-1], Cmd.READ_REGS), "little")
    assert keys == res.counters()["keys"]
    if cfg.adapt_bins:
        fixed = sofa_attention(Q, K, V, cfg, RunParams(
            seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
            scale_log2e=params.scale_log2e))
        assert keys < fixed.counters()["keys"]
    board = SimulatedBoard(cfg, max_payload=MAX_PAYLOAD, clk_hz=1_000_000, divisor=8,
                           timeout_cycles=TIMEOUT)
    for n, step in enumerate(steps):
        board.write(step.data)
        assert board.read(1 << 16, 0) == rtl[n], n


def test_selftest_on_an_adaptive_board(capsys):
    """``sofa host selftest``'s on-chip path on a board with the adaptive selection: IDENT
    gives it adapt_bins, so it writes the ADAPT_* registers (the fixed budget) and matches
    the golden model."""
    from argparse import Namespace
    from gen.host import selftest
    cfg = KNOBS["tiny-adapt"]
    host = SofaHost(SimulatedBoard(cfg), expect=cfg)
    args = Namespace(seq=40, rows=3, top_k=None, scale=1e-3, seed=1, dense=False)
    assert selftest(host, args) == 0
    out = capsys.readouterr().out
    assert "predict_keys=1 adapt_bins=4" in out and "O: 24/24 elements match" in out
    assert host.read_regs(48, 3) == [0, 0, 0]


def test_reply_latency():
    """First reply byte ``latency`` cycles after the last request byte (IDENT, READ_REGS);
    one more for WRITE_REG."""
    steps = [Step(encode_request(Cmd.IDENT)),
             Step(encode_request(Cmd.READ_REGS, read_regs_payload(0, 2))),
             Step(encode_request(Cmd.WRITE_REG, write_reg_payload(Reg.TOP_K, 1)))]
    _, _, latency = run_script(steps)
    lat = link_dut().link.latency
    assert latency == [lat, lat, lat + 1]


def test_request_queue_overflow():
    """With the replies held back, ``queue_bytes`` of requests queued behind the two the link
    has taken in are all answered, and a request more is lost whole (the queue holds exactly
    ``queue_bytes``); a burst far beyond loses requests (one cut short is answered
    TRUNCATED); the next byte after a loss is answered BUSY (and dropped, the rest of its
    frame is noise), and the link then answers as before."""
    Q = 16
    dut = link_dut(queue_bytes=Q)
    req = encode_request(Cmd.IDENT)
    want = ident_bytes(CFG, max_payload=MAX_PAYLOAD, clk_hz=1_000_000, divisor=8,
                       timeout_cycles=TIMEOUT, queue_bytes=Q)
    parser, got = ReplyParser(), []
    state = {"hold": True, "done": False}

    async def sink(ctx):
        while True:
            ctx.set(dut.tx.ready, int(not state["hold"]))
            _, _, byte, valid, ready = await ctx.tick().sample(dut.tx.payload, dut.tx.valid,
                                                                dut.tx.ready)
            if valid and ready:
                got.extend(parser.feed(bytes([byte])))

    async def send(ctx, data):
        for byte in data:
            ctx.set(dut.rx.valid, 1)
            ctx.set(dut.rx.payload, byte)
            await ctx.tick()
        ctx.set(dut.rx.valid, 0)

    async def settle(ctx, cycles=3000):
        state["hold"] = False
        for _ in range(cycles):
            await ctx.tick()

    regs = encode_request(Cmd.READ_REGS, read_regs_payload(Reg.TOP_K, 1))
    assert len(regs) * 2 == Q

    async def host(ctx):
        # Two requests the link takes in (the second waits for the first reply to leave),
        # then Q bytes queued behind them: all answered; then a request more: lost whole.
        for extra in (b"", regs):
            state["hold"] = True
            await send(ctx, req * 2)
            for _ in range(200):
                await ctx.tick()
            await send(ctx, regs * 2 + extra)
            for _ in range(200):
                await ctx.tick()
            await settle(ctx)
            kinds = [(r.cmd, r.status) for r in got]
            assert kinds == [(Cmd.IDENT, Status.OK)] * 2 + [(Cmd.READ_REGS, Status.OK)] * 2, got
            got.clear()
        await send(ctx, req)                      # its first byte meets the loss: BUSY
        await settle(ctx)
        assert [(r.cmd, r.status) for r in got] == [(NO_CMD, Status.BUSY)], got
        got.clear()
        state["hold"] = True
        burst = 12                                # 72 bytes against a queue of 16
        await send(ctx, req * burst)
        for _ in range(200):
            await ctx.tick()
        await settle(ctx)
        # whole requests answered, the rest lost; a request whose tail was lost times out
        answers = [(r.cmd, r.status, r.payload) for r in got]
        if answers and answers[-1] == (Cmd.IDENT, Status.TRUNCATED, b""):
            answers.pop()
        assert 2 <= len(answers) < burst and \
            answers == [(Cmd.IDENT, Status.OK, want)] * len(answers), got
        got.clear()
        await send(ctx, req)                      # its first byte meets the loss
        await settle(ctx)
        assert [(r.cmd, r.status) for r in got] == [(NO_CMD, Status.BUSY)], got
        got.clear()
        await send(ctx, req)                      # sent again: answered
        await settle(ctx)
        assert [(r.cmd, r.status, r.payload) for r in got] == [(Cmd.IDENT, Status.OK, want)]
        state["done"] = True

    run_until(dut, [host, sink], lambda: state["done"], timeout=60_000)


def test_board_model_matches_rtl():
    """:class:`SimulatedBoard` answers the malformed-frame script byte for byte like the RTL
    (the line error cannot happen in the model and is left out)."""
    S = 2 * CFG.block_size + 1
    Q, K, V = peaked_case(CFG, 13, T=2, S=S)
    params = params_for(S, top_k=1)
    steps, _ = malformed_script(CFG, K, V, params, max_payload=MAX_PAYLOAD, pause=2 * TIMEOUT,
                                line_error=False)
    steps += [Step(encode_request(Cmd.QUERY, query_payload(CFG, Q))),
              Step(encode_request(Cmd.READ_REGS, read_regs_payload(0, COUNTER_BASE)))]
    _, rtl, _ = run_script(steps)
    board = SimulatedBoard(CFG, max_payload=MAX_PAYLOAD, clk_hz=1_000_000, divisor=8,
                           timeout_cycles=TIMEOUT)
    for n, step in enumerate(steps):
        board.write(step.data)
        model = board.read(1 << 16, 0) if step.replies else b""
        assert model == rtl[n], (n, step.data[:6].hex(), model.hex(), rtl[n].hex())


# -- the host library on the board model ----------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "ice40"])
def test_host_attention(name):
    cfg = preset(name)
    board = SimulatedBoard(cfg, max_payload=300)
    host = SofaHost(board)
    info = host.ident()
    assert host.cfg == cfg and info["max_payload"] == 300
    rng = np.random.default_rng(2)
    S = min(100, cfg.max_seq_len)
    Q = rng.integers(-128, 128, size=(25, cfg.d))       # several QUERY frames
    K = rng.integers(-128, 128, size=(S, cfg.d))
    V = rng.integers(-128, 128, size=(S, cfg.d))
    params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 1e-3))
    out = host.attention(Q, K, V, params)
    res = sofa_attention(Q, K, V, cfg, params)
    assert np.array_equal(out, res.out)
    if cfg.counter_width:
        c = host.counters()
        assert c["rows"] == len(Q) and c["keys"] == res.counters()["keys"]
    else:                                                # the ice40 preset has none
        with pytest.raises(ProtocolError, match="no performance counters"):
            host.counters()
    kv_frames = -(-S // ((300 - 2) // (2 * cfg.d)))
    assert board.applied == kv_frames + 5 + -(-len(Q) // (300 // cfg.d))   # + 5 registers


def test_host_counter_width():
    host = SofaHost(SimulatedBoard(preset("tiny").replace(counter_width=0)))
    with pytest.raises(ProtocolError, match="no performance counters"):
        host.counters()
    host = SofaHost(SimulatedBoard(preset("tiny").replace(counter_width=8)))
    host.write_reg(Reg.STATUS, 1)
    host.transport.counters["cycles"] = 300              # the model wraps like the RTL
    assert host.counters()["cycles"] == 300 - 256


def test_host_errors():
    board = SimulatedBoard(CFG, max_payload=MAX_PAYLOAD)
    host = SofaHost(board)
    with pytest.raises(CoreRejected, match="TOP_K"):
        host.write_reg(Reg.TOP_K, CFG.k_max + 1)
    assert host.read_regs(Reg.STATUS)[0] == 0            # the flag was cleared
    with pytest.raises(LinkError, match="BAD_ARG to READ_REGS"):
        host.read_regs(N_REGS - 1, 2)
    with pytest.raises(LinkError, match="UNKNOWN_CMD"):
        host.request(0x33)
    with pytest.raises(ConfigError, match="signed 8-bit"):
        query_payload(CFG, np.full((1, CFG.d), 128))
    with pytest.raises(ConfigError, match="shape"):
        load_kv_payload(CFG, 0, np.zeros((2, CFG.d + 1)), np.zeros((2, CFG.d + 1)))

    class Silent:
        def write(self, data):
            pass

        def read(self, n, timeout):
            return b""

        def close(self):
            pass

    with pytest.raises(ProtocolError, match="no reply to IDENT"):
        SofaHost(Silent(), timeout=0.05).ident()


def test_codec():
    frame = encode_request(Cmd.WRITE_REG, write_reg_payload(3, 0x01020304))
    assert frame.hex() == "a5010500" + "0304030201" + f"{crc16(frame[1:-2]):04x}"
    assert crc16(frame[1:]) == 0
    reply = encode_reply(Cmd.QUERY, Status.OK, bytes(range(6)))
    p = ReplyParser()
    assert p.feed(b"\x00\x13" + reply[:5]) == [] and p.skipped == 2
    got = p.feed(reply[5:] + reply)
    assert [r.payload for r in got] == [bytes(range(6))] * 2
    bad = bytearray(reply)
    bad[6] ^= 4
    with pytest.raises(ProtocolError, match="bad CRC"):
        decode_reply(bytes(bad))
    cfg = preset("ecp5")                                 # 18-bit O: three bytes each
    assert out_bytes(cfg) == 3
    vals = np.arange(-cfg.d, cfg.d, 2).reshape(1, cfg.d) * 1000
    payload = b"".join(int(v).to_bytes(3, "little", signed=True) for v in vals.ravel())
    assert np.array_equal(decode_out(cfg, payload, 1), vals)
    # protocol version 6: 107 bytes (predict_keys, adapt_bins, cores, axi_id_width added)
    assert len(ident_bytes(cfg, max_payload=1024, clk_hz=1, divisor=4, timeout_cycles=9)) == 107
    info = parse_ident(ident_bytes(cfg.replace(counter_width=0), max_payload=1024, clk_hz=1,
                                   divisor=4, timeout_cycles=9))
    assert info["counter_width"] == 0 and info["n_counters"] == 0


def _ident(cfg, **link):
    return ident_bytes(cfg, **({"max_payload": 1024, "clk_hz": 1, "divisor": 4,
                                "timeout_cycles": 9} | link))


@pytest.mark.parametrize("cfg", [
    preset("tiny").replace(name="tiny-p2", predict_keys=2),
    preset("default").replace(name="default-p8", predict_keys=8),
    preset("tiny").replace(name="tiny-adapt", adapt_bins=4),
    preset("axi").replace(name="axi-id6", axi_id_width=6),
    preset("ecp5-axi"),
], ids=lambda c: c.name)
def test_ident_reports_the_knobs(cfg):
    """Version 6: IDENT carries predict_keys, adapt_bins, cores (and a memory board's
    axi_id_width) in bytes 103 … 106, after version 5's fields at their old offsets; the host
    rebuilds exactly the board's config from it."""
    from spec.protocol import config_from_ident, ident_mismatch
    mem = 1 << 16 if cfg.memory == "axi" else 0
    raw = _ident(cfg, mem_bytes=mem)
    assert raw[4] == PROTOCOL_VERSION == 6
    assert list(raw[103:107]) == [cfg.predict_keys, cfg.adapt_bins, cfg.cores,
                                  cfg.axi_id_width if mem else 0]
    info = parse_ident(raw)
    assert info["mem_bytes"] == mem and info["n_regs"] == link_regs(cfg)
    board = config_from_ident(info)
    assert ident_mismatch(board, cfg) == []
    if not mem:                                          # every field (the name aside)
        assert board == cfg


def test_link_refuses_several_cores():
    """Several memory-attached cores have more registers than the link's one-byte address
    reaches: the link is not built, with a message naming cores."""
    cfg = preset("axi").replace(cores=2)
    with pytest.raises(ConfigError, match=r"^cores = 2: the core's register space has \d+ "
                                          r"words, more than .* a board takes cores = 1$"):
        HostLink(cfg, timeout_cycles=5, mem_bytes=1 << 16)


def test_ident_refuses_other_versions():
    """A board of another protocol version is refused with both versions named (and what
    the host needs that the board lacks), before the length is looked at."""
    raw = bytearray(_ident(CFG))
    for version in (5, 4, 2):
        old = bytes(raw[:4]) + bytes([version]) + bytes(raw[5:103 if version == 5 else 90])
        with pytest.raises(ProtocolError) as e:
            parse_ident(old)
        msg = str(e.value)
        assert f"protocol version {version}, this host speaks version 6" in msg, msg
        assert "predict_keys, adapt_bins, cores" in msg and "\n" not in msg
    assert "4: IDENT queue_bytes" in msg and "3: IDENT skid_buffers" in msg
    with pytest.raises(ProtocolError, match="version 7, newer than this host's version 6"):
        parse_ident(bytes(raw[:4]) + b"\x07" + bytes(raw[5:]) + b"\x00")
    with pytest.raises(ProtocolError, match="has 106 bytes, expected 107"):
        parse_ident(bytes(raw[:-1]))
    with pytest.raises(ProtocolError, match="magic b'SOFA'"):
        parse_ident(b"SOFB" + bytes(raw[4:]))


class _Replies:
    """A transport that answers every request with one fixed IDENT payload."""

    def __init__(self, payload):
        self.payload = payload

    def write(self, data):
        pass

    def read(self, n, timeout):
        return encode_reply(Cmd.IDENT, Status.OK, self.payload)

    def close(self):
        pass


def test_host_checks_ident():
    """SofaHost.ident: a board of version 5 is a ProtocolError naming the versions; a value no
    build can have names the field; with ``expect``, every field the board was built with
    otherwise is named, with both values."""
    raw = bytearray(_ident(CFG))
    raw[4] = 5
    with pytest.raises(ProtocolError, match="board speaks protocol version 5, this host "
                                            "speaks version 6"):
        SofaHost(_Replies(bytes(raw[:103]))).ident()
    raw[4] = 6
    raw[103] = 3                                          # predict_keys = 3
    with pytest.raises(ProtocolError, match="IDENT names no valid configuration: "
                                            "predict_keys = 3 must be a power of two"):
        SofaHost(_Replies(bytes(raw))).ident()
    board = CFG.replace(name="tiny-p2", predict_keys=2)
    host = SofaHost(SimulatedBoard(board), expect=board)
    assert host.cfg is None and host.ident()["predict_keys"] == 2 and host.cfg == board
    with pytest.raises(ProtocolError, match=r"IDENT: the board differs from the expected "
                                            r"config 'tiny': predict_keys = 2 \(expected 1\)$"):
        SofaHost(SimulatedBoard(board), expect=CFG).ident()
    adapt = CFG.replace(name="tiny-adapt", adapt_bins=4, k_max=1)
    with pytest.raises(ProtocolError, match=r"k_max = 1 \(expected 2\), predict_keys = 1 "
                                            r"\(expected 2\), adapt_bins = 4 \(expected 0\)"):
        SofaHost(SimulatedBoard(adapt), expect=board).ident()
    with pytest.raises(TypeError, match="expect must be a SofaConfig"):
        SofaHost(SimulatedBoard(CFG), expect="tiny")


def test_parameters():
    with pytest.raises(ConfigError, match="max_payload = 10 is too small"):
        HostLink(CFG, max_payload=10, timeout_cycles=5)
    with pytest.raises(ConfigError, match="max_payload = 60000 is too large"):
        HostLink(CFG, max_payload=60000, timeout_cycles=5)
    with pytest.raises(ConfigError, match="timeout_cycles = 0"):
        HostLink(CFG, timeout_cycles=0)
    with pytest.raises(TypeError, match="max_payload must be an integer"):
        HostLink(CFG, max_payload=1.5, timeout_cycles=5)


def test_host_cli(capsys, tmp_path):
    """``python -m gen.host --sim``: ident and a self-test against the golden model."""
    from gen.cli import main as sofa

    def main(argv):
        return sofa(["host", *argv])
    assert main(["--sim", "tiny", "ident"]) == 0
    assert "max_payload" in capsys.readouterr().out
    assert main(["--sim", "tiny", "selftest", "--seq", "40", "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "O: 24/24 elements match the golden model" in out
    assert main(["--sim", "tiny", "write-reg", "1", "9"]) == 1        # top_k 9 > k_max
    assert "rejected writing 9 to register TOP_K" in capsys.readouterr().err
    # --expect: the board's IDENT against a preset or a config file
    assert main(["--sim", "tiny", "--expect", "tiny", "ident"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name:>16} 1\n" in out for name in ("predict_keys", "cores"))
    assert main(["--sim", "tiny", "--expect", "ice40", "selftest"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: IDENT: the board differs from the expected config 'ice40': "
                          "d = 8 (expected 4)") and err.count("\n") == 1, err
    cfg = tmp_path / "p2.json"
    cfg.write_text(preset("tiny").replace(predict_keys=2).to_json())
    assert main(["--sim", "tiny", "--expect", str(cfg), "ident"]) == 1
    assert ": predict_keys = 1 (expected 2)\n" in capsys.readouterr().err
