"""The multi-core rows of ``sofa bench``: ``cores`` memory-attached cores sharing one memory,
from the RTL (1, 2 and 4 cores on Verilator, :mod:`gen.rtlsim.corebench_tb`) and from the model
(:mod:`sim.multiperf`, 1 … 16 cores).

The job: :data:`HEADS` heads of :data:`QUERIES` queries on the structured workload of the
memory benchmark (:func:`gen.axibench.job_data`), 25 % of each tile kept, RASS on, at S of
:data:`SEQS`; 1, 2, 4, 8 and 16 cores; a shared bus of 4, 8, 16 and 32 bytes a cycle with read
latency 2; three ways to run it (:data:`VARIANTS`): each core reads its own K (SHARED_K = 0),
the shared K stream with the split of heads first (SHARED_K = 1, the reset value: from 4 cores
on, 2 heads leave several cores a head, whose K one read serves), and the shared K stream
with every core on every head (SPLIT_QUERIES = 1: one read of K serves all the cores). Two
heads of 16 queries keep every core's chunk whole blocks at 16 cores. The config:
:func:`bench_config`.

**RTL rows** (:func:`rtl_jobs`): the same config with 1, 2 and 4 cores on Verilator at S =
:data:`RTL_SEQ` on a smaller job (:data:`RTL_HEADS` heads of :data:`RTL_QUERIES` queries: at 4
cores the chunks are still whole blocks), every bandwidth and way to run it, the memory's
bandwidth set by pausing AxiRam's R channel; the cycles are the core's ``busy_cycles``, the
bytes its counters (both exact against the golden model and :func:`sim.jobs.job_counters`).
Each RTL row also carries the model's cycles for the same job (``model_cycles``,
``model_error``), the model's ``bound`` for it and each core's ``busy_cycles``
(``core_busy_cycles``).

Every row: ``memory``, ``cores``, ``seq_len``, ``bytes_per_cycle``, ``shared_k``,
``split_queries``, ``source`` (``"rtl"`` or ``"model"``), ``queries_per_cycle``, ``dram_bytes`` and
``k_bytes`` (per query), ``scaling_efficiency`` (queries a cycle over ``cores`` times one
core's at the same S and bandwidth), ``bound`` (:func:`sim.multiperf.bound_of`: ``"memory"``
when the shared bus is busy more than 90 % of the job or the job is more than 5 % slower than
with a bus of the full width per core, else ``"compute"``), ``bus_busy`` (share of the job's
cycles the bus carries data), ``demand_bytes_per_cycle`` (the bytes a cycle the cores read
when each has a bus of the full width: the bandwidth above which memory stops being the
bound), ``cycles``, ``private_cycles`` (model rows), ``keep``, ``heads``, ``queries``,
``data``.
"""

import json
from itertools import groupby
from operator import itemgetter

from gen import axibench
from sim.axiperf import job_works
from sim.jobs import golden_job
from sim.multiperf import bound_of, multi_core_cycles, multi_traffic
from spec.config import CORES
from spec.job import k_followers


__all__ = ["bench_config", "model_rows", "rtl_jobs", "rtl_rows", "markdown", "plot", "write",
           "SEQS", "BANDWIDTHS", "HEADS", "QUERIES", "KEEP", "LATENCY", "VARIANTS", "RTL_SEQ",
           "RTL_CORES", "RTL_HEADS", "RTL_QUERIES"]


SEQS = (4096, 16384)
BANDWIDTHS = (4, 8, 16, 32)
HEADS = 2
QUERIES = 16
KEEP = 0.25
LATENCY = axibench.LATENCY
RTL_SEQ = 4096
RTL_CORES = (1, 2, 4)
RTL_HEADS = 2
RTL_QUERIES = 4
#: ``(shared_k, split_queries)`` of the rows, and their names in bench.md.
VARIANTS = {(False, False): "own K", (True, False): "shared K",
            (True, True): "shared K, split queries"}


def bench_config():
    """One core of the benchmark (the model takes ``cores``): the memory board's per-core
    compute (:func:`gen.axibench.core_config`: d = 32, one query lane, 8 DLZS and 4 MAC lanes,
    a quarter of the ``axi`` preset's datapath, so that three Verilator builds of 1, 2 and 4
    cores fit ``make bench``; a 256-bit bus, a K row a beat, 32 bytes a cycle at most) with the
    AXI IDs the arbiter needs for 16 cores."""
    return axibench.core_config().replace(name="corebench",
                                          axi_id_width=2 + (max(CORES) - 1).bit_length())


