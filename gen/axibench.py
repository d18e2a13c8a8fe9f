"""The memory benchmark of ``sofa bench``: the memory-attached core (``memory = "axi"``).

* **RTL** (Verilator, cocotbext-axi AxiRam as the memory, :mod:`gen.rtlsim.axibench_tb`): the
  ``axi`` preset with ``k_max = 8`` at S = 1k and 4k, dense and sparse at 50, 25, 12.5 and
  6.25 % of each tile kept (RASS on; and off at 25 %), two blocks of ``q_lanes`` queries;
  every output and exact counter checked. Cycles and bytes are the core's counters.
* **Model**: the cycle model (:mod:`sim.axiperf`) at S = 1k … 64k and a memory of 4, 8, 16 and
  32 bytes a cycle; the traffic model (:func:`sim.jobs.traffic`, equal to the RTL's byte
  counters wherever both run) for 1, 2 and 4 query lanes.
* **Several keys a cycle** (``predict_keys`` 1, 2, 4; ``--no-memory-predict`` skips them): the
  memory board's per-core compute (:func:`core_config`, also the multi-core bench's core: d =
  32, one query lane, 8 DLZS and 4 MAC lanes, a 256-bit bus, a K row a beat) at S = 1k, dense
  and the four ratios, RTL with the cycle model beside each row (``predict_keys``,
  ``model_cycles_per_query``, ``model_error``).
* **Real attention**: Q, K and V of all-MiniLM-L6-v2 (int8, every head of two layers) on the
  longest shipped text: the bytes with and without RASS, where lanes' selections overlap the
  way real attention does.

Every row: ``memory``, ``seq_len``, ``keep``, ``q_lanes``, ``bytes_per_cycle``,
``cycles_per_query``, ``speedup`` (over dense at the same bandwidth and source),
``dram_bytes``, ``dram_bytes_no_rass``, ``dram_bytes_dense``, ``dram_lower_bound`` (per query),
``source`` (``rtl`` or ``model``), ``data`` (``structured`` or ``minilm``).
"""

import json

import numpy as np

from sim.axiperf import axi_core_cycles, job_works
from sim.jobs import golden_job, layout_job, traffic
from sim.workloads import structured
from spec.config import RunParams, preset
from spec.job import JobDescriptor


__all__ = ["bench_config", "job_data", "rtl_jobs", "rtl_rows", "model_rows", "lane_rows", "minilm_rows",
           "markdown", "roofline", "RATIOS", "RTL_SEQ", "MODEL_SEQ", "BANDWIDTHS", "LANES",
           "PREDICT_KEYS", "PREDICT_SEQ", "core_config", "predict_config", "predict_jobs",
           "predict_rows", "predict_markdown"]


RATIOS = (0.5, 0.25, 0.125, 0.0625)
RTL_SEQ = (1024, 4096)
MODEL_SEQ = (1024, 4096, 16384, 65536)
BANDWIDTHS = (4, 8, 16, 32)
LANES = (1, 2, 4)
#: The memory latency the model assumes for AxiRam (cycles).
LATENCY = 2
#: The rows over ``predict_keys``: these values of :func:`core_config` at this S.
PREDICT_KEYS = (1, 2, 4)
PREDICT_SEQ = 1024


def bench_config():
    """The ``axi`` preset with ``k_max = 8`` (50 % of a 16-key tile needs top_k = 8)."""
    return preset("axi").replace(name="axibench", k_max=8)


def core_config():
    """The memory board's per-core compute on :func:`bench_config`: d = 32, one query lane, 8
    DLZS and 4 MAC lanes (a quarter of the ``axi`` preset's datapath: one core builds on
    Verilator in well under a minute) on a 256-bit bus (a K row a beat, 32 bytes a cycle at most). The core
    of the multi-core bench (:func:`gen.corebench.bench_config`) and of the rows over
    ``predict_keys`` (:func:`predict_config`)."""
    return bench_config().replace(name="axicore", d=32, q_lanes=1, mac_lanes=4, dlzs_lanes=8,
                                  axi_data_width=256)


