"""The run-time contract of ``sofa_top``: its register map as data.

Every address, width, access rule, reset value, legal range and counter meaning is written here
once. The RTL (:class:`hw.top.SofaCore`) builds its register file from it, the host link and the
simulated board (:mod:`gen.host`) check and model it from it, the tests walk it, and
``sofa verilog`` exports it as SystemRDL, a C header and documentation (:mod:`gen.regs`).

Registers
---------
The register port is 32 bits wide, one word per address. Parameter registers (``access =
"rw"``) take effect at once; a write while the core is busy, or of a value outside
:meth:`Register.legal`, is ignored and sets the error flag with the register's address in
``ERROR_ADDR`` (nothing is clamped). A write to an address that is not a writable register
(a read-only register, a counter, an unused address) is ignored the same way.

A parameter wider than 32 bits (the radius, at large ``d`` and ``data_width``) is split: its low word
at its own address, the bits above in a ``_HI`` register (:attr:`Register.high`). A write of
the ``_HI`` register stages the high bits; the next write of the low word applies the whole
value (checked as one). Reads return the low word and the staged high bits.

Per-core blocks
---------------
With ``cores > 1`` the registers above are shared (one job, split across the cores by
:func:`spec.job.split_job`) and the counters from :data:`COUNTER_BASE` are the totals over the
cores. Core ``c`` has a read-only block of :data:`CORE_WORDS` words at ``CORE_BASE + c ·
CORE_WORDS``: :data:`CORE_REGS` (its state and the sub-job it was given), then from
:data:`CORE_COUNTER_OFFSET` its own counters in the order of the totals.

Counters
--------
From :data:`COUNTER_BASE`, ``counter_width`` bits each (wrapping; none with ``counter_width =
0``, when they read 0), cleared by writing bit 0 of ``STATUS``. A counter is ``exact`` (its value
after a query follows from the query's shape and the golden model's event counts:
:func:`expected_counters`) or ``timing`` (it counts cycles; the cycle model :mod:`sim.perf`
estimates ``busy_cycles``).
"""

import enum
from dataclasses import dataclass

from spec.job import (MAX_HEADS, MAX_QUERIES, PROJ_MULT_BITS, PROJ_RSHIFT_MAX, TENSORS,
                      WEIGHTS, khat_shift_max, projects)


__all__ = ["Register", "Counter", "REGISTERS", "COUNTERS", "COUNTER_BASE", "N_REGS", "Reg",
           "WORD_BITS", "registers", "register", "counter_names", "exact_counters",
           "parameter_writes", "register_writes", "job_writes", "counters",
           "address_words",
           "expected_counters", "query_groups", "register_map", "parameter_value",
           "reset_values", "ADAPT_MASS_FRAC", "CORE_BASE", "CORE_WORDS", "CORE_COUNTER_OFFSET",
           "CORE_REGS", "core_address", "lite_addr_width", "PROJECT_COUNTER_BASE"]


#: Bits of a register word.
WORD_BITS = 32


def _bits(value):
    return max(1, value.bit_length())


def _max_queries():
    return MAX_QUERIES


def _max_heads():
    return MAX_HEADS


def _error_addr_width(cfg):
    """ERROR_ADDR holds a register address or a K/V row index, whichever is wider."""
    return max(cfg.derived.index_width, (N_REGS - 1).bit_length())


def _default_scale(cfg):
    """``scale_log2e`` after reset: 2^-10 (an arbitrary small, legal value)."""
    return 1 << max(0, cfg.c_frac - 10)


@dataclass(frozen=True)
class Register:
    """One register of the port.

    Attributes
    ----------
    name : str
        Lower-case name (``seq_len``); :class:`Reg` has it upper-case.
    address : int
    access : str
        ``"rw"`` (a parameter: range-checked, written only while idle), ``"ro"`` (read only)
        or ``"status"`` (STATUS: read busy/error, write 1s to clear).
    description : str
    value_width : callable
        ``cfg -> int``: bits of the value behind the register (the low word holds up to 32).
    reset : callable
        ``cfg -> int``: value after reset.
    legal : callable or None
        ``cfg -> (lo, hi)``: the values a write may set (``"rw"`` only).
    high : str or None
        The ``_HI`` register that stages this parameter's bits above the low word.
    present : callable or None
        ``cfg -> bool``: whether a core built from ``cfg`` has it (None: every core).
    """
    name: str
    address: int
    access: str
    description: str
    value_width: object
    reset: object
    legal: object = None
    high: object = None
    present: object = None

    def exists(self, cfg):
        return self.present is None or self.present(cfg)

    def width(self, cfg):
        """Bits of this register's word (at most :data:`WORD_BITS`)."""
        return min(WORD_BITS, self.value_width(cfg))


