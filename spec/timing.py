"""Latency and initiation interval of every unit, as formulas of the configuration.

The units (:mod:`hw`) report these figures as their ``latency``/``ii`` properties (and the tests
check them against the simulation); the cycle model (:mod:`sim.perf`) and the DSE take them from
here, so nothing builds hardware to learn a number.

Latency is counted in cycles from a unit accepting an input beat to the first output beat that
depends on it, with no stalls; ``ii`` is the cycles between accepted inputs in steady state.
"""

from fractions import Fraction
from functools import lru_cache

from spec.sortnet import top_k_network
from spec.job import k_read_beats
from spec.numerics import TAIL_FRAC
from spec.validate import ConfigError, check_int


__all__ = ["ITERATIVE_DIVIDER_STEPS", "divider_timing", "dlzs_tree_levels", "dlzs_latency",
           "SadsTiming", "sads_timing", "SadsBankTiming", "sads_bank_timing", "predict_keys_for", "sufa_latency", "core_latency", "EXP2_LATENCY",
           "SKID_LATENCY", "V_TILES", "JOB_CHECK_CYCLES", "ENGINE_START_DELAY", "job_check_cycles", "JOB_SPLIT_PRODUCTS", "job_split_cycles", "ADAPT_COUNT_CYCLES",
           "ADAPT_EMIT_CYCLES", "adapt_sweep_cycles", "adapt_gate_cycles", "tail_sweep_cycles"]


#: Tiles of V rows the memory-attached core holds on chip (one fetched while the lanes attend
#: to the other).
V_TILES = 2
#: Quotient bits an iterative divider resolves per cycle.
ITERATIVE_DIVIDER_STEPS = 2
#: :class:`hw.exp2.Exp2`: the table's read register and the output register.
EXP2_LATENCY = 2
#: :class:`hw.skid.SkidBuffer`, in both modes.
SKID_LATENCY = 1
#: :class:`hw.axicore.SofaAxiCore`: cycles from the start write to JOB_ERROR and the decision
#: to start the engines (:data:`ENGINE_START_DELAY` later). The eight range products (a base,
#: head and row term per tensor) issue one a cycle into a five-stage pipeline (operands, two
#: multiply stages, accumulate, compare), and the error code is registered before it decides
#: the start: 1 + 8 + 4 + 2.
JOB_CHECK_CYCLES = 15
#: Cycles from a passed check (or the split of several cores) to the engines' start: the start
#: comes from a flip-flop (the check's decision into the engines was a longest path).
ENGINE_START_DELAY = 1


def job_check_cycles(cfg):
    """:data:`JOB_CHECK_CYCLES`, or with on-demand K/V (``kv_source = "project"``) 21: two
    products for each of Q, X, O and the four weight tensors (a weight tensor's second
    product is 0)."""
    return JOB_CHECK_CYCLES + 6 if cfg.kv_source == "project" else JOB_CHECK_CYCLES
#: Products the split of a job across several cores needs (heads a group × the four head
#: strides, queries a chunk × the Q and O row strides).
JOB_SPLIT_PRODUCTS = 6


def job_split_cycles(cores):
    """Cycles between a passed check and the engines' start with ``cores > 1``
    (:class:`hw.axicore.SofaAxiCore`): the products issue one a cycle into a four-stage
    pipeline, then one engine's descriptor a cycle, then the start: ``6 + 5 + cores``; 0 with
    one core."""
    return 0 if cores == 1 else JOB_SPLIT_PRODUCTS + 5 + cores