def _workload(cfg, S, heads, queries):
    """``(config, job, params, tensors, golden result, works)`` of the bench job at ``S``."""
    big = cfg.replace(max_seq_len=max(S, cfg.max_seq_len))
    job, params, tensors = axibench.job_data(big, _spec(big, S, heads, queries))
    res = golden_job(big, params, job, *tensors)
    return big, job, params, tensors, res, job_works(big, params, job, tensors)


def _spec(cfg, S, heads, queries):
    return {"seq": S, "queries": queries, "heads": heads, "seed": 1,
            "top_k": axibench.top_k_of(cfg, KEEP)}


def _same_as_own(job, cores, shared_k, split):
    """The variant reads and splits exactly as each core reading its own K does."""
    return (shared_k or split) and (cores == 1 or not split and
                                    not any(k_followers(job, cores, shared_k)))


def _model(cfg, job, params, res, works, *, cores, shared_k, split, bandwidths):
    """``(traffic, private cycles, {bandwidth: breakdown})`` of the model."""
    kw = dict(cores=cores, shared_k=shared_k, split_queries=split)
    tr = multi_traffic(cfg, params, job, res, **kw)
    free = multi_core_cycles(cfg, params, job, res, works=works, latency=LATENCY,
                             private=True, **kw)
    got = {bpc: multi_core_cycles(cfg, params, job, res, works=works, bytes_per_cycle=bpc,
                                  latency=LATENCY, breakdown=True, **kw) for bpc in bandwidths}
    return tr, free, got


def model_rows(cfg, seqs=SEQS, bandwidths=BANDWIDTHS, cores=CORES, heads=HEADS,
               queries=QUERIES, log=print):
    """The model's rows over ``seqs`` × ``cores`` × :data:`VARIANTS` × ``bandwidths``."""
    rows = []
    cores = sorted(set(cores) | {1})                   # one core: the efficiency's baseline
    for S in seqs:
        big, job, params, _, res, works = _workload(cfg, S, heads, queries)
        T = job.heads * job.queries
        one = {}
        for N in cores:
            for shared_k, split in VARIANTS:
                if _same_as_own(job, N, shared_k, split):
                    # no core takes another's K and the split is the same: the same figures
                    rows += [r | {"shared_k": shared_k, "split_queries": split} for r in rows
                             if r["seq_len"] == S and r["cores"] == N
                             and not r["shared_k"] and not r["split_queries"]]
                    continue
                tr, free, got = _model(big, job, params, res, works, cores=N,
                                       shared_k=shared_k, split=split, bandwidths=bandwidths)
                for bpc, g in got.items():
                    qpc = T / g.total
                    one.setdefault(bpc, qpc)            # cores[0] is 1
                    rows.append({
                        "memory": "axi", "cores": N, "seq_len": S, "bytes_per_cycle": bpc,
                        "shared_k": shared_k, "split_queries": split, "source": "model",
                        "queries_per_cycle": qpc, "dram_bytes": tr["dram_bytes"] / T,
                        "k_bytes": tr["k"] / T, "scaling_efficiency": qpc / (N * one[bpc]),
                        "demand_bytes_per_cycle": (tr["q"] + tr["k"] + tr["v"]) / free,
                        "bound": bound_of(g.total, free, g.busy_fraction),
                        "bus_busy": g.busy_fraction, "cycles": g.total,
                        "private_cycles": free, "keep": KEEP, "heads": job.heads,
                        "queries": job.queries, "data": "structured"})
        log(f"cores: S = {S} done")
    return rows


def rtl_jobs(cfg, cores, S=RTL_SEQ, bandwidths=BANDWIDTHS, heads=RTL_HEADS,
             queries=RTL_QUERIES):
    """The testbench's jobs for ``cores`` cores: every bandwidth and every variant of
    :data:`VARIANTS` that reads or splits differently from the cores reading their own K."""
    job = axibench.job_data(cfg, _spec(cfg, S, heads, queries))[0]
    return [_spec(cfg, S, heads, queries) | {"bytes_per_cycle": bpc, "shared_k": shared_k,
                                             "split_queries": split, "cores": cores}
            for shared_k, split in VARIANTS if not _same_as_own(job, cores, shared_k, split)
            for bpc in bandwidths]


