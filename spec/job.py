"""The job of the memory-attached core (``memory = "axi"``): descriptor, memory layout, checks.

A job is multi-head attention over tensors in memory. For every head ``h < heads`` and query
``t < queries``, ``O[h, t] = attention(Q[h, t], K[h, :S], V[h, :S])`` with the run-time
parameters of the core's registers (``top_k``, radius, scale, dense). Row ``r`` of a tensor
``X`` of head ``h`` starts at ``X_base + h·X_head_stride + r·X_stride`` (bytes):

* Q, K and V rows hold ``d`` elements of ``elem_bytes = ceil(data_width / 8)`` bytes each,
  little-endian two's complement (the low ``data_width`` bits are used);
* O rows hold ``d`` elements of 4 bytes: the output ``O`` (``out_frac`` fraction bits)
  sign-extended to 32 bits, little-endian.

**Causal jobs** (``causal = 1``): query ``t`` sits at position ``q_start + t`` and sees the
keys ``j <= q_start + t``, so its sequence is ``min(S, q_start + t + 1)`` keys long; tiles
wholly past that are neither predicted nor attended. (Prefill of a whole sequence is
``queries = S``, ``q_start = 0``.)

**Checks at start.** Every base address and row stride must be a multiple of the bus width
in bytes (rows start on a bus word), a row stride at least one row, every address a job touches
must lie below ``2^axi_addr_width`` (no range wraps), and ``S``, ``queries`` and ``heads``
must be in range. With ``predict_keys > 1`` K is read packed (:func:`k_packed`): its row
stride must be exactly one row (``d · elem_bytes``, not a multiple of the bus width when a
bus word holds several rows), anything else is ``STRIDE``; its base and head stride stay
bus-aligned. A failed check sets :class:`JobError`'s code; the job does not start and
nothing is written. A read (``R``) or write response (``B``) of ``SLVERR``/``DECERR`` stops a
running job with the code naming the stream: no new burst is started after it (bursts
already on the bus complete), so no ``O`` row is begun after the fault, and a row longer than
one burst may be left partly written; software treats ``O`` of a failed job as invalid.

**Several cores** (``cores > 1``): :func:`split_job` cuts the job into one sub-job a core, each a
descriptor of the same form over a rectangle of heads × queries, so every core runs the
single-core job unchanged and ``O`` is the same as one core's. Heads are split first: the
``cores`` cores form ``G`` head groups, ``G`` the largest power of two that divides ``heads``
(at most ``cores``), each of ``heads / G`` consecutive heads; the ``P = cores / G`` cores of a
group split its queries into chunks of ``ceil(queries / P)`` consecutive queries (the last
chunk shorter, chunks past the end empty: those cores stay idle). With the SPLIT_QUERIES
register set there is one group (``G = 1``): every core takes a chunk of the queries of every
head, so that with the shared K stream every K row is read once for all the cores (at the
price of moving through K in step). Core ``c`` takes head group
``c // P`` and chunk ``c mod P``. Its sub-job offsets the base addresses by its first head and
first query and ``q_start`` by its first query, so causal masking is unchanged.

**Shared K stream** (the SHARED_K register, on by default): the cores of a head group run the
same heads with the same number of blocks, so they read the same K rows in the same order.
:func:`k_followers` names the cores that take those reads from the group's first core: the
core waits at each K read until every follower asks for the same one, issues it once, and
every one of them receives the beats (``bytes_k_shared`` counts them). The group then moves
through K in step.

The golden semantics of a job are per query exactly those of :func:`sim.golden.sofa_attention`
over the query's own keys (:func:`query_lengths`).

**On-demand K/V** (``kv_source = "project"``): K and V are not in memory. Instead the job
reads, per head ``h``:

* X, the token activations: row ``r`` (``d_model`` int8 bytes) at ``x_base + h·x_head_stride +
  r·x_stride`` (``x_head_stride = 0``: every head reads the same X);
* the weights (:data:`WEIGHTS`), each at its base ``+ h·w_head_stride``: ``wlz``, the LZ
  codes of W_k stored transposed, the code of ``W_k[c, m]`` in nibble ``m·d + c`` (low nibble
  first; ``d·d_model/2`` bytes); ``wk`` and ``wv``, int8 ``W_kᵀ`` and ``W_vᵀ`` row-major, byte
  ``m·d + c`` is ``W[c, m]`` (``d·d_model`` bytes each); ``bias``, int32 little-endian ``b_k``
  then ``b_v`` (``8·d`` bytes). Each is read as whole bus words from its base.

The prediction uses ``K̂ = khat_truncate(X·W̃_kᵀ, khat_shift, 8)`` in place of K; the exact rows
``K = requant(X·W_kᵀ + b_k; k_mult, k_rshift)``, ``V`` likewise, are those of
:func:`sim.ondemand.project_rows`. Checks: the X and weight bases, ``x_stride``,
``x_head_stride`` and ``w_head_stride`` on bus words, ``x_stride`` at least ``d_model``, no
range past ``2^axi_addr_width``; the K and V registers are not used (nor checked).
"""

