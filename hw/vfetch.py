"""The given mode's V fetch of :class:`hw.axiengine.AxiEngine` (``kv_source = "given"``),
wired into the engine's module (its signals are the arguments), as :mod:`hw.projpath` does
for the rows projected on demand: in sparse mode the V rows in the RASS order, through an
address stage, one command a row; in dense mode a tile at a time (one command, or one a row).
The rows land in the V ring, a ring of ``V_TILES`` tiles of ``block_size`` rows.
"""

from amaranth.hdl import Mux, Signal
from amaranth.lib import data, memory, wiring

from hw.rows import RowAssembler
from hw.skid import SkidBuffer
from spec.timing import V_TILES


__all__ = ["fetched_rows"]


def fetched_rows(m, cfg, rd, rows_from, vtag_layout, job, base, rass, dense, block_go,
                 block_busy, span_c, k_filled, tile_pos, wrap_inc, packed, RW, TILE_BITS):
    """The V reads and the V ring. Returns ``(v_tile, v_slot, v_ring, sent, arrive,
    arrive_slot, v_at, v_valid, req_rows, v_ahead, v_step)``: the tile being fetched, its
    slot, the ring, a command accepted, a row landing (and its slot and ring address), the
    ring's row-valid bits, the rows a command asks for, and the tiles fetched ahead of the
    released ones with the strobe that counts them up."""
    der, B, VT = cfg.derived, cfg.block_size, V_TILES
    AW, BUS = cfg.axi_addr_width, cfg.axi_data_width
    v_tile = Signal(TILE_BITS)                   # tile being fetched (global)
    v_slot = Signal(range(VT))
    v_addr = Signal(AW)                          # the tile's first row
    v_key0 = Signal(der.seq_len_width)           # the tile's first key
    v_row_addr = Signal(AW)                      # dense, one command a row: the next row
    v_rows_left = Signal(der.seq_len_width)      # dense: rows still to fetch
    # v_tile - released, kept as a counter: the difference's carry chain would sit on the
    # V command's valid
    v_ahead = Signal(TILE_BITS)
    v_step = Signal()                            # v_tile moves on
    v_room = v_ahead < VT
    tile_step = Signal(AW)                       # B rows of V in bytes
    m.d.sync += tile_step.eq(job.v_stride * B)
    v_cmd = rd.cmd[2]
    vtag = data.View(vtag_layout, v_cmd.payload.tag)
    stage = Signal(data.StructLayout({"addr": AW, "pos": range(B), "marker": 1}))
    stage_valid = Signal()
    with m.If(block_go):
        m.d.sync += [v_addr.eq(base["v"]), v_row_addr.eq(base["v"]), v_key0.eq(0),
                     v_rows_left.eq(span_c)]
    # sparse: the RASS order, through an address stage (pos·stride is a multiply); a
    # marker ends the tile, and nothing enters behind it in that cycle (the tile's
    # address and first key move on)
    sent = v_cmd.valid & v_cmd.ready
    # the RASS order through a register first: the scheduler's state then does not reach
    # the address multiply in one cycle
    m.submodules.fetch_skid = fetch_skid = SkidBuffer(rass.fetch.payload.shape(),
                                                      skid=cfg.skid_buffers)
    wiring.connect(m, rass.fetch, fetch_skid.i)
    fetch = fetch_skid.o
    m.d.comb += fetch.ready.eq(~dense & (~stage_valid | (sent & ~stage.marker)))
    with m.If(fetch.valid & fetch.ready):
        pos = tile_pos(fetch.payload.index, v_key0)
        m.d.sync += [stage_valid.eq(1), stage.marker.eq(fetch.payload.marker),
                     stage.pos.eq(pos), stage.addr.eq(v_addr + pos * job.v_stride)]
    with m.Elif(stage_valid & (sent | stage.marker) & ~dense):
        m.d.sync += stage_valid.eq(0)
    with m.If(~dense):
        m.d.comb += [v_cmd.valid.eq(stage_valid & ~stage.marker & v_room),
                     v_cmd.payload.addr.eq(stage.addr), v_cmd.payload.beats.eq(RW),
                     vtag.slot.eq(v_slot), vtag.pos.eq(stage.pos)]
        with m.If(stage_valid & stage.marker):
            m.d.comb += v_step.eq(1)
            m.d.sync += [v_addr.eq(v_addr + tile_step), v_key0.eq(v_key0 + B)]
    with m.If(v_step):                           # the next tile, sparse or dense
        m.d.sync += [v_tile.eq(v_tile + 1), v_slot.eq(wrap_inc(v_slot, VT))]
    # dense: a tile at a time (one command, or one a row)
    v_sub = Signal(range(B + 1))
    # min(v_rows_left, B) and the stride test as flip-flops: both reach the command
    rows = Signal(range(B + 1))
    contiguous_v = Signal()
    m.d.sync += contiguous_v.eq(job.v_stride == packed)
    rows_after = v_rows_left - rows
    with m.If(block_go):
        m.d.sync += rows.eq(Mux(span_c < B, span_c, B))
    next_tile = [v_rows_left.eq(rows_after), rows.eq(Mux(rows_after < B, rows_after, B))]
    with m.If(dense):
        m.d.comb += [v_cmd.payload.addr.eq(v_row_addr), vtag.slot.eq(v_slot),
                     vtag.pos.eq(v_sub)]
        with m.If(v_sub == 0):
            m.d.comb += [v_cmd.valid.eq(block_busy & (rows != 0) & v_room &
                                        (v_tile != k_filled)),
                         v_cmd.payload.beats.eq(Mux(contiguous_v, rows * RW, RW))]
            with m.If(sent):
                with m.If(contiguous_v):
                    m.d.sync += [*next_tile, v_row_addr.eq(v_row_addr + rows * packed)]
                    m.d.comb += v_step.eq(1)
                with m.Else():
                    m.d.sync += v_row_addr.eq(v_row_addr + job.v_stride)
                    with m.If(rows == 1):
                        m.d.sync += next_tile
                        m.d.comb += v_step.eq(1)
                    with m.Else():
                        m.d.sync += v_sub.eq(1)
        with m.Else():
            m.d.comb += [v_cmd.valid.eq(1), v_cmd.payload.beats.eq(RW)]
            with m.If(sent):
                m.d.sync += v_row_addr.eq(v_row_addr + job.v_stride)
                with m.If(v_sub == rows - 1):
                    m.d.sync += [v_sub.eq(0), *next_tile]
                    m.d.comb += v_step.eq(1)
                with m.Else():
                    m.d.sync += v_sub.eq(v_sub + 1)

    m.submodules.v_rows = v_rows = RowAssembler(RW, BUS, vtag_layout, max_rows=B)
    rows_from(2, v_rows, tag=True)
    m.submodules.v_ring = v_ring = memory.Memory(shape=RW * BUS, depth=VT * B, init=[])
    v_wr = v_ring.write_port()
    v_valid = Signal(VT * B)
    vt = data.View(vtag_layout, v_rows.o.payload.tag)
    v_at = vt.slot * B + vt.pos + v_rows.o.payload.seq
    m.d.comb += [v_rows.o.ready.eq(1), v_wr.addr.eq(v_at),
                 v_wr.data.eq(v_rows.o.payload.row), v_wr.en.eq(v_rows.o.valid)]
    arrive, arrive_slot = v_rows.o.valid, vt.slot
    req_rows = Mux(dense & (v_sub == 0) & contiguous_v, rows, 1)
    return (v_tile, v_slot, v_ring, sent, arrive, arrive_slot, v_at, v_valid, req_rows,
            v_ahead, v_step)
