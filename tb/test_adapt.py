# amaranth: UnusedElaboratable=no
"""AdaptiveGate (hw/adapt.py) in the Amaranth simulator against sim.golden.adaptive_eligible:
rows of random, tied and extreme Â back to back, several register settings, every traffic
setting (idle cycles on the input, backpressure on the output)."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from hw.adapt import AdaptiveGate
from sim.golden import adaptive_eligible, adaptive_tail
from spec.config import RunParams, preset
from spec.regmap import register
from spec.numerics import TAIL_FRAC
from spec.timing import (ADAPT_COUNT_CYCLES, ADAPT_EMIT_CYCLES, adapt_sweep_cycles,
                         tail_sweep_cycles)
from tb.streams import TRAFFIC, run_streams

CONFIGS = {
    "tiny": preset("tiny").replace(adapt_bins=4),
    "odd": preset("tiny").replace(name="odd", d=6, block_size=5, sort_width=5, k_max=3,
                                  max_seq_len=40, dlzs_lanes=3, mac_lanes=2, adapt_bins=5),
    "wide": preset("tiny").replace(name="wide", exp_frac=6, exp_lut_bits=4, adapt_bins=16),
}


class Bench(Elaboratable):
    """The gate with its registers tied to constants."""

    def __init__(self, gate, mass, sel_scale, shift):
        self.gate, self.i, self.o = gate, gate.i, gate.o
        self.regs = (mass, sel_scale, shift)

    def elaborate(self, platform):
        m = Module()
        m.submodules.gate = g = self.gate
        mass, sel_scale, shift = self.regs
        m.d.comb += [g.mass.eq(mass), g.sel_scale.eq(sel_scale), g.shift.eq(shift)]
        return m


def rows_for(cfg, rng, n_rows):
    der = cfg.derived
    hi = (1 << (der.ahat_width - 1)) - 1
    rows = []
    for r in range(n_rows):
        S = rng.randint(1, cfg.max_seq_len)
        kind = r % 3
        if kind == 0:
            row = [rng.randint(-hi // 64, hi // 64) for _ in range(S)]
        elif kind == 1:                                  # ties
            row = [rng.choice([0, 5, 9, -3]) * 40 for _ in range(S)]
        else:                                            # extremes
            row = [rng.choice([-hi - 1, hi, 0, 1, -1]) for _ in range(S)]
        rows.append(row)
    return rows


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_gate_equals_golden(name, traffic):
    cfg = CONFIGS[name]
    rng = random.Random(f"{name}{traffic!r}")
    settings = [(128, 1 << (cfg.c_frac - 8), 3), (1, 1 << (cfg.c_frac - 5), 0),
                (256, 1 << (cfg.c_frac - 12), 6), (200, 12345, 5),
                (64, 1 << (cfg.c_frac - 12), register("adapt_shift").legal(cfg)[1])]
    for mass, c_sel, shift in settings:
        RunParams(seq_len=1, top_k=1, radius=0, scale_log2e=0, adapt_mass=mass,
                  adapt_scale=c_sel, adapt_shift=shift).validate(cfg)
        rows = rows_for(cfg, rng, 3)
        beats = [{"value": v, "index": j, "first": int(j == 0), "last": int(j == len(row) - 1)}
                 for row in rows for j, v in enumerate(row)]
        dut = AdaptiveGate(cfg)
        out, = run_streams(Bench(dut, mass, c_sel, shift), [(dut.i, beats)],
                           [(dut.o, len(beats))], traffic=traffic, seed=shift + mass,
                           timeout=40 * len(beats) + 2000)
        k = 0
        for row in rows:
            want, _ = adaptive_eligible(row, cfg, mass=mass, sel_scale=c_sel, shift=shift)
            for j, v in enumerate(row):
                got = out[k]
                assert (got.value, got.index, got.first, got.last) == \
                    (v, j, int(j == 0), int(j == len(row) - 1))
                assert got.eligible == want[j], (mass, c_sel, shift, j, row)
                k += 1


def test_mass_reached_exactly():
    """The first bin's mass is exactly p of the total (W = 1 and 1/2, one key against two):
    the rule's ``≥`` makes bin 0 the last eligible one."""
    cfg = CONFIGS["tiny"]
    row = [100, 68, 60]                                   # bins 0, 1, 1 at shift 5
    want, b_star = adaptive_eligible(row, cfg, mass=128, sel_scale=1 << 15, shift=5)
    assert (want, b_star) == ([True, False, False], 0)
    dut = AdaptiveGate(cfg)
    beats = [{"value": v, "index": j, "first": int(j == 0), "last": int(j == 2)}
             for j, v in enumerate(row)]
    out, = run_streams(Bench(dut, 128, 1 << 15, 5), [(dut.i, beats)], [(dut.o, 3)],
                       traffic=TRAFFIC[3], seed=1, timeout=500)
    assert [b.eligible for b in out] == [1, 0, 0]


