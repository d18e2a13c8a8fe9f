"""The generated top level, ``sofa_top``: the SOFA core (DLZS → SADS → SU-FA over on-chip K/V)."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.counters import CounterBank, unit_increments
from hw.dlzs import DLZS, row_layout
from hw.params import parameter_read_cases, parameter_signals, parameter_write_cases
from hw.adapt import AdaptiveGate
from hw.divider import Divider
from hw.tail import TailBlend, vbar_layout
from hw.sads import SADS, sel_layout
from hw.sadsbank import SADSBank
from hw.skid import SkidBuffer
from hw.sufa import SUFA, out_layout
from spec.config import ConfigError
from spec.regmap import (COUNTER_BASE, N_REGS, Reg, counter_names, register, register_map)
from spec.timing import core_latency


__all__ = ["SofaCore", "sofa_top", "kv_load_layout", "query_layout"]


def query_layout(cfg):
    """One query row; ``last`` marks the final query of a call (it closes a partial group of
    ``q_lanes`` queries; with one lane it has no effect)."""
    return data.StructLayout({"data": row_layout(cfg), "last": 1})


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

    Several keys a cycle: with ``predict_keys = P > 1`` the K buffer is ``P`` banks (row ``j``
    in bank ``j mod P`` at ``j / P``), the K reader reads ``P`` consecutive rows a cycle into
    a DLZS with ``P`` key slots, and each lane selects with a :class:`hw.sadsbank.SADSBank`
    (its tiles dealt out to several SADS units); the fetch reads the selected key's bank.

    Query lanes: with ``q_lanes = L`` there are L copies of DLZS, SADS, SU-FA and the fetch.
    Queries fill the lanes in order; a group closes with its L-th query or a query with
    ``last``. The K reader reads each K row once for the whole group (each lane takes it from
    the same read port), and in dense mode the lanes take every key together; in sparse mode
    each lane fetches its own selection. Outputs leave in query order.

    Run-time parameters and counters sit behind a register port whose contract is
    :mod:`spec.regmap` (addresses, widths, reset values, legal ranges; counters from
    ``COUNTER_BASE``, ``counter_width`` bits each, wrapping; none with ``counter_width = 0``,
    when they read 0): a write takes effect at once, so the host writes them while the core is
    idle; a write of an out-of-range value, or any parameter write while busy, is ignored and
    sets the error flag (and ``ERROR_ADDR``). A K/V row index outside ``max_seq_len`` is
    ignored the same way. Nothing is clamped.

    Parameters
    ----------
    cfg : SofaConfig
    iterative_divider : bool
        Passed to :class:`hw.sufa.SUFA`.

    Attributes
    ----------
    kv_load : In(stream.Signature(kv_load_layout(cfg)))
        One K/V row pair per cycle while no query is in flight; not ready while :py:`busy`
        (a load waits for the queries in flight instead of changing their K and V).
    q : In(stream.Signature(query_layout(cfg)))
        Queries, one row each; ``last`` on the final query of a call closes a partial group.
    o : Out(stream.Signature(out_layout(cfg)))
        ``O`` of each query in query order, ``d`` beats per row (``first``/``last``).
    reg_addr, reg_wdata, reg_we : In
        Register write port (``reg_we`` writes ``reg_wdata`` to ``reg_addr``).
    reg_rdata : Out(32)
        The register at the ``reg_addr`` of the previous cycle (one cycle of read latency:
        the counters live in a :class:`hw.counters.CounterBank` memory).
    busy : Out(1)
        At least one query in flight.
    ii : int
        Cycles per key of SU-FA, ``mac_cycles``; the prediction takes ``dlzs_cycles`` per
        ``predict_keys`` keys of the sequence. A row takes about ``max(ceil(S / predict_keys)
        ·dlzs_cycles, selected·mac_cycles)`` cycles in sparse mode and ``S·mac_cycles`` in
        dense mode; :mod:`sim.perf` models it exactly enough to project large S.
    register_map : dict
        ``{name: address}`` of the registers and counters, also in the JSON sidecar.
    latency : int
        Cycles from the acceptance of a one-key dense query (S = 1) to its first :py:`o` beat,
        pipeline empty: ``sufa.latency + 4`` (query FIFO, dense generator, K/V read, output
        skid buffer).
    """

    def __init__(self, cfg, *, iterative_divider=False):
        if cfg.memory != "onchip":
            raise ConfigError(f"memory = {cfg.memory!r}: SofaCore holds K/V on chip "
                              f"(memory = 'onchip')")
        self._cfg = cfg
        self._iterative = iterative_divider
        # Built here so their latency/ii are known before elaboration.
        L = cfg.q_lanes
        self._dlzs = [DLZS(cfg) for _ in range(L)]
        # The units' counters only need to be wide enough for the core to take their
        # per-cycle increments (the difference to the previous cycle, modulo 2^width).
        on = cfg.counter_width > 0
        sads = SADS if cfg.predict_keys == 1 else SADSBank
        self._sads = [sads(cfg, counter_width=cfg.derived.batch.bit_length() if on else 0)
                      for _ in range(L)]
        self._sufa = [SUFA(cfg, iterative_divider=iterative_divider, counter_width=2 if on else 0)
                      for _ in range(L)]
        super().__init__({
            "kv_load": In(stream.Signature(kv_load_layout(cfg))),
            "q": In(stream.Signature(query_layout(cfg))),
            "o": Out(stream.Signature(out_layout(cfg))),
            "reg_addr": In(range(N_REGS)),
            "reg_wdata": In(32),
            "reg_we": In(1),
            "reg_rdata": Out(32),
            "busy": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def iterative_divider(self):
        return self._iterative

    @property
    def ii(self):
        return self._cfg.derived.mac_cycles

    @property
    def register_map(self):
        """``{name: address}`` of every register and counter (written to the sidecar)."""
        return {r["name"]: r["address"] for r in self.registers}

    @property
    def registers(self):
        """:func:`spec.regmap.register_map`: every register and counter with its width,
        access, reset value, legal range and description (written to the sidecar)."""
        return register_map(self._cfg)

    @property
    def latency(self):
        return core_latency(self._cfg, iterative_divider=self._iterative)

    def _counters(self, m, events, clear):
        """The :class:`hw.counters.CounterBank` of :mod:`spec.regmap`'s counters: the core's
        events, and the units' counters turned into per-cycle increments."""
        cfg = self._cfg
        sads = self._sads if cfg.predict_keys == 1 else \
            [u for bank in self._sads for u in bank.units_list]
        unit_incs, unit_top = unit_increments(m, cfg, self._sufa, sads)
        top = {name: 1 for name in events} | {"kv_rows_fetch": cfg.q_lanes} | unit_top
        if cfg.predict_keys > 1:
            top["k_rows_predict"] = cfg.predict_keys
        incs = dict(events) | unit_incs
        names = counter_names()
        m.submodules.counters = bank = CounterBank({n: top[n] for n in names},
                                                   width=cfg.counter_width)
        m.d.comb += [bank.inc[n].eq(incs[n]) for n in names]
        m.d.comb += bank.clear.eq(clear)
        return bank

    def _tail(self, m, params, dense, tail_on, vbar_ok, seq_len, take_kv, v_rd, gates):
        """The tail blend (docs/numerics.md, "Tail blend"): the head's mean V row and a
        :class:`hw.tail.TailBlend` behind each lane's SU-FA; returns the lanes' ``O`` streams.

        The mean V row is computed while the core is idle, before the first query that needs
        it: after a K/V load or a ``SEQ_LEN`` write it is stale, and with the blend on no
        query is taken until a sweep has read V rows ``0 … S−1`` through lane 0's fetch port
        (one a cycle, ``d`` column sums of ``sbits(max_seq_len·2^(W−1))`` bits) and divided
        each sum by S (``TAIL_MEAN_ROUND``, an iterative :class:`hw.divider.Divider`). With
        the blend off the lanes' ``O`` bypass the units (no added latency)."""
        cfg = self._cfg
        d = cfg.d
        cw = (cfg.max_seq_len << (cfg.data_width - 1)).bit_length() + 1
        m.d.comb += tail_on.eq((params["adapt_mass"] != 0) & (params["tail_scale"] != 0)
                               & ~dense)
        vbar = Signal(vbar_layout(cfg))
        vb = [Signal(signed(cfg.derived.out_width), name=f"vbar{e}") for e in range(d)]
        m.d.comb += vbar.eq(Cat(*vb))
        colsum = [Signal(signed(cw), name=f"colsum{e}") for e in range(d)]
        stale = Signal(init=1)
        with m.If(take_kv | (self.reg_we & (self.reg_addr == Reg.SEQ_LEN))):
            m.d.sync += stale.eq(1)
        m.submodules.vbar_div = div = Divider(cw + cfg.out_frac, cfg.derived.seq_len_width,
                                              cfg.derived.out_width, iterative=True,
                                              tag_shape=range(d))
        ptr = Signal(range(cfg.max_seq_len + 1))
        rv = Signal()                          # a V row arrives on the port
        e_in = Signal(range(d + 1))
        e_out = Signal(range(d + 1))
        row = data.View(row_layout(cfg), v_rd.data)
        m.d.comb += div.o.ready.eq(1)
        with m.FSM(name="vbar_fsm"):
            with m.State("READY"):
                m.d.comb += vbar_ok.eq(~stale)
                with m.If(tail_on & stale & ~self.busy):
                    m.d.sync += [stale.eq(0), ptr.eq(0), rv.eq(0)] + \
                        [c.eq(0) for c in colsum]
                    m.next = "SUM"
            with m.State("SUM"):
                more = ptr < seq_len
                with m.If(more):
                    m.d.comb += [v_rd.addr.eq(ptr), v_rd.en.eq(1)]
                m.d.sync += [rv.eq(more), ptr.eq(Mux(more, ptr + 1, ptr))]
                with m.If(rv):
                    m.d.sync += [c.eq(c + row[e]) for e, c in enumerate(colsum)]
                with m.If(~more & ~rv):
                    m.d.sync += [e_in.eq(0), e_out.eq(0)]
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                m.d.comb += [div.i.valid.eq(e_in < d),
                             div.i.payload.num.eq(Array(colsum)[e_in] << cfg.out_frac),
                             div.i.payload.den.eq(seq_len),
                             div.i.payload.tag.eq(e_in)]
                with m.If(div.i.valid & div.i.ready):
                    m.d.sync += e_in.eq(e_in + 1)
                with m.If(div.o.valid):
                    m.d.sync += e_out.eq(e_out + 1)
                    with m.Switch(div.o.payload.tag):
                        for e in range(d):
                            with m.Case(e):
                                m.d.sync += vb[e].eq(div.o.payload.quot)
                    with m.If(e_out == d - 1):
                        m.next = "READY"
        lane_o = []
        for i, gate in enumerate(gates):
            m.submodules[f"tail{i}"] = blend = TailBlend(cfg)
            wiring.connect(m, gate.f, blend.f)
            src = self._sufa[i].o
            m.d.comb += [blend.vbar.eq(vbar), blend.en.eq(tail_on),
                         blend.i.payload.eq(src.payload)]
            o = stream.Signature(out_layout(cfg)).create(path=(f"lane_o{i}",))
            m.d.comb += [
                blend.i.valid.eq(src.valid & tail_on),
                src.ready.eq(Mux(tail_on, blend.i.ready, o.ready)),
                o.valid.eq(Mux(tail_on, blend.o.valid, src.valid)),
                o.payload.eq(Mux(tail_on, blend.o.payload.as_value(), src.payload.as_value())),
                blend.o.ready.eq(o.ready & tail_on),
            ]
            lane_o.append(o)
        return lane_o

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        S_MAX, B, L = cfg.max_seq_len, cfg.block_size, cfg.q_lanes
        lanes = range(L)

        for i in lanes:
            m.submodules[f"dlzs{i}"] = self._dlzs[i]
            m.submodules[f"sads{i}"] = self._sads[i]
            m.submodules[f"sufa{i}"] = self._sufa[i]
        dlzs, sads, sufa = self._dlzs, self._sads, self._sufa

        def any_of(sigs):
            sigs = list(sigs)
            return Cat(*sigs).any() if sigs else 0

        def all_of(sigs):
            sigs = list(sigs)
            return Cat(*sigs).all() if sigs else 1

        # -- registers: the parameters of spec.regmap, range-checked, written while idle ------
        params = parameter_signals(cfg)
        seq_len, top_k, radius = params["seq_len"], params["top_k"], params["radius"]
        scale, dense = params["scale"], params["dense"]
        error = Signal()
        error_addr = Signal(register("error_addr").value_width(cfg))   # a row or a register
        clear = Signal()
        # Rows between the Q port and the O port. Each holds at least one of the core's
        # registers (a Q FIFO entry, a unit's row state, an output element), so there are
        # far fewer than 2^12 of them.
        in_flight = Signal(12)
        row_in = Signal()
        row_out = Signal()
        m.d.comb += self.busy.eq(in_flight != 0)
        m.d.sync += in_flight.eq(in_flight + row_in - row_out)

        def reject(addr):
            m.d.sync += [error.eq(1), error_addr.eq(addr)]

        wd = self.reg_wdata
        with m.If(self.reg_we):
            with m.Switch(self.reg_addr):
                parameter_write_cases(m, cfg, params, wd, self.busy, reject)
                with m.Case(Reg.STATUS):
                    m.d.comb += clear.eq(wd[0])
                    with m.If(wd[1]):
                        m.d.sync += error.eq(0)
                with m.Default():
                    reject(self.reg_addr)
        for i in lanes:
            m.d.comb += [
                sads[i].top_k.eq(top_k),
                sads[i].radius.eq(radius),
                sufa[i].scale_log2e.eq(scale),
            ]

        # -- K/V buffers --------------------------------------------------------------------
        row = row_layout(cfg)
        P = cfg.predict_keys
        PB = (P - 1).bit_length()              # bank bits of a K row index
        load = self.kv_load.payload
        in_range = load.index < S_MAX
        # A load waits while queries are in flight, so it never changes their K/V.
        take_kv = self.kv_load.valid & self.kv_load.ready
        if P == 1:
            m.submodules.k_mem = k_mem = memory.Memory(shape=row, depth=S_MAX, init=[])
            m.submodules.v_mem = v_mem = memory.Memory(shape=row, depth=S_MAX, init=[])
            k_wr, v_wr = k_mem.write_port(), v_mem.write_port()
            m.d.comb += [
                self.kv_load.ready.eq(~self.busy),
                k_wr.addr.eq(load.index), k_wr.data.eq(load.k),
                v_wr.addr.eq(load.index), v_wr.data.eq(load.v),
                k_wr.en.eq(take_kv & in_range),
                v_wr.en.eq(take_kv & in_range),
            ]
        else:
            # Row j in bank j mod P at j / P: the K reader takes P consecutive rows a cycle.
            k_banks = [memory.Memory(shape=row, depth=S_MAX // P, init=[]) for _ in range(P)]
            for b, bank in enumerate(k_banks):
                m.submodules[f"k_mem{b}"] = bank
                k_wr = bank.write_port()
                m.d.comb += [k_wr.addr.eq(load.index >> PB), k_wr.data.eq(load.k),
                             k_wr.en.eq(take_kv & in_range & (load.index[:PB] == b))]
            m.submodules.v_mem = v_mem = memory.Memory(shape=row, depth=S_MAX, init=[])
            v_wr = v_mem.write_port()
            m.d.comb += [
                self.kv_load.ready.eq(~self.busy),
                v_wr.addr.eq(load.index), v_wr.data.eq(load.v),
                v_wr.en.eq(take_kv & in_range),
            ]
        with m.If(take_kv & ~in_range):
            reject(load.index)

        # -- query intake: lane by lane into groups of up to q_lanes queries ----------------
        # A group closes with its q_lanes-th query or a query with ``last``; the lanes of a
        # group share each K row read for prediction (and each key of dense mode).
        qp = Signal(range(L))                  # lane of the next query
        grp = Signal(L)                        # lanes filled in the open group
        pend_mask = Signal(L)                  # a closed group waiting for its K sweep
        pend_valid = Signal()
        m.submodules.sizes = sizes = fifo.SyncFIFOBuffered(width=L.bit_length(), depth=4)
        q_fifos = []
        for i in lanes:
            m.submodules[f"q_fifo{i}"] = f = fifo.SyncFIFOBuffered(width=row.size, depth=2)
            q_fifos.append(f)
        closing = (qp == L - 1) | self.q.payload.last
        lane_ok = Signal()
        take_q = Signal()
        with m.Switch(qp):
            for i in lanes:
                with m.Case(i):
                    m.d.comb += lane_ok.eq(q_fifos[i].w_rdy & (dense | dlzs[i].q.ready))
        # The tail blend (adapt_bins > 0, TAIL_SCALE and ADAPT_MASS set, sparse mode) takes no
        # query until the head's mean V row is current (the V sweep below).
        tail_on = Signal()
        vbar_ok = Signal(init=1)
        q_ready = lane_ok & (~closing | (~pend_valid & sizes.w_rdy))
        if cfg.adapt_bins:
            q_ready = q_ready & (~tail_on | vbar_ok)
        m.d.comb += [
            self.q.ready.eq(q_ready),
            take_q.eq(self.q.valid & self.q.ready),
            sizes.w_en.eq(take_q & closing),
            sizes.w_data.eq(qp + 1),
        ]
        for i in lanes:
            m.d.comb += [
                dlzs[i].q.valid.eq(take_q & ~dense & (qp == i)),
                dlzs[i].q.payload.data.eq(self.q.payload.data),
                q_fifos[i].w_en.eq(take_q & (qp == i)),
                q_fifos[i].w_data.eq(self.q.payload.data.as_value()),
                sufa[i].q.valid.eq(q_fifos[i].r_rdy),
                sufa[i].q.payload.data.eq(q_fifos[i].r_data),
                q_fifos[i].r_en.eq(sufa[i].q.ready),
            ]
        m.d.comb += row_in.eq(take_q)
        with m.If(take_q):
            with m.If(closing):
                m.d.sync += [qp.eq(0), grp.eq(0), pend_valid.eq(1),
                             pend_mask.eq(grp | (1 << qp))]
            with m.Else():
                m.d.sync += [qp.eq(qp + 1), grp.eq(grp | (1 << qp))]

        # -- K reader: K rows 0 … S-1, each read once for every lane of the group ---------------
        gates = []                             # the lanes' adaptive gates (adapt_bins > 0)
        if P == 1:
            k_rd = k_mem.read_port()
        else:
            k_rds = [bank.read_port() for bank in k_banks]
            kr_count = Signal(range(P + 1))    # keys of the beat on the ports
        kr_active = Signal()
        kr_mask = Signal(L)
        kr_ptr = Signal(range(S_MAX + 1))
        kr_valid = Signal(L)                   # lane i still has to take the row on the port
        kr_last = Signal()
        kr_adv = Signal()
        kr_start = Signal()
        m.d.comb += [
            kr_adv.eq(all_of(~kr_valid[i] | dlzs[i].k.ready for i in lanes)),
            kr_start.eq(~kr_active & pend_valid & ~dense),
        ]
        if P == 1:
            m.d.comb += [k_rd.en.eq(kr_adv), k_rd.addr.eq(kr_ptr)]
        else:
            m.d.comb += [port.en.eq(kr_adv) for port in k_rds]
            m.d.comb += [port.addr.eq(kr_ptr >> PB) for port in k_rds]
        for i in lanes:
            if P == 1:
                m.d.comb += [
                    dlzs[i].k.valid.eq(kr_valid[i]),
                    dlzs[i].k.payload.data.eq(k_rd.data),
                    dlzs[i].k.payload.last.eq(kr_last),
                ]
            else:
                m.d.comb += [
                    dlzs[i].k.valid.eq(kr_valid[i]),
                    *(dlzs[i].k.payload.data[b].eq(port.data) for b, port in enumerate(k_rds)),
                    dlzs[i].k.payload.count.eq(kr_count),
                    dlzs[i].k.payload.last.eq(kr_last),
                ]
            # A skid buffer between DLZS and SADS: SADS's ready (its decision logic) would
            # otherwise chain through DLZS into the K reader's memory enable.
            m.submodules[f"ahat_skid{i}"] = skid = SkidBuffer(dlzs[i].ahat.payload.shape(),
                                                                  skid=cfg.skid_buffers)
            wiring.connect(m, dlzs[i].ahat, skid.i)
            if cfg.adapt_bins:
                # The adaptive budget: a row's eligible keys before SADS (hw/adapt.py).
                m.submodules[f"adapt{i}"] = gate = AdaptiveGate(cfg)
                m.d.comb += [gate.mass.eq(params["adapt_mass"]),
                             gate.sel_scale.eq(params["adapt_scale"]),
                             gate.shift.eq(params["adapt_shift"]),
                             gate.tail_scale.eq(params["tail_scale"])]
                wiring.connect(m, skid.o, gate.i)
                wiring.connect(m, gate.o, sads[i].ahat)
                gates.append(gate)
            else:
                wiring.connect(m, skid.o, sads[i].ahat)
        with m.If(kr_start):
            m.d.sync += [kr_active.eq(1), kr_ptr.eq(0), kr_mask.eq(pend_mask), pend_valid.eq(0)]
        if P == 1:
            with m.If(kr_adv):
                m.d.sync += kr_valid.eq(Mux(kr_active, kr_mask, 0))
                with m.If(kr_active):
                    m.d.sync += [kr_last.eq(kr_ptr == seq_len - 1), kr_ptr.eq(kr_ptr + 1)]
                    with m.If(kr_ptr == seq_len - 1):
                        m.d.sync += kr_active.eq(0)
        else:
            kr_end = Signal()                  # the read covers the row's last key
            kr_keys = Signal(range(P + 1))     # keys of this read (P but at the end)
            m.d.comb += [kr_end.eq(kr_ptr + P >= seq_len),
                         kr_keys.eq(Mux(kr_end, seq_len - kr_ptr, P))]
            with m.If(kr_adv):
                m.d.sync += kr_valid.eq(Mux(kr_active, kr_mask, 0))
                with m.If(kr_active):
                    m.d.sync += [kr_last.eq(kr_end), kr_ptr.eq(kr_ptr + P),
                                 kr_count.eq(kr_keys)]
                    with m.If(kr_end):
                        m.d.sync += kr_active.eq(0)
        with m.Else():
            for i in lanes:
                with m.If(dlzs[i].k.ready):
                    m.d.sync += kr_valid[i].eq(0)

        # -- dense generator: every key of every tile, natural order, to the group's lanes ----
        dg_active = Signal()
        dg_mask = Signal(L)
        dg_ptr = Signal(range(S_MAX + 1))
        dg_pos = Signal(range(B))
        dg = Signal(sel_layout(cfg))
        dg_take = Signal()                     # every lane of the group takes the key
        dg_start = Signal()
        f_adv = Signal(L)
        m.d.comb += [
            dg_start.eq(~dg_active & pend_valid & dense),
            dg_take.eq(dg_active & all_of(~dg_mask[i] | f_adv[i] for i in lanes)),
            dg.index.eq(dg_ptr),
            dg.first.eq(dg_pos == 0),
            dg.last.eq((dg_pos == B - 1) | (dg_ptr == seq_len - 1)),
            dg.row_last.eq(dg_ptr + (B - dg_pos) >= seq_len),
        ]
        with m.If(dg_start):
            m.d.sync += [dg_active.eq(1), dg_ptr.eq(0), dg_pos.eq(0), dg_mask.eq(pend_mask),
                         pend_valid.eq(0)]
        with m.If(dg_take):
            m.d.sync += [dg_ptr.eq(dg_ptr + 1), dg_pos.eq(Mux(dg_pos == B - 1, 0, dg_pos + 1))]
            with m.If(dg_ptr == seq_len - 1):
                m.d.sync += dg_active.eq(0)

        # -- fetch, per lane: K and V rows of each selected key into SU-FA --------------------
        f_valid = Signal(L)
        fetched = []                           # a non-empty key fetched, per lane
        v_frs = []                             # the lanes' V read ports
        for i in lanes:
            if P == 1:
                k_fr, v_fr = k_mem.read_port(), v_mem.read_port()
            else:
                k_frs, v_fr = [bank.read_port() for bank in k_banks], v_mem.read_port()
            v_frs.append(v_fr)
            f_meta = Signal(sel_layout(cfg), name=f"f_meta{i}")
            src_valid = Mux(dense, dg_take & dg_mask[i], sads[i].sel.valid)
            src = data.View(sel_layout(cfg),
                            Mux(dense, dg.as_value(), sads[i].sel.payload.as_value()))
            kv = sufa[i].kv
            m.d.comb += [
                f_adv[i].eq(~f_valid[i] | kv.ready),
                sads[i].sel.ready.eq(f_adv[i] & ~dense),
                *((k_fr.en.eq(f_adv[i]), v_fr.en.eq(f_adv[i]),
                   k_fr.addr.eq(src.index), v_fr.addr.eq(src.index)) if P == 1 else
                  (*(port.en.eq(f_adv[i]) for port in k_frs), v_fr.en.eq(f_adv[i]),
                   *(port.addr.eq(src.index >> PB) for port in k_frs),
                   v_fr.addr.eq(src.index))),
                kv.valid.eq(f_valid[i]),
                kv.payload.index.eq(f_meta.index),
                kv.payload.k.eq(k_fr.data if P == 1 else
                                Array(port.data for port in k_frs)[f_meta.index[:PB]]),
                kv.payload.v.eq(v_fr.data),
                kv.payload.empty.eq(f_meta.empty),
                kv.payload.first.eq(f_meta.first),
                kv.payload.last.eq(f_meta.last),
                kv.payload.row_last.eq(f_meta.row_last),
            ]
            with m.If(f_adv[i]):
                m.d.sync += [f_valid[i].eq(src_valid), f_meta.eq(src)]
            fetched.append(f_adv[i] & src_valid & ~src.empty)

        # -- output: the lanes' rows in query order -------------------------------------------
        # The output is a skid buffer: the consumer's ready (e.g. a UART) would otherwise run
        # through SU-FA's divider into the enable of its divide buffer.
        m.submodules.o_skid = o_skid = SkidBuffer(out_layout(cfg), skid=cfg.skid_buffers)
        wiring.connect(m, o_skid.o, wiring.flipped(self.o))
        o_in = o_skid.i
        lane_o = [sufa[i].o for i in lanes]
        if cfg.adapt_bins:
            lane_o = self._tail(m, params, dense, tail_on, vbar_ok, seq_len, take_kv, v_frs[0],
                                gates)
        op = Signal(range(L))
        with m.Switch(op):
            for i in lanes:
                with m.Case(i):
                    m.d.comb += [
                        o_in.valid.eq(lane_o[i].valid & sizes.r_rdy),
                        o_in.payload.eq(lane_o[i].payload),
                        lane_o[i].ready.eq(o_in.ready & sizes.r_rdy),
                    ]
        # busy until the row has left the core
        m.d.comb += row_out.eq(self.o.valid & self.o.ready & self.o.payload.last)
        with m.If(o_in.valid & o_in.ready & o_in.payload.last):
            with m.If(op == sizes.r_data - 1):
                m.d.sync += op.eq(0)
                m.d.comb += sizes.r_en.eq(1)
            with m.Else():
                m.d.sync += op.eq(op + 1)

        # -- counters ------------------------------------------------------------------------
        events = {
            "cycles": 1,
            "busy_cycles": self.busy,
            "predict_cycles": kr_valid.any(),
            "starved_cycles": self.busy & ~f_valid.any(),
            "sufa_stall_cycles": any_of(f_valid[i] & ~sufa[i].kv.ready for i in lanes),
            "out_stall_cycles": self.o.valid & ~self.o.ready,
            "k_rows_predict": (k_rd.en & kr_active) if P == 1 else
                              Mux(kr_adv & kr_active, kr_keys, 0),
            "kv_rows_fetch": sum(fetched[i] for i in lanes),
        }
        if cfg.counter_width:
            bank = self._counters(m, events, clear)
            m.d.comb += bank.addr.eq(self.reg_addr - COUNTER_BASE)

        # Reads have one cycle of latency, like the counters' memory.
        r_addr = Signal.like(self.reg_addr)
        m.d.sync += r_addr.eq(self.reg_addr)
        with m.Switch(r_addr):
            parameter_read_cases(m, cfg, params, self.reg_rdata)
            with m.Case(Reg.STATUS):
                m.d.comb += self.reg_rdata.eq(self.busy | (error << 1))
            with m.Case(Reg.ERROR_ADDR):
                m.d.comb += self.reg_rdata.eq(error_addr)
            if cfg.counter_width:
                with m.Case(*range(COUNTER_BASE, N_REGS)):
                    m.d.comb += self.reg_rdata.eq(bank.data)
        return m


def sofa_top(cfg):
    """The top-level component for ``cfg``: :class:`SofaCore` (K/V on chip), or
    :class:`hw.axicore.SofaAxiCore` for ``memory = "axi"``."""
    if cfg.memory == "axi":
        if cfg.adapt_bins:
            raise ConfigError(f"adapt_bins = {cfg.adapt_bins}: the memory-attached core has no "
                              f"adaptive selection yet; allowed adapt_bins = 0 with "
                              f"memory = \"axi\"")
        from hw.axicore import SofaAxiCore
        return SofaAxiCore(cfg)
    return SofaCore(cfg)
