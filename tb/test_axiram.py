""":class:`hw.axiram.AxiBram` in the Amaranth simulator: random bursts (INCR, FIXED, narrow,
unaligned, past the end, WRAP) from a master with random idle cycles on AR, AW and W and random
backpressure on R and B, checked beat by beat against a byte-array model; host byte reads and
writes between bursts; the protocol checker of :mod:`gen.rtlsim.axi` on every cycle."""

import random

import pytest

from gen.rtlsim.axi import AxiProtocolChecker
from hw.axi import RESP_DECERR, RESP_OKAY, RESP_SLVERR
from hw.axiram import AxiBram
from tb.support.amsim import run_until

SIZE = 1024


def reference(mem, op):
    """Expected beats of a burst: (responses, read data) and the model updated for writes."""
    kind, addr, length, size, burst, wdata, wstrb = op
    nbytes = mem["nbytes"]
    data = mem["data"]
    step = 1 << size
    bad = burst == 0b10 or step > nbytes
    resps, rdata = [], []
    a = addr
    for beat in range(length + 1):
        if bad:
            r = RESP_SLVERR
        elif a >= SIZE:
            r = RESP_DECERR
        else:
            r = RESP_OKAY
        resps.append(r)
        word = a // nbytes * nbytes
        if kind == "r":
            rdata.append(int.from_bytes(data[word:word + nbytes], "little") if r == RESP_OKAY
                         else 0)
        elif r == RESP_OKAY:
            for lane in range(nbytes):
                if wstrb[beat] >> lane & 1:
                    data[word + lane] = wdata[beat] >> (8 * lane) & 0xFF
        if burst == 0b01:
            a = (a & ~(step - 1)) + step
    if kind == "w":
        worst = next((r for r in resps if r != RESP_OKAY), RESP_OKAY)
        return [worst], []
    return resps, rdata


def random_op(rng, nbytes):
    max_size = nbytes.bit_length() - 1
    kind = rng.choice("rw")
    length = rng.choice([0, 1, 3, 7, 15])
    size = max_size if rng.random() < 0.7 else rng.randrange(max_size + 1)
    burst = rng.choices([0b01, 0b00, 0b10], [8, 1, 1])[0]
    addr = rng.randrange(SIZE + 64) if rng.random() < 0.1 else rng.randrange(SIZE)
    if rng.random() < 0.7 or burst == 0b10:
        addr &= ~((1 << size) - 1)
    if burst == 0b10 and length == 0:
        length = 1
    wdata = [rng.getrandbits(8 * nbytes) for _ in range(length + 1)]
    wstrb = [rng.getrandbits(nbytes) if rng.random() < 0.3 else (1 << nbytes) - 1
             for _ in range(length + 1)]
    return (kind, addr, length, size, burst, wdata, wstrb)


@pytest.mark.parametrize("data_width,idle,backpressure", [
    (64, 0.0, 0.0), (64, 0.5, 0.0), (64, 0.0, 0.5), (128, 0.3, 0.3), (32, 0.7, 0.7)])
