"""Jobs of the memory-attached core: their golden outputs, their memory image, their traffic.

A job (:mod:`spec.job`) is multi-head, optionally causal attention over tensors in memory.

* :func:`golden_job`: ``O[h, t]`` of every head and query, bit-exact: each query is
  :func:`sim.golden.sofa_attention` over its own keys (``spec.job.query_lengths``), so causal
  masking adds no new arithmetic.
* :func:`memory_image` / :func:`read_outputs`: the bytes a job's tensors occupy in memory under
  a descriptor, and ``O`` read back from memory (the test benches load the image into an AXI
  memory model).
* :func:`traffic`: the bytes the core moves for a job, stream by stream, with RASS (each V row a
  lane block needs is read once per block) or without it (each lane reads its own), and the
  comparisons the benchmark reports: dense FlashAttention with the same buffers and the lower
  bound (every distinct row a block needs, read once). Counted in whole bus words, as the AXI
  bus moves them.

Blocks: the queries of a head form blocks of ``q_lanes`` consecutive queries (the last one may
be short); a block streams K once for all its lanes (prediction and, from the on-chip tile
buffer, attention) and fetches the V rows its lanes select.
"""

from dataclasses import dataclass, replace

import numpy as np

from sim.golden import sofa_attention
from spec.config import ConfigError
from spec.job import (OUT_ELEM_BYTES, TENSORS, bus_bytes, core_shares, elem_bytes,
                      k_block_bytes, k_followers, k_packed, query_lengths, row_beats,
                      row_bytes, split_job)
from spec.regmap import expected_counters, query_groups


__all__ = ["JobResult", "golden_job", "blocks", "memory_image", "read_outputs", "traffic",
           "layout_job", "rass_order", "fetch_schedule", "core_parts", "job_counters"]


@dataclass
class JobResult:
    """Outputs of a job.

    Attributes
    ----------
    out : ndarray [heads, queries, d]
        ``O`` with ``out_frac`` fraction bits.
    lengths : list of int
        Keys each query sees (the same for every head).
    selections : list of list of list of list of int
        ``[head][query][tile]``: the selected key indices in SADS order (sparse mode), or
        None (dense mode).
    stats : dict
        The golden model's event totals over the job (``GoldenResult.counters()`` summed).
    """
    out: np.ndarray
    lengths: list
    selections: list
    stats: dict


def golden_job(cfg, params, job, Q, K, V, kpred=None):
    """``O`` of a job: ``Q[h, t]`` against ``K[h, :L_t]``, ``V[h, :L_t]`` with ``L_t`` from
    :func:`spec.job.query_lengths`; ``params.seq_len`` must equal ``job.seq_len``. ``kpred``
    ``[heads, S, d]``: the keys the prediction uses instead of K (on-demand K/V's K̂)."""
    if params.seq_len != job.seq_len:
        raise ConfigError(f"params.seq_len = {params.seq_len} differs from the job's "
                          f"seq_len = {job.seq_len}")
    Q, K, V = (np.asarray(a, dtype=np.int64) for a in (Q, K, V))
    H, T = job.heads, job.queries
    for name, a, rows in (("Q", Q, T), ("K", K, job.seq_len), ("V", V, job.seq_len)):
        if a.shape != (H, rows, cfg.d):
            raise ConfigError(f"{name} must have shape [{H}, {rows}, {cfg.d}], got "
                              f"{list(a.shape)}")
    lengths = query_lengths(job)
    out = np.zeros((H, T, cfg.d), dtype=np.int64)
    selections = None if params.dense else [[None] * T for _ in range(H)]
    stats = {}
    # Queries of the same length share one golden call (every row is independent).
    for L in sorted(set(lengths)):
        ts = [t for t in range(T) if lengths[t] == L]
        p = replace(params, seq_len=L)
        for h in range(H):
            res = sofa_attention(Q[h, ts], K[h, :L], V[h, :L], cfg, p,
                                 kpred=None if kpred is None else kpred[h, :L])
            out[h, ts] = res.out
            for k, v in res.counters().items():
                stats[k] = stats.get(k, 0) + v
            if selections is not None:
                for i, t in enumerate(ts):
                    selections[h][t] = [tile.indices for tile in res.selection[i]]
    return JobResult(out=out, lengths=lengths, selections=selections, stats=stats)


