"""Cycle model of :class:`hw.top.SofaCore`: predicts its cycles from the config and the golden
model's per-tile selection and rescale counts, so that long sequences (4k, 16k) can be projected
without simulating them. Checked against the RTL in ``tb/test_top.py`` and the Verilator
testbench (within 5 %).

The model follows the core tile by tile. Prediction streams a tile's keys through DLZS at
``dlzs_cycles`` per key; SADS hands the tile's selection over ``lag`` cycles after its last key;
SU-FA spends ``mac_cycles`` per selected key and per rescale (one cycle for an empty tile) and
starts a tile when both the selection is there and the previous tile is done. Between SADS and
SU-FA there are only pipeline registers, so prediction can run at most ``ahead`` tiles in front
of SU-FA. Dense mode is SU-FA alone over every key. The constants are the pipeline depths of
the units (see each unit's ``latency``). A row's ``O`` waits in the divide buffer while the
divider takes its ``d`` elements, one per ``ii`` cycles of :class:`hw.divider.Divider`; SU-FA
hands its next row over only when the buffer is free. The model counts that wait only for the
iterative divider (``ceil((out_width + 1) / 2) + 1`` cycles an element, the board builds),
where a row's divide can take longer than its attention; the pipelined one (``ii = 1``) needs
``d`` cycles a row, less than any row of a preset at the sequence lengths the model is used
for, except with ``predict_keys > 1``, whose short sparse rows it also counts.

With ``predict_keys = P > 1`` prediction streams a tile in ``ceil(size / P)`` beats of
``dlzs_cycles`` (or ``size`` times the bank's ``ii`` if the SADS units are slower); the tile's
SADS unit takes its keys one per SADS ``ii`` cycles from the tile's first beat, two queue
registers further on, so the selection is there ``dlzs_cycles + (size - 1)·ii + lag + 2``
cycles after the tile's first beat; the units' queues (two tiles each) and result queues let
prediction run ``3 + units·(2 + queue_depth)`` tiles ahead of SU-FA.

With the adaptive gate (``adapt_bins > 0``, sparse) a row passes through the gate whole:
DLZS fills it at ``dlzs_cycles`` a key, the gate counts it and sweeps its bins, then replays it
to SADS (:func:`spec.timing.adapt_sweep_cycles` and the cycles a key there), or at the SADS ``ii``
per key that enters the sorter where that is slower; the next row fills the gate after that
(DLZS has its keys ready, so only the first row waits for DLZS's latency). The tail blend
adds its sweep and division to every row's gate time (:func:`spec.timing.tail_sweep_cycles`);
its two output stages and the mean V row's sweep (before the call, while the core is idle)
are not modelled.
"""

from dataclasses import dataclass


from sim.golden import exp2_lut, sufa_row, tile_ranges
from spec.timing import (ADAPT_COUNT_CYCLES, ADAPT_EMIT_CYCLES, adapt_sweep_cycles,
                         divider_timing, dlzs_latency, sads_bank_timing, sads_timing,
                         sufa_latency, tail_sweep_cycles)


__all__ = ["core_cycles", "tile_work", "CycleBreakdown"]


@dataclass
class CycleBreakdown:
    total: int
    predict: int          # cycles DLZS streams keys
    sufa: int             # cycles of SU-FA work (keys and rescales)
    rows: int
    fill: int = 0         # cycles before SU-FA's first operation (once per call)
    drain: int = 0        # SU-FA's last operation to the last output element (once per call)


def tile_work(cfg, Q, K, V, params, res):
    """Per row, per tile: ``(keys in the tile, selected keys, rescales)``.

    Rescales are recounted per tile from the golden SU-FA trace (a rescale is every increase
    of ``m`` after the row's first key: ``l > 0`` from then on).
    """
    lut = exp2_lut(cfg)
    ranges = tile_ranges(params.seq_len, cfg.block_size)
    out = []
    for i in range(len(res.rows)):
        if params.dense:
            order = [list(range(a, b)) for a, b in ranges]
        else:
            order = [t.indices for t in res.selection[i]]
        tr = sufa_row(Q[i], K, V, order, params.scale_log2e, cfg, lut, keep_steps=True)
        steps = iter(tr.steps)
        m_prev, tiles = None, []
        for (a, b), sel in zip(ranges, order):
            resc = 0
            for _ in sel:
                _, _, m, _ = next(steps)
                if m_prev is not None and m != m_prev:
                    resc += 1
                m_prev = m
            tiles.append((b - a, len(sel), resc))
        out.append(tiles)
    return out


