"""Design-space exploration: per-layer tile size, top-k and sphere radius for a real model.

``sofa dse`` (``make dse``) searches, for all-MiniLM-L6-v2 on the shipped texts
(``data/texts``), a block size ``Bc``, a ``top_k`` and a sphere radius ``R`` per layer (with
``--per-head``: ``top_k`` and ``R`` per head, ``Bc`` per layer) that minimise

    L = (1 − cos) + α·L_sort + β·L_exp + γ·L_cycle      subject to  compute saved ≥ budget

(the SOFA paper's design-space exploration, with the embedding cosine in place of the
fine-tuned model's cross-entropy), with Optuna's TPE sampler (multivariate, constant liar, the
budget as a constraint through ``Trial.set_constraint``). Every trial runs the MiniLM forward
pass (``sim/minilm.py``) with *every* layer's attention replaced by the bit-exact SOFA datapath
(``sim/fastgolden.py``) under the trial's configuration, on a subset of the texts; the chosen
point is then evaluated on all texts. A trial is first screened: its compute saved is
estimated from the selection alone on the dense model's cached Q, K, V (exact without
clipping), and a trial that clearly misses the budget is told at once without the forward
pass (constrained TPE ranks infeasible trials by their violation only).

Terms (all measured in the run, summed over every layer, head and query row):

* **cos**: cosine of the sentence embedding with every attention replaced, against the
  unmodified float model (mean over texts), as in :mod:`sim.accuracy`;
* **compute saved**: ``1 − (DLZS shift-adds·0.2 + 2·d INT8 MACs per selected key) / (2·d per
  query-key pair)``, the accuracy study's definition (prediction included);
* **L_sort**: comparator evaluations (comparators of the layer's pruned SADS network ×
  sorter steps from the SADS counters) per query-key pair, over 5.625, the paper's 16-to-4
  sorter (45 comparators, two steps per 16-key tile) with every batch entering;
* **L_exp**: exp2 evaluations (selected keys + rescales) over dense mode's (every key + its
  rescales) on the same hardware;
* **L_cycle**: core cycles over dense-mode cycles on the same hardware, from a closed form of
  :func:`sim.perf.core_cycles` over the per-tile work (a row takes the longer of its
  prediction and its SU-FA work, :func:`cycles_closed_form`; prediction takes about
  ``S / predict_keys`` cycles a row); the chosen point and the fixed baseline are also run
  through ``core_cycles`` itself.

The hardware of a layer is ``sofa_config`` of the accuracy study (``k_max = top_k``, a sorter
of ``top_k + 12`` inputs, ``max_seq_len = 256``) with the default preset's lane ratio:
``dlzs_lanes = d`` and ``mac_lanes = d/4``; it predicts ``predict_keys`` keys a cycle, not
searched but chosen by the rule :func:`spec.timing.predict_keys_for` for the layer's smallest
``top_k`` (:func:`layer_predict_keys`: the smallest number for which prediction does not bound
SU-FA; the objective has no area term, so a searched ``predict_keys`` would always be the
largest). The plan shows it per layer and per head. The sorter always takes 12 new
keys a step, so a core built with a larger ``k_max`` selects exactly the same keys for a
smaller ``top_k``: the layers that share a ``Bc`` can share one core (``cores`` in the plan).

Search space per layer: ``Bc ∈ {16, 32, 64}``, keep ``n/32`` of a tile for ``n = 2 … 16``
(6.25 … 50 %, ``top_k = round(keep·Bc)``), ``R ∈ {∞, 8, 6, 5, 4, 3, 2}`` in natural-log
logit units (converted per head to Â units as in :class:`sim.predictors.SofaDLZS`). The
first trials of a new study are the uniform configurations just inside the budget.

Scaling out: the study lives in an Optuna storage, by default the SQLite file
``OUT/study.db``, so a search can be stopped and resumed. ``--workers N`` evaluates ``N``
trials at a time in local processes, asked and told in a fixed order, so that a run with a
given ``--seed`` is reproducible. ``--worker`` runs a plain worker against ``--storage`` (a
shared database URL lets many machines work on one study) until the study holds ``--trials``
complete trials; any later coordinator run reports from the finished study (such runs are not
reproducible: trial order depends on timing).

Adaptive selection: with a fixed ``Bc`` (``--radius-bc``, 32) and ``top_k = Bc`` the selection
is sphere clipping alone. One radius for all layers is calibrated to the compute of the fixed
top-k point at that ``Bc`` (the largest ``top_k`` that meets the budget), and a second study
tunes ``R`` per layer under the same compute; both are compared with the fixed top-k.

Adaptive budget (``--adaptive``): the study searches instead the mass ``p = n/256`` of the
adaptive selection budget (:class:`sim.adaptive.SofaAdaptive`, docs/numerics.md) per layer
(``--per-head``: per head), ``n ∈`` :data:`MASS_GRID`, under a fixed rule
(:class:`AdaptiveRule`: Bc 64, at most 32 keys a tile, the temperature of
:data:`sim.longstudy.ADAPTIVE` or ``--adapt-temperature``, 32 bins, beta 0.25; with
``--search-temperature`` one temperature from :data:`TEMPERATURES` is searched too); each trial runs
the bit-exact datapath with the ``adapt_*`` registers, and the rule's own cost is charged in
every term. Uniform masses are evaluated as baselines beside the fixed-ratio points. With
``--tail`` the rule has the tail blend (:class:`sim.adaptive.SofaAdaptiveTail`, ``TAIL_SCALE
= alpha·c``): ``on`` or a number, one alpha in every layer; ``search``, an alpha per layer
from :data:`TAIL_ALPHAS` (off, 1.0, 1.4, 1.8); each trial then runs with the ``tail_scale``
register and is charged the blend's cost (:func:`sim.adaptive.tail_ops`), and the uniform
masses are evaluated with and without the blend.

Outputs in ``OUT`` (default ``build/dse``): ``plan.json`` (the chosen configuration; see
:func:`plan_json`), ``core_bc<Bc>.json`` (a ``SofaConfig`` file for ``sofa verilog --config``
per block size used), ``summary.md``, ``pareto.png`` and ``results.json`` (every trial and
every baseline).

Modules, from the bottom up:

* :mod:`~sim.dse.cost`: the core a layer runs on and the cost terms (comparators, exp2
  evaluations, closed-form and exact cycles);
* :mod:`~sim.dse.space`: the search space (per-layer and per-head settings, trial parameters,
  warm starts);
* :mod:`~sim.dse.evaluate`: a plan on MiniLM with the bit-exact datapath, screening, the
  metrics and the objective, the process pool;
* :mod:`~sim.dse.study`: the Optuna study (storage, trial loop, workers, resume, the choice);
* :mod:`~sim.dse.baselines`: fixed-ratio points and the calibrated radius;
* :mod:`~sim.dse.plan`: ``plan.json`` and the core files, :func:`load_plan`;
* :mod:`~sim.dse.report`: ``summary.md``, ``pareto.png``, ``results.json``;
* :mod:`~sim.dse.pipeline`: a whole run from checked settings;
* :mod:`~sim.dse.cli`: the options (:func:`add_arguments`) and :func:`run` (``sofa dse``).
"""

