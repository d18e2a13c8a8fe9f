"""The DSE's search space: per-layer (or per-head) settings, trial parameters and warm starts.

Per layer: ``Bc ∈ {16, 32, 64}`` (compile time: it fixes the hardware), keep ``n/32`` of a
tile for ``n = 2 … 16`` (6.25 … 50 %, ``top_k = round(keep·Bc)``, :func:`top_k_for`) and a
sphere radius ``R ∈ {∞, 8, 6, 5, 4, 3, 2}`` in natural-log logit units; with ``per_head``,
``top_k`` and ``R`` per head. The radius-only space has ``top_k = Bc`` and ``R`` per layer,
log-uniform in :data:`RADIUS_RANGE`.

The adaptive space (``--adaptive``) searches the adaptive budget's mass ``p = n/256`` per
layer (with ``per_head``, per head) from :data:`MASS_GRID`, under a fixed rule
(:class:`AdaptiveRule`: Bc 64, at most 32 keys of a tile, the temperature, 32 bins and
``beta`` of :class:`sim.adaptive.SofaAdaptive` and :data:`sim.longstudy.ADAPTIVE`); with
``search_temperature`` one temperature for the whole model from :data:`TEMPERATURES` too.
The tail blend (:class:`sim.adaptive.SofaAdaptiveTail`, ``TAIL_SCALE = alpha·c``) is the
rule's ``tail_alpha`` (0: off): one alpha for every layer, or with ``search_tail`` one per
layer from :data:`TAIL_ALPHAS` (off, 1.0, 1.4, 1.8).

A trial's Optuna parameters are ``L{l}_bc``, ``L{l}_keep`` and ``L{l}_R`` (an index into
:data:`RADII_NAT`), per head ``L{l}H{h}_keep`` and ``L{l}H{h}_R``, in the radius-only space
``L{l}_R`` in logit units, or in the adaptive space ``L{l}_mass`` (per head ``L{l}H{h}_mass``)
and, if searched, ``T`` and the tail blend's ``L{l}_tail`` (an alpha of :data:`TAIL_ALPHAS`);
:func:`plan_from_params` turns them into a plan, a tuple of one :class:`LayerSetting` per
layer.
"""

import dataclasses
import math
from dataclasses import dataclass

from sim.adaptive import SofaAdaptive, SofaAdaptiveTail
from sim.dse.cost import kept_full, prediction_share
from sim.longstudy import ADAPTIVE, TAIL_ALPHA


__all__ = ["BLOCK_SIZES", "KEEP_DEN", "KEEP_STEPS", "RADII_NAT", "RADIUS_RANGE", "HeadSetting",
           "LayerSetting", "AdaptiveRule", "MASS_GRID", "TEMPERATURES", "TAIL_ALPHAS", "TAIL_ALPHA", "top_k_for", "uniform_plan", "plan_from_params", "suggest_main",
           "suggest_radius", "suggest_adaptive", "adaptive_plan", "parse_radius",
           "radius_text", "pct"]

BLOCK_SIZES = (16, 32, 64)
#: keep = n / KEEP_DEN of a tile, n in KEEP_STEPS (6.25 … 50 %).
KEEP_DEN = 32
KEEP_STEPS = tuple(range(2, 17))
#: Radius choices in natural-log logit units; index 0 (∞) disables clipping.
RADII_NAT = (math.inf, 8.0, 6.0, 5.0, 4.0, 3.0, 2.0)
#: The radius-only study searches R per layer in this range (log scale).
RADIUS_RANGE = (0.2, 5.0)
#: The adaptive space's masses ``n`` (``p = n/256``): 12.5 … 75 % in steps of 1/32.
MASS_GRID = tuple(range(32, 193, 8))
#: The temperatures of the adaptive space when it searches one (``--search-temperature``).
TEMPERATURES = (1.0, 1.5, 2.0, 2.5)
#: The tail blend's alphas of the adaptive space when it searches them per layer
#: (``--tail search``; 0: the blend off). The long-input study swept 1.0 … 1.8 and uses
#: :data:`sim.longstudy.TAIL_ALPHA` (1.4), the default of ``--tail on``.
TAIL_ALPHAS = (0.0, 1.0, 1.4, 1.8)


