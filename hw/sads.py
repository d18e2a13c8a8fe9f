"""SADS: sphere-search-aided distributed sorting, the per-tile top-k selection unit."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.adapt import gated_layout
from hw.dlzs import ahat_layout
from hw.sortnet import SortNet
from spec.timing import sads_timing


__all__ = ["SADS", "sel_layout", "key_layout", "COUNTERS"]


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


def key_layout(cfg, *, prior=False):
    """One input key of :class:`SADS`: :func:`hw.dlzs.ahat_layout` of a one-key DLZS (with
    ``eligible`` under the adaptive budget). With ``prior`` (:class:`hw.sadsbank.SADSBank`'s
    units, which see every ``n``-th tile of a row) ``first`` marks each tile's first key,
    which also carries the row's largest Â before the tile (``prior_max``; ``prior_valid``
    is 0 for the row's first tile) and the tile's ``top_k`` and ``radius``; ``last`` still
    marks the row's last key."""
    if cfg.adapt_bins:
        return gated_layout(cfg)
    if cfg.predict_keys == 1 and not prior:
        return ahat_layout(cfg)
    der = cfg.derived
    fields = {"value": signed(der.ahat_width), "index": der.index_width, "first": 1,
              "last": 1}
    if prior:
        fields |= {"prior_valid": 1, "prior_max": signed(der.ahat_width),
                   "top_k": der.topk_width, "radius": der.radius_width}
    return data.StructLayout(fields)


def _batch_layout(cfg):
    """Side information of a collected batch."""
    der = cfg.derived
    return data.StructLayout({
        "count": range(der.batch + 1),      # keys in the batch, 1 … batch
        "tile_first": 1,                    # first batch of its tile: no survivors yet
        "tile_final": 1,                    # last batch of its tile
        "row_last": 1,                      # its tile is the row's last
        "top_k": der.topk_width,
        "rad_en": 1,                        # clipping applies (R finite, not the row's first)
        "rthr": signed(der.ahat_width + 3), # run_max - R, run_max the largest Â of the
    })                                      # row's earlier batches