from sim.dse.baselines import best_fixed, calibrate_radius, fixed_grid, frontier_at, run_fixed
from sim.dse.cli import FULL, QUICK, add_arguments, run, settings_from_args
from sim.dse.cost import (SORT_BATCH, SORT_REF_PER_KEY, comparators, cycles_closed_form,
                          dense_order, exact_cycles, kept_full, layer_config,
                          layer_predict_keys, prediction_share, tile_predict_cycles,
                          tile_rescales, tile_sizes)
from sim.dse.evaluate import (Evaluator, Runner, adapt_cost, adapt_registers, aggregate, attend,
                              entry, objective_value, tail_cost, tail_registers)
from sim.dse.plan import (MODEL_NAME, PLAN_FORMAT, cores, head_predict_keys, layer_core,
                          load_plan, plan_json, write_plan)
from sim.dse.pipeline import adaptive_grid, adaptive_warm_start, run_dse
from sim.dse.report import summary_markdown, write_outputs, write_plot
from sim.dse.space import (BLOCK_SIZES, KEEP_DEN, KEEP_STEPS, MASS_GRID, RADII_NAT,
                           RADIUS_RANGE, TAIL_ALPHA, TAIL_ALPHAS, TEMPERATURES, AdaptiveRule, HeadSetting, LayerSetting, adaptive_plan,
                           plan_from_params, suggest_adaptive, suggest_main, suggest_radius,
                           top_k_for, uniform_plan, warm_start)
from sim.dse.study import best_trials, choose, open_storage, open_study, search


__all__ = [
    # search space
    "BLOCK_SIZES", "KEEP_DEN", "KEEP_STEPS", "RADII_NAT", "RADIUS_RANGE", "HeadSetting",
    "LayerSetting", "top_k_for", "uniform_plan", "plan_from_params", "suggest_main",
    "suggest_radius", "warm_start", "MASS_GRID", "TEMPERATURES", "AdaptiveRule", "adaptive_plan",
    "suggest_adaptive", "TAIL_ALPHA", "TAIL_ALPHAS",
    # hardware and cost model
    "SORT_BATCH", "SORT_REF_PER_KEY", "layer_config", "layer_predict_keys",
    "tile_predict_cycles", "tile_sizes", "dense_order", "comparators", "prediction_share",
    "kept_full", "tile_rescales", "cycles_closed_form", "exact_cycles",
    # evaluation
    "Evaluator", "Runner", "attend", "aggregate", "objective_value", "entry", "adapt_cost",
    "adapt_registers", "tail_cost", "tail_registers",
    # studies and baselines
    "open_storage", "open_study", "search", "best_trials", "choose", "fixed_grid", "run_fixed",
    "best_fixed", "frontier_at", "calibrate_radius",
    # outputs
    "MODEL_NAME", "PLAN_FORMAT", "cores", "layer_core", "head_predict_keys", "plan_json",
    "write_plan", "load_plan",
    "summary_markdown", "write_plot", "write_outputs",
    # running it
    "FULL", "QUICK", "add_arguments", "settings_from_args", "run", "run_dse", "adaptive_grid",
    "adaptive_warm_start",
]
