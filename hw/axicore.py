"""SofaAxiCore: the memory-attached SOFA core (``memory = "axi"``), ``sofa_top`` of such configs.

Q, K and V live in memory behind an AXI4 master (``m_axi_*``); O goes back there. Software sets
the job descriptor and the run-time parameters in registers behind an AXI4-Lite slave
(``s_axil_*``, the register map of :mod:`spec.regmap`, byte address = 4 × word), writes 1 to
CONTROL, and waits for ``irq`` (or polls JOB_STATUS). The datapath is
:class:`hw.axiengine.AxiEngine`.

Job life cycle (:mod:`spec.job`):

* **start**: a write of CONTROL bit 0 while idle. The descriptor is checked (S, queries,
  heads, alignment, strides, address ranges, in the order of :func:`spec.job.check_job`, the
  ranges through one pipelined multiplier, :func:`spec.timing.job_check_cycles` cycles; with
  ``kv_source = "project"`` X and the weights take the places of K and V); a failed check
  sets JOB_ERROR and done without a single bus access.
* **run**: the engine reads and writes; registers are refused while busy (error flag), the
  counters count.
* **end**: done (JOB_STATUS bit 0, and ``irq`` when IRQ_ENABLE) once every O row is written
  and acknowledged; JOB_ERROR 0.
* **fault**: an R beat or B response with SLVERR/DECERR: no new reads, no new writes (bursts
  already issued complete, so no O row is started after the fault), the reads in flight drain;
  then the engine is reset and done is raised with JOB_ERROR naming the stream (projecting:
  READ_X, READ_W for the K and V read streams). The core accepts the next job.

**Several cores** (``cores > 1``): ``cores`` engines share the AXI4 master through
:class:`hw.axiarb.AxiArbiter` (the engine's index above its IDs). After the check, a split
step (:func:`spec.timing.job_split_cycles`) gives each engine its sub-job of
:func:`spec.job.split_job`: six products (heads a group × each head stride, queries a chunk ×
the Q and O strides) through one pipelined multiplier, then one engine a cycle. The engines
with queries start together; the job is done when all of them are. A fault of any engine
stops them all (JOB_ERROR names the lowest faulting engine's stream, each engine's block its
own). The counters from COUNTER_BASE are totals; each engine's are in its block
(:data:`spec.regmap.CORE_BASE`).
"""

from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Instance, Module,
                          Mux, ResetSignal, Signal)
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.axi import axil_slave_members
from hw.axiarb import AxiArbiter
from hw.axiengine import AxiEngine
from hw.axil import AxiLiteRegisters
from hw.counters import CounterBank, unit_increments
from hw.params import parameter_read_cases, parameter_signals, parameter_write_cases
from spec.config import ConfigError
from spec.job import (JobError, TENSORS, WEIGHTS, bus_bytes, k_packed, projects, row_beats,
                      row_bytes, weight_beats)
from spec.timing import JOB_SPLIT_PRODUCTS, job_check_cycles, job_split_cycles
from spec.regmap import (COUNTER_BASE, CORE_BASE, CORE_COUNTER_OFFSET, CORE_REGS, CORE_WORDS,
                         PROJECT_COUNTER_BASE,
                         Reg, address_words, counter_names, lite_addr_width, register, registers,
                         register_map)


__all__ = ["SofaAxiCore", "LITE_ADDR_WIDTH"]


#: Bits of the AXI4-Lite byte address of one core (a 4 KB register window;
#: :func:`spec.regmap.lite_addr_width` for several cores).
LITE_ADDR_WIDTH = 12


