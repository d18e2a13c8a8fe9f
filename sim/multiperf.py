"""Cycle and traffic model of several memory-attached cores on one memory (``cores > 1``), so
that scaling with cores and memory bandwidth can be projected without simulating it.

The job is cut by :func:`spec.job.split_job`: heads into ``G`` groups, the queries of a group
into ``P = cores / G`` chunks (:func:`spec.job.core_grid`). Checked against the RTL in
``tb/test_multiperf_rtl.py`` (within 5 %). Assumptions:

* **each core** runs its sub-job exactly as one core does (:func:`sim.axiperf.core_steps`,
  the single-core model, unchanged);
* **one read channel** (:class:`sim.axiperf.Bus`) of ``bytes_per_cycle`` and ``latency``
  carries every core's reads. The reads are placed in the order of the cycle they are issued,
  over all cores (a heap; ties to the lower core), so a read waits behind the beats other
  cores put on the bus before it: first come, first served, which is what a round-robin
  arbiter gives when every core has reads waiting. The arbiter adds :data:`ARB_TIME` cycles
  to each read;
* with several cores a K tile's beats may lie between other cores' bursts, so prediction
  takes a K row only once its last beat is there (``Bus.read(row=…)``); with one core the
  single-core model's pace is kept, so ``cores = 1`` is :func:`sim.axiperf.axi_core_cycles`
  exactly;
* **O writes** go over the write channel, which the model does not share (O is 256 bytes a
  query at the ``axi`` preset against about 190,000 read);
* every core starts after the check at start and the split of the job
  (:func:`spec.timing.job_split_cycles`); the job is done :data:`DONE_TIME` cycles after its
  slowest core; idle cores (a chunk past the last query) take no part;
* **shared K** (``shared_k=True``, the SHARED_K register): the K followers of
  :func:`spec.job.k_followers` (the cores of a head group after its first, the *leader*, whose
  chunk is whole, in a job that is not causal) run the leader's blocks, so they ask for the
  same K reads in the same order. Each such read is issued once, when the leader and every
  follower have asked for it (each core's ring slot free), and all of them get its beats at
  the same time: the team advances through K in lockstep. Other cores read their own K.
  ``split_queries=True`` (the SPLIT_QUERIES register) makes one group of all the cores.

``private=True`` gives every core a bus of its own at ``bytes_per_cycle`` (a shared K read goes
on its leader's): the memory taken out of the picture, which :func:`bound_of` compares
against.
"""

import heapq
from dataclasses import dataclass

from sim.axiperf import START_TIME, Bus, core_steps, job_works
from sim.jobs import JobResult, traffic
from spec.config import CORES, ConfigError
from spec.job import (bus_bytes, core_grid, core_shares, k_followers, query_lengths,
                      row_beats, split_job)
from spec.timing import job_split_cycles
from spec.validate import check_bool, check_float, check_int


__all__ = ["multi_core_cycles", "multi_traffic", "split_result", "check_cores", "bound_of",
           "CorePart", "MultiBreakdown", "ARB_TIME", "DONE_TIME", "BUSY_BOUND",
           "BOUND_SLACK"]


#: Cycles the AXI arbiter adds to a read's command path (several cores only): none, it is
#: combinational (``hw.axiarb.AxiArbiter.latency``).
ARB_TIME = 0
#: Cycles from the slowest core's done to the job's done (several cores only): the core's done
#: follows its engines' as it follows one engine's.
DONE_TIME = 0
#: :func:`bound_of`: memory-bound when the shared bus is busy more than this share of the
#: job, or the job takes more than ``1 + BOUND_SLACK`` times its cycles with private buses.
BUSY_BOUND = 0.9
BOUND_SLACK = 0.05


@dataclass
class CorePart:
    """One working core's share of a job.

    Attributes
    ----------
    core, group : int
        The core's index and its head group.
    job : spec.job.JobDescriptor
        Its sub-job (:func:`spec.job.split_job`).
    head, query : int
        Its first head and first query in the whole job.
    result : sim.jobs.JobResult
        The golden job restricted to its heads and queries (``stats`` empty).
    works : list or None
        :func:`sim.axiperf.job_works` restricted likewise, when given.
    leader : int or None
        The core whose K stream this core takes (a K follower), or None: it reads its own.
    """
    core: int
    group: int
    job: object
    head: int
    query: int
    result: JobResult
    works: list = None
    leader: int = None