import enum
from dataclasses import dataclass, fields

from spec.validate import ConfigError


__all__ = ["JobError", "JobDescriptor", "TENSORS", "elem_bytes", "row_bytes", "out_row_bytes",
           "bus_bytes", "row_beats", "query_lengths", "tensor_end", "job_end", "check_job",
           "OUT_ELEM_BYTES", "MAX_QUERIES", "MAX_HEADS", "core_grid", "core_shares", "split_job",
           "k_followers", "k_packed", "k_read_beats", "k_block_bytes", "WEIGHTS",
           "job_tensors", "projects", "x_row_beats", "weight_bytes", "weight_beats",
           "weight_address", "PROJ_MULT_BITS", "PROJ_RSHIFT_MAX", "khat_shift_max"]


#: Bytes of one O element in memory.
OUT_ELEM_BYTES = 4
#: Largest ``queries`` and ``heads`` of one job (the widths of their registers).
MAX_QUERIES = (1 << 24) - 1
MAX_HEADS = (1 << 16) - 1
#: The tensors of a job, in the order of their registers.
TENSORS = ("q", "k", "v", "o")
#: The weights of an on-demand job (``kv_source = "project"``), in the order of their registers.
WEIGHTS = ("wlz", "wk", "wv", "bias")
#: The projection's requantisation: ``mult < 2^PROJ_MULT_BITS``, ``1 ≤ rshift ≤ PROJ_RSHIFT_MAX``.
PROJ_MULT_BITS = 16
PROJ_RSHIFT_MAX = 48


class JobError(enum.IntEnum):
    """``JOB_ERROR`` codes: why the last job did not start, or stopped."""
    NONE = 0
    SEQ_LEN = 1        # S = 0 or S > max_seq_len
    QUERIES = 2        # queries = 0
    HEADS = 3          # heads = 0
    ALIGN = 4          # a base address or row stride is not a multiple of the bus width
    STRIDE = 5         # a row stride is shorter than a row (K packed: is not one row)
    RANGE = 6          # an address range wraps past 2^axi_addr_width
    READ_Q = 7         # SLVERR/DECERR on a read of Q (R channel)
    READ_K = 8         # ... of K
    READ_V = 9         # ... of V
    WRITE_O = 10       # SLVERR/DECERR on a write of O (B channel)
    READ_X = 11        # SLVERR/DECERR on a read of X (on-demand K/V)
    READ_W = 12        # ... of the weights