def _rw(name, address, description, width, reset, legal, high=None, present=None):
    return Register(name, address, "rw", description, width, reset, legal, high, present)


def _axi(cfg):
    return cfg.memory == "axi"


#: Fraction bits of ADAPT_MASS: p = ADAPT_MASS / 2^ADAPT_MASS_FRAC.
ADAPT_MASS_FRAC = 8


def _adaptive(cfg):
    return cfg.adapt_bins > 0


def _adapt_shift_legal(cfg):
    """The bin edges ``b << shift`` (b < adapt_bins) stay below 2^diff_width."""
    return (0, max(0, cfg.derived.diff_width - _bits(cfg.adapt_bins - 1)))


def _seq_len_legal(cfg):
    """On chip, S is checked when written; the memory-attached core checks it when a job
    starts (JOB_ERROR SEQ_LEN), so that a descriptor with S = 0 fails as a job."""
    if _axi(cfg):
        return (0, (1 << cfg.derived.seq_len_width) - 1)
    return (1, cfg.max_seq_len)


def _job_words():
    """The job descriptor's addresses and strides: per tensor BASE, BASE_HI, STRIDE and
    HEAD_STRIDE, from word 65 on (Q_START at 64)."""
    regs = []
    for i, t in enumerate(TENSORS):
        a = 65 + 4 * i
        T = t.upper()
        regs += [
            *_base_words(t, a, f"{T}'s first row (head 0)", _axi),
            _rw(f"{t}_stride", a + 2, f"Bytes from one {T} row to the next: at least a row, a "
                f"multiple of the bus width.",
                lambda cfg: WORD_BITS, lambda cfg: 0, lambda cfg: (0, (1 << WORD_BITS) - 1),
                present=_axi),
            _rw(f"{t}_head_stride", a + 3, f"Bytes from one head's {T} to the next, a multiple "
                f"of the bus width.",
                lambda cfg: WORD_BITS, lambda cfg: 0, lambda cfg: (0, (1 << WORD_BITS) - 1),
                present=_axi),
        ]
    return tuple(regs)


def _base_words(name, a, what, present):
    """A byte address register ``NAME_BASE`` at ``a`` and its ``_HI`` word at ``a + 1``."""
    T = name.upper()
    return [
        _rw(f"{name}_base", a, f"Byte address of {what}, low word; a write applies "
            f"{T}_BASE_HI with it. A multiple of the bus width in bytes.",
            lambda cfg: cfg.axi_addr_width, lambda cfg: 0,
            lambda cfg: (0, (1 << cfg.axi_addr_width) - 1), high=f"{name}_base_hi",
            present=present),
        _rw(f"{name}_base_hi", a + 1, f"{T}_BASE's bits above 32, applied by the next write "
            f"of {T}_BASE (0 with a 32-bit address bus).",
            lambda cfg: max(1, cfg.axi_addr_width - WORD_BITS), lambda cfg: 0,
            lambda cfg: (0, (1 << max(0, cfg.axi_addr_width - WORD_BITS)) - 1),
            present=present),
    ]


