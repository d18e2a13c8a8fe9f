"""The board top (:class:`hw.board.SofaBoardTop`: UART, host link, SOFA core) on Verilator,
driven through its serial pins by a simulated UART at a small bit time.

The host side uses the protocol codec of :mod:`gen.host` (the same code that talks to a real
board): requests are serialised bit by bit onto ``rx`` with random gaps between characters,
replies are deserialised from ``tx`` (sampling at bit middles, checking the stop bit) and parsed.
``O`` is compared with :func:`sim.golden.sofa_attention`, the counters with the golden counts.

Malformed, truncated and oversized frames, a character with a broken stop bit inside a frame
and junk between frames each get their error reply (or none, for junk), and a correct
transaction afterwards still matches the golden model: nothing was half-written.

Environment: ``SOFA_UART_DIVISOR`` (bit time in clock cycles, as built), ``SOFA_SEED``.
"""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer

from spec.config import RunParams
from spec.protocol import (Cmd, ReplyParser, Status, config_from_ident, decode_out, elem_bytes,
                           encode_request, ident_mismatch, load_kv_payload, parse_ident,
                           query_payload, read_regs_payload, write_reg_payload)
from spec.regmap import COUNTER_BASE, Reg, counter_names, expected_counters
from sim.golden import sofa_attention
from sim.workloads import structured
from gen.rtlsim.streams import load_sidecar
from tb.support.hostlink import Step, malformed_script

CFG, SIDECAR = load_sidecar()
DIVISOR = int(os.environ["SOFA_UART_DIVISOR"])
SEED = int(os.environ.get("SOFA_SEED", "1"))
CLK_NS = 10
BIT_NS = DIVISOR * CLK_NS