def top_k_of(cfg, keep):
    return None if keep == 1.0 else max(1, round(cfg.block_size * keep))


def rtl_jobs(cfg, seqs=RTL_SEQ):
    """The testbench's jobs (:mod:`gen.rtlsim.axibench_tb`)."""
    jobs = []
    for S in seqs:
        for keep in (1.0,) + RATIOS:
            jobs.append({"seq": S, "queries": 2 * cfg.q_lanes, "top_k": top_k_of(cfg, keep),
                         "rass": True, "seed": 1, "keep": keep})
        jobs.append({"seq": S, "queries": 2 * cfg.q_lanes, "top_k": top_k_of(cfg, 0.25),
                     "rass": False, "seed": 1, "keep": 0.25})
    return jobs


def _row(cfg, *, S, keep, T, cycles, tr, source, data, bpc, dense_cycles, lanes=None):
    return {"memory": "axi", "seq_len": S, "keep": keep, "q_lanes": lanes or cfg.q_lanes,
            "bytes_per_cycle": bpc, "cycles_per_query": cycles / T,
            "speedup": dense_cycles / cycles if cycles else None,
            "dram_bytes": tr["dram_bytes"] / T, "dram_bytes_no_rass": tr["dram_bytes_no_rass"] / T,
            "dram_bytes_dense": tr["dram_bytes_dense"] / T,
            "dram_lower_bound": tr["dram_lower_bound"] / T, "source": source, "data": data}


def rtl_rows(cfg, results):
    """Rows of the RTL jobs (``results``: the testbench's JSON ``jobs``); the bytes are the
    core's counters, the traffic model's comparisons beside them."""
    rows, dense = [], {}
    for r in results:
        c, tr, T = r["counters"], r["traffic"], r["queries"]
        if r["top_k"] is None:
            dense[r["seq"]] = c["busy_cycles"]
        read = c["bytes_q"] + c["bytes_k"] + c["bytes_v"] + c["bytes_o"]
        row = _row(cfg, S=r["seq"], keep=r["keep"], T=T, cycles=c["busy_cycles"], tr=tr,
                   source="rtl", data="structured", bpc=cfg.axi_data_width // 8,
                   dense_cycles=dense[r["seq"]])
        row.update(dram_bytes=read / T, rass=r["rass"])
        rows.append(row)
    return rows


def predict_config(P):
    """:func:`core_config` predicting ``P`` keys a cycle."""
    cfg = core_config()
    return cfg.replace(name=f"{cfg.name}-p{P}", predict_keys=P)


def predict_jobs(cfg, S=PREDICT_SEQ):
    """Dense and :data:`RATIOS` at ``S``, two blocks of queries, RASS on."""
    return [{"seq": S, "queries": 2 * cfg.q_lanes, "top_k": top_k_of(cfg, keep), "rass": True,
             "seed": 1, "keep": keep} for keep in (1.0,) + RATIOS]


def predict_rows(cfg, results):
    """The RTL rows of one ``predict_keys`` build (:func:`rtl_rows`) with ``predict_keys``,
    the cycle model's cycles per query and its error against the RTL."""
    rows = rtl_rows(cfg, results)
    for row, r in zip(rows, results):
        job, params, tensors = job_data(cfg, r)
        res = golden_job(cfg, params, job, *tensors)
        model = axi_core_cycles(cfg, params, job, res, tensors, latency=LATENCY)
        rtl = r["counters"]["busy_cycles"]
        row.update(predict_keys=cfg.predict_keys, bus_bits=cfg.axi_data_width, d=cfg.d,
                   model_cycles_per_query=model / r["queries"], model_error=(model - rtl) / rtl)
    return rows


