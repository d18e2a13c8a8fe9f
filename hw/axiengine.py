"""AxiEngine: the datapath of the memory-attached core (``memory = "axi"``).

It runs one job (:mod:`spec.job`) from its descriptor, head by head and, within a head, block
by block (``q_lanes`` consecutive queries a block):

1. **Q**: the block's query rows are read (one command a row) into the lanes: DLZS's query
   (sparse mode) and a two-row FIFO to SU-FA.
2. **K**: the keys the block sees (``span``, the longest of its queries' lengths) are read once,
   tile by tile, into a ring of ``k_tiles`` tiles on chip (a tile is read only when its slot is
   free) and, in sparse mode, broadcast to every lane's DLZS (a lane stops at its own length).
3. **Selection and V**: each lane's SADS selects per tile; :class:`hw.rass.RassScheduler`
   collects the lanes' selections and orders the V reads (RASS); V rows land in a ring of
   :data:`V_TILES` tiles. In dense mode every key is taken and V is read a tile at a time.
4. **Attention**: per lane a feeder takes the lane's keys in SADS order (dense: natural order),
   waits for each V row, and hands K (from the K ring) and V to the lane's SU-FA.
5. **O**: the lanes' rows leave in query order, are packed into bus words (32-bit elements) and
   written, one command a row.

A tile's slots are freed when every lane of the block is past it. The next block starts when
every lane of the current one has taken its last key and every tile is freed (SU-FA, the
divide and the writes of its rows overlap with the next block). Contiguous rows (a stride of
exactly one packed row) are read in one command a tile, otherwise one command a row.

The engine knows nothing of registers: :class:`hw.axicore.SofaAxiCore` gives it the
descriptor (stable while a job runs) and a start pulse, watches ``done`` and the faults, and
resets it after a fault.

**On-demand K/V** (``kv_source = "project"``, :mod:`hw.projpath`): before each head's first
block :class:`hw.wload.WeightLoader` reads the head's weights into the units; step 2 reads X
rows into the ring (then an X ring) and passes them through :class:`hw.khat.KhatPredictor`,
whose K̂ rows go to DLZS; in step 3 the key's X row goes through
:class:`hw.project.ProjectionUnit` instead of a V read, into a KV ring that step 4 takes K and
V from. Everything else is the same; the given mode's netlist does not change.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import AxiReader, AxiWriter, axi4_read_members, axi4_write_members
from hw.axiparts import descriptor_layout, event_layout, lane_source
from hw.dlzs import DLZS, row_layout
from hw.khat import KhatPredictor
from hw.kgroup import packed_keys, release_k_word
from hw.project import ProjectionUnit
from hw.projpath import khat_broadcast, khat_feed, projected_rows
from hw.rass import RassScheduler
from hw.rows import RowAssembler, RowPacker, unpack_row
from hw.sads import SADS, sel_layout
from hw.sadsbank import SADSBank
from hw.skid import SkidBuffer
from hw.sufa import SUFA, out_layout
from hw.vfetch import fetched_rows
from hw.wload import WeightLoader
from spec.job import TENSORS, WEIGHTS, bus_bytes, elem_bytes, projects, row_beats, x_row_beats
from spec.timing import V_TILES


__all__ = ["AxiEngine", "descriptor_layout", "V_TILES"]


TILE_BITS = 16                               # global tile numbers (compared as differences)


class AxiEngine(wiring.Component):
    """One job at a time over an AXI4 master (see the module docstring).

    Parameters
    ----------
    cfg : SofaConfig
        ``memory = "axi"``.
    id_width : int, optional
        Bits of its AXI IDs: ``axi_id_width`` (default), less the core index bits when
        several engines share the bus through :class:`hw.axiarb.AxiArbiter`.

    Attributes
    ----------
    m_axi_* :
        The AXI4 master (:func:`hw.axi.axi4_read_members`, :func:`hw.axi.axi4_write_members`):
        ARID 0 for Q, 1 for K, 2 for V (projecting: 1 for X, 2 for the weights); AWID 3.
    job : In(descriptor_layout(cfg))
        Stable from :py:`start` until :py:`done`.
    start : In(1)
        Begin the job (a pulse).
    done : Out(1)
        Every O row written and acknowledged (high until the next start).
    read_fault : Out(3)
        Per read stream (Q, K, V): an R beat came with SLVERR or DECERR.
    write_fault : Out(1)
        A B response was SLVERR or DECERR.
    stop : In(1)
        After a fault: no new reads or writes; reads in flight drain, bursts issued complete.
    idle : Out(1)
        Nothing in flight on the bus.
    events : Out(event_layout(cfg))
    """

    def __init__(self, cfg, *, id_width=None):
        self._cfg = cfg
        id_width = cfg.axi_id_width if id_width is None else id_width
        L = cfg.q_lanes
        self._rw = row_beats(cfg)
        self._ow = row_beats(cfg, out=True)
        self._dlzs = [DLZS(cfg) for _ in range(L)]
        sads = SADS if cfg.predict_keys == 1 else SADSBank
        self._sads = [sads(cfg, counter_width=cfg.derived.batch.bit_length()) for _ in range(L)]
        self._sufa = [SUFA(cfg, counter_width=2) for _ in range(L)]
        self._vtag = data.StructLayout({"slot": range(V_TILES), "pos": range(cfg.block_size)})
        bus = dict(addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
                   id_width=id_width, max_burst=cfg.axi_max_burst)
        depth = max(2 * cfg.axi_max_burst, 2 * self._rw)
        if projects(cfg):
            # Q, X (ARID 1, the K stream's) and the weights (ARID 2, V's): no K or V reads
            self._kw = x_row_beats(cfg)
            self._khat = KhatPredictor(cfg.d, cfg.d_model, cfg.khat_lanes)
            self._proj = ProjectionUnit(cfg.d, cfg.d_model, cfg.proj_macs,
                                        tag_width=self._vtag.size)
            self._wload = WeightLoader(cfg)
            clients = [(0, 2 * self._rw, 0), (1, max(2 * cfg.axi_max_burst, 2 * self._kw), 0),
                       (2, 2 * cfg.axi_max_burst, 0)]
        else:
            self._kw = self._rw
            clients = [(0, 2 * self._rw, 0), (1, depth, 0), (2, depth, self._vtag.size)]
        self._reader = AxiReader(**bus, max_reads=cfg.axi_max_reads, clients=clients)
        self._writer = AxiWriter(**bus, awid=3, max_writes=cfg.axi_max_reads)
        widths = dict(addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
                      id_width=id_width)
        self._axi = {**axi4_read_members("m_axi", **widths),
                     **axi4_write_members("m_axi", **widths)}
        super().__init__({
            **self._axi,
            "job": In(descriptor_layout(cfg)),
            "start": In(1),
            "done": Out(1),
            "read_fault": Out(3),
            "write_fault": Out(1),
            "stop": In(1),
            "idle": Out(1),
            "events": Out(event_layout(cfg)),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def sads(self):
        """The SADS units (with ``predict_keys > 1`` those of every lane's SADSBank)."""
        if self._cfg.predict_keys == 1:
            return tuple(self._sads)
        return tuple(u for bank in self._sads for u in bank.units_list)

    @property
    def sufa(self):
        return tuple(self._sufa)

    def elaborate(self, platform):
        m = Module()
        cfg, der = self._cfg, self._cfg.derived
        L, B, KT, VT = cfg.q_lanes, cfg.block_size, cfg.k_tiles, V_TILES
        P = cfg.predict_keys
        PB = (P - 1).bit_length()                    # bits of a key's slot in its word
        RW, OW, EB = self._rw, self._ow, elem_bytes(cfg)
        BUS, BB = cfg.axi_data_width, bus_bytes(cfg)
        AW = cfg.axi_addr_width
        job, lanes = self.job, range(L)
        rd, wr = self._reader, self._writer
        m.submodules.reader, m.submodules.writer = rd, wr
        for name, member in self._axi.items():
            inner = rd if name in rd.signature.members else wr
            if member.flow == Out:
                m.d.comb += getattr(self, name).eq(getattr(inner, name))
            else:
                m.d.comb += getattr(inner, name).eq(getattr(self, name))
        m.d.comb += [self.read_fault.eq(rd.fault), self.write_fault.eq(wr.fault),
                     rd.flush.eq(self.stop), wr.halt.eq(self.stop),
                     self.idle.eq(rd.idle & wr.idle)]
        dlzs, sads, sufa = self._dlzs, self._sads, self._sufa
        for i in lanes:
            m.submodules[f"dlzs{i}"], m.submodules[f"sads{i}"] = dlzs[i], sads[i]
            m.submodules[f"sufa{i}"] = sufa[i]
            m.d.comb += [sads[i].top_k.eq(job.top_k), sads[i].radius.eq(job.radius),
                         sufa[i].scale_log2e.eq(job.scale)]
        proj = projects(cfg)
        KW = self._kw                                # beats of a K (projecting: X) row
        kt = "x" if proj else "k"                    # the tensor of the K reader
        if proj:
            m.submodules.khat, m.submodules.proj = khat, pu = self._khat, self._proj
            m.submodules.wload = wload = self._wload
            m.d.comb += [khat.shift.eq(job.khat_shift),
                         *(getattr(pu, n).eq(job[n])
                           for n in ("k_mult", "k_rshift", "v_mult", "v_rshift"))]
            wiring.connect(m, wload.codes, khat.w)
            wiring.connect(m, wload.w, pu.w)
            wiring.connect(m, wload.bias, pu.bias)
            wiring.connect(m, wload.cmd, rd.cmd[2])
            m.d.comb += [wload.beat.valid.eq(rd.data[2].valid),
                         rd.data[2].ready.eq(wload.beat.ready),
                         wload.beat.payload.data.eq(rd.data[2].payload.data),
                         wload.beat.payload.last.eq(rd.data[2].payload.last)]
        dense = job.dense
        packed = RW * BB                             # bytes of a packed Q/K/V row
        ev = self.events

        def wrap_inc(sig, n):
            return Mux(sig == n - 1, 0, sig + 1)

        def tile_pos(index, key0):
            """A key's position in its tile, whose first key ``key0`` is a multiple of B: with
            B a power of two the index's low bits, without a subtractor."""
            if B & (B - 1):
                return (index - key0)[:len(Signal(range(B)))]
            return index[:(B - 1).bit_length()]

        def rows_from(client, asm, tag=False):
            """A read client's beats into a row assembler (the error flag is the reader's
            fault, which the core acts on)."""
            src = rd.data[client]
            m.d.comb += [asm.i.valid.eq(src.valid), src.ready.eq(asm.i.ready),
                         asm.i.payload.data.eq(src.payload.data),
                         asm.i.payload.last.eq(src.payload.last)]
            if tag:
                m.d.comb += asm.i.payload.tag.eq(src.payload.tag)

        # -- job sequencing: heads, then blocks of up to q_lanes queries -------------------------
        head = Signal(16)
        b0 = Signal(24)                              # the block's first query
        n_b = Signal(range(L + 1))
        lens = [Signal(der.seq_len_width, name=f"len{i}") for i in lanes]
        span = Signal(der.seq_len_width)
        in_block = Signal(L)
        base = {t: Signal(AW, name=f"{t}_head") for t in TENSORS}     # the head's rows
        w_head, wl_start = {}, Signal()
        if proj:
            base["x"] = Signal(AW, name="x_head")
            w_head = {w: Signal(AW, name=f"{w}_head") for w in WEIGHTS}
            m.d.comb += [wload.start.eq(wl_start),
                         *(wload.bases[w].eq(w_head[w]) for w in WEIGHTS)]
        heads_of = list(base) if proj else TENSORS
        running = Signal()
        block_go = Signal()
        block_busy = Signal()
        finished = Signal(L)                         # lanes past their last key
        rows_total, rows_done = Signal(40), Signal(40)
        k_issued = Signal(TILE_BITS)                 # tiles of K asked for (global)
        released = Signal(TILE_BITS)                 # tiles whose slots are free again
        # k_issued - released, as a counter: a difference's carry chain would sit on the K
        # command's valid and on the block's end
        k_ahead = Signal(TILE_BITS)
        k_step = Signal()                            # k_issued moves on
        q_left = Signal(range(L + 1))
        rass_busy = Signal()
        m.d.comb += self.done.eq(running & ~block_busy & (rows_done == rows_total) & wr.idle)

        # The next block's sizes, registered in PREP so that BLOCK starts from flip-flops (the
        # sums and compares over the job's 24-bit fields are a long path otherwise). The queries
        # left and the block's first position follow b0 in registers of their own, so PREP
        # adds once and compares once.
        left = Signal(24)                            # job.queries - b0
        pos0 = Signal(33)                            # job.q_start + b0
        size_c = Mux(left < L, left, L)
        last_pos = pos0 + size_c
        size = Signal(range(L + 1))
        mask = Signal(L)                             # lanes of the next block
        span_c = Signal(der.seq_len_width)           # keys the block's rows see
        next_lens = [Signal(der.seq_len_width, name=f"next_len{i}") for i in lanes]
        head_done = Signal()                         # the block is the head's last
        job_done = Signal()                          # and the head is the job's last
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [running.eq(1), head.eq(0), b0.eq(0), rows_done.eq(0),
                                 left.eq(job.queries), pos0.eq(job.q_start),
                                 rows_total.eq(job.queries * job.heads),
                                 *[base[t].eq(job[f"{t}_base"]) for t in heads_of]]
                    if proj:
                        m.d.sync += [wl_start.eq(1),
                                     *(w_head[w].eq(job[f"{w}_base"]) for w in WEIGHTS)]
                        m.next = "WLOAD"
                    else:
                        m.next = "PREP"
            if proj:
                with m.State("WLOAD"):               # the head's weights into the units
                    m.d.sync += wl_start.eq(0)
                    with m.If(~wl_start & ~wload.busy):
                        m.next = "PREP"
            with m.State("PREP"):
                m.d.sync += [size.eq(size_c), mask.eq(Cat(*(left > i for i in lanes))),
                             head_done.eq(left <= L), job_done.eq(head + 1 == job.heads),
                             span_c.eq(Mux(job.causal & (last_pos < job.seq_len), last_pos,
                                           job.seq_len))]
                for i in lanes:
                    pos = pos0 + (i + 1)
                    m.d.sync += next_lens[i].eq(Mux(job.causal & (pos < job.seq_len), pos,
                                                    job.seq_len))
                m.next = "BLOCK"
            with m.State("BLOCK"):
                m.d.comb += block_go.eq(1)
                m.d.sync += [n_b.eq(size), q_left.eq(size), block_busy.eq(1), span.eq(span_c),
                             in_block.eq(mask), *[lens[i].eq(next_lens[i]) for i in lanes]]
                m.next = "RUN"
            with m.State("RUN"):
                all_in = (q_left == 0) & (finished == (1 << L) - 1) & ~rass_busy & \
                    (k_ahead == 0)                   # every K tile released
                with m.If(all_in):
                    m.d.sync += block_busy.eq(0)
                    with m.If(head_done):
                        m.d.sync += [b0.eq(0), head.eq(head + 1),
                                     left.eq(job.queries), pos0.eq(job.q_start),
                                     *[base[t].eq(base[t] + job[f"{t}_head_stride"])
                                       for t in heads_of]]
                        with m.If(job_done):
                            m.next = "DRAIN"
                        with m.Else():
                            if proj:
                                m.d.sync += [wl_start.eq(1),
                                             *(w_head[w].eq(w_head[w] + job.w_head_stride)
                                               for w in WEIGHTS)]
                                m.next = "WLOAD"
                            else:
                                m.next = "PREP"
                    with m.Else():
                        m.d.sync += [b0.eq(b0 + n_b), left.eq(left - n_b),
                                     pos0.eq(pos0 + n_b)]
                        m.next = "PREP"
            with m.State("DRAIN"):
                with m.If(self.done):
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"

        # -- Q: the block's rows into the lanes ---------------------------------------------------
        q_addr = Signal(AW)
        q_cmd = rd.cmd[0]
        with m.If(block_go):
            m.d.sync += q_addr.eq(Mux(b0 == 0, base["q"], q_addr))
        m.d.comb += [q_cmd.valid.eq(block_busy & (q_left != 0)),
                     q_cmd.payload.addr.eq(q_addr), q_cmd.payload.beats.eq(RW)]
        with m.If(q_cmd.valid & q_cmd.ready):
            m.d.sync += [q_left.eq(q_left - 1), q_addr.eq(q_addr + job.q_stride)]
        m.submodules.q_rows = q_rows = RowAssembler(RW, BUS)
        rows_from(0, q_rows)
        q_lane = Signal(range(L))
        q_row = Signal(row_layout(cfg))
        m.d.comb += q_row.as_value().eq(unpack_row(q_rows.o.payload.row, cfg, EB))
        q_fifos, lane_ok = [], Signal()
        for i in lanes:
            m.submodules[f"q_fifo{i}"] = f = fifo.SyncFIFOBuffered(width=q_row.shape().size,
                                                                   depth=2)
            q_fifos.append(f)
            mine = q_lane == i
            m.d.comb += [
                dlzs[i].q.valid.eq(q_rows.o.valid & mine & ~dense & lane_ok),
                dlzs[i].q.payload.data.eq(q_row),
                f.w_en.eq(q_rows.o.valid & mine & lane_ok),
                f.w_data.eq(q_row.as_value()),
                sufa[i].q.valid.eq(f.r_rdy), sufa[i].q.payload.data.eq(f.r_data),
                f.r_en.eq(sufa[i].q.ready),
            ]
            with m.If(mine):
                m.d.comb += lane_ok.eq(f.w_rdy & (dense | dlzs[i].q.ready))
        m.d.comb += q_rows.o.ready.eq(lane_ok)
        with m.If(block_go):
            m.d.sync += q_lane.eq(0)
        with m.Elif(q_rows.o.valid & q_rows.o.ready):
            m.d.sync += q_lane.eq(q_lane + 1)

        # -- K: the block's keys, tile by tile, into the ring (and to DLZS) -----------------------
        k_left = Signal(der.seq_len_width)           # K rows still to ask for
        k_addr = Signal(AW)
        k_cmd = rd.cmd[1]
        tile_rows = Mux(k_left < B, k_left, B)
        room = k_ahead < KT
        k_wslot = Signal(range(KT))
        k_row = Signal(der.seq_len_width)            # the block's row being written
        k_filled = Signal(TILE_BITS)                 # tiles complete in the ring (global)
        kb_valid = Signal(L)                         # lane i has yet to take the row below
        kb_last = Signal(L)
        kb_adv = Signal()
        k_keys = Signal(range(P + 1))                # keys predicted this cycle (the counter)
        m.d.comb += kb_adv.eq(Cat(*(~kb_valid[i] | dlzs[i].k.ready for i in lanes)).all())
        if P == 1:
            k_sub = Signal(range(B + 1))                 # rows of the tile still to ask for
            # projecting, the same reader brings X rows (KW beats) into the ring
            kpacked = KW * BB
            contiguous_k = Signal()
            m.d.sync += contiguous_k.eq(job[f"{kt}_stride"] == kpacked)
            with m.If(block_go):
                m.d.sync += [k_left.eq(span_c), k_addr.eq(base[kt]), k_sub.eq(0)]
            with m.If(k_sub == 0):                       # a new tile
                m.d.comb += [k_cmd.valid.eq((k_left != 0) & room & block_busy),
                             k_cmd.payload.beats.eq(Mux(contiguous_k, tile_rows * KW, KW))]
                with m.If(k_cmd.valid & k_cmd.ready):
                    m.d.comb += k_step.eq(1)
                    m.d.sync += [k_issued.eq(k_issued + 1),
                                 k_sub.eq(Mux(contiguous_k, 0, tile_rows - 1)),
                                 k_left.eq(k_left - Mux(contiguous_k, tile_rows, 1)),
                                 k_addr.eq(k_addr + Mux(contiguous_k, tile_rows * kpacked,
                                                        job[f"{kt}_stride"]))]
            with m.Else():                               # the tile's further rows, one a command
                m.d.comb += [k_cmd.valid.eq(1), k_cmd.payload.beats.eq(KW)]
                with m.If(k_cmd.ready):
                    m.d.sync += [k_sub.eq(k_sub - 1), k_left.eq(k_left - 1),
                                 k_addr.eq(k_addr + job[f"{kt}_stride"])]
            m.d.comb += k_cmd.payload.addr.eq(k_addr)

            m.submodules.k_rows = k_rows = RowAssembler(KW, BUS)
            rows_from(1, k_rows)
            m.submodules.k_ring = k_ring = memory.Memory(shape=KW * BUS, depth=KT * B,
                                                         init=[])
            k_wr = k_ring.write_port()
            k_wpos = Signal(range(B))
            kb_row = Signal(row_layout(cfg))
            k_take = k_rows.o.valid & k_rows.o.ready
            if proj:                                     # X rows to phase 1.1, K̂ to DLZS
                x_ready = khat_feed(m, cfg, khat, k_rows.o.payload.row, k_take, dense)
            m.d.comb += [k_rows.o.ready.eq(dense | (x_ready if proj else kb_adv)),
                         k_wr.addr.eq(k_wslot * B + k_wpos),
                         k_wr.data.eq(k_rows.o.payload.row), k_wr.en.eq(k_take),
                         *([] if proj else [
                             k_keys.eq(k_take & ~dense & Cat(*(in_block[i] & (k_row < lens[i])
                                                               for i in lanes)).any())])]
            for i in lanes:
                m.d.comb += [dlzs[i].k.valid.eq(kb_valid[i]),
                             dlzs[i].k.payload.data.eq(kb_row),
                             dlzs[i].k.payload.last.eq(kb_last[i])]
            release_k_word(m, dlzs, kb_valid, kb_adv)
            if proj:
                khat_broadcast(m, cfg, khat, block_go, in_block, lens, kb_valid, kb_last,
                               kb_adv, kb_row, k_keys)
            with m.If(block_go):
                m.d.sync += k_row.eq(0)
            with m.Elif(k_take):
                tile_end = (k_wpos == B - 1) | (k_row == span - 1)
                m.d.sync += [k_row.eq(k_row + 1), k_wpos.eq(Mux(tile_end, 0, k_wpos + 1)),
                             *([] if proj else [kb_row.as_value().eq(
                                 unpack_row(k_rows.o.payload.row, cfg, EB))])]
                with m.If(tile_end):
                    m.d.sync += [k_wslot.eq(wrap_inc(k_wslot, KT)), k_filled.eq(k_filled + 1)]
                if not proj:
                    with m.If(~dense):
                        m.d.sync += [kb_valid.eq(Cat(*(in_block[i] & (k_row < lens[i])
                                                       for i in lanes))),
                                     kb_last.eq(Cat(*(k_row == lens[i] - 1 for i in lanes)))]

        else:
            k_take, k_ring, k_rd_slots = packed_keys(
                m, cfg, rd.data[1], dlzs, block_go, block_busy, span, span_c, lens, in_block,
                dense, base["k"], k_left, k_addr, k_cmd, tile_rows, room, k_issued, k_wslot,
                k_row, k_filled, kb_valid, kb_last, kb_adv, k_keys)
            m.d.comb += k_step.eq(k_cmd.valid & k_cmd.ready)     # a tile a command

        # -- V: which rows (RASS), fetched into the V ring ----------------------------------------
        m.submodules.rass = rass = RassScheduler(cfg)
        for i in lanes:
            wiring.connect(m, sads[i].sel, rass.sel[i])
        for i in lanes:
            # a skid buffer cuts SADS's ready chain into the K broadcast, as in SofaCore
            m.submodules[f"ahat_skid{i}"] = skid = SkidBuffer(dlzs[i].ahat.payload.shape(),
                                                              skid=cfg.skid_buffers)
            wiring.connect(m, dlzs[i].ahat, skid.i)
            wiring.connect(m, skid.o, sads[i].ahat)
        m.d.comb += [rass.start.eq(block_go & ~dense),
                     rass.lanes.eq(mask),
                     rass.rass.eq(job.rass), rass_busy.eq(rass.busy)]
        if not proj:
            (v_tile, v_slot, v_ring, sent, arrive, arrive_slot, v_at, v_valid, req_rows,
             v_ahead, v_step) = fetched_rows(
                m, cfg, rd, rows_from, self._vtag, job, base, rass, dense, block_go,
                block_busy, span_c, k_filled, tile_pos, wrap_inc, packed, RW, TILE_BITS)
        else:                                        # the rows projected on demand
            (v_tile, v_slot, v_ring, sent, arrive, arrive_slot, v_at,
             projected) = projected_rows(m, cfg, pu, rass, k_ring, dense, block_go, block_busy,
                                         span_c, k_wslot, k_filled, released, tile_pos,
                                         wrap_inc, TILE_BITS, VT)
            req_rows = 1
            v_valid = Signal(VT * B)

        # -- per lane: the keys in order, with K and V, to SU-FA ----------------------------------
        lane_tile = [Signal(TILE_BITS, name=f"lane_tile{i}") for i in lanes]
        lane_key0 = [Signal(der.seq_len_width, name=f"lane_key0_{i}") for i in lanes]
        lane_ks = [Signal(range(KT), name=f"lane_kslot{i}") for i in lanes]
        lane_vs = [Signal(range(VT), name=f"lane_vslot{i}") for i in lanes]
        f_valid = Signal(L)
        fetched = []
        clear_slot = Signal(VT)
        for i in lanes:
            src = lane_source(m, cfg, i, dense, block_go, lens[i], in_block[i], rass)
            beat = src.payload
            pos = tile_pos(beat.index, lane_key0[i])
            ready_row = beat.empty | (v_valid.bit_select(lane_vs[i] * B + pos, 1) &
                                      (~dense | (k_filled != lane_tile[i])))
            if proj:                                 # K and V side by side in the KV ring
                v_rd = v_ring.read_port()
            else:
                k_rd, v_rd = k_ring.read_port(), v_ring.read_port()
            v_data = v_rd.data[8 * cfg.d:] if proj else v_rd.data
            meta = Signal(sel_layout(cfg), name=f"f_meta{i}")
            if proj:
                k_data = v_rd.data[:8 * cfg.d]
            elif P == 1:
                k_at, k_data = lane_ks[i] * B + pos, k_rd.data
            else:                                    # the key's word, then its row in it
                k_at = lane_ks[i] * (B // P) + (pos >> PB)
                k_data = k_rd_slots(k_rd.data)[meta.index[:PB]]
            kv = sufa[i].kv
            adv = ~f_valid[i] | kv.ready
            # A tile's last beat steps the lane to the next tile a cycle later, with a one-cycle
            # bubble: the lane registers' enables then come from a flip-flop, not from the
            # ring-slot lookup (the memory board's longest path), and SU-FA's mac_cycles per
            # key hide the bubble.
            tile_end = Signal(name=f"tile_end{i}")
            end_row = Signal(name=f"end_row{i}")
            take = src.valid & ready_row & adv & ~tile_end
            m.d.comb += [
                src.ready.eq(ready_row & adv & ~tile_end),
                *([] if proj else [k_rd.en.eq(adv)]), v_rd.en.eq(adv),
                *([] if proj else [k_rd.addr.eq(k_at)]), v_rd.addr.eq(lane_vs[i] * B + pos),
                kv.valid.eq(f_valid[i]), kv.payload.index.eq(meta.index),
                kv.payload.k.eq(unpack_row(k_data, cfg, EB)),
                kv.payload.v.eq(unpack_row(v_data, cfg, EB)),
                kv.payload.empty.eq(meta.empty), kv.payload.first.eq(meta.first),
                kv.payload.last.eq(meta.last), kv.payload.row_last.eq(meta.row_last),
            ]
            with m.If(adv):
                m.d.sync += [f_valid[i].eq(take), meta.eq(beat)]
            fetched.append(take & ~beat.empty)
            m.d.sync += [tile_end.eq(take & beat.last & ~block_go), end_row.eq(beat.row_last)]
            with m.If(block_go):
                m.d.sync += [lane_tile[i].eq(k_issued), lane_key0[i].eq(0),
                             lane_ks[i].eq(k_wslot), lane_vs[i].eq(v_slot),
                             finished[i].eq(~rass.lanes[i])]
            with m.Elif(tile_end):
                m.d.sync += [lane_tile[i].eq(lane_tile[i] + 1), lane_key0[i].eq(lane_key0[i] + B),
                             lane_ks[i].eq(wrap_inc(lane_ks[i], KT)),
                             lane_vs[i].eq(wrap_inc(lane_vs[i], VT))]
                with m.If(end_row):
                    m.d.sync += finished[i].eq(1)
        # V rows requested into each slot and not yet arrived. Without RASS a row two lanes
        # select is fetched twice, and the lanes may be past the tile before the second copy
        # lands: the slot must not be reused until it has.
        v_pend = [Signal(range(max(L * cfg.k_max, B) + 1), name=f"v_pend{s}") for s in range(VT)]
        for s in range(VT):
            inc = Mux(sent & (v_slot == s), req_rows, 0)
            dec = arrive & (arrive_slot == s)
            m.d.sync += v_pend[s].eq(v_pend[s] + inc - dec)
        # a tile is free once every lane is past it (or done with its row) and its V is in
        past = Cat(*(finished[i] | ((lane_tile[i] - released)[:TILE_BITS] != 0) for i in lanes))
        rel_slot = Signal(range(VT))
        landed = Cat(*(v_pend[s] == 0 for s in range(VT))).bit_select(rel_slot, 1)
        release = (released != k_filled) & (released != v_tile) & past.all() & landed
        if not proj:
            m.d.sync += v_ahead.eq(v_ahead + v_step - release)
        m.d.sync += k_ahead.eq(k_ahead + k_step - release)
        with m.If(release):
            m.d.sync += [released.eq(released + 1), rel_slot.eq(wrap_inc(rel_slot, VT))]
            m.d.comb += clear_slot.eq(1 << rel_slot)
        for s in range(VT):
            for p in range(B):
                bit = s * B + p
                with m.If(arrive & (v_at == bit)):
                    m.d.sync += v_valid[bit].eq(1)
                with m.Elif(clear_slot[s]):
                    m.d.sync += v_valid[bit].eq(0)

        # -- O: the lanes' rows in query order, packed and written --------------------------------
        m.submodules.sizes = sizes = fifo.SyncFIFOBuffered(width=(L).bit_length(), depth=4)
        m.d.comb += [sizes.w_en.eq(block_go), sizes.w_data.eq(size)]
        m.submodules.o_skid = o_skid = SkidBuffer(out_layout(cfg), skid=cfg.skid_buffers)
        op = Signal(range(L))
        with m.Switch(op):
            for i in lanes:
                with m.Case(i):
                    m.d.comb += [o_skid.i.valid.eq(sufa[i].o.valid & sizes.r_rdy),
                                 o_skid.i.payload.eq(sufa[i].o.payload),
                                 sufa[i].o.ready.eq(o_skid.i.ready & sizes.r_rdy)]
        with m.If(o_skid.i.valid & o_skid.i.ready & o_skid.i.payload.last):
            with m.If(op == sizes.r_data - 1):
                m.d.sync += op.eq(0)
                m.d.comb += sizes.r_en.eq(1)
            with m.Else():
                m.d.sync += op.eq(op + 1)
        m.submodules.pack = pack = RowPacker(der.out_width, cfg.d, BUS)
        o_addr = Signal(AW)
        o_head = Signal(AW)
        o_in_head = Signal(24)
        cmd_pending = Signal()
        first_ok = ~o_skid.o.payload.first | ~cmd_pending
        m.d.comb += [pack.i.valid.eq(o_skid.o.valid & first_ok),
                     pack.i.payload.eq(o_skid.o.payload),
                     o_skid.o.ready.eq(pack.i.ready & first_ok),
                     wr.cmd.valid.eq(cmd_pending), wr.cmd.payload.beats.eq(OW)]
        with m.If(self.start):
            m.d.sync += [o_addr.eq(job.o_base), o_head.eq(job.o_base), o_in_head.eq(0)]
        with m.Elif(pack.i.valid & pack.i.ready & o_skid.o.payload.first):
            m.d.sync += [cmd_pending.eq(1), wr.cmd.payload.addr.eq(o_addr)]
            with m.If(o_in_head == job.queries - 1):
                m.d.sync += [o_in_head.eq(0), o_head.eq(o_head + job.o_head_stride),
                             o_addr.eq(o_head + job.o_head_stride)]
            with m.Else():
                m.d.sync += [o_in_head.eq(o_in_head + 1), o_addr.eq(o_addr + job.o_stride)]
        with m.If(wr.cmd.valid & wr.cmd.ready):
            m.d.sync += cmd_pending.eq(0)
        m.d.comb += [wr.data.valid.eq(pack.o.valid), wr.data.payload.data.eq(pack.o.payload.data),
                     wr.data.payload.strb.eq(pack.o.payload.strb), pack.o.ready.eq(wr.data.ready)]
        with m.If(pack.o.valid & pack.o.ready & pack.o.payload.last):
            m.d.sync += rows_done.eq(rows_done + 1)

        # -- events ---------------------------------------------------------------------------
        # Two register stages on the way to the counter bank, which sits far from the
        # datapath on the board: the counts arrive two cycles late, the totals are the same.
        raw, staged = Signal(event_layout(cfg)), Signal(event_layout(cfg))
        m.d.sync += [staged.eq(raw), ev.eq(staged)]
        ev = raw
        beat = [rd.data[c].valid & rd.data[c].ready for c in range(3)]
        kv_bytes = (0, 0) if proj else (Mux(beat[1], BB, 0), Mux(beat[2], BB, 0))
        if proj:                                 # X on the K stream, the weights on V's
            m.d.comb += [ev.bytes_x.eq(Mux(beat[1], BB, 0)), ev.bytes_w.eq(Mux(beat[2], BB, 0)),
                         ev.rows_projected.eq(projected)]
        m.d.comb += [
            ev.predict.eq(kb_valid.any()),
            ev.k_rows_predict.eq(k_keys),
            ev.kv_rows_fetch.eq(sum(fetched)),
            ev.starved.eq(block_busy & ~f_valid.any()),
            ev.sufa_stall.eq(Cat(*(f_valid[i] & ~sufa[i].kv.ready for i in lanes)).any()),
            ev.out_stall.eq(wr.data.valid & ~wr.data.ready),
            ev.bytes_q.eq(Mux(beat[0], BB, 0)), ev.bytes_k.eq(kv_bytes[0]),
            ev.bytes_v.eq(kv_bytes[1]),
            ev.bytes_o.eq(Mux(self.m_axi_wvalid & self.m_axi_wready, BB, 0)),
            ev.ar_stall.eq(self.m_axi_arvalid & ~self.m_axi_arready),
            ev.r_wait.eq(~rd.idle & ~self.m_axi_rvalid),
            ev.aw_stall.eq(self.m_axi_awvalid & ~self.m_axi_awready),
            ev.w_stall.eq(self.m_axi_wvalid & ~self.m_axi_wready),
            ev.b_wait.eq(~wr.idle & ~self.m_axi_bvalid),
        ]
        return m
