"""The on-demand K/V paths of :class:`hw.axiengine.AxiEngine` (``kv_source = "project"``),
wired into the engine's module (its signals are the arguments), as :mod:`hw.kgroup` does for
packed K:

* :func:`khat_feed`, :func:`khat_broadcast`: each X row taken from the X ring's reader goes, chunk by chunk, through
  :class:`hw.khat.KhatPredictor`; its ``K̂`` row is broadcast to the lanes' DLZS in place of
  a K row;
* :func:`projected_rows`: where the given mode reads a V row from memory (the RASS order, or
  every row of a tile in dense mode), the key's X row is read from the X ring into
  :class:`hw.project.ProjectionUnit`, and its exact K and V rows land in the KV ring (a
  ring of ``V_TILES`` tiles like the V ring, each entry a K row and a V row).
"""

from amaranth.hdl import Cat, Mux, Signal
from amaranth.lib import data, memory, wiring

from hw.skid import SkidBuffer


__all__ = ["khat_feed", "khat_broadcast", "projected_rows"]


def khat_feed(m, cfg, khat, row, take, dense):
    """X rows into phase 1.1, chunk by chunk. ``row`` is the X row the ring writer takes
    (``take``); returns the X reader's ready (the serializer is free)."""
    chunks = cfg.d_model // cfg.khat_lanes
    xs_valid = Signal()
    xs_row = Signal(8 * cfg.d_model)
    xs_k = Signal(range(chunks))
    x_take = khat.x.valid & khat.x.ready
    m.d.comb += [khat.x.valid.eq(xs_valid),
                 khat.x.payload.data.eq(xs_row.word_select(xs_k, 8 * cfg.khat_lanes)),
                 khat.x.payload.last.eq(0)]
    ready = ~xs_valid | (khat.x.ready & (xs_k == chunks - 1))
    with m.If(x_take):
        m.d.sync += xs_k.eq(Mux(xs_k == chunks - 1, 0, xs_k + 1))
        with m.If(xs_k == chunks - 1):
            m.d.sync += xs_valid.eq(0)
    with m.If(take & ~dense):
        m.d.sync += [xs_valid.eq(1), xs_row.eq(row[:8 * cfg.d_model]), xs_k.eq(0)]
    return ready


def khat_broadcast(m, cfg, khat, block_go, in_block, lens, kb_valid, kb_last, kb_adv, kb_row,
                   k_keys):
    """K̂ rows, in order, to every lane still inside its length (after the engine's
    :func:`hw.kgroup.release_k_word`, whose clearing of ``kb_valid`` this overrides)."""
    kh_row = Signal(cfg.derived.seq_len_width)
    lanes = range(len(lens))
    kh_take = khat.khat.valid & khat.khat.ready
    need = Cat(*(in_block[i] & (kh_row < lens[i]) for i in lanes))
    m.d.comb += [khat.khat.ready.eq(kb_adv), k_keys.eq(kh_take & need.any())]
    with m.If(block_go):
        m.d.sync += kh_row.eq(0)
    with m.Elif(kh_take):
        m.d.sync += [kh_row.eq(kh_row + 1), kb_row.as_value().eq(khat.khat.payload.data),
                     kb_valid.eq(need),
                     kb_last.eq(Cat(*(kh_row == lens[i] - 1 for i in lanes)))]


