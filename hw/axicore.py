"""SofaAxiCore: the memory-attached SOFA core (``memory = "axi"``), ``sofa_top`` of such configs.

Q, K and V live in memory behind an AXI4 master (``m_axi_*``); O goes back there. Software sets
the job descriptor and the run-time parameters in registers behind an AXI4-Lite slave
(``s_axil_*``, the register map of :mod:`spec.regmap`, byte address = 4 × word), writes 1 to
CONTROL, and waits for ``irq`` (or polls JOB_STATUS). The datapath is
:class:`hw.axiengine.AxiEngine`.

Job life cycle (:mod:`spec.job`):

* **start**: a write of CONTROL bit 0 while idle. The descriptor is checked (S, queries,
  heads, alignment, strides, address ranges, in the order of :func:`spec.job.check_job`, the
  ranges through one pipelined multiplier, :data:`spec.timing.JOB_CHECK_CYCLES` cycles); a
  failed check sets JOB_ERROR and done without a single bus access.
* **run**: the engine reads and writes; registers are refused while busy (error flag), the
  counters count.
* **end**: done (JOB_STATUS bit 0, and ``irq`` when IRQ_ENABLE) once every O row is written
  and acknowledged; JOB_ERROR 0.
* **fault**: an R beat or B response with SLVERR/DECERR: no new reads, no new writes (bursts
  already issued complete, so no O row is started after the fault), the reads in flight drain;
  then the engine is reset and done is raised with JOB_ERROR naming the stream. The core
  accepts the next job.
"""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.axi import axil_slave_members
from hw.axiengine import AxiEngine
from hw.axil import AxiLiteRegisters
from hw.counters import CounterBank, unit_increments
from hw.params import parameter_read_cases, parameter_signals, parameter_write_cases
from spec.config import ConfigError
from spec.job import JobError, TENSORS, bus_bytes, row_beats
from spec.timing import JOB_CHECK_CYCLES
from spec.regmap import (COUNTER_BASE, Reg, address_words, counter_names, register,
                         register_map)


__all__ = ["SofaAxiCore", "LITE_ADDR_WIDTH"]


#: Bits of the AXI4-Lite byte address (a 4 KB register window).
LITE_ADDR_WIDTH = 12


