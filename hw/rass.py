"""RassScheduler: reuse-aware V fetch order of one lane block, tile by tile (RASS).

The memory-attached core streams K once per block of ``q_lanes`` queries; each lane's SADS then
selects up to ``top_k`` keys of every tile, and the V rows of the selected keys are fetched from
memory. Lanes of a block often select the same key. This unit collects, tile by tile, every
active lane's selection and emits the V rows to fetch:

* **RASS on**: each distinct selected row once, the most shared first (rows selected by all
  lanes, then by one lane fewer, …; ties in lane-then-rank order) — the paper's greedy order,
  so the rows that unblock the most lanes arrive first;
* **RASS off**: every lane's rows in lane order, a row selected by two lanes twice.

Each tile's fetches end with a ``marker`` beat (also for a tile where nothing was selected), so
the fetcher knows where tiles end. The selection beats themselves pass on, unchanged and in
SADS order, to the lane's feeder (:py:`feed`).

:func:`sim.jobs.rass_order` is the same order in Python; the core's tests compare the V reads
on the AXI bus with it.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.sads import sel_layout


__all__ = ["RassScheduler", "fetch_layout"]


def fetch_layout(cfg):
    """One V row to fetch (``index``), or the end of a tile's fetches (``marker``)."""
    return data.StructLayout({"index": cfg.derived.index_width, "marker": 1})


class RassScheduler(wiring.Component):
    """Collects the lanes' selections of a tile and emits the V fetch order.

    A block starts with :py:`start` (one cycle) and :py:`lanes`, the mask of its lanes. A lane
    takes part in every tile until the tile whose selection carries ``row_last`` (a causal
    query ends early). Per tile the unit first takes every active lane's beats up to the
    tile's ``last`` (in parallel, one beat per lane and cycle; each beat also goes to the
    lane's :py:`feed` FIFO), then emits the fetches, one per cycle, then the marker.

    Parameters
    ----------
    cfg : SofaConfig
        ``q_lanes`` lanes of up to ``k_max`` selected keys a tile.

    Attributes
    ----------
    sel : list of In(stream.Signature(sel_layout(cfg)))
        Per lane, from its SADS.
    feed : list of Out(stream.Signature(sel_layout(cfg)))
        Per lane, the same beats (a FIFO of ``2·(k_max + 1)``), to the lane's feeder.
    start : In(1)
        A block begins; :py:`lanes` says which lanes it has.
    lanes : In(q_lanes)
    rass : In(1)
        Reuse on (1) or off (0); sampled at each tile.
    fetch : Out(stream.Signature(fetch_layout(cfg)))
    busy : Out(1)
        Lanes of the current block are still active.
    ii : int
        Cycles a tile takes once its selections are there, at most, when every fetch is taken
        at once: a cycle to start, the collection (``k_max + 1``), a cycle to count, then
        ``q_lanes · q_lanes · k_max`` scan steps with RASS (``q_lanes · k_max`` without), and
        the marker.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        L = cfg.q_lanes
        super().__init__({
            "sel": Out(stream.Signature(sel_layout(cfg))).array(L).flip(),
            "feed": Out(stream.Signature(sel_layout(cfg))).array(L),
            "start": In(1),
            "lanes": In(L),
            "rass": In(1),
            "fetch": Out(stream.Signature(fetch_layout(cfg))),
            "busy": Out(1),
        })

    @property
    def ii(self):
        L, K = self._cfg.q_lanes, self._cfg.k_max
        return 1 + (K + 1) + 1 + L * L * K + 1

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        L, K, IW = cfg.q_lanes, cfg.k_max, cfg.derived.index_width
        N = L * K                                # entries of a tile

        active = Signal(L)                       # lanes still in the block
        collected = Signal(L)                    # lanes whose tile is collected
        ending = Signal(L)                       # lanes whose row ends with this tile
        idx = [Signal(IW, name=f"idx{s}") for s in range(N)]
        valid = Signal(N)
        fill = [Signal(range(K + 1), name=f"fill{lane}") for lane in range(L)]
        rass = Signal()

        feeds = []
        for lane in range(L):
            m.submodules[f"feed{lane}"] = f = fifo.SyncFIFOBuffered(
                width=len(self.sel[lane].payload.as_value()), depth=2 * (K + 1))
            feeds.append(f)
            m.d.comb += [self.feed[lane].valid.eq(f.r_rdy),
                         self.feed[lane].payload.eq(f.r_data),
                         f.r_en.eq(self.feed[lane].ready)]
        m.d.comb += self.busy.eq(active.any())

        # Share count and first occurrence of every entry (registered after collection).
        count = [Signal(range(L + 1), name=f"count{s}") for s in range(N)]
        first = Signal(N)
        for s in range(N):
            same = [valid[t] & (idx[t] == idx[s]) for t in range(N)]
            m.d.sync += [count[s].eq(sum(same)), first[s].eq(~Cat(*same[:s]).any() if s else 1)]

        level = Signal(range(L + 1))             # share count being emitted (RASS on)
        slot = Signal(range(N))
        with m.FSM(name="rass"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += active.eq(self.lanes)
                with m.If(active.any()):
                    m.d.sync += [collected.eq(~active), ending.eq(0), valid.eq(0),
                                 *[f.eq(0) for f in fill], rass.eq(self.rass)]
                    m.next = "COLLECT"
            with m.State("COLLECT"):
                for lane in range(L):
                    beat = self.sel[lane].payload
                    take = Signal(name=f"take{lane}")
                    m.d.comb += [
                        take.eq(self.sel[lane].valid & ~collected[lane] & feeds[lane].w_rdy),
                        self.sel[lane].ready.eq(take),
                        feeds[lane].w_en.eq(take),
                        feeds[lane].w_data.eq(beat.as_value()),
                    ]
                    with m.If(take):
                        with m.If(~beat.empty):
                            with m.Switch(fill[lane]):
                                for k in range(K):
                                    with m.Case(k):
                                        m.d.sync += [idx[lane * K + k].eq(beat.index),
                                                     valid[lane * K + k].eq(1)]
                            m.d.sync += fill[lane].eq(fill[lane] + 1)
                        with m.If(beat.last):
                            m.d.sync += [collected[lane].eq(1), ending[lane].eq(beat.row_last)]
                with m.If(collected.all()):
                    m.d.sync += [slot.eq(0), level.eq(L)]
                    m.next = "COUNT"
            with m.State("COUNT"):                   # count/first settle from valid/idx
                m.next = "EMIT"
            with m.State("EMIT"):
                eligible = Signal()
                m.d.comb += [
                    eligible.eq(Mux(rass, first.bit_select(slot, 1) &
                                     (Cat(*count).word_select(slot, len(count[0])) == level),
                                     1) & valid.bit_select(slot, 1)),
                    self.fetch.payload.index.eq(Cat(*idx).word_select(slot, IW)),
                    self.fetch.valid.eq(eligible),
                ]
                step = ~eligible | self.fetch.ready
                last_slot = slot == N - 1
                with m.If(step):
                    m.d.sync += slot.eq(Mux(last_slot, 0, slot + 1))
                    with m.If(last_slot):
                        with m.If(~rass | (level == 1)):
                            m.next = "MARKER"
                        with m.Else():
                            m.d.sync += level.eq(level - 1)
            with m.State("MARKER"):
                m.d.comb += [self.fetch.valid.eq(1), self.fetch.payload.marker.eq(1)]
                with m.If(self.fetch.ready):
                    m.d.sync += active.eq(active & ~ending)
                    m.next = "IDLE"
        return m