def predict_markdown(rows):
    """The table of the rows over ``predict_keys``."""
    if not rows:
        return ""
    lines = ["### Several keys a cycle (`predict_keys`), RTL and cycle model", "",
             f"The memory board's per-core compute (d = {rows[0]['d']}, {rows[0]['q_lanes']} "
             f"query lane{'s' if rows[0]['q_lanes'] > 1 else ''}) on a {rows[0]['bus_bits']}-bit "
             "bus, K packed; S = "
             f"{_k(rows[0]['seq_len'])}; speed-up over dense of the same build.", "",
             "| predict_keys | kept | cycles/query | speed-up | model cycles/query | "
             "model error |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['predict_keys']} | {r['keep']:.2%} | {r['cycles_per_query']:.0f} | "
                     f"{r['speedup']:.2f}× | {r['model_cycles_per_query']:.0f} | "
                     f"{r['model_error']:+.1%} |")
    return "\n".join(lines + [""])


def job_data(cfg, spec):
    """The job, its parameters and tensors of a bench job ``{"seq", "queries", "heads",
    "top_k" (None: dense), "seed"}``: structured data, laid out from 4 KB on."""
    rng = np.random.default_rng(spec["seed"])
    S, T, H = spec["seq"], spec["queries"], spec.get("heads", 1)
    parts = [structured(cfg, rng, T, S, dominant=max(3, S // 64)) for _ in range(H)]
    Q, K, V = (np.stack([p[i] for p in parts]) for i in range(3))
    job = layout_job(cfg, JobDescriptor(seq_len=S, queries=T, heads=H), base=4096)
    params = RunParams(seq_len=S, top_k=spec["top_k"] or cfg.k_max,
                       radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 1e-3),
                       dense=spec["top_k"] is None)
    return job, params, (Q, K, V)


def _structured_job(cfg, S, T, keep, seed=1):
    return job_data(cfg, {"seq": S, "queries": T, "top_k": top_k_of(cfg, keep), "seed": seed})


def model_rows(cfg, seqs=MODEL_SEQ, bandwidths=BANDWIDTHS, log=print):
    """The cycle model over ``seqs`` × ``bandwidths`` × dense and :data:`RATIOS` (structured
    data, two blocks of queries)."""
    rows = []
    T = 2 * cfg.q_lanes
    for S in seqs:
        big = cfg.replace(max_seq_len=max(S, cfg.max_seq_len))
        per = {}
        for keep in (1.0,) + RATIOS:
            job, params, tensors = _structured_job(big, S, T, keep)
            res = golden_job(big, params, job, *tensors)
            works = job_works(big, params, job, tensors)
            per[keep] = (job, params, res, works, traffic(big, params, job, res))
        for bpc in bandwidths:
            dense = None
            for keep, (job, params, res, works, tr) in per.items():
                cyc = axi_core_cycles(big, params, job, res, bytes_per_cycle=bpc,
                                      latency=LATENCY, works=works)
                dense = cyc if keep == 1.0 else dense
                rows.append(_row(big, S=S, keep=keep, T=T, cycles=cyc, tr=tr, source="model",
                                 data="structured", bpc=bpc, dense_cycles=dense))
        log(f"model: S = {S} done")
    return rows


def lane_rows(cfg, S=4096):
    """Bytes a query reads with 1, 2 and 4 lanes a block, dense and sparse (the traffic model,
    which the RTL's counters equal)."""
    rows = []
    for L in LANES:
        c = cfg.replace(q_lanes=L)
        for keep in (1.0,) + RATIOS:
            job, params, tensors = _structured_job(c, S, 2 * max(LANES), keep)
            res = golden_job(c, params, job, *tensors)
            tr = traffic(c, params, job, res)
            rows.append({"q_lanes": L, "seq_len": S, "keep": keep, **{
                k: tr[k] / job.queries for k in ("dram_bytes", "dram_bytes_no_rass",
                                                 "dram_bytes_dense", "dram_lower_bound")}})
    return rows


def minilm_rows(cfg, log=print):
    """RASS on real attention: every head of two MiniLM layers on the longest shipped text,
    lanes of 1, 2 and 4 queries, 25 and 12.5 % kept; the traffic model per head, summed."""
    from sim.minilm import MiniLM, load_texts
    from sim.predictors import HeadData
    model = MiniLM()
    texts = load_texts()
    name = max(texts, key=lambda n: len(model.tokenize(texts[n], name=n)))
    ids = model.tokenize(texts[name], name=name)
    _, qkv = model.capture(ids)
    S = len(ids)
    rows = []
    for layer in (0, len(qkv) - 1):
        hd = HeadData.from_float(*qkv[layer])
        for L in LANES:
            c = cfg.replace(name="minilm", d=hd.Q.shape[2], dlzs_lanes=8, mac_lanes=8,
                            q_lanes=L)
            for keep in (0.25, 0.125):
                total = {}
                for h in range(hd.Q.shape[0]):
                    job = JobDescriptor(seq_len=S, queries=S)
                    params = RunParams(seq_len=S, top_k=top_k_of(c, keep),
                                       radius=c.derived.radius_inf,
                                       scale_log2e=RunParams.scale_from_float(c, 1e-3))
                    res = golden_job(c, params, job, hd.Q[h:h + 1], hd.K[h:h + 1],
                                     hd.V[h:h + 1])
                    for k, v in traffic(c, params, job, res).items():
                        total[k] = total.get(k, 0) + v
                T = S * hd.Q.shape[0]
                rows.append({"memory": "axi", "data": "minilm", "text": name, "layer": layer,
                             "seq_len": S, "keep": keep, "q_lanes": L, "source": "model",
                             **{k: total[k] / T for k in ("dram_bytes", "dram_bytes_no_rass",
                                                          "dram_bytes_dense",
                                                          "dram_lower_bound")}})
        log(f"minilm: layer {layer} done")
    return rows


def roofline(cfg, rows, path):
    """Achieved dense-equivalent operations per cycle against operational intensity
    (operations per DRAM byte), with the memory roofs of each bandwidth and the multiplier
    roof; model rows at S = 16k."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # each lane has mac_lanes multipliers for Q·K and as many for P·V, two operations a MAC
    peak = 2 * 2 * cfg.mac_lanes * cfg.q_lanes
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = np.logspace(-1, 3, 100)
    for j, bpc in enumerate(BANDWIDTHS):
        eff = min(bpc, cfg.axi_data_width // 8)     # the port moves at most a bus word
        ax.plot(xs, np.minimum(eff * xs, peak), color=f"C{j}", alpha=0.4,
                label=f"roof, {bpc} B/cycle" + (f" (port: {eff})" if eff < bpc else ""))
        pts = [r for r in rows if r["source"] == "model" and r["bytes_per_cycle"] == bpc
               and r["seq_len"] == 16384]
        for r in pts:
            ops = 4 * r["seq_len"] * cfg.d              # Q·K and P·V of every key, 2 per MAC
            x, y = ops / r["dram_bytes"], ops / r["cycles_per_query"]
            ax.plot(x, y, "o" if r["keep"] == 1.0 else "^", color=f"C{j}")
            ax.annotate(f"{r['keep']:.0%}", (x, y), fontsize=6)
    ax.axhline(peak, color="k", lw=0.8, ls="--", label=f"multipliers: {peak} ops/cycle")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dense-equivalent operations per DRAM byte")
    ax.set_ylabel("dense-equivalent operations per cycle")
    ax.set_title(f"{cfg.name}: S = 16k, o dense, ^ sparse (model)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _k(n):
    return f"{n / 1024:.0f}k" if n >= 1024 else str(n)


def markdown(cfg, rtl, model, lanes, minilm):
    """The memory section of bench.md."""
    lines = ["## Memory-attached core (`memory = axi`)", "",
             f"`{cfg.name}`: d = {cfg.d}, Bc = {cfg.block_size}, {cfg.q_lanes} query lanes, "
             f"{cfg.mac_lanes} MAC and {cfg.dlzs_lanes} DLZS lanes, "
             f"{cfg.axi_data_width}-bit AXI4 ({cfg.axi_data_width // 8} B/cycle), K ring of "
             f"{cfg.k_tiles} tiles. Bytes per query; *lower bound*: every distinct row a "
             f"block needs, once.", "",
             "### RTL (Verilator, AxiRam), every output and counter checked", "",
             "| S | kept | RASS | cycles/query | speed-up | DRAM B/query | no RASS | dense FA | "
             "lower bound | of bound |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rtl:
        lines.append(f"| {_k(r['seq_len'])} | {r['keep']:.2%} | {'on' if r['rass'] else 'off'}"
                     f" | {r['cycles_per_query']:.0f} | {r['speedup']:.2f}× | "
                     f"{r['dram_bytes']:.0f} | {r['dram_bytes_no_rass']:.0f} | "
                     f"{r['dram_bytes_dense']:.0f} | {r['dram_lower_bound']:.0f} | "
                     f"{r['dram_bytes'] / r['dram_lower_bound']:.3f} |")
    lines += ["", "### Cycle model: speed-up over dense at each memory bandwidth", "",
              "| S | kept | " + " | ".join(f"{b} B/cycle" for b in BANDWIDTHS) + " |",
              "|---|---|" + "---|" * len(BANDWIDTHS)]
    for S in sorted({r["seq_len"] for r in model}):
        for keep in (1.0,) + RATIOS:
            cells = []
            for b in BANDWIDTHS:
                r = next(x for x in model if x["seq_len"] == S and x["keep"] == keep
                         and x["bytes_per_cycle"] == b)
                cells.append(f"{r['speedup']:.2f}× ({r['cycles_per_query']:.0f})")
            lines.append(f"| {_k(S)} | {keep:.2%} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: speed-up (cycles per query).", "",
              "### Sparse against dense FlashAttention: DRAM bytes per query (S = 4k)", "",
              "| q_lanes | kept | sparse | dense FA | sparse / dense | no RASS |",
              "|---|---|---|---|---|---|"]
    for r in lanes:
        if r["keep"] == 1.0:
            continue
        lines.append(f"| {r['q_lanes']} | {r['keep']:.2%} | {r['dram_bytes']:.0f} | "
                     f"{r['dram_bytes_dense']:.0f} | "
                     f"{r['dram_bytes'] / r['dram_bytes_dense']:.2f} | "
                     f"{r['dram_bytes_no_rass']:.0f} |")
    lines += ["", "Sparse reads fewer bytes than dense FlashAttention at every lane count and "
              "ratio here: the prediction streams every K row once per block, and attention "
              "takes the selected K rows from that tile buffer on chip, so K costs the same "
              "as in dense attention; V is read only for the rows the lanes select. With more "
              "lanes a block's K read serves more queries, but the union of their selections "
              "grows, so the saving on V shrinks. (The paper's −79 % also counts the K and V "
              "that on-demand generation never writes; that is not built.)", "",
              "### Real attention: all-MiniLM-L6-v2, every head, longest shipped text", "",
              "| layer | S | q_lanes | kept | RASS B/query | no RASS | saved by RASS | "
              "dense FA |", "|---|---|---|---|---|---|---|---|"]
    for r in minilm:
        lines.append(f"| {r['layer']} | {r['seq_len']} | {r['q_lanes']} | {r['keep']:.1%} | "
                     f"{r['dram_bytes']:.0f} | {r['dram_bytes_no_rass']:.0f} | "
                     f"{1 - r['dram_bytes'] / r['dram_bytes_no_rass']:.1%} | "
                     f"{r['dram_bytes_dense']:.0f} |")
    lines += ["", "![roofline](roofline.png)", ""]
    return "\n".join(lines)


def write(out, cfg, rtl, model, lanes, minilm):
    """``memory.json`` beside bench.json, and the roofline."""
    (out / "memory.json").write_text(json.dumps({"rtl": rtl, "model": model, "lanes": lanes,
                                                 "minilm": minilm}, indent=2) + "\n")
    roofline(cfg, model, out / "roofline.png")