def _project_words():
    """The on-demand K/V job's registers (``kv_source = "project"``, spec.job), from word 81."""
    word = (lambda cfg: WORD_BITS, lambda cfg: 0, lambda cfg: (0, (1 << WORD_BITS) - 1))
    what = {"wlz": "head 0's LZ codes of W_k (transposed, two a byte)",
            "wk": "head 0's int8 W_k (transposed)", "wv": "head 0's int8 W_v (transposed)",
            "bias": "head 0's int32 biases, b_k then b_v"}
    regs = _base_words("x", 81, "X's first row (head 0)", projects) + [
        _rw("x_stride", 83, "Bytes from one X row to the next: at least d_model, a multiple "
            "of the bus width.", *word, present=projects),
        _rw("x_head_stride", 84, "Bytes from one head's X to the next (0: the heads share X), "
            "a multiple of the bus width.", *word, present=projects)]
    for i, w in enumerate(WEIGHTS):
        regs += _base_words(w, 85 + 2 * i, what[w], projects)
    rq = (lambda cfg: PROJ_MULT_BITS, lambda cfg: 1, lambda cfg: (0, (1 << PROJ_MULT_BITS) - 1))
    rs = (lambda cfg: _bits(PROJ_RSHIFT_MAX), lambda cfg: 1, lambda cfg: (1, PROJ_RSHIFT_MAX))
    regs += [
        _rw("w_head_stride", 93, "Bytes from one head's weights to the next (every weight "
            "tensor), a multiple of the bus width.", *word, present=projects),
        _rw("khat_shift", 94, "Phase 1.1: K̂ = clamp(X·W̃_kᵀ >> KHAT_SHIFT, ±127).",
            lambda cfg: _bits(khat_shift_max(cfg)), lambda cfg: 0,
            lambda cfg: (0, khat_shift_max(cfg)), present=projects),
        _rw("k_mult", 95, "Exact K rows: K = clamp((X·W_kᵀ + b_k)·K_MULT + 2^(K_RSHIFT-1) >> "
            "K_RSHIFT, ±127).", *rq, present=projects),
        _rw("k_rshift", 96, "The right shift of K's requantisation (1 … 48).", *rs,
            present=projects),
        _rw("v_mult", 97, "Exact V rows: as K_MULT with W_v and b_v.", *rq, present=projects),
        _rw("v_rshift", 98, "The right shift of V's requantisation (1 … 48).", *rs,
            present=projects),
    ]
    return tuple(regs)


