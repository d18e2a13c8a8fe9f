"""KeyGrouper: the packed K beats of a read regrouped into words of ``predict_keys`` rows, the
K reader of the memory-attached core with ``predict_keys > 1`` (:func:`spec.job.k_packed`)."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dlzs import row_layout
from hw.rows import unpack_row
from spec.job import bus_bytes, elem_bytes, k_read_beats, row_bytes


__all__ = ["KeyGrouper", "group_layout", "packed_keys", "release_k_word", "word_rows"]


def group_layout(cfg):
    """One word of ``predict_keys`` K rows as raw memory bytes (row ``s`` in bytes
    ``s · row_bytes …``, :func:`hw.rows.unpack_row` gives its elements) and ``last`` on the
    read's final word."""
    return data.StructLayout({"data": 8 * cfg.predict_keys * row_bytes(cfg), "last": 1})


class KeyGrouper(wiring.Component):
    """Bus beats of one K read (rows one row apart from the read's first byte) into words of
    ``P = predict_keys`` consecutive rows.

    With ``G = P · row_bytes`` bytes a word and ``W`` bytes a beat, one of the two divides
    the other (spec.config):

    * ``G ≤ W`` (**split**): a beat holds ``W / G`` words, which leave one a cycle;
    * ``G > W`` (**gather**): a word is ``G / W`` beats; the read's final beat (``last``)
      ends a word early (its rows past the read's end are junk, as are a split beat's words
      past the read's rows: the consumer counts its keys).

    Words leave in memory order; the word made from (or ending with) the read's last beat
    carries ``last``.

    Parameters
    ----------
    cfg : SofaConfig
        ``memory = "axi"``, ``predict_keys > 1``.

    Attributes
    ----------
    i : In(stream) of ``{data, last}``
        The read's beats (as :class:`hw.axi.AxiReader` emits them, ``last`` on the read's
        final beat).
    o : Out(stream.Signature(group_layout(cfg)))
    words_per_beat, beats_per_word : int
        ``W / G`` and ``G / W``, one of them 1.
    latency : int
        1: a word is on :py:`o` the cycle after the beat that completes it was taken.
    ii : int
        Cycles per word in steady traffic: ``max(1, G / W)`` (one word a cycle out of a
        split beat, one beat a cycle into a gathered word).
    """

    def __init__(self, cfg):
        self._cfg = cfg
        W, G = bus_bytes(cfg), cfg.predict_keys * row_bytes(cfg)
        if W % G and G % W:
            raise ValueError(f"KeyGrouper: a word of {G} bytes and a beat of {W} bytes: one "
                             f"must divide the other")
        self._split = max(1, W // G)
        self._gather = max(1, G // W)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"data": 8 * W, "last": 1}))),
            "o": Out(stream.Signature(group_layout(cfg))),
        })

    @property
    def words_per_beat(self):
        return self._split

    @property
    def beats_per_word(self):
        return self._gather

    @property
    def latency(self):
        return 1

    @property
    def ii(self):
        return self._gather

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        W = 8 * bus_bytes(self._cfg)
        G = 8 * cfg.predict_keys * row_bytes(cfg)
        take = Signal()
        if self._gather == 1:
            N = self._split
            beat = Signal(W)
            beat_last = Signal()
            word = Signal(range(N))
            done = Signal()                          # the held beat's final word leaves
            m.d.comb += [done.eq(self.o.valid & self.o.ready & (word == N - 1)),
                         self.i.ready.eq(~self.o.valid | done),
                         take.eq(self.i.valid & self.i.ready)]
            with m.If(take):
                m.d.sync += [beat.eq(self.i.payload.data), beat_last.eq(self.i.payload.last),
                             self.o.valid.eq(1), word.eq(0)]
            with m.Elif(done):
                m.d.sync += self.o.valid.eq(0)
            with m.Elif(self.o.valid & self.o.ready):
                m.d.sync += word.eq(word + 1)
            parts = Array(beat[g * G:(g + 1) * G] for g in range(N))
            m.d.comb += [self.o.payload.data.eq(parts[word] if N > 1 else beat),
                         self.o.payload.last.eq(beat_last & (word == N - 1))]
            return m
        N = self._gather
        words = [Signal(W, name=f"beat{j}") for j in range(N)]
        n = Signal(range(N))
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready),
                     take.eq(self.i.valid & self.i.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            with m.Switch(n):
                for j in range(N):
                    with m.Case(j):
                        m.d.sync += words[j].eq(self.i.payload.data)
            with m.If((n == N - 1) | self.i.payload.last):
                m.d.sync += [n.eq(0), self.o.valid.eq(1),
                             self.o.payload.last.eq(self.i.payload.last),
                             self.o.payload.data.eq(Cat(*(Mux(n == j, self.i.payload.data,
                                                              words[j]) for j in range(N))))]
            with m.Else():
                m.d.sync += n.eq(n + 1)
        return m


def word_rows(cfg, raw):
    """The ``predict_keys`` raw rows of a K word (:func:`group_layout`)."""
    n = 8 * row_bytes(cfg)
    return [raw[s * n:(s + 1) * n] for s in range(cfg.predict_keys)]


def release_k_word(m, dlzs, kb_valid, kb_adv):
    """The K reader's word (or row) stays valid to each lane's DLZS until that DLZS takes it;
    ``kb_adv`` (the next word arrives) clears every lane at once."""
    with m.If(kb_adv):
        m.d.sync += kb_valid.eq(0)
    with m.Else():
        for i, unit in enumerate(dlzs):
            with m.If(unit.k.ready):
                m.d.sync += kb_valid[i].eq(0)


def packed_keys(m, cfg, src, dlzs, block_go, block_busy, span, span_c, lens, in_block, dense,
                k_base, k_left, k_addr, k_cmd, tile_rows, room, k_issued, k_wslot, k_row,
                k_filled, kb_valid, kb_last, kb_adv, k_keys):
    """The K reader of :class:`hw.axiengine.AxiEngine` with ``predict_keys = P > 1``
    (:func:`spec.job.k_packed`), wired into its module ``m`` (the engine's signals are the
    arguments): a tile a read of packed rows from ``k_cmd``, its beats from ``src``
    regrouped by :class:`KeyGrouper` into words of ``P`` rows; a word a cycle into the ring (``block_size / P`` words a tile) and to every lane's DLZS (each
    lane's count: its keys in the word). The words past the block's last key (a split
    beat's rest) are dropped. Returns the ring's write strobe, the ring and a function
    giving the ``P`` rows of a word read from it."""
    B, KT, P = cfg.block_size, cfg.k_tiles, cfg.predict_keys
    G, RB, lanes = B // P, row_bytes(cfg), range(len(lens))
    BB = bus_bytes(cfg)
    with m.If(block_go):
        m.d.sync += [k_left.eq(span_c), k_addr.eq(k_base)]
    if RB >= BB:
        beats = tile_rows * (RB // BB)
    else:
        per = BB // RB                           # rows a beat, a power of two
        beats = (tile_rows + per - 1) >> (per - 1).bit_length()
    m.d.comb += [k_cmd.valid.eq((k_left != 0) & room & block_busy),
                 k_cmd.payload.beats.eq(beats), k_cmd.payload.addr.eq(k_addr)]
    assert k_read_beats(cfg, B) * BB == B * RB
    with m.If(k_cmd.valid & k_cmd.ready):
        m.d.sync += [k_issued.eq(k_issued + 1), k_left.eq(k_left - tile_rows),
                     k_addr.eq(k_addr + B * RB)]
    m.submodules.k_group = kg = KeyGrouper(cfg)
    m.d.comb += [kg.i.valid.eq(src.valid), src.ready.eq(kg.i.ready),
                 kg.i.payload.data.eq(src.payload.data),
                 kg.i.payload.last.eq(src.payload.last)]
    word = 8 * P * RB
    m.submodules.k_ring = k_ring = memory.Memory(shape=word, depth=KT * G, init=[])
    k_wr = k_ring.write_port()
    k_wpos = Signal(range(G))
    k_skip = Signal()                            # dropping the rest of the read
    kb_rows = Signal(data.ArrayLayout(row_layout(cfg), P))
    kb_count = [Signal(range(P + 1), name=f"kb_count{i}") for i in lanes]
    take = kg.o.valid & kg.o.ready
    keep = take & ~k_skip
    left = span - k_row
    end = left <= P                              # the word holds the block's last key
    m.d.comb += [kg.o.ready.eq(dense | kb_adv | k_skip),
                 k_wr.addr.eq(k_wslot * G + k_wpos), k_wr.data.eq(kg.o.payload.data),
                 k_wr.en.eq(keep),
                 k_keys.eq(Mux(keep & ~dense & Cat(*(in_block[i] & (k_row < lens[i])
                                                     for i in lanes)).any(),
                               Mux(end, left, P), 0))]
    for i in lanes:
        m.d.comb += [dlzs[i].k.valid.eq(kb_valid[i]), dlzs[i].k.payload.data.eq(kb_rows),
                     dlzs[i].k.payload.count.eq(kb_count[i]),
                     dlzs[i].k.payload.last.eq(kb_last[i])]
    release_k_word(m, dlzs, kb_valid, kb_adv)

    def rows(raw):
        return word_rows(cfg, raw)

    with m.If(take & k_skip & kg.o.payload.last):
        m.d.sync += k_skip.eq(0)
    with m.If(block_go):
        m.d.sync += k_row.eq(0)
    with m.Elif(keep):
        tile_end = (k_wpos == G - 1) | end
        m.d.sync += [k_row.eq(k_row + P), k_wpos.eq(Mux(tile_end, 0, k_wpos + 1)),
                     kb_rows.as_value().eq(Cat(*(unpack_row(r, cfg, elem_bytes(cfg))
                                                 for r in rows(kg.o.payload.data))))]
        with m.If(tile_end):
            m.d.sync += [k_wslot.eq(Mux(k_wslot == KT - 1, 0, k_wslot + 1)),
                         k_filled.eq(k_filled + 1)]
        with m.If(end & ~kg.o.payload.last):
            m.d.sync += k_skip.eq(1)
        with m.If(~dense):
            m.d.sync += kb_valid.eq(Cat(*(in_block[i] & (k_row < lens[i]) for i in lanes)))
            for i in lanes:
                n = lens[i] - k_row
                m.d.sync += [kb_last[i].eq(n <= P), kb_count[i].eq(Mux(n < P, n, P))]
    return keep, k_ring, lambda raw: Array(rows(raw))
