"""Walk every register of the map (:mod:`spec.regmap`) through the RTL register port of
``sofa_top``: the on-chip core's ``reg_*`` port, or the memory-attached core's AXI4-Lite slave.

Every expectation comes from the map through :class:`tb.support.regmodel.RegisterModel`: the
reset value, the access rule (a ``rw`` register takes exactly its legal range, the ends
included; one past either end, a read-only register, a counter or an unused address is ignored
and sets the error flag and ERROR_ADDR), the ``_HI`` staging of wide registers, STATUS's clear
bits, CONTROL/JOB_STATUS/JOB_ERROR of the memory core (a start with a descriptor the map's
:func:`spec.job.check_job` refuses). Every address of the port is read back after every step
group. On AXI4-Lite an address beyond the window answers SLVERR; the memory-attached core's
master port stays quiet throughout (no job runs).

Environment: ``SOFA_SEED`` (the random-sequence test).
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from gen.rtlsim.core import CoreDriver
from gen.rtlsim.streams import load_sidecar
from spec.job import JobError, projects
from spec.regmap import WORD_BITS, Reg, register, registers
from tb.support.regmodel import RegisterModel, port_words

CFG, SIDECAR = load_sidecar()
AXI = CFG.memory == "axi"
SEED = int(os.environ.get("SOFA_SEED", "1"))
WORDS = port_words(CFG)
MASK = (1 << WORD_BITS) - 1
#: Cycles the memory core takes to check a descriptor (hw/axicore.py: 9), with margin.
CHECK_CYCLES = 24                 # > spec.timing.job_check_cycles (15, projecting 21)


class OnChipPort:
    """``reg_*`` through the product's core driver (:class:`gen.rtlsim.core.CoreDriver`)."""

    def __init__(self, dut):
        self.driver = CoreDriver(dut, CFG)

    async def reset(self):
        await self.driver.reset()

    async def write(self, addr, value):
        await self.driver.write_reg(addr, value)

    async def read(self, addr):
        return await self.driver.read_reg(addr)


class AxiLitePort:
    """cocotbext-axi's AxiLiteMaster on ``s_axil_*``: OKAY inside the window, SLVERR beyond."""

    def __init__(self, dut):
        self.dut = dut
        self.lite = None
        self.master_valid = 0

    async def reset(self):
        from gen.rtlsim.axi import axil_master
        dut = self.dut
        dut.rst.value = 1
        for name in ("s_axil_awvalid", "s_axil_wvalid", "s_axil_arvalid", "s_axil_bready",
                     "s_axil_rready", "m_axi_awready", "m_axi_wready", "m_axi_bvalid",
                     "m_axi_arready", "m_axi_rvalid"):
            getattr(dut, name).value = 0
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        self.lite = axil_master(dut, seed=SEED)
        cocotb.start_soon(self._watch_master())

    async def _watch_master(self):
        """Counts cycles with a VALID of the AXI4 master (there must be none)."""
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            if int(dut.m_axi_arvalid.value) or int(dut.m_axi_awvalid.value) or \
                    int(dut.m_axi_wvalid.value):
                self.master_valid += 1

    async def write(self, addr, value):
        from cocotbext.axi import AxiResp
        resp = await self.lite.write(4 * addr, value.to_bytes(4, "little"))
        want = AxiResp.OKAY if addr < WORDS else AxiResp.SLVERR
        assert resp.resp == want, f"write of {value:#x} to {addr}: {resp.resp}, not {want}"

    async def read(self, addr):
        from cocotbext.axi import AxiResp
        resp = await self.lite.read(4 * addr, 4)
        want = AxiResp.OKAY if addr < WORDS else AxiResp.SLVERR
        assert resp.resp == want, f"read of {addr}: {resp.resp}, not {want}"
        return int.from_bytes(resp.data, "little")