@dataclass(frozen=True)
class AdaptiveRule:
    """The adaptive budget's fixed settings (:class:`sim.adaptive.SofaAdaptive`): tile
    ``block_size``, at most ``cap`` keys of a tile, the ``temperature`` of the selection
    softmax, ``bins`` histogram bins (compile time) and ``beta`` (a bin spans ``beta`` …
    ``2·beta`` log2 units) and the tail blend's ``tail_alpha`` (``TAIL_SCALE = alpha·c``;
    0: off, as before the blend). The defaults are the long-input study's
    (:data:`sim.longstudy.ADAPTIVE`, and ``SofaAdaptive``'s bins and beta). A layer's rule
    carries its own alpha when the search chooses one per layer."""
    block_size: int = ADAPTIVE["block_size"]
    cap: int = ADAPTIVE["cap"]
    temperature: float = ADAPTIVE["temperature"]
    bins: int = 32
    beta: float = 0.25
    tail_alpha: float = 0.0

    @property
    def tail(self):
        """The tail blend is on (``tail_alpha > 0``)."""
        return self.tail_alpha > 0

    def predictor(self, mass=MASS_GRID[0]):
        """The :class:`sim.adaptive.SofaAdaptive` of this rule at ``mass``, with the tail
        blend :class:`sim.adaptive.SofaAdaptiveTail` (the DSE takes its ``adapt_scale``,
        ``adapt_shift`` and ``tail_scale`` registers from it)."""
        if self.tail:
            return SofaAdaptiveTail(self.block_size, self.cap, mass, self.temperature,
                                    self.tail_alpha, self.bins, self.beta)
        return SofaAdaptive(self.block_size, self.cap, mass, self.temperature, self.bins,
                            self.beta)

    def to_dict(self):
        """The rule as JSON; ``tail_alpha`` only when the blend is on (so a rule without
        it reads as before the blend: the studies' signatures and older plans)."""
        return {"block_size": self.block_size, "cap": self.cap,
                "temperature": self.temperature, "bins": self.bins, "beta": self.beta,
                **({"tail_alpha": self.tail_alpha} if self.tail else {})}


@dataclass(frozen=True)
class HeadSetting:
    """Run-time choice of one head: keys kept per tile (the cap under the adaptive budget),
    sphere radius (logit units) and the adaptive budget's mass ``adapt_mass`` (``p =
    adapt_mass/256``; 0 is the fixed budget)."""
    top_k: int
    radius_nat: float = math.inf
    adapt_mass: int = 0


@dataclass(frozen=True)
class LayerSetting:
    """One layer: its block size (compile time), each head's :class:`HeadSetting` and the
    adaptive budget's :class:`AdaptiveRule` (None: the fixed budget, no bins in the core)."""
    block_size: int
    heads: tuple
    adapt: AdaptiveRule = None

    @property
    def adapt_bins(self):
        """Histogram bins of the layer's core (0 without the adaptive budget)."""
        return 0 if self.adapt is None else self.adapt.bins

    @property
    def k_max(self):
        return max(h.top_k for h in self.heads)


