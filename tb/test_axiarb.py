"""hw/axiarb.py: random AXI4 masters (reads on two IDs, writes whose data may come before the
address) through the arbiter into the Python memory model (gen.rtlsim.axi.AxiSlaveModel:
random latency, interleaved and reordered read data, random READY/VALID gaps), the protocol
checker on the shared port. Every read beat reaches the master that asked, with its ID, its
data and RLAST in place; every write lands; every master's B comes back; no master waits
forever (round-robin), with idle cycles and backpressure on every channel of every port."""

import random

import pytest
from amaranth.sim import Simulator

from gen.rtlsim.axi import CHANNELS, AxiProtocolChecker, AxiSlaveModel
from hw.axiarb import AxiArbiter

DW, AW = 64, 16
BYTES = DW // 8
REGION = 0x1000                               # each master: reads below, writes above


class Master:
    """One random master: ``reads`` bursts (IDs 0 and 1) from its read region and ``writes``
    bursts (ID 3) into its write region, presented with random gaps, W possibly ahead of AW."""

    def __init__(self, index, rng, *, reads, writes, idle, shared=()):
        self.i, self.rng, self.idle = index, rng, idle
        self.r_gaps = not shared               # sharing masters hold RREADY high
        base = 2 * REGION * index
        self.ar = [(0, base + BYTES * rng.randrange(64), rng.randrange(4))
                   for _ in range(reads)]
        if shared:                             # the group's ID-1 reads, in order, mixed in
            k = list(shared)
            mixed = []
            for r in self.ar:
                mixed.append(r)
                if k and rng.random() < 0.5:
                    mixed.append(k.pop(0))
            self.ar = mixed + k
        else:
            self.ar = [(rng.randrange(2), a, n) for _, a, n in self.ar]
        self.aw = []
        for _ in range(writes):
            addr = base + REGION + BYTES * rng.randrange(64)
            words = [rng.getrandbits(DW) for _ in range(rng.randrange(1, 5))]
            self.aw.append((addr, words))
        self.w = [(words, k) for _, words in self.aw for k in range(len(words))]
        self.pending = {0: [], 1: []}          # ID -> [[addr, beats left]]
        self.b_due = 0
        self.cur_ar = self.cur_aw = self.cur_w = None
        self.aw_sent = 0
        self.done_reads = self.done_writes = 0

    def gap(self):
        return self.idle and self.rng.random() < self.idle

    def outputs(self):
        out = {"arvalid": 0, "awvalid": 0, "wvalid": 0}
        if self.cur_ar is None and self.ar and not self.gap():
            self.cur_ar = self.ar.pop(0)
        if self.cur_ar is not None:
            ident, addr, length = self.cur_ar
            out |= {"arvalid": 1, "arid": ident, "araddr": addr, "arlen": length, "arsize": 3,
                    "arburst": 1, "arcache": 3}
        if self.cur_aw is None and self.aw and not self.gap():
            self.cur_aw = self.aw.pop(0)
        if self.cur_aw is not None:
            addr, words = self.cur_aw
            out |= {"awvalid": 1, "awid": 3, "awaddr": addr, "awlen": len(words) - 1,
                    "awsize": 3, "awburst": 1, "awcache": 3}
        # W beats of a burst may go before its address (at most one burst ahead)
        if self.cur_w is None and self.w and not self.gap():
            self.cur_w = self.w.pop(0)
        if self.cur_w is not None:
            words, k = self.cur_w
            out |= {"wvalid": 1, "wdata": words[k], "wstrb": 0xFF, "wlast": k == len(words) - 1}
        out["rready"] = int(not (self.r_gaps and self.gap()))
        out["bready"] = int(not self.gap())
        return out