#: The registers below the counters, in address order.
REGISTERS = (
    _rw("seq_len", 0, "S, keys in the sequence (1 … max_seq_len; the memory-attached core "
        "checks it when a job starts).",
        lambda cfg: cfg.derived.seq_len_width, lambda cfg: cfg.max_seq_len, _seq_len_legal),
    _rw("top_k", 1, "Keys kept per tile (sparse mode).",
        lambda cfg: cfg.derived.topk_width, lambda cfg: cfg.k_max, lambda cfg: (1, cfg.k_max)),
    _rw("radius", 2, "Sphere radius R in Â units, low word; radius_inf (all ones) disables "
        "clipping. A write applies RADIUS_HI (the bits above 32) with this word.",
        lambda cfg: cfg.derived.radius_width, lambda cfg: cfg.derived.radius_inf,
        lambda cfg: (0, cfg.derived.radius_inf), high="radius_hi"),
    _rw("scale", 3, "scale_log2e c = s_q·s_k·log2(e)/√d, c_bits bits with c_frac fraction "
        "bits.",
        lambda cfg: cfg.c_bits, _default_scale, lambda cfg: (0, (1 << cfg.c_bits) - 1)),
    _rw("dense", 4, "1: dense mode (every key, natural order, no prediction).",
        lambda cfg: 1, lambda cfg: 0, lambda cfg: (0, 1)),
    Register("status", 5, "status",
             "Read: bit 0 busy (a query or a job is in flight), bit 1 error (a write was "
             "rejected). Write: bit 0 clears the counters, bit 1 clears the error flag.",
             lambda cfg: 2, lambda cfg: 0),
    Register("error_addr", 6, "ro",
             "The register address of the last rejected write (on chip also a K/V row index).",
             _error_addr_width, lambda cfg: 0),
    _rw("radius_hi", 7, "The radius's bits above the low word, applied by the next write of "
        "RADIUS (0 and nothing else when the radius fits 32 bits).",
        lambda cfg: max(1, cfg.derived.radius_width - WORD_BITS),
        lambda cfg: cfg.derived.radius_inf >> WORD_BITS,
        lambda cfg: (0, cfg.derived.radius_inf >> WORD_BITS)),
    # -- the job of the memory-attached core (memory = "axi"; see spec.job) ----------------
    Register("control", 8, "control",
             "Write 1 to bit 0: start a job with the registers as they are (refused while "
             "busy). Reads 0.", lambda cfg: 1, lambda cfg: 0, present=_axi),
    Register("job_status", 9, "job_status",
             "Read: bit 0 done (a job ended or was refused since the last start), bit 1 "
             "running. Write 1 to bit 0: clear done (and the interrupt).",
             lambda cfg: 2, lambda cfg: 0, present=_axi),
    Register("job_error", 10, "ro", "Why the last job did not start or stopped "
             "(spec.job.JobError; 0: it completed).",
             lambda cfg: 4, lambda cfg: 0, present=_axi),
    _rw("irq_enable", 11, "1: the irq output follows done.",
        lambda cfg: 1, lambda cfg: 0, lambda cfg: (0, 1), present=_axi),
    _rw("rass", 12, "1: reuse-aware V fetch, each V row a lane block needs read once per "
        "tile (0: every lane reads its own).",
        lambda cfg: 1, lambda cfg: 1, lambda cfg: (0, 1), present=_axi),
    _rw("causal", 13, "1: query t sees only the keys j <= Q_START + t.",
        lambda cfg: 1, lambda cfg: 0, lambda cfg: (0, 1), present=_axi),
    _rw("queries", 14, "Queries per head (checked when a job starts: at least 1).",
        lambda cfg: _bits(_max_queries()), lambda cfg: 1, lambda cfg: (0, _max_queries()),
        present=_axi),
    _rw("heads", 15, "Heads (checked when a job starts: at least 1).",
        lambda cfg: _bits(_max_heads()), lambda cfg: 1, lambda cfg: (0, _max_heads()),
        present=_axi),
    _rw("q_start", 64, "Position of the first query in the sequence (causal jobs).",
        lambda cfg: WORD_BITS, lambda cfg: 0, lambda cfg: (0, (1 << WORD_BITS) - 1),
        present=_axi),
    *_job_words(),
    *_project_words(),
    # -- the adaptive selection budget (adapt_bins > 0; docs/numerics.md) -------------------
    _rw("adapt_mass", 48, "Adaptive budget: softmax mass p = ADAPT_MASS / 2^ADAPT_MASS_FRAC "
        "(256 = 1.0) the eligible keys of a row hold; 0: the fixed budget (top_k per tile).",
        lambda cfg: ADAPT_MASS_FRAC + 1, lambda cfg: 0,
        lambda cfg: (0, 1 << ADAPT_MASS_FRAC), present=_adaptive),
    _rw("adapt_scale", 49, "c_sel, log2 units per Â unit of the selection softmax (scale "
        "over a temperature), c_bits bits with c_frac fraction bits.",
        lambda cfg: cfg.c_bits, _default_scale, lambda cfg: (0, (1 << cfg.c_bits) - 1),
        present=_adaptive),
    _rw("adapt_shift", 50, "Histogram bin width 2^ADAPT_SHIFT in Â units; the last bin's "
        "edge (adapt_bins - 1) << ADAPT_SHIFT fits diff_width bits.",
        lambda cfg: _bits(cfg.derived.diff_width), lambda cfg: 0, _adapt_shift_legal,
        present=_adaptive),
    _rw("tail_scale", 53, "Tail blend: alpha·c, log2 units per Â unit of the softmax that "
        "predicts a row's dropped mass f (O becomes (1 - f)·O + f·mean(V)), c_bits bits with "
        "c_frac fraction bits; 0: off. Acts only with ADAPT_MASS != 0 in sparse mode.",
        lambda cfg: cfg.c_bits, lambda cfg: 0, lambda cfg: (0, (1 << cfg.c_bits) - 1),
        present=_adaptive),
    # -- several cores (cores > 1; spec.job.split_job) ---------------------------------------
    _rw("shared_k", 51, "1: the engines of a head group take the prediction K stream from "
        "one read (spec.job.k_followers); 0: each reads its own.",
        lambda cfg: 1, lambda cfg: 1, lambda cfg: (0, 1), present=lambda cfg: cfg.cores > 1),
    _rw("split_queries", 52, "1: every core takes a chunk of every head's queries (one head "
        "group: with SHARED_K each K row is read once for all cores); 0: heads first "
        "(spec.job.split_job).",
        lambda cfg: 1, lambda cfg: 0, lambda cfg: (0, 1), present=lambda cfg: cfg.cores > 1),
)


@dataclass(frozen=True)
class Counter:
    """One performance counter.

    Attributes
    ----------
    name : str
    address : int
    kind : str
        ``"exact"`` (:func:`expected_counters` gives its value) or ``"timing"``.
    description : str
    """
    name: str
    address: int
    kind: str
    description: str
    present: object = None

    def exists(self, cfg):
        return self.present is None or self.present(cfg)


