"""SADS: sphere-search-aided distributed sorting, the per-tile top-k selection unit."""

from fractions import Fraction
from functools import cached_property

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dlzs import ahat_layout
from hw.sortnet import SortNet, top_k_network


__all__ = ["SADS", "sel_layout", "COUNTERS"]


#: Counter outputs, in this order.
COUNTERS = ("blocked_radius", "blocked_full", "entered", "sort_steps", "tiles")


def sel_layout(cfg):
    """One output beat: a selected key of a tile, or the single ``empty`` beat of a tile that
    selected nothing."""
    der = cfg.derived
    return data.StructLayout({
        "value": signed(der.ahat_width),
        "index": der.index_width,
        "empty": 1,
        "first": 1,
        "last": 1,
        "row_last": 1,
    })


def _batch_layout(cfg):
    """Side information of a collected batch."""
    der = cfg.derived
    return data.StructLayout({
        "count": range(der.batch + 1),      # keys in the batch, 1 … batch
        "tile_first": 1,                    # first batch of its tile: no survivors yet
        "row_first": 1,                     # first batch of its row: run_max is -inf
        "tile_final": 1,                    # last batch of its tile
        "row_last": 1,                      # its tile is the row's last
        "top_k": der.topk_width,
        "radius": der.radius_width,
        "bmax": signed(der.ahat_width),     # largest Â of the batch
    })


