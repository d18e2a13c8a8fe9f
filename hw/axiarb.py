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

**Shared reads** (``share_id``): masters in groups (``group_mask``: master ``i``'s leader is
``i & group_mask``) whose :py:`follow` bit is set do not read ID ``share_id`` themselves.
Their leader's read of that ID is held back from arbitration until every follower presents
one too (the same read: the masters are built to ask for the same rows in the same order);
the leader's handshake takes the followers' addresses with it, and each beat of the read goes
to the leader and to every follower at once, marked on :py:`shared`. A follower's other reads
go as usual. While :py:`solo` is high (a job being stopped) no read is shared: leaders and
followers issue their own (a follower's once its leader has none in flight, so that its reads
of the ID return in order), and the beats of shared reads still in flight reach all their
masters (a one-bit queue per master remembers which of its reads were shared). The masters of
a group must hold ``RREADY`` high (as :class:`hw.axi.AxiReader`
does): a shared beat is taken when all of them are ready, and a master that is not would see
``RVALID`` without the beat being its own.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

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
    max_reads : int
        Reads of ``share_id`` a master may have in flight (sizes the queues of shared
        reads).
    share_id : int or None
        The ID whose reads followers share with their leader (None: no sharing, and no
        :py:`follow`, :py:`group_mask` or :py:`shared`).

    Attributes
    ----------
    s<i>_axi_* :
        The port master ``i`` drives (slave flows).
    m_axi_* :
        The shared master port, :func:`hw.axi.axi4_master_members` with the wider ID.
    follow : In(masters)
        Per master: take reads of ``share_id`` from the leader (stable during a job).
    group_mask : In(index_width)
        A master's leader is its index AND this.
    shared : Out(masters)
        Per master: it receives a beat of its leader's shared read this cycle.
    solo : In(1)
        Share no new read.
    index_width : int
        Bits of a master's index, ``ceil(log2(masters))``.
    latency : int
        ``0``: address, data and responses pass combinationally.
    """

    latency = 0

    def __init__(self, *, masters, addr_width, data_width, id_width, max_writes,
                 share_id=None, max_reads=1):
        check_int("AxiArbiter", "masters", masters, 2, 16)
        check_int("AxiArbiter", "id_width", id_width, 1, 31)
        check_int("AxiArbiter", "max_writes", max_writes, 1)
        if share_id is not None:
            check_int("AxiArbiter", "share_id", share_id, 0, (1 << id_width) - 1)
            check_int("AxiArbiter", "max_reads", max_reads, 1)
        self._max_reads = max_reads
        self._n, self._idw, self._max_writes = masters, id_width, max_writes
        self._share = share_id
        self.index_width = (masters - 1).bit_length()
        bus = dict(addr_width=addr_width, data_width=data_width)
        members = {}
        for i in range(masters):
            members |= _flip(axi4_master_members(f"s{i}_axi", **bus, id_width=id_width))
        members |= axi4_master_members("m_axi", **bus, id_width=id_width + self.index_width)
        if share_id is not None:
            members |= {"follow": In(masters), "group_mask": In(self.index_width),
                        "shared": Out(masters), "solo": In(1)}
        self._suffixes = [n[len("m_axi_"):] for n in members if n.startswith("m_axi_")]
        super().__init__(members)

    masters = property(lambda self: self._n)

    def _port(self, i, suffix):
        return getattr(self, f"s{i}_axi_{suffix}")

    def _leader(self, i):
        return Const(i, self.index_width) & self.group_mask

    def _arbitrate(self, m, ch, gate):
        """Round-robin grant of channel ``ch`` (``"ar"``/``"aw"``) onto the shared port,
        ``gate`` allowing a new grant; returns (the granted index, first presentation)."""
        N = self._n
        req = Cat(self._port(i, f"{ch}valid") for i in range(N))
        share = ch == "ar" and self._share is not None
        if share:
            # a follower's shared read waits for its leader's; the leader's waits for all
            is_k = Cat(self._port(i, "arvalid") & (self._port(i, "arid") == self._share)
                       for i in range(N))
            ready = Cat(Cat(~(self.follow[f] & (self._leader(f) == i)) | is_k[f]
                            for f in range(N) if f != i).all() for i in range(N))
            # whether each read of share_id was shared, in issue order per master
            self._was_shared = []
            for i in range(N):
                q = fifo.SyncFIFO(width=1, depth=self._max_reads)   # readable a cycle on
                m.submodules[f"shared_q{i}"] = q
                self._was_shared.append(q)
            # alone, a follower's read waits for its leader's reads to return (one ID, one order)
            lead_busy = Cat(Cat(q.r_rdy & (self._leader(i) == o)
                                for o, q in enumerate(self._was_shared)).any()
                            for i in range(N))
            eligible = Signal(N, name="ar_eligible")
            with m.If(self.solo):
                m.d.comb += eligible.eq(req & ~(self.follow & is_k & lead_busy))
            with m.Else():
                m.d.comb += eligible.eq(req & ~(self.follow & is_k) & ~(is_k & ~ready))
            req = eligible
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
        if share:
            # the leader's shared read takes its followers' with it
            k_go = Signal(name="ar_k_go")
            m.d.comb += k_go.eq(mr & valid & is_k.bit_select(sel, 1))
            takes = Cat(self.follow[i] & is_k[i] & (self._leader(i) == sel) & ~self.solo
                        for i in range(N))
            for i in range(N):
                with m.If(k_go & takes[i]):
                    m.d.comb += self._port(i, "arready").eq(1)
            for i, q in enumerate(self._was_shared):
                m.d.comb += [q.w_en.eq(k_go & (sel == i)), q.w_data.eq(takes.any())]
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
        share = ch == "r" and self._share is not None
        to = []                                  # master i takes this beat
        for i in range(self._n):
            t = owner == i
            if share:
                head = Signal(name=f"r_shared_head{i}")  # the owner's oldest read was shared
                with m.Switch(owner):
                    for o in range(self._n):
                        with m.Case(o):
                            m.d.comb += head.eq(self._was_shared[o].r_data)
                extra = self.follow[i] & (self._leader(i) == owner) & head & \
                    (mid[:self._idw] == self._share)
                t = t | extra
            to.append(t)
            m.d.comb += [self._port(i, f"{ch}valid").eq(mv & t),
                         self._port(i, f"{ch}id").eq(mid[:self._idw])]
            for s in suffixes:
                m.d.comb += self._port(i, s).eq(getattr(self, f"m_axi_{s}"))
        m.d.comb += getattr(self, f"m_axi_{ch}ready").eq(
            Cat(~to[i] | self._port(i, f"{ch}ready") for i in range(self._n)).all())
        if share:
            m.d.comb += self.shared.eq(Cat(
                mv & self.m_axi_rready & to[i] & (owner != i) for i in range(self._n)))
            last_k = mv & self.m_axi_rready & self.m_axi_rlast & (mid[:self._idw] == self._share)
            for o in range(self._n):
                m.d.comb += self._was_shared[o].r_en.eq(last_k & (owner == o))

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