#: First counter address.
COUNTER_BASE = 16

_COUNTER_TABLE = (
    ("cycles", "timing", "Every cycle."),
    ("busy_cycles", "timing", "Cycles with a query (on chip) or a job (memory core) in "
                           "flight."),
    ("predict_cycles", "timing", "Cycles the K stream into DLZS holds a row (prediction "
                                 "working)."),
    ("qk_cycles", "exact", "Cycles SU-FA's Q·K multipliers work: keys · mac_cycles."),
    ("pv_cycles", "exact", "Cycles SU-FA's P·V multipliers work (accumulate or rescale): "
                           "(keys + rescales) · mac_cycles."),
    ("starved_cycles", "timing", "Busy, but SU-FA has no key to take (waiting for the "
                                 "selection)."),
    ("sufa_stall_cycles", "timing", "A fetched key waits for SU-FA (SU-FA is the "
                                    "bottleneck)."),
    ("out_stall_cycles", "timing", "O waits for its consumer (the o stream on chip, the "
                                   "write buffer of the memory core)."),
    ("k_rows_predict", "exact", "K rows read for DLZS: S per group of up to q_lanes queries "
                                "(sparse mode)."),
    ("kv_rows_fetch", "exact", "K+V row pairs read for SU-FA: one per key."),
    ("keys", "exact", "Keys accumulated by SU-FA."),
    ("misses", "exact", "Keys whose exact score exceeded the running maximum after max "
                        "assurance."),
    ("rescales", "exact", "Rescales of l and o (the running maximum grew while l > 0)."),
    ("rows", "exact", "Output rows completed."),
    ("blocked_radius", "exact", "SADS: keys blocked by the sphere rule Â < run_max − R."),
    ("blocked_full", "exact", "SADS: keys blocked because they cannot enter a full survivor "
                              "list."),
    ("entered", "exact", "SADS: keys that entered the sorter."),
    ("sort_steps", "exact", "SADS: sorter steps (batches that had an entering key)."),
    ("tiles", "exact", "SADS: tiles selected (sparse mode)."),
    ("macs", "exact", "Multiplies issued: mac_lanes · (qk_cycles + pv_cycles)."),
)

#: The memory-attached core's counters of its AXI4 master, after the core's.
_AXI_COUNTER_TABLE = (
    ("bytes_q", "exact", "Bytes read of Q (whole bus words)."),
    ("bytes_k", "exact", "Bytes read of K: every key a lane block sees, once (prediction "
                         "and, from the tile buffer, attention)."),
    ("bytes_v", "exact", "Bytes read of V (with RASS each row a block selects, once)."),
    ("bytes_o", "exact", "Bytes written of O."),
    ("ar_stall", "timing", "Cycles ARVALID waits for ARREADY."),
    ("r_wait", "timing", "Cycles a read is in flight and no R beat arrives."),
    ("aw_stall", "timing", "Cycles AWVALID waits for AWREADY."),
    ("w_stall", "timing", "Cycles WVALID waits for WREADY."),
    ("b_wait", "timing", "Cycles a write awaits its B response."),
)

#: Counters of several cores (``cores > 1``), after the memory core's.
_MULTI_COUNTER_TABLE = (
    ("bytes_k_shared", "exact", "Bytes of K an engine received from another engine's read "
                                "(the shared K stream): bytes_k less these were read from "
                                "memory."),
)

#: Counters of the on-demand K/V mode (``kv_source = "project"``), from
#: :data:`PROJECT_COUNTER_BASE` (after its registers).
_PROJECT_COUNTER_TABLE = (
    ("rows_projected", "exact", "Exact K+V row pairs projected (each selected key once per "
                                "block and tile with RASS; every key in dense mode)."),
    ("projection_macs", "exact", "Multiplies of the projection: 2 · d · d_model per row."),
    ("bytes_x", "exact", "Bytes read of X (every key a lane block sees, once)."),
    ("bytes_w", "exact", "Bytes read of the weights (LZ codes, W_k, W_v, biases; once a "
                         "head)."),
)
PROJECT_COUNTER_BASE = 100

