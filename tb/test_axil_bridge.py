""":class:`hw.axil.AxiLiteBridge` in the Amaranth simulator against a Python AXI4-Lite slave
with random delays on every handshake: each write request becomes exactly one AW and one W
with full strobes, each held read request exactly one AR; the data read is the slave's; a
dropped read request clears ``reg_rvalid``; VALID is held until READY on AW, W and AR."""

import random

import pytest

from hw.axil import AxiLiteBridge
from tb.support.amsim import run_until


@pytest.mark.parametrize("delay", [0.0, 0.5, 0.8])
def test_bridge(delay):
    dut = AxiLiteBridge(addr_width=12, reg_addr_width=7)
    rng = random.Random(int(delay * 10) + 3)
    regs = {}
    log = {"aw": [], "w": [], "ar": [], "violations": []}
    ops = [("w", rng.randrange(128), rng.getrandbits(32)) if rng.random() < 0.5
           else ("r", rng.randrange(128), None) for _ in range(80)]
    state = {"done": False}

    async def slave(ctx):
        aw = w = None
        b_due = r_due = None
        held = {}
        async for _, _, *v in ctx.tick().sample(
                dut.m_axil_awvalid, dut.m_axil_awaddr, dut.m_axil_awready,
                dut.m_axil_wvalid, dut.m_axil_wdata, dut.m_axil_wstrb, dut.m_axil_wready,
                dut.m_axil_bvalid, dut.m_axil_bready,
                dut.m_axil_arvalid, dut.m_axil_araddr, dut.m_axil_arready,
                dut.m_axil_rvalid, dut.m_axil_rready):
            (awv, awa, awr, wv, wd, ws, wr, bv, br, arv, ara, arr, rv, rr) = map(int, v)
            for ch, valid, ready, payload in (("aw", awv, awr, awa), ("w", wv, wr, (wd, ws)),
                                              ("ar", arv, arr, ara)):
                if ch in held and (not valid or held[ch] != payload):
                    log["violations"].append(ch)
                held.pop(ch, None)
                if valid and not ready:
                    held[ch] = payload
                if valid and ready:
                    log[ch].append(payload)
            if awv and awr:
                aw = awa
            if wv and wr:
                w = (wd, ws)
            if aw is not None and w is not None:
                regs[aw >> 2] = w[0]
                aw = w = None
                b_due = True
            if bv and br:
                b_due = None
            if arv and arr:
                r_due = regs.get(ara >> 2, 0)
            if rv and rr:
                r_due = None
            # the next cycle's slave outputs, each with a random delay
            ctx.set(dut.m_axil_awready, int(aw is None and rng.random() >= delay))
            ctx.set(dut.m_axil_wready, int(w is None and rng.random() >= delay))
            ctx.set(dut.m_axil_bvalid, int(b_due is not None and (bv or rng.random() >= delay)))
            ctx.set(dut.m_axil_bresp, 0)
            ctx.set(dut.m_axil_arready, int(r_due is None and rng.random() >= delay))
            go = r_due is not None and (rv or rng.random() >= delay)
            ctx.set(dut.m_axil_rvalid, int(go))
            ctx.set(dut.m_axil_rdata, r_due if go else 0)

    async def host(ctx):
        model = {}
        for kind, addr, value in ops:
            ctx.set(dut.reg_addr, addr)
            if kind == "w":
                ctx.set(dut.reg_wdata, value)
                ctx.set(dut.reg_we, 1)
                await ctx.tick().until(dut.reg_wdone)
                ctx.set(dut.reg_we, 0)
                model[addr] = value
            else:
                ctx.set(dut.reg_re, 1)
                while True:
                    _, _, ok, got = await ctx.tick().sample(dut.reg_rvalid, dut.reg_rdata)
                    if ok:
                        break
                # held longer: still valid, no second AR
                for _ in range(rng.randrange(4)):
                    await ctx.tick()
                    assert ctx.get(dut.reg_rvalid)
                ctx.set(dut.reg_re, 0)
                await ctx.tick()
                assert not ctx.get(dut.reg_rvalid), "rvalid not cleared by dropping reg_re"
                assert int(got) == model.get(addr, 0), (addr, int(got))
        state["done"] = True

    run_until(dut, [slave, host], lambda: state["done"], timeout=100_000)
    writes = [op for op in ops if op[0] == "w"]
    reads = [op for op in ops if op[0] == "r"]
    assert not log["violations"], log["violations"][:5]
    assert log["aw"] == [4 * a for _, a, _ in writes]
    assert log["w"] == [(v, 0xF) for _, _, v in writes]
    assert log["ar"] == [4 * a for _, a, _ in reads]
