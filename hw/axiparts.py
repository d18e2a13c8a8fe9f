"""Parts of :class:`hw.axiengine.AxiEngine`: the layouts of its job descriptor and of its
per-cycle events, and a lane's key source (its RASS feed, or every key in dense mode)."""

from amaranth.hdl import Mux, Signal
from amaranth.lib import data, stream, wiring

from hw.sads import sel_layout
from hw.skid import SkidBuffer
from spec.job import (PROJ_MULT_BITS, PROJ_RSHIFT_MAX, TENSORS, WEIGHTS, bus_bytes,
                      khat_shift_max, projects)


__all__ = ["descriptor_layout", "event_layout", "lane_source"]


def descriptor_layout(cfg):
    """The job as the engine sees it: the values of :mod:`spec.regmap`'s job registers."""
    aw, der = cfg.axi_addr_width, cfg.derived
    fields = {"seq_len": der.seq_len_width, "queries": 24, "heads": 16, "causal": 1,
              "q_start": 32, "rass": 1, "dense": 1, "top_k": der.topk_width,
              "radius": der.radius_width, "scale": cfg.c_bits}
    for t in TENSORS:
        fields |= {f"{t}_base": aw, f"{t}_stride": 32, f"{t}_head_stride": 32}
    if projects(cfg):                            # on-demand K/V (spec.job)
        fields |= {"x_base": aw, "x_stride": 32, "x_head_stride": 32,
                   **{f"{w}_base": aw for w in WEIGHTS}, "w_head_stride": 32,
                   "khat_shift": range(khat_shift_max(cfg) + 1), "k_mult": PROJ_MULT_BITS,
                   "v_mult": PROJ_MULT_BITS, "k_rshift": range(PROJ_RSHIFT_MAX + 1),
                   "v_rshift": range(PROJ_RSHIFT_MAX + 1)}
    return data.StructLayout(fields)


def event_layout(cfg):
    """What the engine counts each cycle (per-cycle increments of the core's counters)."""
    BB = bus_bytes(cfg)
    extra = {"rows_projected": 1, "bytes_x": range(BB + 1),
             "bytes_w": range(BB + 1)} if projects(cfg) else {}
    return data.StructLayout({
        "predict": 1, "k_rows_predict": range(cfg.predict_keys + 1),
        "kv_rows_fetch": range(cfg.q_lanes + 1),
        "starved": 1, "sufa_stall": 1, "out_stall": 1,
        "bytes_q": range(BB + 1), "bytes_k": range(BB + 1), "bytes_v": range(BB + 1),
        "bytes_o": range(BB + 1),
        "ar_stall": 1, "r_wait": 1, "aw_stall": 1, "w_stall": 1, "b_wait": 1, **extra,
    })


def lane_source(m, cfg, i, dense, block_go, length, in_block, rass):
    """Lane ``i``'s keys: its RASS feed (sparse) or every key in natural order (dense)."""
    B = cfg.block_size
    src = stream.Signature(sel_layout(cfg)).create(path=(f"src{i}",))
    key = Signal(cfg.derived.seq_len_width, name=f"dg_key{i}")
    pos = Signal(range(B), name=f"dg_pos{i}")
    dg_on = Signal(name=f"dg_on{i}")
    feed = rass.feed[i]
    row_last = key == length - 1
    with m.If(dense):
        m.d.comb += [src.valid.eq(dg_on), src.payload.index.eq(key),
                     src.payload.first.eq(pos == 0),
                     src.payload.last.eq((pos == B - 1) | row_last),
                     src.payload.row_last.eq(row_last)]
    with m.Else():
        m.d.comb += [src.valid.eq(feed.valid), src.payload.eq(feed.payload),
                     feed.ready.eq(src.ready)]
    with m.If(block_go):
        m.d.sync += [key.eq(0), pos.eq(0), dg_on.eq(dense & rass.lanes[i])]
    with m.Elif(dense & src.valid & src.ready):
        m.d.sync += [key.eq(key + 1), pos.eq(Mux(pos == B - 1, 0, pos + 1))]
        with m.If(row_last):
            m.d.sync += dg_on.eq(0)
    # A register stage before the lane's ring lookup, so that the RASS feed's read enable
    # and the dense key counter do not hang behind the V-slot lookup (a long path on the
    # ECP5 memory board).
    m.submodules[f"feed_skid{i}"] = skid = SkidBuffer(sel_layout(cfg),
                                                      skid=cfg.skid_buffers)
    wiring.connect(m, src, skid.i)
    return skid.o
