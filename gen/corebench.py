"""The multi-core rows of ``sofa bench``: ``cores`` memory-attached cores sharing one memory,
from the model (:mod:`sim.multiperf`).

The job: :data:`HEADS` heads of :data:`QUERIES` queries on the structured workload of the
memory benchmark (:func:`gen.axibench.job_data`), 25 % of each tile kept, RASS on, at S of
:data:`SEQS`; 1, 2, 4, 8 and 16 cores (:func:`spec.job.split_job`: with 4 heads, 8 and 16
cores put 2 and 4 cores on a head, where a shared K stream can save reads); a shared bus of
8, 16 and 32 bytes a cycle with read latency 2; without and with the shared K stream. The
config is the memory benchmark's (:func:`gen.axibench.bench_config`) with a 256-bit bus, the
narrowest that carries 32 bytes a cycle.

Every row: ``memory``, ``cores``, ``seq_len``, ``bytes_per_cycle``, ``shared_k``, ``source``
(``"model"``), ``queries_per_cycle``, ``dram_bytes`` and ``k_bytes`` (per query),
``scaling_efficiency`` (queries a cycle over ``cores`` times one core's at the same S and
bandwidth), ``bound`` (:func:`sim.multiperf.bound_of`: ``"memory"`` when the shared bus is
busy more than 90 % of the job or the job is more than 5 % slower than with a bus of the full
width per core, else ``"compute"``), ``bus_busy`` (share of the job's cycles the bus carries
data), ``demand_bytes_per_cycle`` (the bytes a cycle the cores read when each has a bus of the
full width: the bandwidth above which memory stops being the bound), ``cycles``,
``private_cycles``, ``keep``, ``heads``, ``queries``, ``data``.
"""

import json

from gen import axibench
from sim.axiperf import job_works
from sim.jobs import golden_job
from sim.multiperf import bound_of, multi_core_cycles, multi_traffic
from spec.config import CORES
from spec.job import core_grid


__all__ = ["bench_config", "model_rows", "markdown", "plot", "write", "SEQS", "BANDWIDTHS",
           "HEADS", "QUERIES", "KEEP", "LATENCY"]


SEQS = (4096, 16384)
BANDWIDTHS = (8, 16, 32)
HEADS = 4
QUERIES = 8
KEEP = 0.25
LATENCY = axibench.LATENCY


def bench_config():
    """The memory benchmark's config with a 256-bit bus (32 bytes a cycle at most) and the
    AXI IDs the arbiter needs for 16 cores; one core's config (the model takes ``cores``)."""
    return axibench.bench_config().replace(name="corebench", axi_data_width=256,
                                           axi_id_width=2 + (max(CORES) - 1).bit_length())


def model_rows(cfg, seqs=SEQS, bandwidths=BANDWIDTHS, cores=CORES, heads=HEADS,
               queries=QUERIES, log=print):
    """The model's rows over ``seqs`` × ``cores`` × ``bandwidths`` × shared K off and on."""
    rows = []
    cores = sorted(set(cores) | {1})                   # one core: the efficiency's baseline
    for S in seqs:
        big = cfg.replace(max_seq_len=max(S, cfg.max_seq_len))
        job, params, tensors = axibench.job_data(big, {
            "seq": S, "queries": queries, "heads": heads, "seed": 1,
            "top_k": axibench.top_k_of(big, KEEP)})
        res = golden_job(big, params, job, *tensors)
        works = job_works(big, params, job, tensors)
        T = job.heads * job.queries
        one = {}
        for N in cores:
            for shared_k in (False, True):
                if shared_k and core_grid(job.heads, N)[1] == 1:
                    # a core a head group: nothing to share, the same figures
                    rows += [r | {"shared_k": True} for r in rows
                             if r["seq_len"] == S and r["cores"] == N]
                    continue
                tr = multi_traffic(big, params, job, res, N, shared_k=shared_k)
                free = multi_core_cycles(big, params, job, res, works=works, cores=N,
                                         latency=LATENCY, shared_k=shared_k, private=True)
                for bpc in bandwidths:
                    got = multi_core_cycles(big, params, job, res, works=works, cores=N,
                                            bytes_per_cycle=bpc, latency=LATENCY,
                                            shared_k=shared_k, breakdown=True)
                    qpc = T / got.total
                    one.setdefault(bpc, qpc)            # cores[0] is 1
                    rows.append({
                        "memory": "axi", "cores": N, "seq_len": S, "bytes_per_cycle": bpc,
                        "shared_k": shared_k, "source": "model", "queries_per_cycle": qpc,
                        "dram_bytes": tr["dram_bytes"] / T, "k_bytes": tr["k"] / T,
                        "scaling_efficiency": qpc / (N * one[bpc]),
                        "demand_bytes_per_cycle": (tr["q"] + tr["k"] + tr["v"]) / free,
                        "bound": bound_of(got.total, free, got.busy_fraction),
                        "bus_busy": got.busy_fraction, "cycles": got.total,
                        "private_cycles": free, "keep": KEEP, "heads": job.heads,
                        "queries": job.queries, "data": "structured"})
        log(f"cores: S = {S} done")
    return rows