@dataclass
class MultiBreakdown:
    """Where a multi-core job's cycles go."""
    total: int
    ends: list            # per core: the cycle it is done, None when idle
    read_beats: int       # beats over the read bus (all buses with private=True)
    bus_busy: float       # cycles the shared bus carries data (the busiest with private=True)

    @property
    def busy_fraction(self):
        return self.bus_busy / self.total if self.total else 0.0


def check_cores(cores):
    """``cores`` as one of :data:`spec.config.CORES`; :class:`ConfigError` otherwise."""
    check_int("cores", cores, 1)
    if cores not in CORES:
        raise ConfigError(f"cores = {cores} must be a power of two: "
                          f"{', '.join(map(str, CORES))}")
    return cores


def split_result(job, result, cores, works=None, *, split_queries=False, shared_k=False):
    """The :class:`CorePart` of every core that has work, in core order
    (:func:`spec.job.split_job` with ``split_queries``; the K followers of
    :func:`spec.job.k_followers` with ``shared_k``)."""
    check_cores(cores)
    check_bool("split_queries", split_queries)
    check_bool("shared_k", shared_k)
    _, P = core_grid(job.heads, cores, split_queries)
    follows = k_followers(job, cores, shared_k, split_queries)
    parts = []
    shares = core_shares(job, cores, split_queries)
    for c, sub in enumerate(split_job(job, cores, split_queries)):
        if sub is None:
            continue
        g = c // P
        h0, _, t0, _ = shares[c]
        heads, queries = range(h0, h0 + sub.heads), slice(t0, t0 + sub.queries)
        sels = None if result.selections is None else \
            [result.selections[h][queries] for h in heads]
        lengths = query_lengths(sub)
        assert lengths == result.lengths[queries], "split_job moved a query's keys"
        res = JobResult(out=result.out[h0:h0 + sub.heads, queries], lengths=lengths,
                        selections=sels, stats={})
        mine = None if works is None else [works[h][queries] for h in heads]
        parts.append(CorePart(core=c, group=g, job=sub, head=h0, query=t0, result=res,
                              works=mine, leader=c - c % P if follows[c] else None))
    return parts


def _bandwidth(cfg, bytes_per_cycle):
    """Bytes a cycle of the bus: the bus width by default, at most the bus width."""
    BB = bus_bytes(cfg)
    if bytes_per_cycle is None:
        return BB
    return min(check_float("bytes_per_cycle", bytes_per_cycle, 0, lo_open=True), BB)