class UartHost:
    """A serial host on the DUT's ``rx``/``tx`` pins: sends frames, collects replies."""

    def __init__(self, dut, *, gap=0.0, seed=0):
        self.dut = dut
        self.gap = gap                       # probability of an idle gap before a character
        self.rng = random.Random(seed)
        self.parser = ReplyParser()
        self.replies = []
        self.raw = bytearray()
        self.framing_errors = 0
        dut.rx.value = 1
        self._task = cocotb.start_soon(self._receive())

    async def send_byte(self, byte, *, stop=1):
        bits = [0] + [(byte >> i) & 1 for i in range(8)] + [stop]
        for b in bits:
            self.dut.rx.value = b
            await Timer(BIT_NS, unit="ns")
        if not stop:
            self.dut.rx.value = 1
            await Timer(BIT_NS, unit="ns")

    async def send(self, data, *, bad_stop_at=None):
        for n, byte in enumerate(data):
            if self.gap and self.rng.random() < self.gap:
                await Timer(BIT_NS * self.rng.randint(1, 4), unit="ns")
            await self.send_byte(byte, stop=0 if n == bad_stop_at else 1)

    async def _receive(self):
        while True:
            await FallingEdge(self.dut.tx)
            await Timer(BIT_NS // 2, unit="ns")
            if int(self.dut.tx.value):
                continue                     # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await Timer(BIT_NS, unit="ns")
                byte |= int(self.dut.tx.value) << i
            await Timer(BIT_NS, unit="ns")
            if not int(self.dut.tx.value):
                self.framing_errors += 1
            self.raw.append(byte)
            self.replies.extend(self.parser.feed(bytes([byte])))

    async def wait_replies(self, count, *, timeout_bits):
        waited = 0
        while len(self.replies) < count:
            await Timer(BIT_NS, unit="ns")
            waited += 1
            assert waited < timeout_bits, \
                f"no reply after {timeout_bits} bit times ({len(self.replies)} of {count})"

    async def transact(self, data, *, replies=1, pause_cycles=0, bad_stop_at=None):
        """Send ``data``, idle ``pause_cycles``, wait for ``replies`` more replies; returns them."""
        before = len(self.replies)
        await self.send(data, bad_stop_at=bad_stop_at)
        if pause_cycles:
            await Timer(pause_cycles * CLK_NS, unit="ns")
        if replies == 0:
            await Timer(4 * INFO["timeout_cycles"] * CLK_NS, unit="ns")
            assert len(self.replies) == before, "junk bytes were answered"
            return []
        await self.wait_replies(before + replies,
                                timeout_bits=20 * (len(data) + 200) + 8 * CFG.max_seq_len * CFG.d)
        return self.replies[before:]


INFO = {}


async def start(dut, *, gap=0.0, seed=0):
    cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    host = UartHost(dut, gap=gap, seed=seed)
    await Timer(2 * BIT_NS, unit="ns")
    r, = await host.transact(encode_request(Cmd.IDENT))
    assert (r.cmd, r.status) == (Cmd.IDENT, Status.OK), r
    INFO.update(parse_ident(r.payload))
    assert INFO["divisor"] == DIVISOR and INFO["d"] == CFG.d
    # every config field IDENT carries (predict_keys, adapt_bins, cores too) is the build's
    assert ident_mismatch(config_from_ident(INFO), CFG) == []
    return host


def ok(replies, cmd):
    assert len(replies) == 1, replies
    r = replies[0]
    assert (r.cmd, r.status) == (cmd, Status.OK), r
    return r.payload


def words(payload):
    return [int.from_bytes(payload[i:i + 4], "little") for i in range(0, len(payload), 4)]


async def load(host, K, V):
    per = (INFO["max_payload"] - 2) // (2 * CFG.d * elem_bytes(CFG))
    for a in range(0, len(K), per):
        ok(await host.transact(encode_request(
            Cmd.LOAD_KV, load_kv_payload(CFG, a, K[a:a + per], V[a:a + per]))), Cmd.LOAD_KV)


async def set_params(host, params):
    for reg, value in ((Reg.SEQ_LEN, params.seq_len), (Reg.TOP_K, params.top_k),
                       (Reg.RADIUS, params.radius), (Reg.SCALE, params.scale_log2e),
                       (Reg.DENSE, int(params.dense)), (Reg.STATUS, 0b11)):
        status = words(ok(await host.transact(encode_request(
            Cmd.WRITE_REG, write_reg_payload(reg, value))), Cmd.WRITE_REG))[0]
        assert status == 0, f"register {reg!r} = {value}: status {status:#x}"


async def query_and_check(host, Q, K, V, params, *, want=None):
    out = decode_out(CFG, ok(await host.transact(encode_request(
        Cmd.QUERY, query_payload(CFG, Q))), Cmd.QUERY), len(Q))
    res = sofa_attention(Q, K, V, CFG, params)
    expected = res.out if want is None else want
    bad = np.argwhere(out != expected)
    assert not len(bad), (f"O differs at {len(bad)} elements, first {tuple(bad[0])}: "
                          f"got {out[tuple(bad[0])]}, expected {expected[tuple(bad[0])]}")
    return res


def params_for(S, *, dense=False, top_k=None):
    return RunParams(seq_len=S, top_k=top_k or CFG.k_max, radius=CFG.derived.radius_inf,
                     scale_log2e=RunParams.scale_from_float(CFG, 2e-3), dense=dense)


@cocotb.test()
@cocotb.parametrize(gap=[0.0, 0.3])
async def test_transaction(dut, gap):
    """IDENT, K/V, registers, sparse and dense queries, counters; with and without random
    gaps between the host's characters."""
    host = await start(dut, gap=gap, seed=SEED)
    rng = np.random.default_rng(SEED)
    S = CFG.max_seq_len
    Q, K, V = structured(CFG, rng, 2, S)
    await load(host, K, V)
    for params in (params_for(S, top_k=1), params_for(S, dense=True)):
        await set_params(host, params)
        res = await query_and_check(host, Q, K, V, params)
        counters = dict(zip(counter_names(), words(ok(await host.transact(encode_request(
            Cmd.READ_REGS, read_regs_payload(COUNTER_BASE, len(counter_names())))), Cmd.READ_REGS))))
        want = expected_counters(CFG, params, res.counters(), calls=[len(Q)])
        for name, value in want.items():
            assert counters[name] == value, f"counter {name}: {counters[name]} != {value}"
        dut._log.info(f"{'dense' if params.dense else 'sparse'}: busy "
                      f"{counters['busy_cycles']} cycles for {len(Q)} queries")
    assert host.framing_errors == 0 and host.parser.skipped == 0


@cocotb.test()
async def test_malformed_frames(dut):
    """Bad CRC, unknown command, bad lengths and arguments, truncated and oversized frames, a
    broken stop bit, junk; then a good query matches the golden model."""
    host = await start(dut, gap=0.2, seed=SEED + 1)
    rng = np.random.default_rng(SEED + 1)
    S = CFG.max_seq_len
    Q, K, V = structured(CFG, rng, 2, S)
    params = params_for(S)
    pause = 3 * INFO["timeout_cycles"]
    steps, want = malformed_script(CFG, K, V, params, max_payload=INFO["max_payload"],
                                   pause=pause, line_error=False)
    # a character with a low stop bit inside a WRITE_REG: the byte is lost, LINE_ERROR
    steps.append(Step(encode_request(Cmd.WRITE_REG, write_reg_payload(Reg.SEQ_LEN, 3)),
                      line_error_at=4))
    want.append((Cmd.WRITE_REG, Status.LINE_ERROR))
    for n, (step, exp) in enumerate(zip(steps, want)):
        got = await host.transact(step.data, replies=step.replies, pause_cycles=step.pause,
                                  bad_stop_at=step.line_error_at)
        if exp is None:
            continue
        assert len(got) == 1, (n, got)
        assert (got[0].cmd, got[0].status) == exp, (n, step.data[:6].hex(), got[0], exp)
    regs = words(ok(await host.transact(encode_request(
        Cmd.READ_REGS, read_regs_payload(0, Reg.ERROR_ADDR + 1))), Cmd.READ_REGS))
    assert regs[:5] == [params.seq_len, params.top_k, params.radius, params.scale_log2e, 0]
    assert regs[Reg.STATUS] == 0
    await query_and_check(host, Q, K, V, params)


@cocotb.test()
async def test_mutation_is_detected(dut):
    """The check must fail when one expected element is corrupted."""
    host = await start(dut, seed=SEED + 2)
    rng = np.random.default_rng(SEED + 2)
    S = min(CFG.max_seq_len, 2 * CFG.block_size)
    Q, K, V = structured(CFG, rng, 1, S)
    params = params_for(S)
    await load(host, K, V)
    await set_params(host, params)
    want = sofa_attention(Q, K, V, CFG, params).out.copy()
    want[0, int(rng.integers(CFG.d))] += 1
    try:
        await query_and_check(host, Q, K, V, params, want=want)
    except AssertionError as e:
        assert "O differs at 1 elements" in str(e)
    else:
        raise AssertionError("a corrupted expected element went unnoticed")
