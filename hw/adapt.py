"""AdaptiveGate: the adaptive selection budget's eligible keys of a row, in front of SADS.

Bit-exact with :func:`sim.golden.adaptive_eligible` (docs/numerics.md, "Adaptive budget").
With ``adapt_bins > 0`` the on-chip core (:class:`hw.top.SofaCore`) puts one in every lane
between the DLZS skid buffer and :class:`hw.sads.SADS`, which then blocks the keys that are
not eligible (after the radius test, before the full-list test); the memory-attached core
refuses such a configuration. It takes one query row's Â stream as :class:`hw.dlzs.DLZS`
emits it and gives it back, key by key in the same order, with an ``eligible`` bit (all
keys when ``mass = 0``, the fixed budget):

1. **fill**: keys are written into a buffer of ``max_seq_len`` entries at their index while
   the row maximum ``M`` is kept (one key a cycle);
2. **count**: the buffer is read back and each key's bin ``min(adapt_bins − 1,
   (M − Â) >> shift)`` is counted (two cycles a key);
3. **weights**: per bin ``b`` the edge weight ``W[b] = exp2_fx(exp_arg(−(b << shift),
   sel_scale))`` (the table of :func:`spec.numerics.exp2_lut`, the SU-FA roundings) and the
   running total of ``cnt[b]·W[b]`` (one bin a cycle);
4. **threshold**: the first bin whose cumulative mass, shifted left by ``ADAPT_MASS_FRAC``,
   reaches ``mass · total`` is ``b_star`` (one bin a cycle);
5. **emit**: the buffer is read once more and every key leaves on :py:`o` with
   ``eligible = bin ≤ b_star`` (two cycles a key, held under backpressure).

With the tail blend on (``tail_scale ≠ 0`` and ``mass ≠ 0``), steps 4 and 5 have two more
between them (:func:`sim.golden.adaptive_tail`, docs/numerics.md "Tail blend"):

4a. **tail sweep**: the bin weights again at the scale ``tail_scale`` (the same exponent path,
    ``adapt_bins + 3`` cycles), summing ``cnt[b]·W2[b]`` into ``total`` and, for the bins
    above ``b_star``, into ``drop``;
4b. **tail divide**: ``f = floor(drop · 2^TAIL_FRAC / total)``, a restoring division of one
    bit a cycle (``TAIL_FRAC`` cycles), then ``f`` leaves on :py:`f` (one beat a row, held
    until taken) before the row's keys are emitted.

The run-time registers arrive on the ``mass``, ``sel_scale``, ``shift`` and ``tail_scale``
inputs and must be stable while a row is in the unit.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dlzs import ahat_layout
from spec.config import ConfigError
from spec.numerics import TAIL_FRAC, exp2_lut
from spec.regmap import ADAPT_MASS_FRAC, register


__all__ = ["AdaptiveGate", "gated_layout"]


def gated_layout(cfg):
    """:func:`hw.dlzs.ahat_layout` with the key's ``eligible`` bit."""
    der = cfg.derived
    return data.StructLayout({"value": signed(der.ahat_width), "index": der.index_width,
                              "first": 1, "last": 1, "eligible": 1})