#: The counters, in address order from :data:`COUNTER_BASE`.
COUNTERS = tuple(Counter(name, COUNTER_BASE + i, kind, desc)
                 for i, (name, kind, desc) in enumerate(_COUNTER_TABLE)) + \
    tuple(Counter(name, COUNTER_BASE + len(_COUNTER_TABLE) + i, kind, desc,
                  lambda cfg: cfg.memory == "axi")
          for i, (name, kind, desc) in enumerate(_AXI_COUNTER_TABLE)) + \
    tuple(Counter(name, COUNTER_BASE + len(_COUNTER_TABLE) + len(_AXI_COUNTER_TABLE) + i,
                  kind, desc, lambda cfg: cfg.cores > 1)
          for i, (name, kind, desc) in enumerate(_MULTI_COUNTER_TABLE)) + \
    tuple(Counter(name, PROJECT_COUNTER_BASE + i, kind, desc, projects)
          for i, (name, kind, desc) in enumerate(_PROJECT_COUNTER_TABLE))

#: Addresses the register port of the on-chip core decodes (and the host link addresses):
#: the registers, a gap, then its counters.
N_REGS = COUNTER_BASE + len(_COUNTER_TABLE)

#: Register addresses by upper-case name (``Reg.SEQ_LEN``); counters are not in it.
Reg = enum.IntEnum("Reg", {r.name.upper(): r.address for r in REGISTERS})
Reg.__doc__ = "Register addresses of ``sofa_top``'s register port (:data:`REGISTERS`)."


def registers(cfg):
    """The registers a core built from ``cfg`` has, in address order."""
    return tuple(r for r in REGISTERS if r.exists(cfg))


def counters(cfg):
    """The counters a core built from ``cfg`` has (none are built at ``counter_width = 0``,
    but their addresses read 0), in address order."""
    return tuple(c for c in COUNTERS if c.exists(cfg))


def address_words(cfg):
    """Words of the register space of a core built from ``cfg`` (its highest address + 1)."""
    if cfg.cores > 1:
        return CORE_BASE + cfg.cores * CORE_WORDS
    return 1 + max(x.address for x in registers(cfg) + counters(cfg))


#: The first per-core block (``cores > 1``), its size in words, its counters' offset.
CORE_BASE = 256
CORE_WORDS = 64
CORE_COUNTER_OFFSET = 16

#: A per-core block's registers: (name, offset, description, value width).
CORE_REGS = (
    ("status", 0, "Bit 0: the core runs its part of the job. Bit 1: it finished its part of "
                  "the last job (or had none). Bit 2: the last job gave it no queries.", 3),
    ("error", 1, "The JobError of the core's fault in the last job (READ_Q … WRITE_O; 0: "
                 "none). JOB_ERROR reports the lowest-numbered faulting core's.", 4),
    ("heads", 2, "Heads of the core's sub-job (spec.job.split_job).", 16),
    ("queries", 3, "Queries per head of the core's sub-job (0: idle).", 24),
    ("first_head", 4, "The job's head the core's sub-job starts at.", 16),
    ("first_query", 5, "The job's query the core's sub-job starts at.", 24),
)


def core_address(cfg, core, name):
    """Address of register ``name`` (of :data:`CORE_REGS`, or ``counter_<name>``) in the
    block of ``core``."""
    if not 0 <= core < cfg.cores or cfg.cores == 1:
        raise ValueError(f"core {core}: the config has {cfg.cores} core(s) and per-core "
                         f"blocks only with cores > 1")
    base = CORE_BASE + core * CORE_WORDS
    for reg, off, _, _ in CORE_REGS:
        if reg == name:
            return base + off
    if name.startswith("counter_") and name[8:] in counter_names(cfg):
        return base + CORE_COUNTER_OFFSET + counter_names(cfg).index(name[8:])
    raise KeyError(f"no per-core register {name!r}; they are "
                   f"{', '.join(r[0] for r in CORE_REGS)} and counter_<name>")


def lite_addr_width(cfg):
    """Bits of the AXI4-Lite byte address of a memory-attached core: a 4 KB window, more
    when the per-core blocks need it."""
    return max(12, (4 * address_words(cfg) - 1).bit_length())


def register(name):
    """The :class:`Register` called ``name`` (any case); KeyError names the known ones."""
    for r in REGISTERS:
        if r.name == str(name).lower():
            return r
    raise KeyError(f"no register {name!r}; registers are "
                   f"{', '.join(r.name for r in REGISTERS)}")


def counter_names(cfg=None):
    """Counter names in address order (of the on-chip core without ``cfg``)."""
    return tuple(c.name for c in (COUNTERS[:len(_COUNTER_TABLE)] if cfg is None
                                  else counters(cfg)))


