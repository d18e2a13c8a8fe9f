"""A DSE plan as ``sim.dse.write_plan`` writes one, built by hand: the starting point of the
plan loader's bad-input table and of its property test."""

from sim.dse.cost import layer_config
from sim.dse.plan import MODEL_SHAPE, PLAN_FORMAT

__all__ = ["valid_plan"]


def valid_plan(n_layers=MODEL_SHAPE[0], n_heads=MODEL_SHAPE[1], d=MODEL_SHAPE[2]):
    """A plan (JSON-ready dict) with every layer on one Bc = 16 core at top_k 4, one text."""
    cfg = layer_config(d, 16, 4)
    regs = {"seq_len": 40, "top_k": 4, "radius": cfg.derived.radius_inf, "scale_log2e": 100,
            "dense": False}
    return {
        "format": PLAN_FORMAT, "model": "all-MiniLM-L6-v2",
        "cores": {"bc16": cfg.to_dict()},
        "layers": [{"layer": l, "block_size": 16, "core": "bc16", "config": cfg.to_dict(),
                    "heads": [{"head": h, "top_k": 4, "keep": 0.25, "radius_nat": "inf"}
                              for h in range(n_heads)],
                    "registers": {"text": [dict(regs) for _ in range(n_heads)]}}
                   for l in range(n_layers)],
        "metrics": {"saved": 0.5},
    }
