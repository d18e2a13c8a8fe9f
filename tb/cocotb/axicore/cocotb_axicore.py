"""The memory-attached core (``sofa_top`` of a ``memory = "axi"`` config, hw/axicore.py) on
Verilator: cocotbext-axi's AxiRam as the memory (random read latency, random pauses on all five
channels; :func:`gen.rtlsim.axi.axi_ram`), or :class:`gen.rtlsim.axi.AxiSlaveModel` where DECERR
is needed, and cocotbext-axi's AxiLiteMaster on the registers. The protocol checker watches the
AXI4 master port in every test (a subclass that also records the handshakes: the V read order,
the responses, the bus activity after a fault).

Every job's ``O`` is compared bit-exact with :func:`sim.jobs.golden_job` (and the bytes around
the rows, the write strobes, stay untouched), every exact counter with
:func:`sim.jobs.job_counters` (per core with several cores, summed), and in sparse
mode the AR addresses of ID 2 (V) with :func:`sim.jobs.fetch_schedule`.

Environment: ``SOFA_SEED``; ``SOFA_SMALL=1`` for a large config (the ``axi`` preset): shorter
sequences; ``SOFA_LONG_S`` / ``SOFA_LONG_T`` the shape of :func:`test_long`;
``SOFA_STRESS_ROUNDS`` of :func:`test_stress`.
"""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, with_timeout

from gen.rtlsim.axi import (SLVERR, DECERR, AxiProtocolChecker, AxiSlaveModel, attach_checker,
                            axi_ram, axil_master, drive_slave_model, quiet_cocotbext, set_pauses)
from gen.rtlsim.streams import load_sidecar
from sim.jobs import (core_parts, fetch_schedule, golden_job, job_counters, memory_image,
                      read_outputs)
from sim.workloads import structured
from spec.config import RunParams
from spec.job import (OUT_ELEM_BYTES, TENSORS, JobDescriptor, JobError, bus_bytes, check_job,
                      k_packed, out_row_bytes, row_beats, row_bytes)
from spec.regmap import (Reg, counters, job_writes,
                         parameter_writes, register)


CFG, SIDECAR = load_sidecar()
DER = CFG.derived
SEED = int(os.environ.get("SOFA_SEED", "1"))
SMALL = os.environ.get("SOFA_SMALL", "0") == "1"
BUS = bus_bytes(CFG)
L, BC = CFG.q_lanes, CFG.block_size
MEM = 1 << 22                          # bytes of the memory model
POISON = 0xA5                          # O regions are filled with it before a job
WORD = 4                               # AXI4-Lite: byte address = 4 × word
COUNTERS = counters(CFG)
#: The core's index sits above the stream IDs (0 Q, 1 K, 2 V, 3 O) with several cores.
ID_SHIFT = CFG.axi_id_width - (CFG.cores - 1).bit_length()
IDS = [(c << ID_SHIFT) | s for c in range(CFG.cores) for s in range(4)]
quiet_cocotbext()


# ---- the port: protocol checker + recorder --------------------------------------------------

class Recorder(AxiProtocolChecker):
    """The protocol checker, also recording what happened on the port (cycle numbers count
    the checked cycles since the test's reset): the AR and AW handshakes ``(cycle, id, addr,
    len)``, the cycles a new AR or AW was presented, the error responses ``(cycle, channel,
    id, resp)`` and the last cycle any master VALID was high."""

    def __init__(self):
        super().__init__(data_width=CFG.axi_data_width, ids=IDS, incr_only=True)
        self.tick = 0
        self.ar, self.aw, self.bad = [], [], []
        self.ar_new, self.aw_new = [], []
        self._ar_wait = self._aw_wait = False
        self.last_valid = -1

    def step(self, sig):
        t = self.tick
        self.tick += 1
        for ch, new, log in (("ar", self.ar_new, self.ar), ("aw", self.aw_new, self.aw)):
            v, r = sig[f"{ch}valid"], sig[f"{ch}ready"]
            waiting = f"_{ch}_wait"
            if v and not getattr(self, waiting):
                new.append(t)
            setattr(self, waiting, bool(v and not r))
            if v and r:
                log.append((t, sig[f"{ch}id"], sig[f"{ch}addr"], sig[f"{ch}len"]))
        if sig["rvalid"] and sig["rready"] and sig["rresp"]:
            self.bad.append((t, "r", sig["rid"], sig["rresp"]))
        if sig["bvalid"] and sig["bready"] and sig["bresp"]:
            self.bad.append((t, "b", sig["bid"], sig["bresp"]))
        if sig["arvalid"] or sig["awvalid"] or sig["wvalid"]:
            self.last_valid = t
        super().step(sig)