def elem_bytes(cfg):
    """Bytes of one Q/K/V element in memory: ``ceil(data_width / 8)``."""
    return -(-cfg.data_width // 8)


def row_bytes(cfg):
    """Bytes of one Q, K or V row."""
    return cfg.d * elem_bytes(cfg)


def out_row_bytes(cfg):
    """Bytes of one O row."""
    return cfg.d * OUT_ELEM_BYTES


def bus_bytes(cfg):
    return cfg.axi_data_width // 8


def row_beats(cfg, out=False):
    """Bus beats of one row (the row's last beat may be partly used)."""
    n = out_row_bytes(cfg) if out else row_bytes(cfg)
    return -(-n // bus_bytes(cfg))


@dataclass(frozen=True)
class JobDescriptor:
    """What the registers of a job say (addresses and strides in bytes)."""
    seq_len: int
    queries: int
    heads: int = 1
    causal: bool = False
    q_start: int = 0
    q_base: int = 0
    q_stride: int = 0
    q_head_stride: int = 0
    k_base: int = 0
    k_stride: int = 0
    k_head_stride: int = 0
    v_base: int = 0
    v_stride: int = 0
    v_head_stride: int = 0
    o_base: int = 0
    o_stride: int = 0
    o_head_stride: int = 0
    x_base: int = 0
    x_stride: int = 0
    x_head_stride: int = 0
    wlz_base: int = 0
    wk_base: int = 0
    wv_base: int = 0
    bias_base: int = 0
    w_head_stride: int = 0
    khat_shift: int = 0
    k_mult: int = 1
    k_rshift: int = 1
    v_mult: int = 1
    v_rshift: int = 1

    def replace(self, **changes):
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return JobDescriptor(**values)

    def rows(self, tensor):
        """Rows of ``tensor`` a head has (``queries`` for Q and O, ``S`` for K, V and X)."""
        return self.queries if tensor in ("q", "o") else self.seq_len

    def address(self, tensor, head, row):
        return (getattr(self, f"{tensor}_base") + head * getattr(self, f"{tensor}_head_stride")
                + row * getattr(self, f"{tensor}_stride"))


def khat_shift_max(cfg):
    """The largest useful ``khat_shift`` (register KHAT_SHIFT): the bits of phase 1.1's
    widest sum ``d_model·127·64`` and a sign (:class:`hw.khat.KhatPredictor`'s
    accumulator)."""
    return (cfg.d_model * 127 * 64).bit_length() + 1


def projects(cfg):
    """The core projects K and V on chip (``kv_source = "project"``)."""
    return cfg.kv_source == "project"


def job_tensors(cfg):
    """The row tensors a job of ``cfg`` reads or writes: Q, K, V, O, or Q, X, O (projecting)."""
    return ("q", "x", "o") if projects(cfg) else TENSORS


def x_row_beats(cfg):
    """Bus beats of one X row (``d_model`` bytes)."""
    return -(-cfg.d_model // bus_bytes(cfg))


def weight_bytes(cfg, w):
    """Bytes of weight tensor ``w`` (:data:`WEIGHTS`) of one head."""
    return {"wlz": cfg.d * cfg.d_model // 2, "wk": cfg.d * cfg.d_model,
            "wv": cfg.d * cfg.d_model, "bias": 8 * cfg.d}[w]


def weight_beats(cfg, w):
    """Bus beats of a read of weight tensor ``w`` of one head (whole words from its base)."""
    return -(-weight_bytes(cfg, w) // bus_bytes(cfg))


def weight_address(job, w, head):
    return getattr(job, f"{w}_base") + head * job.w_head_stride


def k_packed(cfg):
    """K is read packed: ``memory = "axi"`` with ``predict_keys > 1``. A K tile of ``n`` rows
    is then one read of :func:`k_read_beats` beats from the tile's first row (a tile starts
    on a bus word, spec.config), the job's K stride is exactly :func:`row_bytes`, and
    :class:`hw.kgroup.KeyGrouper` turns the beats into words of ``predict_keys`` rows."""
    return cfg.memory == "axi" and cfg.predict_keys > 1


def k_read_beats(cfg, rows):
    """Bus beats of a K read of ``rows`` consecutive rows from a tile's start: ``rows ·
    row_beats`` (rows padded to whole beats), packed ``ceil(rows · row_bytes / bus)``."""
    if k_packed(cfg):
        return -(-rows * row_bytes(cfg) // bus_bytes(cfg))
    return rows * row_beats(cfg)


def k_block_bytes(cfg, span):
    """Bytes of K a block of ``span`` keys reads (tile by tile)."""
    B = cfg.block_size
    beats = (span // B) * k_read_beats(cfg, B) + k_read_beats(cfg, span % B)
    return beats * bus_bytes(cfg)


def query_lengths(job, cfg=None):
    """Keys each query of a head sees: ``S``, or ``min(S, q_start + t + 1)`` when causal."""
    S = job.seq_len
    if not job.causal:
        return [S] * job.queries
    return [min(S, job.q_start + t + 1) for t in range(job.queries)]


def tensor_end(cfg, job, tensor):
    """The first byte after ``tensor``'s last row (last head, last row; strides are never
    negative, so no other row ends later); a weight tensor's after its last head's whole
    words."""
    if tensor in WEIGHTS:
        bus = bus_bytes(cfg)
        return weight_address(job, tensor, job.heads - 1) + weight_beats(cfg, tensor) * bus
    size = {"o": out_row_bytes(cfg), "x": cfg.d_model}.get(tensor, row_bytes(cfg))
    end = job.address(tensor, job.heads - 1, job.rows(tensor) - 1) + size
    if tensor == "k" and k_packed(cfg):       # whole beats are read (the same range check:
        bus = bus_bytes(cfg)                  # 2^axi_addr_width is a multiple of the bus)
        end = -(-end // bus) * bus
    return end


def job_end(cfg, job):
    """The first byte after every row of the job's tensors (Q, K, V and O; projecting Q, X,
    the weights and O)."""
    extra = WEIGHTS if projects(cfg) else ()
    return max(tensor_end(cfg, job, t) for t in job_tensors(cfg) + extra)


def check_job(cfg, job):
    """The :class:`JobError` of a descriptor (``NONE`` when it may start), in the order the
    hardware checks: S, queries, heads, alignment, strides, ranges."""
    if not 1 <= job.seq_len <= cfg.max_seq_len:
        return JobError.SEQ_LEN
    if job.queries < 1:
        return JobError.QUERIES
    if job.heads < 1:
        return JobError.HEADS
    bus = bus_bytes(cfg)
    packed = k_packed(cfg)
    tensors = job_tensors(cfg)
    weights = WEIGHTS if projects(cfg) else ()
    for t in tensors:
        for part in ("base", "stride", "head_stride"):
            if getattr(job, f"{t}_{part}") % bus and not (packed and t == "k"
                                                        and part == "stride"):
                return JobError.ALIGN
    if any(getattr(job, f"{w}_base") % bus for w in weights) or \
            (weights and job.w_head_stride % bus):
        return JobError.ALIGN
    for t in tensors:
        need = {"o": out_row_bytes(cfg), "x": cfg.d_model}.get(t, row_bytes(cfg))
        stride = getattr(job, f"{t}_stride")
        if stride < need or (packed and t == "k" and stride != need):
            return JobError.STRIDE
    top = 1 << cfg.axi_addr_width
    for t in tensors + weights:
        if tensor_end(cfg, job, t) > top:
            return JobError.RANGE
    return JobError.NONE


def core_grid(heads, cores, split_queries=False):
    """``(G, P)``: head groups and cores a group (:func:`split_job`); ``cores`` a power of
    two. ``split_queries`` (the SPLIT_QUERIES register): one group, every core a chunk of
    every head's queries."""
    if cores < 1 or cores & (cores - 1) or heads < 1:
        raise ValueError(f"core_grid: heads = {heads}, cores = {cores}")
    if split_queries:
        return 1, cores
    G = min(cores, heads & -heads)           # the lowest set bit: largest power-of-two divisor
    return G, cores // G


def core_shares(job, cores, split_queries=False):
    """Each core's share of a job, in core order: ``(first head, heads, first query,
    queries)``, or None for a core with no queries (see the module docstring)."""
    G, P = core_grid(job.heads, cores, split_queries)
    hc = job.heads // G
    chunk = -(-job.queries // P)
    out = []
    for c in range(cores):
        g, p = divmod(c, P)
        t0 = p * chunk
        n = min(chunk, job.queries - t0)
        out.append((g * hc, hc, t0, n) if n > 0 else None)
    return out


def split_job(job, cores, split_queries=False):
    """The sub-job of each of ``cores`` cores, in core order: a :class:`JobDescriptor`, or
    None for a core with no queries (its share by :func:`core_shares`)."""
    out = []
    for share in core_shares(job, cores, split_queries):
        if share is None:
            out.append(None)
            continue
        h0, hc, t0, n = share
        changes = {"heads": hc, "queries": n, "q_start": job.q_start + t0}
        for t in TENSORS:
            base = getattr(job, f"{t}_base") + h0 * getattr(job, f"{t}_head_stride")
            if t in ("q", "o"):
                base += t0 * getattr(job, f"{t}_stride")
            changes[f"{t}_base"] = base
        out.append(job.replace(**changes))
    return out


def k_followers(job, cores, shared_k=True, split_queries=False):
    """Which cores take the prediction K stream from their head group's first core (the
    *leader*, core ``c - c mod P``) instead of reading it: with ``shared_k``, in a job that is
    not causal, every core of a group other than the leader whose chunk is whole (as long as
    the leader's: the same blocks, hence the same K reads in the same order). A short last
    chunk, and every core of a causal job (its keys depend on its queries), reads its own."""
    subs = split_job(job, cores, split_queries)
    G, P = core_grid(job.heads, cores, split_queries)
    chunk = -(-job.queries // P)
    return [bool(shared_k and not job.causal and sub is not None and c % P != 0
                 and sub.queries == chunk) for c, sub in enumerate(subs)]


def validate_job(cfg, job):
    """:func:`check_job` as an exception, for host code preparing a job."""
    err = check_job(cfg, job)
    if err != JobError.NONE:
        raise ConfigError(f"job descriptor: {err.name} ({err.value}); see spec.job")
    return job