def rtl_rows(cfg, results, log=print):
    """Rows of the RTL jobs (``results``: the testbench's ``jobs`` of every core count), with
    the model's cycles and bound for the same job; the variants that run as *own K* are
    copied from it, as in :func:`model_rows`."""
    S, H, T = results[0]["seq"], results[0]["heads"], results[0]["queries"]
    big, job, params, _, res, works = _workload(cfg, S, H, T)
    rows, one = [], {}
    point = itemgetter("cores", "shared_k", "split_queries")
    # one model run a core count and variant covers all its bandwidths; one core comes first
    for (N, shared_k, split), group in groupby(
            sorted(results, key=lambda r: (*point(r), r["bytes_per_cycle"])), key=point):
        group = list(group)
        tr, free, got = _model(big, job, params, res, works, cores=N, shared_k=shared_k,
                               split=split, bandwidths=[r["bytes_per_cycle"] for r in group])
        for r in group:
            bpc, c = r["bytes_per_cycle"], r["counters"]
            cycles, model = c["busy_cycles"], got[bpc]
            # a K follower's bytes_k came with its leader's reads: on the bus once
            k_read = c["bytes_k"] - c.get("bytes_k_shared", 0)
            read = c["bytes_q"] + k_read + c["bytes_v"]
            qpc = H * T / cycles
            one.setdefault(bpc, qpc)
            rows.append({
                "memory": "axi", "cores": N, "seq_len": S, "bytes_per_cycle": bpc,
                "shared_k": shared_k, "split_queries": split, "source": "rtl",
                "queries_per_cycle": qpc, "dram_bytes": (read + c["bytes_o"]) / (H * T),
                "k_bytes": k_read / (H * T), "scaling_efficiency": qpc / (N * one[bpc]),
                "demand_bytes_per_cycle": (tr["q"] + tr["k"] + tr["v"]) / free,
                "bound": bound_of(model.total, free, model.busy_fraction),
                "bus_busy": read / cycles / bpc, "cycles": cycles,
                "core_busy_cycles": r["core_busy_cycles"], "model_cycles": model.total,
                "model_error": model.total / cycles - 1, "keep": KEEP, "heads": H,
                "queries": T, "data": "structured"})
    for N in sorted({r["cores"] for r in rows}):
        for shared_k, split in VARIANTS:
            if _same_as_own(job, N, shared_k, split):
                rows += [r | {"shared_k": shared_k, "split_queries": split} for r in rows
                         if r["cores"] == N and not r["shared_k"] and not r["split_queries"]]
    log("cores: RTL rows done")
    return rows


