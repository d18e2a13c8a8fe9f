"""AXI4 master pieces: flat port members, a 4 KB-safe burst splitter, a read engine shared by
several clients (:class:`AxiReader`) and a write engine (:class:`AxiWriter`)."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.skid import SkidBuffer


__all__ = ["axi4_master_members", "axi4_read_members", "axi4_write_members",
           "axil_slave_members", "forward_members", "read_cmd_layout", "read_data_layout",
           "write_cmd_layout", "write_data_layout", "burst_layout", "BurstSplitter",
           "AxiReader", "AxiWriter", "BURST_INCR", "CACHE", "PROT", "RESP_OKAY", "RESP_EXOKAY",
           "RESP_SLVERR", "RESP_DECERR", "PAGE_BYTES", "MAX_BURST"]

BURST_INCR = 0b01
#: ARCACHE/AWCACHE: normal non-cacheable bufferable, the value IP integrators default to.
CACHE = 0b0011
#: ARPROT/AWPROT: unprivileged, secure, data.
PROT = 0b000
RESP_OKAY, RESP_EXOKAY, RESP_SLVERR, RESP_DECERR = 0, 1, 2, 3
#: No INCR burst may cross a 4 KB boundary (AXI4 A3.4.1).
PAGE_BYTES = 4096
#: The longest AXI4 INCR burst, in beats.
MAX_BURST = 256

# (suffix, width or "id"/"addr"/"data"/"strb", flow from the master's point of view)
_WRITE = [("awid", "id", Out), ("awaddr", "addr", Out), ("awlen", 8, Out), ("awsize", 3, Out),
          ("awburst", 2, Out), ("awlock", 1, Out), ("awcache", 4, Out), ("awprot", 3, Out),
          ("awvalid", 1, Out), ("awready", 1, In),
          ("wdata", "data", Out), ("wstrb", "strb", Out), ("wlast", 1, Out), ("wvalid", 1, Out),
          ("wready", 1, In),
          ("bid", "id", In), ("bresp", 2, In), ("bvalid", 1, In), ("bready", 1, Out)]
_READ = [("arid", "id", Out), ("araddr", "addr", Out), ("arlen", 8, Out), ("arsize", 3, Out),
         ("arburst", 2, Out), ("arlock", 1, Out), ("arcache", 4, Out), ("arprot", 3, Out),
         ("arvalid", 1, Out), ("arready", 1, In),
         ("rid", "id", In), ("rdata", "data", In), ("rresp", 2, In), ("rlast", 1, In),
         ("rvalid", 1, In), ("rready", 1, Out)]
# AXI4-Lite, from the slave's point of view.
_LITE = [("awaddr", "addr", In), ("awprot", 3, In), ("awvalid", 1, In), ("awready", 1, Out),
         ("wdata", 32, In), ("wstrb", 4, In), ("wvalid", 1, In), ("wready", 1, Out),
         ("bresp", 2, Out), ("bvalid", 1, Out), ("bready", 1, In),
         ("araddr", "addr", In), ("arprot", 3, In), ("arvalid", 1, In), ("arready", 1, Out),
         ("rdata", 32, Out), ("rresp", 2, Out), ("rvalid", 1, Out), ("rready", 1, In)]


def check_int(owner, name, value, lo, hi=None):
    """``value`` if it is an integer in ``[lo, hi]``, else TypeError/ValueError naming it."""
    allowed = f"an integer from {lo} to {hi}" if hi is not None else f"an integer of at least {lo}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner} {name} must be {allowed}, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{owner} {name} must be {allowed}, not {value!r}")
    return value


def _check_prefix(owner, prefix):
    if not isinstance(prefix, str) or not prefix.isidentifier() or prefix.startswith("_"):
        raise TypeError(f"{owner} prefix must be an identifier not starting with '_', "
                        f"not {prefix!r}")


def _check_bus(owner, addr_width, data_width, id_width=1, prefix="m_axi"):
    _check_prefix(owner, prefix)
    check_int(owner, "addr_width", addr_width, 12, 64)
    check_int(owner, "data_width", data_width, 8, 1024)
    if data_width & (data_width - 1):
        raise ValueError(f"{owner} data_width must be a power of two from 8 to 1024, "
                         f"not {data_width!r}")
    check_int(owner, "id_width", id_width, 1, 32)


def _members(table, prefix, widths):
    return {f"{prefix}_{suffix}": flow(widths.get(width, width)) for suffix, width, flow in table}


def axi4_write_members(prefix, *, addr_width, data_width, id_width):
    """The AW, W and B members of :func:`axi4_master_members`."""
    _check_bus("AXI4 port", addr_width, data_width, id_width, prefix)
    return _members(_WRITE, prefix, {"id": id_width, "addr": addr_width, "data": data_width,
                                     "strb": data_width // 8})


def axi4_read_members(prefix, *, addr_width, data_width, id_width):
    """The AR and R members of :func:`axi4_master_members`."""
    _check_bus("AXI4 port", addr_width, data_width, id_width, prefix)
    return _members(_READ, prefix, {"id": id_width, "addr": addr_width, "data": data_width})


def axi4_master_members(prefix, *, addr_width, data_width, id_width):
    """Signature members of an AXI4 master port with the master's flows, flat and named as IP
    integrators, LiteX and cocotbext-axi expect: ``<prefix>_awid`` … ``<prefix>_rready`` (AW,
    W, B, AR, R; no QOS, REGION or USER). A top level splats them into its signature
    (``{**axi4_master_members("m_axi", …), …}``) and its Verilog ports carry these names.

    Parameters
    ----------
    prefix : str
        ``"m_axi"`` gives ``m_axi_awid`` and so on.
    addr_width, data_width, id_width : int
        12 to 64; a power of two from 8 to 1024; 1 to 32.
    """
    return {**axi4_write_members(prefix, addr_width=addr_width, data_width=data_width,
                                 id_width=id_width),
            **axi4_read_members(prefix, addr_width=addr_width, data_width=data_width,
                                id_width=id_width)}


def axil_slave_members(prefix, *, addr_width):
    """Signature members of an AXI4-Lite slave port (32-bit data) with the slave's flows:
    ``<prefix>_awaddr`` … ``<prefix>_rready``; ``addr_width`` from 3 to 64."""
    _check_prefix("AXI4-Lite port", prefix)
    check_int("AXI4-Lite port", "addr_width", addr_width, 3, 64)
    return _members(_LITE, prefix, {"addr": addr_width})


def forward_members(m, outer, inner, members):
    """Connect the same-named ``members`` (a dict as from :func:`axi4_read_members`) of a
    component and of its submodule, both facing outwards: outputs from ``inner`` to
    ``outer``, inputs from ``outer`` to ``inner``."""
    for name, member in members.items():
        src, dst = (inner, outer) if member.flow == Out else (outer, inner)
        m.d.comb += getattr(dst, name).eq(getattr(src, name))


def _log2(n):
    return n.bit_length() - 1


def beats_width(addr_width, data_width):
    """Bits of a command's ``beats``: enough for the whole address space."""
    return addr_width - _log2(data_width // 8) + 1


def read_cmd_layout(addr_width, data_width, tag_width):
    """``beats`` words from byte address ``addr`` (bus-aligned: its low bits are ignored);
    ``tag`` comes back with every beat."""
    return data.StructLayout({"addr": addr_width, "beats": beats_width(addr_width, data_width),
                              "tag": tag_width})


def read_data_layout(data_width, tag_width):
    """A beat; ``last`` ends its command; ``err``: its RRESP was SLVERR or DECERR."""
    return data.StructLayout({"data": data_width, "tag": tag_width, "last": 1, "err": 1})


def write_cmd_layout(addr_width, data_width):
    """``beats`` words to byte address ``addr`` (bus-aligned)."""
    return data.StructLayout({"addr": addr_width, "beats": beats_width(addr_width, data_width)})


def write_data_layout(data_width):
    """A beat and its byte strobes."""
    return data.StructLayout({"data": data_width, "strb": data_width // 8})


def burst_layout(addr_width, max_len, tag_width):
    """``len`` beats (1 … ``max_len``) from ``addr``; ``last`` if it ends its command."""
    return data.StructLayout({"addr": addr_width, "len": range(max_len + 1), "tag": tag_width,
                              "last": 1})


class BurstSplitter(wiring.Component):
    """Cuts commands into INCR bursts that never cross a 4 KB boundary.

    A command of ``beats`` words from ``addr`` becomes bursts of
    ``min(remaining, max_burst, words to the next 4 KB boundary)`` beats, in address order,
    at most one per cycle (also across commands); one of 0 beats is accepted and dropped.
    Commands enter and bursts leave through :class:`hw.skid.SkidBuffer`: :py:`cmd.ready` is a
    flip-flop and :py:`burst.ready` reaches only flip-flops.

    Parameters
    ----------
    addr_width : int
        12 to 64.
    data_width : int
        A power of two from 8 to 1024; a beat is ``data_width // 8`` bytes.
    max_burst : int
        1 to 256; the bursts are at most ``min(max_burst, 4096 // bytes)`` beats.
    tag_width : int
        Bits of the tag carried from each command to its bursts (0 for none).

    Attributes
    ----------
    cmd : In(stream.Signature(read_cmd_layout(addr_width, data_width, tag_width)))
    burst : Out(stream.Signature(burst_layout(addr_width, max_len, tag_width)))
    busy : Out(1)
        A command or burst is held.
    max_len : int
        The longest burst, ``min(max_burst, 4096 // bytes)``.
    latency : int
        ``3``: from the acceptance of a command to its first burst on :py:`burst`.
    ii : int
        ``1``: one burst per cycle.
    """

    def __init__(self, *, addr_width, data_width, max_burst, tag_width=0):
        _check_bus("BurstSplitter", addr_width, data_width)
        check_int("BurstSplitter", "max_burst", max_burst, 1, MAX_BURST)
        check_int("BurstSplitter", "tag_width", tag_width, 0)
        self._addr_width, self._data_width, self._tag_width = addr_width, data_width, tag_width
        self._size = _log2(data_width // 8)
        self._page = PAGE_BYTES >> self._size
        self._max_len = min(max_burst, self._page)
        super().__init__({
            "cmd": In(stream.Signature(read_cmd_layout(addr_width, data_width, tag_width))),
            "burst": Out(stream.Signature(burst_layout(addr_width, self._max_len, tag_width))),
            "busy": Out(1),
        })

    latency = 3          # skid buffer, command registers, burst register
    ii = 1

    max_len = property(lambda self: self._max_len)

    def elaborate(self, platform):
        m = Module()
        size, page, cap = self._size, self._page, self._max_len
        m.submodules.skid = skid = SkidBuffer(self.cmd.payload.shape())
        wiring.connect(m, wiring.flipped(self.cmd), skid.i)

        # The length of a burst that does not end its command, `limit`, is kept in registers
        # (with the distance to the 4 KB boundary), so that the wide address and count updates
        # start from flip-flops; only the choice "whole rest of the command" is compared.
        active = Signal()
        waddr = Signal(self._addr_width - size)            # word address of the next burst
        left = Signal(beats_width(self._addr_width, self._data_width))
        tag = Signal(self._tag_width)
        to_page = Signal(range(page + 1))                  # words to the next 4 KB boundary
        limit = Signal(range(cap + 1))                     # min(to_page, cap)
        capped = Signal()                                  # to_page > cap

        def set_distance(distance, far):
            # `far` (distance > cap) is computed beside the distance, not from it.
            m.d.sync += [to_page.eq(distance), limit.eq(Mux(far, cap, distance)), capped.eq(far)]

        whole = left <= limit                              # this burst ends the command
        # The bursts leave through a skid buffer: `burst.ready` (an arbiter's grant) reaches
        # no further than its registers.
        m.submodules.out = out = SkidBuffer(self.burst.payload.shape())
        wiring.connect(m, out.o, wiring.flipped(self.burst))
        advance = active & out.i.ready
        m.d.comb += [
            out.i.valid.eq(active),
            out.i.payload.addr.eq(Cat(Const(0, size), waddr)),
            out.i.payload.len.eq(Mux(whole, left, limit)),
            out.i.payload.tag.eq(tag),
            out.i.payload.last.eq(whole),
        ]
        with m.If(advance):
            m.d.sync += [waddr.eq(waddr + limit), left.eq(left - limit)]   # unless `whole`
            with m.If(capped):
                set_distance(to_page - cap, to_page > 2 * cap)
            with m.Else():
                set_distance(page, page > cap)
            with m.If(whole):
                m.d.sync += active.eq(0)
        # The next command is taken in the cycle the current one ends: no bubble.
        m.d.comb += skid.o.ready.eq(~active | (advance & whole))
        with m.If(skid.o.valid & skid.o.ready):
            cmd = skid.o.payload
            m.d.sync += [active.eq(cmd.beats != 0), waddr.eq(cmd.addr[size:]),
                         left.eq(cmd.beats), tag.eq(cmd.tag)]
            set_distance(page - cmd.addr[size:12], cmd.addr[size:12] < page - cap)
        m.d.comb += self.busy.eq(skid.o.valid | active | out.o.valid)
        return m


def _port(component, prefix, table):
    """``port.arvalid`` for ``component.<prefix>_arvalid``."""
    return SimpleNamespace(**{n: getattr(component, f"{prefix}_{n}") for n, _, _ in table})


class AxiReader(wiring.Component):
    """The read half of an AXI4 master, shared by several clients.

    Client ``i`` sends read commands on :py:`cmd_i` and gets their data, in command order, on
    :py:`data_i`. Commands are cut into INCR bursts (:class:`BurstSplitter`: at most
    ``max_burst`` beats, never across 4 KB; ARSIZE of the bus width, ARID the client's
    ``arid``). A round-robin arbiter issues at most one burst per cycle, from the clients
    whose burst may go:

    * at most ``max_reads`` bursts are in flight (from arbitration to their RLAST beat);
    * a burst goes only when its client's data FIFO (``buffer_beats`` deep, block RAM) has
      room reserved for all its beats. So RREADY is always high, and a client that does not
      take its data stalls only itself, never another client's beats.

    R beats are routed by RID (IDs may interleave; one ID's bursts return in order). A beat
    whose RID matches no client, or a client with nothing in flight, is dropped. AR leaves a
    register backed by a second one (ARREADY feeds only flip-flops); R is registered on entry;
    :py:`data_i` comes from the FIFO's block-RAM read port (no output register: on ECP5 about
    5.7 ns clock-to-out; register it in the client before deep logic).

    Flush: :py:`flush` (a pulse is enough) drops the pending commands and those offered
    while flushing (:py:`cmd_i` ready), issues no new AR (an AR already presented stays until
    accepted, as AXI requires; the one behind it is dropped), empties the data FIFOs,
    withholds :py:`data_i` and discards arriving beats until every burst in flight has
    returned; then :py:`idle` rises (also while :py:`flush` is still held).

    Full bandwidth takes ``buffer_beats`` of two bursts plus the memory's read latency in
    beats, and ``max_reads`` covering that latency.

    Parameters
    ----------
    addr_width : int
        12 to 64.
    data_width : int
        A power of two from 8 to 1024.
    id_width : int
        1 to 32.
    max_burst : int
        1 to 256 beats.
    max_reads : int
        Bursts in flight, at least 1.
    clients : list of (int, int, int)
        ``(arid, buffer_beats, tag_width)`` per client: distinct ARIDs below ``2**id_width``;
        FIFO depth (at least 1; the client's bursts are also at most this long); bits of its
        commands' tags (0 for none).
    prefix : str
        Of the AXI port members (``m_axi``).

    Attributes
    ----------
    m_axi_ar*, m_axi_r* :
        :func:`axi4_read_members`; RREADY is constant 1.
    cmd_i : In(stream.Signature(read_cmd_layout(addr_width, data_width, tag_width_i)))
        Also the tuple :py:`cmd`. ``beats`` >= 1 words from the bus-aligned ``addr``.
    data_i : Out(stream.Signature(read_data_layout(data_width, tag_width_i)))
        Also the tuple :py:`data`.
    fault : Out(len(clients))
        Bit ``i`` sticky: a beat of client ``i`` came with SLVERR or DECERR.
    clear : In(1)
        Clears :py:`fault` (a fault of the same cycle wins).
    flush : In(1)
    idle : Out(1)
        Not flushing, no command held, nothing in flight, the data FIFOs empty.
    ar_latency : int
        ``4``: cycles from the acceptance of a command to ARVALID (credits and room free).
    r_latency : int
        ``3``: cycles from an R handshake to the beat on :py:`data_i`.
    ii : int
        ``1``: one beat per cycle, from any mix of clients.
    """

    def __init__(self, *, addr_width, data_width, id_width, max_burst, max_reads, clients,
                 prefix="m_axi"):
        owner = "AxiReader"
        _check_bus(owner, addr_width, data_width, id_width, prefix)
        check_int(owner, "max_burst", max_burst, 1, MAX_BURST)
        check_int(owner, "max_reads", max_reads, 1)
        if not isinstance(clients, (list, tuple)) or not clients:
            raise ValueError(f"{owner} clients must be a non-empty list of "
                             f"(arid, buffer_beats, tag_width), not {clients!r}")
        self._clients = []
        for i, client in enumerate(clients):
            if not isinstance(client, (list, tuple)) or len(client) != 3:
                raise ValueError(f"{owner} clients[{i}] must be (arid, buffer_beats, "
                                 f"tag_width), not {client!r}")
            arid, buf, tw = client
            check_int(owner, f"clients[{i}] arid", arid, 0, (1 << id_width) - 1)
            check_int(owner, f"clients[{i}] buffer_beats", buf, 1)
            check_int(owner, f"clients[{i}] tag_width", tw, 0)
            if arid in [c[0] for c in self._clients]:
                raise ValueError(f"{owner} clients[{i}] arid {arid} is already used by another "
                                 f"client; ARIDs must be distinct")
            self._clients.append((arid, buf, tw))
        self._addr_width, self._data_width, self._id_width = addr_width, data_width, id_width
        self._max_reads, self._prefix = max_reads, prefix
        self._size = _log2(data_width // 8)
        self._splitters = [BurstSplitter(addr_width=addr_width, data_width=data_width,
                                         max_burst=min(max_burst, buf), tag_width=tw)
                           for _, buf, tw in self._clients]
        members = axi4_read_members(prefix, addr_width=addr_width, data_width=data_width,
                                    id_width=id_width)
        for i, (_, _, tw) in enumerate(self._clients):
            members[f"cmd_{i}"] = In(stream.Signature(read_cmd_layout(addr_width, data_width,
                                                                      tw)))
            members[f"data_{i}"] = Out(stream.Signature(read_data_layout(data_width, tw)))
        members.update(fault=Out(len(clients)), clear=In(1), flush=In(1), idle=Out(1))
        super().__init__(members)

    @property
    def clients(self):
        return tuple(self._clients)

    @property
    def cmd(self):
        return tuple(getattr(self, f"cmd_{i}") for i in range(len(self._clients)))

    @property
    def data(self):
        return tuple(getattr(self, f"data_{i}") for i in range(len(self._clients)))

    @property
    def max_len(self):
        """The longest burst of each client."""
        return tuple(s.max_len for s in self._splitters)

    ar_latency = BurstSplitter.latency + 1      # the splitter, then the AR register
    r_latency = 3        # R register, FIFO write, FIFO output register
    ii = 1

    def elaborate(self, platform):
        m = Module()
        n, axi = len(self._clients), _port(self, self._prefix, _READ)
        flushing = Signal()
        stop = self.flush | flushing
        inflight = Signal(range(self._max_reads + 1))      # from arbitration to RLAST

        # AR output: a register backed by a second one (ARREADY feeds only flip-flops); the
        # second, not yet presented, is dropped by a flush.
        ar_layout = data.StructLayout({
            "id": self._id_width, "addr": self._addr_width, "len": 8, "client": range(n),
            "tag": max(tw for _, _, tw in self._clients), "last": 1})
        ar_in, ar_o, ar_s = Signal(ar_layout), Signal(ar_layout), Signal(ar_layout)
        ar_o_valid, ar_s_valid, take = Signal(), Signal(), Signal()
        with m.If(~ar_o_valid | axi.arready):
            m.d.sync += [ar_o_valid.eq((ar_s_valid & ~stop) | take),
                         ar_o.eq(Mux(ar_s_valid, ar_s, ar_in)), ar_s_valid.eq(0)]
        with m.Elif(take):
            m.d.sync += [ar_s_valid.eq(1), ar_s.eq(ar_in)]
        with m.If(stop):
            m.d.sync += ar_s_valid.eq(0)
        dropped = stop & ar_s_valid
        ar_done = ar_o_valid & axi.arready
        m.d.comb += [
            axi.arvalid.eq(ar_o_valid), axi.arid.eq(ar_o.id), axi.araddr.eq(ar_o.addr),
            axi.arlen.eq(ar_o.len), axi.arsize.eq(self._size), axi.arburst.eq(BURST_INCR),
            axi.arlock.eq(0), axi.arcache.eq(CACHE), axi.arprot.eq(PROT), axi.rready.eq(1),
        ]

        # R enters a register: RREADY is constant, nothing combinational hangs on the port.
        r_valid, r_last = Signal(), Signal()
        r_id, r_resp = Signal(self._id_width), Signal(2)
        r_data = Signal(self._data_width)
        m.d.sync += [r_valid.eq(axi.rvalid), r_id.eq(axi.rid), r_data.eq(axi.rdata),
                     r_resp.eq(axi.rresp), r_last.eq(axi.rlast)]

        with m.If(self.clear):
            m.d.sync += self.fault.eq(0)                   # the faults below win over it
        eligible, grants, retires, empties, busies = [], [], [], [], []
        for i, ((arid, buf, tw), split) in enumerate(zip(self._clients, self._splitters)):
            # Dropping pending commands = holding the splitter in reset.
            m.submodules[f"split{i}"] = ResetInserter(stop)(split)
            wiring.connect(m, wiring.flipped(self.cmd[i]), split.cmd)
            busies.append(split.busy)
            burst = split.burst.payload
            # Beats reserved for this client: in flight or in its FIFO.
            credits = Signal(range(buf + 1), init=buf, name=f"credits{i}")
            grant = Signal(name=f"grant{i}")
            grants.append(grant)
            eligible.append(split.burst.valid & (credits >= burst.len))
            m.d.comb += split.burst.ready.eq(grant)
            with m.If(grant):
                m.d.comb += [ar_in.id.eq(arid), ar_in.addr.eq(burst.addr),
                             ar_in.len.eq(burst.len - 1), ar_in.client.eq(i),
                             ar_in.tag.eq(burst.tag), ar_in.last.eq(burst.last)]

            # Tag and end-of-command flag of each burst on the bus, in AR order.
            m.submodules[f"info{i}"] = info = fifo.SyncFIFO(width=tw + 1,
                                                            depth=min(self._max_reads, buf))
            m.d.comb += [info.w_en.eq(ar_done & (ar_o.client == i)),
                         info.w_data.eq(Cat(ar_o.tag[:tw], ar_o.last))]

            layout = read_data_layout(self._data_width, tw)
            # Depth 3 at least: SyncFIFOBuffered of depth 2 refuses a write in the cycle its
            # first entry moves to the output register, though only one entry is held.
            m.submodules[f"buf{i}"] = buf_fifo = fifo.SyncFIFOBuffered(width=layout.size,
                                                                       depth=max(buf, 3))
            hit = r_valid & (r_id == arid) & info.r_rdy
            beat = data.View(layout, buf_fifo.w_data)
            m.d.comb += [
                info.r_en.eq(hit & r_last),
                buf_fifo.w_en.eq(hit & ~stop),
                beat.data.eq(r_data), beat.tag.eq(info.r_data[:tw]),
                beat.last.eq(r_last & info.r_data[tw]), beat.err.eq(r_resp[1]),
            ]
            retires.append(hit & r_last)
            with m.If(hit & r_resp[1]):
                m.d.sync += self.fault[i].eq(1)

            out = self.data[i]
            m.d.comb += [
                out.valid.eq(buf_fifo.r_rdy & ~stop),
                out.payload.eq(buf_fifo.r_data),
                buf_fifo.r_en.eq(out.ready | stop),            # a flush drains the FIFO
            ]
            empties.append(buf_fifo.level == 0)
            with m.If(stop):
                m.d.sync += credits.eq(buf)                    # all back when drained
            with m.Else():
                m.d.sync += credits.eq(credits - Mux(grant, burst.len, 0)
                                       + (out.valid & out.ready))

        # Round robin: after client i is granted, client i+1 has the highest priority.
        free = (inflight != self._max_reads) & ~ar_s_valid & ~stop
        if n == 1:
            m.d.comb += grants[0].eq(eligible[0] & free)
        else:
            first = Signal(range(n))
            with m.If(free):
                with m.Switch(first):
                    for p in range(n):
                        with m.Case(p):
                            for k in range(n):
                                i = (p + k) % n
                                with (m.If if k == 0 else m.Elif)(eligible[i]):
                                    m.d.comb += grants[i].eq(1)
                                    m.d.sync += first.eq((i + 1) % n)
        m.d.comb += take.eq(Cat(*grants).any())
        m.d.sync += inflight.eq(inflight + take - Cat(*retires).any() - dropped)

        drained = (inflight == 0) & ~r_valid & Cat(*empties).all()
        with m.If(self.flush):
            m.d.sync += flushing.eq(1)
        with m.Elif(drained):
            m.d.sync += flushing.eq(0)
        # Not gated by `flushing`: a flush held until idle (as the core holds it) must see it.
        m.d.comb += self.idle.eq(drained & ~Cat(*busies).any())
        return m


class AxiWriter(wiring.Component):
    """The write half of an AXI4 master.

    Commands on :py:`cmd` are cut into bursts like the reader's (:class:`BurstSplitter`);
    their data arrive on :py:`data` in command order. Store-and-forward per burst: data enter
    a FIFO, and a burst is issued (into the AW buffer and the W queue at once) only when all
    its beats are in it, so W never waits on the producer. AW and W leave through skid
    buffers, independent of each other (the slave may take either first); WLAST ends each
    burst; at most ``max_writes`` bursts are issued and await B; BREADY is always high.

    Halt: while :py:`halt` is high no burst is issued (an issued one still in the AW buffer
    is presented: its W beats may already be on the bus); the W beats of issued bursts are
    sent; pending and offered commands are dropped (ready), buffered data of unissued bursts
    discarded and :py:`data` is ready and discards everything. Hold :py:`halt` until
    :py:`idle`; then the writer starts afresh.

    Parameters
    ----------
    addr_width : int
        12 to 64.
    data_width : int
        A power of two from 8 to 1024.
    id_width : int
        1 to 32.
    awid : int
        The AWID of every burst, below ``2**id_width``.
    max_burst : int
        1 to 256 beats.
    max_writes : int
        Bursts awaiting B, at least 1.
    buffer_beats : int, optional
        Depth of the data FIFO; bursts are also at most this long. Default: two of the
        longest bursts, for one beat per cycle.
    prefix : str
        Of the AXI port members (``m_axi``).

    Attributes
    ----------
    m_axi_aw*, m_axi_w*, m_axi_b* :
        :func:`axi4_write_members`.
    cmd : In(stream.Signature(write_cmd_layout(addr_width, data_width)))
        ``beats`` >= 1 words to the bus-aligned ``addr``.
    data : In(stream.Signature(write_data_layout(data_width)))
    fault : Out(1)
        Sticky: a B response was SLVERR or DECERR.
    clear : In(1)
        Clears :py:`fault` (a fault of the same cycle wins).
    halt : In(1)
    idle : Out(1)
        Nothing held, buffered, issued or awaiting B.
    max_len : int
        The longest burst.
    aw_latency : int
        ``2``: from the handshake of a burst's last data beat to its AWVALID, when its
        command was accepted at least ``cmd_latency - 2`` cycles before.
    w_latency : int
        ``3``: from the same handshake to the burst's first WVALID.
    cmd_latency : int
        ``4``: from the acceptance of a command to AWVALID, its data buffered.
    ii : int
        ``1``: one beat per cycle.
    """

    def __init__(self, *, addr_width, data_width, id_width, awid, max_burst, max_writes,
                 buffer_beats=None, prefix="m_axi"):
        owner = "AxiWriter"
        _check_bus(owner, addr_width, data_width, id_width, prefix)
        check_int(owner, "awid", awid, 0, (1 << id_width) - 1)
        check_int(owner, "max_burst", max_burst, 1, MAX_BURST)
        check_int(owner, "max_writes", max_writes, 1)
        page = PAGE_BYTES // (data_width // 8)
        if buffer_beats is None:
            buffer_beats = 2 * min(max_burst, page)
        check_int(owner, "buffer_beats", buffer_beats, 1)
        self._addr_width, self._data_width, self._id_width = addr_width, data_width, id_width
        self._awid, self._max_writes, self._buffer = awid, max_writes, buffer_beats
        self._prefix, self._size = prefix, _log2(data_width // 8)
        self._splitter = BurstSplitter(addr_width=addr_width, data_width=data_width,
                                       max_burst=min(max_burst, buffer_beats))
        super().__init__({
            **axi4_write_members(prefix, addr_width=addr_width, data_width=data_width,
                                 id_width=id_width),
            "cmd": In(stream.Signature(write_cmd_layout(addr_width, data_width))),
            "data": In(stream.Signature(write_data_layout(data_width))),
            "fault": Out(1), "clear": In(1), "halt": In(1), "idle": Out(1),
        })

    buffer_beats = property(lambda self: self._buffer)
    max_len = property(lambda self: self._splitter.max_len)

    aw_latency = 2       # FIFO write and `avail`, AW register
    w_latency = 3        # FIFO write, W length queue, W register
    cmd_latency = BurstSplitter.latency + 1
    ii = 1

    def elaborate(self, platform):
        m = Module()
        axi, halt = _port(self, self._prefix, _WRITE), self.halt
        split = self._splitter
        m.submodules.split = ResetInserter(halt)(split)
        m.d.comb += [split.cmd.valid.eq(self.cmd.valid), self.cmd.ready.eq(split.cmd.ready),
                     split.cmd.payload.addr.eq(self.cmd.payload.addr),
                     split.cmd.payload.beats.eq(self.cmd.payload.beats)]
        burst = split.burst.payload

        m.submodules.aw = aw = SkidBuffer(data.StructLayout({"addr": self._addr_width, "len": 8}))
        m.submodules.w = w = SkidBuffer(data.StructLayout({
            "data": self._data_width, "strb": self._data_width // 8, "last": 1}))
        m.d.comb += [
            axi.awvalid.eq(aw.o.valid), axi.awid.eq(self._awid), axi.awaddr.eq(aw.o.payload.addr),
            axi.awlen.eq(aw.o.payload.len), axi.awsize.eq(self._size),
            axi.awburst.eq(BURST_INCR), axi.awlock.eq(0), axi.awcache.eq(CACHE),
            axi.awprot.eq(PROT), aw.o.ready.eq(axi.awready),
            axi.wvalid.eq(w.o.valid), axi.wdata.eq(w.o.payload.data),
            axi.wstrb.eq(w.o.payload.strb), axi.wlast.eq(w.o.payload.last),
            w.o.ready.eq(axi.wready), axi.bready.eq(1),
        ]

        # Data FIFO; `avail` counts its beats not yet claimed by an issued burst.
        d_layout = write_data_layout(self._data_width)
        m.submodules.dq = dq = fifo.SyncFIFOBuffered(width=d_layout.size, depth=self._buffer)
        avail = Signal(range(self._buffer + 1))
        # Lengths of the issued bursts whose W beats are not all sent.
        m.submodules.wq = wq = fifo.SyncFIFO(width=len(burst.len), depth=self._max_writes)
        outstanding = Signal(range(self._max_writes + 1))

        issue = (split.burst.valid & (avail >= burst.len) & (outstanding != self._max_writes)
                 & aw.i.ready & wq.w_rdy & ~halt)
        m.d.comb += [
            split.burst.ready.eq(issue),
            aw.i.valid.eq(issue), aw.i.payload.addr.eq(burst.addr),
            aw.i.payload.len.eq(burst.len - 1),
            wq.w_en.eq(issue), wq.w_data.eq(burst.len),
        ]

        take = self.data.valid & dq.w_rdy & ~halt
        m.d.comb += [dq.w_data.eq(self.data.payload), dq.w_en.eq(self.data.valid & ~halt),
                     self.data.ready.eq(dq.w_rdy | halt)]

        # W: beats of the head burst of `wq`; `w_left` is what remains after the sent ones.
        w_left = Signal(range(self.max_len + 1))
        have = (w_left != 0) | wq.r_rdy
        left = Mux(w_left != 0, w_left, wq.r_data)
        send = have & dq.r_rdy & w.i.ready
        # Halted with every issued burst sent: what remains in the FIFO is unclaimed.
        discard = halt & ~have & dq.r_rdy
        beat = data.View(d_layout, dq.r_data)
        m.d.comb += [
            dq.r_en.eq(send | discard),
            w.i.valid.eq(send), w.i.payload.data.eq(beat.data), w.i.payload.strb.eq(beat.strb),
            w.i.payload.last.eq(left == 1),
        ]
        with m.If(send):
            m.d.comb += wq.r_en.eq(w_left == 0)
            m.d.sync += w_left.eq(left - 1)
        m.d.sync += avail.eq(avail + take - Mux(issue, burst.len, 0) - discard)

        # B enters a register (BREADY is constant).
        b_valid, b_resp = Signal(), Signal(2)
        m.d.sync += [b_valid.eq(axi.bvalid), b_resp.eq(axi.bresp)]
        done = b_valid & (outstanding != 0)
        m.d.sync += outstanding.eq(outstanding + issue - done)
        with m.If(self.clear):
            m.d.sync += self.fault.eq(0)
        with m.If(b_valid & b_resp[1]):
            m.d.sync += self.fault.eq(1)

        m.d.comb += self.idle.eq(~split.busy & (dq.level == 0) & ~wq.r_rdy & (w_left == 0)
                                 & ~w.o.valid & ~aw.o.valid & (outstanding == 0) & ~b_valid)
        return m
