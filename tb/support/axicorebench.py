"""The memory-attached core's cocotb bench on Verilator, shared by the testbenches of
``tb/cocotb/axicore`` (given K/V, ``cocotb_axicore``; on-demand K/V, ``cocotb_axiproject``):
the config from the build's sidecar, cocotbext-axi's AxiRam (random read latency, random pauses
on all five channels) or :class:`gen.rtlsim.axi.AxiSlaveModel` where DECERR is needed,
AxiLiteMaster on the registers, the recording protocol checker (:class:`Recorder`) and the job
flow (:class:`Bench`). Imported only inside a cocotb simulation (it reads the sidecar).

Environment: ``SOFA_SEED``; ``SOFA_SMALL=1`` for a large config: shorter sequences.
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, with_timeout

from gen.rtlsim.axi import (AxiProtocolChecker, attach_checker, axi_ram, axil_master,
                            drive_slave_model, quiet_cocotbext, set_pauses)
from gen.rtlsim.streams import load_sidecar
from sim.jobs import (core_parts, fetch_schedule, golden_job, job_counters, memory_image,
                      read_outputs)
from sim.workloads import structured
from spec.config import RunParams
from spec.job import (OUT_ELEM_BYTES, TENSORS, JobDescriptor, JobError, bus_bytes, k_packed,
                      out_row_bytes, row_beats, row_bytes)
from spec.regmap import Reg, counters, job_writes, parameter_writes


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