def top_k_for(block_size, n):
    """``top_k`` for keeping ``n/32`` of a ``block_size``-key tile (round half up, ≥ 1)."""
    return max(1, min(block_size, (2 * n * block_size + KEEP_DEN) // (2 * KEEP_DEN)))


def uniform_plan(n_layers, n_heads, block_size, top_k, radius_nat=math.inf):
    """The same setting in every layer and head (a fixed-ratio point)."""
    layer = LayerSetting(block_size, (HeadSetting(top_k, radius_nat),) * n_heads)
    return (layer,) * n_layers


def adaptive_plan(masses, rule, n_heads=None, alphas=None):
    """The adaptive plan of ``masses``: one mass per layer (ints; ``n_heads`` heads alike) or
    one tuple of per-head masses per layer, under ``rule`` (:class:`AdaptiveRule`); with
    ``alphas`` one tail-blend alpha per layer (0: off) in place of the rule's."""
    layers = []
    for l, m in enumerate(masses):
        ms = tuple(m) if isinstance(m, (tuple, list)) else (m,) * n_heads
        r = rule if alphas is None else dataclasses.replace(rule,
                                                            tail_alpha=float(alphas[l]))
        layers.append(LayerSetting(rule.block_size, tuple(
            HeadSetting(rule.cap, math.inf, int(x)) for x in ms), r))
    return tuple(layers)


def plan_from_params(params, n_layers, n_heads, radius_bc=None, adaptive=None):
    """The plan of a trial's parameters: the main space (``L{l}_bc``, ``L{l}_keep``,
    ``L{l}_R`` or per head ``L{l}H{h}_keep``/``L{l}H{h}_R``), with ``radius_bc`` the
    radius-only space (``L{l}_R`` in logit units, ``top_k = Bc``), with ``adaptive`` (an
    :class:`AdaptiveRule`) the adaptive space (``L{l}_mass`` or ``L{l}H{h}_mass``, and ``T``
    in place of the rule's temperature and ``L{l}_tail`` in place of its tail alpha if
    searched)."""
    if adaptive is not None:
        if "T" in params:
            adaptive = dataclasses.replace(adaptive, temperature=float(params["T"]))
        alphas = None
        if "L0_tail" in params:
            alphas = [float(params[f"L{l}_tail"]) for l in range(n_layers)]
        return adaptive_plan([params[f"L{l}_mass"] if f"L{l}_mass" in params else
                              tuple(params[f"L{l}H{h}_mass"] for h in range(n_heads))
                              for l in range(n_layers)], adaptive, n_heads, alphas)
    layers = []
    for l in range(n_layers):
        if radius_bc is not None:
            hs = HeadSetting(radius_bc, float(params[f"L{l}_R"]))
            layers.append(LayerSetting(radius_bc, (hs,) * n_heads))
            continue
        bc = int(params[f"L{l}_bc"])
        if f"L{l}_keep" in params:
            hs = HeadSetting(top_k_for(bc, params[f"L{l}_keep"]), RADII_NAT[params[f"L{l}_R"]])
            heads = (hs,) * n_heads
        else:
            heads = tuple(HeadSetting(top_k_for(bc, params[f"L{l}H{h}_keep"]),
                                      RADII_NAT[params[f"L{l}H{h}_R"]]) for h in range(n_heads))
        layers.append(LayerSetting(bc, heads))
    return tuple(layers)


def _tags(n_heads, per_head):
    """Parameter-name infixes: one per head (``H0`` …) or one for the layer (``""``)."""
    return [f"H{h}" for h in range(n_heads)] if per_head else [""]


def suggest_main(trial, n_layers, n_heads, per_head):
    """Ask an Optuna ``trial`` for a point of the main space; returns its plan."""
    for l in range(n_layers):
        trial.suggest_categorical(f"L{l}_bc", BLOCK_SIZES)
        for tag in _tags(n_heads, per_head):
            trial.suggest_int(f"L{l}{tag}_keep", KEEP_STEPS[0], KEEP_STEPS[-1])
            trial.suggest_int(f"L{l}{tag}_R", 0, len(RADII_NAT) - 1)
    return plan_from_params(trial.params, n_layers, n_heads)


def suggest_radius(trial, n_layers, n_heads, bc):
    """Ask an Optuna ``trial`` for a point of the radius-only space at ``Bc = bc``."""
    for l in range(n_layers):
        trial.suggest_float(f"L{l}_R", *RADIUS_RANGE, log=True)
    return plan_from_params(trial.params, n_layers, n_heads, radius_bc=bc)


def suggest_adaptive(trial, n_layers, n_heads, per_head, rule, search_temperature=False,
                     search_tail=False):
    """Ask an Optuna ``trial`` for a point of the adaptive space under ``rule`` (with
    ``search_temperature`` its temperature from :data:`TEMPERATURES`, with ``search_tail``
    each layer's tail-blend alpha from :data:`TAIL_ALPHAS`)."""
    if search_temperature:
        trial.suggest_categorical("T", TEMPERATURES)
    for l in range(n_layers):
        for tag in _tags(n_heads, per_head):
            trial.suggest_int(f"L{l}{tag}_mass", MASS_GRID[0], MASS_GRID[-1],
                              step=MASS_GRID[1] - MASS_GRID[0])
        if search_tail:
            trial.suggest_categorical(f"L{l}_tail", TAIL_ALPHAS)
    return plan_from_params(trial.params, n_layers, n_heads, adaptive=rule)


def warm_start(budget, n_layers, n_heads, per_head, d, seq_lens):
    """Uniform starting points: for each Bc the largest keep that meets the budget on the
    search texts (sequence lengths ``seq_lens``) without clipping (R = ∞), as trial
    parameters of the main space."""
    out = []
    for bc in BLOCK_SIZES:
        ok = [n for n in KEEP_STEPS
              if 1 - prediction_share(d) - kept_full(seq_lens, bc, top_k_for(bc, n)) >= budget]
        if not ok:
            continue
        p = {}
        for l in range(n_layers):
            p[f"L{l}_bc"] = bc
            for tag in _tags(n_heads, per_head):
                p[f"L{l}{tag}_keep"] = max(ok)
                p[f"L{l}{tag}_R"] = 0
        out.append(p)
    return out


def parse_radius(x):
    """A radius as stored in JSON (a number, or ``"inf"``/None for no clipping)."""
    return math.inf if x in (None, "inf") else float(x)


def radius_text(r):
    """A radius for people: ``∞`` or three significant digits."""
    return "∞" if math.isinf(r) else f"{r:.3g}"


def pct(x, nd=1):
    """A fraction as a percentage (``0.75`` → ``75.0 %``)."""
    return f"{100 * x:.{nd}f} %"