def exact_counters(cfg=None):
    """Names of the counters :func:`expected_counters` predicts."""
    return tuple(n for n in counter_names(cfg) if _counter(n).kind == "exact")


def _counter(name):
    return next(c for c in COUNTERS if c.name == name)


def reset_values(cfg):
    """``{register name: value after reset}``."""
    return {r.name: r.reset(cfg) for r in registers(cfg)}


def parameter_value(cfg, name, value):
    """``value`` checked against the legal range of parameter register ``name``; a
    ValueError names the register, the value and the range."""
    reg = register(name)
    lo, hi = reg.legal(cfg)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"register {reg.name}: {value!r} is outside {lo} … {hi}")
    return value


def register_writes(cfg, values):
    """The writes that set ``{register name: value}``, in address order: ``[(address,
    word), ...]``, a ``_HI`` stage before its low word where the value is wider than the
    port."""
    out = []
    for r in registers(cfg):
        if r.name not in values:
            continue
        value = values[r.name]
        if r.high and r.value_width(cfg) > WORD_BITS:
            out.append((register(r.high).address, value >> WORD_BITS))
        out.append((r.address, value & ((1 << WORD_BITS) - 1)))
    return out


def parameter_writes(cfg, params):
    """The register writes that set a :class:`~spec.config.RunParams`."""
    values = {"seq_len": params.seq_len, "top_k": params.top_k, "radius": params.radius,
              "scale": params.scale_log2e, "dense": int(params.dense)}
    if cfg.adapt_bins:
        values.update(adapt_mass=params.adapt_mass, adapt_scale=params.adapt_scale,
                      adapt_shift=params.adapt_shift, tail_scale=params.tail_scale)
    return register_writes(cfg, values)


def job_writes(cfg, job, *, rass=True, irq=False, shared_k=True, split_queries=False):
    """The register writes that set a :class:`~spec.job.JobDescriptor` (S included)."""
    values = {"seq_len": job.seq_len, "queries": job.queries, "heads": job.heads,
              "causal": int(job.causal), "q_start": job.q_start, "rass": int(rass),
              "irq_enable": int(irq)}
    if cfg.cores > 1:
        values["shared_k"] = int(shared_k)
        values["split_queries"] = int(split_queries)
    for t in TENSORS:
        for part in ("base", "stride", "head_stride"):
            values[f"{t}_{part}"] = getattr(job, f"{t}_{part}")
    if projects(cfg):
        for name in ("x_base", "x_stride", "x_head_stride", "w_head_stride", "khat_shift",
                     "k_mult", "k_rshift", "v_mult", "v_rshift",
                     *(f"{w}_base" for w in WEIGHTS)):
            values[name] = getattr(job, name)
    return register_writes(cfg, values)


def register_map(cfg):
    """Every register and counter as plain data (for the sidecar and the exports).

    Returns a list of dicts with ``name``, ``address``, ``access``, ``width``, ``reset``,
    ``legal`` (``[lo, hi]`` or None), ``kind`` (``"register"``, or the counter's kind) and
    ``description``, in address order. Counters are listed with ``width = counter_width`` (0 when the core
    has none: they read 0).
    """
    out = []
    for r in registers(cfg):
        out.append({"name": r.name, "address": r.address, "access": r.access,
                    "width": r.width(cfg), "value_width": r.value_width(cfg),
                    "reset": r.reset(cfg) & ((1 << r.width(cfg)) - 1),
                    "legal": list(r.legal(cfg)) if r.legal else None, "kind": "register",
                    "description": r.description})
    for c in counters(cfg):
        out.append({"name": f"counter_{c.name}", "address": c.address, "access": "ro",
                        "width": cfg.counter_width, "value_width": cfg.counter_width,
                        "reset": 0, "legal": None, "kind": c.kind,
                        "description": c.description})
    if cfg.cores > 1:
        for c in range(cfg.cores):
            base = CORE_BASE + c * CORE_WORDS
            for reg, off, desc, width in CORE_REGS:
                out.append({"name": f"core{c}_{reg}", "address": base + off, "access": "ro",
                            "width": width, "value_width": width, "reset": 0, "legal": None,
                            "kind": "register", "description": f"Core {c}: {desc}"})
            for i, cnt in enumerate(counters(cfg)):
                out.append({"name": f"core{c}_counter_{cnt.name}",
                            "address": base + CORE_COUNTER_OFFSET + i, "access": "ro",
                            "width": cfg.counter_width, "value_width": cfg.counter_width,
                            "reset": 0, "legal": None, "kind": cnt.kind,
                            "description": f"Core {c}: {cnt.description}"})
    return sorted(out, key=lambda e: e["address"])


