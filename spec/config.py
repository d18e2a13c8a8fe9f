"""Compile-time configuration of a SOFA core.

One frozen :class:`SofaConfig` holds every generator knob; derived widths are computed once in
:meth:`SofaConfig.derived` and are the only place the RTL, the golden model and the tests take a
width from. Run-time values (sequence length, top-k, sphere radius, exp scale, dense mode) live in
:class:`RunParams`, validated against a config.

Every invalid combination raises :class:`ConfigError` (a :class:`ValueError`) whose message names
the parameter and the allowed range, before anything is elaborated.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from spec.job import row_bytes
from spec.regmap import register
from spec.validate import (ConfigError, check_bool, check_choice, check_int, check_name,
                           parse_json, read_text)


__all__ = ["ConfigError", "SofaConfig", "Derived", "RunParams", "PRESETS", "RANGES", "MEMORIES",
           "PREDICT_KEYS", "CORES", "KV_SOURCES",
           "preset",
           "load_config", "GOLDEN_INT_BITS"]


#: The golden model computes in numpy int64; every derived width must leave one bit of headroom.
GOLDEN_INT_BITS = 62


def _signed_bits(magnitude):
    """Bits of a two's complement number holding every value in ``[-magnitude, magnitude]``."""
    return max(1, magnitude.bit_length()) + 1


def _unsigned_bits(value):
    return max(1, value.bit_length())


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class Derived:
    """Widths and counts that follow from a :class:`SofaConfig`. All integers.

    Attributes
    ----------
    index_width : int
        Key index ``0 … max_seq_len-1``.
    seq_len_width : int
        Run-time ``seq_len`` register (``1 … max_seq_len``).
    topk_width : int
        Run-time ``top_k`` register (``1 … k_max``).
    shift_width : int
        DLZS shift amount ``p = floor(log2|q|)``, ``0 … data_width-1``.
    lz_width : int
        Leading-zero count of a ``data_width``-bit magnitude, ``0 … data_width``.
    term_width : int
        One DLZS term ``±(k << p)``.
    ahat_width : int
        Predicted score Â (signed); also the exact score width (same bound).
    score_width : int
        Exact score ``Σ q·k`` (signed).
    radius_width : int
        Run-time sphere radius R (unsigned); all ones is R = ∞.
    radius_inf : int
        The reserved all-ones value of R that disables clipping.
    diff_width : int
        Magnitude of ``m - s`` (unsigned), at most twice the score bound.
    prod_width : int
        Magnitude of ``(m - s)·c`` (unsigned).
    w_width : int
        Softmax weight ``w`` in UQ1.``w_frac``.
    l_width : int
        Row sum ``l`` (unsigned).
    o_width : int
        Row accumulator ``o`` (signed), per dimension.
    out_width : int
        Output ``O`` (signed), ``out_frac`` fractional bits.
    batch : int
        New keys per sorter step, ``sort_width - k_max``.
    batches_per_tile : int
        Sorter steps per full tile, ``ceil(block_size / batch)``.
    max_tiles : int
        Tiles per row at ``max_seq_len``.
    dlzs_cycles : int
        Cycles per key in DLZS, ``d / dlzs_lanes``.
    mac_cycles : int
        Cycles per key per dot product in SU-FA, ``d / mac_lanes``.
    exp_lut_depth : int
        Entries of the ``2^frac`` table, ``2**exp_lut_bits``.
    """
    index_width: int
    seq_len_width: int
    topk_width: int
    shift_width: int
    lz_width: int
    term_width: int
    ahat_width: int
    score_width: int
    radius_width: int
    radius_inf: int
    diff_width: int
    prod_width: int
    w_width: int
    l_width: int
    o_width: int
    out_width: int
    batch: int
    batches_per_tile: int
    max_tiles: int
    dlzs_cycles: int
    mac_cycles: int
    exp_lut_depth: int


#: Top-level keys of a JSON sidecar (``sofa verilog``'s ``sofa_top.json``), which
#: :meth:`SofaConfig.from_dict` accepts in place of a parameter object.
SIDECAR_KEYS = {"top", "config", "derived", "ports", "latency", "ii", "tile_latency",
                "comparators", "depth", "register_map", "registers", "generator",
                "memory_bits"}

#: JSON's names of the Python types a document parses to, for messages.
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number",
               float: "a number", bool: "true or false", type(None): "null"}

