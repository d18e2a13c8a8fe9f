"""AxiBram: an AXI4 slave on block RAM, with a byte port for a host.

The memory the board tops put behind :class:`hw.axicore.SofaAxiCore` (``m_axi_*`` to this
``s_axi_*``); the host link reads and writes it a byte at a time through the host port while
no burst is in progress.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import RESP_DECERR, RESP_OKAY, RESP_SLVERR, axi4_master_members, check_int


__all__ = ["AxiBram"]

_BURST_FIXED, _BURST_INCR = 0b00, 0b01


class AxiBram(wiring.Component):
    """An AXI4 slave over ``size`` bytes of block RAM (a memory of ``data_width``-bit words with
    byte write enables), and a host byte port.

    One burst at a time: the slave takes an AR or an AW (alternating when both wait), serves it
    to its last beat (read data one beat a cycle under RREADY; write data one beat a cycle,
    then one B response) and only then takes the next address. Between bursts it serves a host
    request; the host port is registered both ways, so ``host_ack`` comes two (write) or three
    (read) cycles after the request when no burst is in progress. The write port's inputs
    pass a register (a beat is written a cycle after its handshake). Narrow transfers
    (``AxSIZE`` below the bus) put their data on the lanes of their address, as the AXI4
    specification says.

    Responses, per beat (reads) or per burst (writes, the worst of its beats):

    * ``DECERR`` for a beat whose address is at or beyond ``size`` (nothing is written; the read
      returns zeros);
    * ``SLVERR`` for a WRAP burst or an ``AxSIZE`` above the bus (nothing is written);
    * ``OKAY`` otherwise (FIXED bursts repeat their address).

    Parameters
    ----------
    size : int
        Bytes of memory, a power of two of at least one bus word.
    data_width : int
        Bits of RDATA/WDATA, a power of two from 8 to 1024.
    addr_width, id_width : int
        Of the AXI4 port.
    prefix : str
        Of the AXI4 members (``s_axi``).

    Attributes
    ----------
    s_axi_* :
        :func:`hw.axi.axi4_master_members` with the slave's flows.
    host_addr : In(range(size))
        Byte address of the host request.
    host_wdata : In(8)
    host_we, host_re : In(1)
        A host write or read request, held until ``host_ack``.
    host_rdata : Out(8)
        The byte read, in the cycle of ``host_ack``.
    host_ack : Out(1)
        One cycle: the request is done.
    read_latency : int
        ``3``: cycles from the AR handshake to the first RVALID (the address, the block RAM,
        the output register).
    """

    def __init__(self, *, size, data_width, addr_width, id_width, prefix="s_axi"):
        check_int("AxiBram", "data_width", data_width, 8, 1024)
        if data_width & (data_width - 1):
            raise ValueError(f"AxiBram data_width must be a power of two from 8 to 1024, "
                             f"not {data_width!r}")
        check_int("AxiBram", "size", size, data_width // 8, 1 << addr_width)
        if size & (size - 1):
            raise ValueError(f"AxiBram size must be a power of two, not {size!r}")
        self._size = size
        self._dw = data_width
        self._prefix = prefix
        self._axi = {name: member.flip() for name, member in axi4_master_members(
            prefix, addr_width=addr_width, data_width=data_width, id_width=id_width).items()}
        super().__init__({
            **self._axi,
            "host_addr": In(range(size)),
            "host_wdata": In(8),
            "host_we": In(1),
            "host_re": In(1),
            "host_rdata": Out(8),
            "host_ack": Out(1),
        })

    @property
    def size(self):
        return self._size

    #: Cycles from the AR handshake to the first RVALID.
    READ_LATENCY = 3

    @property
    def read_latency(self):
        return self.READ_LATENCY

    def _a(self, suffix):
        return getattr(self, f"{self._prefix}_{suffix}")

    def elaborate(self, platform):
        m = Module()
        a = self._a
        nbytes = self._dw // 8
        lane_bits = (nbytes - 1).bit_length()
        depth = self._size // nbytes
        word_bits = max(1, (depth - 1).bit_length())
        max_size = lane_bits                        # the largest legal AxSIZE

        m.submodules.mem = mem = memory.Memory(shape=self._dw, depth=depth, init=[])
        wr = mem.write_port(granularity=8)
        rd = mem.read_port(transparent_for=())

        # The burst in progress (one at a time, read or write).
        bid = Signal.like(a("arid"))
        addr = Signal.like(a("araddr"))
        size = Signal(3)
        burst = Signal(2)
        left = Signal(8)                            # beats after the current one
        bad = Signal()                              # WRAP or AxSIZE above the bus
        resp = Signal(2)                            # a write burst's worst response
        prefer_write = Signal()

        step = Signal.like(addr)
        m.d.comb += step.eq(Const(1, len(addr)) << size)
        # Next beat address: aligned to the transfer size after the first (INCR), else held.
        nxt = Signal.like(addr)
        m.d.comb += nxt.eq(Mux(burst == _BURST_INCR, (addr & ~(step - 1)) + step, addr))
        in_range = Signal()
        m.d.comb += in_range.eq(addr < self._size)
        beat_resp = Signal(2)
        m.d.comb += beat_resp.eq(Mux(bad, RESP_SLVERR, Mux(in_range, RESP_OKAY, RESP_DECERR)))
        word = addr[lane_bits:lane_bits + word_bits]

        # Read pipeline: the port's address is presented one cycle before its data (stage b),
        # which passes an output register (stage r) on its way to the bus, so the block RAMs'
        # data and their bank multiplexer end at a flip-flop next to them. A stalled beat
        # holds both stages; with its enable low the port holds its data.
        b_valid = Signal()
        b_last = Signal()
        b_resp = Signal(2)
        b_ok = Signal()
        r_valid = Signal()
        r_last = Signal()
        r_resp = Signal(2)
        r_data = Signal(self._dw, reset_less=True)
        r_issue = Signal()
        m.d.comb += [
            a("rid").eq(bid), a("rvalid").eq(r_valid), a("rlast").eq(r_last),
            a("rresp").eq(r_resp), a("rdata").eq(r_data),
            a("bid").eq(bid), a("bresp").eq(resp),
        ]

        # The host port is registered on its way in and out (the link sits far from the 64
        # block RAMs and a byte may take a few cycles): a request seen here is a cycle old, so
        # HOST_GAP skips the cycle in which the acked request still shows.
        h_addr = Signal.like(self.host_addr)
        h_wdata = Signal(8)
        h_we = Signal()
        h_re = Signal()
        m.d.sync += [h_addr.eq(self.host_addr), h_wdata.eq(self.host_wdata),
                     h_we.eq(self.host_we), h_re.eq(self.host_re)]
        host_lane = Signal(range(nbytes))

        # The write port's address, data and byte enables pass a register (the write lands a
        # cycle after the beat or host request; no read of it can come sooner than two cycles
        # after): the block RAMs' inputs come straight from flip-flops.
        wr_addr = Signal(len(wr.addr))
        wr_data = Signal(self._dw)
        wr_en = Signal(nbytes)
        m.d.sync += [wr.addr.eq(wr_addr), wr.data.eq(wr_data), wr.en.eq(wr_en)]

        def accept(ch):
            """Take the AR or AW address (``ch`` "ar" or "aw") as the burst."""
            m.d.comb += a(f"{ch}ready").eq(1)
            m.d.sync += [bid.eq(a(f"{ch}id")), addr.eq(a(f"{ch}addr")),
                         size.eq(a(f"{ch}size")), burst.eq(a(f"{ch}burst")),
                         left.eq(a(f"{ch}len")),
                         bad.eq((a(f"{ch}burst") != _BURST_INCR) &
                                (a(f"{ch}burst") != _BURST_FIXED) |
                                (a(f"{ch}size") > max_size))]

        with m.FSM(name="bram"):
            with m.State("IDLE"):
                take_r = a("arvalid") & ~(prefer_write & a("awvalid"))
                take_w = a("awvalid") & ~take_r
                with m.If(take_r):
                    accept("ar")
                    m.d.sync += [prefer_write.eq(1), r_issue.eq(1)]
                    m.next = "READ"
                with m.Elif(take_w):
                    accept("aw")
                    m.d.sync += [resp.eq(RESP_OKAY), prefer_write.eq(0)]
                    m.next = "WRITE"
                with m.Elif(h_we):
                    m.d.comb += [wr_addr.eq(h_addr[lane_bits:]),
                                 wr_data.eq(Cat(*[h_wdata] * nbytes)),
                                 wr_en.eq(Const(1, nbytes) << h_addr[:lane_bits]
                                          if lane_bits else 1)]
                    m.next = "HOST_ACK"
                with m.Elif(h_re):
                    m.d.comb += [rd.addr.eq(h_addr[lane_bits:]), rd.en.eq(1)]
                    m.d.sync += host_lane.eq(h_addr[:lane_bits] if lane_bits else 0)
                    m.next = "HOST_READ"

            with m.State("HOST_READ"):              # the byte into a register
                m.d.sync += self.host_rdata.eq(rd.data.word_select(host_lane, 8))
                m.next = "HOST_ACK"

            with m.State("HOST_ACK"):
                m.d.comb += self.host_ack.eq(1)
                m.next = "HOST_GAP"

            with m.State("HOST_GAP"):               # h_we/h_re still show the request acked
                m.next = "IDLE"

            with m.State("READ"):
                # r_issue: beats remain to be read from the port.
                advance = ~r_valid | a("rready")          # stage r moves
                fill = ~b_valid | advance                 # stage b moves
                m.d.comb += [rd.addr.eq(word), rd.en.eq(fill)]
                with m.If(fill):
                    m.d.sync += b_valid.eq(r_issue)       # low after the last beat
                    with m.If(r_issue):
                        m.d.sync += [b_last.eq(left == 0), b_resp.eq(beat_resp),
                                     b_ok.eq(beat_resp == RESP_OKAY), addr.eq(nxt),
                                     left.eq(left - 1), r_issue.eq(left != 0)]
                with m.If(advance):
                    m.d.sync += [r_valid.eq(b_valid), r_last.eq(b_last), r_resp.eq(b_resp),
                                 r_data.eq(Mux(b_ok, rd.data, 0))]
                    with m.If(r_valid & r_last):
                        m.next = "IDLE"

            with m.State("WRITE"):
                m.d.comb += [a("wready").eq(1), wr_addr.eq(word), wr_data.eq(a("wdata"))]
                with m.If(a("wvalid")):
                    with m.If(beat_resp == RESP_OKAY):
                        m.d.comb += wr_en.eq(a("wstrb"))
                    with m.Elif(resp == RESP_OKAY):
                        m.d.sync += resp.eq(beat_resp)
                    m.d.sync += [addr.eq(nxt), left.eq(left - 1)]
                    with m.If(a("wlast")):
                        m.next = "RESP"

            with m.State("RESP"):
                m.d.comb += a("bvalid").eq(1)
                with m.If(a("bready")):
                    m.next = "IDLE"
        return m