def run(masters, *, seed, idle, latency, reads=12, writes=6, groups=None, solo_at=None):
    """``groups``: ``(group_mask, follow bits)``: share ID 1 within groups."""
    rng = random.Random(seed)
    dut = AxiArbiter(masters=masters, addr_width=AW, data_width=DW, id_width=2, max_writes=2,
                     share_id=1 if groups else None, max_reads=64)
    model = AxiSlaveModel(data_width=DW, size=1 << AW, seed=seed, idle=idle, latency=latency)
    for a in range(0, 1 << AW, BYTES):
        model.mem[a:a + BYTES] = rng.getrandbits(DW).to_bytes(BYTES, "little")
    initial = bytes(model.mem)
    shared = {}
    if groups:
        mask, follow = groups
        for i in range(masters):
            lead = i & mask
            if lead not in shared:
                shared[lead] = [(1, 2 * REGION * lead + BYTES * rng.randrange(64),
                                 rng.randrange(4)) for _ in range(reads // 2)]
    ms = [Master(i, random.Random(seed * 100 + i), reads=reads, writes=writes, idle=idle,
                 shared=shared.get(i & groups[0], ()) if groups else ())
          for i in range(masters)]
    want_reads = [len(m.ar) for m in ms]
    want_mem = bytearray(initial)
    for m in ms:
        for addr, words in m.aw:
            for k, w in enumerate(words):
                want_mem[addr + BYTES * k:addr + BYTES * (k + 1)] = w.to_bytes(BYTES, "little")
    shift = 2
    checker = AxiProtocolChecker(data_width=DW, ids=[(i << shift) | s for i in range(masters)
                                                      for s in (0, 1, 3)], incr_only=True)
    names = [n for ch in CHANNELS.values() for n in (ch[0], ch[1], *ch[2])]
    m_out = [n for n in names if n not in ("awready", "wready", "bid", "bresp", "bvalid",
                                              "arready", "rid", "rdata", "rresp", "rlast",
                                              "rvalid")]
    s_in = ["arready", "awready", "wready", "rvalid", "rid", "rdata", "rresp", "rlast",
            "bvalid", "bid", "bresp"]
    state = {"cycles": 0, "grants": []}

    def port(i, n):
        return getattr(dut, f"s{i}_axi_{n}")

    async def bench(ctx):
        if groups:
            ctx.set(dut.group_mask, groups[0])
            ctx.set(dut.follow, groups[1])
        for cycle in range(20_000):
            if groups and cycle == solo_at:
                ctx.set(dut.solo, 1)
            for k, v in model.outputs().items():
                ctx.set(getattr(dut, f"m_axi_{k}"), v)
            outs = [m.outputs() for m in ms]
            for i, o in enumerate(outs):
                for n in m_out:
                    if n in o:
                        ctx.set(port(i, n), int(o[n]))
                    elif n.endswith("valid"):
                        ctx.set(port(i, n), 0)
            sampled = await ctx.tick().sample(
                *(getattr(dut, f"m_axi_{n}") for n in names),
                *(port(i, n) for i in range(masters) for n in s_in))
            values = [int(v) for v in sampled[2:]]
            sig = dict(zip(names, values[:len(names)]))
            checker.step(sig)
            if sig["arvalid"] and sig["arready"]:
                state["grants"].append(sig["arid"] >> shift)
                if groups and solo_at is None:
                    assert not (groups[1] >> (sig["arid"] >> shift) & 1
                                and sig["arid"] & 3 == 1), "a follower read ID 1 itself"
            model.clock(sig)
            rest = values[len(names):]
            for i, m in enumerate(ms):
                s = dict(zip(s_in, rest[i * len(s_in):(i + 1) * len(s_in)]))
                o = outs[i]
                if o["arvalid"] and s["arready"]:
                    ident, addr, length = m.cur_ar
                    m.pending[ident].append([addr, length + 1])
                    m.cur_ar = None
                if o["awvalid"] and s["awready"]:
                    m.cur_aw = None
                    m.aw_sent += 1
                if o["wvalid"] and s["wready"]:
                    words, k = m.cur_w
                    if k == len(words) - 1:
                        m.b_due += 1
                    m.cur_w = None
                if s["rvalid"] and o["rready"]:
                    assert s["rid"] in m.pending and m.pending[s["rid"]], \
                        f"master {i}: R of ID {s['rid']} not asked for"
                    burst = m.pending[s["rid"]][0]
                    want = int.from_bytes(initial[burst[0]:burst[0] + BYTES], "little")
                    assert s["rdata"] == want and s["rresp"] == 0, f"master {i}: R data"
                    burst[0] += BYTES
                    burst[1] -= 1
                    assert s["rlast"] == (burst[1] == 0), f"master {i}: RLAST"
                    if burst[1] == 0:
                        m.pending[s["rid"]].pop(0)
                        m.done_reads += 1
                if s["bvalid"] and o["bready"]:
                    assert s["bid"] == 3 and s["bresp"] == 0, f"master {i}: B"
                    m.done_writes += 1
            if all(m.done_reads == want_reads[m.i] and m.done_writes == writes for m in ms):
                state["cycles"] = cycle
                return
        raise AssertionError("timeout: " + ", ".join(
            f"master {m.i}: {m.done_reads}/{want_reads[m.i]} reads, "
            f"{m.done_writes}/{writes} writes"
            for m in ms))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert model.mem == want_mem, "memory differs after the writes"
    assert not any(checker.outstanding.values())
    return state


@pytest.mark.parametrize("masters", [2, 3, 4])
@pytest.mark.parametrize("idle,latency", [(0.0, 0), (0.3, 6)])
def test_random_masters(masters, idle, latency):
    run(masters, seed=masters * 7 + int(10 * idle), idle=idle, latency=latency)


def test_stress():
    """Heavy backpressure, long latency, many bursts."""
    run(4, seed=99, idle=0.6, latency=12, reads=40, writes=20)


def test_full_throughput():
    """No gaps anywhere: reads of several masters keep the bus busy (a beat most cycles)."""
    cycles = run(2, seed=5, idle=0.0, latency=0, reads=20, writes=0)["cycles"]
    assert cycles < 2 * 20 * 4 + 20


@pytest.mark.parametrize("masters", [2, 3])
def test_round_robin(masters):
    """Masters that always request are granted in turn."""
    grants = run(masters, seed=3, idle=0.0, latency=0, reads=10, writes=0)["grants"]
    # after reset the master after 0 goes first
    assert grants[:masters * 10] == [(g + 1) % masters for g in range(masters * 10)], grants


@pytest.mark.parametrize("masters,mask,follow", [(2, 0b0, 0b10), (4, 0b10, 0b1010),
                                                  (4, 0b00, 0b1110), (4, 0b00, 0b0100)])
@pytest.mark.parametrize("idle", [0.0, 0.4])
def test_shared_reads(masters, mask, follow, idle):
    """Followers take their leader's ID-1 reads: they never issue them on the shared port,
    and every one of them receives every beat (data checked per master)."""
    st = run(masters, seed=masters + follow, idle=idle, latency=4, reads=16, writes=3,
             groups=(mask, follow))
    assert st["cycles"] > 0


@pytest.mark.parametrize("solo_at", [0, 40])
def test_solo(solo_at):
    """SOLO (a job being stopped) from the start or midway: reads already shared still reach
    every follower, new ones are each master's own; nobody waits for a partner forever.
    (Followers here ask for the leader's rows, so their own reads return the same data.)"""
    run(4, seed=11, idle=0.3, latency=5, reads=16, writes=2, groups=(0b10, 0b1010),
        solo_at=solo_at)


def test_parameters():
    with pytest.raises(ValueError, match="masters must be an integer from 2 to 16, not 1"):
        AxiArbiter(masters=1, addr_width=AW, data_width=DW, id_width=2, max_writes=1)
    with pytest.raises(ValueError, match="max_writes must be an integer of at least 1, not 0"):
        AxiArbiter(masters=2, addr_width=AW, data_width=DW, id_width=2, max_writes=0)