def query_groups(T, q_lanes):
    """Sizes of the lane groups ``T`` queries of one call form: full groups of ``q_lanes``, the
    last one closed by the call's final query."""
    if T < 0 or q_lanes < 1:
        raise ValueError(f"query_groups: T = {T}, q_lanes = {q_lanes}")
    return [min(q_lanes, T - g) for g in range(0, T, q_lanes)]


def expected_counters(cfg, params, stats, *, calls, lengths=None, traffic=None, rass=True,
                      wrap=True):
    """The exact counters after queries, from their shape and the golden model's events.

    Parameters
    ----------
    cfg : spec.config.SofaConfig
    params : spec.config.RunParams
        The run-time registers the queries ran with.
    stats : dict
        Event totals of the golden model over those queries (:meth:`sim.golden.GoldenResult
        .counters`): ``keys``, ``misses``, ``rescales``, ``blocked_radius``, ``blocked_full``,
        ``entered``, ``sort_steps``.
    calls : list of int
        Queries per call, in order: a call is a run of queries whose last one carries ``last``
        (a host-link QUERY frame, one ``SofaCore`` call; a block of a job of the
        memory-attached core). Its queries form groups of up to ``q_lanes`` that share each K
        row read for prediction.
    lengths : list of int, optional
        Keys each query sees, in the same order (causal jobs); ``params.seq_len`` for all by
        default.
    traffic : dict, optional
        The memory-attached core's bytes per stream (:func:`sim.jobs.traffic`).
    rass : bool
        The RASS register of the memory-attached core.
    wrap : bool
        Wrap the values to ``counter_width`` bits as the registers read them (0 without
        counters); ``False`` gives the plain event counts.

    Returns
    -------
    dict
        ``{name: value}`` of every ``exact`` counter the core has.
    """
    S, M, B = params.seq_len, cfg.derived.mac_cycles, cfg.block_size
    T = sum(calls)
    lengths = [S] * T if lengths is None else list(lengths)
    if len(lengths) != T:
        raise ValueError(f"expected_counters: {len(lengths)} lengths for {T} queries")
    spans, first = 0, 0
    for n in calls:
        for size in query_groups(n, cfg.q_lanes):
            spans += max(lengths[first:first + size])
            first += size
    sparse = not params.dense
    out = {
        "qk_cycles": stats["keys"] * M,
        "pv_cycles": (stats["keys"] + stats["rescales"]) * M,
        "k_rows_predict": spans if sparse else 0,
        "kv_rows_fetch": stats["keys"],
        "keys": stats["keys"],
        "misses": stats["misses"],
        "rescales": stats["rescales"],
        "rows": T,
        "blocked_radius": stats["blocked_radius"],
        "blocked_full": stats["blocked_full"],
        "entered": stats["entered"],
        "sort_steps": stats["sort_steps"],
        "tiles": sum(-(-L // B) for L in lengths) if sparse else 0,
    }
    out["macs"] = cfg.mac_lanes * (out["qk_cycles"] + out["pv_cycles"])
    if cfg.memory == "axi":
        if traffic is None:
            raise ValueError("expected_counters: the memory-attached core needs traffic")
        out |= {"bytes_q": traffic["q"], "bytes_k": traffic["k"],
                "bytes_v": traffic["v"] if rass else traffic["v_no_rass"],
                "bytes_o": traffic["o"]}
    if cfg.cores > 1:
        out["bytes_k_shared"] = traffic.get("k_shared", 0)
    if projects(cfg):
        out |= {"rows_projected": traffic["rows_projected"],
                "projection_macs": 2 * cfg.d * cfg.d_model * traffic["rows_projected"],
                "bytes_x": traffic["x"], "bytes_w": traffic["w"]}
    assert set(out) == set(exact_counters(cfg))
    if wrap:
        mask = (1 << cfg.counter_width) - 1
        out = {name: value & mask for name, value in out.items()}
    return out
