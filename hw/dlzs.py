"""DLZS: differential leading-zero summation, the log-domain score predictor."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.lzc import LeadingCounter
from spec.timing import dlzs_latency, dlzs_tree_levels


__all__ = ["DLZS", "row_layout", "keys_layout", "ahat_layout"]


def row_layout(cfg):
    """One Q/K/V row: ``d`` signed ``data_width``-bit elements."""
    return data.ArrayLayout(signed(cfg.data_width), cfg.d)


def keys_layout(cfg):
    """One beat of key rows into DLZS: a row with ``last``; with ``predict_keys = P > 1``,
    ``P`` consecutive rows (``data[s]`` is key ``index + s``) of which the first ``count``
    are keys (only a row's last beat may hold fewer than ``P``)."""
    P = cfg.predict_keys
    if P == 1:
        return data.StructLayout({"data": row_layout(cfg), "last": 1})
    return data.StructLayout({"data": data.ArrayLayout(row_layout(cfg), P),
                              "count": range(P + 1), "last": 1})


def ahat_layout(cfg):
    """One predicted score with its key index and row framing; with ``predict_keys = P > 1``
    ``P`` scores of consecutive keys (``value[s]`` is key ``index + s``), the first ``count``
    valid, ``first`` on the row's first beat and ``last`` on its last."""
    der = cfg.derived
    P = cfg.predict_keys
    if P == 1:
        return data.StructLayout({
            "value": signed(der.ahat_width),
            "index": der.index_width,
            "first": 1,
            "last": 1,
        })
    return data.StructLayout({
        "value": data.ArrayLayout(signed(der.ahat_width), P),
        "index": der.index_width,
        "count": range(P + 1),
        "first": 1,
        "last": 1,
    })


class DLZS(wiring.Component):
    """Predicts ``Â[j] = Σ_d dlzs(q[d], k_j[d])`` for one query row against a stream of keys.

    The query is the log operand: on :py:`q` each element is reduced to its sign and leading-one
    position ``p = W-1-LZ(|q|)`` by ``d`` leading-zero counters and held. Each beat on
    :py:`k` (one key row, or ``predict_keys`` consecutive rows) is then consumed
    ``dlzs_lanes`` elements per row per cycle: a term ``±(k << p)`` per lane and key slot
    (zero where ``q == 0``), a registered adder tree per slot, and an accumulator per slot
    over the ``d / dlzs_lanes`` chunks of the row. A beat with ``last`` ends the row; the
    next :py:`q` is accepted on the following cycle. The pipeline stalls as a whole when
    :py:`ahat` is not ready. The key slots share the query's leading-zero counters and the
    control; with ``predict_keys = P`` the unit has ``P · dlzs_lanes`` shift-adders.

    Parameters
    ----------
    cfg : SofaConfig

    Attributes
    ----------
    q : In(stream.Signature(StructLayout({"data": row})))
        The query row.
    k : In(stream.Signature(keys_layout(cfg)))
        Key rows of the sequence, ``predict_keys`` a beat; at most ``max_seq_len`` keys
        before ``last``. A beat is held on the bus for ``ii`` cycles and accepted on the last.
    ahat : Out(stream.Signature(ahat_layout(cfg)))
        ``Â`` per key in key order (``predict_keys`` a beat), with the key's index and
        ``first``/``last`` of the row.
    keys : int
        Key slots, ``predict_keys``.
    latency : int
        Cycles from the acceptance of a key beat to its ``Â`` on :py:`ahat` without stalls:
        ``3 + ceil(log2(dlzs_lanes))`` (lane register, term register, one register per adder
        level, output register), whatever ``predict_keys``.
    ii : int
        Cycles per beat: ``d / dlzs_lanes``; ``predict_keys`` keys a beat, so
        ``dlzs_cycles / predict_keys`` cycles per key.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        row = row_layout(cfg)
        super().__init__({
            "q": In(stream.Signature(data.StructLayout({"data": row}))),
            "k": In(stream.Signature(keys_layout(cfg))),
            "ahat": Out(stream.Signature(ahat_layout(cfg))),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def tree_levels(self):
        return dlzs_tree_levels(self._cfg)

    @property
    def keys(self):
        return self._cfg.predict_keys

    @property
    def latency(self):
        return dlzs_latency(self._cfg)

    @property
    def ii(self):
        return self._cfg.derived.dlzs_cycles

    def elaborate(self, platform):
        m = Module()
        cfg, der = self._cfg, self._cfg.derived
        W, d, L, C = cfg.data_width, cfg.d, cfg.dlzs_lanes, der.dlzs_cycles
        P = cfg.predict_keys
        slots = range(P)

        def name(base, s, i=""):
            """Slot ``s``'s signal name; one slot keeps the names of a one-key DLZS."""
            return f"{base}{i}" if P == 1 else f"{base}{s}_{i}" if i != "" else f"{base}{s}"

        def key_row(s):
            return self.k.payload.data if P == 1 else self.k.payload.data[s]

        # -- query: sign, nonzero and leading-one position per element, held for the row ----
        neg = [Signal(name=f"q_neg{i}") for i in range(d)]
        nz = [Signal(name=f"q_nz{i}") for i in range(d)]
        shift = [Signal(der.shift_width, name=f"q_p{i}") for i in range(d)]
        loaded = Signal()
        m.d.comb += self.q.ready.eq(~loaded)
        for i in range(d):
            x = self.q.payload.data[i]
            mag = Signal(W, name=f"q_mag{i}")              # |-2^(W-1)| still fits W bits
            m.submodules[f"lzc{i}"] = lzc = LeadingCounter(W)
            m.d.comb += [mag.eq(Mux(x < 0, -x, x)), lzc.value.eq(mag)]
            with m.If(self.q.valid & self.q.ready):
                m.d.sync += [neg[i].eq(x < 0), nz[i].eq(~lzc.all),
                             shift[i].eq(W - 1 - lzc.count)]

        # -- key stream: chunk select, global stall ------------------------------------------
        advance = Signal()                  # every pipeline register moves this cycle
        m.d.comb += advance.eq(~self.ahat.valid | self.ahat.ready)
        chunk = Signal(range(C)) if C > 1 else None
        chunk_last = Signal()
        m.d.comb += chunk_last.eq(1 if C == 1 else chunk == C - 1)
        take = Signal()                     # a chunk of the current key enters the pipeline
        m.d.comb += [
            take.eq(loaded & self.k.valid & advance),
            self.k.ready.eq(take & chunk_last),
        ]
        if C > 1:
            with m.If(take):
                m.d.sync += chunk.eq(Mux(chunk_last, 0, chunk + 1))

        index = Signal(der.index_width)
        with m.If(self.q.valid & self.q.ready):
            m.d.sync += [loaded.eq(1), index.eq(0)]
        with m.If(self.k.valid & self.k.ready):
            m.d.sync += index.eq(index + P)
            with m.If(self.k.payload.last):
                m.d.sync += loaded.eq(0)

        # Lane i of chunk c sees element c·L + i (of each slot's key).
        lane_k = [[Signal(signed(W), name=name("k_lane", s, i)) for i in range(L)]
                  for s in slots]
        lane_neg = [Signal(name=f"neg_lane{i}") for i in range(L)]
        lane_nz = [Signal(name=f"nz_lane{i}") for i in range(L)]
        lane_p = [Signal(der.shift_width, name=f"p_lane{i}") for i in range(L)]
        # Registered: the chunk select fans out to every lane, and the shift and negate after
        # it need a cycle of their own (ECP5 at 50 MHz).
        with m.If(advance):
            with m.Switch(chunk if C > 1 else 0):
                for c in range(C):
                    with m.Case(c):
                        for i in range(L):
                            e = c * L + i
                            m.d.sync += [*(lane_k[s][i].eq(key_row(s)[e]) for s in slots),
                                         lane_neg[i].eq(neg[e]), lane_nz[i].eq(nz[e]),
                                         lane_p[i].eq(shift[e])]

        # Side information that travels with each chunk.
        fields = {"valid": 1, "row_end": 1, "key_end": 1, "first": 1,
                  "index": der.index_width}
        if P > 1:
            fields["count"] = range(P + 1)
        info = data.StructLayout(fields)
        info_in = Signal(info)
        m.d.comb += [
            info_in.valid.eq(take),
            info_in.key_end.eq(chunk_last),
            info_in.row_end.eq(self.k.payload.last),
            info_in.first.eq(index == 0),
            info_in.index.eq(index),
        ]
        if P > 1:
            m.d.comb += info_in.count.eq(self.k.payload.count)

        lane_info = Signal(info, name="info_lane")
        with m.If(advance):
            m.d.sync += lane_info.eq(info_in)

        # -- stage 1: terms ±(k << p) -------------------------------------------------------
        level = [[Signal(signed(der.term_width), name=name("term", s, i)) for i in range(L)]
                 for s in slots]
        level_info = Signal(info, name="info_term")
        with m.If(advance):
            m.d.sync += level_info.eq(lane_info)
            for i in range(L):
                for s in slots:
                    shifted = lane_k[s][i] << lane_p[i]
                    m.d.sync += level[s][i].eq(Mux(lane_nz[i], Mux(lane_neg[i], -shifted,
                                                                   shifted), 0))

        # -- adder trees, one register per level ----------------------------------------------
        for lvl in range(self.tree_levels):
            nxt = []
            for s in slots:
                nxt.append([])
                for j in range(0, len(level[s]), 2):
                    pair = level[s][j:j + 2]
                    sm = Signal(signed(len(pair[0]) + 1), name=name(f"sum{lvl}_", s, j // 2)
                                if P > 1 else f"sum{lvl}_{j // 2}")
                    with m.If(advance):
                        m.d.sync += sm.eq(pair[0] + pair[1] if len(pair) == 2 else pair[0])
                    nxt[s].append(sm)
            nxt_info = Signal(info, name=f"info_sum{lvl}")
            with m.If(advance):
                m.d.sync += nxt_info.eq(level_info)
            level, level_info = nxt, nxt_info
        partial = [level[s][0] for s in slots]

        # -- accumulate over chunks, output register ------------------------------------------
        total = [Signal(signed(der.ahat_width), name=name("total", s)) for s in slots]
        for s in slots:
            if C > 1:
                acc = Signal(signed(der.ahat_width), name=name("acc", s))
                m.d.comb += total[s].eq(acc + partial[s])
                with m.If(advance & level_info.valid):
                    m.d.sync += acc.eq(Mux(level_info.key_end, 0, total[s]))
            else:
                m.d.comb += total[s].eq(partial[s])
        out = self.ahat.payload
        with m.If(advance):
            m.d.sync += [
                self.ahat.valid.eq(level_info.valid & level_info.key_end),
                *(((out.value if P == 1 else out.value[s]).eq(total[s])) for s in slots),
                out.index.eq(level_info.index),
                out.first.eq(level_info.first),
                out.last.eq(level_info.row_end),
            ]
            if P > 1:
                m.d.sync += out.count.eq(level_info.count)
        return m