def divider_timing(quot_width, *, iterative):
    """``(latency, ii)`` of a divider with a ``quot_width``-bit quotient.

    It computes ``quot_bits = quot_width + 1`` quotient bits (the extra bit rounds). Pipelined:
    latency ``quot_bits + 2`` (input register, one stage per bit, output), ii 1. Iterative,
    ``ITERATIVE_DIVIDER_STEPS`` bits a cycle: ``c = ceil(quot_bits / steps)`` cycles of work,
    latency ``c + 2``, ii ``c + 1`` (one cycle to load the next operands).
    """
    steps = quot_width + 1
    if iterative:
        cycles = -(-steps // ITERATIVE_DIVIDER_STEPS)
        return cycles + 2, cycles + 1
    return steps + 2, 1


def dlzs_tree_levels(cfg):
    """Adder-tree levels of DLZS's lane sum: ``ceil(log2 dlzs_lanes)``."""
    return (cfg.dlzs_lanes - 1).bit_length()


def dlzs_latency(cfg):
    """DLZS: ``3 + ceil(log2 dlzs_lanes)`` (shift, lane register, tree, accumulator); its ii is
    ``dlzs_cycles = d / dlzs_lanes`` cycles per key."""
    return 3 + dlzs_tree_levels(cfg)


def sufa_latency(cfg, *, iterative_divider=False):
    """SU-FA, from a key's acceptance to the first ``O`` beat of a one-key row:
    ``2·mac_cycles + 12 + divider latency`` (Q·K chunks, P·V chunks, the score, the exponent
    argument's product, exp2, operation and product registers, the divide buffer and the
    divider)."""
    div_lat, _ = divider_timing(cfg.derived.out_width, iterative=iterative_divider)
    return 2 * cfg.derived.mac_cycles + 12 + div_lat


#: :class:`hw.adapt.AdaptiveGate`: cycles a key to count the buffered row, and to replay it.
ADAPT_COUNT_CYCLES = 2
ADAPT_EMIT_CYCLES = 2


def adapt_sweep_cycles(bins):
    """:class:`hw.adapt.AdaptiveGate`: the cycles from the acceptance of a row's last key to
    its first key leaving, beyond the ``ADAPT_COUNT_CYCLES·S`` of counting: ``2·bins + 8``
    (the weights' sweep with its three registered steps, ``bins + 3``; the mass goal, 1; the
    threshold sweep with its registered product, ``bins + 1``; the key threshold, the first
    read and the first key, 3)."""
    return 2 * bins + 8


def tail_sweep_cycles(bins, frac=TAIL_FRAC):
    """:class:`hw.adapt.AdaptiveGate` with the tail blend on: the cycles its row adds before
    the first key leaves, ``bins + frac + 4`` (the tail sweep, ``bins + 3``; the division of
    ``f``, ``frac = TAIL_FRAC`` cycles; ``f`` out, 1, when it is taken at once)."""
    return bins + frac + 4


def adapt_gate_cycles(seq_len, bins):
    """The gate's cycles of one ``seq_len``-key row beyond its fill (0 without bins):
    counting, the sweeps and the replay, ``4·seq_len + 2·bins + 8``."""
    if not bins:
        return 0
    return (ADAPT_COUNT_CYCLES + ADAPT_EMIT_CYCLES) * seq_len + adapt_sweep_cycles(bins)


def core_latency(cfg, *, iterative_divider=False):
    """``sofa_top``: a one-key dense query (S = 1) from acceptance to its first ``O`` beat,
    pipeline empty: SU-FA's latency + 4 (query FIFO, dense generator, K/V read, output skid
    buffer)."""
    return sufa_latency(cfg, iterative_divider=iterative_divider) + 4


class SadsTiming:
    """Timing of :class:`hw.sads.SADS` for a config, a network kind and a pipelining.

    Parameters
    ----------
    cfg : spec.config.SofaConfig
    kind : str
        Network kind (``"oddeven"`` or ``"bitonic"``).
    layers_per_stage : int
        Comparator layers between pipeline registers.

    Attributes
    ----------
    network : spec.sortnet.Network
        The ``sort_width``-to-``k_max`` network with ``k_max`` presorted inputs.
    stages : int
        ``P = ceil(depth / layers_per_stage)``, at least 1.
    latency : int
        ``P + 4``: a key's acceptance to the first decision that depends on it.
    queue_depth : int
        Tiles whose selection may wait for output: ``max(2, floor((P + 1 + k_max) / Bc) + 1)``.
    ii : int or float
        Cycles per key in steady state with every batch entering the sorter, from
        :meth:`schedule`.
    tile_latency : int
        A tile's last key accepted to its first ``sel`` beat, steady state.
    """

    def __init__(self, cfg, kind="oddeven", layers_per_stage=1):
        if layers_per_stage < 1:
            raise ValueError(f"layers_per_stage = {layers_per_stage} must be at least 1")
        self.cfg = cfg
        self.network = top_k_network(cfg.sort_width, cfg.k_max, kind, presorted=cfg.k_max)
        self.stages = max(1, -(-self.network.depth // layers_per_stage))
        self.latency = self.stages + 4
        self.queue_depth = max(2, (self.stages + 1 + cfg.k_max) // cfg.block_size + 1)
        steady = self.steady(self.queue_depth)
        ii = steady["ii"]
        self.ii = int(ii) if ii.denominator == 1 else float(ii)
        self.tile_latency = steady["tile_latency"]

    def steady(self, queue_depth):
        """``{"ii": Fraction, "tile_latency": int}`` over twelve tiles, start-up skipped."""
        cfg = self.cfg
        tiles = 12
        acc, out = self.schedule(tiles * cfg.block_size, top_k=cfg.k_max,
                                 queue_depth=queue_depth)
        B = cfg.block_size
        a, b = 4, tiles - 1                       # skip the start-up tiles
        ii = Fraction(acc[b * B] - acc[a * B], (b - a) * B)
        return {"ii": ii, "tile_latency": out[a] - acc[(a + 1) * B - 1]}

    def schedule(self, keys, *, top_k, queue_depth=None):
        """Cycle-exact timing of one row of ``keys`` keys under steady traffic (a key offered
        every cycle, ``sel`` always ready) when every batch enters the sorter (e.g. strictly
        increasing Â). Mirrors the control of :class:`hw.sads.SADS` (``queue_depth``
        overrides :attr:`queue_depth`, for exploring it).

        Returns
        -------
        (accept, first_beat) : (list of int, list of int)
            The cycle each key is accepted (the first key at cycle 0) and the cycle each tile's
            first ``sel`` beat is valid.
        """
        cfg, der = self.cfg, self.cfg.derived
        B, bsz, P = cfg.block_size, der.batch, self.stages
        Q = self.queue_depth if queue_depth is None else queue_depth
        pipe = [None] * P                    # network stages; pipe[-1] is the output
        queue = []                           # [beats left after this one, first flag]
        accept, first_beat = [], []
        key = bpos = tpos = 0
        buf_full = busy = False
        buf = L = G = None
        reserved, credit = 0, True
        t = 0
        n_tiles = -(-keys // B)
        while len(first_beat) < n_tiles:
            o = pipe[-1]
            emerge_nf = o is not None and not o["final"]
            decide = L is not None and (not busy or emerge_nf) and (not L["final"] or credit)
            transfer = buf_full and (L is None or decide)
            take = (not buf_full or transfer) and key < keys
            pop = bool(queue) and queue[0][0] == 0
            # -- register updates
            if queue:
                if queue[0][1]:
                    first_beat.append(t)
                if pop:
                    queue.pop(0)
                else:
                    queue[0] = [queue[0][0] - 1, False]
            if o is not None and o["final"]:
                queue.append([min(top_k, o["keys"]) - 1, True])
            reserved += int(decide and L["final"]) - int(pop)
            credit = reserved < Q
            pipe = [G] + pipe[:-1]           # every batch enters: every decided batch launches
            if decide:
                busy = not L["final"]
            elif emerge_nf:
                busy = False
            G = dict(final=L["final"], keys=L["tile_keys"]) if decide else None
            if transfer:
                L = buf
            elif decide:
                L = None
            if take:
                accept.append(t)
                last = key == keys - 1
                complete = bpos == bsz - 1 or tpos == B - 1 or last
                tile_end = tpos == B - 1 or last
                if complete:
                    buf = dict(final=tile_end, tile_keys=tpos + 1)
                    bpos, tpos = 0, (0 if tile_end else tpos + 1)
                else:
                    bpos, tpos = bpos + 1, tpos + 1
                key += 1
            buf_full = (buf_full and not transfer) or (take and complete)
            t += 1
            if t > 100 * (keys + P + 10):
                raise RuntimeError("SadsTiming.schedule did not converge")
        return accept, first_beat


@lru_cache(maxsize=64)
def sads_timing(cfg, kind="oddeven", layers_per_stage=1):
    """The (cached) :class:`SadsTiming` of ``cfg``; the core builds SADS with the defaults."""
    return SadsTiming(cfg, kind, layers_per_stage)


class SadsBankTiming:
    """Timing of :class:`hw.sadsbank.SADSBank` (``predict_keys = P > 1``): its tiles dealt in
    turn to SADS units.

    Attributes
    ----------
    units : int
        SADS units, ``ceil(P · ii)`` with ``ii`` one SADS's cycles per key, so that together
        they take ``P`` keys a cycle.
    queue_beats : int
        Beats of ``P`` keys each unit's queue holds, ``2 · block_size / P`` (a tile, and the
        start of its next while the tile drains).
    latency : int
        A one-key row's beat accepted to its first ``sel`` beat, pipeline empty:
        ``SADS latency + 2`` (the queue's write and output registers); a beat of ``n`` keys
        takes ``n - 1`` cycles more (its keys enter SADS one a cycle).
    ii : int or float
        Cycles per key in steady traffic: ``max(1/P, ii / units)``.
    """

    def __init__(self, cfg):
        P = cfg.predict_keys
        one = sads_timing(cfg)
        one_ii = Fraction(one.ii).limit_denominator(1000)
        self.units = int(-(-one_ii * P // 1))
        self.queue_beats = 2 * cfg.block_size // P
        self.latency = one.latency + 2
        ii = max(Fraction(1, P), one_ii / self.units)
        self.ii = int(ii) if ii.denominator == 1 else float(ii)


@lru_cache(maxsize=64)
def sads_bank_timing(cfg):
    """The (cached) :class:`SadsBankTiming` of ``cfg``."""
    return SadsBankTiming(cfg)


def predict_keys_for(cfg, top_k):
    """The smallest ``predict_keys`` this config allows for which prediction does not bound
    SU-FA at ``top_k`` keys kept per tile (the sizing rule of docs/architecture.md).

    Per full tile, prediction streams for ``B · max(dlzs_cycles, SADS ii)`` cycles with one
    key a cycle and ``max(B / P · dlzs_cycles, B · bank ii)`` with ``P`` (the cycle model,
    :mod:`sim.perf`); SU-FA spends at least ``top_k · mac_cycles`` (rescales only add). The
    rule is the smallest ``P`` with prediction ≤ SU-FA, i.e. ``P ≥ B · dlzs_cycles / (top_k ·
    mac_cycles)`` when the SADS units keep up. ``P`` runs over 1, 2, 4, 8 where the config
    allows it (configuration validation: ``P`` divides ``block_size`` and ``max_seq_len``, the
    adaptive selection takes 1, the memory-attached core needs K rows that pack into bus
    words, and a tile's K beats bound its prediction too); if none suffices, the smallest
    that predicts fastest.

    Parameters
    ----------
    cfg : spec.config.SofaConfig
        Its own ``predict_keys`` is ignored.
    top_k : int
        Keys kept per tile, ``1 … block_size``.

    Returns
    -------
    int
    """
    from spec.config import PREDICT_KEYS
    der, B = cfg.derived, cfg.block_size
    check_int("top_k", top_k, 1, B)
    sufa = top_k * der.mac_cycles

    def with_keys(P):
        try:
            return cfg.replace(predict_keys=P)
        except ConfigError:                      # the config does not allow P
            return None

    allowed = [(P, one) for P in PREDICT_KEYS if (one := with_keys(P)) is not None]
    times = []
    for P, one in allowed:
        if P == 1:
            predict = B * max(der.dlzs_cycles, sads_timing(one).ii)
        else:
            predict = max(B // P * der.dlzs_cycles, B * sads_bank_timing(one).ii)
        if cfg.memory == "axi":                  # the K tile's beats bound it too
            predict = max(predict, k_read_beats(one, B))
        if predict <= sufa:
            return P
        times.append(predict)
    return allowed[times.index(min(times))][0]