# ---- jobs ------------------------------------------------------------------------------------

def layout(job, *, base, gap=0, head_gap=0, tensor_gap=0):
    """``job`` with its tensors placed one after the other from ``base`` (bus-aligned): rows
    ``row_beats + gap`` bus words apart, heads ``head_gap`` words further apart than their rows
    need, ``tensor_gap`` words between tensors. Packed K (``predict_keys > 1``): rows one row
    apart (``gap`` does not apply), each head from a bus word."""
    changes, addr = {}, base
    for t in TENSORS:
        stride = (row_beats(CFG, out=t == "o") + gap) * BUS
        head_stride = job.rows(t) * stride + head_gap * BUS
        if t == "k" and k_packed(CFG):
            stride = row_bytes(CFG)
            head_stride = (-(-job.rows(t) * stride // BUS) + head_gap) * BUS
        changes.update({f"{t}_base": addr, f"{t}_stride": stride,
                        f"{t}_head_stride": head_stride})
        addr += job.heads * head_stride + tensor_gap * BUS
    return job.replace(**changes)


def data_for(rng, job):
    parts = [structured(CFG, rng, job.queries, job.seq_len) for _ in range(job.heads)]
    return tuple(np.stack([p[i] for p in parts]) for i in range(3))


def params_for(S, *, dense=False, top_k=None, radius=None):
    return RunParams(seq_len=S, top_k=top_k or CFG.k_max,
                     radius=DER.radius_inf if radius is None else radius,
                     scale_log2e=RunParams.scale_from_float(CFG, 2e-3), dense=dense)


def o_region(job):
    """``(start, end)`` of the bytes the job's O may cover (heads and rows, gaps included)."""
    ends = [job.address("o", h, t) + out_row_bytes(CFG) for h in range(job.heads)
            for t in (0, job.queries - 1)]
    return job.o_base, max(ends)


def o_bytes(out_row):
    return b"".join((int(v) & 0xFFFFFFFF).to_bytes(OUT_ELEM_BYTES, "little") for v in out_row)


def split_bursts(addr, nbytes):
    """Start addresses of the INCR bursts a read of ``nbytes`` from ``addr`` becomes (at most
    ``axi_max_burst`` beats, never across 4 KB)."""
    out, end = [], addr + nbytes
    while addr < end:
        out.append(addr)
        addr = min(end, addr + CFG.axi_max_burst * BUS, (addr // 4096 + 1) * 4096)
    return out


def cycle_budget(job, params, idle=0.0, burst=1):
    """Generous: every block streams its keys through prediction and SU-FA, with pauses."""
    blocks = -(-job.queries // L) * job.heads
    per_key = DER.dlzs_cycles + DER.mac_cycles + row_beats(CFG) + 4
    slow = 1 + 4 * idle * burst
    return int(4000 + 6 * slow * blocks * (job.seq_len * per_key + 50 * CFG.d))


class Bench:
    """One DUT: clock, reset, the memory (AxiRam or AxiSlaveModel), the AXI4-Lite master, the
    recording protocol checker, and the job flow."""

    def __init__(self, dut):
        self.dut = dut
        self.clock = None

    async def start(self, *, seed=SEED, idle=0.0, burst=1, latency=0, lite_idle=0.0,
                    errors=(), model=None):
        """Reset, then attach the memory: AxiRam with SLVERR ``errors`` ranges, or ``model``
        (an AxiSlaveModel) when given."""
        dut = self.dut
        if self.clock is None:
            self.clock = cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        for name in ("s_axil_awvalid", "s_axil_wvalid", "s_axil_arvalid", "s_axil_bready",
                     "s_axil_rready"):
            getattr(dut, name).value = 0
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        self.mon = Recorder()
        attach_checker(dut, self.mon)
        self.model = model
        if model is None:
            self.ram = axi_ram(dut, size=MEM, seed=seed, idle=idle, burst=burst,
                               latency=latency, errors=errors)
            self.read, self.write = self.ram.read, self.ram.write
        else:
            self.ram = None
            drive_slave_model(dut, model)

            def read(a, n):
                return bytes(model.mem[a:a + n])

            def write(a, data):
                model.mem[a:a + len(data)] = data
            self.read, self.write = read, write
        self.lite = axil_master(dut, seed=seed + 1, idle=lite_idle, burst=burst)

    def pauses(self, seed, idle, burst=1):
        set_pauses(self.ram.channels, seed, idle, burst)
        set_pauses(self.lite.channels, seed + 1, idle, burst)

    # -- registers --
    async def wr(self, addr, value):
        from cocotbext.axi import AxiResp
        resp = await self.lite.write(WORD * int(addr), int(value).to_bytes(4, "little"))
        assert resp.resp == AxiResp.OKAY, f"write of {value:#x} to {addr}: {resp.resp}"

    async def rd(self, addr):
        from cocotbext.axi import AxiResp
        resp = await self.lite.read(WORD * int(addr), 4)
        assert resp.resp == AxiResp.OKAY, f"read of {addr}: {resp.resp}"
        return int.from_bytes(resp.data, "little")

    async def counters(self):
        return {c.name: await self.rd(c.address) for c in COUNTERS}

    # -- jobs --
    def load(self, job, Q, K, V):
        for addr, data in memory_image(CFG, job, Q, K, V).items():
            self.write(addr, data)
        lo, hi = o_region(job)
        self.write(lo, bytes([POISON]) * (hi - lo))

    async def program(self, job, params, *, rass=True, irq=True):
        for addr, value in parameter_writes(CFG, params) + job_writes(CFG, job, rass=rass,
                                                                      irq=irq):
            await self.wr(addr, value)

    async def launch(self):
        """Clear counters, error flag and done; start."""
        await self.wr(Reg.STATUS, 0b11)
        await self.wr(Reg.JOB_STATUS, 1)
        await self.wr(Reg.CONTROL, 1)

    async def wait_done(self, budget, *, irq=True):
        dut = self.dut
        if irq:
            if not int(dut.irq.value):
                await with_timeout(RisingEdge(dut.irq), 10 * budget, "ns")
        else:
            for _ in range(budget // 50 + 2):
                if await self.rd(Reg.JOB_STATUS) & 1:
                    break
                await ClockCycles(dut.clk, 50)
            else:
                raise AssertionError(f"job not done after {budget} cycles")
        assert await self.rd(Reg.JOB_STATUS) == 1, "JOB_STATUS: done and not running"

    async def quiet(self, cycles=64):
        """The bus stays quiet: no VALID of the master for ``cycles``; nothing in flight."""
        t = self.mon.tick
        await ClockCycles(self.dut.clk, cycles)
        assert self.mon.last_valid < t, \
            f"master VALID at cycle {self.mon.last_valid} after done (cycle {t})"
        self.mon.check_quiet()
        if self.model is not None:
            assert self.model.quiet, "the slave model still has work"

    async def run_job(self, job, Q, K, V, params, *, rass=True, irq=True, idle=0.0, burst=1,
                      check=True, fetch=True, during=None):
        """Load, program, start, wait, check everything; returns ``(result, counters)``."""
        self.load(job, Q, K, V)
        await self.program(job, params, rass=rass, irq=irq)
        v0 = len(self.mon.ar)
        await self.launch()
        t0 = self.mon.tick
        if during is not None:
            await during(self)
        await self.wait_done(cycle_budget(job, params, idle, burst), irq=irq)
        self.dut._log.info(f"job S={job.seq_len} T={job.queries} H={job.heads} "
                           f"causal={job.causal} dense={params.dense} rass={rass}: "
                           f"{self.mon.tick - t0} cycles")
        assert int(self.dut.irq.value) == int(irq)
        got = await self.counters()
        assert await self.rd(Reg.JOB_ERROR) == JobError.NONE
        assert await self.rd(Reg.STATUS) == 0, "STATUS: busy or error after the job"
        res = golden_job(CFG, params, job, Q, K, V)
        if check:
            self.check_outputs(job, res.out)
            want = job_counters(CFG, params, job, Q, K, V, rass=rass)[0]
            for name, value in want.items():
                assert got[name] == value, f"counter {name}: {got[name]} != expected {value}"
            if fetch and not params.dense:
                for c, sub, _, _, part in core_parts(CFG, job, Q, K, V):
                    self.check_fetch(sub, golden_job(CFG, params, sub, *part),
                                     self.mon.ar[v0:], rass, core=c)
        await self.quiet()
        return res, got

    def check_outputs(self, job, want, written=None):
        """``O`` bit-exact; every byte of the O region outside the rows untouched. With
        ``written`` (a set of ``(head, query)``), only those rows hold ``want``, the others
        are untouched."""
        lo, hi = o_region(job)
        expect = bytearray([POISON]) * (hi - lo)
        for h in range(job.heads):
            for t in range(job.queries):
                if written is None or (h, t) in written:
                    a = job.address("o", h, t) - lo
                    expect[a:a + out_row_bytes(CFG)] = o_bytes(want[h, t])
        mem = self.read(lo, hi - lo)
        if mem != bytes(expect):
            out = read_outputs(CFG, job, self.read)
            bad = [i for i in range(hi - lo) if mem[i] != expect[i]]
            raise AssertionError(f"O region differs at {len(bad)} bytes, first at "
                                 f"{lo + bad[0]:#x}; O read back:\n{out}\nexpected\n{want}")

    def check_fetch(self, job, res, ars, rass, core=0):
        """The V reads (ARID 2) of ``core`` in issue order are :func:`sim.jobs.fetch_schedule`
        of its (sub-)job."""
        got = [a for _, ident, a, _ in ars if ident == (core << ID_SHIFT) | 2]
        want = [a for h, j in fetch_schedule(CFG, job, res, rass)
                for a in split_bursts(job.address("v", h, j), row_beats(CFG) * BUS)]
        if got != want:
            k = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y),
                     min(len(got), len(want)))
            raise AssertionError(f"V reads differ from fetch_schedule at read {k} of "
                                 f"{len(want)} (got {len(got)}): got {got[k:k + 4]}, "
                                 f"expected {want[k:k + 4]}")


def new_job(S, T, H=1, **kw):
    return JobDescriptor(seq_len=S, queries=T, heads=H,
                         **{k: v for k, v in kw.items() if k in ("causal", "q_start")})


def sizes(small, large):
    return large if SMALL else small


# ---- tests -----------------------------------------------------------------------------------

@cocotb.test()
async def test_sparse_and_dense(dut):
    """Two heads, T not a multiple of the lanes (the last block is short), S not a multiple of
    the tile; sparse (top_k 1 and k_max, a finite radius) and dense; V reads = fetch_schedule."""
    bench = Bench(dut)
    await bench.start(seed=SEED, latency=4)
    rng = np.random.default_rng(SEED)
    S = sizes(3 * BC + 2, 2 * BC + 3)
    job = layout(new_job(S, L + 1, 2), base=0x1000 - 3 * BUS)
    Q, K, V = data_for(rng, job)
    for params in (params_for(S, top_k=1), params_for(S), params_for(S, radius=DER.radius_inf // 8),
                   params_for(S, dense=True)):
        await bench.run_job(job, Q, K, V, params)


@cocotb.test()
async def test_causal_multihead_strided(dut):
    """Causal with q_start (queries see different numbers of keys, tiles past a query are
    skipped), three heads, rows further apart than a row, heads further apart than their rows,
    tensors apart; sparse and dense; with pauses."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 1, idle=0.2, latency=6)
    rng = np.random.default_rng(SEED + 1)
    S = sizes(3 * BC + 3, 2 * BC + 1)
    T = 2 * L + 1
    job = layout(new_job(S, T, 3, causal=True, q_start=BC - 2), base=0x3000 - 5 * BUS,
                 gap=1, head_gap=3, tensor_gap=7)
    assert check_job(CFG, job) == JobError.NONE
    Q, K, V = data_for(rng, job)
    for params in (params_for(S), params_for(S, dense=True)):
        await bench.run_job(job, Q, K, V, params, idle=0.2)
    # prefill: every query sees its own prefix
    job = layout(new_job(S, S, 1, causal=True), base=0x20000, gap=2)
    Q, K, V = data_for(rng, job)
    await bench.run_job(job, Q, K, V, params_for(S), idle=0.2)


@cocotb.test()
async def test_rass(dut):
    """RASS on and off on the same job: the same O; bytes_v is traffic's v (on) and v_no_rass
    (off), v <= v_no_rass; the V reads follow fetch_schedule either way."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 2, idle=0.1, latency=3)
    rng = np.random.default_rng(SEED + 2)
    S = sizes(5 * BC, 3 * BC - 1)
    job = layout(new_job(S, 2 * L, 2), base=0x8000, gap=1)
    Q, K, V = data_for(rng, job)
    params = params_for(S)
    res, on = await bench.run_job(job, Q, K, V, params, rass=True)
    _, off = await bench.run_job(job, Q, K, V, params, rass=False)
    with_rass = job_counters(CFG, params, job, Q, K, V, rass=True, wrap=False)[0]["bytes_v"]
    without = job_counters(CFG, params, job, Q, K, V, rass=False, wrap=False)[0]["bytes_v"]
    assert on["bytes_v"] == with_rass <= off["bytes_v"] == without, (on, off)
    if L > 1:
        assert with_rass < without, "the case shares no V row between lanes"


@cocotb.test()
async def test_back_to_back(dut):
    """Jobs of different shapes one after the other without a reset (done cleared by the
    start, counters cleared in between), with and without irq (polled)."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 3, latency=2)
    rng = np.random.default_rng(SEED + 3)
    shapes = [(BC + 1, 1, 1, False, 0, True), (2 * BC, L, 2, True, 1, False),
              (sizes(4 * BC - 1, 2 * BC + 5), L + 1, 1, False, 0, True),
              (1, 1, 1, False, 0, False), (BC, 2 * L, 2, True, BC // 2, True)]
    base = 0x400
    for n, (S, T, H, causal, q0, dense) in enumerate(shapes):
        job = layout(new_job(S, T, H, causal=causal, q_start=q0), base=base, gap=n % 2)
        base = o_region(job)[1] // BUS * BUS + BUS
        Q, K, V = data_for(rng, job)
        await bench.run_job(job, Q, K, V, params_for(S, dense=dense), irq=n % 2 == 0)


@cocotb.test()
async def test_timing_intensities(dut):
    """The same job under no pauses, light, heavy and bursty pauses on the five memory
    channels and the register port, with random read latency: same O, same counters."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 4, latency=8)
    rng = np.random.default_rng(SEED + 4)
    S = sizes(3 * BC + 5, 2 * BC + 1)
    job = layout(new_job(S, L + 1, 2, causal=True, q_start=2), base=0x1F00, gap=1)
    Q, K, V = data_for(rng, job)
    cycles = []
    for n, (idle, burst) in enumerate([(0.0, 1), (0.2, 1), (0.5, 1), (0.3, 6)]):
        bench.pauses(SEED + 10 * n, idle, burst)
        t0 = bench.mon.tick
        await bench.run_job(job, Q, K, V, params_for(S, dense=n == 3), idle=idle, burst=burst)
        cycles.append(bench.mon.tick - t0)
    dut._log.info(f"cycles per intensity: {cycles}")


@cocotb.test()
async def test_stress(dut):
    """Long pauses everywhere (idle 0.5 in bursts up to 8, read latency up to 20), random
    shapes; ``SOFA_STRESS_ROUNDS`` rounds."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 5, idle=0.5, burst=8, latency=20, lite_idle=0.5)
    rng = np.random.default_rng(SEED + 5)
    pick = random.Random(SEED + 5)
    for n in range(int(os.environ.get("SOFA_STRESS_ROUNDS", "1"))):
        S = pick.randint(1, sizes(4 * BC, 2 * BC))
        T, H = pick.randint(1, 2 * L + 1), pick.randint(1, 2)
        causal = pick.random() < 0.5
        job = layout(new_job(S, T, H, causal=causal, q_start=pick.randint(0, S)),
                     base=pick.randrange(0, 0x10000, BUS), gap=pick.randint(0, 2),
                     head_gap=pick.randint(0, 3))
        Q, K, V = data_for(rng, job)
        params = params_for(S, dense=pick.random() < 0.3, top_k=pick.randint(1, CFG.k_max))
        await bench.run_job(job, Q, K, V, params, rass=pick.random() < 0.7,
                            idle=0.5, burst=8)


def descriptor_errors():
    """``(what, job)`` for every start-time JobError code (each job fails only that check)."""
    S = 2 * BC + 1
    good = layout(new_job(S, L + 1, 2), base=0x2000)
    assert check_job(CFG, good) == JobError.NONE
    top = 1 << CFG.axi_addr_width
    cases = [("S = 0", good.replace(seq_len=0)),
             ("queries = 0", good.replace(queries=0)),
             ("heads = 0", good.replace(heads=0)),
             ("Q base misaligned", good.replace(q_base=good.q_base + BUS // 2)),
             ("V stride misaligned", good.replace(v_stride=good.v_stride + BUS // 2)),
             ("O head stride misaligned",
              good.replace(o_head_stride=good.o_head_stride + BUS // 2)),
             ("K stride shorter than a row",
              good.replace(k_stride=(row_beats(CFG) - 1) * BUS)),
             ("O stride shorter than a row",
              good.replace(o_stride=(row_beats(CFG, out=True) - 1) * BUS)),
             ("O range past the top", good.replace(o_base=top - BUS)),
             ("K heads past the top", good.replace(k_head_stride=(top - BUS) // BUS * BUS)),
             ("V rows past the top", good.replace(v_stride=top // 2))]
    if k_packed(CFG) and row_beats(CFG) * BUS != row_bytes(CFG):
        cases.insert(7, ("K stride padded to the bus, not packed",
                         good.replace(k_stride=row_beats(CFG) * BUS)))
    s_max = CFG.max_seq_len + 1
    if s_max <= register("seq_len").legal(CFG)[1]:
        cases.insert(1, ("S > max_seq_len", good.replace(seq_len=s_max)))
    return good, cases


@cocotb.test()
async def test_descriptor_errors(dut):
    """Each check of the start: JOB_ERROR is check_job's code, done (and irq) rise, not a
    single bus access; afterwards a good job runs."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 6, latency=2)
    good, cases = descriptor_errors()
    seen = set()
    for what, job in cases:
        code = check_job(CFG, job)
        assert code not in (JobError.NONE,), what
        seen.add(code)
        params = params_for(good.seq_len)
        for addr, value in parameter_writes(CFG, params) + job_writes(CFG, job, irq=True):
            await bench.wr(addr, value)
        await bench.launch()
        await bench.wait_done(2000)
        got = await bench.rd(Reg.JOB_ERROR)
        assert got == code, f"{what}: JOB_ERROR {got}, expected {code.name} ({int(code)})"
        assert int(dut.irq.value) == 1, what
        assert not bench.mon.ar_new and not bench.mon.aw_new and bench.mon.last_valid < 0, \
            f"{what}: the bus was used"
        got = await bench.counters()
        assert all(got[n] == 0 for n in ("bytes_q", "bytes_k", "bytes_v", "bytes_o")), got
    assert seen == {JobError.SEQ_LEN, JobError.QUERIES, JobError.HEADS, JobError.ALIGN,
                    JobError.STRIDE, JobError.RANGE}, seen
    rng = np.random.default_rng(SEED + 6)
    Q, K, V = data_for(rng, good)
    await bench.run_job(good, Q, K, V, params_for(good.seq_len))


# -- faults --

def fault_cases(job, res, params):
    """``(stream, code, (start, stop))``: a byte range of one Q row, one K row, one V row the
    job fetches and one O row, each in the middle of the job."""
    h, t = job.heads - 1, job.queries // 2
    j = job.seq_len // 2
    sched = fetch_schedule(CFG, job, res) if not params.dense else [(h, j)]
    vh, vj = sched[len(sched) // 2]

    def rng_of(tensor, head, row, nbytes):
        a = job.address(tensor, head, row)
        return a, a + nbytes
    return [("Q", JobError.READ_Q, rng_of("q", h, t, row_bytes(CFG))),
            ("K", JobError.READ_K, rng_of("k", 0, j, row_bytes(CFG))),
            ("V", JobError.READ_V, rng_of("v", vh, vj, row_bytes(CFG))),
            ("O", JobError.WRITE_O, rng_of("o", 0, job.queries - 1, out_row_bytes(CFG)))]


async def fault_run(bench, job, Q, K, V, params, stream, code, bad, irq):
    """Start a job that meets an error response on the byte range ``bad``; check the code,
    done/irq, the rows written, the bus after the fault."""
    mon = bench.mon
    bench.load(job, Q, K, V)
    await bench.program(job, params, irq=irq)
    a0 = len(mon.aw)
    await bench.launch()
    await bench.wait_done(cycle_budget(job, params), irq=irq)
    assert int(bench.dut.irq.value) == int(irq)
    got = await bench.rd(Reg.JOB_ERROR)
    assert got == code, f"{stream} fault: JOB_ERROR {got}, expected {code.name} ({int(code)})"
    assert mon.bad, f"{stream} fault: no error response seen"
    first = mon.bad[0][0]
    # rows whose AW went out before the fault may be written, nothing after
    late = [t for t in mon.aw_new if t > first + FAULT_SLACK]
    assert not late, f"{stream} fault at cycle {first}: new AW at cycles {late}"
    late = [t for t in mon.ar_new if t > first + FAULT_SLACK]
    assert not late, f"{stream} fault at cycle {first}: new AR at cycles {late}"
    # the rows whose bursts all went out; the rows after them in job order must be untouched
    issued = {a for _, _, a, _ in mon.aw[a0:]}
    order = [(h, t) for h in range(job.heads) for t in range(job.queries)]
    started = [(h, t) for h, t in order if job.address("o", h, t) in issued]
    assert started == order[:len(started)], f"{stream} fault: the rows started are not a prefix"
    for h, t in started:
        a = job.address("o", h, t)
        parts = split_bursts(a, row_beats(CFG, out=True) * BUS)
        assert set(parts) <= issued, f"{stream} fault: O row ({h}, {t}) only partly written"
    written = {(h, t) for h, t in started
               if not bad[0] < job.address("o", h, t) + out_row_bytes(CFG)
               or not job.address("o", h, t) < bad[1]}
    res = golden_job(CFG, params, job, Q, K, V)
    bench.check_outputs(job, res.out, written=written)
    await bench.quiet()
    n = len(started)
    bench.dut._log.info(f"{stream} fault ({code.name}): AW issued {n} of {len(order)} rows, "
                        f"last new AW {max(mon.aw_new, default=-1) - first:+d} cycles from "
                        f"the fault, last new AR {max(mon.ar_new, default=-1) - first:+d}")
    return first


#: Cycles from the faulting handshake within which a command the core had already decided on
#: may still be presented on AR/AW (the R/B input register, the sticky fault, the job FSM
#: entering STOP, the AR/AW output registers).
FAULT_SLACK = 6


async def fault_test(dut, kind, stream):
    """One job meeting SLVERR (AxiRam error range) or DECERR (AxiSlaveModel: reordered,
    interleaved read data) on one row of ``stream``; then a job elsewhere runs right."""
    rng = np.random.default_rng(SEED + 7)
    S = 3 * BC + 1
    job = layout(new_job(S, 2 * L + 1, 2), base=0x4000, gap=1)
    Q, K, V = data_for(rng, job)
    params = params_for(S)
    res = golden_job(CFG, params, job, Q, K, V)
    after = layout(new_job(S, L + 1, 1), base=0x80000)      # clear of the error range
    Q2, K2, V2 = data_for(rng, after)
    n = "QKVO".index(stream)
    _, code, bad = fault_cases(job, res, params)[n]
    bench = Bench(dut)
    if kind == "slverr":
        await bench.start(seed=SEED + 20 + n, idle=0.2, latency=5, errors=[bad])
    else:
        model = AxiSlaveModel(data_width=CFG.axi_data_width, size=MEM, seed=SEED + n,
                              idle=0.2, latency=8, errors=[(*bad, DECERR)])
        await bench.start(seed=SEED + 20 + n, model=model)
    await fault_run(bench, job, Q, K, V, params, stream, code, bad, irq=n % 2 == 0)
    resp = {r for _, _, _, r in bench.mon.bad}
    assert resp == {SLVERR if kind == "slverr" else DECERR}, resp
    await bench.run_job(after, Q2, K2, V2, params_for(after.seq_len))


def _fault(kind, stream):
    name = f"test_fault_{kind}_{stream}"

    async def run(dut):
        await fault_test(dut, kind, stream)
    run.__doc__ = (f"{kind.upper()} on a {stream} {'write' if stream == 'O' else 'read'}: "
                   f"JOB_ERROR names the stream, done (irq when enabled), no O row after the "
                   f"fault, the bus quiet, the next job right.")
    run.__name__ = run.__qualname__ = name
    return name, cocotb.test(name=name)(run)


for _kind in ("slverr", "decerr"):
    for _stream in "QKVO":
        _name, _test = _fault(_kind, _stream)
        globals()[_name] = _test


@cocotb.test()
async def test_write_while_busy(dut):
    """While a job runs: JOB_STATUS running, STATUS busy; writes of a parameter, a descriptor
    register and CONTROL are refused (error flag, ERROR_ADDR, value unchanged); STATUS bit 1
    clears the flag; the job is unaffected."""
    bench = Bench(dut)
    await bench.start(seed=SEED + 8, latency=4)
    rng = np.random.default_rng(SEED + 8)
    S = sizes(4 * BC, 3 * BC)
    job = layout(new_job(S, L + 1, 2), base=0x600, gap=1)
    Q, K, V = data_for(rng, job)
    params = params_for(S)

    async def during(b):
        assert await b.rd(Reg.JOB_STATUS) == 0b10, "JOB_STATUS not running"
        assert await b.rd(Reg.STATUS) == 0b01, "STATUS not busy"
        for name, value in (("seq_len", S - 1), ("q_base", job.q_base + BUS), ("top_k", 1),
                            ("rass", 0), ("control", 1)):
            reg = register(name)
            before = await b.rd(reg.address)
            await b.wr(reg.address, value)
            assert await b.rd(Reg.STATUS) == 0b11, f"{name}: no error flag"
            assert await b.rd(Reg.ERROR_ADDR) == reg.address, name
            assert await b.rd(reg.address) == before, f"{name} changed while busy"
            await b.wr(Reg.STATUS, 0b10)
            assert await b.rd(Reg.STATUS) == 0b01, f"{name}: error flag not cleared"

    await bench.run_job(job, Q, K, V, params, during=during)


@cocotb.test()
async def test_long(dut):
    """One long sequence: ``SOFA_LONG_S`` keys (default 4 × block_size), ``SOFA_LONG_T``
    queries (default q_lanes), sparse, random read latency and light pauses."""
    S = int(os.environ.get("SOFA_LONG_S", str(4 * BC)))
    T = int(os.environ.get("SOFA_LONG_T", str(L)))
    bench = Bench(dut)
    await bench.start(seed=SEED + 9, idle=0.1, latency=4)
    rng = np.random.default_rng(SEED + 9)
    job = layout(new_job(S, T, 1), base=0x1000)
    assert o_region(job)[1] <= MEM
    Q, K, V = data_for(rng, job)
    await bench.run_job(job, Q, K, V, params_for(S), idle=0.1)