def _time_row(dut, bench, S, cycles):
    """Feed one row of S keys into the gate of ``bench`` at full rate, ``o`` and ``f`` always
    ready; the cycles each key went in and came out."""
    seen = {"in": [], "out": []}

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.f.ready, 1)
        for cycle in range(cycles):
            j = len(seen["in"])
            ctx.set(dut.i.valid, j < S)
            ctx.set(dut.i.payload, {"value": (7 * j) % 50, "index": min(j, S - 1),
                                    "first": int(j == 0), "last": int(j == S - 1)})
            _, _, took, gave = await ctx.tick().sample(dut.i.valid & dut.i.ready,
                                                       dut.o.valid & dut.o.ready)
            if took:
                seen["in"].append(cycle)
            if gave:
                seen["out"].append(cycle)

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return seen


@pytest.mark.parametrize("name", list(CONFIGS))
def test_row_timing(name):
    """Measured: a row's first key leaves ``ADAPT_COUNT_CYCLES·S + adapt_sweep_cycles(bins)``
    cycles after its last key went in, and the keys leave ``ADAPT_EMIT_CYCLES`` apart (the
    terms of the cycle model and the DSE, spec.timing)."""
    cfg = CONFIGS[name]
    for S in (3, cfg.max_seq_len):
        dut = AdaptiveGate(cfg)
        seen = _time_row(dut, Bench(dut, 128, 1 << (cfg.c_frac - 8), 3), S,
                         8 * S + 4 * cfg.adapt_bins + 40)
        assert len(seen["in"]) == S and len(seen["out"]) == S
        assert seen["out"][0] - seen["in"][-1] == \
            ADAPT_COUNT_CYCLES * S + adapt_sweep_cycles(cfg.adapt_bins)
        assert {b - a for a, b in zip(seen["out"], seen["out"][1:])} == {ADAPT_EMIT_CYCLES}


# -- the tail blend's f (tail_scale != 0) -------------------------------------------------------

class TailBench(Elaboratable):
    """The gate with all four registers tied to constants."""

    def __init__(self, gate, mass, sel_scale, shift, tail_scale):
        self.gate = gate
        self.regs = (mass, sel_scale, shift, tail_scale)

    def elaborate(self, platform):
        m = Module()
        m.submodules.gate = g = self.gate
        mass, sel_scale, shift, tail_scale = self.regs
        m.d.comb += [g.mass.eq(mass), g.sel_scale.eq(sel_scale), g.shift.eq(shift),
                     g.tail_scale.eq(tail_scale)]
        return m


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_gate_tail_equals_golden(name, traffic):
    """With TAIL_SCALE != 0 the gate sends one f a row, equal to sim.golden.adaptive_tail,
    and the same eligible keys; with ADAPT_MASS = 0 it sends none (backpressure on f too)."""
    cfg = CONFIGS[name]
    rng = random.Random(f"tail{name}{traffic!r}")
    top = (1 << cfg.c_bits) - 1
    settings = [(128, 1 << (cfg.c_frac - 8), 3, 1 << (cfg.c_frac - 7)),
                (40, 1 << (cfg.c_frac - 5), 0, top),
                (256, 1 << (cfg.c_frac - 12), 6, 1),
                (200, 12345, 5, 23456),
                (0, 1 << (cfg.c_frac - 8), 3, 999)]
    for mass, c_sel, shift, t_scale in settings:
        rows = rows_for(cfg, rng, 3)
        beats = [{"value": v, "index": j, "first": int(j == 0), "last": int(j == len(row) - 1)}
                 for row in rows for j, v in enumerate(row)]
        dut = AdaptiveGate(cfg)
        n_f = len(rows) if mass else 0
        out, fs = run_streams(TailBench(dut, mass, c_sel, shift, t_scale), [(dut.i, beats)],
                              [(dut.o, len(beats)), (dut.f, n_f)], traffic=traffic,
                              seed=shift + mass, timeout=40 * len(beats) + 4000)
        k = 0
        for r, row in enumerate(rows):
            want, b_star = adaptive_eligible(row, cfg, mass=mass, sel_scale=c_sel, shift=shift)
            if mass:
                assert fs[r] == adaptive_tail(row, cfg, b_star=b_star, tail_scale=t_scale,
                                              shift=shift), (mass, t_scale, r)
            for j in range(len(row)):
                assert out[k].eligible == (want[j] or not mass)
                k += 1


@pytest.mark.parametrize("name", ["tiny", "wide"])
def test_tail_row_timing(name):
    """Measured: with the tail blend on, a row's first key leaves ``tail_sweep_cycles(bins)``
    cycles later than without (f taken at once)."""
    cfg = CONFIGS[name]
    S = 5
    delays = []
    for t_scale in (0, 1 << (cfg.c_frac - 7)):
        dut = AdaptiveGate(cfg)
        seen = _time_row(dut, TailBench(dut, 128, 1 << (cfg.c_frac - 8), 3, t_scale), S,
                         8 * S + 6 * cfg.adapt_bins + 80)
        assert len(seen["out"]) == S
        delays.append(seen["out"][0] - seen["in"][-1])
    assert delays[0] == ADAPT_COUNT_CYCLES * S + adapt_sweep_cycles(cfg.adapt_bins)
    assert delays[1] - delays[0] == tail_sweep_cycles(cfg.adapt_bins, TAIL_FRAC)