def _k(n):
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def markdown(cfg, rows):
    """The multi-core section of bench.md: the RTL table (if there are RTL rows) and the
    model's."""
    rtl = [r for r in rows if r["source"] == "rtl"]
    rows = [r for r in rows if r["source"] == "model"]
    heads, queries = rows[0]["heads"], rows[0]["queries"]
    bws = sorted({r["bytes_per_cycle"] for r in rows})
    lines = ["## Several memory-attached cores on one memory (model)", "",
             f"`{cfg.name}` per core: d = {cfg.d}, Bc = {cfg.block_size}, {cfg.q_lanes} "
             f"query lane{'s' if cfg.q_lanes > 1 else ''}, {cfg.axi_data_width}-bit bus "
             f"shared by the cores (read latency {LATENCY}). Job: {heads} heads × {queries} queries, structured data, "
             f"{KEEP:.0%} of each tile kept, RASS on; split by `spec.job.split_job`. K: "
             "*own*, every core reads its K (SHARED_K = 0); *shared*, the cores of a head "
             "group take one read of K (SHARED_K = 1); *shared, split queries*, every core "
             "takes a chunk of every head and one read of K serves all (SPLIT_QUERIES = 1). "
             "Cells: queries per 1,000 cycles, scaling efficiency (throughput over cores × "
             "one core's at the same bandwidth), bound (C compute, M memory). *Demand*: the "
             "bytes a cycle the cores would read with a full-width bus each; memory is the "
             "bound below it.", "",
             "| S | K | cores | DRAM B/query | demand B/cycle | "
             + " | ".join(f"{b} B/cycle" for b in bws) + " |",
             "|---|---|---|---|---|" + "---|" * len(bws)]
    for S in sorted({r["seq_len"] for r in rows}):
        for (shared_k, split), name in VARIANTS.items():
            for N in sorted({r["cores"] for r in rows}):
                mine = {r["bytes_per_cycle"]: r for r in rows if r["seq_len"] == S
                        and r["cores"] == N and r["shared_k"] == shared_k
                        and r["split_queries"] == split}
                if not mine:
                    continue
                cells = [f"{1000 * r['queries_per_cycle']:.3f}, "
                         f"{r['scaling_efficiency']:.0%}, {r['bound'][0].upper()}"
                         if (r := mine.get(b)) else "" for b in bws]
                r = next(iter(mine.values()))
                lines.append(f"| {_k(S)} | {name} | {N} | {r['dram_bytes']:,.0f} | "
                             f"{r['demand_bytes_per_cycle']:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "![scaling efficiency](cores.png)", ""]
    if rtl:
        lines += rtl_markdown(cfg, rtl)
    return "\n".join(lines)


def rtl_markdown(cfg, rows):
    """The RTL table: every row of 1, 2 and 4 cores with the model's cycles beside it."""
    r0 = rows[0]
    lines = [f"### 1, 2 and 4 cores on Verilator (S = {_k(r0['seq_len'])}, {r0['heads']} heads "
             f"× {r0['queries']} queries)", "",
             "The same config and data; the memory's bandwidth is AxiRam's R channel paused "
             f"to one {cfg.axi_data_width}-bit beat every `bus bytes / B` cycles. Cycles are "
             "the core's `busy_cycles`, bytes its counters, both checked exact against the "
             "golden model; *model* is `sim.multiperf` on the same job, whose `bound` the row "
             "carries. Efficiency: throughput over cores × one core's at the same bandwidth.",
             "", "| K | cores | B/cycle | queries / 1,000 cycles | efficiency | bound | "
             "bus busy | DRAM B/query | cycles | model | model − RTL |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for (shared_k, split), name in VARIANTS.items():
        for r in sorted((r for r in rows if r["shared_k"] == shared_k
                         and r["split_queries"] == split),
                        key=lambda r: (r["cores"], r["bytes_per_cycle"])):
            lines.append(f"| {name} | {r['cores']} | {r['bytes_per_cycle']} | "
                         f"{1000 * r['queries_per_cycle']:.3f} | "
                         f"{r['scaling_efficiency']:.0%} | {r['bound']} | {r['bus_busy']:.0%} | "
                         f"{r['dram_bytes']:,.0f} | {r['cycles']:,} | {r['model_cycles']:,} | "
                         f"{r['model_error']:+.1%} |")
    worst = max(rows, key=lambda r: abs(r["model_error"]))
    lines += ["", f"The model is within {abs(worst['model_error']):.1%} of the RTL on every "
              f"row (worst: {worst['cores']} cores, {worst['bytes_per_cycle']} B/cycle, "
              f"{VARIANTS[worst['shared_k'], worst['split_queries']]}).", ""]
    return lines


def plot(rows, path):
    """Scaling efficiency against cores, a line per bandwidth, S and :data:`VARIANTS`
    (solid: own K, dashed: shared K, dotted: shared K with split queries)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 5))
    rtl = [r for r in rows if r["source"] == "rtl"]
    rows = [r for r in rows if r["source"] == "model"]
    seqs = sorted({r["seq_len"] for r in rows})
    for j, bpc in enumerate(sorted({r["bytes_per_cycle"] for r in rows})):
        for m, S in enumerate(seqs):
            for v, ((shared_k, split), name) in enumerate(VARIANTS.items()):
                pts = sorted((r["cores"], r["scaling_efficiency"]) for r in rows
                             if r["bytes_per_cycle"] == bpc and r["seq_len"] == S
                             and r["shared_k"] == shared_k and r["split_queries"] == split)
                if not pts:
                    continue
                ax.plot(*zip(*pts), color=f"C{j}", ls=("-", "--", ":")[v % 3],
                        marker="os^v"[m % 4], alpha=0.8,
                        label=f"{bpc} B/cycle, S = {_k(S)}, {name}")
    bws = sorted({r["bytes_per_cycle"] for r in rows})
    for r in rtl:
        ax.plot(r["cores"], r["scaling_efficiency"], "x", ms=8,
                color=f"C{bws.index(r['bytes_per_cycle'])}" if r["bytes_per_cycle"] in bws
                else "k")
    if rtl:
        ax.plot([], [], "xk", label=f"RTL, S = {_k(rtl[0]['seq_len'])} (colour: B/cycle)")
    ax.axhline(0.9, color="k", lw=0.8, ls=":", label="90 %")
    ax.set_xscale("log", base=2)
    ticks = sorted({r["cores"] for r in rows})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.set_xlabel("cores")
    ax.set_ylabel("scaling efficiency (throughput / (cores × one core))")
    ax.set_ylim(0, 1.1)
    ax.set_title("several cores on one memory (lines: model, crosses: RTL)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out, cfg, rows):
    """``cores.json`` beside bench.json, and the plot ``cores.png``."""
    (out / "cores.json").write_text(json.dumps({"config": cfg.to_dict(), "rows": rows},
                                               indent=2) + "\n")
    plot(rows, out / "cores.png")
