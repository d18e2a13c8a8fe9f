"""The multi-core rows of ``sofa bench``: ``cores`` memory-attached cores sharing one memory,
from the model (:mod:`sim.multiperf`).

The job: :data:`HEADS` heads of :data:`QUERIES` queries on the structured workload of the
memory benchmark (:func:`gen.axibench.job_data`), 25 % of each tile kept, RASS on, at S of
:data:`SEQS`; 1, 2, 4, 8 and 16 cores; a shared bus of 8, 16 and 32 bytes a cycle with read
latency 2; three ways to run it (:data:`VARIANTS`): each core reads its own K (SHARED_K = 0),
the shared K stream with the split of heads first (SHARED_K = 1, the reset value: from 4 cores
on, 2 heads leave several cores a head, whose K one read serves), and the shared K stream
with every core on every head (SPLIT_QUERIES = 1: one read of K serves all the cores). Two
heads of 32 queries keep every core's chunk whole blocks at 16 cores. The config is the
memory benchmark's (:func:`gen.axibench.bench_config`) with a 256-bit bus, the narrowest that
carries 32 bytes a cycle.

Every row: ``memory``, ``cores``, ``seq_len``, ``bytes_per_cycle``, ``shared_k``,
``split_queries``, ``source`` (``"model"``), ``queries_per_cycle``, ``dram_bytes`` and
``k_bytes`` (per query), ``scaling_efficiency`` (queries a cycle over ``cores`` times one
core's at the same S and bandwidth), ``bound`` (:func:`sim.multiperf.bound_of`: ``"memory"``
when the shared bus is busy more than 90 % of the job or the job is more than 5 % slower than
with a bus of the full width per core, else ``"compute"``), ``bus_busy`` (share of the job's
cycles the bus carries data), ``demand_bytes_per_cycle`` (the bytes a cycle the cores read
when each has a bus of the full width: the bandwidth above which memory stops being the
bound), ``cycles``, ``private_cycles``, ``keep``, ``heads``, ``queries``, ``data``.
"""

import json

from gen import axibench
from sim.axiperf import job_works
from sim.jobs import golden_job
from sim.multiperf import bound_of, multi_core_cycles, multi_traffic
from spec.config import CORES
from spec.job import k_followers


__all__ = ["bench_config", "model_rows", "markdown", "plot", "write", "SEQS", "BANDWIDTHS",
           "HEADS", "QUERIES", "KEEP", "LATENCY", "VARIANTS"]


SEQS = (4096, 16384)
BANDWIDTHS = (8, 16, 32)
HEADS = 2
QUERIES = 32
KEEP = 0.25
LATENCY = axibench.LATENCY
#: ``(shared_k, split_queries)`` of the rows, and their names in bench.md.
VARIANTS = {(False, False): "own K", (True, False): "shared K",
            (True, True): "shared K, split queries"}


def bench_config():
    """The memory benchmark's config with a 256-bit bus (32 bytes a cycle at most) and the
    AXI IDs the arbiter needs for 16 cores; one core's config (the model takes ``cores``)."""
    return axibench.bench_config().replace(name="corebench", axi_data_width=256,
                                           axi_id_width=2 + (max(CORES) - 1).bit_length())


def model_rows(cfg, seqs=SEQS, bandwidths=BANDWIDTHS, cores=CORES, heads=HEADS,
               queries=QUERIES, log=print):
    """The model's rows over ``seqs`` × ``cores`` × :data:`VARIANTS` × ``bandwidths``."""
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
            for shared_k, split in VARIANTS:
                if (shared_k or split) and (N == 1 or not split and
                                            not any(k_followers(job, N, shared_k))):
                    # no core takes another's K and the split is the same: the same figures
                    rows += [r | {"shared_k": shared_k, "split_queries": split} for r in rows
                             if r["seq_len"] == S and r["cores"] == N
                             and not r["shared_k"] and not r["split_queries"]]
                    continue
                kw = dict(cores=N, shared_k=shared_k, split_queries=split)
                tr = multi_traffic(big, params, job, res, **kw)
                free = multi_core_cycles(big, params, job, res, works=works, latency=LATENCY,
                                         private=True, **kw)
                for bpc in bandwidths:
                    got = multi_core_cycles(big, params, job, res, works=works,
                                            bytes_per_cycle=bpc, latency=LATENCY,
                                            breakdown=True, **kw)
                    qpc = T / got.total
                    one.setdefault(bpc, qpc)            # cores[0] is 1
                    rows.append({
                        "memory": "axi", "cores": N, "seq_len": S, "bytes_per_cycle": bpc,
                        "shared_k": shared_k, "split_queries": split, "source": "model",
                        "queries_per_cycle": qpc, "dram_bytes": tr["dram_bytes"] / T,
                        "k_bytes": tr["k"] / T, "scaling_efficiency": qpc / (N * one[bpc]),
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
    heads, queries = rows[0]["heads"], rows[0]["queries"]
    bws = sorted({r["bytes_per_cycle"] for r in rows})
    lines = ["## Several memory-attached cores on one memory (model)", "",
             f"`{cfg.name}` per core: d = {cfg.d}, Bc = {cfg.block_size}, {cfg.q_lanes} "
             f"query lanes, {cfg.axi_data_width}-bit bus shared by the cores (read latency "
             f"{LATENCY}). Job: {heads} heads × {queries} queries, structured data, "
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
    return "\n".join(lines)


def plot(rows, path):
    """Scaling efficiency against cores, a line per bandwidth, S and :data:`VARIANTS`
    (solid: own K, dashed: shared K, dotted: shared K with split queries)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 5))
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
    ax.axhline(0.9, color="k", lw=0.8, ls=":", label="90 %")
    ax.set_xscale("log", base=2)
    ticks = sorted({r["cores"] for r in rows})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.set_xlabel("cores")
    ax.set_ylabel("scaling efficiency (throughput / (cores × one core))")
    ax.set_ylim(0, 1.1)
    ax.set_title("several cores on one memory (model)")
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