def projected_rows(m, cfg, proj, rass, x_ring, dense, block_go, block_busy, span_c, k_wslot,
                   k_filled, released, tile_pos, wrap_inc, tile_bits, vt_tiles):
    """The exact K and V rows of the keys the lanes take, projected into the KV ring.
    Returns ``(v_tile, v_slot, kv_ring, sent, arrive, arrive_slot, arrive_at, projected)``:
    the tile being served and its ring slot, the ring (``2 · 8·d`` bits an entry, K in the low
    half), a row handed to the projection this cycle (into slot ``v_slot``), a row landing in
    the ring this cycle, its slot and entry, and a row leaving the projection (the counter)."""
    B, KT, VT = cfg.block_size, cfg.k_tiles, vt_tiles
    der = cfg.derived
    v_tile = Signal(tile_bits)                   # tile being served (global)
    v_slot = Signal(range(VT))
    x_slot = Signal(range(KT))                   # its X rows' slot in the X ring
    v_key0 = Signal(der.seq_len_width)
    v_rows_left = Signal(der.seq_len_width)      # dense: rows still to project
    v_sub = Signal(range(B + 1))
    v_room = (v_tile - released)[:tile_bits] < VT
    with m.If(block_go):
        m.d.sync += [v_key0.eq(0), v_rows_left.eq(span_c), v_sub.eq(0), x_slot.eq(k_wslot)]
    next_tile = [v_tile.eq(v_tile + 1), v_slot.eq(wrap_inc(v_slot, VT)),
                 x_slot.eq(wrap_inc(x_slot, KT))]
    send_valid, send_pos, sent = Signal(), Signal(range(B)), Signal()
    send_ready = Signal()
    m.d.comb += sent.eq(send_valid & send_ready)

    # sparse: the RASS order through a register, then a stage holding one row (or a marker)
    m.submodules.fetch_skid = fetch_skid = SkidBuffer(rass.fetch.payload.shape(),
                                                      skid=cfg.skid_buffers)
    wiring.connect(m, rass.fetch, fetch_skid.i)
    fetch = fetch_skid.o
    stage = Signal(data.StructLayout({"pos": range(B), "marker": 1}))
    stage_valid = Signal()
    m.d.comb += fetch.ready.eq(~dense & (~stage_valid | (sent & ~stage.marker)))
    with m.If(fetch.valid & fetch.ready):
        m.d.sync += [stage_valid.eq(1), stage.marker.eq(fetch.payload.marker),
                     stage.pos.eq(tile_pos(fetch.payload.index, v_key0))]
    with m.Elif(stage_valid & (sent | stage.marker) & ~dense):
        m.d.sync += stage_valid.eq(0)
    rows = Mux(v_rows_left < B, v_rows_left, B)
    with m.If(~dense):
        m.d.comb += [send_valid.eq(stage_valid & ~stage.marker & v_room),
                     send_pos.eq(stage.pos)]
        with m.If(stage_valid & stage.marker):
            m.d.sync += [*next_tile, v_key0.eq(v_key0 + B)]
    with m.Else():                               # dense: every row of a tile whose X is in
        m.d.comb += [send_valid.eq(block_busy & (v_rows_left != 0) & v_room &
                                   (v_tile != k_filled)),
                     send_pos.eq(v_sub)]
        with m.If(sent):
            with m.If(v_sub == rows - 1):
                m.d.sync += [v_sub.eq(0), *next_tile, v_rows_left.eq(v_rows_left - rows)]
            with m.Else():
                m.d.sync += v_sub.eq(v_sub + 1)

    # the key's X row from the X ring into the projection, with its KV ring place
    x_rd = x_ring.read_port()
    p_valid = Signal()
    tag_layout = data.StructLayout({"slot": range(VT), "pos": range(B)})
    p_tag = Signal(tag_layout)
    adv = ~p_valid | proj.x.ready
    m.d.comb += [send_ready.eq(adv), x_rd.en.eq(adv), x_rd.addr.eq(x_slot * B + send_pos),
                 proj.x.valid.eq(p_valid), proj.x.payload.tag.eq(p_tag),
                 proj.x.payload.data.eq(x_rd.data[:8 * cfg.d_model])]
    with m.If(adv):
        m.d.sync += [p_valid.eq(sent), p_tag.slot.eq(v_slot), p_tag.pos.eq(send_pos)]

    # the projected rows into the KV ring
    m.submodules.kv_ring = kv_ring = memory.Memory(shape=16 * cfg.d, depth=VT * B, init=[])
    kv_wr = kv_ring.write_port()
    out_tag = data.View(tag_layout, proj.o.payload.tag)
    arrive_at = out_tag.slot * B + out_tag.pos
    m.d.comb += [proj.o.ready.eq(1), kv_wr.addr.eq(arrive_at),
                 kv_wr.data.eq(Cat(proj.o.payload.k, proj.o.payload.v)),
                 kv_wr.en.eq(proj.o.valid)]
    return (v_tile, v_slot, kv_ring, sent, proj.o.valid, out_tag.slot, arrive_at,
            proj.o.valid & proj.o.ready)
