"""SADSBank: per-tile top-k selection of ``predict_keys`` keys a cycle, by tiles in turn over
several :class:`hw.sads.SADS` units."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dlzs import ahat_layout
from hw.sads import SADS, sel_layout
from spec.timing import sads_bank_timing


__all__ = ["SADSBank"]


def _tile_layout(cfg):
    """A beat in a unit's queue: :func:`hw.dlzs.ahat_layout` with what the unit needs at
    its tile's first key."""
    der = cfg.derived
    return data.StructLayout({
        "value": data.ArrayLayout(signed(der.ahat_width), cfg.predict_keys),
        "index": der.index_width,
        "count": range(cfg.predict_keys + 1),
        "tile_first": 1,
        "last": 1,
        "prior_valid": 1,
        "prior_max": signed(der.ahat_width),
        "top_k": der.topk_width,
        "radius": der.radius_width,
    })


class SADSBank(wiring.Component):
    """Per-tile top-k selection with sphere clipping of ``P = predict_keys`` keys a cycle,
    bit-exact with :func:`sim.golden.sads_row` (the same keys, order, counts and framing as
    :class:`hw.sads.SADS` on the same row).

    A row's tiles are independent but for the radius threshold, which needs the largest Â of
    the row's earlier batches. The bank keeps that maximum itself over each beat (a
    ``P``-input maximum and a register) and deals the tiles out in turn to ``units``
    :class:`hw.sads.SADS` units, tile ``t`` of a row to unit ``t mod units``; each tile goes
    with the row's maximum before it (``prior``), the row's ``top_k`` and ``radius`` (sampled
    at the row's first beat), so a unit selects it exactly as one SADS seeing the whole row
    would. A unit takes one key a cycle from its queue of beats (``2·block_size/P`` beats: a
    tile and the next's start); the bank reads the units' results back in the same turn,
    so tiles leave in order. The radius test of a beat's ``P`` keys runs in parallel in the
    units' batch registers; with ``units = ceil(P · SADS ii)`` the units together take ``P``
    keys a cycle in steady traffic.

    Beats are tile-aligned (``P`` divides ``block_size``): beat ``b`` of a row holds keys
    ``b·P … b·P + count - 1``, as :class:`hw.dlzs.DLZS` emits them.

    Parameters
    ----------
    cfg : SofaConfig
        With ``predict_keys > 1``.
    counter_width : int
        Width of each unit's counter outputs (:attr:`units_list` has them).

    Attributes
    ----------
    ahat : In(stream.Signature(ahat_layout(cfg)))
        ``P`` keys' Â a beat, in key order.
    top_k, radius : In
        As :class:`hw.sads.SADS`; sampled with the row's first beat.
    sel : Out(stream.Signature(sel_layout(cfg)))
        As :class:`hw.sads.SADS`'s.
    units : int
        SADS units, ``ceil(P · ii of one SADS)``.
    units_list : list of SADS
        The units, whose counter outputs sum to the bank's counts.
    queue_beats : int
        Beats each unit's queue holds, ``2 · block_size / P``.
    latency : int
        A one-key row's beat accepted to its first :py:`sel` beat, pipeline empty:
        ``SADS latency + 2`` (the queue's write and output registers); a beat of ``n`` keys
        ends ``n - 1`` cycles later (its keys enter the unit one a cycle).
    ii : float
        Cycles per key in steady traffic: ``max(1 / P, SADS ii / units)``.
    """

    def __init__(self, cfg, *, counter_width=32):
        if cfg.predict_keys < 2:
            raise ValueError(f"SADSBank: predict_keys = {cfg.predict_keys}; a one-key core "
                             f"uses SADS")
        self._cfg = cfg
        self._timing = sads_bank_timing(cfg)
        self._units = [SADS(cfg, counter_width=counter_width, prior=True)
                       for _ in range(self._timing.units)]
        der = cfg.derived
        super().__init__({
            "ahat": In(stream.Signature(ahat_layout(cfg))),
            "top_k": In(der.topk_width),
            "radius": In(der.radius_width),
            "sel": Out(stream.Signature(sel_layout(cfg))),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def units(self):
        return self._timing.units

    @property
    def units_list(self):
        """The :class:`hw.sads.SADS` units, whose counters sum to the bank's."""
        return list(self._units)

    @property
    def queue_beats(self):
        return self._timing.queue_beats

    @property
    def latency(self):
        return self._timing.latency

    @property
    def ii(self):
        return self._timing.ii

    def elaborate(self, platform):
        m = Module()
        cfg, der = self._cfg, self._cfg.derived
        P, N, B = cfg.predict_keys, self.units, cfg.block_size
        beats = B // P                          # beats per full tile
        tile = _tile_layout(cfg)
        p = self.ahat.payload
        take = Signal()

        # -- the row's running maximum and the tile's beat position ---------------------------
        run_max = Signal(signed(der.ahat_width))
        beat_max = Signal(signed(der.ahat_width))
        best = p.value[0]
        for s in range(1, P):                   # slots past count hold no key
            best = Mux((s < p.count) & (p.value[s] > best), p.value[s], best)
        m.d.comb += beat_max.eq(best)
        pos = Signal(range(beats))              # beat within its tile
        dst = Signal(range(N))                  # unit of the current tile
        row_topk = Signal(der.topk_width)
        row_radius = Signal(der.radius_width)
        tile_end = Signal()
        m.d.comb += tile_end.eq((pos == beats - 1) | p.last)
        with m.If(take):
            m.d.sync += run_max.eq(Mux(p.first | (beat_max > run_max), beat_max, run_max))
            with m.If(p.first):
                m.d.sync += [row_topk.eq(self.top_k), row_radius.eq(self.radius)]
            with m.If(tile_end):
                m.d.sync += [pos.eq(0), dst.eq(Mux(p.last | (dst == N - 1), 0, dst + 1))]
            with m.Else():
                m.d.sync += pos.eq(pos + 1)
        beat = Signal(tile)
        m.d.comb += [
            beat.value.eq(p.value), beat.index.eq(p.index), beat.count.eq(p.count),
            beat.tile_first.eq(pos == 0), beat.last.eq(p.last),
            beat.prior_valid.eq(~p.first), beat.prior_max.eq(run_max),
            beat.top_k.eq(Mux(p.first, self.top_k, row_topk)),
            beat.radius.eq(Mux(p.first, self.radius, row_radius)),
        ]

        # -- per unit: its queue of beats, a key at a time into SADS --------------------------
        w_rdy = Signal(N)
        for u, sads in enumerate(self._units):
            m.submodules[f"sads{u}"] = sads
            m.submodules[f"queue{u}"] = q = fifo.SyncFIFOBuffered(width=tile.size,
                                                                  depth=self.queue_beats)
            m.d.comb += [q.w_data.eq(beat), q.w_en.eq(take & (dst == u)), w_rdy[u].eq(q.w_rdy)]
            head = data.View(tile, q.r_data)
            slot = Signal(range(P), name=f"slot{u}")
            end = Signal(name=f"end{u}")        # the head's last key
            k = sads.ahat.payload
            m.d.comb += [
                end.eq(slot == head.count - 1),
                sads.ahat.valid.eq(q.r_rdy),
                k.value.eq(head.value[slot]),
                k.index.eq(head.index + slot),
                k.first.eq(head.tile_first & (slot == 0)),
                k.last.eq(head.last & end),
                k.prior_valid.eq(head.prior_valid),
                k.prior_max.eq(head.prior_max),
                k.top_k.eq(head.top_k),
                k.radius.eq(head.radius),
                q.r_en.eq(sads.ahat.ready & end),
            ]
            with m.If(sads.ahat.valid & sads.ahat.ready):
                m.d.sync += slot.eq(Mux(end, 0, slot + 1))
        m.d.comb += [self.ahat.ready.eq(w_rdy.bit_select(dst, 1)),
                     take.eq(self.ahat.valid & self.ahat.ready)]

        # -- the units' results in tile order ---------------------------------------------------
        src = Signal(range(N))
        with m.Switch(src):
            for u, sads in enumerate(self._units):
                with m.Case(u):
                    m.d.comb += [self.sel.valid.eq(sads.sel.valid),
                                 self.sel.payload.eq(sads.sel.payload),
                                 sads.sel.ready.eq(self.sel.ready)]
        with m.If(self.sel.valid & self.sel.ready & self.sel.payload.last):
            m.d.sync += src.eq(Mux(self.sel.payload.row_last | (src == N - 1), 0, src + 1))
        return m

