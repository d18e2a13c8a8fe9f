"""SU-FA: sorted-updating FlashAttention, the exact attention datapath over the selected keys."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.divider import Divider
from hw.dlzs import row_layout
from hw.exp2 import Exp2, default_in_width
from hw.skid import SkidBuffer
from spec.timing import divider_timing, sufa_latency


__all__ = ["SUFA", "kv_layout", "q_layout", "out_layout", "COUNTERS"]


#: Counter outputs, in this order.
COUNTERS = ("keys", "misses", "rescales", "rows", "qk_cycles", "pv_cycles")


def q_layout(cfg):
    """The query row of the next row."""
    return data.StructLayout({"data": row_layout(cfg)})


def kv_layout(cfg):
    """One selected key with its K and V rows, framed like :func:`hw.sads.sel_layout`."""
    der = cfg.derived
    return data.StructLayout({
        "index": der.index_width,
        "k": row_layout(cfg),
        "v": row_layout(cfg),
        "empty": 1,
        "first": 1,
        "last": 1,
        "row_last": 1,
    })


def out_layout(cfg):
    """One element of an output row ``O``: signed, ``out_frac`` fractional bits."""
    return data.StructLayout({
        "value": signed(cfg.derived.out_width),
        "first": 1,
        "last": 1,
    })


class _Op(enum.Enum, shape=2):
    NOP = 0         # no accumulation (a row that ends on an empty tile)
    ACC = 1         # l += w, o += w·v
    RESCALE = 2     # l, o *= w (floored), only if l > 0


#: Flip-flops that hold the same value and that Yosys does not merge: (inverted, reset_less,
#: init). It merges equal flip-flops; these differ in polarity, reset or initial value. A
#: copy in the reset domain reads 0 after a reset; a reset-less one may hold a stale 1 for the
#: cycle after it.
_COPY_VARIANTS = ((0, 0, 0), (1, 0, 1), (0, 1, 0), (1, 1, 1), (0, 1, 1), (1, 1, 0))


def _fanout_copies(m, name, value, variants):
    """Flip-flops that each hold ``value`` of the previous cycle, one per entry of
    ``variants`` (of :data:`_COPY_VARIANTS`): they split the loads of a net that has too many
    for one."""
    copies = []
    for i, (inverted, reset_less, init) in enumerate(variants):
        ff = Signal(name=f"{name}{i}", init=init, reset_less=bool(reset_less))
        m.d.sync += ff.eq(~value if inverted else value)
        copies.append(~ff if inverted else ff)
    return copies


def _adder_tree(terms):
    """Balanced sum of a list of values (log depth instead of a carry chain of adders)."""
    terms = list(terms)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


class SUFA(wiring.Component):
    """Exact attention of one query row at a time over the keys SADS selected, in SADS order.

    Bit-exact with :func:`sim.golden.sufa_row` followed by :func:`sim.golden.divide_row`.
    A row starts with its query on :py:`q` (``scale_log2e`` is sampled with it); then its keys
    arrive on :py:`kv`, tile by tile, with the framing of :func:`hw.sads.sel_layout`: a tile
    is its keys with ``first``/``last``, or one ``empty`` beat; ``row_last`` marks the row's
    last tile. Dense mode is the same stream with every key of every tile in natural order.
    The row's ``d`` output elements leave on :py:`o`, one per beat.

    Pipeline (each stage a register; backpressure stalls the stages behind a full one):

    0. **V FIFO**: a key's V row goes into a 16-row FIFO (a memory; ECP5 maps it to LUT
       RAM) when the key is accepted and leaves it when the key is accumulated, instead of
       riding along every pipeline register.
    1. **QK**: a key's row is held while ``mac_lanes`` multipliers and an adder tree add one
       chunk of ``q·k`` per cycle (products, tree and accumulator each registered) (``mac_cycles = d / mac_lanes`` cycles; the query and key
       registers rotate so the current chunk is always at the front). An ``empty`` beat takes
       one cycle. The query register is freed after the row's last beat; the next row's query
       is accepted in the following cycle.
    2. **Max assurance**: holds the first key of a tile until the second's score is known,
       then ``m <- max(m, s1, s2)`` (one key: ``s1``); a later key with ``s > m`` is a miss and
       ``m <- s``. Raising an existing ``m`` issues a ``RESCALE`` operation with ``m_old -
       m_new`` before the key's ``ACC`` operation with ``s - m`` (a cycle each; the first
       ``m`` of a row takes one cycle without an operation).
    3. **Exponent argument**: ``x = (diff·c) >> (c_frac - exp_frac)`` (``EXP_ARG_FLOOR``;
       the product registered, then floored and clamped),
       clamped to the :class:`hw.exp2.Exp2` input range (the clamped arguments all give 0).
    4. **Exp2** (two stages): ``w = exp2_fx(x)``.
    5. **PV** (two stages): ``ACC`` adds ``w`` to ``l`` and ``w·v`` to ``o``, ``mac_lanes``
       elements per cycle over a rotating register of the ``d`` accumulators (``mac_cycles``
       cycles). ``RESCALE`` multiplies ``l`` and ``o`` by ``w`` and floors
       (``RESCALE_FLOOR``) in ``mac_cycles`` cycles with its own ``mac_lanes`` multipliers,
       and is skipped in one cycle (not counted) while ``l == 0``. The first stage multiplies
       a chunk into a product register, the second adds it into (ACC) or writes it to
       (RESCALE) the accumulators, so steps overlap and no multiplier output reaches an
       accumulator in the same cycle. With ``mac_cycles == 1`` a RESCALE waits a cycle for
       the step before it. After the row's last operation one cycle hands ``o``, ``l`` to
       the divide buffer (waiting until it is free) and clears l; o counts as 0 until the next
       row's first ACC (no clear of every accumulator bit).
    6. **Divide**: one element per ``ii`` of :class:`hw.divider.Divider`:
       ``o·2^out_frac / l`` rounded half away from zero; 0 for the whole row if ``l == 0``.

    Parameters
    ----------
    cfg : SofaConfig
    iterative_divider : bool
        Use the iterative divider (two quotient bits per cycle,
        ``ceil((out_width + 1) / 2) + 1`` cycles per element) instead of the pipelined one;
        for small FPGAs.
    counter_width : int
        Width of the counter outputs (they wrap).

    Attributes
    ----------
    q : In(stream.Signature(q_layout(cfg)))
        The query of the next row.
    kv : In(stream.Signature(kv_layout(cfg)))
        The row's selected keys: ``index`` (carried for debugging), ``k``, ``v`` and framing.
    scale_log2e : In(c_bits)
        ``c`` with ``c_frac`` fractional bits; sampled with :py:`q`.
    o : Out(stream.Signature(out_layout(cfg)))
        ``O`` of the row, element 0 first (``first``) to element ``d-1`` (``last``).
    keys, misses, rescales, rows, qk_cycles, pv_cycles : Out(counter_width)
        Totals since reset: keys accumulated, misses, rescales applied, rows output, cycles
        the QK multipliers worked, cycles the PV multipliers worked (accumulate or rescale).
        ``keys``, ``misses`` and ``rescales`` equal the sums of :class:`sim.golden.RowTrace`'s
        fields.
    ii : int
        Cycles per key in steady traffic without misses: ``mac_cycles = d / mac_lanes``; a
        miss adds ``mac_cycles`` (the rescale), a row adds a few hand-over cycles and at least
        ``d·divider.ii`` cycles per row in the divide stage (``divider.ii`` is 1 pipelined,
        ``ceil((out_width + 1) / 2) + 1`` iterative).
    latency : int
        Cycles from the acceptance of the key of a one-key row to the row's first :py:`o`
        beat, with the pipeline otherwise empty: ``2·mac_cycles + 12 + divider.latency``
        (QK with its product and adder-tree registers, two cycles of max assurance (``m`` is
        set, then the operation issued), exponent argument, two Exp2 stages, operation
        register, PV with its product register, hand-over, divide buffer, divider).
    """

    def __init__(self, cfg, *, iterative_divider=False, counter_width=32):
        self._cfg = cfg
        self._iterative = bool(iterative_divider)
        self._counter_width = counter_width
        super().__init__({
            "q": In(stream.Signature(q_layout(cfg))),
            "kv": In(stream.Signature(kv_layout(cfg))),
            "scale_log2e": In(cfg.c_bits),
            "o": Out(stream.Signature(out_layout(cfg))),
            **{name: Out(counter_width) for name in COUNTERS},
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def iterative_divider(self):
        return self._iterative

    @property
    def divider_latency(self):
        """:attr:`hw.divider.Divider.latency` of the output divide: ``out_width + 3``
        pipelined, ``ceil((out_width + 1) / 2) + 2`` iterative."""
        return divider_timing(self._cfg.derived.out_width, iterative=self._iterative)[0]

    @property
    def ii(self):
        return self._cfg.derived.mac_cycles

    @property
    def latency(self):
        return sufa_latency(self._cfg, iterative_divider=self._iterative)

    def _divider(self):
        return Divider.for_config(self._cfg, iterative=self._iterative,
                                  tag_shape=data.StructLayout({"first": 1, "last": 1,
                                                               "zero": 1}))

    def elaborate(self, platform):
        m = Module()
        cfg, der = self._cfg, self._cfg.derived
        W, D, L, M = cfg.data_width, cfg.d, cfg.mac_lanes, der.mac_cycles
        S_W = der.score_width
        diff_shape = signed(der.diff_width + 1)
        counters = {name: getattr(self, name) for name in COUNTERS}

        def count(name, cond=1):
            m.d.sync += counters[name].eq(counters[name] + cond)

        # == stage 1: QK ========================================================================
        q_loaded = Signal()
        c_reg = Signal(cfg.c_bits)
        # Datapath registers have no reset (each is written before it is read): the reset net
        # then reaches only control flip-flops, not thousands of data bits.
        q_ring = [Signal(signed(W), name=f"q{i}", reset_less=True) for i in range(D)]
        k_ring = [Signal(signed(W), name=f"k{i}", reset_less=True) for i in range(D)]
        cur_valid = Signal()
        cur = Signal(data.StructLayout({       # framing of the key being scored
            "empty": 1, "first": 1, "last": 1, "row_last": 1}))
        chunk = Signal(range(M))
        acc = Signal(signed(S_W))

        scored_layout = data.StructLayout({
            "s": signed(S_W), "c": cfg.c_bits,
            "empty": 1, "first": 1, "last": 1, "row_last": 1,
        })
        # Stage 1's output register is a skid buffer, so its ready does not depend on stage 2.
        m.submodules.sc_skid = sc_skid = SkidBuffer(scored_layout, skid=cfg.skid_buffers)
        sc = sc_skid.o.payload
        sc_valid = sc_skid.o.valid
        sc_ready = sc_skid.o.ready

        # The MAC is pipelined: products, adder tree, accumulator, one register each. The whole
        # stage moves when the skid buffer has room (a flip-flop), so it stalls as one.
        adv = Signal()
        issuing = Signal()                     # a chunk (or an empty beat) enters the MAC
        finishing = Signal()                   # the current beat's last chunk enters it
        stepping = Signal()                    # a chunk of q·k enters it (rings rotate)
        row_done = cur.row_last & cur.last
        tag_layout_qk = data.StructLayout({
            "first_chunk": 1, "last_chunk": 1, "empty": 1, "first": 1, "last": 1,
            "row_last": 1, "c": cfg.c_bits})
        # V rows wait in a FIFO (a memory) for the PV stage instead of riding along the
        # pipeline registers; it holds every key between acceptance and accumulation.
        m.submodules.v_fifo = v_fifo = fifo.SyncFIFOBuffered(width=D * W, depth=16)
        m.d.comb += [
            v_fifo.w_data.eq(self.kv.payload.v.as_value()),
            v_fifo.w_en.eq(self.kv.valid & self.kv.ready & ~self.kv.payload.empty),
        ]
        m.d.comb += [
            adv.eq(sc_skid.i.ready),
            issuing.eq(cur_valid & adv),
            finishing.eq(issuing & (cur.empty | (chunk == M - 1))),
            stepping.eq(issuing & ~cur.empty),
            self.q.ready.eq(~q_loaded),
            self.kv.ready.eq(q_loaded & v_fifo.w_rdy & (~cur_valid | (finishing & ~row_done))),
        ]
        with m.If(self.q.valid & self.q.ready):
            m.d.sync += [q_loaded.eq(1), c_reg.eq(self.scale_log2e)]
            m.d.sync += [q_ring[i].eq(self.q.payload.data[i]) for i in range(D)]
        with m.If(stepping):                   # rotate by one chunk
            m.d.sync += [q_ring[i].eq(q_ring[(i + L) % D]) for i in range(D)]
            m.d.sync += [k_ring[i].eq(k_ring[(i + L) % D]) for i in range(D)]
            m.d.sync += chunk.eq(Mux(chunk == M - 1, 0, chunk + 1))
            count("qk_cycles")
        with m.If(finishing):
            m.d.sync += [chunk.eq(0), cur_valid.eq(0)]
            with m.If(row_done):
                m.d.sync += q_loaded.eq(0)

        p_valid = Signal()
        p_tag = Signal(tag_layout_qk)
        p_prod = [Signal(signed(2 * W), name=f"prod{i}", reset_less=True) for i in range(L)]
        t_valid = Signal()
        t_tag = Signal(tag_layout_qk)
        t_sum = Signal(signed(S_W))
        with m.If(adv):
            m.d.sync += [
                p_valid.eq(issuing),
                p_tag.first_chunk.eq(chunk == 0), p_tag.last_chunk.eq(cur.empty | (chunk == M - 1)),
                p_tag.empty.eq(cur.empty), p_tag.first.eq(cur.first), p_tag.last.eq(cur.last),
                p_tag.row_last.eq(cur.row_last), p_tag.c.eq(c_reg),
                t_valid.eq(p_valid), t_tag.eq(p_tag),
                t_sum.eq(_adder_tree(p_prod)),
            ]
            m.d.sync += [p_prod[i].eq(q_ring[i] * k_ring[i]) for i in range(L)]
        s_new = Mux(t_tag.first_chunk, 0, acc) + t_sum
        sc_in = sc_skid.i.payload
        m.d.comb += [
            sc_skid.i.valid.eq(adv & t_valid & t_tag.last_chunk),
            sc_in.s.eq(s_new),
            sc_in.c.eq(t_tag.c),
            sc_in.empty.eq(t_tag.empty), sc_in.first.eq(t_tag.first), sc_in.last.eq(t_tag.last),
            sc_in.row_last.eq(t_tag.row_last),
        ]
        with m.If(adv & t_valid & ~t_tag.last_chunk):
            m.d.sync += acc.eq(s_new)
        with m.If(self.kv.valid & self.kv.ready):
            kv = self.kv.payload
            m.d.sync += [
                cur_valid.eq(1), cur.empty.eq(kv.empty), cur.first.eq(kv.first),
                cur.last.eq(kv.last), cur.row_last.eq(kv.row_last),
            ]
        # The key register loads whenever SU-FA could take a key, valid or not (it is unused
        # until cur_valid): its enable, d·data_width flip-flops wide, then does not wait for
        # the fetch's valid, and the fetch's ready path carries no load of that fan-out.
        with m.If(self.kv.ready):
            m.d.sync += [k_ring[i].eq(self.kv.payload.k[i]) for i in range(D)]

        # == stage 2: max assurance =============================================================
        op_layout = data.StructLayout({
            "kind": _Op, "diff": diff_shape, "c": cfg.c_bits,
            "row_end": 1,
        })
        op = Signal(op_layout)
        op_valid = Signal()
        op_ready = Signal()
        op_free = ~op_valid | op_ready

        run_m = Signal(signed(S_W))
        m_valid = Signal()
        pend = Signal(scored_layout)           # first key of a tile, waiting for the second
        pend_valid = Signal()

        # The head key H (the pending first key, or the incoming key) and its candidate max.
        h = Signal(scored_layout)
        h_valid = Signal()
        h_is_pend = Signal()
        tile_start = Signal()
        cand = Signal(signed(S_W))
        # The three comparisons run in parallel (not max, then compare).
        s_gt_m = Signal()
        p_gt_m = Signal()
        s_gt_p = Signal()
        m.d.comb += [s_gt_m.eq(sc.s > run_m), p_gt_m.eq(pend.s > run_m), s_gt_p.eq(sc.s > pend.s)]
        raise_m = Signal()
        with m.If(pend_valid):
            m.d.comb += [
                h.eq(pend), h_is_pend.eq(1), h_valid.eq(sc_valid), tile_start.eq(1),
                cand.eq(Mux(s_gt_p, sc.s, pend.s)),
                raise_m.eq(~m_valid | s_gt_m | p_gt_m),
            ]
        with m.Else():
            m.d.comb += [
                h.eq(sc), h_valid.eq(sc_valid & ~sc.empty & ~(sc.first & ~sc.last)),
                tile_start.eq(sc.first), cand.eq(sc.s),
                raise_m.eq(~m_valid | s_gt_m),
            ]
        emit = Signal()
        m.d.comb += sc_ready.eq(0)
        with m.If(op_free):
            with m.If(~pend_valid & sc_valid & ~sc.empty & sc.first & ~sc.last):
                # a tile's first key waits for the second one
                m.d.comb += sc_ready.eq(1)
                m.d.sync += [pend.eq(sc), pend_valid.eq(1)]
            with m.Elif(~pend_valid & sc_valid & sc.empty):
                m.d.comb += sc_ready.eq(1)
                with m.If(sc.row_last):
                    m.d.comb += emit.eq(1)
                    m.d.sync += [op.kind.eq(_Op.NOP), op.diff.eq(0), op.row_end.eq(1),
                                     m_valid.eq(0)]
            with m.Elif(h_valid & raise_m & ~m_valid):
                m.d.sync += [run_m.eq(cand), m_valid.eq(1)]
            with m.Elif(h_valid & raise_m):
                m.d.comb += emit.eq(1)
                m.d.sync += [
                    op.kind.eq(_Op.RESCALE), op.diff.eq(run_m - cand), op.c.eq(h.c),
                    op.row_end.eq(0), run_m.eq(cand),
                ]
                with m.If(~tile_start):
                    count("misses")
            with m.Elif(h_valid):
                m.d.comb += emit.eq(1)
                m.d.sync += [
                    op.kind.eq(_Op.ACC), op.diff.eq(h.s - run_m), op.c.eq(h.c),
                    op.row_end.eq(h.row_last & h.last),
                ]
                with m.If(h_is_pend):
                    m.d.sync += pend_valid.eq(0)
                with m.Else():
                    m.d.comb += sc_ready.eq(1)
                with m.If(h.row_last & h.last):
                    m.d.sync += m_valid.eq(0)
        with m.If(emit):
            m.d.sync += op_valid.eq(1)
        with m.Elif(op_ready):
            m.d.sync += op_valid.eq(0)

        # == stage 3: exponent argument =========================================================
        in_width = default_in_width(cfg)
        x_min = -((cfg.w_frac + 2) << cfg.exp_frac)
        tag_layout = data.StructLayout({"kind": _Op, "row_end": 1})
        m.submodules.exp2 = exp2 = Exp2(cfg, in_width=in_width, tag_shape=tag_layout)
        # The product diff·c is registered (prod, with its operation in arg_*) before the
        # floor and the clamp: a multiplier and a wide compare do not fit one cycle.
        prod = Signal(signed(der.diff_width + 1 + cfg.c_bits + 1))
        arg_valid = Signal()
        arg_tag = Signal(tag_layout)
        arg_ready = Signal()
        x_full = Signal.like(prod)
        m.d.comb += [
            arg_ready.eq(~exp2.i.valid | exp2.i.ready),
            op_ready.eq(~arg_valid | arg_ready),
            x_full.eq(prod >> (cfg.c_frac - cfg.exp_frac)),      # EXP_ARG_FLOOR
        ]
        with m.If(op_ready):
            m.d.sync += [arg_valid.eq(op_valid), prod.eq(op.diff * op.c),
                         arg_tag.kind.eq(op.kind), arg_tag.row_end.eq(op.row_end)]
        with m.If(arg_ready):
            m.d.sync += [
                exp2.i.valid.eq(arg_valid),
                exp2.i.payload.x.eq(Mux(x_full < x_min, x_min, x_full)),
                exp2.i.payload.tag.eq(arg_tag),
            ]

        # == stage 5: PV accumulate / rescale, issue (X) and apply (Y) =========================
        O_W, L_W, WF = der.o_width, der.l_width, cfg.w_frac
        o_ring = [Signal(signed(O_W), name=f"o{i}", reset_less=True) for i in range(D)]
        # o is not cleared for the next row (a clear is a reset input on every bit of it):
        # while o_stale, the accumulators count as 0. Only ACC clears it: a RESCALE applies only
        # when l > 0, that is after an ACC of the row.
        o_stale = Signal(init=1)
        l_acc = Signal(L_W)
        pv_chunk = Signal(range(M))
        flush = Signal()                       # the row's operations are done; hand over
        # The operation register is a skid buffer: Exp2 (which stalls as a whole) is freed at
        # once, and its stall does not depend on the PV stage's decisions.
        m.submodules.ex_skid = ex_skid = SkidBuffer(exp2.o.payload.shape(), skid=cfg.skid_buffers)
        wiring.connect(m, exp2.o, ex_skid.i)
        ex = ex_skid.o.payload
        ex_valid = ex_skid.o.valid
        kind = ex.tag.kind
        w = ex.w

        d_valid = Signal()                     # divide buffer holds a row
        d_ring = [Signal(signed(O_W), name=f"od{i}", reset_less=True) for i in range(D)]
        d_l = Signal(L_W)
        d_idx = Signal(range(D))

        # X multiplies one chunk into the product registers, Y adds it into (or, for RESCALE,
        # writes it to) the accumulators a cycle later, so no multiplier feeds an accumulator
        # directly. Y rotates the ring; while Y works on chunk c, X's chunk c+1 is one chunk
        # further in. X reads o (RESCALE) and l only after Y wrote them, which needs
        # mac_cycles >= 2; with one chunk a RESCALE waits for Y to finish.
        y_valid = Signal()
        y_acc = Signal()                       # ACC (else RESCALE)
        y_first = Signal()                     # chunk 0: l changes
        # Both products are registered every cycle, unconditionally, and Y picks one: a
        # kind-dependent multiplexer or enable in front of the multipliers would put the
        # operation decode on the multiplier path (and let Yosys share the multipliers).
        y_acc_p = [Signal(signed(der.w_width + W + 1), name=f"pv_acc{j}", reset_less=True)
                   for j in range(L)]
        # RESCALE's o·w and l·w as two registered partial products each (a low 17-bit part
        # of o or l times w, and the rest times w), added in Y: one 18×18 multiplier's worth a
        # product in X, the wide sum in Y, instead of a cascaded multiplier and its adders in X.
        SPLIT = 17
        y_res_lo = [Signal(SPLIT + der.w_width, name=f"pv_res_lo{j}", reset_less=True)
                    for j in range(L)]
        y_res_hi = [Signal(signed(max(1, O_W - SPLIT) + der.w_width + 1),
                           name=f"pv_res_hi{j}", reset_less=True) for j in range(L)]
        y_res_o = [((y_res_hi[j] << SPLIT) + y_res_lo[j]) >> WF for j in range(L)]
        y_stale = Signal()                     # this ACC step starts from o = 0
        y_w = Signal(der.w_width)              # ACC: w to add to l
        y_l_lo = Signal(SPLIT + der.w_width)   # RESCALE: the new l, in two parts
        y_l_hi = Signal(max(1, L_W - SPLIT) + der.w_width)
        y_res_l = ((y_l_hi << SPLIT) + y_l_lo) >> WF
        # V: chunk 0 straight from the FIFO's output register, the rest from a register that
        # shifts a chunk per step (a 2-way instead of an M-way multiplexer before the MACs).
        v_rest = Signal(max(1, (D - L) * W), reset_less=True)
        pv_first = Signal(init=1)              # pv_chunk == 0, as a flip-flop

        stall = Signal()
        working = Signal()                     # X issues an ACC / RESCALE chunk step
        skip = Signal()                        # a RESCALE while l == 0, or a NOP
        op_done = Signal()                     # the operation's last step
        handover = Signal()
        release = Signal()                     # the operation register is freed
        # Whether a RESCALE applies is decided at its first chunk: l changes there.
        m.d.comb += [
            stall.eq(y_valid & (kind == _Op.RESCALE) if M == 1 else 0),
            working.eq(ex_valid & ~flush & ~stall &
                       ((kind == _Op.ACC) |
                        ((kind == _Op.RESCALE) & (~pv_first | (l_acc != 0))))),
            skip.eq(ex_valid & ~flush & ~stall & ~working),
            op_done.eq((working & (pv_chunk == M - 1)) | skip),
            handover.eq(flush & ~d_valid & ~y_valid),
            release.eq((op_done & ~ex.tag.row_end) | handover),
            ex_skid.o.ready.eq(release),
        ]
        v_now = v_fifo.r_data[:L * W]
        if M > 1:
            v_now = Mux(pv_first, v_now, v_rest[:L * W])
        # y_valid has thousands of loads: the ring's enable and the rescale operands' select.
        # Copies split them: two (reset) for the enables, a pair of lanes each; one per lane
        # (reset-less: a stale select after a reset only spoils products Y does not take) for
        # the selects, so the path into the multipliers starts next to them.
        y_ce = _fanout_copies(m, "y_ce", working, _COPY_VARIANTS[:min(L, 2)])
        y_copy = [y_ce[j * len(y_ce) // L] for j in range(L)]
        y_sel = _fanout_copies(m, "y_sel", working, _COPY_VARIANTS[2:2 + min(L, 4)])
        o_src = [o_ring[j] if M == 1 else Mux(y_sel[j % len(y_sel)], o_ring[L + j], o_ring[j])
                 for j in range(L)]
        m.d.comb += v_fifo.r_en.eq(op_done & (kind == _Op.ACC))
        m.d.sync += y_valid.eq(working)
        m.d.sync += [y_acc_p[j].eq(w * v_now[j * W:(j + 1) * W].as_signed()) for j in range(L)]
        for j in range(L):                                                   # RESCALE_FLOOR
            m.d.sync += [y_res_lo[j].eq(o_src[j][:SPLIT] * w),
                         y_res_hi[j].eq(o_src[j][SPLIT:].as_signed() * w)]
        m.d.sync += [y_w.eq(w), y_l_lo.eq(l_acc[:SPLIT] * w), y_l_hi.eq(l_acc[SPLIT:] * w)]
        with m.If(working):
            count("pv_cycles")
            m.d.sync += [pv_chunk.eq(Mux(pv_chunk == M - 1, 0, pv_chunk + 1)),
                         pv_first.eq(pv_chunk == M - 1),
                         y_acc.eq(kind == _Op.ACC), y_first.eq(pv_first), y_stale.eq(o_stale)]
            with m.If((kind == _Op.ACC) & (pv_chunk == M - 1)):
                m.d.sync += o_stale.eq(0)
            if M > 1:
                m.d.sync += v_rest.eq(Mux(pv_first, v_fifo.r_data[L * W:], v_rest >> (L * W)))
            with m.If(pv_first):
                with m.If(kind == _Op.ACC):
                    count("keys")
                with m.Else():
                    count("rescales")
        for i in range(D - L):
            with m.If(y_copy[i % L]):
                m.d.sync += o_ring[i].eq(o_ring[i + L])
        for j in range(L):
            with m.If(y_copy[j]):
                o_old = Mux(y_stale, 0, o_ring[j])
                m.d.sync += o_ring[D - L + j].eq(Mux(y_acc, o_old + y_acc_p[j], y_res_o[j]))
        with m.If(y_valid):
            with m.If(y_first):
                m.d.sync += l_acc.eq(Mux(y_acc, l_acc + y_w, y_res_l))
        with m.If(op_done & ex.tag.row_end):
            m.d.sync += flush.eq(1)
        with m.If(handover):
            m.d.sync += [flush.eq(0), d_valid.eq(1), d_l.eq(l_acc), d_idx.eq(0), l_acc.eq(0)]
            m.d.sync += [d_ring[i].eq(o_ring[i]) for i in range(D)]
            m.d.sync += o_stale.eq(1)

        # == stage 6: divide ====================================================================
        m.submodules.divider = div = self._divider()
        # A one-entry bypass buffer in front of the divider: the ring offers its head while
        # the buffer is empty and shifts at once; an element the divider does not take waits
        # in the buffer. The ring's enable (its whole width) then comes from flip-flops, not
        # from the divider's ready. Without a stall the divider sees the same elements in the
        # same cycles; under a stall the next row can be handed over while one waits.
        head = Signal.like(div.i.payload)
        held = Signal.like(div.i.payload)
        held_valid = Signal()
        m.d.comb += [
            head.num.eq(d_ring[0] << cfg.out_frac),
            head.den.eq(d_l),
            head.tag.first.eq(d_idx == 0),
            head.tag.last.eq(d_idx == D - 1),
            head.tag.zero.eq(d_l == 0),
            div.i.valid.eq(held_valid | d_valid),
            div.i.payload.eq(Mux(held_valid, held, head)),
        ]
        with m.If(~held_valid):
            m.d.sync += held.eq(head)
        with m.If(held_valid):
            with m.If(div.i.ready):
                m.d.sync += held_valid.eq(0)
        with m.Elif(d_valid):
            m.d.sync += held_valid.eq(~div.i.ready)
            m.d.sync += [d_ring[i].eq(d_ring[(i + 1) % D]) for i in range(D)]
            m.d.sync += d_idx.eq(Mux(d_idx == D - 1, 0, d_idx + 1))
            with m.If(d_idx == D - 1):
                m.d.sync += d_valid.eq(0)
        dt = div.o.payload.tag
        m.d.comb += [
            self.o.valid.eq(div.o.valid),
            div.o.ready.eq(self.o.ready),
            self.o.payload.value.eq(Mux(dt.zero, 0, div.o.payload.quot)),
            self.o.payload.first.eq(dt.first),
            self.o.payload.last.eq(dt.last),
        ]
        with m.If(self.o.valid & self.o.ready & dt.last):
            count("rows")
        return m