class SofaAxiCore(wiring.Component):
    """One SOFA core on an AXI4 memory (see the module docstring).

    Parameters
    ----------
    cfg : SofaConfig
        ``memory = "axi"``.

    Attributes
    ----------
    m_axi_* :
        AXI4 master: ARIDs 0 (Q), 1 (K), 2 (V), AWID 3; INCR bursts of at most
        ``axi_max_burst`` beats that never cross 4 KB.
    s_axil_* :
        AXI4-Lite slave, 32-bit data, :data:`LITE_ADDR_WIDTH`-bit byte addresses.
    irq : Out(1)
        Done and IRQ_ENABLE.
    busy : Out(1)
        A job is being checked or run.
    register_map, registers :
        As :class:`hw.top.SofaCore`'s, from :mod:`spec.regmap`.
    """

    def __init__(self, cfg):
        if cfg.memory != "axi":
            raise ConfigError(f"memory = {cfg.memory!r}: SofaAxiCore reads K/V over AXI4 "
                              f"(memory = 'axi')")
        self._cfg = cfg
        self.engine = AxiEngine(cfg)
        self._words = address_words(cfg)
        self._lite = AxiLiteRegisters(addr_width=LITE_ADDR_WIDTH,
                                      reg_addr_width=(self._words - 1).bit_length())
        axi = {n: mem for n, mem in self.engine.signature.members.items()
               if n.startswith("m_axi_")}
        super().__init__({
            **axi,
            **axil_slave_members("s_axil", addr_width=LITE_ADDR_WIDTH),
            "irq": Out(1),
            "busy": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def registers(self):
        return register_map(self._cfg)

    @property
    def register_map(self):
        return {r["name"]: r["address"] for r in self.registers}

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        eng = self.engine
        restart = Signal()                       # reset the engine after a fault
        m.submodules.engine = ResetInserter(restart)(eng)
        m.submodules.lite = lite = self._lite
        for name, member in self.signature.members.items():
            if name.startswith("m_axi_"):
                src, dst = (eng, self) if member.flow == Out else (self, eng)
                m.d.comb += getattr(dst, name).eq(getattr(src, name))
            elif name.startswith("s_axil_"):
                src, dst = (lite, self) if member.flow == Out else (self, lite)
                m.d.comb += getattr(dst, name).eq(getattr(src, name))

        # -- registers --------------------------------------------------------------------------
        params = parameter_signals(cfg)
        error, error_addr = Signal(), Signal(register("error_addr").value_width(cfg))
        done, job_error = Signal(), Signal(4)
        clear = Signal()
        start = Signal()
        m.d.comb += [self.irq.eq(done & params["irq_enable"])]
        wd, addr = lite.reg_wdata, lite.reg_addr

        def reject(a):
            m.d.sync += [error.eq(1), error_addr.eq(a)]

        with m.If(lite.reg_we):
            with m.Switch(addr):
                parameter_write_cases(m, cfg, params, wd, self.busy, reject)
                with m.Case(Reg.STATUS):
                    m.d.comb += clear.eq(wd[0])
                    with m.If(wd[1]):
                        m.d.sync += error.eq(0)
                with m.Case(Reg.CONTROL):
                    with m.If(self.busy):
                        reject(Reg.CONTROL)
                    with m.Else():
                        m.d.comb += start.eq(wd[0])
                with m.Case(Reg.JOB_STATUS):
                    with m.If(wd[0]):
                        m.d.sync += done.eq(0)
                with m.Default():
                    reject(addr)

        # -- the job ----------------------------------------------------------------------------
        job = eng.job
        for name, _ in job.shape():              # the descriptor is the registers' values
            m.d.comb += job[name].eq(params[name])
        BB = bus_bytes(cfg)
        low = (BB - 1).bit_length()
        rowb, orowb = row_beats(cfg) * BB, row_beats(cfg, out=True) * BB
        err_align = Cat(*(params[f"{t}_{p}"][:low] for t in TENSORS
                          for p in ("base", "stride", "head_stride"))).any() if low else 0
        err_stride = Cat(*(params[f"{t}_stride"] < (orowb if t == "o" else rowb)
                           for t in TENSORS)).any()
        # Ranges: base + (heads-1)·head_stride + (rows-1)·stride + row <= 2^axi_addr_width.
        # The registers hold still during the check, but a one-cycle multiply-add-compare is
        # the core's longest path: eight products issue one a cycle into a pipeline
        # (operands, a * b_lo and a * b_hi, their sum, the tensor's running sum, compare).
        NT = len(TENSORS)
        step = Signal(range(2 * NT + 5))
        mul_a, mul_b = Signal(32), Signal(24)
        op_a, op_b = Signal(32), Signal(24)
        p_lo, p_hi = Signal(44), Signal(44)
        prod = Signal(56)
        acc = Signal(max(cfg.axi_addr_width, 56) + 2)
        over = Signal()
        # per stage: valid, and the tags (tensor, second product of the tensor) up to the
        # accumulator; v[3]: the accumulator holds a tensor's whole sum
        v = [Signal(name=f"chk_v{i}") for i in range(4)]
        tk = [Signal(range(NT), name=f"chk_t{i}") for i in range(3)]
        sec = [Signal(name=f"chk_s{i}") for i in range(3)]
        issue = Signal()
        for k, t in enumerate(TENSORS):
            rows = params["queries"] if t in ("q", "o") else params["seq_len"]
            with m.If(step == 2 * k):
                m.d.comb += [mul_a.eq(params[f"{t}_head_stride"]), mul_b.eq(params["heads"] - 1)]
            with m.If(step == 2 * k + 1):
                m.d.comb += [mul_a.eq(params[f"{t}_stride"]), mul_b.eq(rows - 1)]
        top_addr = 1 << cfg.axi_addr_width
        # acc + row > top  <=>  acc > top - row (a constant per tensor)
        limit = Signal(range(top_addr + 1))
        base_k = Signal(64)
        with m.Switch(tk[2]):
            for k, t in enumerate(TENSORS):
                with m.Case(k):
                    m.d.comb += [base_k.eq(params[f"{t}_base"]),
                                 limit.eq(top_addr - (orowb if t == "o" else rowb))]
        m.d.sync += [
            v[0].eq(issue), tk[0].eq(step >> 1), sec[0].eq(step[0]),
            op_a.eq(mul_a), op_b.eq(mul_b),
            v[1].eq(v[0]), tk[1].eq(tk[0]), sec[1].eq(sec[0]),
            p_lo.eq(op_a * op_b[:12]), p_hi.eq(op_a * op_b[12:]),
            v[2].eq(v[1]), tk[2].eq(tk[1]), sec[2].eq(sec[1]),
            prod.eq(p_lo + (p_hi << 12)),
            v[3].eq(v[2] & sec[2]),
        ]
        with m.If(v[2]):
            m.d.sync += acc.eq(Mux(sec[2], acc, base_k) + prod)
        limit_3 = Signal.like(limit)
        m.d.sync += limit_3.eq(limit)

        assert JOB_CHECK_CYCLES == 1 + 2 * NT + 4 + 1    # start, issue, pipeline, decide
        with m.FSM(name="job"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [done.eq(0), job_error.eq(JobError.NONE), step.eq(0),
                                 over.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += [self.busy.eq(1), issue.eq(step < 2 * NT)]
                m.d.sync += step.eq(step + 1)
                with m.If(v[3] & (acc > limit_3)):
                    m.d.sync += over.eq(1)
                with m.If(step == 2 * NT + 4):
                    code = Mux((params["seq_len"] == 0) | (params["seq_len"] > cfg.max_seq_len),
                               JobError.SEQ_LEN,
                               Mux(params["queries"] == 0, JobError.QUERIES,
                                   Mux(params["heads"] == 0, JobError.HEADS,
                                       Mux(err_align, JobError.ALIGN,
                                           Mux(err_stride, JobError.STRIDE,
                                               Mux(over, JobError.RANGE, JobError.NONE))))))
                    m.d.sync += job_error.eq(code)
                    with m.If(code == JobError.NONE):
                        m.d.comb += eng.start.eq(1)
                        m.next = "RUN"
                    with m.Else():
                        m.d.sync += done.eq(1)
                        m.next = "IDLE"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                fault = Cat(eng.read_fault, eng.write_fault)
                with m.If(fault.any()):
                    m.d.sync += job_error.eq(Mux(fault[0], JobError.READ_Q,
                                                 Mux(fault[1], JobError.READ_K,
                                                     Mux(fault[2], JobError.READ_V,
                                                         JobError.WRITE_O))))
                    m.next = "STOP"
                with m.Elif(eng.done):
                    m.d.sync += done.eq(1)
                    m.next = "IDLE"
            with m.State("STOP"):
                m.d.comb += [self.busy.eq(1), eng.stop.eq(1)]
                with m.If(eng.idle):
                    m.next = "RESTART"
            with m.State("RESTART"):
                m.d.comb += [self.busy.eq(1), restart.eq(1)]
                m.d.sync += done.eq(1)
                m.next = "IDLE"

        # -- counters ---------------------------------------------------------------------------
        ev = eng.events
        events = {"cycles": 1, "busy_cycles": self.busy, "predict_cycles": ev.predict,
                  "starved_cycles": ev.starved, "sufa_stall_cycles": ev.sufa_stall,
                  "out_stall_cycles": ev.out_stall, "k_rows_predict": ev.k_rows_predict,
                  "kv_rows_fetch": ev.kv_rows_fetch}
        events |= {n: ev[n] for n in ("bytes_q", "bytes_k", "bytes_v", "bytes_o", "ar_stall",
                                       "r_wait", "aw_stall", "w_stall", "b_wait")}
        bank = None
        if cfg.counter_width:
            unit_incs, unit_top = unit_increments(m, cfg, eng.sufa, eng.sads, restart=restart)
            top = {n: 1 for n in events} | {"kv_rows_fetch": cfg.q_lanes} | unit_top
            top |= {n: BB for n in ("bytes_q", "bytes_k", "bytes_v", "bytes_o")}
            names = counter_names(cfg)
            m.submodules.counters = bank = CounterBank({n: top[n] for n in names},
                                                       width=cfg.counter_width)
            incs = dict(events) | unit_incs
            m.d.comb += [*(bank.inc[n].eq(incs[n]) for n in names), bank.clear.eq(clear),
                         bank.addr.eq(addr - COUNTER_BASE)]

        # -- reads: one cycle of latency --------------------------------------------------------
        r_addr = Signal.like(addr)
        m.d.sync += r_addr.eq(addr)
        rdata = lite.reg_rdata
        with m.Switch(r_addr):
            parameter_read_cases(m, cfg, params, rdata)
            with m.Case(Reg.STATUS):
                m.d.comb += rdata.eq(self.busy | (error << 1))
            with m.Case(Reg.ERROR_ADDR):
                m.d.comb += rdata.eq(error_addr)
            with m.Case(Reg.JOB_STATUS):
                m.d.comb += rdata.eq(done | (self.busy << 1))
            with m.Case(Reg.JOB_ERROR):
                m.d.comb += rdata.eq(job_error)
            if bank is not None:
                with m.Case(*(c for c in range(COUNTER_BASE, self._words)
                              if c < COUNTER_BASE + len(counter_names(cfg)))):
                    m.d.comb += rdata.eq(bank.data)
        return m
