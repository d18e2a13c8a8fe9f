"""AxiLiteRegisters: an AXI4-Lite slave in front of a word-addressed register port;
AxiLiteBridge: an AXI4-Lite master behind a request/acknowledge register port."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi import RESP_OKAY, RESP_SLVERR, axil_slave_members, check_int


__all__ = ["AxiLiteRegisters", "AxiLiteBridge"]


class AxiLiteRegisters(wiring.Component):
    """An AXI4-Lite slave (32-bit data) driving a register port like :class:`hw.top.SofaCore`'s:
    ``reg_addr`` (a word address: the byte address >> 2), ``reg_wdata`` and a one-cycle
    ``reg_we`` per write; ``reg_rdata`` is the register at the ``reg_addr`` of
    ``rdata_latency`` cycles before.

    One transaction at a time per direction: AWREADY and WREADY stay low from their
    handshake to the B handshake, ARREADY from its handshake to the R handshake. AW and W may
    arrive in either order or together. Reads and writes share the register port; when both
    want it in the same cycle they take turns.

    Responses:

    * OKAY for a register inside the port's ``2**reg_addr_width`` words (the byte address's
      two low bits are ignored);
    * SLVERR, with no register access, for an address beyond it (reads return 0);
    * SLVERR, and the write is not performed, when any WSTRB bit is low: the registers are
      whole words, and a partial write would have to read-modify-write a register that may
      change meanwhile.

    Every output (the AXI ones and the register port) is a flip-flop.

    Parameters
    ----------
    addr_width : int
        Bits of AWADDR/ARADDR, from ``reg_addr_width + 2`` to 64.
    reg_addr_width : int
        Bits of ``reg_addr``, 1 to 30.
    prefix : str
        Of the AXI4-Lite members (``s_axil``).
    rdata_latency : int
        Cycles from ``reg_addr`` to its ``reg_rdata``, 1 or 2 (2 lets the register port
        register its read mux).
    write_lead : bool
        Show a write's ``reg_addr`` and ``reg_wdata`` a cycle before its ``reg_we`` and hold
        them through it (the register port may then decode the address into flip-flops).

    Attributes
    ----------
    s_axil_* :
        :func:`hw.axi.axil_slave_members`.
    reg_addr : Out(reg_addr_width)
    reg_wdata : Out(32)
    reg_we : Out(1)
    reg_rdata : In(32)
    write_latency : int
        ``2`` (``3`` with ``write_lead``): cycles from the later of the AW and W handshakes to
        BVALID; ``reg_we`` is high in the cycle BVALID rises.
    read_latency : int
        ``3 + rdata_latency``: cycles from the AR handshake to RVALID (``reg_addr`` is
        presented 2 cycles after the handshake).
    """

    def __init__(self, *, addr_width, reg_addr_width, prefix="s_axil", rdata_latency=1,
                 write_lead=False):
        check_int("AxiLiteRegisters", "reg_addr_width", reg_addr_width, 1, 30)
        check_int("AxiLiteRegisters", "addr_width", addr_width, reg_addr_width + 2, 64)
        check_int("AxiLiteRegisters", "rdata_latency", rdata_latency, 1, 2)
        self._rdata_latency, self._write_lead = rdata_latency, bool(write_lead)
        self._addr_width, self._reg_addr_width, self._prefix = addr_width, reg_addr_width, prefix
        super().__init__({
            **axil_slave_members(prefix, addr_width=addr_width),
            "reg_addr": Out(reg_addr_width),
            "reg_wdata": Out(32),
            "reg_we": Out(1),
            "reg_rdata": In(32),
        })

    @property
    def write_latency(self):
        return 3 if self._write_lead else 2

    @property
    def read_latency(self):
        return 3 + self._rdata_latency

    def _axi(self, suffix):
        return getattr(self, f"{self._prefix}_{suffix}")

    def elaborate(self, platform):
        m = Module()
        p, A = self._axi, self._reg_addr_width

        aw_full, w_full, ar_full = Signal(), Signal(), Signal()
        aw_addr, ar_addr = Signal(self._addr_width), Signal(self._addr_width)
        w_data, w_strb = Signal(32), Signal(4)
        m.d.comb += [p("awready").eq(~aw_full), p("wready").eq(~w_full),
                     p("arready").eq(~ar_full)]
        with m.If(p("awvalid") & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(p("awaddr"))]
        with m.If(p("wvalid") & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(p("wdata")), w_strb.eq(p("wstrb"))]
        with m.If(p("arvalid") & ~ar_full):
            m.d.sync += [ar_full.eq(1), ar_addr.eq(p("araddr"))]

        def in_range(addr):
            return addr[A + 2:] == 0 if self._addr_width > A + 2 else 1

        # Transactions waiting for the register port.
        rd_addr_cycle = Signal()                            # reg_addr shown
        rd_wait = Signal(self._rdata_latency)               # then one bit a cycle to reg_rdata
        rd_data_cycle = rd_wait[-1]
        w_lead, w_ok = Signal(), Signal()                   # the write shown ahead of reg_we
        wr_ready = aw_full & w_full & ~p("bvalid") & ~w_lead
        rd_ready = ar_full & ~p("rvalid") & ~rd_addr_cycle & ~rd_wait.any() & ~w_lead
        read_turn = Signal()                                # who goes first on a tie
        do_write = wr_ready & (~rd_ready | ~read_turn)
        do_read = rd_ready & ~do_write
        with m.If(wr_ready & rd_ready):
            m.d.sync += read_turn.eq(~read_turn)

        m.d.sync += [self.reg_we.eq(0), rd_addr_cycle.eq(0),
                     rd_wait.eq(Cat(rd_addr_cycle, rd_wait[:-1]))]
        with m.If(do_write):
            ok = in_range(aw_addr) & (w_strb == 0b1111)
            if self._write_lead:
                m.d.sync += [w_lead.eq(1), w_ok.eq(ok)]
                with m.If(ok):
                    m.d.sync += [self.reg_addr.eq(aw_addr[2:]), self.reg_wdata.eq(w_data)]
            else:
                m.d.sync += [p("bvalid").eq(1), p("bresp").eq(RESP_SLVERR)]
                with m.If(ok):
                    m.d.sync += [self.reg_we.eq(1), self.reg_addr.eq(aw_addr[2:]),
                                 self.reg_wdata.eq(w_data), p("bresp").eq(RESP_OKAY)]
        with m.If(w_lead):
            m.d.sync += [w_lead.eq(0), self.reg_we.eq(w_ok), p("bvalid").eq(1),
                         p("bresp").eq(Mux(w_ok, RESP_OKAY, RESP_SLVERR))]
        with m.If(do_read):
            with m.If(in_range(ar_addr)):
                m.d.sync += [self.reg_addr.eq(ar_addr[2:]), rd_addr_cycle.eq(1)]
            with m.Else():
                m.d.sync += [p("rvalid").eq(1), p("rresp").eq(RESP_SLVERR), p("rdata").eq(0)]
        with m.If(rd_data_cycle):
            m.d.sync += [p("rvalid").eq(1), p("rresp").eq(RESP_OKAY),
                         p("rdata").eq(self.reg_rdata)]

        with m.If(p("bvalid") & p("bready")):
            m.d.sync += [p("bvalid").eq(0), aw_full.eq(0), w_full.eq(0)]
        with m.If(p("rvalid") & p("rready")):
            m.d.sync += [p("rvalid").eq(0), ar_full.eq(0)]
        return m


class AxiLiteBridge(wiring.Component):
    """An AXI4-Lite master (32-bit data) for a word-addressed register port with requests held
    until acknowledged: how a board's host link (:class:`hw.hostlink.HostLink` of a memory
    board) reaches :class:`hw.axicore.SofaAxiCore`'s registers.

    A write request (``reg_we`` held) becomes one AW and one W (together, WSTRB all ones);
    ``reg_wdone`` pulses at the B handshake and the request must then drop. A read request
    (``reg_re`` held) becomes one AR; ``reg_rvalid`` rises with ``reg_rdata`` at the R
    handshake and stays high while ``reg_re`` does, so a held request is read once; dropping
    ``reg_re`` clears it. Writes go first when both are asked for. The response codes are not
    reported: the link checks addresses before it asks, and a core refuses a write with its
    own error flag.

    Parameters
    ----------
    addr_width, reg_addr_width :
        As for :class:`AxiLiteRegisters`.
    prefix : str
        Of the AXI4-Lite members (``m_axil``).

    Attributes
    ----------
    m_axil_* :
        :func:`hw.axi.axil_slave_members` with the master's flows.
    reg_addr, reg_wdata, reg_we, reg_re : In
        The request (see above); ``reg_wdone``, ``reg_rvalid``, ``reg_rdata`` answer it.
    """

    def __init__(self, *, addr_width, reg_addr_width, prefix="m_axil"):
        check_int("AxiLiteBridge", "reg_addr_width", reg_addr_width, 1, 30)
        check_int("AxiLiteBridge", "addr_width", addr_width, reg_addr_width + 2, 64)
        self._prefix = prefix
        super().__init__({
            **{name: member.flip() for name, member in
               axil_slave_members(prefix, addr_width=addr_width).items()},
            "reg_addr": In(reg_addr_width),
            "reg_wdata": In(32),
            "reg_we": In(1),
            "reg_re": In(1),
            "reg_wdone": Out(1),
            "reg_rvalid": Out(1),
            "reg_rdata": Out(32),
        })

    def _axi(self, suffix):
        return getattr(self, f"{self._prefix}_{suffix}")

    def elaborate(self, platform):
        m = Module()
        p = self._axi
        addr = self.reg_addr << 2
        m.d.comb += [p("awaddr").eq(addr), p("araddr").eq(addr), p("wdata").eq(self.reg_wdata),
                     p("wstrb").eq(0b1111), p("awprot").eq(0), p("arprot").eq(0)]
        aw_done, w_done = Signal(), Signal()
        with m.If(~self.reg_re):
            m.d.sync += self.reg_rvalid.eq(0)
        with m.FSM(name="bridge"):
            with m.State("IDLE"):
                with m.If(self.reg_we):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    m.next = "WRITE"
                with m.Elif(self.reg_re & ~self.reg_rvalid):
                    m.next = "READ"
            with m.State("WRITE"):
                m.d.comb += [p("awvalid").eq(~aw_done), p("wvalid").eq(~w_done)]
                with m.If(p("awready")):
                    m.d.sync += aw_done.eq(1)
                with m.If(p("wready")):
                    m.d.sync += w_done.eq(1)
                with m.If((aw_done | p("awready")) & (w_done | p("wready"))):
                    m.next = "WRITE_B"
            with m.State("WRITE_B"):
                m.d.comb += p("bready").eq(1)
                with m.If(p("bvalid")):
                    m.d.comb += self.reg_wdone.eq(1)
                    m.next = "IDLE"
            with m.State("READ"):
                m.d.comb += p("arvalid").eq(1)
                with m.If(p("arready")):
                    m.next = "READ_R"
            with m.State("READ_R"):
                m.d.comb += p("rready").eq(1)
                with m.If(p("rvalid")):
                    m.d.sync += [self.reg_rdata.eq(p("rdata")),
                                 self.reg_rvalid.eq(self.reg_re)]
                    m.next = "IDLE"
        return m