def test_bursts(data_width, idle, backpressure):
    nbytes = data_width // 8
    dut = AxiBram(size=SIZE, data_width=data_width, addr_width=16, id_width=2)
    rng = random.Random(data_width * 1000 + int(idle * 10) + int(backpressure * 100))
    mem = {"nbytes": nbytes, "data": bytearray(SIZE)}
    ops = [random_op(rng, nbytes) for _ in range(60)]
    host_ops = [(rng.randrange(SIZE), rng.getrandbits(8), rng.random() < 0.5)
                for _ in range(30)]
    checker = AxiProtocolChecker(data_width=data_width, name="s_axi", incr_only=False)
    seen = {"mismatch": [], "done": False}
    names = [n[len("s_axi_"):] for n in dut.signature.members if n.startswith("s_axi_")]

    async def monitor(ctx):
        sigs = [getattr(dut, "s_axi_" + n) for n in names]
        async for _, _, *values in ctx.tick().sample(*sigs):
            checker.step(dict(zip(names, (int(v) for v in values))))

    async def pause(ctx, prob):
        while rng.random() < prob:
            await ctx.tick()

    async def master(ctx):
        hq = list(host_ops)
        for n, op in enumerate(ops):
            kind, addr, length, size, burst, wdata, wstrb = op
            want_resp, want_data = reference(mem, op)
            ident = n % 4
            p = "ar" if kind == "r" else "aw"
            await pause(ctx, idle)
            for k, v in (("id", ident), ("addr", addr), ("len", length), ("size", size),
                         ("burst", burst), ("valid", 1)):
                ctx.set(getattr(dut, f"s_axi_{p}{k}"), v)
            await ctx.tick().until(getattr(dut, f"s_axi_{p}ready"))
            ctx.set(getattr(dut, f"s_axi_{p}valid"), 0)
            if kind == "r":
                got = []
                while len(got) < length + 1:
                    ctx.set(dut.s_axi_rready, int(rng.random() >= backpressure))
                    _, _, v, r, d, resp, last, rid = await ctx.tick().sample(
                        dut.s_axi_rvalid, dut.s_axi_rready, dut.s_axi_rdata, dut.s_axi_rresp,
                        dut.s_axi_rlast, dut.s_axi_rid)
                    if v and r:
                        got.append((int(resp), int(d), int(last), int(rid)))
                ctx.set(dut.s_axi_rready, 0)
                want = [(r, d, int(i == length), ident)
                        for i, (r, d) in enumerate(zip(want_resp, want_data))]
                if got != want:
                    seen["mismatch"].append((op, got, want))
            else:
                for beat in range(length + 1):
                    ctx.set(dut.s_axi_wvalid, 0)
                    await pause(ctx, idle)
                    ctx.set(dut.s_axi_wdata, wdata[beat])
                    ctx.set(dut.s_axi_wstrb, wstrb[beat])
                    ctx.set(dut.s_axi_wlast, int(beat == length))
                    ctx.set(dut.s_axi_wvalid, 1)
                    await ctx.tick().until(dut.s_axi_wready)
                ctx.set(dut.s_axi_wvalid, 0)
                while True:
                    ctx.set(dut.s_axi_bready, int(rng.random() >= backpressure))
                    _, _, v, r, resp, bid = await ctx.tick().sample(
                        dut.s_axi_bvalid, dut.s_axi_bready, dut.s_axi_bresp, dut.s_axi_bid)
                    if v and r:
                        break
                ctx.set(dut.s_axi_bready, 0)
                if (int(resp), int(bid)) != (want_resp[0], ident):
                    seen["mismatch"].append((op, (int(resp), int(bid)), want_resp))
            # a host access between bursts
            if hq and rng.random() < 0.5:
                haddr, hbyte, hwrite = hq.pop()
                ctx.set(dut.host_addr, haddr)
                ctx.set(dut.host_wdata, hbyte)
                ctx.set(dut.host_we if hwrite else dut.host_re, 1)
                while True:
                    _, _, ack, byte = await ctx.tick().sample(dut.host_ack, dut.host_rdata)
                    if ack:
                        break
                ctx.set(dut.host_we if hwrite else dut.host_re, 0)
                if hwrite:
                    mem["data"][haddr] = hbyte
                elif int(byte) != mem["data"][haddr]:
                    seen["mismatch"].append((("host", haddr), int(byte), mem["data"][haddr]))
        seen["done"] = True

    run_until(dut, [monitor, master], lambda: seen["done"], timeout=50_000)
    assert not seen["mismatch"], seen["mismatch"][:3]
    assert not checker.errors


def test_parameters():
    with pytest.raises(ValueError, match="size must be a power of two"):
        AxiBram(size=1000, data_width=64, addr_width=16, id_width=2)
    with pytest.raises(ValueError, match="data_width"):
        AxiBram(size=1024, data_width=48, addr_width=16, id_width=2)
    with pytest.raises(ValueError, match="size"):
        AxiBram(size=1 << 17, data_width=64, addr_width=16, id_width=2)


def test_latencies():
    """AR handshake to the first RVALID is ``read_latency`` cycles; host_ack comes two cycles
    after the cycle of a write request and three after that of a read request (the host port
    is registered both ways)."""
    dut = AxiBram(size=1024, data_width=64, addr_width=16, id_width=2)
    seen = {}

    async def main(ctx):
        ctx.set(dut.host_addr, 9)
        ctx.set(dut.host_wdata, 0x5A)
        for kind, port in (("write", dut.host_we), ("read", dut.host_re)):
            ctx.set(port, 1)
            n = 0                                  # cycles after the request's
            while True:
                _, _, ack, byte = await ctx.tick().sample(dut.host_ack, dut.host_rdata)
                n += 1
                if ack:
                    break
            ctx.set(port, 0)
            seen[kind] = n - 1
            seen[kind + "_byte"] = int(byte)
        await ctx.tick().repeat(3)
        for k, v in (("id", 1), ("addr", 8), ("len", 0), ("size", 3), ("burst", 1),
                     ("valid", 1)):
            ctx.set(getattr(dut, f"s_axi_ar{k}"), v)
        ctx.set(dut.s_axi_rready, 1)
        await ctx.tick().until(dut.s_axi_arready)
        ctx.set(dut.s_axi_arvalid, 0)
        n = 1                                      # counted from the handshake's cycle
        while not ctx.get(dut.s_axi_rvalid):
            await ctx.tick()
            n += 1
        seen["ar"] = n
        seen["rdata"] = ctx.get(dut.s_axi_rdata)
        seen["done"] = True

    run_until(dut, [main], lambda: seen.get("done"), timeout=200)
    assert (seen["write"], seen["read"]) == (2, 3)
    assert seen["read_byte"] == 0x5A and seen["rdata"] == 0x5A << 8
    assert seen["ar"] == dut.read_latency == 3
