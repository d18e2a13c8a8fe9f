"""The generated top level, ``sofa_top``: the SOFA core (DLZS → SADS → SU-FA over on-chip K/V)."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, enum, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import ConfigError
from hw.dlzs import DLZS, row_layout
from hw.sads import SADS, sel_layout
from hw.sufa import SUFA, out_layout


__all__ = ["SofaCore", "sofa_top", "Reg", "COUNTERS", "kv_load_layout", "query_layout"]


class Reg(enum.IntEnum):
    """Register addresses of :class:`SofaCore`'s register port (counters follow at
    ``COUNTER_BASE``)."""
    SEQ_LEN = 0         # S, 1 … max_seq_len
    TOP_K = 1           # keys kept per tile, 1 … k_max
    RADIUS = 2          # sphere radius R; radius_inf disables clipping
    SCALE = 3           # scale_log2e, c_bits bits with c_frac fraction bits
    DENSE = 4           # 1: dense mode (every key, natural order, no prediction)
    STATUS = 5          # read: bit 0 busy, bit 1 error; write: bit 0 clears the counters,
                        # bit 1 clears the error flag
    ERROR_ADDR = 6      # read: the register or K/V row address of the last rejected write


COUNTER_BASE = 16

#: Counter registers, in address order from ``COUNTER_BASE``. All count since the last clear.
COUNTERS = (
    "cycles",           # every cycle
    "busy_cycles",      # cycles with at least one query in flight
    "predict_cycles",   # cycles the K stream into DLZS holds a row (prediction working)
    "qk_cycles",        # cycles SU-FA's Q·K multipliers work
    "pv_cycles",        # cycles SU-FA's P·V multipliers work (accumulate or rescale)
    "starved_cycles",   # busy, but SU-FA has no key to take (waiting for the selection)
    "sufa_stall_cycles",  # a fetched key waits for SU-FA (SU-FA is the bottleneck)
    "out_stall_cycles",   # an output element waits for the host (backpressure on O)
    "k_rows_predict",   # K rows read for DLZS
    "kv_rows_fetch",    # K+V row pairs read for SU-FA
    "keys",             # keys accumulated by SU-FA
    "misses",
    "rescales",
    "rows",             # output rows completed
    "blocked_radius",   # SADS
    "blocked_full",
    "entered",
    "sort_steps",
    "tiles",
    "macs",             # multiplies issued: mac_lanes × (qk_cycles + pv_cycles)
)


def query_layout(cfg):
    return data.StructLayout({"data": row_layout(cfg)})


def kv_load_layout(cfg):
    """One K/V row pair written to row ``index`` of the on-chip buffers."""
    return data.StructLayout({
        "index": cfg.derived.index_width,
        "k": row_layout(cfg),
        "v": row_layout(cfg),
    })


class SofaCore(wiring.Component):
    """One attention head: queries in, ``O`` out, K and V held on chip.

    K/V rows are written into two :class:`~amaranth.lib.memory.Memory` buffers of
    ``max_seq_len`` rows over :py:`kv_load`. Each query on :py:`q` is then one row of the
    pipeline; the stages are streams, so they overlap tile by tile and row by row:

    * sparse mode: a K reader streams K rows ``0 … S-1`` into :class:`hw.dlzs.DLZS` (one read
      per key per query); its Â stream goes into :class:`hw.sads.SADS`, whose per-tile
      selection is fetched (K and V rows of each selected key, one read each) into
      :class:`hw.sufa.SUFA`. While SU-FA works on tile j, SADS sorts tile j+1 and DLZS predicts
      the keys after it: the only buffers between stages are pipeline registers, so a stage
      waits on the next only through backpressure and never on a whole row.
    * dense mode: a generator emits every key of every tile in natural order into the same
      fetch and SU-FA (plain FlashAttention: the speed-up baseline on the same hardware).

    The query goes to DLZS and, through a two-row FIFO, to SU-FA, so DLZS can start the next
    row while SU-FA finishes the current one.

    Run-time parameters and counters sit behind a register port (:class:`Reg`,
    :data:`COUNTERS` from ``COUNTER_BASE``): a write takes effect at once, so the host writes
    them while the core is idle; a write of an out-of-range value, or any parameter write while
    busy, is ignored and sets the error flag (and :attr:`Reg.ERROR_ADDR`). A K/V row index
    outside ``max_seq_len`` is ignored the same way. Nothing is clamped.

    Parameters
    ----------
    cfg : SofaConfig
        ``q_lanes`` must be 1 (more query lanes are not built yet).
    iterative_divider : bool
        Passed to :class:`hw.sufa.SUFA`.

    Attributes
    ----------
    kv_load : In(stream.Signature(kv_load_layout(cfg)))
        Always ready: one K/V row pair per cycle.
    q : In(stream.Signature(query_layout(cfg)))
        Queries, one row each.
    o : Out(stream.Signature(out_layout(cfg)))
        ``O`` of each query in query order, ``d`` beats per row (``first``/``last``).
    reg_addr, reg_wdata, reg_we : In
        Register write port (``reg_we`` writes ``reg_wdata`` to ``reg_addr``).
    reg_rdata : Out(32)
        The register at ``reg_addr`` (combinational).
    busy : Out(1)
        At least one query in flight.
    ii : int
        Cycles per key of SU-FA, ``mac_cycles``; the prediction takes ``dlzs_cycles`` per key
        of the sequence. A row takes about ``max(S·dlzs_cycles, selected·mac_cycles)`` cycles in
        sparse mode and ``S·mac_cycles`` in dense mode; :mod:`sim.perf` models it exactly
        enough to project large S.
    latency : int
        Cycles from the acceptance of a one-key dense query (S = 1) to its first :py:`o` beat,
        pipeline empty: ``sufa.latency + 3`` (query FIFO, dense generator, K/V read).
    """

    def __init__(self, cfg, *, iterative_divider=False):
        if cfg.q_lanes != 1:
            raise ConfigError(f"q_lanes = {cfg.q_lanes}: SofaCore builds one query lane so far; "
                              f"set q_lanes = 1")
        self._cfg = cfg
        self._iterative = iterative_divider
        # Built here so their latency/ii are known before elaboration.
        self._dlzs = DLZS(cfg)
        self._sads = SADS(cfg)
        self._sufa = SUFA(cfg, iterative_divider=iterative_divider)
        super().__init__({
            "kv_load": In(stream.Signature(kv_load_layout(cfg))),
            "q": In(stream.Signature(query_layout(cfg))),
            "o": Out(stream.Signature(out_layout(cfg))),
            "reg_addr": In(range(COUNTER_BASE + len(COUNTERS))),
            "reg_wdata": In(32),
            "reg_we": In(1),
            "reg_rdata": Out(32),
            "busy": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def ii(self):
        return self._cfg.derived.mac_cycles

    @property
    def latency(self):
        return self._sufa.latency + 3

    def elaborate(self, platform):
        m = Module()
        cfg, der = self._cfg, self._cfg.derived
        S_MAX, B = cfg.max_seq_len, cfg.block_size

        m.submodules.dlzs = dlzs = self._dlzs
        m.submodules.sads = sads = self._sads
        m.submodules.sufa = sufa = self._sufa

        # -- registers ---------------------------------------------------------------------
        seq_len = Signal(range(S_MAX + 1), init=S_MAX)
        top_k = Signal(der.topk_width, init=cfg.k_max)
        radius = Signal(der.radius_width, init=der.radius_inf)
        scale = Signal(cfg.c_bits, init=1 << max(0, cfg.c_frac - 10))
        dense = Signal()
        error = Signal()
        error_addr = Signal(32)
        clear = Signal()
        rows_in = Signal(32)
        rows_out = Signal(32)
        m.d.comb += self.busy.eq(rows_in != rows_out)

        def reject(addr):
            m.d.sync += [error.eq(1), error_addr.eq(addr)]

        wd = self.reg_wdata
        with m.If(self.reg_we):
            with m.Switch(self.reg_addr):
                for reg, sig, lo, hi in ((Reg.SEQ_LEN, seq_len, 1, S_MAX),
                                         (Reg.TOP_K, top_k, 1, cfg.k_max),
                                         (Reg.RADIUS, radius, 0, der.radius_inf),
                                         (Reg.SCALE, scale, 0, (1 << cfg.c_bits) - 1),
                                         (Reg.DENSE, dense, 0, 1)):
                    with m.Case(reg):
                        with m.If(self.busy | (wd < lo) | (wd > hi)):
                            reject(reg)
                        with m.Else():
                            m.d.sync += sig.eq(wd)
                with m.Case(Reg.STATUS):
                    m.d.comb += clear.eq(wd[0])
                    with m.If(wd[1]):
                        m.d.sync += error.eq(0)
                with m.Default():
                    reject(self.reg_addr)
        m.d.comb += [
            sads.top_k.eq(top_k),
            sads.radius.eq(radius),
            sufa.scale_log2e.eq(scale),
        ]

        # -- K/V buffers --------------------------------------------------------------------
        row = row_layout(cfg)
        m.submodules.k_mem = k_mem = memory.Memory(shape=row, depth=S_MAX, init=[])
        m.submodules.v_mem = v_mem = memory.Memory(shape=row, depth=S_MAX, init=[])
        k_wr, v_wr = k_mem.write_port(), v_mem.write_port()
        load = self.kv_load.payload
        in_range = load.index < S_MAX
        m.d.comb += [
            self.kv_load.ready.eq(1),
            k_wr.addr.eq(load.index), k_wr.data.eq(load.k),
            v_wr.addr.eq(load.index), v_wr.data.eq(load.v),
            k_wr.en.eq(self.kv_load.valid & in_range),
            v_wr.en.eq(self.kv_load.valid & in_range),
        ]
        with m.If(self.kv_load.valid & ~in_range):
            reject(load.index)

        # -- query fork: DLZS (sparse) or the dense generator, and SU-FA's query FIFO ---------
        m.submodules.q_fifo = q_fifo = fifo.SyncFIFOBuffered(width=row.size, depth=2)
        predict_rows = Signal(range(4))         # queries whose K sweep has not started
        dense_rows = Signal(range(4))
        take_q = Signal()
        m.d.comb += [
            self.q.ready.eq(q_fifo.w_rdy & Mux(dense, dense_rows < 3,
                                               dlzs.q.ready & (predict_rows < 3))),
            take_q.eq(self.q.valid & self.q.ready),
            dlzs.q.valid.eq(self.q.valid & q_fifo.w_rdy & ~dense & (predict_rows < 3)),
            dlzs.q.payload.eq(self.q.payload),
            q_fifo.w_en.eq(take_q),
            q_fifo.w_data.eq(self.q.payload.data.as_value()),
            sufa.q.valid.eq(q_fifo.r_rdy),
            sufa.q.payload.data.eq(q_fifo.r_data),
            q_fifo.r_en.eq(sufa.q.ready),
        ]
        with m.If(take_q):
            m.d.sync += rows_in.eq(rows_in + 1)
        with m.If(sufa.o.valid & sufa.o.ready & sufa.o.payload.last):
            m.d.sync += rows_out.eq(rows_out + 1)

        # -- K reader: K rows 0 … S-1 into DLZS for each predicted query -----------------------
        k_rd = k_mem.read_port()
        kr_active = Signal()
        kr_ptr = Signal(range(S_MAX + 1))
        kr_valid = Signal()
        kr_last = Signal()
        kr_adv = Signal()
        kr_start = Signal()
        m.d.comb += [
            kr_adv.eq(~kr_valid | dlzs.k.ready),
            kr_start.eq(~kr_active & (predict_rows != 0)),
            k_rd.en.eq(kr_adv),
            k_rd.addr.eq(kr_ptr),
            dlzs.k.valid.eq(kr_valid),
            dlzs.k.payload.data.eq(k_rd.data),
            dlzs.k.payload.last.eq(kr_last),
        ]
        m.d.sync += predict_rows.eq(predict_rows + (dlzs.q.valid & dlzs.q.ready) - kr_start)
        with m.If(kr_start):
            m.d.sync += [kr_active.eq(1), kr_ptr.eq(0)]
        with m.If(kr_adv):
            m.d.sync += kr_valid.eq(kr_active)
            with m.If(kr_active):
                m.d.sync += [kr_last.eq(kr_ptr == seq_len - 1), kr_ptr.eq(kr_ptr + 1)]
                with m.If(kr_ptr == seq_len - 1):
                    m.d.sync += kr_active.eq(0)
        m.d.comb += sads.ahat.valid.eq(dlzs.ahat.valid)
        m.d.comb += [sads.ahat.payload.eq(dlzs.ahat.payload), dlzs.ahat.ready.eq(sads.ahat.ready)]

        # -- dense generator: every key of every tile, natural order -------------------------
        dg_active = Signal()
        dg_ptr = Signal(range(S_MAX + 1))
        dg_pos = Signal(range(B))
        dg = Signal(sel_layout(cfg))
        dg_ready = Signal()
        dg_start = Signal()
        m.d.comb += [
            dg_start.eq(~dg_active & (dense_rows != 0)),
            dg.index.eq(dg_ptr),
            dg.first.eq(dg_pos == 0),
            dg.last.eq((dg_pos == B - 1) | (dg_ptr == seq_len - 1)),
            dg.row_last.eq(dg_ptr + (B - dg_pos) >= seq_len),
        ]
        m.d.sync += dense_rows.eq(dense_rows + (take_q & dense) - dg_start)
        with m.If(dg_start):
            m.d.sync += [dg_active.eq(1), dg_ptr.eq(0), dg_pos.eq(0)]
        with m.If(dg_active & dg_ready):
            m.d.sync += [dg_ptr.eq(dg_ptr + 1), dg_pos.eq(Mux(dg_pos == B - 1, 0, dg_pos + 1))]
            with m.If(dg_ptr == seq_len - 1):
                m.d.sync += dg_active.eq(0)

        # -- fetch: K and V rows of each selected key into SU-FA ----------------------------
        k_fr, v_fr = k_mem.read_port(), v_mem.read_port()
        f_valid = Signal()
        f_meta = Signal(sel_layout(cfg))
        f_adv = Signal()
        src_valid = Mux(dense, dg_active, sads.sel.valid)
        src = Mux(dense, dg.as_value(), sads.sel.payload.as_value())
        src = data.View(sel_layout(cfg), src)
        m.d.comb += [
            f_adv.eq(~f_valid | sufa.kv.ready),
            sads.sel.ready.eq(f_adv & ~dense),
            dg_ready.eq(f_adv & dense),
            k_fr.en.eq(f_adv), v_fr.en.eq(f_adv),
            k_fr.addr.eq(src.index), v_fr.addr.eq(src.index),
            sufa.kv.valid.eq(f_valid),
            sufa.kv.payload.index.eq(f_meta.index),
            sufa.kv.payload.k.eq(k_fr.data),
            sufa.kv.payload.v.eq(v_fr.data),
            sufa.kv.payload.empty.eq(f_meta.empty),
            sufa.kv.payload.first.eq(f_meta.first),
            sufa.kv.payload.last.eq(f_meta.last),
            sufa.kv.payload.row_last.eq(f_meta.row_last),
        ]
        with m.If(f_adv):
            m.d.sync += [f_valid.eq(src_valid), f_meta.eq(src)]
        wiring.connect(m, sufa.o, wiring.flipped(self.o))

        # -- counters ------------------------------------------------------------------------
        events = {
            "cycles": 1,
            "busy_cycles": self.busy,
            "predict_cycles": kr_valid,
            "starved_cycles": self.busy & ~f_valid,
            "sufa_stall_cycles": f_valid & ~sufa.kv.ready,
            "out_stall_cycles": self.o.valid & ~self.o.ready,
            "k_rows_predict": dlzs.k.valid & dlzs.k.ready,
            "kv_rows_fetch": f_adv & src_valid & ~src.empty,
        }
        mine = {name: Signal(32, name=f"cnt_{name}") for name in events}
        for name, sig in mine.items():
            with m.If(clear):
                m.d.sync += sig.eq(0)
            with m.Else():
                m.d.sync += sig.eq(sig + events[name])
        # The units' own counters cannot be cleared; the core reads them relative to a base.
        unit_src = {name: getattr(sufa, name) for name in
                    ("qk_cycles", "pv_cycles", "keys", "misses", "rescales", "rows")}
        unit_src.update({name: getattr(sads, name) for name in
                         ("blocked_radius", "blocked_full", "entered", "sort_steps", "tiles")})
        values = {}
        for name, src_sig in unit_src.items():
            base = Signal(32, name=f"base_{name}")
            with m.If(clear):
                m.d.sync += base.eq(src_sig)
            values[name] = (src_sig - base)[:32]
        values.update(mine)
        values["macs"] = ((values["qk_cycles"] + values["pv_cycles"]) * cfg.mac_lanes)[:32]

        with m.Switch(self.reg_addr):
            for reg, sig in ((Reg.SEQ_LEN, seq_len), (Reg.TOP_K, top_k), (Reg.RADIUS, radius),
                             (Reg.SCALE, scale), (Reg.DENSE, dense)):
                with m.Case(reg):
                    m.d.comb += self.reg_rdata.eq(sig)
            with m.Case(Reg.STATUS):
                m.d.comb += self.reg_rdata.eq(self.busy | (error << 1))
            with m.Case(Reg.ERROR_ADDR):
                m.d.comb += self.reg_rdata.eq(error_addr)
            for n, name in enumerate(COUNTERS):
                with m.Case(COUNTER_BASE + n):
                    m.d.comb += self.reg_rdata.eq(values[name])
        return m


def sofa_top(cfg):
    """The top-level component for ``cfg``: :class:`SofaCore`."""
    return SofaCore(cfg)