def multi_core_cycles(cfg, params, job, result, tensors=None, *, cores=None,
                      bytes_per_cycle=None, latency=0, rass=True, shared_k=False,
                      split_queries=False, private=False, breakdown=False, works=None):
    """Predicted busy cycles of a job on ``cores`` cores sharing one memory (start to done).

    Parameters
    ----------
    cfg, params, job, result, tensors, bytes_per_cycle, latency, rass, works :
        As for :func:`sim.axiperf.axi_core_cycles`; ``cfg`` is one core's configuration and
        the bandwidth is that of the shared bus.
    cores : int, optional
        1, 2, 4, 8 or 16; ``cfg.cores`` by default.
    shared_k : bool
        The SHARED_K register: K followers take their K from their leader (see the module
        docstring).
    split_queries : bool
        The SPLIT_QUERIES register: one head group, every core a chunk of every head.
    private : bool
        Every core has a bus of its own (the reference of :func:`bound_of`).
    breakdown : bool
        Return a :class:`MultiBreakdown` instead of the cycles.
    """
    cores = check_cores(cfg.cores if cores is None else cores)
    check_bool("private", private)
    check_int("latency", latency, 0)
    BB = bus_bytes(cfg)
    beat_time = BB / _bandwidth(cfg, bytes_per_cycle)
    works = job_works(cfg, params, job, tensors) if works is None else works
    parts = split_result(job, result, cores, works, split_queries=split_queries,
                         shared_k=shared_k)
    buses = [Bus(beat_time, latency) for _ in (parts if private else parts[:1])]
    many = cores > 1
    arb, row = (ARB_TIME, row_beats(cfg)) if many else (0, None)
    # the check at start, then the split of the job (several cores), then every core at once
    start = START_TIME + job_split_cycles(cores)
    steps = [core_steps(cfg, params, p.job, p.result.selections, p.works, beat_time=beat_time,
                        latency=latency, rass=rass, start=start) for p in parts]
    # a leader and its K followers: the same blocks, so the same K reads in the same order
    index = {p.core: i for i, p in enumerate(parts)}
    lead = {i: index[p.leader] for i, p in enumerate(parts) if p.leader is not None}
    team = {}
    for i, ld in lead.items():
        team.setdefault(ld, 1)
        team[ld] += 1
    lead.update((ld, ld) for ld in team)
    ends = [None] * len(parts)
    heap, waiting = [], {}

    def advance(i, answer):
        try:
            req = steps[i].send(answer)
        except StopIteration as stop:
            ends[i] = stop.value
            return
        heapq.heappush(heap, (req.t, i, req))

    def serve(i, t, beats, stream):
        return buses[i if private else 0].read(t + arb, beats, row if stream == "k" else None)

    for i in range(len(parts)):
        advance(i, None)
    while heap:
        t, i, req = heapq.heappop(heap)
        if req.stream != "k" or i not in lead:
            advance(i, serve(i, t, req.beats, req.stream))
            continue
        # one read for the team, once every one of them has asked for it (its slot free)
        key = (lead[i], req.step)
        waiting.setdefault(key, []).append((i, req))
        if len(waiting[key]) == team[lead[i]]:
            asked = waiting.pop(key)
            answer = serve(lead[i], max(r.t for _, r in asked),
                           max(r.beats for _, r in asked), "k")
            for m, _ in asked:
                advance(m, answer)
    assert not waiting, "a leader's K read never had all its followers"
    total = round(max(ends) + (DONE_TIME if many else 0))
    if breakdown:
        per = [None] * cores
        for p, end in zip(parts, ends):
            per[p.core] = round(end)
        return MultiBreakdown(total=total, ends=per, read_beats=sum(b.beats for b in buses),
                              bus_busy=max(b.busy for b in buses))
    return total


def bound_of(cycles, private_cycles, busy_fraction):
    """``"memory"`` when the shared bus is busy more than :data:`BUSY_BOUND` of the job or the
    job takes more than ``1 + BOUND_SLACK`` times ``private_cycles`` (the same cores with a
    bus each, :func:`multi_core_cycles` with ``private=True``); ``"compute"`` otherwise."""
    if busy_fraction > BUSY_BOUND or cycles > (1 + BOUND_SLACK) * private_cycles:
        return "memory"
    return "compute"


def multi_traffic(cfg, params, job, result, cores=None, *, shared_k=False,
                  split_queries=False):
    """Bytes a job moves on ``cores`` cores: :func:`sim.jobs.traffic` of every core's sub-job,
    summed (same keys). With ``shared_k`` the K followers' K comes from their leaders' reads:
    ``k`` and every total drop by it, and ``k_saved`` says how much (the RTL's
    ``bytes_k_shared`` total; ``bytes_k`` is ``k + k_saved``)."""
    cores = check_cores(cfg.cores if cores is None else cores)
    out = {"k_saved": 0}
    for p in split_result(job, result, cores, split_queries=split_queries,
                          shared_k=shared_k):
        for key, value in traffic(cfg, params, p.job, p.result).items():
            out[key] = out.get(key, 0) + value
            if key == "k" and p.leader is not None:
                out["k_saved"] += value
    out["k"] -= out["k_saved"]
    for key in ("dram_bytes", "dram_bytes_no_rass", "dram_bytes_dense", "dram_lower_bound"):
        out[key] -= out["k_saved"]
    return out