def _k(n):
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def markdown(cfg, rows):
    """The multi-core section of bench.md."""
    lines = ["## Several memory-attached cores on one memory (model)", "",
             f"`{cfg.name}` per core: d = {cfg.d}, Bc = {cfg.block_size}, {cfg.q_lanes} "
             f"query lanes, {cfg.axi_data_width}-bit bus shared by the cores (read latency "
             f"{LATENCY}). Job: {HEADS} heads × {QUERIES} queries, structured data, "
             f"{KEEP:.0%} of each tile kept, RASS on; split by `spec.job.split_job`. "
             "Cells: queries per 1,000 cycles, scaling efficiency (throughput over cores × "
             "one core's at the same bandwidth), bound (C compute, M memory). *Shared K*: a "
             "head group's cores read each K tile once (a model of a broadcast the RTL does "
             "not have; it matters from 8 cores on, where a head has several cores).", "",
             "*Demand*: the bytes a cycle the cores would read with a full-width bus each; "
             "memory is the bound below it.", "",
             "| S | shared K | cores | DRAM B/query | demand B/cycle | "
             + " | ".join(f"{b} B/cycle" for b in BANDWIDTHS) + " |",
             "|---|---|---|---|---|" + "---|" * len(BANDWIDTHS)]
    for S in sorted({r["seq_len"] for r in rows}):
        for shared_k in (False, True):
            for N in sorted({r["cores"] for r in rows}):
                cells, dram, demand = [], None, None
                for b in BANDWIDTHS:
                    r = next((x for x in rows if x["seq_len"] == S and x["cores"] == N
                              and x["bytes_per_cycle"] == b and x["shared_k"] == shared_k),
                             None)
                    if r is None:
                        cells.append("")
                        continue
                    dram, demand = r["dram_bytes"], r["demand_bytes_per_cycle"]
                    cells.append(f"{1000 * r['queries_per_cycle']:.3f}, "
                                 f"{r['scaling_efficiency']:.0%}, {r['bound'][0].upper()}")
                lines.append(f"| {_k(S)} | {'on' if shared_k else 'off'} | {N} | "
                             f"{dram:,.0f} | {demand:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "![scaling efficiency](cores.png)", ""]
    return "\n".join(lines)


def plot(rows, path):
    """Scaling efficiency against cores, a line per bandwidth and S (dashed: shared K)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    seqs = sorted({r["seq_len"] for r in rows})
    for j, bpc in enumerate(sorted({r["bytes_per_cycle"] for r in rows})):
        for m, S in enumerate(seqs):
            for shared_k in (False, True):
                pts = sorted((r["cores"], r["scaling_efficiency"]) for r in rows
                             if r["bytes_per_cycle"] == bpc and r["seq_len"] == S
                             and r["shared_k"] == shared_k)
                if not pts:
                    continue
                ax.plot(*zip(*pts), color=f"C{j}", ls="--" if shared_k else "-",
                        marker="os^v"[m % 4], alpha=0.8,
                        label=f"{bpc} B/cycle, S = {_k(S)}" + (", shared K" if shared_k
                                                                 else ""))
    ax.axhline(0.9, color="k", lw=0.8, ls=":", label="90 %")
    ax.set_xscale("log", base=2)
    ticks = sorted({r["cores"] for r in rows})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.set_xlabel("cores")
    ax.set_ylabel("scaling efficiency (throughput / (cores × one core))")
    ax.set_ylim(0, 1.1)
    ax.set_title("several cores on one memory (model)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out, cfg, rows):
    """``cores.json`` beside bench.json, and the plot ``cores.png``."""
    (out / "cores.json").write_text(json.dumps({"config": cfg.to_dict(), "rows": rows},
                                               indent=2) + "\n")
    plot(rows, out / "cores.png")
