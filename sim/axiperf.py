"""Cycle model of the memory-attached core (:class:`hw.axicore.SofaAxiCore`) with a memory of
given bandwidth and latency, so that long sequences (4k, 16k, 64k) and other memories can be
projected without simulating them. Checked against the RTL in ``tb/test_axiperf.py`` (within
5 %).

The model follows the engine (:mod:`hw.axiengine`) block by block and tile by tile:

* **the read bus** is one server: a read of ``n`` beats issued at ``t`` delivers its data from
  ``max(t + AR + latency, bus free)`` on, one beat every ``bus_bytes / bytes_per_cycle``
  cycles (one a cycle at most); Q, K and V reads queue on it in the order they are issued;
* **K**: a tile's read is issued as soon as its slot in the ring of ``k_tiles`` is free; its
  rows enter DLZS (sparse mode) at the pace ``max(dlzs_cycles, SADS ii)``; with
  ``predict_keys = P > 1`` the tile is read packed (:func:`spec.job.k_read_beats` beats) and
  a word of ``P`` rows enters DLZS as soon as its last beat is in, at most one every
  ``max(dlzs_cycles, n · bank ii)`` cycles (``n`` its keys); the tile's SADS unit takes its
  keys one per SADS ``ii`` from its first word, so its selection is there ``tile_latency + 2``
  (the bank's queue) after the later of its last word and ``(keys - 1) · ii`` after its first;
* **selection**: a tile's selection is there ``lag`` cycles after its last key entered DLZS;
  the RASS scheduler takes the tiles one after the other (the collection of the lanes'
  selections, a beat a cycle: the most any lane selected, at least one; a scan of ``q_lanes ·
  q_lanes · k_max`` steps with RASS, ``q_lanes · k_max`` without, a marker; ``q_lanes² · k_max
  + collection + 4`` cycles a tile, which bounds a sparse block once prediction is faster:
  with ``predict_keys > 1``) and issues a V read per row it emits, once the tile's V slot (of
  two) is free;
* **attention**: a lane spends ``mac_cycles`` per selected key and per rescale on a tile (one
  cycle for an empty tile), after its previous tile and not before the tile's V rows have
  arrived; a tile's slots are freed when every lane is past it;
* dense mode streams K and reads V a tile at a time behind it, every key to every lane;
* a block starts when the previous one is done; the last rows' divide and write end the job.

**On-demand K/V** (``kv_source = "project"``): the K reads bring X rows (``x_row_beats``
each), which enter phase 1.1 at ``d_model / khat_lanes`` cycles a row (the K̂ row then goes to
DLZS); each head first reads its weights (the loader takes a beat a cycle and hands the
projection array a word a cycle); where a V row would be read, the key's X row enters the
projection unit (one row at a time, ``ii`` cycles each, its K and V rows in the ring
``latency`` cycles later), in the RASS order (sparse) or every row of a tile once its X is in
(dense).

The constants are the pipeline depths of the units and of the AXI reader and writer.

:func:`core_steps` is the engine as a generator of its reads (:class:`Read`), so that the
model of several cores on one memory (:mod:`sim.multiperf`) can interleave them on a shared
bus; :func:`axi_core_cycles` serves them on a bus of its own.
"""

from dataclasses import dataclass, replace

from sim.golden import sofa_attention
from sim.jobs import blocks, rass_order
from sim.perf import tile_work
from spec.job import (WEIGHTS, bus_bytes, k_read_beats, projects, query_lengths, row_beats,
                      row_bytes, weight_beats, x_row_beats)
from spec.timing import (ENGINE_START_DELAY, JOB_CHECK_CYCLES, V_TILES, divider_timing,
                         dlzs_latency, job_check_cycles, sads_bank_timing, sads_timing,
                         sufa_latency)


__all__ = ["axi_core_cycles", "job_works", "core_steps", "Read", "Bus", "AxiBreakdown",
           "AR_TIME", "R_TIME", "START_TIME", "BLOCK_GAP"]


#: Cycles from a read command to ARVALID (reader: splitter, AR register) plus the slave's
#: acceptance, and from an R beat to the row in its ring (R register, FIFO, assembler).
AR_TIME = 5
R_TIME = 4
#: Cycles from a V row in its ring to its key entering SU-FA (valid bit, feeder stage).
FEED_TIME = 2
#: Register checks at start (:data:`spec.timing.JOB_CHECK_CYCLES`), and the block hand-over
#: (PREP and BLOCK states, the lanes' reset).
START_TIME = JOB_CHECK_CYCLES + ENGINE_START_DELAY + 1
BLOCK_GAP = 4
#: On-demand K/V: hw/khat.py's latency plus the serializer's register; the weight loader's
#: gearbox, count and the WLOAD hand-over; the X ring read before the projection unit.
KHAT_LATENCY = 3
WLOAD_TIME = 4
X_READ_TIME = 2


