"""SofaLinkCore on Verilator as a byte pipe: the requests of ``SOFA_LINK_IN`` (a JSON list of
hex frames) go into ``rx`` back to back (short random gaps), at most ``SOFA_LINK_WINDOW`` bytes
of them unanswered; the reply bytes from ``tx`` are written to ``SOFA_LINK_OUT`` once
``SOFA_LINK_REPLIES`` replies have come and the link has stayed quiet for longer than its
timeout. ``tb/test_hostlink_board.py`` compares them with the simulated board."""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from spec.protocol import ReplyParser

IN, OUT = os.environ["SOFA_LINK_IN"], os.environ["SOFA_LINK_OUT"]
REPLIES = int(os.environ["SOFA_LINK_REPLIES"])
WINDOW = int(os.environ["SOFA_LINK_WINDOW"])
QUIET = int(os.environ["SOFA_LINK_QUIET"])
MAX_CYCLES = int(os.environ.get("SOFA_LINK_MAXCYC", "5000000"))


@cocotb.test()
async def test_bytes(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.rx__valid.value = 0
    dut.rx_error.value = 0
    dut.tx__ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    frames = [bytes.fromhex(f) for f in json.load(open(IN))]
    rng = random.Random(len(frames))
    out, replies, parser = bytearray(), [], ReplyParser()

    async def host():
        for k, frame in enumerate(frames):
            while sum(map(len, frames[len(replies):k + 1])) > WINDOW:
                await FallingEdge(dut.clk)
                dut.rx__valid.value = 0
            for byte in frame:
                for _ in range(rng.choice((0, 0, 0, 1, 3))):
                    await FallingEdge(dut.clk)
                    dut.rx__valid.value = 0
                await FallingEdge(dut.clk)
                dut.rx__valid.value = 1
                dut.rx__payload.value = byte
        await FallingEdge(dut.clk)
        dut.rx__valid.value = 0

    cocotb.start_soon(host())
    after = None
    for cycle in range(MAX_CYCLES):
        await RisingEdge(dut.clk)
        await ReadOnly()
        if int(dut.tx__valid.value):
            byte = int(dut.tx__payload.value)
            out.append(byte)
            replies.extend(parser.feed(bytes([byte])))
        if after is None and len(replies) >= REPLIES:
            after = cycle + QUIET
        if after is not None and cycle >= after:
            break
    else:
        open(OUT, "wb").write(bytes(out))
        raise AssertionError(f"{len(replies)} of {REPLIES} replies after {MAX_CYCLES} cycles")
    open(OUT, "wb").write(bytes(out))
