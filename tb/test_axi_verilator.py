"""The AXI pieces on Verilator (cocotb, ``tb/cocotb/axi/cocotb_axi.py``) inside a small copy
engine, :class:`CopyBench`, driven against cocotbext-axi's AxiRam (random read latency, random
pauses on all five channels) or :class:`gen.rtlsim.axi.AxiSlaveModel` (IDs reordered and
interleaved, DECERR), under :class:`gen.rtlsim.axi.AxiProtocolChecker`. One Verilator build per
variant, reused while the Verilog is unchanged."""

import json

import pytest
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from gen.rtlsim.runner import run_cocotb
from hw.axi import (AxiReader, AxiWriter, axi4_master_members, axi4_read_members,
                    axi4_write_members, axil_slave_members, forward_members, read_cmd_layout,
                    read_data_layout, write_cmd_layout)
from hw.axil import AxiLiteRegisters
from spec.config import preset


#: Register map of the bench's AXI4-Lite port (word addresses).
SCRATCH = (0, 1, 2, 3, 6, 7)
STATUS, CONTROL = 4, 5
#: STATUS bits
RD_IDLE, WR_IDLE, RD_FAULT0, RD_FAULT1, WR_FAULT = 0, 1, 2, 3, 4
#: CONTROL bits: CLEAR and FLUSH are pulses, HALT a level (read back in STATUS bit 5)
CLEAR, FLUSH, HALT = 1, 2, 4

VARIANTS = {
    # 64-bit, 4 reads and writes in flight, bursts of 16
    "w64": dict(addr_width=32, data_width=64, id_width=2, max_burst=16, max_reads=4,
                max_writes=4, buffers=(32, 8)),
    # 512-bit (4 KB = 64 beats), one read and one write at a time, bursts of 8
    "w512": dict(addr_width=32, data_width=512, id_width=3, max_burst=8, max_reads=1,
                 max_writes=1, buffers=(16, 4)),
}


class CopyBench(wiring.Component):
    """A copy engine on one AXI4 master port, for testing the AXI pieces together.

    Reader client 0 (ARID 0, 4-bit tags) reads what :py:`rd_cmd_0` asks; its beats, XORed with
    their tag, go to the writer (AWID 2), which writes them where :py:`wr_cmd` says (each copy
    is a pair of commands of equal length). :py:`stall` holds that internal stream. Client 1
    (ARID 1) streams its beats out on :py:`peek`. An :class:`AxiLiteRegisters` port holds
    scratch registers, STATUS (idle and fault bits, read only) and CONTROL (clear, flush,
    halt)."""

    def __init__(self, *, addr_width, data_width, id_width, max_burst, max_reads, max_writes,
                 buffers):
        A, D, I = addr_width, data_width, id_width
        self.bus = dict(addr_width=A, data_width=D, id_width=I)
        self.reader = AxiReader(**self.bus, max_burst=max_burst, max_reads=max_reads,
                                clients=[(0, buffers[0], 4), (1, buffers[1], 0)])
        self.writer = AxiWriter(**self.bus, awid=2, max_burst=max_burst, max_writes=max_writes)
        self.lite = AxiLiteRegisters(addr_width=8, reg_addr_width=3)
        super().__init__({
            **axi4_master_members("m_axi", **self.bus),
            **axil_slave_members("s_axil", addr_width=8),
            "rd_cmd_0": In(stream.Signature(read_cmd_layout(A, D, 4))),
            "rd_cmd_1": In(stream.Signature(read_cmd_layout(A, D, 0))),
            "wr_cmd": In(stream.Signature(write_cmd_layout(A, D))),
            "peek": Out(stream.Signature(read_data_layout(D, 0))),
            "stall": In(1),
            "rd_idle": Out(1), "wr_idle": Out(1), "rd_fault": Out(2), "wr_fault": Out(1),
        })

    @property
    def timing(self):
        return {"ar_latency": self.reader.ar_latency, "r_latency": self.reader.r_latency,
                "aw_latency": self.writer.aw_latency, "w_latency": self.writer.w_latency,
                "cmd_latency": self.writer.cmd_latency, "ii": self.reader.ii}

    def elaborate(self, platform):
        m = Module()
        rd, wr, lite = self.reader, self.writer, self.lite
        m.submodules.reader, m.submodules.writer, m.submodules.lite = rd, wr, lite
        forward_members(m, self, rd, axi4_read_members("m_axi", **self.bus))
        forward_members(m, self, wr, axi4_write_members("m_axi", **self.bus))
        forward_members(m, self, lite, axil_slave_members("s_axil", addr_width=8))
        wiring.connect(m, wiring.flipped(self.rd_cmd_0), rd.cmd[0])
        wiring.connect(m, wiring.flipped(self.rd_cmd_1), rd.cmd[1])
        wiring.connect(m, wiring.flipped(self.wr_cmd), wr.cmd)
        wiring.connect(m, rd.data[1], wiring.flipped(self.peek))
        src = rd.data[0]
        m.d.comb += [
            wr.data.valid.eq(src.valid & ~self.stall),
            src.ready.eq(wr.data.ready & ~self.stall),
            wr.data.payload.data.eq(src.payload.data ^ src.payload.tag),
            wr.data.payload.strb.eq(-1),
        ]

        regs = [Signal(32, name=f"scratch{i}") for i in range(8)]
        halt, pulse = Signal(), Signal(2)
        status = Cat(rd.idle, wr.idle, rd.fault, wr.fault, halt)
        m.d.comb += [rd.clear.eq(pulse[0]), wr.clear.eq(pulse[0]), rd.flush.eq(pulse[1]),
                     wr.halt.eq(halt), self.rd_idle.eq(rd.idle), self.wr_idle.eq(wr.idle),
                     self.rd_fault.eq(rd.fault), self.wr_fault.eq(wr.fault)]
        m.d.sync += pulse.eq(0)
        with m.If(lite.reg_we):
            with m.Switch(lite.reg_addr):
                for i in SCRATCH:
                    with m.Case(i):
                        m.d.sync += regs[i].eq(lite.reg_wdata)
                with m.Case(CONTROL):
                    m.d.sync += [pulse.eq(lite.reg_wdata[:2]), halt.eq(lite.reg_wdata[2])]
        with m.Switch(lite.reg_addr):          # one cycle of read latency, like the core
            for i in SCRATCH:
                with m.Case(i):
                    m.d.sync += lite.reg_rdata.eq(regs[i])
            with m.Case(STATUS):
                m.d.sync += lite.reg_rdata.eq(status)
            with m.Case(CONTROL):
                m.d.sync += lite.reg_rdata.eq(halt << 2)
        return m


def run_bench(name, **kw):
    params = VARIANTS[name]
    timing = CopyBench(**params).timing
    env = {"SOFA_AXI_BENCH": json.dumps({**params, **timing}), **kw.pop("extra_env", {})}
    run_cocotb("axi_bench", lambda cfg: CopyBench(**params), preset("tiny"),
               "tb.cocotb.axi.cocotb_axi", name=name, extra_env=env, **kw)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_axi_verilator(name):
    run_bench(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_axi_verilator_long_stress(name):
    """Ten stress rounds with other seeds (make test-all)."""
    run_bench(name, testcase="test_stress",
              extra_env={"SOFA_STRESS_ROUNDS": 10, "SOFA_SEED": 7})
