"""The on-demand K/V rows of ``sofa bench`` (bench.json's ``memory.on_demand``).

The memory board's per-core compute (:func:`gen.axibench.core_config`: d = 32, one query lane,
a 256-bit bus) with MiniLM's token width ``d_model = 384`` (:func:`project_config`: phase 1.1
on 8 × 32 shift-adders, an X row in 48 cycles; the projection on 32 multipliers, a key's K and
V rows in 768 cycles), one block of queries a head (``queries = q_lanes``: the decode-like case
where a key's projection serves the queries of one block), three ways:

* ``"given"``: today's mode, K and V read from memory (the same compute with ``kv_source =
  "given"``, the build of the ``predict_keys = 1`` rows); the rows' K and V projected outside
  the core, every row once a head: its MACs (``2·d·d_model`` a row) and its DRAM bytes (X read
  once for the layer's 12 heads, the head's weights read, its K and V written) are added in
  ``macs_per_query`` and ``dram_bytes_with_projection``;
* ``"project"``: on demand, sparse: K̂ predicted from X, only the selected rows projected;
* ``"dense-project"``: every row projected, dense attention (the same build in dense mode).

RTL (Verilator, :mod:`gen.rtlsim.projbench_tb` and :mod:`gen.rtlsim.axibench_tb`, every O and
exact counter checked) at S = 1k, the cycle model and the traffic model beside each RTL row and
alone at longer S. Fields: ``kv_source``, ``seq_len``, ``keep``, ``source``, ``queries``,
``cycles_per_query``, ``macs_per_query`` (projection included), ``attention_macs_per_query``,
``projection_macs_per_query``, ``rows_projected_per_query``, ``dram_bytes`` (the core's own),
``dram_bytes_with_projection`` (and, for ``given``, the outside projection's),
``model_cycles_per_query`` and ``model_error`` on RTL rows.
"""

import numpy as np

from gen.axibench import LATENCY, core_config, job_data, predict_config, top_k_of
from sim.axiperf import axi_core_cycles
from sim.jobs import golden_job, traffic
from sim.projjobs import (golden_project_job, layout_project_job, project_traffic,
                          project_workload)
from spec.config import RunParams
from spec.job import JobDescriptor, WEIGHTS, row_bytes, weight_bytes
from spec.regmap import expected_counters, query_groups


__all__ = ["project_config", "given_config", "project_jobs", "given_jobs", "project_job_data",
           "rtl_rows", "model_rows", "markdown", "RATIOS", "RTL_SEQ", "MODEL_SEQ", "D_MODEL",
           "HEADS"]

#: Kept shares of a tile (top_k = ratio × block_size).
RATIOS = (0.25, 0.125)
RTL_SEQ = (1024,)
MODEL_SEQ = (4096, 16384)
#: all-MiniLM-L6-v2's token width and heads (d = 384 / 12 = 32).
D_MODEL = 384
HEADS = 12


def project_config():
    """:func:`gen.axibench.core_config` projecting from ``d_model = 384`` tokens."""
    return core_config().replace(name="axicore-project", kv_source="project", d_model=D_MODEL,
                                 khat_lanes=8, proj_macs=32)


def given_config():
    """The same compute reading K and V (the build of the ``predict_keys = 1`` rows)."""
    return predict_config(1)


def project_jobs(cfg, S):
    """Dense and :data:`RATIOS` at ``S``, one block a head, RASS on."""
    return [{"seq": S, "queries": cfg.q_lanes, "top_k": top_k_of(cfg, keep), "rass": True,
             "seed": 1, "keep": keep} for keep in (1.0,) + RATIOS]


def given_jobs(cfg, S):
    return [{"seq": S, "queries": cfg.q_lanes, "top_k": top_k_of(cfg, keep), "rass": True,
             "seed": 1, "keep": keep} for keep in RATIOS]


def project_job_data(cfg, spec):
    """The job, its parameters and ``(Q, X, weights)`` of a bench job (random int8 tokens and
    weights, :func:`sim.projjobs.project_workload`), laid out from 4 KB on."""
    rng = np.random.default_rng(spec["seed"])
    job = layout_project_job(cfg, JobDescriptor(seq_len=spec["seq"], queries=spec["queries"],
                                                heads=spec.get("heads", 1)), base=4096)
    Q, X, w, job = project_workload(cfg, rng, job)
    params = RunParams(seq_len=spec["seq"], top_k=spec["top_k"] or cfg.k_max,
                       radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 1e-3),
                       dense=spec["top_k"] is None)
    return job, params, (Q, X, w)