class SofaAxiCore(wiring.Component):
    """One SOFA core on an AXI4 memory (see the module docstring).

    Parameters
    ----------
    cfg : SofaConfig
        ``memory = "axi"``.
    global_reset : bool
        Distribute the engines' reset on an ECP5 global network (a ``DCCA``; the memory
        board's flows set it; the Amaranth simulator cannot run it).

    Attributes
    ----------
    m_axi_* :
        AXI4 master: ARIDs 0 (Q), 1 (K), 2 (V), AWID 3 (with several cores, the engine's
        index above them); INCR bursts of at most ``axi_max_burst`` beats that never cross
        4 KB.
    s_axil_* :
        AXI4-Lite slave, 32-bit data, :func:`spec.regmap.lite_addr_width` byte-address bits
        (:data:`LITE_ADDR_WIDTH` with one core).
    engines : tuple of AxiEngine
    irq : Out(1)
        Done and IRQ_ENABLE.
    busy : Out(1)
        A job is being checked or run.
    register_map, registers :
        As :class:`hw.top.SofaCore`'s, from :mod:`spec.regmap`.
    """

    def __init__(self, cfg, *, global_reset=False):
        if cfg.memory != "axi":
            raise ConfigError(f"memory = {cfg.memory!r}: SofaAxiCore reads K/V over AXI4 "
                              f"(memory = 'axi')")
        self._cfg, self._global_reset = cfg, bool(global_reset)
        N = cfg.cores
        self._core_bits = (N - 1).bit_length()
        self.engines = tuple(AxiEngine(cfg, id_width=cfg.axi_id_width - self._core_bits)
                             for _ in range(N))
        self._words = address_words(cfg)
        self._lite_width = lite_addr_width(cfg)
        self._lite = AxiLiteRegisters(addr_width=self._lite_width,
                                      reg_addr_width=(self._words - 1).bit_length(),
                                      rdata_latency=2, write_lead=True)
        if N > 1:
            self._arbiter = AxiArbiter(masters=N, addr_width=cfg.axi_addr_width,
                                       data_width=cfg.axi_data_width,
                                       id_width=cfg.axi_id_width - self._core_bits,
                                       max_writes=cfg.axi_max_reads, share_id=1,
                                       max_reads=cfg.axi_max_reads)
            outer = self._arbiter
        else:
            outer = self.engines[0]
        axi = {n: mem for n, mem in outer.signature.members.items() if n.startswith("m_axi_")}
        super().__init__({
            **axi,
            **axil_slave_members("s_axil", addr_width=self._lite_width),
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
        N = cfg.cores
        engines = self.engines
        # The engines run in a domain of their own on the same clock, reset by one flip-flop:
        # the core's reset a cycle late, or RESTART after a fault. The net reaches most of
        # the engines' registers; a gate of the two resets in front of it, or plain routing
        # from it, was the memory board's longest path: on ECP5 it can take a global network.
        restart = Signal()
        entering_restart = Signal()
        engine_reset = Signal(init=1, reset_less=True)
        m.d.sync += engine_reset.eq(ResetSignal() | entering_restart)
        m.domains.engine = engine_domain = ClockDomain("engine", local=True)
        m.d.comb += engine_domain.clk.eq(ClockSignal())
        if self._global_reset:
            m.submodules.engine_reset_buffer = Instance(
                "DCCA", i_CLKI=engine_reset, i_CE=Const(1), o_CLKO=engine_domain.rst)
        else:
            m.d.comb += engine_domain.rst.eq(engine_reset)
        in_domain = DomainRenamer({"sync": "engine"})
        if N == 1:
            m.submodules.engine = in_domain(engines[0])
            outer = engines[0]
        else:
            for i, e in enumerate(engines):
                m.submodules[f"engine{i}"] = in_domain(e)
            m.submodules.arbiter = arb = self._arbiter
            for i, e in enumerate(engines):
                for name, member in e.signature.members.items():
                    if name.startswith("m_axi_"):
                        port = getattr(arb, f"s{i}_axi_{name[6:]}")
                        if member.flow == Out:
                            m.d.comb += port.eq(getattr(e, name))
                        else:
                            m.d.comb += getattr(e, name).eq(port)
            outer = arb
        m.submodules.lite = lite = self._lite
        for name, member in self.signature.members.items():
            if name.startswith("m_axi_"):
                src, dst = (outer, self) if member.flow == Out else (self, outer)
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

        # Writes: the AXI4-Lite slave shows the address a cycle ahead of reg_we, and the
        # address is decoded into a flip-flop per register (the decode into the enables of
        # registers across the die was a longest path of the memory board).
        writable = [r.address for r in registers(cfg) if r.access == "rw"] + \
            [Reg.STATUS, Reg.CONTROL, Reg.JOB_STATUS]
        hits = {a: Signal(name=f"w_hit{a}") for a in writable}
        unknown = Signal()
        m.d.sync += [*(h.eq(addr == a) for a, h in hits.items()),
                     unknown.eq(~Cat(addr == a for a in writable).any())]
        with m.If(lite.reg_we):
            parameter_write_cases(m, cfg, params, wd, self.busy, reject, hit=hits.__getitem__)
            with m.If(hits[Reg.STATUS]):
                m.d.comb += clear.eq(wd[0])
                with m.If(wd[1]):
                    m.d.sync += error.eq(0)
            with m.If(hits[Reg.CONTROL]):
                with m.If(self.busy):
                    reject(Reg.CONTROL)
                with m.Else():
                    m.d.comb += start.eq(wd[0])
            with m.If(hits[Reg.JOB_STATUS]):
                with m.If(wd[0]):
                    m.d.sync += done.eq(0)
            with m.If(unknown):
                reject(addr)

        # -- the job ----------------------------------------------------------------------------
        if N == 1:
            job = engines[0].job
            for name, _ in job.shape():          # the descriptor is the registers' values
                m.d.comb += job[name].eq(params[name])
        BB = bus_bytes(cfg)
        low = (BB - 1).bit_length()
        rowb, orowb = row_beats(cfg) * BB, row_beats(cfg, out=True) * BB
        # packed K (predict_keys > 1): its stride is exactly one row, not bus-aligned
        packed = k_packed(cfg)
        proj = projects(cfg)
        tensors = ("q", "x", "o") if proj else TENSORS
        aligned = [params[f"{t}_{p}"] for t in tensors for p in ("base", "stride", "head_stride")
                   if not (packed and t == "k" and p == "stride")]
        if proj:
            aligned += [params[f"{w}_base"] for w in WEIGHTS] + [params["w_head_stride"]]
        err_align = Cat(*(a[:low] for a in aligned)).any() if low else 0
        row_of = {"o": orowb, "x": cfg.d_model}
        err_stride = Cat(*(params[f"{t}_stride"] < row_of.get(t, rowb)
                           for t in tensors if not (packed and t == "k"))).any()
        if packed:
            err_stride = err_stride | (params["k_stride"] != row_bytes(cfg))
        # Ranges: base + (heads-1)·head_stride + (rows-1)·stride + row <= 2^axi_addr_width.
        # The registers hold still during the check, but a one-cycle multiply-add-compare is
        # the core's longest path: eight products issue one a cycle into a pipeline
        # (operands, a * b_lo and a * b_hi, their sum, the tensor's running sum, compare).
        # (base, head stride, row stride, rows, bytes of the last row) per checked tensor
        checks = [(params[f"{t}_base"], params[f"{t}_head_stride"], params[f"{t}_stride"],
                   params["queries"] if t in ("q", "o") else params["seq_len"],
                   orowb if t == "o" else cfg.d_model if t == "x" else
                   row_bytes(cfg) if packed and t == "k" else rowb) for t in tensors]
        if proj:
            checks += [(params[f"{w}_base"], params["w_head_stride"], 0, 1,
                        weight_beats(cfg, w) * BB) for w in WEIGHTS]
        NT = len(checks)
        step = Signal(range(2 * NT + 6))
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
        for k, (_, head_stride, stride, rows, _) in enumerate(checks):
            with m.If(step == 2 * k):
                m.d.comb += [mul_a.eq(head_stride), mul_b.eq(params["heads"] - 1)]
            with m.If(step == 2 * k + 1):
                m.d.comb += [mul_a.eq(stride), mul_b.eq(rows - 1)]
        top_addr = 1 << cfg.axi_addr_width
        # acc + row > top  <=>  acc > top - row (a constant per tensor)
        limit = Signal(range(top_addr + 1))
        base_k = Signal(64)
        with m.Switch(tk[2]):
            for k, (t_base, _, _, _, size) in enumerate(checks):
                with m.Case(k):
                    m.d.comb += [base_k.eq(t_base), limit.eq(top_addr - size)]
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

        # -- several cores: the split (spec.job.split_job) -------------------------------------
        run_go = Signal()                        # the decision to start the engines
        run_start = Signal()                     # start them (that have work), a cycle later
        m.d.sync += run_start.eq(run_go)
        split_go, split_done = Signal(), Signal()
        if N > 1:
            work, subs, follow = self._split(m, cfg, params, split_go, split_done)
            for i, e in enumerate(engines):
                m.d.comb += e.start.eq(run_start & work[i])
        else:
            m.d.comb += [engines[0].start.eq(run_start), split_done.eq(1)]
        faults = [Cat(e.read_fault, e.write_fault) for e in engines]
        any_fault = Cat(f.any() for f in faults).any()
        all_idle = Cat(e.idle for e in engines).all()

        codes = (JobError.READ_X, JobError.READ_W) if proj else (JobError.READ_K,
                                                                 JobError.READ_V)

        def fault_code(f):
            return Mux(f[0], JobError.READ_Q, Mux(f[1], codes[0],
                                                  Mux(f[2], codes[1], JobError.WRITE_O)))

        first_code = Signal(4)
        for f in reversed(faults):               # the lowest faulting engine names the error
            with m.If(f.any()):
                m.d.comb += first_code.eq(fault_code(f))

        # -- per-engine state (several cores) --------------------------------------------------
        core_state = []                          # (running, finished, error) of each engine
        if N > 1:
            for i, e in enumerate(engines):
                fin, err = Signal(name=f"core{i}_fin"), Signal(4, name=f"core{i}_err")
                with m.If(start & ~self.busy):
                    m.d.sync += [fin.eq(0), err.eq(0)]
                with m.If(run_start):
                    m.d.sync += fin.eq(~work[i])
                with m.If(e.done):
                    m.d.sync += fin.eq(1)
                with m.If(faults[i].any() & (err == 0)):
                    m.d.sync += err.eq(fault_code(faults[i]))
                act = Signal(name=f"core{i}_active")
                m.d.sync += act.eq(Mux(run_start, work[i], act & ~e.done & ~restart))
                core_state.append((act, fin, err))

        # start, issue, pipeline, the code registered, decide
        assert job_check_cycles(cfg) == 1 + 2 * NT + 4 + 2
        code_r = Signal(4)
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
                # the code from registers a cycle ahead of the decision (the check's result
                # into the engines' start was the memory board's longest path)
                m.d.sync += code_r.eq(
                    Mux((params["seq_len"] == 0) | (params["seq_len"] > cfg.max_seq_len),
                        JobError.SEQ_LEN,
                        Mux(params["queries"] == 0, JobError.QUERIES,
                            Mux(params["heads"] == 0, JobError.HEADS,
                                Mux(err_align, JobError.ALIGN,
                                    Mux(err_stride, JobError.STRIDE,
                                        Mux(over, JobError.RANGE,
                                            JobError.NONE)))))))
                with m.If(step == 2 * NT + 5):
                    m.d.sync += job_error.eq(code_r)
                    with m.If(code_r == JobError.NONE):
                        if N == 1:
                            m.d.comb += run_go.eq(1)
                            m.next = "RUN"
                        else:
                            m.d.comb += split_go.eq(1)
                            m.next = "SPLIT"
                    with m.Else():
                        m.d.sync += done.eq(1)
                        m.next = "IDLE"
            if N > 1:
                with m.State("SPLIT"):
                    m.d.comb += self.busy.eq(1)
                    with m.If(split_done):
                        m.d.comb += run_go.eq(1)
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(any_fault):
                    m.d.sync += job_error.eq(first_code)
                    m.next = "STOP"
                with m.Elif(Cat(fin for _, fin, _ in core_state).all() if N > 1
                            else engines[0].done):
                    m.d.sync += done.eq(1)
                    m.next = "IDLE"
            with m.State("STOP"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [e.stop.eq(1) for e in engines]
                if N > 1:
                    m.d.comb += arb.solo.eq(1)          # no partner waits for a stopped one
                with m.If(all_idle):
                    m.d.comb += entering_restart.eq(1)
                    m.d.sync += restart.eq(1)
                    m.next = "RESTART"
            with m.State("RESTART"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += restart.eq(0)
                m.d.sync += done.eq(1)
                m.next = "IDLE"

        # -- counters ---------------------------------------------------------------------------
        names = counter_names(cfg)
        banks = []

        def events_of(e, busy):
            ev = e.events
            out = {"cycles": 1, "busy_cycles": busy, "predict_cycles": ev.predict,
                   "starved_cycles": ev.starved, "sufa_stall_cycles": ev.sufa_stall,
                   "out_stall_cycles": ev.out_stall, "k_rows_predict": ev.k_rows_predict,
                   "kv_rows_fetch": ev.kv_rows_fetch}
            out |= {n: ev[n] for n in ("bytes_q", "bytes_k", "bytes_v", "bytes_o", "ar_stall",
                                        "r_wait", "aw_stall", "w_stall", "b_wait")}
            if proj:
                out |= {"rows_projected": ev.rows_projected, "bytes_x": ev.bytes_x,
                        "bytes_w": ev.bytes_w,
                        "projection_macs": Mux(ev.rows_projected, 2 * cfg.d * cfg.d_model, 0)}
            return out

        bank = None
        if cfg.counter_width:
            tops, incs = [], []
            for i, e in enumerate(engines):
                busy_i = self.busy if N == 1 else core_state[i][0]
                unit_incs, unit_top = unit_increments(m, cfg, e.sufa, e.sads, restart=restart)
                top = {n: 1 for n in events_of(e, 1)} | {"kv_rows_fetch": cfg.q_lanes,
                                                          "k_rows_predict": cfg.predict_keys} | \
                    unit_top
                top |= {n: BB for n in ("bytes_q", "bytes_k", "bytes_v", "bytes_o", "bytes_x",
                                        "bytes_w")}
                top |= {"projection_macs": 2 * cfg.d * cfg.d_model}
                tops.append(top)
                incs.append(events_of(e, busy_i) | unit_incs)
            if N == 1:
                m.submodules.counters = bank = CounterBank({n: tops[0][n] for n in names},
                                                           width=cfg.counter_width,
                                                           registered=True)
                total = incs[0]
            else:
                for i in range(N):
                    incs[i]["bytes_k_shared"] = Mux(arb.shared[i], BB, 0)
                    tops[i]["bytes_k_shared"] = BB
                # totals: cycles and busy once, the rest summed over the engines
                own = {"cycles": 1, "busy_cycles": 1}
                m.submodules.counters = bank = CounterBank(
                    {n: own.get(n, N * tops[0][n]) for n in names}, width=cfg.counter_width,
                    registered=True)
                total = {n: sum(inc[n] for inc in incs) for n in names} | \
                    {"cycles": 1, "busy_cycles": self.busy}
                for i in range(N):
                    b = CounterBank({n: tops[i][n] for n in names}, width=cfg.counter_width,
                                    registered=True)
                    m.submodules[f"counters{i}"] = b
                    banks.append(b)
                    m.d.comb += [*(b.inc[n].eq(incs[i][n]) for n in names), b.clear.eq(clear),
                                 b.addr.eq(addr[:6] - CORE_COUNTER_OFFSET)]
            # projecting, the last counters sit apart (spec.regmap.PROJECT_COUNTER_BASE)
            n_low = len(names) - 4 if proj else len(names)
            bank_addr = Mux(addr >= PROJECT_COUNTER_BASE, addr - PROJECT_COUNTER_BASE + n_low,
                            addr - COUNTER_BASE) if proj else addr - COUNTER_BASE
            m.d.comb += [*(bank.inc[n].eq(total[n]) for n in names), bank.clear.eq(clear),
                         bank.addr.eq(bank_addr)]

        # -- reads: two cycles of latency; the mux over every register is registered, and the
        # counter banks register their sums (both were the memory board's longest paths) ----
        r_addr = Signal.like(addr)
        rdata, rdata_q = Signal(32), Signal(32)
        all_banks = ([bank] if bank is not None else []) + banks
        from_bank = Signal(range(len(all_banks) + 1))        # 0: rdata_q, k: all_banks[k - 1]
        from_bank_q = Signal.like(from_bank)
        m.d.sync += [r_addr.eq(addr), rdata_q.eq(rdata), from_bank_q.eq(from_bank)]
        m.d.comb += lite.reg_rdata.eq(rdata_q)
        for k, b in enumerate(all_banks):
            with m.If(from_bank_q == k + 1):
                m.d.comb += lite.reg_rdata.eq(b.data)
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
                with m.Case(*(c for c in range(COUNTER_BASE, COUNTER_BASE + n_low)),
                            *(range(PROJECT_COUNTER_BASE, PROJECT_COUNTER_BASE + 4)
                              if proj else ())):
                    m.d.comb += from_bank.eq(1)
            if N > 1:
                offs = {name: off for name, off, _, _ in CORE_REGS}
                for i in range(N):
                    base = CORE_BASE + i * CORE_WORDS
                    act, fin, err = core_state[i]
                    sub = subs[i]
                    values = {"status": Cat(act, fin, ~work[i], follow[i]), "error": err,
                              "heads": sub["heads"], "queries": sub["queries"],
                              "first_head": sub["first_head"],
                              "first_query": sub["first_query"]}
                    for name, value in values.items():
                        with m.Case(base + offs[name]):
                            m.d.comb += rdata.eq(value)
                    if banks:
                        with m.Case(*range(base + CORE_COUNTER_OFFSET,
                                           base + CORE_COUNTER_OFFSET + len(names))):
                            m.d.comb += from_bank.eq(2 + i)
        return m

    def _split(self, m, cfg, params, go, finished):
        """The sub-job of every engine (:func:`spec.job.split_job`), computed from a pulse on
        ``go``; ``finished`` rises when every engine's descriptor is set. Returns the engines'
        "has queries" bits, their sub-job registers and their K-follower bits."""
        N, cb = cfg.cores, self._core_bits
        aw = cfg.axi_addr_width
        H, Q = params["heads"], params["queries"]
        # G = min(N, lowest set bit of H) head groups of P = N / G cores: log2 G = ctz(H) ≤ cb
        g_log = Signal(range(cb + 1))
        with m.If(~params["split_queries"]):
            for j in range(cb + 1):             # the last true wins: the largest j
                with m.If(H[:j] == 0):
                    m.d.comb += g_log.eq(j)
        p_log = Signal(range(cb + 1))
        m.d.comb += p_log.eq(cb - g_log)
        hc = Signal(16)                          # heads a group
        chunk = Signal(25)                       # queries a core: ceil(Q / P)
        m.d.sync += [hc.eq(H >> g_log),
                     chunk.eq((Q + (1 << p_log) - 1) >> p_log)]
        # six products through one pipeline: hc × head stride of Q, K, V, O; chunk × Q, O stride
        NP = JOB_SPLIT_PRODUCTS
        pstep = Signal(range(NP + 4))
        pbusy = Signal()
        ma, mb = Signal(32), Signal(25)
        oa, ob = Signal(32), Signal(25)
        lo, hi = Signal(45), Signal(45)
        pr = Signal(57)
        tag = [Signal(range(NP), name=f"split_t{i}") for i in range(3)]
        pv = [Signal(name=f"split_v{i}") for i in range(3)]
        sources = [(hc, params[f"{t}_head_stride"]) for t in TENSORS] + \
                  [(chunk, params["q_stride"]), (chunk, params["o_stride"])]
        with m.Switch(pstep):
            for k, (a, b) in enumerate(sources):
                with m.Case(k):
                    m.d.comb += [ma.eq(b), mb.eq(a)]
        m.d.sync += [oa.eq(ma), ob.eq(mb), pv[0].eq(pbusy & (pstep < NP)), tag[0].eq(pstep),
                     lo.eq(oa * ob[:13]), hi.eq(oa * ob[13:]), pv[1].eq(pv[0]),
                     tag[1].eq(tag[0]),
                     pr.eq(lo + (hi << 13)), pv[2].eq(pv[1]), tag[2].eq(tag[1])]
        step_h = {t: Signal(aw, name=f"split_h_{t}") for t in TENSORS}
        step_q = {t: Signal(aw, name=f"split_q_{t}") for t in ("q", "o")}
        with m.If(pv[2]):
            with m.Switch(tag[2]):
                for k, t in enumerate(TENSORS):
                    with m.Case(k):
                        m.d.sync += step_h[t].eq(pr)
                for k, t in enumerate(("q", "o")):
                    with m.Case(len(TENSORS) + k):
                        m.d.sync += step_q[t].eq(pr)
        # then one engine a cycle: running offsets of its head group and its chunk
        core = Signal(range(N + 1))
        walking = Signal()
        p_idx = Signal(cb + 1)
        h0, t0 = Signal(16), Signal(25)
        hoff = {t: Signal(aw, name=f"split_hoff_{t}") for t in TENSORS}
        qoff = {t: Signal(aw, name=f"split_qoff_{t}") for t in ("q", "o")}
        fields = {"heads": 16, "queries": 24, "first_head": 16, "first_query": 24,
                  "q_start": 32, **{f"{t}_base": aw for t in TENSORS}}
        subs = [{n: Signal(w, name=f"core{i}_{n}") for n, w in fields.items()}
                     for i in range(N)]
        work = Cat(sub["queries"] != 0 for sub in subs)
        # the shared K stream (spec.job.k_followers): not the group's first core, a whole chunk
        follow = [Signal(name=f"core{i}_follow") for i in range(N)]
        arb = self._arbiter
        m.d.comb += [arb.follow.eq(Cat(follow)),
                     arb.group_mask.eq(~((Const(1, cb + 1) << p_log) - 1))]
        with m.If(go):
            m.d.sync += [pbusy.eq(1), pstep.eq(0), walking.eq(0)]
        with m.If(pbusy):
            m.d.sync += pstep.eq(pstep + 1)
            with m.If(pstep == NP + 3):          # the last product is in
                m.d.sync += [pbusy.eq(0), walking.eq(1), core.eq(0), p_idx.eq(0), h0.eq(0),
                             t0.eq(0), *(hoff[t].eq(0) for t in TENSORS),
                             *(qoff[t].eq(0) for t in qoff)]
        with m.If(walking):
            left = Signal(25)
            m.d.comb += left.eq(Mux(t0 < Q, Q - t0, 0))
            with m.Switch(core):
                for i in range(N):
                    with m.Case(i):
                        sub = subs[i]
                        m.d.sync += [
                            sub["heads"].eq(hc), sub["queries"].eq(Mux(left < chunk, left, chunk)),
                            sub["first_head"].eq(h0), sub["first_query"].eq(t0),
                            sub["q_start"].eq(params["q_start"] + t0),
                            follow[i].eq(params["shared_k"] & ~params["causal"]
                                               & (p_idx != 0) & (left >= chunk)),
                            *(sub[f"{t}_base"].eq(params[f"{t}_base"] + hoff[t]
                                                  + (qoff[t] if t in qoff else 0))
                              for t in TENSORS)]
            m.d.sync += core.eq(core + 1)
            with m.If(p_idx + 1 == (1 << p_log)):
                m.d.sync += [p_idx.eq(0), t0.eq(0), h0.eq(h0 + hc),
                             *(qoff[t].eq(0) for t in qoff),
                             *(hoff[t].eq(hoff[t] + step_h[t]) for t in TENSORS)]
            with m.Else():
                m.d.sync += [p_idx.eq(p_idx + 1), t0.eq(t0 + chunk),
                             *(qoff[t].eq(qoff[t] + step_q[t]) for t in qoff)]
            with m.If(core == N - 1):
                m.d.sync += walking.eq(0)
        # the engines start a cycle after the last descriptor is written
        last = Signal()
        m.d.sync += last.eq(walking & (core == N - 1))
        m.d.comb += finished.eq(last)
        for i, e in enumerate(self.engines):
            sub = subs[i]
            for name, _ in e.job.shape():
                m.d.comb += e.job[name].eq(sub[name] if name in sub else params[name])
        assert job_split_cycles(N) == NP + 5 + N
        return work, subs, follow