@dataclass
class AxiBreakdown:
    """Where a job's cycles go."""
    total: int
    blocks: int
    read_beats: int       # beats over the read bus
    bus_busy: float       # cycles the read bus carries data
    sufa: int             # cycles of SU-FA work (keys and rescales)


@dataclass(frozen=True)
class Read:
    """A read the engine issues: ``beats`` bus beats at cycle ``t``. ``stream`` is ``"q"``,
    ``"k"`` or ``"v"``; a K read also names its ``step`` (head of the job, block of the head,
    tile of the block), which the multi-core model (:mod:`sim.multiperf`) matches across
    cores. The one who runs :func:`core_steps` answers it with ``(first beat, last beat)``
    arrival times (:meth:`Bus.read`)."""
    stream: str
    t: float
    beats: int
    step: tuple = ()


class Bus:
    """The read channel: beat slots of ``beat_time`` cycles, each carrying one beat. A read
    takes the first free slots from ``issue + AR + latency`` on, so reads issued early are
    not held up by reads the model happens to place later (the reader interleaves its
    clients' bursts)."""

    def __init__(self, beat_time, latency):
        self.beat_time, self.latency = beat_time, latency
        self._next = {}                    # slot -> a later slot that may be free
        self.beats = 0
        self.busy = 0.0

    def _free(self, slot):
        path = []
        while slot in self._next:
            path.append(slot)
            slot = self._next[slot]
        for p in path:                     # path compression
            self._next[p] = slot
        return slot

    def read(self, t, beats, row=None):
        """Issue at ``t``: ``(first beat, last beat)`` arrival times.

        With ``row`` (beats a row), the first beat is the latest from which every row would
        have arrived had the beats come one a slot: a reader that takes the rows at the pace
        of contiguous beats from there never takes a row before its last beat (the read's
        beats may lie between other reads')."""
        slot = -(-int((t + AR_TIME + self.latency) * 1000) // int(self.beat_time * 1000))
        first = None
        for b in range(beats):
            slot = self._free(slot)
            self._next[slot] = slot + 1
            first = slot if first is None else first
            if row and b % row == row - 1:
                first = max(first, slot - b)
        self.beats += beats
        self.busy += beats * self.beat_time
        return (first + 1) * self.beat_time + R_TIME, (slot + 1) * self.beat_time + R_TIME


def job_works(cfg, params, job, tensors):
    """Per head, per query: its tiles' ``(keys, selected, rescales)`` (:func:`sim.perf.tile_work`
    over the query's own keys). It does not depend on the memory, so a projection over several
    bandwidths computes it once. ``tensors`` is ``(Q, K, V)``, or ``(Q, K, V, K̂)`` for an
    on-demand job (the keys predicted from K̂)."""
    Q, K, V = tensors[:3]
    kpred = tensors[3] if len(tensors) > 3 else None
    out = []
    for h in range(job.heads):
        per = []
        for i, L_t in enumerate(query_lengths(job)):
            p = replace(params, seq_len=L_t)
            res = sofa_attention(Q[h, i:i + 1], K[h, :L_t], V[h, :L_t], cfg, p,
                                 kpred=None if kpred is None else kpred[h, :L_t])
            per.append(tile_work(cfg, Q[h, i:i + 1], K[h, :L_t], V[h, :L_t], p, res)[0])
        out.append(per)
    return out


def axi_core_cycles(cfg, params, job, result, tensors=None, *, bytes_per_cycle=None, latency=0,
                    rass=True, breakdown=False, works=None):
    """Predicted busy cycles of a job (start to done).

    Parameters
    ----------
    cfg, params, job :
        As for :func:`sim.jobs.golden_job`.
    result : sim.jobs.JobResult
        The golden job (its selections and lengths).
    tensors : tuple
        ``(Q, K, V)`` of the job, ``[heads, rows, d]`` (to recount rescales per tile), unless
        ``works`` (:func:`job_works`) is given.
    bytes_per_cycle : float, optional
        The memory's bandwidth; the bus width by default (one beat a cycle).
    latency : int
        The memory's read latency in cycles (AR accepted to first R beat).
    rass : bool
        The RASS register.
    """
    BB = bus_bytes(cfg)
    bpc = BB if bytes_per_cycle is None else min(bytes_per_cycle, BB)
    bus = Bus(BB / bpc, latency)
    works_all = job_works(cfg, params, job, tensors) if works is None else works
    steps = core_steps(cfg, params, job, result.selections, works_all, beat_time=bus.beat_time,
                       latency=latency, rass=rass,
                       start=job_check_cycles(cfg) + ENGINE_START_DELAY + 1)
    # alone on its bus, every read is served in the order the engine issues it
    try:
        req = next(steps)
        while True:
            req = steps.send(bus.read(req.t, req.beats))
    except StopIteration as stop:
        end = stop.value
    total = round(end)
    if breakdown:
        M = cfg.derived.mac_cycles
        sufa = sum((s + r) * M for per in works_all for w in per for _, s, r in w)
        return AxiBreakdown(total=total, blocks=job.heads * len(blocks(cfg, job)),
                            read_beats=bus.beats, bus_busy=bus.busy, sufa=sufa)
    return total


def core_steps(cfg, params, job, selections, works, *, beat_time, latency, rass=True,
               start=START_TIME):
    """One core's job as a generator: it yields a :class:`Read` for every read the engine
    issues, is sent back the read's ``(first beat, last beat)`` arrival times, and returns the
    cycle the job is done (its last O row written). :func:`axi_core_cycles` serves the reads
    on one bus; :mod:`sim.multiperf` interleaves several cores' reads on a shared one.

    Parameters
    ----------
    cfg, params, job :
        As for :func:`sim.jobs.golden_job`.
    selections : list or None
        ``JobResult.selections`` of the job (None in dense mode).
    works : list
        :func:`job_works` of the job.
    beat_time : float
        Cycles a bus beat takes (``bus bytes / bandwidth``).
    latency : int
        The memory's read latency in cycles.
    rass : bool
        The RASS register.
    start : float
        The cycle the engine starts (after the checks at start).
    """
    der = cfg.derived
    M = der.mac_cycles
    RW, OW = row_beats(cfg), row_beats(cfg, out=True)
    sads = sads_timing(cfg)
    key_time = max(der.dlzs_cycles, sads.ii)
    lag = dlzs_latency(cfg) + sads.tile_latency + 2   # K broadcast, DLZS, skid, SADS
    sufa_lat = sufa_latency(cfg)
    if cfg.predict_keys > 1:
        lag += 2                                      # the bank's queue registers
    _, div_ii = divider_timing(der.out_width, iterative=False)
    tail = sufa_lat + cfg.d * div_ii + 2 + OW + 2 + latency + 2   # divide, pack, write, B
    proj = projects(cfg)
    if proj:                                          # X through phase 1.1 before DLZS
        key_time = max(key_time, cfg.d_model // cfg.khat_lanes)
        lag += KHAT_LATENCY + 1
    t = start
    for h in range(job.heads):
        if proj:                                      # the head's weights, then its blocks
            beats = sum(weight_beats(cfg, w) for w in WEIGHTS)
            _, last = yield Read("w", t + 1, beats)
            words = 2 * cfg.d * cfg.d_model // cfg.proj_macs
            t = max(last, t + 1 + AR_TIME + latency + words) + WLOAD_TIME
        for j, (first, n) in enumerate(blocks(cfg, job)):
            t = yield from _block(cfg, params, beat_time, t, works[h][first:first + n],
                                  [selections[h][first + i] if selections else None
                                   for i in range(n)], key_time, lag, rass, RW, M, (h, j))
            t += BLOCK_GAP
    return t - BLOCK_GAP + tail


def _scan_steps(cfg, lanes, rass):
    """The scan step at which :class:`hw.rass.RassScheduler` emits each row of
    :func:`sim.jobs.rass_order` (the same order): slots ``lane · k_max + rank``, one a step;
    with RASS one pass per share count from ``q_lanes`` down, a row in the pass of its count at
    its first slot."""
    K, L = cfg.k_max, cfg.q_lanes
    N = L * K
    slots = [(i * K + r, j) for i, lst in enumerate(lanes) for r, j in enumerate(lst)]
    if not rass:
        return [s for s, _ in slots]
    count = {}
    for _, j in slots:
        count[j] = count.get(j, 0) + 1
    steps, seen = [], set()
    for level in range(L, 0, -1):
        for s, j in slots:
            if count[j] == level and j not in seen:
                seen.add(j)
                steps.append((L - level) * N + s)
    return steps


def _block(cfg, params, beat_time, t0, works, sels, key_time, lag, rass, RW, M, block):
    """One block from ``t0`` (a generator of its reads, as :func:`core_steps`); returns when
    its lanes are done (every tile freed)."""
    L, KT, VT = cfg.q_lanes, cfg.k_tiles, V_TILES
    der, P, RB, BB = cfg.derived, cfg.predict_keys, row_bytes(cfg), bus_bytes(cfg)
    proj = projects(cfg)
    XW = x_row_beats(cfg) if proj else RW             # beats of a row the K reader brings
    p_ii = 2 * cfg.d * cfg.d_model // cfg.proj_macs + 8 if proj else 0
    p_free = t0                                       # the projection unit takes a row
    sads = sads_timing(cfg)
    bank_ii = sads_bank_timing(cfg).ii if P > 1 else None
    n = len(works)
    tiles = max(len(w) for w in works)
    _, q_ready = yield Read("q", t0, n * RW)
    q_ready += 1
    release = []                                     # when tile k's slots are free
    k_done = []                                      # tile k's rows all in the ring
    lane_end = [t0] * n
    pred = q_ready                                   # when DLZS may take the next key
    rass_free = t0
    for k in range(tiles):
        marker = t0                                  # the tile's fetches are all issued
        rows = max(w[k][0] for w in works if k < len(w))
        issue = t0 + 1 if k < KT else release[k - KT]
        first, last = yield Read("k", issue, rows * XW if proj else k_read_beats(cfg, rows),
                                 block + (k,))
        k_done.append(last + 1)
        if params.dense and proj:                     # every row of the tile projected
            p_free = max(p_free, k_done[k], t0 if k < VT else release[k - VT])
            v_first = p_free + X_READ_TIME + p_ii - 1
            p_free += rows * p_ii
            v_ready = p_free + X_READ_TIME - 1
        elif params.dense:
            v_issue = max(k_done[k], t0 if k < VT else release[k - VT])
            v_first, v_ready = yield Read("v", v_issue, rows * RW)
        else:
            if P == 1:
                arrive = [first + (j + 1) * XW * beat_time - beat_time for j in range(rows)]
                for a in arrive:
                    pred = max(pred, a) + key_time
                selected = pred + lag
            else:
                t_first = None
                for g in range(0, rows, P):
                    n_g = min(P, rows - g)
                    beat = -(-(g + n_g) * RB // BB) - 1      # the word's last beat
                    pred = max(pred, first + beat * beat_time)
                    t_first = pred if t_first is None else t_first
                    pred += max(der.dlzs_cycles, n_g * bank_ii)
                selected = max(pred, t_first + der.dlzs_cycles + (rows - 1) * sads.ii) + lag
            lists = [sels[i][k] for i in range(n) if k < len(sels[i])]
            scan = L * L * cfg.k_max if rass else L * cfg.k_max
            start = max(rass_free, selected)
            # hw/rass.py: a cycle to start, the collection (a beat a lane and cycle: the most
            # any lane selected, one empty beat at least), a cycle to count; then the scan, the
            # marker and a cycle back: collection + scan + 4 cycles a tile
            emit = start + max([1] + [len(x) for x in lists]) + 2
            if k >= VT:
                emit = max(emit, release[k - VT])
            v_first = v_ready = emit
            order = rass_order(lists, rass)
            at = _scan_steps(cfg, [sels[i][k] if k < len(sels[i]) else [] for i in range(n)],
                             rass)
            for n_read, _ in enumerate(order):
                # a row leaves at its step of the scan (its slot, in its level's pass)
                if proj:                              # into the projection, one at a time
                    p_free = max(p_free, emit + at[n_read] + 1)
                    first_beat = v_last = p_free + X_READ_TIME + p_ii - 1
                    p_free += p_ii
                else:
                    first_beat, v_last = yield Read("v", emit + at[n_read], RW)
                v_first = first_beat if n_read == 0 else v_first
                v_ready = max(v_ready, v_last)
            rass_free = marker = emit + scan + 2
        done = []
        for i in range(n):
            if k >= len(works[i]):
                continue
            _, sel, resc = works[i][k]
            cost = (sel + resc) * M if sel else 1
            # keys go to SU-FA as their V rows arrive (ring, valid bit, feeder stage)
            lane_end[i] = max(max(lane_end[i], v_first + FEED_TIME) + cost,
                              v_ready + FEED_TIME + M)
            # dense: the tile is released once the feeder has handed its last key to SU-FA,
            # a key's work before the lane's end (matters where V's ring latency bounds)
            done.append(lane_end[i] - (M if params.dense else 0))
        release.append(max(max(done), marker) + 1)
    return max(release[-1], max(lane_end) + 1)
