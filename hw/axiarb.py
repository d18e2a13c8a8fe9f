"""AxiArbiter: several AXI4 masters onto one AXI4 master port (``cores > 1``).

Reads and writes are arbitrated separately, round-robin among the masters with a request:
the master after the last one granted goes first. A grant holds from the cycle its address
is presented until the handshake, so ``ARVALID``/``AWVALID`` and the address never change
while they wait. The master's index is put above its ID bits (``ARID``/``AWID`` =
``{index, id}``), and ``R`` and ``B`` go back to the master the ID's top bits name, so reads
of different masters may interleave and complete out of order as the slave likes.

Write data follow their addresses: the index of a granted ``AW`` enters a queue the moment
the address is first presented (not at its handshake: a slave may wait for ``WVALID``
before it takes ``AW``), and ``W`` passes the beats of the master at the head of the queue
until ``WLAST``. A master's ``W`` beats wait, ``WVALID`` held, until its address is granted.
The queue holds ``masters · max_writes`` entries (every master's bursts awaiting their
data); when it is full no address is granted.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring

from hw.axi import axi4_master_members, check_int


__all__ = ["AxiArbiter"]


def _flip(members):
    return {name: member.flip() for name, member in members.items()}


class AxiArbiter(wiring.Component):
    """Round-robin AXI4 arbiter of ``masters`` masters (see the module docstring).

    Parameters
    ----------
    masters : int
        2 to 16.
    addr_width, data_width : int
        Of every port.
    id_width : int
        ID bits of each master; the shared port has ``id_width + index_width``.
    max_writes : int
        Write bursts a master may have issued before their data are sent (sizes the ``W``
        order queue).

    Attributes
    ----------
    s<i>_axi_* :
        The port master ``i`` drives (slave flows).
    m_axi_* :
        The shared master port, :func:`hw.axi.axi4_master_members` with the wider ID.
    index_width : int
        Bits of a master's index, ``ceil(log2(masters))``.
    latency : int
        ``0``: address, data and responses pass combinationally.
    """

    latency = 0

    def __init__(self, *, masters, addr_width, data_width, id_width, max_writes):
        check_int("AxiArbiter", "masters", masters, 2, 16)
        check_int("AxiArbiter", "id_width", id_width, 1, 31)
        check_int("AxiArbiter", "max_writes", max_writes, 1)
        self._n, self._idw, self._max_writes = masters, id_width, max_writes
        self.index_width = (masters - 1).bit_length()
        bus = dict(addr_width=addr_width, data_width=data_width)
        members = {}
        for i in range(masters):
            members |= _flip(axi4_master_members(f"s{i}_axi", **bus, id_width=id_width))
        members |= axi4_master_members("m_axi", **bus, id_width=id_width + self.index_width)
        self._suffixes = [n[len("m_axi_"):] for n in members if n.startswith("m_axi_")]
        super().__init__(members)

    masters = property(lambda self: self._n)

    def _port(self, i, suffix):
        return getattr(self, f"s{i}_axi_{suffix}")

    def _arbitrate(self, m, ch, gate):
        """Round-robin grant of channel ``ch`` (``"ar"``/``"aw"``) onto the shared port,
        ``gate`` allowing a new grant; returns (the granted index, first presentation)."""
        N = self._n
        req = Cat(self._port(i, f"{ch}valid") for i in range(N))
        last = Signal(range(N), name=f"{ch}_last")
        held = Signal(name=f"{ch}_held")
        cur = Signal(range(N), name=f"{ch}_cur")
        pick = Signal(range(N), name=f"{ch}_pick")
        after = Signal(N, name=f"{ch}_after")
        m.d.comb += after.eq(req & ~((Const(2, N + 1) << last) - 1)[:N])
        for j in reversed(range(N)):                   # the lowest requester wins ...
            with m.If(req[j]):
                m.d.comb += pick.eq(j)
        for j in reversed(range(N)):                   # ... the lowest after `last` first
            with m.If(after[j]):
                m.d.comb += pick.eq(j)
        sel = Mux(held, cur, pick)
        valid = Signal(name=f"{ch}_valid")
        m.d.comb += valid.eq(Mux(held, 1, req.any() & gate))
        mv, mr = getattr(self, f"m_axi_{ch}valid"), getattr(self, f"m_axi_{ch}ready")
        m.d.comb += mv.eq(valid)
        for s in self._suffixes:
            if s.startswith(ch) and s not in (f"{ch}valid", f"{ch}ready", f"{ch}id"):
                with m.Switch(sel):
                    for i in range(N):
                        with m.Case(i):
                            m.d.comb += getattr(self, f"m_axi_{s}").eq(self._port(i, s))
        with m.Switch(sel):
            for i in range(N):
                with m.Case(i):
                    m.d.comb += getattr(self, f"m_axi_{ch}id").eq(
                        Cat(self._port(i, f"{ch}id"), Const(i, self.index_width)))
                    m.d.comb += self._port(i, f"{ch}ready").eq(mr & valid)
        with m.If(valid & mr):
            m.d.sync += [held.eq(0), last.eq(sel)]
        with m.Elif(valid & ~held):
            m.d.sync += [held.eq(1), cur.eq(pick)]
        return sel, valid & ~held

    def _route(self, m, ch, suffixes):
        """Responses of ``ch`` (``"r"``/``"b"``) to the master the ID's top bits name."""
        mid = getattr(self, f"m_axi_{ch}id")
        owner = mid[self._idw:]
        mv = getattr(self, f"m_axi_{ch}valid")
        for i in range(self._n):
            m.d.comb += [self._port(i, f"{ch}valid").eq(mv & (owner == i)),
                         self._port(i, f"{ch}id").eq(mid[:self._idw])]
            for s in suffixes:
                m.d.comb += self._port(i, s).eq(getattr(self, f"m_axi_{s}"))
        with m.Switch(owner):
            for i in range(self._n):
                with m.Case(i):
                    m.d.comb += getattr(self, f"m_axi_{ch}ready").eq(self._port(i, f"{ch}ready"))

    def elaborate(self, platform):
        m = Module()
        N = self._n
        # -- reads ------------------------------------------------------------------------------
        self._arbitrate(m, "ar", 1)
        self._route(m, "r", ("rdata", "rresp", "rlast"))
        # -- writes -----------------------------------------------------------------------------
        m.submodules.order = order = fifo.SyncFIFOBuffered(
            width=self.index_width, depth=N * self._max_writes)
        aw_sel, aw_first = self._arbitrate(m, "aw", order.w_rdy)
        m.d.comb += [order.w_data.eq(aw_sel), order.w_en.eq(aw_first)]
        w_src = order.r_data
        with m.Switch(w_src):
            for i in range(N):
                with m.Case(i):
                    m.d.comb += [
                        self.m_axi_wvalid.eq(order.r_rdy & self._port(i, "wvalid")),
                        self._port(i, "wready").eq(order.r_rdy & self.m_axi_wready),
                        self.m_axi_wdata.eq(self._port(i, "wdata")),
                        self.m_axi_wstrb.eq(self._port(i, "wstrb")),
                        self.m_axi_wlast.eq(self._port(i, "wlast")),
                    ]
        m.d.comb += order.r_en.eq(self.m_axi_wvalid & self.m_axi_wready & self.m_axi_wlast)
        self._route(m, "b", ("bresp",))
        return m