def _outside_projection(cfg, S):
    """``(MACs, DRAM bytes)`` of one head's share of projecting every one of ``S`` rows
    outside the core (given K/V): X read once for the layer's :data:`HEADS` heads, the head's
    W_k, W_v and biases read, its K and V written."""
    pc = project_config()
    weights = sum(weight_bytes(pc, w) for w in WEIGHTS if w != "wlz")
    return (2 * cfg.d * D_MODEL * S,
            S * D_MODEL // HEADS + weights + 2 * S * row_bytes(cfg))


def _row(kind, S, keep, T, cycles, c, source, proj, model=None):
    """A row from the counters ``c`` (or the expected ones) of a job of ``T`` queries."""
    own = c["bytes_q"] + c["bytes_k"] + c["bytes_v"] + c["bytes_o"] + \
        c.get("bytes_x", 0) + c.get("bytes_w", 0)
    pmacs = c.get("projection_macs", 0) + proj[0]
    row = {"memory": "axi", "kv_source": kind, "seq_len": S, "keep": keep, "source": source,
           "queries": T, "cycles_per_query": cycles / T,
           "attention_macs_per_query": c["macs"] / T, "projection_macs_per_query": pmacs / T,
           "macs_per_query": (c["macs"] + pmacs) / T,
           "rows_projected_per_query": (c.get("rows_projected", 0) or (S if proj[0] else 0)) / T,
           "dram_bytes": own / T, "dram_bytes_with_projection": (own + proj[1]) / T}
    if model is not None:
        row.update(model_cycles_per_query=model / T, model_error=(model - cycles) / cycles)
    return row


def _cfg_for(cfg, S):
    return cfg.replace(max_seq_len=max(S, cfg.max_seq_len))


def _project_expect(cfg, spec):
    job, params, (Q, X, w) = project_job_data(cfg, spec)
    res, (khat, K, V) = golden_project_job(cfg, params, job, Q, X, w)
    tr = project_traffic(cfg, params, job, res)
    calls = [n for _ in range(job.heads) for n in query_groups(job.queries, cfg.q_lanes)]
    want = expected_counters(cfg, params, res.stats, calls=calls, lengths=res.lengths,
                             traffic=tr, wrap=False)
    model = axi_core_cycles(cfg, params, job, res, (Q, K, V, khat), latency=LATENCY)
    return want, model


def _given_expect(cfg, spec):
    job, params, tensors = job_data(cfg, spec)
    res = golden_job(cfg, params, job, *tensors)
    tr = traffic(cfg, params, job, res)
    calls = [n for _ in range(job.heads) for n in query_groups(job.queries, cfg.q_lanes)]
    want = expected_counters(cfg, params, res.stats, calls=calls, lengths=res.lengths,
                             traffic=tr, wrap=False)
    model = axi_core_cycles(cfg, params, job, res, tensors, latency=LATENCY)
    return want, model


def rtl_rows(project_results, given_results):
    """Rows of the RTL runs (the testbenches' ``jobs``), the models beside."""
    pc, gc = project_config(), given_config()
    rows = []
    for r in project_results:
        kind = "dense-project" if r["top_k"] is None else "project"
        _, model = _project_expect(pc, r)
        rows.append(_row(kind, r["seq"], r["keep"], r["queries"],
                         r["counters"]["busy_cycles"], r["counters"], "rtl", (0, 0), model))
    for r in given_results:
        _, model = _given_expect(gc, r)
        rows.append(_row("given", r["seq"], r["keep"], r["queries"],
                         r["counters"]["busy_cycles"], r["counters"], "rtl",
                         _outside_projection(gc, r["seq"]), model))
    return rows


def model_rows(seqs=MODEL_SEQ, log=print):
    """The same three ways from the golden, traffic and cycle models at longer S."""
    rows = []
    for S in seqs:
        pc, gc = _cfg_for(project_config(), S), _cfg_for(given_config(), S)
        for spec in project_jobs(pc, S):
            want, model = _project_expect(pc, spec)
            kind = "dense-project" if spec["top_k"] is None else "project"
            rows.append(_row(kind, S, spec["keep"], spec["queries"], model, want, "model",
                             (0, 0)))
        for spec in given_jobs(gc, S):
            want, model = _given_expect(gc, spec)
            rows.append(_row("given", S, spec["keep"], spec["queries"], model, want, "model",
                             _outside_projection(gc, S)))
        log(f"on-demand K/V model: S = {S} done")
    return rows


def markdown(rows):
    """The on-demand K/V section of bench.md."""
    if not rows:
        return ""
    pc = project_config()
    lines = ["### On-demand K/V (`kv_source`): projection included", "",
             f"d = {pc.d}, d_model = {pc.d_model}, {pc.q_lanes} query lane, "
             f"{pc.axi_data_width}-bit bus; phase 1.1 on {pc.khat_lanes} × {pc.d} shift-adders, "
             f"the projection on {pc.proj_macs} multipliers; one block of queries a head. "
             "*given*: K and V in memory, projected outside (every row: its MACs and bytes "
             "in the totals); *project*: the selected rows projected on chip; "
             "*dense-project*: every row projected, dense attention. The core reads X "
             "(d_model bytes a row) once a block and head, where the given mode reads a K "
             "row (d bytes) and the selected V rows: with d_model = 12 d its own DRAM bytes "
             "grow; the outside projection of *given* reads X once for the 12 heads.", "",
             "| source | S | kv_source | kept | cycles/query | MACs/query (projection) | "
             "rows projected | DRAM B/query (core) | with projection | model error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = f"{r['model_error']:+.1%}" if "model_error" in r else ""
        lines.append(f"| {r['source']} | {r['seq_len']} | {r['kv_source']} | "
                     f"{r['keep']:.1%} | {r['cycles_per_query']:.0f} | "
                     f"{r['macs_per_query']:,.0f} ({r['projection_macs_per_query']:,.0f}) | "
                     f"{r['rows_projected_per_query']:.0f} | {r['dram_bytes']:,.0f} | "
                     f"{r['dram_bytes_with_projection']:,.0f} | {err} |")
    return "\n".join(lines + [""])