def core_cycles(cfg, params, res, Q=None, K=None, V=None, *, breakdown=False, work=None,
                iterative_divider=False):
    """Predicted busy cycles of one run (queries in, last output element out).

    ``res`` is the :func:`sim.golden.sofa_attention` result for the same inputs; ``Q``, ``K``,
    ``V`` are needed to recount rescales per tile unless ``work`` (from :func:`tile_work`) is
    given. ``iterative_divider`` models a core built with the iterative divider (as the board
    builds are).
    """
    der = cfg.derived
    M, DL = der.mac_cycles, der.dlzs_cycles
    if work is None:
        if Q is None:
            raise ValueError("core_cycles needs Q, K, V or a precomputed work list")
        work = tile_work(cfg, Q, K, V, params, res)
    # Pipeline constants (cycles), from the units' latencies.
    sads = sads_timing(cfg)
    dlzs_lat, sads_lat, sads_ii = dlzs_latency(cfg), sads.latency, sads.ii
    sufa_lat = sufa_latency(cfg, iterative_divider=iterative_divider)
    P = cfg.predict_keys
    key_time = max(DL, sads_ii)            # SADS is slower than DLZS for tiny batches
    lag = dlzs_lat + sads_lat + 3          # K read, DLZS, skid buffer, SADS, fetch
    ahead = 3                              # tiles prediction may run in front of SU-FA
    if P > 1:
        # A beat of P keys per dlzs_cycles; a tile goes to one SADS unit of the bank, which
        # takes its keys one per sads_ii cycles from its queue (two more registers), while
        # the other units take the next tiles.
        bank = sads_bank_timing(cfg)
        lag += 2
        # a unit holds two tiles in its queue and queue_depth tiles of results
        ahead = 3 + bank.units * (bank.queue_beats * P // cfg.block_size + sads.queue_depth)
    row_gap = 3                            # DLZS takes the next query after a row's last key
    sufa_row_gap = 3                       # SU-FA takes the next query after a row's last key
    _, div_ii = divider_timing(der.out_width, iterative=iterative_divider)
    div_time = cfg.d * div_ii              # the divide buffer is busy this long per row
    # last key -> last output element (+ output skid)
    tail = sufa_lat + 1 + (cfg.d - 1) * div_ii + 1 - M

    t_pred = 0                             # when prediction of the next key may start
    t_sufa = 1                             # when SU-FA may start its next tile
    t_div = 0                              # when the divide buffer is free again
    starts = []                            # SU-FA start of every tile so far
    predict = sufa = 0
    L = cfg.q_lanes
    # The lanes of a group take every K row (and every dense key) together, so a group moves
    # at the pace of its slowest lane in every tile.
    gate = bool(cfg.adapt_bins) and not params.dense
    if gate:
        # The adaptive gate (hw/adapt.py) takes the whole row from DLZS (dlzs_cycles a key),
        # counts it, sweeps the bins and replays it to SADS (spec.timing's gate terms); SADS
        # sees the gate, not DLZS, and the next row's keys enter the gate once it has
        # replayed this one (DLZS has them ready by then: only the first row waits for its
        # latency).
        emit_time = ADAPT_EMIT_CYCLES
        gate_think = adapt_sweep_cycles(cfg.adapt_bins)
        if params.tail:                    # the tail sweep and f's division (hw/adapt.py)
            gate_think += tail_sweep_cycles(cfg.adapt_bins)
        t_pred += dlzs_lat + 2
        lag = sads_lat + 3
    for g in range(0, len(work), L):
        group = work[g:g + L]
        if gate:
            S = sum(t[0] for t in group[0])
            t_pred += S * DL + ADAPT_COUNT_CYCLES * S + gate_think
            predict += S * DL
        for n in range(len(group[0])):
            size = group[0][n][0]
            if gate:
                # SADS's sorter takes only the keys that enter it (eligible, within the
                # radius, able to enter the list), at its ii
                entered = size if res is None else max(
                    res.selection[g + i][n].entered for i in range(len(group)))
                t_pred += max(size * emit_time, entered * sads_ii)
                if len(starts) >= ahead:
                    t_pred = max(t_pred, starts[-ahead])
                ready = t_pred + lag
            elif not params.dense and P > 1:
                stream = max(-(-size // P) * DL, size * bank.ii)
                t_pred += stream
                if len(starts) >= ahead:
                    t_pred = max(t_pred, starts[-ahead])
                predict += stream
                # the unit's last key enters SADS size·sads_ii after the tile's first beat
                ready = t_pred - stream + DL + (size - 1) * sads_ii + lag
            elif not params.dense:
                t_pred += size * key_time
                if len(starts) >= ahead:
                    t_pred = max(t_pred, starts[-ahead])
                predict += size * key_time
                ready = t_pred + lag
            else:
                ready = 2
            cost = 0
            for tiles in group:
                _, sel, resc = tiles[n]
                c = (sel + resc) * M if sel else 1
                if n == 0 and sel:
                    c += 1                 # the first m of a row: a cycle without operation
                cost = max(cost, c)
            start = max(t_sufa, ready)
            starts.append(start)
            t_sufa = start + cost
            sufa += cost
        t_pred += 0 if gate else row_gap
        if div_ii > 1 or P > 1:            # hand-over waits for the previous row's divide
            t_sufa = max(t_sufa, t_div)
            t_div = t_sufa + div_time
        t_sufa += sufa_row_gap
    end = round(t_sufa - sufa_row_gap)     # SU-FA's last operation of the call
    # The last group's other lanes' rows leave one by one after the first.
    t_sufa += (len(work[(len(work) - 1) // L * L:]) - 1) * cfg.d * div_ii
    total = round(t_sufa - sufa_row_gap + tail + (0 if params.dense else 4))
    if breakdown:
        return CycleBreakdown(total=total, predict=predict, sufa=sufa, rows=len(work),
                              fill=round(starts[0]) if starts else 0, drain=total - end)
    return total