class SADS(wiring.Component):
    """Per-tile top-k selection of one query row's Â stream, with sphere clipping.

    Keys arrive on :py:`ahat` one per beat, exactly as :class:`hw.dlzs.DLZS` emits them
    (``first``/``last`` frame the row). Tiles are ``block_size`` consecutive keys counted from
    the row's first key (the row's ``last`` key may end a short final tile); a tile is cut
    into batches of ``batch = sort_width - k_max`` consecutive keys (the tile's last batch may
    be short). For each tile the unit emits on :py:`sel` its selected keys, at most ``top_k``,
    in descending Â (ties: lower index first), or one beat with ``empty = 1`` if it selected
    nothing. The selection is bit-exact with :func:`sim.golden.sads_row`.

    Datapath, one register stage each (every decision uses registered operands only, so no
    path crosses from the network output through a comparison into the network input or the
    input handshake):

    1. *Batch register*: keys are collected (packed as sort keys) into a batch register. A
       running maximum over the row's keys gives each batch its ``run_max`` (the largest Â
       of the row's earlier batches) when its first key arrives, and the radius threshold
       ``run_max - R`` is registered then.
    2. *Launch register*: a complete batch moves here, its keys' radius tests
       (``Â < run_max - R``, unless R is ``radius_inf`` or this is the row's first batch)
       done on the way in. Here ``batch`` parallel comparisons decide which keys are
       blocked, using the state before the batch: a key is blocked by the radius, else if
       it does not beat the ``top_k``-th survivor of the tile's latest step (an equal later
       key loses the tie). That survivor is selected by the network's last
       stage itself (:class:`hw.sortnet.SortNet` with ``select=True``) and held there
       between steps, so the comparison reads a register. The batch moves on (*decides*)
       when the survivors it needs are known: at once if no earlier step of its tile is in
       flight, else in the cycle that step leaves the network; a tile's last batch also
       needs a free output-queue slot (reserved here, so the network never stalls).
    3. *Gate register*: the network's input vector, the ``k_max`` survivors (invalid for a
       tile's first batch) and the batch with blocked keys marked invalid. A non-final batch
       none of whose keys entered is dropped here (the survivors stand and the tile's next
       batch may decide in the following cycle); a tile's last batch always passes, even
       with nothing entering, so every tile's result leaves the network in order.
    4. *Network*: the pruned compare-exchange network of :mod:`hw.sortnet` (``sort_width``
       inputs, ``k_max`` outputs, a register every ``layers_per_stage`` layers, ``P``
       stages), free running, a new step per cycle. Steps of different tiles overlap; within
       a tile a step depends on the previous one, a round trip of ``P + 1`` cycles (decide,
       gate, ``P`` stages; the next batch decides in the cycle the survivors appear).
    5. *Output queue*: ``queue_depth`` tile results; its head is the serializer that emits
       ``min(top_k, survivors)`` beats (or one ``empty`` beat) per tile.

    Sort key. An entry is the unsigned ``(valid, Â with its sign bit inverted, ~index)``: the
    larger key is the larger Â, then the lower index; invalid entries (valid bit 0, the other
    bits are don't-care) always lose.

    Parameters
    ----------
    cfg : SofaConfig
    kind : str
        Network: ``"oddeven"`` (default, fewer comparators after pruning) or ``"bitonic"``.
    layers_per_stage : int
        Comparator layers between pipeline registers of the network.
    counter_width : int
        Width of the counter outputs (they wrap).
    prior : bool
        A unit of :class:`hw.sadsbank.SADSBank`, which sees only some tiles of a row: each
        tile's first key has ``first`` and brings the row's largest Â before the tile and the
        row's ``top_k`` and radius (:func:`key_layout`); the :py:`top_k` and :py:`radius`
        ports are unused. The selection of a tile is the same as with the whole row.

    Attributes
    ----------
    ahat : In(stream.Signature(key_layout(cfg, prior=prior)))
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
        keys that entered the sorter, sorter steps in which at least one key entered (a
        tile's last batch crosses the network even when nothing enters; that pass is not a
        step), tiles emitted (counted at their last beat). The first four equal the sums of
        :class:`sim.golden.TileSelection`'s fields; a batch is counted three cycles after it
        leaves the launch register.
    stages : int
        Pipeline registers of the network, ``P = ceil(depth / layers_per_stage)``.
    latency : int
        Cycles from the acceptance of the key that completes a tile to the tile's first
        :py:`sel` beat, when the tile's last batch need not wait for the previous step's
        survivors (e.g. a tile of one batch) nor for an output-queue slot: ``P + 4`` (batch
        register, launch register, gate register, ``P`` network stages, output queue).
    tile_latency : int
        The same for a full tile in steady traffic where every batch enters the sorter:
        ``P + 4`` for a one-batch tile; for ``n > 1`` batches,
        ``P + 4 + max(0, P + 1 - r)`` with ``r`` the keys of the tile's last batch (it waits
        for the previous step's survivors), whenever ``(n == 2 or P + 1 <= batch)`` and
        ``1 + max(0, P + 1 - r) <= batch``; in general the value found by :meth:`schedule`.
        Default preset: 21 (``P = 10``, ``r = 4``).
    ii : int or float
        Cycles per input key in steady traffic without backpressure, worst case (every batch
        enters the sorter; skipped batches only make it faster). It is 1 under the condition
        above (the batch and launch registers hide the last batch's wait), e.g. for the
        tiny, default and ecp5 presets; otherwise the average found by :meth:`schedule`:
        1.625 for the ice40 preset (batches of 2 keys against a 4-cycle round trip),
        2.6 for block_size 5, sort_width 5, k_max 3 (batches of 2 keys).
    queue_depth : int
        Tile results the output queue holds (its head is being emitted):
        ``max(2, floor((P + 1 + k_max) / block_size) + 1)``, enough that it never limits
        the steady state above (a tile holds its slot from its last batch's decision until
        its last beat, at most ``P + 1 + k_max`` cycles).
    comparators, depth : int
        Comparators and layers of the pruned network.
    """

    def __init__(self, cfg, *, kind="oddeven", layers_per_stage=1, counter_width=32,
                 prior=False):
        self._cfg = cfg
        self._prior = prior
        der = cfg.derived
        self._kind = kind
        self._lps = layers_per_stage
        self._timing = sads_timing(cfg, kind, layers_per_stage)
        self._network = self._timing.network
        self._key_width = 1 + der.ahat_width + der.index_width
        super().__init__({
            "ahat": In(stream.Signature(key_layout(cfg, prior=prior))),
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
        return self._timing.stages

    @property
    def latency(self):
        return self._timing.latency

    @property
    def queue_depth(self):
        return self._timing.queue_depth

    @property
    def tile_latency(self):
        return self._timing.tile_latency

    @property
    def ii(self):
        return self._timing.ii

    def schedule(self, keys, *, top_k, queue_depth=None):
        """:meth:`spec.timing.SadsTiming.schedule` of this unit: cycle-exact timing of one row
        under steady traffic, mirroring :meth:`elaborate`'s control."""
        return self._timing.schedule(keys, top_k=top_k, queue_depth=queue_depth)

    # -- hardware ---------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        cfg, der = self._cfg, self._cfg.derived
        B, nb, K, Q = cfg.block_size, der.batch, cfg.k_max, self.queue_depth
        AW, IW, TW = der.ahat_width, der.index_width, der.topk_width
        KW = self._key_width

        def pack(value, index):
            """The sort key without its valid bit: ``(Â with its sign inverted, ~index)``."""
            return Cat(~index, value.as_unsigned()[:AW - 1], ~value.as_unsigned()[AW - 1])

        def value_of(key):
            """Â (signed) of a packed key, with or without its valid bit."""
            return Cat(key[IW:IW + AW - 1], ~key[IW + AW - 1]).as_signed()

        def rank_of(key):
            """Â of a packed key in offset binary: unsigned, ordered like Â."""
            return key[IW:IW + AW]

        def unpack(key):
            return value_of(key), ~key[:IW], key[KW - 1]

        tag_layout = data.StructLayout({"final": 1, "row_last": 1, "top_k": TW})
        m.submodules.net = net = SortNet(self._network, KW, tag_width=tag_layout.size,
                                         layers_per_stage=self._lps, select=True)
        o_tag = data.View(tag_layout, net.o_tag)
        m.d.comb += net.en.eq(1)               # free running: the output queue never overflows

        # -- collection: the batch register ------------------------------------------------
        batch_layout = _batch_layout(cfg)
        bpos = Signal(range(nb))
        tpos = Signal(range(B))
        # the batch's keys take no reset (counts and masks qualify them): fewer loads on a restart
        buf_k = [Signal(KW - 1, name=f"buf_k{j}", reset_less=True) for j in range(nb)]
        if cfg.adapt_bins:
            buf_el = Signal(nb)                # eligible under the adaptive budget
        buf = Signal(batch_layout)
        buf_full = Signal()
        row_topk = Signal(TW)
        row_radius = Signal(der.radius_width)
        row_max = Signal(signed(AW))           # largest Â of the row's keys so far

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
        radius_in = p.radius if self._prior else self.radius
        top_k = p.top_k if self._prior else self.top_k
        m.d.comb += topk_in.eq(Mux(top_k == 0, 1, Mux(top_k > K, K, top_k)))
        with m.If(accept):
            for j in range(nb):
                with m.If(bpos == j):
                    m.d.sync += buf_k[j].eq(pack(p.value, p.index))
                    if cfg.adapt_bins:
                        m.d.sync += buf_el[j].eq(p.eligible)
            with m.If(p.first):
                m.d.sync += [row_topk.eq(topk_in), row_radius.eq(radius_in)]
            m.d.sync += [
                buf.top_k.eq(Mux(p.first, topk_in, row_topk)),
                buf.count.eq(bpos + 1),
                buf.tile_final.eq(tile_end),
                buf.row_last.eq(p.last),
            ]
            if self._prior:
                # A tile's first key starts from the row's maximum before the tile.
                start = Mux(p.prior_valid & (p.prior_max > p.value), p.prior_max, p.value)
                m.d.sync += row_max.eq(Mux(p.first, start,
                                           Mux(p.value > row_max, p.value, row_max)))
            else:
                m.d.sync += row_max.eq(Mux(p.first | (p.value > row_max), p.value, row_max))
            with m.If(bpos == 0):
                # run_max of this batch is the largest Â of the row's earlier batches: the
                # running maximum before its first key (the row's first batch has none).
                if self._prior:
                    m.d.sync += [
                        buf.tile_first.eq(tpos == 0),
                        buf.rad_en.eq(Mux(p.first, p.prior_valid & (radius_in != der.radius_inf),
                                          row_radius != der.radius_inf)),
                        buf.rthr.eq(Mux(p.first, p.prior_max - radius_in,
                                        row_max - row_radius)),
                    ]
                else:
                    m.d.sync += [
                        buf.tile_first.eq(tpos == 0),
                        buf.rad_en.eq(~p.first & (row_radius != der.radius_inf)),
                        buf.rthr.eq(row_max - row_radius),
                    ]
            with m.If(complete):
                m.d.sync += [bpos.eq(0), tpos.eq(Mux(tile_end, 0, tpos + 1))]
            with m.Else():
                m.d.sync += [bpos.eq(bpos + 1), tpos.eq(tpos + 1)]
        m.d.sync += buf_full.eq((buf_full & ~transfer) | (accept & complete))

        # -- the launch register: the blocking decision --------------------------------------
        L_k = [Signal(KW - 1, name=f"launch_k{j}", reset_less=True) for j in range(nb)]
        L_present = Signal(nb)
        L_rad = Signal(nb)                     # blocked by the radius (on the way in)
        if cfg.adapt_bins:
            L_el = Signal(nb)                  # eligible under the adaptive budget
        L = Signal(data.StructLayout({
            "tile_first": 1, "tile_final": 1, "row_last": 1, "top_k": TW,
        }))
        m.d.comb += transfer.eq(buf_full & (~L_valid | decide))
        with m.If(transfer):
            m.d.sync += [
                L_valid.eq(1),
                L.tile_first.eq(buf.tile_first), L.tile_final.eq(buf.tile_final),
                L.row_last.eq(buf.row_last), L.top_k.eq(buf.top_k),
                L_present.eq(Cat(buf.count > j for j in range(nb))),
                L_rad.eq(Cat((buf.count > j) & buf.rad_en & (value_of(buf_k[j]) < buf.rthr)
                             for j in range(nb))),
            ]
            m.d.sync += [L_k[j].eq(buf_k[j]) for j in range(nb)]
            if cfg.adapt_bins:
                m.d.sync += L_el.eq(buf_el)
        with m.Elif(decide):
            m.d.sync += L_valid.eq(0)

        # The top_k-th survivor of the tile's latest step is held by the network's last stage
        # (o_sel); tile_entered says whether the tile has survivors at all.
        busy = Signal()                        # a step this batch depends on is in flight
        tile_entered = Signal()                # an earlier batch of the tile entered the sorter
        # (both are known before the next batch of the tile can decide: a batch sets busy
        # when it decides and clears it in the gate register if it is skipped, else when its
        # step leaves the network; tile_entered is updated from the gate register)
        emerge_nf = Signal()                   # a non-final step leaves the network
        m.d.comb += emerge_nf.eq(net.o_valid & ~o_tag.final)
        thr = net.o_sel
        no_surv = Signal()                     # the batch's tile has no survivors yet
        no_full = Signal()                     # fewer than top_k survivors: nothing is full
        m.d.comb += [
            no_surv.eq(L.tile_first | ~tile_entered),
            no_full.eq(no_surv | ~thr[KW - 1]),
        ]
        rad = [Signal(name=f"rad{j}") for j in range(nb)]
        full = [Signal(name=f"full{j}") for j in range(nb)]
        enter = [Signal(name=f"enter{j}") for j in range(nb)]
        for j in range(nb):
            # Survivors come from earlier batches of the tile (lower indices), so "key > thr"
            # is exactly "Â > thr's Â".
            gt = rank_of(L_k[j]) > rank_of(thr)
            # Blocked by the radius, then (adaptive budget) as not eligible, then as unable to
            # enter a full list: the order of sim.golden.sads_row.
            ok = L_present[j] & ~rad[j]
            if cfg.adapt_bins:
                ok = ok & L_el[j]
            m.d.comb += [
                rad[j].eq(L_rad[j]),
                full[j].eq(ok & ~no_full & ~gt),
                enter[j].eq(ok & (no_full | gt)),
            ]

        # -- control -----------------------------------------------------------------------
        reserved = Signal(range(Q + 1))        # output-queue slots held by decided tiles
        credit = Signal(init=1)                # reserved < Q (registered)
        pop = Signal()                         # the serializer finishes a tile
        G_valid = Signal()
        G_surv = [Signal(KW, name=f"gate_s{r}") for r in range(K)]
        G_k = [Signal(KW, name=f"gate_k{j}", reset_less=True) for j in range(nb)]
        G_rad = Signal(nb)
        G_full = Signal(nb)
        G_any = Signal()                       # a key of the batch enters the sorter
        G_final = Signal()
        G_tile_first = Signal()
        G_skip = Signal()                      # the gate register drops a non-final batch
        m.d.comb += decide.eq(L_valid & (~busy | emerge_nf) & (~L.tile_final | credit))
        with m.If(decide):
            m.d.sync += busy.eq(~L.tile_final)
        with m.Elif(emerge_nf | G_skip):
            m.d.sync += busy.eq(0)
        reserved_next = Signal.like(reserved)
        m.d.comb += reserved_next.eq(reserved + (decide & L.tile_final) - pop)
        m.d.sync += [reserved.eq(reserved_next), credit.eq(reserved_next < Q)]

        with m.If(G_valid):
            m.d.sync += tile_entered.eq((~G_tile_first & tile_entered) | G_any)

        S = [Signal(KW, name=f"surv{r}") for r in range(K)]
        with m.If(emerge_nf):
            m.d.sync += [S[r].eq(net.o[r]) for r in range(K)]

        # -- the gate register: the network's input vector ------------------------------------
        G_tag = Signal(tag_layout.size)
        G_rank = Signal(range(K))
        m.d.sync += [
            G_valid.eq(decide),
            G_rad.eq(Cat(*rad)), G_full.eq(Cat(*full)),
            G_final.eq(L.tile_final), G_tile_first.eq(L.tile_first),
            G_tag.eq(Cat(L.tile_final, L.row_last, L.top_k)),
            G_rank.eq(L.top_k - 1),
        ]
        # Only valid bits are gated: an invalid entry loses to every valid one whatever its
        # other bits hold, and nothing downstream reads those bits.
        m.d.sync += [G_k[j].eq(Cat(L_k[j], enter[j])) for j in range(nb)]
        for r in range(K):
            src = Mux(emerge_nf, net.o[r], S[r])
            m.d.sync += G_surv[r].eq(Cat(src[:KW - 1], src[KW - 1] & ~no_surv))
        # A non-final batch nothing of which enters is skipped (the survivors stand); a tile's
        # last batch always passes, so its result reaches the queue in order.
        m.d.comb += [
            G_any.eq(Cat(k[KW - 1] for k in G_k).any()),
            G_skip.eq(G_valid & ~G_final & ~G_any),
            net.i_valid.eq(G_valid & (G_final | G_any)),
            net.i_tag.eq(G_tag),
            net.i_rank.eq(G_rank),
            net.i_sel_en.eq(~G_final),
        ]
        for r in range(K):
            m.d.comb += net.i[r].eq(G_surv[r])
        for j in range(nb):
            m.d.comb += net.i[K + j].eq(G_k[j])

        # -- output queue; its head is the serializer ----------------------------------------
        q_res = [[Signal(KW, name=f"q{i}_res{r}") for r in range(K)] for i in range(Q)]
        q_left = [Signal(range(K), name=f"q{i}_left") for i in range(Q)]   # beats after this
        q_first = [Signal(name=f"q{i}_first") for i in range(Q)]
        q_row_last = [Signal(name=f"q{i}_row_last") for i in range(Q)]
        count = Signal(range(Q + 1))
        res = q_res[0]
        value0, index0, valid0 = unpack(res[0])
        empty = Signal()
        ser_last = Signal()
        m.d.comb += [
            empty.eq(~valid0),
            ser_last.eq(empty | (q_left[0] == 0) | (~res[1][KW - 1] if K > 1 else 1)),
            self.sel.valid.eq(count != 0),
            self.sel.payload.value.eq(Mux(empty, 0, value0)),
            self.sel.payload.index.eq(Mux(empty, 0, index0)),
            self.sel.payload.empty.eq(empty),
            self.sel.payload.first.eq(q_first[0]),
            self.sel.payload.last.eq(ser_last),
            self.sel.payload.row_last.eq(q_row_last[0]),
        ]
        beat = Signal()
        write = Signal()
        m.d.comb += [
            beat.eq(self.sel.valid & self.sel.ready),
            pop.eq(beat & ser_last),
            write.eq(net.o_valid & o_tag.final),
        ]
        with m.If(beat):
            m.d.sync += [res[r].eq(res[r + 1] if r + 1 < K else 0) for r in range(K)]
            m.d.sync += [q_left[0].eq(q_left[0] - 1), q_first[0].eq(0)]
        with m.If(pop):
            for i in range(Q - 1):
                m.d.sync += [q_res[i][r].eq(q_res[i + 1][r]) for r in range(K)]
                m.d.sync += [q_left[i].eq(q_left[i + 1]), q_first[i].eq(q_first[i + 1]),
                             q_row_last[i].eq(q_row_last[i + 1])]
        wi = Signal(range(Q + 1))
        m.d.comb += wi.eq(count - pop)
        for i in range(Q):
            with m.If(write & (wi == i)):
                m.d.sync += [q_res[i][r].eq(net.o[r]) for r in range(K)]
                m.d.sync += [q_left[i].eq(o_tag.top_k - 1), q_first[i].eq(1),
                             q_row_last[i].eq(o_tag.row_last)]
        m.d.sync += count.eq(count + write - pop)

        # -- counters (a popcount register stage behind the gate register) -------------------
        cnt_w = range(nb + 1)
        c_rad, c_full, c_enter = Signal(cnt_w), Signal(cnt_w), Signal(cnt_w)
        c_step = Signal()
        m.d.sync += [
            c_rad.eq(Mux(G_valid, _popcount(G_rad), 0)),
            c_full.eq(Mux(G_valid, _popcount(G_full), 0)),
            c_enter.eq(Mux(G_valid, _popcount(Cat(k[KW - 1] for k in G_k)), 0)),
            c_step.eq(G_valid & G_any),
            self.blocked_radius.eq(self.blocked_radius + c_rad),
            self.blocked_full.eq(self.blocked_full + c_full),
            self.entered.eq(self.entered + c_enter),
            self.sort_steps.eq(self.sort_steps + c_step),
        ]
        with m.If(pop):
            m.d.sync += self.tiles.eq(self.tiles + 1)
        return m


def _popcount(bits):
    """Ones in ``bits``, as a balanced adder tree."""
    terms = [bits[i] for i in range(len(bits))]
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]