class SADS(wiring.Component):
    """Per-tile top-k selection of one query row's Â stream, with sphere clipping.

    Keys arrive on :py:`ahat` one per beat, exactly as :class:`hw.dlzs.DLZS` emits them
    (``first``/``last`` frame the row). Tiles are ``block_size`` consecutive keys counted from
    the row's first key (the row's ``last`` key may end a short final tile); a tile is cut
    into batches of ``batch = sort_width - k_max`` consecutive keys (the tile's last batch may
    be short). For each tile the unit emits on :py:`sel` its selected keys, at most ``top_k``,
    in descending Â (ties: lower index first), or one beat with ``empty = 1`` if it selected
    nothing. The selection is bit-exact with :func:`sim.golden.sads_row`.

    Datapath. Keys are collected into a batch register; a complete batch moves to a launch
    register, where ``batch`` parallel comparisons decide which keys are blocked, using the
    state before the batch: ``run_max`` (largest Â of the row's earlier batches) and the
    ``top_k``-th survivor of the previous step. A key is blocked if ``Â < run_max - R``
    (unless R is ``radius_inf`` or this is the row's first batch), else if it does not beat
    the ``top_k``-th survivor (an equal later key loses the tie). Blocked keys enter the sorter
    as zeros (never win); a batch whose keys are all blocked does not start a sorter step. A
    step feeds the ``k_max`` survivors (empty at a tile's first batch) and the batch into the
    pruned compare-exchange network of :mod:`hw.sortnet` (``sort_width`` inputs, ``k_max``
    outputs, a register every ``layers_per_stage`` layers, one new step per cycle). Its output
    is the next step's survivors; a batch whose decision needs them waits until they are back
    (a bypass takes them from the network output in the cycle they appear). Steps of
    different tiles overlap in the network. The tile's last step goes to an output serializer
    that emits ``min(top_k, survivors)`` beats. A tile whose last batch is all blocked is
    handed from the survivor register to the serializer once no earlier tile is in the network.

    Sort key. An entry is the unsigned ``(valid, Â with its sign bit inverted, ~index)``: the
    larger key is the larger Â, then the lower index; invalid entries (zeros) always lose.

    Parameters
    ----------
    cfg : SofaConfig
    kind : str
        Network: ``"oddeven"`` (default, fewer comparators after pruning) or ``"bitonic"``.
    layers_per_stage : int
        Comparator layers between pipeline registers of the network.
    counter_width : int
        Width of the counter outputs (they wrap).

    Attributes
    ----------
    ahat : In(stream.Signature(ahat_layout(cfg)))
        Â of the keys of a row, in key order.
    top_k : In(topk_width)
        Keys kept per tile, ``1 … k_max`` (0 acts as 1, more than ``k_max`` as ``k_max``).
        Sampled with the row's first key and held for the row.
    radius : In(radius_width)
        Sphere radius R; all ones (``radius_inf``) disables clipping. Sampled with the row's
        first key and held for the row.
    sel : Out(stream.Signature(sel_layout(cfg)))
        Per tile: its selected keys (``index``, ``value``), ``first``/``last`` of the tile,
        ``row_last`` on every beat of the row's last tile; or one ``empty`` beat (index and
        value 0) if the tile selected nothing.
    blocked_radius, blocked_full, entered, sort_steps, tiles : Out(counter_width)
        Totals since reset: keys blocked by the radius, keys blocked by a full survivor list,
        keys that entered the sorter, sorter steps started, tiles emitted (counted at their
        last beat). The first four equal the sums of :class:`sim.golden.TileSelection`'s
        fields.
    stages : int
        Pipeline registers of the network, ``P = ceil(depth / layers_per_stage)``.
    latency : int
        Cycles from the acceptance of the key that completes a tile to the tile's first
        :py:`sel` beat, when the tile's last batch need not wait for survivors (a tile of one
        batch, or a last batch that arrives at least ``P`` cycles after the previous step
        started): ``P + 3`` (batch register, launch register, ``P`` network stages, serializer).
    tile_latency : int
        The same for a full tile in steady traffic where every batch enters the sorter. When
        the tile has more than one batch and ``P <= batch``: ``P + 3 + max(0, P - r)``, with
        ``r`` the keys of the tile's last batch (it waits for the previous step's survivors);
        in general the value found by :meth:`schedule`.
    ii : int or float
        Cycles per input key in steady traffic without backpressure, worst case (every batch
        enters the sorter; skipped batches only make it faster). It is 1 if a tile is one
        batch, or if ``P <= batch`` and ``1 + max(0, P - r) <= batch`` (every preset: the
        batch and launch registers hide the wait of the last batch); otherwise the average
        found by :meth:`schedule` (e.g. 2.2 for block_size 5, sort_width 5, k_max 3: batches of
        2 keys cannot hide a 5-stage round trip).
    comparators, depth : int
        Comparators and layers of the pruned network.
    """

    def __init__(self, cfg, *, kind="oddeven", layers_per_stage=1, counter_width=32):
        self._cfg = cfg
        der = cfg.derived
        self._kind = kind
        self._lps = layers_per_stage
        self._network = top_k_network(cfg.sort_width, cfg.k_max, kind, presorted=cfg.k_max)
        self._key_width = 1 + der.ahat_width + der.index_width
        super().__init__({
            "ahat": In(stream.Signature(ahat_layout(cfg))),
            "top_k": In(der.topk_width),
            "radius": In(der.radius_width),
            "sel": Out(stream.Signature(sel_layout(cfg))),
            **{name: Out(counter_width) for name in COUNTERS},
        })

    # -- reported figures -------------------------------------------------------------------

    @property
    def cfg(self):
        return self._cfg

    @property
    def network(self):
        return self._network

    @property
    def comparators(self):
        return self._network.size

    @property
    def depth(self):
        return self._network.depth

    @property
    def stages(self):
        return max(1, -(-self._network.depth // self._lps))

    @property
    def latency(self):
        return self.stages + 3

    @property
    def tile_latency(self):
        return self._steady["tile_latency"]

    @property
    def ii(self):
        ii = self._steady["ii"]
        return int(ii) if ii.denominator == 1 else float(ii)

    @cached_property
    def _steady(self):
        cfg = self._cfg
        tiles = 12
        acc, out = self.schedule(tiles * cfg.block_size, top_k=cfg.k_max)
        B = cfg.block_size
        a, b = 4, tiles - 1                       # skip the start-up tiles
        ii = Fraction(acc[b * B] - acc[a * B], (b - a) * B)
        return {"ii": ii, "tile_latency": out[a] - acc[(a + 1) * B - 1]}

    def schedule(self, keys, *, top_k):
        """Cycle-exact timing of one row of ``keys`` keys under steady traffic (a key offered
        every cycle, :py:`sel` always ready) when every batch enters the sorter (e.g. strictly
        increasing Â). Mirrors the control of :meth:`elaborate`.

        Returns
        -------
        (accept, first_beat) : (list of int, list of int)
            The cycle each key is accepted (the first key at cycle 0) and the cycle each tile's
            first :py:`sel` beat is valid.
        """
        cfg, der = self._cfg, self._cfg.derived
        B, bsz, P = cfg.block_size, der.batch, self.stages
        pipe = [None] * P                    # items: tile-final flag and tile number
        accept, first_beat = [], []
        key = bpos = tpos = tile = 0
        buf_full = busy = False
        buf = L = None
        finals = ser_left = 0
        ser_first = False
        t = 0
        n_tiles = -(-keys // B)
        while len(first_beat) < n_tiles:
            o = pipe[-1]
            ser_last = ser_left == 1
            ser_free = ser_left == 0 or ser_last
            advance = not (o is not None and o["final"] and not ser_free)
            emerge_nf = o is not None and not o["final"]
            ready_sv = L is not None and (L["tile_first"] or not busy or emerge_nf)
            launch = ready_sv and advance
            transfer = buf_full and (L is None or launch)
            in_ready = not buf_full or transfer
            take = in_ready and key < keys
            # -- register updates
            if ser_left:
                if ser_first:
                    first_beat.append(t)
                ser_first = False
                ser_left -= 1
            if advance and o is not None and o["final"]:
                ser_left, ser_first = min(top_k, o["keys"]), True
            if launch and not L["final"]:
                busy = True
            elif emerge_nf:
                busy = False
            finals += int(launch and L["final"]) - int(bool(advance and o and o["final"]))
            if advance:
                pipe = [dict(final=L["final"], keys=L["tile_keys"]) if launch else None] + pipe[:-1]
            if transfer:
                L = buf
            elif launch:
                L = None
            if take:
                accept.append(t)
                last = key == keys - 1
                complete = bpos == bsz - 1 or tpos == B - 1 or last
                tile_end = tpos == B - 1 or last
                if complete:
                    buf = dict(tile_first=tpos == bpos, final=tile_end, tile_keys=tpos + 1)
                    bpos, tpos = 0, (0 if tile_end else tpos + 1)
                else:
                    bpos, tpos = bpos + 1, tpos + 1
                key += 1
            buf_full = (buf_full and not transfer) or (take and complete)
            t += 1
            if t > 100 * (keys + P + 10):
                raise RuntimeError("SADS.schedule did not converge")
        return accept, first_beat

    # -- hardware ---------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        cfg, der = self._cfg, self._cfg.derived
        B, nb, K = cfg.block_size, der.batch, cfg.k_max
        AW, IW, TW = der.ahat_width, der.index_width, der.topk_width
        KW = self._key_width

        def pack(value, index, valid=1):
            return Cat(~index, value.as_unsigned()[:AW - 1], ~value.as_unsigned()[AW - 1],
                       Const(valid, 1) if isinstance(valid, int) else valid)

        def unpack(key):
            return (Cat(key[IW:IW + AW - 1], ~key[IW + AW - 1]).as_signed(),
                    ~key[:IW], key[KW - 1])

        tag_layout = data.StructLayout({"final": 1, "row_last": 1, "top_k": TW})
        m.submodules.net = net = SortNet(self._network, KW, tag_width=tag_layout.size,
                                         layers_per_stage=self._lps)
        o_tag = data.View(tag_layout, net.o_tag)

        # -- collection: the batch register ------------------------------------------------
        batch_layout = _batch_layout(cfg)
        bpos = Signal(range(nb))
        tpos = Signal(range(B))
        buf_v = [Signal(signed(AW), name=f"buf_v{j}") for j in range(nb)]
        buf_i = [Signal(IW, name=f"buf_i{j}") for j in range(nb)]
        buf = Signal(batch_layout)
        buf_full = Signal()
        row_topk = Signal(TW)
        row_radius = Signal(der.radius_width)

        transfer = Signal()
        decide = Signal()
        L_valid = Signal()
        m.d.comb += self.ahat.ready.eq(~buf_full | transfer)
        accept = Signal()
        m.d.comb += accept.eq(self.ahat.valid & self.ahat.ready)
        p = self.ahat.payload
        complete = Signal()
        tile_end = Signal()
        m.d.comb += [
            tile_end.eq((tpos == B - 1) | p.last),
            complete.eq((bpos == nb - 1) | tile_end),
        ]
        topk_in = Signal(TW)
        m.d.comb += topk_in.eq(Mux(self.top_k == 0, 1,
                                   Mux(self.top_k > K, K, self.top_k)))
        with m.If(accept):
            for j in range(nb):
                with m.If(bpos == j):
                    m.d.sync += [buf_v[j].eq(p.value), buf_i[j].eq(p.index)]
            with m.If(p.first):
                m.d.sync += [row_topk.eq(topk_in), row_radius.eq(self.radius)]
            m.d.sync += [
                buf.top_k.eq(Mux(p.first, topk_in, row_topk)),
                buf.radius.eq(Mux(p.first, self.radius, row_radius)),
                buf.count.eq(bpos + 1),
                buf.tile_final.eq(tile_end),
                buf.row_last.eq(p.last),
            ]
            with m.If(bpos == 0):
                m.d.sync += [buf.bmax.eq(p.value), buf.tile_first.eq(tpos == 0),
                             buf.row_first.eq(p.first)]
            with m.Else():
                m.d.sync += buf.bmax.eq(Mux(p.value > buf.bmax, p.value, buf.bmax))
            with m.If(complete):
                m.d.sync += [bpos.eq(0), tpos.eq(Mux(tile_end, 0, tpos + 1))]
            with m.Else():
                m.d.sync += [bpos.eq(bpos + 1), tpos.eq(tpos + 1)]
        m.d.sync += buf_full.eq((buf_full & ~transfer) | (accept & complete))

        # -- the launch register -----------------------------------------------------------
        L_v = [Signal(signed(AW), name=f"launch_v{j}") for j in range(nb)]
        L_i = [Signal(IW, name=f"launch_i{j}") for j in range(nb)]
        L = Signal(batch_layout)
        m.d.comb += transfer.eq(buf_full & (~L_valid | decide))
        with m.If(transfer):
            m.d.sync += [L.eq(buf), L_valid.eq(1)]
            m.d.sync += [L_v[j].eq(buf_v[j]) for j in range(nb)]
            m.d.sync += [L_i[j].eq(buf_i[j]) for j in range(nb)]
        with m.Elif(decide):
            m.d.sync += L_valid.eq(0)

        # -- survivors: register, bypass from the network output -----------------------------
        S = [Signal(KW, name=f"surv{r}") for r in range(K)]
        emerge_nf = Signal()                   # a non-final step leaves the network
        m.d.comb += emerge_nf.eq(net.o_valid & ~o_tag.final)
        surv = [Signal(KW, name=f"surv_eff{r}") for r in range(K)]
        for r in range(K):
            m.d.comb += surv[r].eq(Mux(L.tile_first, 0, Mux(emerge_nf, net.o[r], S[r])))
        thr = Signal(KW)                       # the top_k-th survivor (0 if there is none)
        with m.Switch(L.top_k):
            for k in range(1, K + 1):
                with m.Case(k):
                    m.d.comb += thr.eq(surv[k - 1])
            with m.Default():
                m.d.comb += thr.eq(surv[0])

        # -- blocking decision over the batch ----------------------------------------------
        run_max = Signal(signed(AW))
        clip = Signal()
        m.d.comb += clip.eq(L.radius != der.radius_inf)
        keys = [Signal(KW, name=f"key{j}") for j in range(nb)]
        present = [Signal(name=f"present{j}") for j in range(nb)]
        rad = [Signal(name=f"rad{j}") for j in range(nb)]
        full = [Signal(name=f"full{j}") for j in range(nb)]
        enter = [Signal(name=f"enter{j}") for j in range(nb)]
        for j in range(nb):
            m.d.comb += [
                keys[j].eq(pack(L_v[j], L_i[j])),
                present[j].eq(L_valid & (L.count > j)),
                rad[j].eq(present[j] & clip & ~L.row_first & (L_v[j] + L.radius < run_max)),
                # Survivors come from earlier batches of the tile (lower indices), so
                # "key > thr" is exactly "Â > thr's Â".
                full[j].eq(present[j] & ~rad[j] & (keys[j] < thr)),
                enter[j].eq(present[j] & ~rad[j] & ~full[j]),
            ]
        any_enter = Signal()
        m.d.comb += any_enter.eq(Cat(*enter).any())

        # -- control -----------------------------------------------------------------------
        busy = Signal()                        # a non-final step of the current tile in flight
        finals = Signal(range(self.stages + 2))   # tile-final steps in the network
        ser_busy = Signal()
        ser_last = Signal()
        ser_free = Signal()
        advance = Signal()
        ready_sv = Signal()
        launch = Signal()
        skip = Signal()
        out_final = Signal()
        m.d.comb += [
            ser_free.eq(~ser_busy | (self.sel.ready & ser_last)),
            out_final.eq(net.o_valid & o_tag.final),
            advance.eq(~out_final | ser_free),
            ready_sv.eq(L.tile_first | ~busy | emerge_nf),
            launch.eq(L_valid & ready_sv & any_enter & advance),
            skip.eq(L_valid & ready_sv & ~any_enter &
                    (~L.tile_final | ((finals == 0) & ser_free))),
            decide.eq(launch | skip),
        ]
        with m.If(decide):
            m.d.sync += run_max.eq(Mux(L.row_first | (L.bmax > run_max), L.bmax, run_max))
        with m.If(launch & ~L.tile_final):
            m.d.sync += busy.eq(1)
        with m.Elif(emerge_nf):
            m.d.sync += busy.eq(0)
        m.d.sync += finals.eq(finals + (launch & L.tile_final) - (out_final & advance))
        with m.If(emerge_nf):
            m.d.sync += [S[r].eq(net.o[r]) for r in range(K)]
        with m.If(skip & L.tile_first):
            m.d.sync += [S[r].eq(0) for r in range(K)]

        m.d.comb += [
            net.en.eq(advance),
            net.i_valid.eq(launch),
            net.i_tag.eq(Cat(L.tile_final, L.row_last, L.top_k)),
        ]
        for r in range(K):
            m.d.comb += net.i[r].eq(surv[r])
        for j in range(nb):
            m.d.comb += net.i[K + j].eq(Mux(enter[j], keys[j], 0))

        # -- output serializer -------------------------------------------------------------
        res = [Signal(KW, name=f"res{r}") for r in range(K)]
        ser_left = Signal(range(K))            # beats after this one, at most
        ser_first = Signal()
        ser_row_last = Signal()
        value0, index0, valid0 = unpack(res[0])
        empty = Signal()
        m.d.comb += [
            empty.eq(~valid0),
            ser_last.eq(empty | (ser_left == 0) | (~res[1][KW - 1] if K > 1 else 1)),
            self.sel.valid.eq(ser_busy),
            self.sel.payload.value.eq(Mux(empty, 0, value0)),
            self.sel.payload.index.eq(Mux(empty, 0, index0)),
            self.sel.payload.empty.eq(empty),
            self.sel.payload.first.eq(ser_first),
            self.sel.payload.last.eq(ser_last),
            self.sel.payload.row_last.eq(ser_row_last),
        ]
        beat = Signal()
        m.d.comb += beat.eq(self.sel.valid & self.sel.ready)
        with m.If(beat):
            m.d.sync += [res[r].eq(res[r + 1] if r + 1 < K else 0) for r in range(K)]
            m.d.sync += [ser_left.eq(ser_left - 1), ser_first.eq(0)]
            with m.If(ser_last):
                m.d.sync += ser_busy.eq(0)
        with m.If(out_final & advance):
            m.d.sync += [res[r].eq(net.o[r]) for r in range(K)]
            m.d.sync += [ser_left.eq(o_tag.top_k - 1), ser_first.eq(1), ser_busy.eq(1),
                         ser_row_last.eq(o_tag.row_last)]
        with m.If(skip & L.tile_final):
            m.d.sync += [res[r].eq(surv[r]) for r in range(K)]
            m.d.sync += [ser_left.eq(L.top_k - 1), ser_first.eq(1), ser_busy.eq(1),
                         ser_row_last.eq(L.row_last)]

        # -- counters ----------------------------------------------------------------------
        with m.If(decide):
            m.d.sync += [
                self.blocked_radius.eq(self.blocked_radius + sum(rad)),
                self.blocked_full.eq(self.blocked_full + sum(full)),
                self.entered.eq(self.entered + sum(enter)),
            ]
        with m.If(launch):
            m.d.sync += self.sort_steps.eq(self.sort_steps + 1)
        with m.If(beat & ser_last):
            m.d.sync += self.tiles.eq(self.tiles + 1)
        return m