class Walk:
    """The port and the model side by side; :meth:`check_all` reads every address."""

    def __init__(self, dut):
        self.dut = dut
        self.port = AxiLitePort(dut) if AXI else OnChipPort(dut)
        self.model = RegisterModel(CFG)
        self.steps = 0

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        await self.port.reset()

    async def write(self, addr, value):
        await self.port.write(addr, value)
        self.model.write(addr, value)
        self.steps += 1

    async def read(self, addr, what=""):
        got = await self.port.read(addr)
        problem = self.model.expect(addr, got)
        assert problem is None, f"{what}: {problem}" if what else problem
        return got

    async def check_all(self, what):
        for addr in range(WORDS):
            await self.read(addr, what)

    async def rejected(self, addr, value, what):
        """A write the map forbids: ignored, error flag and ERROR_ADDR; then the flag is
        cleared again."""
        before = self.model.read(addr)
        await self.write(addr, value)
        assert self.model.error == 1 and self.model.error_addr == addr, what
        if before is not None and addr != Reg.ERROR_ADDR:
            assert self.model.read(addr) == before, what
        assert await self.read(Reg.STATUS, what) & 2, f"{what}: no error flag"
        assert await self.read(Reg.ERROR_ADDR, what) == addr, f"{what}: ERROR_ADDR"
        await self.read(addr, what)
        await self.write(Reg.STATUS, 2)
        assert await self.read(Reg.STATUS, what) == 0, f"{what}: the flag did not clear"

    async def accepted(self, reg, value, what):
        """A legal value of ``rw`` register ``reg``: staged high bits first where it is wider
        than the port; reads back as its low word, no error."""
        if reg.high and reg.value_width(CFG) > WORD_BITS:
            await self.write(register(reg.high).address, value >> WORD_BITS)
        await self.write(reg.address, value & MASK)
        assert self.model.values[reg.address] == value, what
        assert self.model.error == 0, what
        await self.read(reg.address, what)
        assert await self.read(Reg.STATUS, what) == 0, f"{what}: error flag"


@cocotb.test()
async def test_reset_values(dut):
    """After reset every address reads what the map says (registers' reset values, 0 at
    unused addresses and counters, except ``cycles``)."""
    walk = Walk(dut)
    await walk.start()
    await walk.check_all("after reset")
    for r in registers(CFG):
        assert walk.model.read(r.address) == r.reset(CFG) & MASK or r.access != "rw"


