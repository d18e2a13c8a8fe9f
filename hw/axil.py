"""AxiLiteRegisters: an AXI4-Lite slave in front of a word-addressed register port."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi import RESP_OKAY, RESP_SLVERR, axil_slave_members, check_int


__all__ = ["AxiLiteRegisters"]


class AxiLiteRegisters(wiring.Component):
    """An AXI4-Lite slave (32-bit data) driving a register port like :class:`hw.top.SofaCore`'s:
    ``reg_addr`` (a word address: the byte address >> 2), ``reg_wdata`` and a one-cycle
    ``reg_we`` per write; ``reg_rdata`` is the register at the ``reg_addr`` of the previous
    cycle.

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

    Attributes
    ----------
    s_axil_* :
        :func:`hw.axi.axil_slave_members`.
    reg_addr : Out(reg_addr_width)
    reg_wdata : Out(32)
    reg_we : Out(1)
    reg_rdata : In(32)
    write_latency : int
        ``2``: cycles from the later of the AW and W handshakes to BVALID; ``reg_we`` is high
        in the cycle BVALID rises.
    read_latency : int
        ``4``: cycles from the AR handshake to RVALID (``reg_addr`` is presented 2 cycles after
        the handshake).
    """

    def __init__(self, *, addr_width, reg_addr_width, prefix="s_axil"):
        check_int("AxiLiteRegisters", "reg_addr_width", reg_addr_width, 1, 30)
        check_int("AxiLiteRegisters", "addr_width", addr_width, reg_addr_width + 2, 64)
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
        return 2

    @property
    def read_latency(self):
        return 4

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
        rd_addr_cycle, rd_data_cycle = Signal(), Signal()   # reg_addr shown, reg_rdata valid
        wr_ready = aw_full & w_full & ~p("bvalid")
        rd_ready = ar_full & ~p("rvalid") & ~rd_addr_cycle & ~rd_data_cycle
        read_turn = Signal()                                # who goes first on a tie
        do_write = wr_ready & (~rd_ready | ~read_turn)
        do_read = rd_ready & ~do_write
        with m.If(wr_ready & rd_ready):
            m.d.sync += read_turn.eq(~read_turn)

        m.d.sync += [self.reg_we.eq(0), rd_addr_cycle.eq(0), rd_data_cycle.eq(rd_addr_cycle)]
        with m.If(do_write):
            ok = in_range(aw_addr) & (w_strb == 0b1111)
            m.d.sync += [p("bvalid").eq(1), p("bresp").eq(RESP_SLVERR)]
            with m.If(ok):
                m.d.sync += [self.reg_we.eq(1), self.reg_addr.eq(aw_addr[2:]),
                             self.reg_wdata.eq(w_data), p("bresp").eq(RESP_OKAY)]
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