def blocks(cfg, job):
    """``(first query, queries)`` of each block of a head."""
    return [(b, min(cfg.q_lanes, job.queries - b)) for b in range(0, job.queries, cfg.q_lanes)]


def layout_job(cfg, job, *, base=0, gap=0):
    """``job`` with packed tensors laid out one after the other from ``base``: rows
    ``ceil(row / bus)`` words apart (plus ``gap`` extra bus words, to test strides longer
    than a row), heads one after the other, Q, K, V, O in that order. Packed K
    (:func:`spec.job.k_packed`): rows one row apart, each head from a bus word (``gap``
    extra words between heads)."""
    bus = bus_bytes(cfg)
    changes, addr = {}, base
    for t in TENSORS:
        stride = (row_beats(cfg, out=t == "o") + gap) * bus
        rows = job.queries if t in ("q", "o") else job.seq_len
        head = rows * stride
        if t == "k" and k_packed(cfg):       # K rows one row apart, heads on a bus word
            stride = row_bytes(cfg)
            head = (-(-rows * stride // bus) + gap) * bus
        changes.update({f"{t}_base": addr, f"{t}_stride": stride,
                        f"{t}_head_stride": head})
        addr += job.heads * head
    return job.replace(**changes)


def _row_bytes_of(values, nbytes):
    """Elements as little-endian two's complement of ``nbytes`` bytes each."""
    mask = (1 << (8 * nbytes)) - 1
    return b"".join((int(v) & mask).to_bytes(nbytes, "little") for v in values)


def memory_image(cfg, job, Q, K, V):
    """``{address: bytes}`` of every Q, K and V row of the job (O is written by the core)."""
    eb = elem_bytes(cfg)
    image = {}
    for name, arr in (("q", Q), ("k", K), ("v", V)):
        arr = np.asarray(arr)
        for h in range(job.heads):
            for r in range(arr.shape[1]):
                image[job.address(name, h, r)] = _row_bytes_of(arr[h, r], eb)
    return image


def read_outputs(cfg, job, read):
    """``O[h, t]`` from memory: ``read(address, length) -> bytes``."""
    out = np.zeros((job.heads, job.queries, cfg.d), dtype=np.int64)
    n = cfg.d * OUT_ELEM_BYTES
    for h in range(job.heads):
        for t in range(job.queries):
            raw = read(job.address("o", h, t), n)
            out[h, t] = [int.from_bytes(raw[i:i + OUT_ELEM_BYTES], "little", signed=True)
                         for i in range(0, n, OUT_ELEM_BYTES)]
    return out


def traffic(cfg, params, job, result):
    """Bytes a job moves over the bus, per stream, and the benchmark's comparisons.

    Returns a dict: ``q``, ``k`` (K rows streamed once per block for prediction and
    attention), ``v`` and ``v_no_rass`` (V rows read with and without reuse across the lanes
    of a block), ``o``; the totals ``dram_bytes`` (with RASS), ``dram_bytes_no_rass``,
    ``dram_bytes_dense`` (dense FlashAttention with the same buffers: K and V of every key a
    block sees) and ``dram_lower_bound`` (every distinct row a block needs, once).
    """
    bus = bus_bytes(cfg)
    row = row_beats(cfg) * bus
    orow = row_beats(cfg, out=True) * bus
    lengths = result.lengths
    out = {"q": job.heads * job.queries * row, "o": job.heads * job.queries * orow,
           "k": 0, "v": 0, "v_no_rass": 0, "v_dense": 0}
    for h in range(job.heads):
        for first, n in blocks(cfg, job):
            span = max(lengths[first:first + n])
            out["k"] += k_block_bytes(cfg, span)
            out["v_dense"] += span * row
            if params.dense:
                out["v"] += span * row
                out["v_no_rass"] += span * row
                continue
            union = set()
            for t in range(first, first + n):
                for tile in result.selections[h][t]:
                    union.update(tile)
                    out["v_no_rass"] += len(tile) * row
            out["v"] += len(union) * row
    fixed = out["q"] + out["o"] + out["k"]
    out["dram_bytes"] = fixed + out["v"]
    out["dram_bytes_no_rass"] = fixed + out["v_no_rass"]
    out["dram_bytes_dense"] = fixed + out["v_dense"]
    out["dram_lower_bound"] = fixed + out["v"]
    return out


def rass_order(lists, rass=True):
    """The V rows one tile fetches, in order, from the selections (SADS order) of the block's
    active lanes, lane by lane: with RASS each distinct row once, the most shared first (ties
    in lane-then-rank order); without, every lane's rows in lane order (:class:`hw.rass
    .RassScheduler`)."""
    entries = [j for lst in lists for j in lst]
    if not rass:
        return entries
    count = {j: entries.count(j) for j in entries}
    order = []
    for level in range(len(lists), 0, -1):
        for s, j in enumerate(entries):
            if count[j] == level and j not in entries[:s]:
                order.append(j)
    return order


def fetch_schedule(cfg, job, result, rass=True):
    """``[(head, key index)]`` of every V row a sparse job fetches, in the order the core
    issues the reads: head by head, block by block, tile by tile, :func:`rass_order` within a
    tile."""
    out = []
    lengths = result.lengths
    for h in range(job.heads):
        for first, n in blocks(cfg, job):
            lanes = list(range(first, first + n))
            tiles = max(-(-lengths[t] // cfg.block_size) for t in lanes)
            for tile in range(tiles):
                lists = [result.selections[h][t][tile] for t in lanes
                         if tile < len(result.selections[h][t])]
                out += [(h, j) for j in rass_order(lists, rass)]
    return out


def core_parts(cfg, job, Q, K, V, split_queries=False):
    """The cores' shares of a job (:func:`spec.job.split_job` with ``cfg.cores``):
    ``[(core, sub-job, first head, first query, (Q, K, V) of the sub-job)]`` for the cores
    with work."""
    out = []
    shares = core_shares(job, cfg.cores, split_queries)
    for c, sub in enumerate(split_job(job, cfg.cores, split_queries)):
        if sub is None:
            continue
        h0, _, t0, _ = shares[c]
        part = (np.asarray(Q)[h0:h0 + sub.heads, t0:t0 + sub.queries],
                np.asarray(K)[h0:h0 + sub.heads], np.asarray(V)[h0:h0 + sub.heads])
        out.append((c, sub, h0, t0, part))
    return out


def job_counters(cfg, params, job, Q, K, V, *, rass=True, shared_k=True, split_queries=False,
                 wrap=True):
    """The exact counters after a job: ``(totals, {core: counters})``, each core's from its
    sub-job (:func:`core_parts`; blocks of ``q_lanes`` form within a core's queries; a K
    follower's K bytes, :func:`spec.job.k_followers`, are also its ``bytes_k_shared``), the
    totals their sums (wrapped to ``counter_width`` as the registers read with ``wrap``)."""
    per_core, totals = {}, {}
    follows = k_followers(job, cfg.cores, shared_k, split_queries)
    for c, sub, _, _, part in core_parts(cfg, job, Q, K, V, split_queries):
        r = golden_job(cfg, params, sub, *part)
        calls = [n for _ in range(sub.heads) for n in query_groups(sub.queries, cfg.q_lanes)]
        tr = traffic(cfg, params, sub, r)
        tr["k_shared"] = tr["k"] if follows[c] else 0
        want = expected_counters(cfg, params, r.stats, calls=calls,
                                 lengths=r.lengths * sub.heads, traffic=tr, rass=rass,
                                 wrap=False)
        per_core[c] = want
        for n, v in want.items():
            totals[n] = totals.get(n, 0) + v
    if wrap:
        mask = (1 << cfg.counter_width) - 1
        totals = {n: v & mask for n, v in totals.items()}
        per_core = {c: {n: v & mask for n, v in d.items()} for c, d in per_core.items()}
    return totals, per_core