@cocotb.test()
async def test_walk(dut):
    """Each register by its access rule, then every address read back."""
    walk = Walk(dut)
    await walk.start()
    for r in registers(CFG):
        what = f"{r.name} ({r.access}, address {r.address})"
        if r.access == "rw":
            lo, hi = r.legal(CFG)
            for v in sorted({lo, hi, (lo + hi) // 2, r.reset(CFG)}):
                await walk.accepted(r, v, f"{what} = {v}")
            wide = r.high and r.value_width(CFG) > WORD_BITS
            if hi + 1 <= MASK or wide:
                value = hi + 1
                if wide:
                    hi_reg = register(r.high)
                    if (value >> WORD_BITS) > hi_reg.legal(CFG)[1]:
                        value = None      # beyond the stage: its own walk rejects it
                    else:
                        await walk.write(hi_reg.address, value >> WORD_BITS)
                if value is not None:
                    await walk.rejected(r.address, value & MASK, f"{what} = {hi + 1}")
            if lo > 0:
                await walk.rejected(r.address, lo - 1, f"{what} = {lo - 1}")
            await walk.accepted(r, r.reset(CFG), f"{what} back to its reset value")
        elif r.access == "ro":
            await walk.rejected(r.address, 1, f"{what}: a write")
        elif r.access == "status":
            await walk.write(r.address, 1)                  # clear the counters: no error
            assert await walk.read(Reg.STATUS, what) == 0
        elif r.access == "control":
            await walk.write(r.address, 0)                  # bit 0 clear: nothing starts
            assert await walk.read(Reg.JOB_STATUS, what) == 0
        elif r.access == "job_status":
            await walk.write(r.address, 1)
            assert await walk.read(Reg.JOB_STATUS, what) == 0
        else:
            raise AssertionError(f"{what}: the walk has no rule for access {r.access!r}")
    names = {r.address for r in registers(CFG)}
    for addr in range(WORDS):
        if addr not in names:
            await walk.rejected(addr, 0, f"address {addr} (not a writable register)")
    await walk.check_all("after the walk")
    if AXI:
        await walk.port.write(WORDS, 0)                     # SLVERR, nothing written
        await walk.port.read(WORDS + 3)
        await walk.check_all("after accesses beyond the window")
        assert walk.port.master_valid == 0, "the AXI4 master moved"
    dut._log.info(f"{walk.steps} writes over {WORDS} addresses")


@cocotb.test(skip=not AXI)
async def test_refused_jobs(dut):
    """CONTROL with a descriptor the map refuses: done at once, JOB_ERROR is
    :func:`spec.job.check_job`'s code, the master never moves; JOB_STATUS clears done."""
    walk = Walk(dut)
    await walk.start()
    m = walk.model
    cases = [("seq_len", 0, JobError.SEQ_LEN), ("queries", 0, JobError.QUERIES),
             ("heads", 0, JobError.HEADS),
             ("x_base" if projects(CFG) else "k_base", 4, JobError.ALIGN),
             ("seq_len", 3, JobError.STRIDE)]                # strides 0 after reset
    for name, value, code in cases:
        await walk.accepted(register(name), value, f"{name} = {value}")
        await walk.write(Reg.CONTROL, 1)
        assert m.job_error == code, (name, value, m.job_error, code)
        await ClockCycles(dut.clk, CHECK_CYCLES)
        await walk.read(Reg.JOB_STATUS, f"refused job ({name} = {value})")
        await walk.read(Reg.JOB_ERROR, f"refused job ({name} = {value})")
        assert int(dut.irq.value) == 0, "irq without IRQ_ENABLE"
        await walk.write(Reg.JOB_STATUS, 1)
        await walk.read(Reg.JOB_STATUS, "done cleared")
        await walk.accepted(register(name), register(name).reset(CFG), f"{name} reset")
    await walk.accepted(register("irq_enable"), 1, "irq_enable")
    await walk.write(Reg.CONTROL, 1)
    await ClockCycles(dut.clk, CHECK_CYCLES)
    assert int(dut.irq.value) == 1, "irq does not follow done"
    await walk.write(Reg.JOB_STATUS, 1)
    await ClockCycles(dut.clk, 2)
    assert int(dut.irq.value) == 0, "irq stays after done was cleared"
    await walk.check_all("after the refused jobs")
    assert walk.port.master_valid == 0, "the AXI4 master moved"


@cocotb.test()
async def test_random_sequence(dut):
    """Random writes (legal ends, one past them, anything) and reads at random addresses of
    the port, the model deciding every read."""
    walk = Walk(dut)
    await walk.start()
    rng = random.Random(SEED)
    values = {0, 1, 2, MASK, 1 << 31}
    for r in registers(CFG):
        if r.legal:
            lo, hi = r.legal(CFG)
            values |= {(lo - 1) & MASK, lo & MASK, hi & MASK, (hi + 1) & MASK,
                       hi >> WORD_BITS, (hi >> WORD_BITS) + 1}
    values = sorted(values)
    addrs = [r.address for r in registers(CFG) if r.name != "control"]
    for _ in range(400):
        addr = rng.choice(addrs) if rng.random() < 0.8 else rng.randrange(WORDS)
        if AXI and addr == Reg.CONTROL:
            continue                 # a legal descriptor would start a job with no memory
        if rng.random() < 0.6:
            value = rng.choice(values) if rng.random() < 0.7 else rng.getrandbits(WORD_BITS)
            await walk.write(addr, value)
        else:
            await walk.read(addr, "random sequence")
    await walk.check_all("after the random sequence")