#: Parameter name -> (lowest, highest) allowed value; the cross-parameter rules are in _validate.
RANGES = {
    "d":            (1, 256),
    "data_width":   (2, 16),
    "block_size":   (2, 256),
    "max_seq_len":  (2, 65536),
    "sort_width":   (2, 64),
    "k_max":        (1, 32),
    "q_lanes":      (1, 128),
    "mac_lanes":    (1, 256),
    "dlzs_lanes":   (1, 256),
    "exp_frac":     (1, 16),
    "exp_lut_bits": (1, 12),
    "w_frac":       (4, 24),
    "c_bits":       (1, 32),
    "c_frac":       (1, 40),
    "out_frac":     (0, 24),
    "counter_width": (0, 32),
    "axi_data_width": (64, 512),
    "axi_addr_width": (32, 64),
    "axi_id_width": (2, 16),
    "axi_max_burst": (1, 256),
    "axi_max_reads": (1, 64),
    "k_tiles": (2, 16),
    "adapt_bins": (0, 64),
    "predict_keys": (1, 8),
    "cores": (1, 16),
    "d_model": (0, 1024),
    "khat_lanes": (1, 256),
    "proj_macs": (1, 256),
}

#: The values ``predict_keys`` may take.
PREDICT_KEYS = (1, 2, 4, 8)

#: The values ``cores`` may take (the AXI arbiter and the job splitter take a power of two).
CORES = (1, 2, 4, 8, 16)

#: Where K and V live: the whole sequence in on-chip buffers, or in memory behind AXI4.
MEMORIES = ("onchip", "axi")

#: Where the memory-attached core takes K and V from: given in memory, or projected on chip
#: from the token activations X (on-demand K/V, docs/memory.md).
KV_SOURCES = ("given", "project")