class AdaptiveGate(wiring.Component):
    """The eligible keys of each row under the adaptive budget (see the module docstring).

    Attributes
    ----------
    i : In(stream.Signature(ahat_layout(cfg)))
        A row's keys ``0 … S−1`` in order, ``first`` on key 0 and ``last`` on key ``S−1``.
    o : Out(stream.Signature(gated_layout(cfg)))
        The same keys in the same order with ``eligible``.
    mass, sel_scale, shift, tail_scale : In
        The registers ``ADAPT_MASS``, ``ADAPT_SCALE``, ``ADAPT_SHIFT``, ``TAIL_SCALE``.
    f : Out(stream.Signature(TAIL_FRAC))
        The tail blend's ``f`` of each row (only with ``tail_scale ≠ 0`` and ``mass ≠ 0``).
    """

    def __init__(self, cfg):
        if not cfg.adapt_bins:
            raise ConfigError("AdaptiveGate needs adapt_bins > 0; this config has 0")
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(ahat_layout(cfg))),
            "o": Out(stream.Signature(gated_layout(cfg))),
            "mass": In(register("adapt_mass").value_width(cfg)),
            "sel_scale": In(register("adapt_scale").value_width(cfg)),
            "shift": In(register("adapt_shift").value_width(cfg)),
            "tail_scale": In(register("tail_scale").value_width(cfg)),
            "f": Out(stream.Signature(TAIL_FRAC)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        der = cfg.derived
        nb = cfg.adapt_bins
        m = Module()
        m.submodules.buf = buf = memory.Memory(shape=signed(der.ahat_width),
                                               depth=cfg.max_seq_len, init=[])
        wr = buf.write_port()
        rd = buf.read_port(domain="sync")

        n = Signal(der.seq_len_width)                 # keys of the row
        top = Signal(signed(der.ahat_width))          # M
        j = Signal(der.seq_len_width)                 # key read back
        b = Signal(range(nb))                         # bin of the sweeps
        cnt = Array(Signal(der.seq_len_width, name=f"cnt{k}") for k in range(nb))
        weight = Array(Signal(der.w_width, name=f"w{k}") for k in range(nb))
        total = Signal(der.l_width)
        cum = Signal(der.l_width)
        b_star = Signal(range(nb))
        found = Signal()

        def bin_of(value):
            q = ((top - value).as_unsigned() >> self.shift)
            return Mux(q >= nb - 1, nb - 1, q)

        # The bin edge's weight, exp2_fx(exp_arg(-(b << shift), sel_scale)), in two registered
        # steps (the product, then clamp, table and shift), so that no cycle holds two
        # multipliers in series; ``wb``/``wc`` carry the bin a step behind ``b``.
        edge = Signal(der.diff_width + 1)
        m.d.comb += edge.eq(b << self.shift)
        prod = Signal(signed(der.diff_width + 1 + cfg.c_bits + 1))
        tailing = Signal()                        # the tail sweep: W2 at tail_scale
        m.d.sync += prod.eq(-(edge * Mux(tailing, self.tail_scale, self.sel_scale)))
        tail_on = Signal()
        m.d.comb += tail_on.eq((self.tail_scale != 0) & (self.mass != 0))
        drop = Signal(der.l_width)
        rem = Signal(der.l_width + 1)             # the division's remainder
        quo = Signal(TAIL_FRAC)
        dstep = Signal(range(TAIL_FRAC + 1))
        lo = -((cfg.w_frac + 2) << cfg.exp_frac)
        x = Signal(signed(len(prod)))
        arg = prod >> (cfg.c_frac - cfg.exp_frac)                       # EXP_ARG_FLOOR
        m.d.comb += x.eq(Mux(arg < lo, lo, arg))
        n_int = Signal(signed(len(x)))
        m.d.comb += n_int.eq(x >> cfg.exp_frac)
        frac = x.as_unsigned() & ((1 << cfg.exp_frac) - 1)
        addr = frac >> (cfg.exp_frac - cfg.exp_lut_bits)                 # LUT_ADDR_TRUNC
        lut = Array(Const(v, der.w_width) for v in exp2_lut(cfg))     # LUT_ROUND
        w = Signal(der.w_width)
        m.d.sync += w.eq(Mux(-n_int > cfg.w_frac, 0, lut[addr] >> (-n_int).as_unsigned()))
        wb = Signal(range(nb))                    # the bin of ``prod``
        wc = Signal(range(nb))                    # the bin of ``w``
        m.d.sync += [wb.eq(b), wc.eq(wb)]

        # One bin's mass cnt[b]·W[b], registered with its bin (``pb``), for both sweeps.
        part = Signal(der.l_width)
        pb = Signal(range(nb))
        # The count step in three registered steps after the buffer read: the value (``kv``),
        # its bin (``kb``), the count; a key every two cycles, so no count is in flight twice.
        kv = Signal(signed(der.ahat_width))
        kb = Signal(range(nb))
        kv_ok = Signal()
        pend = Signal()
        m.d.sync += [kv_ok.eq(0), pend.eq(kv_ok), kb.eq(bin_of(kv))]
        with m.If(pend):
            m.d.sync += cnt[kb].eq(cnt[kb] + 1)
        # The threshold of the emit step: eligible ⟺ Â > M − ((b_star + 1) << shift), or b_star
        # is the last bin (every key), or mass = 0.
        edge_value = top - ((b_star + 1) << self.shift)
        thr = Signal(edge_value.shape())
        every = Signal()
        step = Signal(range(nb + 4))              # cycles into a sweep
        goal = Signal(len(self.mass) + der.l_width)

        with m.FSM():
            with m.State("FILL"):
                m.d.comb += [self.i.ready.eq(1), wr.addr.eq(self.i.payload.index),
                             wr.data.eq(self.i.payload.value),
                             wr.en.eq(self.i.valid)]
                with m.If(self.i.valid):
                    v = self.i.payload.value
                    with m.If(self.i.payload.first):
                        m.d.sync += [n.eq(1), top.eq(v)]
                    with m.Else():
                        m.d.sync += [n.eq(n + 1), top.eq(Mux(v > top, v, top))]
                    with m.If(self.i.payload.last):
                        m.d.sync += [j.eq(0)] + [c.eq(0) for c in cnt]
                        m.next = "COUNT_ADDR"
            with m.State("COUNT_ADDR"):
                m.d.comb += rd.addr.eq(j)
                m.next = "COUNT_DATA"
            with m.State("COUNT_DATA"):
                m.d.sync += [kv.eq(rd.data), kv_ok.eq(1), j.eq(j + 1)]
                with m.If(j + 1 == n):
                    m.d.sync += [b.eq(0), step.eq(0), total.eq(0)]
                    m.next = "WEIGHT"
                with m.Else():
                    m.next = "COUNT_ADDR"
            with m.State("WEIGHT"):
                # Step s: prod of bin s, w of bin s−1, part of bin s−2, total of bin s−3. The
                # last count lands at step 1, before any cnt is read (step 2).
                m.d.sync += [b.eq(Mux(b == nb - 1, b, b + 1)), step.eq(step + 1),
                             weight[wc].eq(w), part.eq(cnt[wc] * w), pb.eq(wc)]
                with m.If(step >= 3):
                    m.d.sync += total.eq(total + part)
                with m.If(step == nb + 2):
                    m.d.sync += [b.eq(0), step.eq(0), cum.eq(0), found.eq(0),
                                 b_star.eq(nb - 1)]
                    m.next = "GOAL"
            with m.State("GOAL"):
                m.d.sync += goal.eq(self.mass * total)
                m.next = "THRESH"
            with m.State("THRESH"):
                # Step s: part of bin s, the cumulative mass up to bin s−1.
                m.d.sync += [b.eq(Mux(b == nb - 1, b, b + 1)), step.eq(step + 1),
                             part.eq(cnt[b] * weight[b]), pb.eq(b)]
                cum_next = cum + part
                with m.If(step >= 1):
                    m.d.sync += cum.eq(cum_next)
                    with m.If(~found & ((cum_next << ADAPT_MASS_FRAC) >= goal)):
                        m.d.sync += [b_star.eq(pb), found.eq(1)]
                with m.If(step == nb):
                    with m.If(tail_on):
                        m.d.sync += [b.eq(0), step.eq(0), total.eq(0), drop.eq(0)]
                        m.next = "TAIL"
                    with m.Else():
                        m.next = "EDGE"
            with m.State("TAIL"):
                # As WEIGHT at tail_scale: step s, prod of bin s, w of s−1, part of s−2 (bin
                # pb), sums of s−3; the weight registers are left as they are.
                m.d.comb += tailing.eq(1)
                m.d.sync += [b.eq(Mux(b == nb - 1, b, b + 1)), step.eq(step + 1),
                             part.eq(cnt[wc] * w), pb.eq(wc)]
                drop_next = Mux(pb > b_star, drop + part, drop)
                with m.If(step >= 3):
                    m.d.sync += [total.eq(total + part), drop.eq(drop_next)]
                with m.If(step == nb + 2):             # the last bin's part is in drop_next
                    m.d.sync += [rem.eq(drop_next), quo.eq(0), dstep.eq(0)]
                    m.next = "TAIL_DIV"
            with m.State("TAIL_DIV"):
                # TAIL_FRAC_FLOOR: one quotient bit a cycle, drop < total.
                m.d.comb += tailing.eq(1)
                twice = rem << 1
                fits = twice >= total
                m.d.sync += [rem.eq(Mux(fits, twice - total, twice)),
                             quo.eq((quo << 1) | fits), dstep.eq(dstep + 1)]
                with m.If(dstep == TAIL_FRAC - 1):
                    m.next = "TAIL_OUT"
            with m.State("TAIL_OUT"):
                m.d.comb += [self.f.valid.eq(1), self.f.payload.eq(quo)]
                with m.If(self.f.ready):
                    m.next = "EDGE"
            with m.State("EDGE"):
                m.d.sync += [thr.eq(edge_value),
                             every.eq((self.mass == 0) | (b_star == nb - 1)), j.eq(0)]
                m.next = "EMIT_ADDR"
            with m.State("EMIT_ADDR"):
                m.d.comb += rd.addr.eq(j)
                m.next = "EMIT_DATA"
            with m.State("EMIT_DATA"):
                m.d.comb += [rd.addr.eq(j), self.o.valid.eq(1),
                             self.o.payload.value.eq(rd.data),
                             self.o.payload.index.eq(j),
                             self.o.payload.first.eq(j == 0),
                             self.o.payload.last.eq(j + 1 == n),
                             self.o.payload.eligible.eq(every | (rd.data > thr))]
                with m.If(self.o.ready):
                    m.d.sync += j.eq(j + 1)
                    m.next = "EMIT_NEXT"
            with m.State("EMIT_NEXT"):
                with m.If(j == n):
                    m.next = "FILL"
                with m.Else():
                    m.d.comb += rd.addr.eq(j)
                    m.next = "EMIT_DATA"
        return m