@dataclass(frozen=True)
class SofaConfig:
    """Every compile-time parameter of a SOFA core.

    Parameters
    ----------
    d : int
        Head dimension (elements per Q/K/V row).
    data_width : int
        Bits of the signed Q, K, V elements (8 in the paper's formal stage on FPGA presets).
    block_size : int
        Bc, keys per tile; the SADS sub-segment and the SU-FA tile.
    max_seq_len : int
        Largest run-time sequence length S; sizes the K/V buffers and the ``l``/``o`` widths.
    sort_width : int
        Inputs of the SADS compare-exchange network per step (the paper's 16).
    k_max : int
        Survivors the sorter carries, and the bound on the run-time ``top_k`` (the paper's 4).
    q_lanes : int
        Query rows in flight, sharing each K/V row fetch.
    mac_lanes : int
        Multipliers per row in each SU-FA dot product (Q·K and w·V); must divide ``d``.
    dlzs_lanes : int
        Shift-adders per row in DLZS; must divide ``d``.
    exp_frac : int
        Fractional bits of the base-2 exponent argument ``x = (s - m)·c``.
    exp_lut_bits : int
        The ``2^frac(x)`` table has ``2**exp_lut_bits`` entries addressed by the top
        ``exp_lut_bits`` fractional bits of ``x``; at most ``exp_frac``.
    w_frac : int
        Fractional bits of a softmax weight, UQ1.``w_frac``.
    c_bits : int
        Width of the unsigned run-time ``scale_log2e`` register.
    c_frac : int
        Fractional bits of ``scale_log2e``; at least ``exp_frac``.
    out_frac : int
        Fractional bits of the output ``O``.
    counter_width : int
        Bits of each performance counter (they wrap), ``8 … 32``; 0 builds no counters (their
        registers read 0). The counters cost about 40 % of an iCE40 UP5K at 32 bits.
    skid_buffers : bool
        The stage registers between units (DLZS → SADS, SU-FA's score and operation
        registers, the output) are skid buffers: a second register makes their ``ready``
        towards the producer a flip-flop, so no handshake path runs through two units (for
        Fmax). ``False`` builds plain stage registers instead, whose ``ready`` is
        combinational: half the flip-flops, the same latency and throughput; for small
        FPGAs at low clock rates.
    memory : str
        ``"onchip"``: K and V of the whole sequence in on-chip buffers, loaded over
        ``kv_load`` (``max_seq_len`` rows). ``"axi"``: Q, K and V are read from memory and O is
        written back over an AXI4 master, a job descriptor in AXI4-Lite registers; on chip
        only tiles (``max_seq_len`` then only sizes counters and widths).
    axi_data_width : int
        AXI4 data bus in bits, a power of two, 64 … 512 (``memory = "axi"``).
    axi_addr_width : int
        AXI4 address bits, 32 … 64.
    axi_id_width : int
        AXI4 ID bits, 2 … 16 (the core uses IDs 0 … 3).
    axi_max_burst : int
        Longest INCR burst in beats, 1 … 256 (bursts never cross a 4 KB boundary either).
    axi_max_reads : int
        Read bursts in flight at once, 1 … 64.
    k_tiles : int
        Tiles of K rows the prediction may hold on chip ahead of attention, 2 … 16
        (``memory = "axi"``; each tile is ``block_size`` rows).
    adapt_bins : int
        Histogram bins of the adaptive selection budget (docs/numerics.md, "Adaptive
        budget"), 2 … 64; 0 (the default) builds no adaptive selection, and the
        ``ADAPT_*`` registers do not exist. The on-chip core builds it (``hw/adapt.py``);
        the memory-attached core refuses a config with bins.
    predict_keys : int
        Keys predicted per cycle per query lane, 1, 2, 4 or 8 (default 1): DLZS has that many
        key slots (``predict_keys · dlzs_lanes`` shift-adders), the on-chip K buffer is
        split into that many banks (row ``j`` in bank ``j mod predict_keys``) so the K reader
        delivers that many rows a cycle, and selection takes that many keys a cycle (sphere
        clipping on all of them at once). It must divide ``block_size`` (a cycle's keys lie
        in one tile) and ``max_seq_len`` (banks of ``max_seq_len / predict_keys`` rows).
        The memory-attached core (``memory = "axi"``) reads its K tiles packed (the K
        stride of a job must be exactly one row, ``d · elem bytes``) and regroups the bus
        words into words of ``predict_keys`` rows: a row must divide the bus word or be a
        multiple of it, ``block_size`` a multiple of the rows a bus word holds, and
        ``cores = 1``. The adaptive selection (``adapt_bins > 0``) takes one key a cycle:
        it needs ``predict_keys = 1``.
    cores : int
        Memory-attached cores behind one AXI4 master (1, 2, 4, 8 or 16; more than one needs
        ``memory = "axi"``). A round-robin arbiter puts the core's index above each core's AXI
        IDs (``axi_id_width`` must hold 2 bits of stream ID plus ``log2(cores)``); a job is
        split across the cores by :func:`spec.job.split_job`.
    kv_source : str
        ``"given"`` (default): K and V are read from memory. ``"project"`` (on-demand K/V,
        ``memory = "axi"`` only): the token activations X and the head's weights are read
        instead; the keys are predicted from ``K̂ = X·W̃_kᵀ`` (LZ-format W_k) and the exact K
        and V rows are projected on chip for the selected keys only (docs/memory.md,
        "On-demand K/V"). Needs ``data_width = 8``, one core and ``predict_keys = 1``.
    d_model : int
        Token width, the elements of an X row (``kv_source = "project"``: 2 … 1024, even, a
        multiple of ``khat_lanes``; 0 with ``"given"``).
    khat_lanes : int
        X elements phase 1.1 takes a cycle (``d · khat_lanes`` shift-adders; an X row in
        ``d_model / khat_lanes`` cycles); divides ``d_model``.
    proj_macs : int
        Multipliers of the projection array (``kv_source = "project"``); divides ``d``. A key's
        exact K and V rows take ``2 · d · d_model / proj_macs`` cycles.
    """
    d: int = 64
    data_width: int = 8
    block_size: int = 16
    max_seq_len: int = 1024
    sort_width: int = 16
    k_max: int = 4
    q_lanes: int = 1
    mac_lanes: int = 16
    dlzs_lanes: int = 64
    exp_frac: int = 8
    exp_lut_bits: int = 8
    w_frac: int = 15
    c_bits: int = 16
    c_frac: int = 20
    out_frac: int = 8
    counter_width: int = 32
    skid_buffers: bool = True
    memory: str = "onchip"
    axi_data_width: int = 64
    axi_addr_width: int = 32
    axi_id_width: int = 4
    axi_max_burst: int = 16
    axi_max_reads: int = 4
    k_tiles: int = 4
    adapt_bins: int = 0
    predict_keys: int = 1
    cores: int = 1
    kv_source: str = "given"
    d_model: int = 0
    khat_lanes: int = 8
    proj_macs: int = 8
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        _validate(self)

    # -- derived values ---------------------------------------------------------------------

    @cached_property
    def derived(self):
        W = self.data_width
        term_mag = 1 << (2 * W - 2)              # |±(k << p)| <= 2^(W-1) · 2^(W-1)
        score_mag = self.d * term_mag            # same bound for Σ q·k: (-2^(W-1))² = 2^(2W-2)
        diff_mag = 2 * score_mag
        prod_mag = diff_mag * ((1 << self.c_bits) - 1)
        w_max = 1 << self.w_frac                 # exp2(0) = 1.0 is the largest weight
        l_max = self.max_seq_len * w_max
        o_mag = l_max << (W - 1)
        # |O| <= 2^(W-1) + S/2^w_frac (each rescale floors o by < 1 ulp); _validate bounds S so
        # this stays below 2^W, hence W + out_frac + 1 magnitude bits plus the sign.
        out_mag = ((1 << W) << self.out_frac) - 1
        radius_width = _signed_bits(score_mag) + 1
        batch = self.sort_width - self.k_max
        return Derived(
            index_width=_unsigned_bits(self.max_seq_len - 1),
            seq_len_width=_unsigned_bits(self.max_seq_len),
            topk_width=_unsigned_bits(self.k_max),
            shift_width=_unsigned_bits(W - 1),
            lz_width=_unsigned_bits(W),
            term_width=_signed_bits(term_mag),
            ahat_width=_signed_bits(score_mag),
            score_width=_signed_bits(score_mag),
            radius_width=radius_width,
            radius_inf=(1 << radius_width) - 1,
            diff_width=_unsigned_bits(diff_mag),
            prod_width=_unsigned_bits(prod_mag),
            w_width=self.w_frac + 1,
            l_width=_unsigned_bits(l_max),
            o_width=_signed_bits(o_mag),
            out_width=_signed_bits(out_mag),
            batch=batch,
            batches_per_tile=_ceil_div(self.block_size, batch),
            max_tiles=_ceil_div(self.max_seq_len, self.block_size),
            dlzs_cycles=self.d // self.dlzs_lanes,
            mac_cycles=self.d // self.mac_lanes,
            exp_lut_depth=1 << self.exp_lut_bits,
        )

    # -- (de)serialisation ------------------------------------------------------------------

    def to_dict(self):
        """The parameters (without derived values), as plain JSON types."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def sidecar(self):
        """Every resolved parameter and derived value, for the JSON file beside the Verilog."""
        return {"config": self.to_dict(), "derived": dataclasses.asdict(self.derived)}

    @classmethod
    def from_dict(cls, data, *, source="config"):
        """A config from a dict of parameters: ``{"preset": NAME, ...}`` starts from a preset;
        a whole JSON sidecar (``{"config": {...}, "derived": ...}``) is accepted too."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object of parameters, "
                              f"got {_JSON_TYPES.get(type(data), type(data).__name__)}")
        if isinstance(data.get("config"), dict):
            extra = sorted(set(data) - SIDECAR_KEYS)
            if extra:
                raise ConfigError(f"{source}: unknown key {extra[0]!r} beside \"config\"; a "
                                  f"sidecar has only {', '.join(sorted(SIDECAR_KEYS))}")
            data = data["config"]
        data = dict(data)
        base = preset(data.pop("preset")) if "preset" in data else cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown parameter {unknown[0]!r}; "
                              f"known parameters are {', '.join(sorted(known))}")
        return dataclasses.replace(base, **data)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text, *, source="config"):
        return cls.from_dict(parse_json(text, source=source), source=source)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _validate(cfg):
    for name, (lo, hi) in RANGES.items():
        check_int(name, getattr(cfg, name), lo, hi)
    check_bool("skid_buffers", cfg.skid_buffers)
    check_choice("memory", cfg.memory, MEMORIES)
    check_choice("kv_source", cfg.kv_source, KV_SOURCES)
    check_name("name", cfg.name)

    def need(ok, message):
        if not ok:
            raise ConfigError(message)

    need(cfg.d % cfg.dlzs_lanes == 0,
         f"dlzs_lanes = {cfg.dlzs_lanes} must divide d = {cfg.d}")
    need(cfg.d % cfg.mac_lanes == 0,
         f"mac_lanes = {cfg.mac_lanes} must divide d = {cfg.d}")
    need(cfg.block_size <= cfg.max_seq_len,
         f"block_size = {cfg.block_size} must not exceed max_seq_len = {cfg.max_seq_len}")
    need(cfg.k_max <= cfg.block_size,
         f"k_max = {cfg.k_max} must not exceed block_size = {cfg.block_size}")
    need(cfg.k_max < cfg.sort_width,
         f"k_max = {cfg.k_max} must be less than sort_width = {cfg.sort_width} "
         f"(the sorter takes sort_width - k_max new keys per step)")
    need(cfg.predict_keys in PREDICT_KEYS,
         f"predict_keys = {cfg.predict_keys} must be a power of two: 1, 2, 4 or 8")
    need(cfg.predict_keys <= cfg.block_size,
         f"predict_keys = {cfg.predict_keys} must not exceed block_size = {cfg.block_size} "
         f"(the keys of a cycle lie in one tile)")
    need(cfg.block_size % cfg.predict_keys == 0,
         f"predict_keys = {cfg.predict_keys} must divide block_size = {cfg.block_size} "
         f"(the keys of a cycle lie in one tile)")
    need(cfg.max_seq_len % cfg.predict_keys == 0,
         f"predict_keys = {cfg.predict_keys} must divide max_seq_len = {cfg.max_seq_len} "
         f"(the K buffer has predict_keys banks of max_seq_len / predict_keys rows)")
    need(cfg.predict_keys == 1 or cfg.adapt_bins == 0,
         f"predict_keys = {cfg.predict_keys}: the adaptive selection (adapt_bins = "
         f"{cfg.adapt_bins}) takes one key per cycle; allowed predict_keys = 1 with "
         f"adapt_bins > 0")
    need(cfg.cores in CORES,
         f"cores = {cfg.cores} must be a power of two: 1, 2, 4, 8 or 16")
    need(cfg.cores == 1 or cfg.memory == "axi",
         f"cores = {cfg.cores}: several cores share an AXI4 master; allowed cores = 1 with "
         f"memory = \"{cfg.memory}\", or memory = \"axi\"")
    core_bits = (cfg.cores - 1).bit_length()
    need(cfg.cores == 1 or cfg.axi_id_width >= 2 + core_bits,
         f"axi_id_width = {cfg.axi_id_width} must be at least {2 + core_bits} with cores = "
         f"{cfg.cores} (2 bits of stream ID and {core_bits} of core index)")
    _validate_kv_source(cfg, need)
    need(cfg.adapt_bins != 1,
         "adapt_bins = 1 must be 0 (no adaptive selection) or 2 … 64")
    need(cfg.exp_lut_bits <= cfg.exp_frac,
         f"exp_lut_bits = {cfg.exp_lut_bits} must not exceed exp_frac = {cfg.exp_frac} "
         f"(the table is addressed by the top fraction bits)")
    need(cfg.counter_width == 0 or cfg.counter_width >= 8,
         f"counter_width = {cfg.counter_width} must be 0 (no counters) or 8 … 32")
    need(cfg.c_frac >= cfg.exp_frac,
         f"c_frac = {cfg.c_frac} must be at least exp_frac = {cfg.exp_frac}")
    # Keeps |O| < 2^data_width: each rescale floors o by less than one ulp of w.
    s_bound = 1 << (cfg.w_frac + cfg.data_width - 1)
    need(cfg.max_seq_len <= s_bound,
         f"max_seq_len = {cfg.max_seq_len} exceeds 2^(w_frac + data_width - 1) = {s_bound}; "
         f"raise w_frac")
    if cfg.memory == "axi":
        bus = cfg.axi_data_width
        need(bus & (bus - 1) == 0 and 64 <= bus <= 512,
             f"axi_data_width = {bus} must be a power of two, 64 … 512")
        need(cfg.axi_addr_width >= 32,
             f"axi_addr_width = {cfg.axi_addr_width} must be 32 … 64")
        if cfg.predict_keys > 1:
            # The K tile is read as contiguous rows (k_stride = one row) and re-grouped into
            # words of predict_keys rows (hw/kgroup.py): a row must fill a whole number of
            # bus words or a whole number of rows must fill one, and a tile must start on a
            # bus word.
            P, BB = cfg.predict_keys, bus // 8
            rb = row_bytes(cfg)
            need(BB % rb == 0 or rb % BB == 0,
                 f"predict_keys = {P} with memory = \"axi\": a K row of d · elem bytes = "
                 f"{rb} bytes must divide the bus word (axi_data_width / 8 = {BB} bytes) or "
                 f"be a multiple of it, so that K rows are read packed; allowed "
                 f"predict_keys = 1 with this d, data_width and axi_data_width")
            need(rb >= BB or cfg.block_size % (BB // rb) == 0,
                 f"predict_keys = {P} with memory = \"axi\": block_size = {cfg.block_size} "
                 f"must be a multiple of the {BB // max(rb, 1)} K rows a bus word holds "
                 f"(axi_data_width / 8 = {BB} bytes, rows of {rb} bytes), so that every tile "
                 f"starts on a bus word")
            need(cfg.cores == 1,
                 f"predict_keys = {P} with cores = {cfg.cores}: several keys a cycle are "
                 f"built for one memory-attached core; allowed cores = 1 with "
                 f"predict_keys > 1")
        need(cfg.derived.out_width <= 32,
             f"out_width = {cfg.derived.out_width} (from data_width and out_frac) must fit "
             f"the 32-bit O elements in memory; lower out_frac")
    der = cfg.derived
    widest = max(("o_width", der.o_width + cfg.w_frac + 1),        # o · r before the shift
                 ("out_width", der.o_width + cfg.out_frac + 1),    # o · 2^out_frac before /l
                 ("prod_width", der.prod_width + 1),
                 key=lambda item: item[1])
    need(widest[1] <= GOLDEN_INT_BITS,
         f"derived width {widest[0]} needs {widest[1]} bits in an intermediate product, "
         f"more than the {GOLDEN_INT_BITS} the golden model supports; lower max_seq_len, "
         f"w_frac, c_bits or out_frac")


def _validate_kv_source(cfg, need):
    """The on-demand K/V mode's rules (``kv_source = "project"``)."""
    if cfg.kv_source == "given":
        need(cfg.d_model == 0,
             f"d_model = {cfg.d_model} is the token width of kv_source = \"project\"; "
             f"allowed d_model = 0 with kv_source = \"given\"")
        return
    for name, value, allowed in (("memory", cfg.memory, "axi"),
                                 ("data_width", cfg.data_width, 8),
                                 ("cores", cfg.cores, 1), ("predict_keys", cfg.predict_keys, 1)):
        shown = f'"{value}"' if isinstance(value, str) else value
        want = f'"{allowed}"' if isinstance(allowed, str) else allowed
        need(value == allowed,
             f"kv_source = \"project\" with {name} = {shown}: the on-demand K/V mode is "
             f"built for the memory-attached core with int8 tokens and weights, one core "
             f"and one key a cycle; allowed {name} = {want}")
    need(cfg.d_model >= 2 and cfg.d_model % 2 == 0,
         f"d_model = {cfg.d_model} must be even and at least 2 with kv_source = \"project\" "
         f"(two LZ codes a byte); allowed 2 … 1024")
    need(cfg.d_model % cfg.khat_lanes == 0,
         f"khat_lanes = {cfg.khat_lanes} must divide d_model = {cfg.d_model}")
    need(cfg.d % cfg.proj_macs == 0,
         f"proj_macs = {cfg.proj_macs} must divide d = {cfg.d}")
    # The weights are read as whole bus words and cut into the units' load words (a word of
    # khat_lanes · d codes, one of proj_macs weights): one of word and bus divides the other.
    BB = cfg.axi_data_width // 8
    for what, size in (("khat_lanes · d / 2 (bytes of a word of LZ codes)",
                        cfg.khat_lanes * cfg.d / 2), ("proj_macs", cfg.proj_macs)):
        need(size == int(size) and (BB % size == 0 or size % BB == 0),
             f"{what} = {size:g} must divide the bus word (axi_data_width / 8 = {BB} bytes) "
             f"or be a multiple of it with kv_source = \"project\"")
    need(cfg.d * cfg.d_model // 2 % BB == 0 and 8 * cfg.d % BB == 0,
         f"d = {cfg.d}, d_model = {cfg.d_model}: each head's LZ codes (d · d_model / 2 = "
         f"{cfg.d * cfg.d_model // 2} bytes) and biases (8 · d = {8 * cfg.d} bytes) must fill "
         f"whole bus words (axi_data_width / 8 = {BB} bytes) with kv_source = \"project\"")


@dataclass(frozen=True)
class RunParams:
    """Run-time parameters of one attention call (the core's registers).

    Parameters
    ----------
    seq_len : int
        S, keys in the sequence, ``1 … max_seq_len``.
    top_k : int
        Keys kept per tile, ``1 … k_max``; ignored in dense mode.
    radius : int
        Sphere radius R in Â units, ``0 … radius_inf``; ``radius_inf`` disables clipping.
    scale_log2e : int
        c = s_q·s_k·log2(e)/√d as an unsigned fixed-point value with ``c_frac`` fractional bits.
    dense : bool
        Dense mode: every key, natural order, no prediction. The speed-up baseline.
    adapt_mass : int
        Adaptive budget: the softmax mass ``p = adapt_mass / 2^ADAPT_MASS_FRAC`` of the
        predicted row that the eligible keys must hold, ``0 … 256``; 0 (the default) is the
        fixed budget. Needs ``adapt_bins > 0``.
    adapt_scale : int
        ``c_sel``, log2 units per Â unit of the selection's softmax (``c`` over a temperature),
        unsigned with ``c_frac`` fraction bits like ``scale_log2e``.
    adapt_shift : int
        Histogram bin width ``2^adapt_shift`` in Â units.
    tail_scale : int
        The tail blend (docs/numerics.md, "Tail blend"): ``alpha·c``, log2 units per Â unit
        of the softmax that predicts a row's dropped mass, unsigned with ``c_frac`` fraction
        bits like ``scale_log2e``; 0 (the default) is off. Needs the adaptive budget
        (``adapt_mass > 0``) in sparse mode.
    """
    seq_len: int
    top_k: int
    radius: int
    scale_log2e: int
    dense: bool = False
    adapt_mass: int = 0
    adapt_scale: int = 0
    adapt_shift: int = 0
    tail_scale: int = 0

    @property
    def adaptive(self):
        """The adaptive budget is on (``adapt_mass > 0``)."""
        return self.adapt_mass > 0

    @property
    def tail(self):
        """The tail blend is on (``tail_scale > 0``; :meth:`validate` requires the adaptive
        budget in sparse mode with it)."""
        return self.tail_scale > 0

    def validate(self, cfg):
        """Each value within what its register takes (:mod:`spec.regmap`); S at least 1."""
        for name in ("adapt_mass", "adapt_scale", "adapt_shift", "tail_scale"):
            value = getattr(self, name)
            if not cfg.adapt_bins and value != 0:
                raise ConfigError(f"{name} = {value!r} needs a core with adaptive selection "
                                  f"(adapt_bins > 0); this config has adapt_bins = 0")
        regs = (("seq_len", None), ("top_k", "top_k"), ("radius", "radius"),
                ("scale_log2e", "scale"))
        if cfg.adapt_bins:
            regs += tuple((n, n) for n in ("adapt_mass", "adapt_scale", "adapt_shift",
                                           "tail_scale"))
        for name, reg in regs:
            lo, hi = (1, cfg.max_seq_len) if reg is None else register(reg).legal(cfg)
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, not {value!r}")
            if not lo <= value <= hi:
                raise ConfigError(f"{name} = {value} is out of range for this config; "
                                  f"allowed {lo} … {hi}")
        if not isinstance(self.dense, bool):
            raise ConfigError(f"dense must be true or false, not {self.dense!r}")
        if self.tail_scale and (self.dense or not self.adaptive):
            raise ConfigError(f"tail_scale = {self.tail_scale} (the tail blend) needs the "
                              f"adaptive budget in sparse mode; this call has adapt_mass = "
                              f"{self.adapt_mass}, dense = {self.dense}; allowed tail_scale = 0 "
                              f"there, or adapt_mass 1 … 256 with dense = false")
        return self

    @staticmethod
    def scale_from_float(cfg, c):
        """Quantise a real ``c`` to the ``scale_log2e`` register (round to nearest); checks range."""
        value = round(c * (1 << cfg.c_frac))
        top = (1 << cfg.c_bits) - 1
        if not 0 <= value <= top:
            raise ConfigError(f"scale_log2e = {c!r} does not fit c_bits = {cfg.c_bits} with "
                              f"c_frac = {cfg.c_frac}; representable 0 … {top / (1 << cfg.c_frac)}")
        return value


PRESETS = {
    # Small enough that every test runs in seconds; odd-free powers of two.
    "tiny": SofaConfig(name="tiny", d=8, block_size=8, max_seq_len=64, sort_width=8, k_max=2,
                       mac_lanes=4, dlzs_lanes=8, exp_frac=6, exp_lut_bits=6, w_frac=10,
                       out_frac=6),
    # The reference design point: the paper's 16-to-4 sorter with Bc = 16.
    "default": SofaConfig(name="default"),
    # iCE40 UP5K (5280 LC, 8 DSP, 30 EBR), with the UART host link: a four-element head, one
    # MAC, the 4-to-2 sorter, no counters and plain stage registers (skid buffers and
    # counters do not fit beside the link; 12 MHz needs no skid buffers).
    "ice40": SofaConfig(name="ice40", d=4, block_size=8, max_seq_len=256, sort_width=4,
                        k_max=2, mac_lanes=1, dlzs_lanes=2, exp_frac=6, exp_lut_bits=6,
                        w_frac=12, out_frac=6, counter_width=0, skid_buffers=False),
    # ECP5 LFE5U-85F: the default head with a quarter of the lanes.
    "ecp5": SofaConfig(name="ecp5", d=64, block_size=16, max_seq_len=512, sort_width=16,
                       k_max=4, mac_lanes=8, dlzs_lanes=16),
    # The memory-attached core: the ecp5 compute with two query lanes, K/V in memory behind
    # a 128-bit AXI4 bus (a K row in four beats, the pace of 16 DLZS lanes), any S to 64k.
    "axi": SofaConfig(name="axi", d=64, block_size=16, max_seq_len=65536, sort_width=16,
                      k_max=4, q_lanes=2, mac_lanes=8, dlzs_lanes=16, memory="axi",
                      axi_data_width=128, axi_max_burst=16, axi_max_reads=8),
    # The ECP5 memory board (ulx3s-85f, orangecrab-85f): one query lane and d = 32 (the head
    # size of all-MiniLM-L6-v2, 384 / 12), half the lanes and a 64-bit bus at the axi preset's
    # pace (a row in four beats, eight cycles a key in SU-FA): half the datapath, so the
    # board top stays local beside its block RAM for 75 MHz (docs/board-flow.md).
    "ecp5-axi": SofaConfig(name="ecp5-axi", d=32, block_size=16, max_seq_len=65536,
                           sort_width=16, k_max=4, q_lanes=1, mac_lanes=4, dlzs_lanes=8,
                           memory="axi", axi_data_width=64, axi_max_burst=16,
                           axi_max_reads=8),
    # On-demand K/V on the axi preset's compute: MiniLM's token width (384), K̂ from X on
    # 8 × 64 shift-adders (an X row in 48 cycles), K and V projected on 16 multipliers.
    "axi-project": SofaConfig(name="axi-project", d=64, block_size=16, max_seq_len=65536,
                              sort_width=16, k_max=4, q_lanes=2, mac_lanes=8, dlzs_lanes=16,
                              memory="axi", axi_data_width=128, axi_max_burst=16,
                              axi_max_reads=8, kv_source="project", d_model=384,
                              khat_lanes=8, proj_macs=16),
}


def preset(name):
    """The named preset; an unknown name is a :class:`ConfigError` listing the known ones."""
    if not isinstance(name, str) or name not in PRESETS:
        shown = repr(name) if isinstance(name, str) else f"{type(name).__name__} {name!r}"[:60]
        raise ConfigError(f"unknown preset {shown}; known presets are {', '.join(PRESETS)}")
    return PRESETS[name]


def load_config(*, preset_name=None, path=None, what="config file"):
    """A config from a JSON file (``path``, read with the bounds of :mod:`spec.validate`),
    else from a preset name (``default`` if neither is given). ``what`` names where the path
    came from (``"--config"``) in front of every error about the file."""
    if path is not None:
        path = Path(path)
        source = f"{what} {path}"
        try:
            cfg = SofaConfig.from_json(read_text(path, what=what), source=source)
            if cfg.name == "custom":
                cfg = cfg.replace(name=check_name("the file's name (the config's name)",
                                                  path.stem))
        except ConfigError as e:
            message = str(e)
            raise ConfigError(message if message.startswith(source)
                              else f"{source}: {message}") from None
        return cfg
    return preset("default" if preset_name is None else preset_name)
