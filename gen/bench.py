"""``sofa bench``: the core's speed-up over dense mode, measured on the RTL.

Runs ``sofa_top`` on Verilator (the testbench :mod:`gen.rtlsim.bench_tb`) in dense mode and in
sparse mode at top_k = 50, 25, 12.5 and 6.25 % of the tile, same config and data (structured: a
few dominant keys per query, :func:`sim.workloads.structured`), every output checked against
the golden model, once for each ``predict_keys`` of :data:`PREDICT_KEYS` the config allows (a
build each). Writes ``<out>/bench.json`` and ``<out>/bench.md``: cycles, speed-up over dense,
the MAC-only ideal, PE utilisation, effective (dense-equivalent) operations per multiplier and
cycle, K/V rows read against the lower bound, the prediction's share of the cycles, the
cycle model's projection to longer sequences, and the cycle model's cost of a call against
its number of queries (bench.json's ``per_call``: the fill and drain a call pays once).
The RTL runs put :data:`ROWS` queries through one call (``--rows``). Every row has ``predict_keys``, ``seq_len``,
``keep``, ``source`` (``"rtl"`` or ``"model"``), ``speedup``, ``ideal_mac_ratio``,
``pe_utilisation`` and ``ops_per_mult_cycle``. Then the memory-attached core's rows
(:mod:`gen.axibench`, bench.json's ``memory``, with its rows over ``predict_keys`` in
``memory.predict_keys``; ``--no-memory`` skips them, ``--no-memory-predict`` the latter) and
the model of several memory-attached cores on one memory (:mod:`gen.corebench`, bench.json's ``cores``,
``cores.png``; ``--no-cores`` skips them).

The default config is the ``default`` preset with ``k_max = 8`` (50 % of a 16-key tile needs
top_k = 8); ``--preset``/``--config`` choose another.

The command line (``sofa bench``) gets its options from :func:`add_arguments` and runs
:func:`run`; bad input raises :class:`spec.config.ConfigError`, a failed RTL check
:class:`gen.rtlsim.runner.SimulationError` (one of :data:`FAILURES`).
"""

import json
import time
from pathlib import Path

from gen import axibench, corebench, projbench
from gen.design import add_design_arguments, load_cfg
from gen.rtlsim.runner import SimulationError, run_cocotb
from spec.config import ConfigError, RunParams, preset
from spec.job import job_end
from spec.validate import check_int, check_out_dir, int_arg, make_out_dir, path_arg


__all__ = ["add_arguments", "check", "run", "bench_config", "top_ks", "bench_keys", "metrics",
           "projections", "call_rows", "call_markdown", "markdown", "RATIOS", "PREDICT_KEYS", "PROJECT_SEQ",
           "ROWS", "CALL_QUERIES", "FAILURES"]


#: Sparse runs keep these shares of a tile's keys (top_k = ratio × block_size).
RATIOS = (0.5, 0.25, 0.125, 0.0625)
#: The bench builds the core once for each of these ``predict_keys`` the config allows.
PREDICT_KEYS = (1, 2, 4)
#: Sequence lengths of the cycle model's projection.
PROJECT_SEQ = (4096, 16384)
#: Queries per run (``--rows``): a call pays the pipeline's fill and the last row's divide and
#: output once (about 150 cycles at ``default``), which a short sparse row cannot hide at 4
#: queries; a sequence of S keys brings S queries, so 16 is the nearer figure.
ROWS = 16
#: Queries per call of the cycle model's table of the per-call cost (:func:`call_rows`).
CALL_QUERIES = (1, 4, 16, 64)
#: What a failed run raises (the command line's exit status 1).
FAILURES = (SimulationError,)


def bench_config(args):
    """The config of ``--preset``/``--config``; without either, ``default`` with k_max = 8."""
    return load_cfg(args, default=preset("default").replace(name="bench", k_max=8))


def top_ks(cfg, ratios):
    """top_k of each ratio of ``block_size`` (at least 1); raises ConfigError above k_max."""
    ks = []
    for r in ratios:
        k = max(1, round(cfg.block_size * r))
        if k > cfg.k_max:
            raise ConfigError(f"k_max = {cfg.k_max} is too small for the bench: top_k ratio "
                              f"{r:g} of block_size = {cfg.block_size} needs top_k = {k}; "
                              f"allowed: k_max >= {k}")
        ks.append(k)
    return ks


def bench_keys(cfg):
    """The ``predict_keys`` the bench builds for ``cfg``: those of :data:`PREDICT_KEYS` and the
    config's own that the config allows (one key a cycle for a core that takes no more)."""
    out = []
    for P in sorted(set(PREDICT_KEYS) | {cfg.predict_keys}):
        try:
            cfg.replace(predict_keys=P)
        except ConfigError:
            continue
        out.append(P)
    return out


def metrics(cfg, record, dense):
    """Derived figures of one run (dict of counters, as the testbench wrote it) against the
    dense run."""
    der = cfg.derived
    c = record["counters"]
    S, T = record["seq_len"], record["rows"]
    cycles = c["busy_cycles"]
    useful = 2 * cfg.d * c["keys"]                       # Q·K and P·V multiplies
    sel_cycles = c["keys"] * der.mac_cycles              # SU-FA time if nothing else cost
    pred_cycles = 0 if record["dense"] else \
        -(-S // cfg.predict_keys) * T * der.dlzs_cycles
    ideal_cycles = max(sel_cycles, pred_cycles)
    multipliers = 2 * cfg.mac_lanes * cfg.q_lanes        # Q·K and P·V in every lane
    out = {
        "predict_keys": cfg.predict_keys,
        "source": "rtl",
        "mode": "dense" if record["dense"] else f"top_k={record['top_k']}",
        "keep": record["top_k"] / cfg.block_size if not record["dense"] else 1.0,
        "cycles": cycles,
        "cycles_per_query": cycles / T,
        "speedup": dense["counters"]["busy_cycles"] / cycles,
        "ideal_mac_ratio": (S * T) / c["keys"],
        "ideal_speedup": (S * T * der.mac_cycles) / ideal_cycles,
        "pe_utilisation": useful / (2 * cfg.mac_lanes * cycles),
        # dense-equivalent work, 4·S·d operations a query (Q·Kᵀ and P·V, two a MAC)
        "ops_per_mult_cycle": 4 * S * cfg.d * T / (multipliers * cycles),
        "kv_rows_read": 2 * c["kv_rows_fetch"],
        "kv_rows_lower_bound": 2 * c["keys"],
        "k_rows_predict": c["k_rows_predict"],
        "predict_share": c["predict_cycles"] / cycles,
        "rescales": c["rescales"], "misses": c["misses"], "keys": c["keys"],
        "starved_cycles": c["starved_cycles"], "sufa_stall_cycles": c["sufa_stall_cycles"],
    }
    # The literature's ideal: dense MACs over sparse MACs plus the prediction's operations in
    # INT8-MAC equivalents (a DLZS shift-add = 0.2, sim.predictors.COST_WEIGHTS).
    from sim.predictors import COST_WEIGHTS
    pred_ops = 0 if record["dense"] else COST_WEIGHTS["shift_add"] * cfg.d * S * T
    out["ideal_ops_speedup"] = (2 * cfg.d * S * T) / (useful + pred_ops)
    out["of_ideal"] = out["speedup"] / out["ideal_speedup"]
    out["of_ideal_mac"] = out["speedup"] / out["ideal_mac_ratio"]
    out["of_ideal_ops"] = out["speedup"] / out["ideal_ops_speedup"]
    return out


def call_rows(cfg, seq, ks, counts=CALL_QUERIES, seed=1):
    """The cycle model at S = ``seq`` for calls of each number of queries of ``counts``, on
    the bench's data (:func:`sim.workloads.structured` as :mod:`gen.rtlsim.bench_tb` draws
    it), each kept ratio with the ``predict_keys`` sized for it
    (:func:`spec.timing.predict_keys_for`) against dense mode on the same build: how the
    pipeline's fill and drain, paid once a call, weigh with the number of queries
    (``source = "model"``; ``fill_cycles``, ``drain_cycles`` from
    :class:`sim.perf.CycleBreakdown`)."""
    import numpy as np
    from sim.golden import sofa_attention
    from sim.perf import core_cycles, tile_work
    from sim.workloads import structured
    from spec.timing import predict_keys_for
    out = []
    c = RunParams.scale_from_float(cfg, 1e-3)
    for T in counts:
        rng = np.random.default_rng(seed)
        Q, K, V = structured(cfg, rng, T, seq, dominant=max(3, seq // 64))
        dense = {}
        for k in ks:
            P = predict_keys_for(cfg, k)
            one = cfg.replace(predict_keys=P)
            if P not in dense:
                params = RunParams(seq_len=seq, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                                   scale_log2e=c, dense=True)
                dense[P] = core_cycles(one, params, sofa_attention(Q, K, V, cfg, params),
                                       Q, K, V)
            params = RunParams(seq_len=seq, top_k=k, radius=cfg.derived.radius_inf,
                               scale_log2e=c)
            res = sofa_attention(Q, K, V, cfg, params)
            b = core_cycles(one, params, res, work=tile_work(cfg, Q, K, V, params, res),
                            breakdown=True)
            keys = res.counters()["keys"]
            row = {"predict_keys": P, "source": "model", "seq_len": seq, "queries": T,
                   "mode": f"top_k={k}", "keep": k / cfg.block_size,
                   "cycles_per_query": b.total / T, "speedup": dense[P] / b.total,
                   "ideal_mac_ratio": seq * T / keys,
                   "pe_utilisation": 2 * cfg.d * keys / (2 * cfg.mac_lanes * b.total),
                   "fill_cycles": b.fill, "drain_cycles": b.drain}
            row["of_ideal_mac"] = row["speedup"] / row["ideal_mac_ratio"]
            out.append(row)
    return out


def projections(cfg, ks, seed=1, rows=ROWS):
    """The cycle model at longer S, on structured data from the golden model, for each
    ``predict_keys`` of :func:`bench_keys` (rows with ``source = "model"``)."""
    import numpy as np
    from sim.golden import sofa_attention
    from sim.perf import core_cycles
    from sim.workloads import structured
    from sim.perf import tile_work
    out = []
    for S in PROJECT_SEQ:
        big = cfg.replace(max_seq_len=max(S, cfg.max_seq_len))
        rng = np.random.default_rng(seed)
        Q, K, V = structured(big, rng, rows, S, dominant=S // 64)
        c = RunParams.scale_from_float(big, 1e-3)
        runs = []
        for k in [None] + ks:
            params = RunParams(seq_len=S, top_k=k or big.k_max,
                               radius=big.derived.radius_inf, scale_log2e=c, dense=k is None)
            res = sofa_attention(Q, K, V, big, params)
            runs.append((k, params, res, tile_work(big, Q, K, V, params, res)))
        for P in bench_keys(big):
            one = big.replace(predict_keys=P)
            dense = None
            for k, params, res, work in runs:
                cyc = core_cycles(one, params, res, work=work)
                dense = cyc if k is None else dense
                keys = res.counters()["keys"]
                out.append({
                    "predict_keys": P, "source": "model", "seq_len": S,
                    "mode": "dense" if k is None else f"top_k={k}",
                    "keep": 1.0 if k is None else k / big.block_size,
                    "cycles_per_query": cyc / rows, "speedup": dense / cyc,
                    "ideal_mac_ratio": S * rows / keys,
                    "pe_utilisation": 2 * big.d * keys / (2 * big.mac_lanes * cyc),
                    "ops_per_mult_cycle": 4 * S * big.d * rows
                    / (2 * big.mac_lanes * big.q_lanes * cyc)})
    return out


def markdown(cfg, rows, proj, wall, calls=()):
    lines = [
        f"# SOFA core benchmark: `{cfg.name}` (d={cfg.d}, Bc={cfg.block_size}, "
        f"mac_lanes={cfg.mac_lanes}, dlzs_lanes={cfg.dlzs_lanes})",
        "",
        f"RTL on Verilator, every output checked against the golden model; "
        f"S = {rows[0]['seq_len']}, {rows[0]['queries']} queries, structured data. "
        f"Wall time {wall:.0f} s.",
        "",
        "| keys/cycle | mode | keys kept | cycles/query | speed-up | MAC ratio | of MAC ratio | "
        "ideal (ops) | of ideal (ops) | ideal (overlapped) | of ideal (overl.) | PE util. | ops/mult·cycle | "
        "K/V rows read / lower bound | K rows for prediction | prediction share | rescales |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['predict_keys']} | {r['mode']} | {r['keep']:.2%} | "
            f"{r['cycles_per_query']:.0f} | {r['speedup']:.2f}× | {r['ideal_mac_ratio']:.2f}× | "
            f"{r['of_ideal_mac']:.0%} | {r['ideal_ops_speedup']:.2f}× | {r['of_ideal_ops']:.0%} | "
            f"{r['ideal_speedup']:.2f}× | {r['of_ideal']:.0%} | "
            f"{r['pe_utilisation']:.0%} | {r['ops_per_mult_cycle']:.2f} | "
            f"{r['kv_rows_read']} / {r['kv_rows_lower_bound']} | "
            f"{r['k_rows_predict']} | {r['predict_share']:.0%} | {r['rescales']} |")
    lines += [
        "",
        "*ideal (ops)*: dense MACs over (sparse MACs + DLZS shift-adds × 0.2), the operation "
        "count with SOFA's area ratio for a shift-add. *ideal (overlapped)*: dense SU-FA "
        "cycles over max(sparse SU-FA cycles, prediction cycles), a perfect pipeline that "
        "overlaps prediction with attention on this hardware. The MAC ratio alone (dense MACs / "
        "sparse MACs) is *MAC ratio* (`ideal_mac_ratio` in bench.json), the speed-up's share "
        "of it *of MAC ratio*. "
        "*PE util.*: useful multiplies (2·d per selected key) over "
        "(2·mac_lanes × cycles). *ops/mult·cycle*: dense-equivalent operations (4·S·d a "
        "query: Q·Kᵀ and P·V, two a MAC) over multipliers (2·mac_lanes·q_lanes) × cycles; "
        "dense mode reaches at most 2. *keys/cycle*: `predict_keys`, keys predicted a "
        "cycle per lane (a build each).",
        "",
        "## Projection with the cycle model (sim/perf.py)",
        "",
        "| S | keys/cycle | mode | cycles/query | speed-up | MAC ratio | PE util. | "
        "ops/mult·cycle |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in proj:
        lines.append(f"| {p['seq_len']} | {p['predict_keys']} | {p['mode']} | "
                     f"{p['cycles_per_query']:.0f} | {p['speedup']:.2f}× | "
                     f"{p['ideal_mac_ratio']:.2f}× | {p['pe_utilisation']:.0%} | "
                     f"{p['ops_per_mult_cycle']:.2f} |")
    if calls:
        lines += ["", *call_markdown(calls, rows[0]["queries"])]
    return "\n".join(lines) + "\n"


def call_markdown(calls, queries):
    """The lines of bench.md's table of :func:`call_rows`; ``queries``: those of the RTL
    rows."""
    lines = [
        f"## Queries per call (cycle model, S = {calls[0]['seq_len']})",
        "",
        "A call pays the pipeline's fill (query to SU-FA's first key: K read, DLZS, SADS "
        "over the first tile) and drain (SU-FA's last key to the last output element: "
        "SU-FA's pipeline, the divider, `d` output beats) once; every query pays its keys, "
        "its rescales and a few cycles of hand-over. Each kept ratio at the "
        "`predict_keys` sized for it (`spec.timing.predict_keys_for`), against dense mode "
        f"with as many queries; the RTL rows above are at {queries} queries.",
        "",
        "| keys/cycle | keys kept | queries | cycles/query | speed-up | MAC ratio | "
        "of MAC ratio | PE util. | fill + drain (cycles a call) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(calls, key=lambda c: (-c["keep"], c["queries"])):
        lines.append(f"| {c['predict_keys']} | {c['keep']:.2%} | {c['queries']} | "
                     f"{c['cycles_per_query']:.0f} | {c['speedup']:.2f}× | "
                     f"{c['ideal_mac_ratio']:.2f}× | {c['of_ideal_mac']:.0%} | "
                     f"{c['pe_utilisation']:.0%} | {c['fill_cycles']} + "
                     f"{c['drain_cycles']} |")
    return lines


def _memory_bytes(cfg, jobs):
    """AxiRam's size for bench ``jobs``: the power of two above the end of the largest job's
    tensors as :func:`gen.axibench.job_data` lays them out (:func:`spec.job.job_end`)."""
    end = max(job_end(cfg, axibench.job_data(cfg, j)[0]) for j in jobs)
    return 1 << end.bit_length()


def _memory_runs(cfg, jobs, raw, bench, name, mem_bytes=None):
    """Run the testbench ``gen.rtlsim.<bench>_tb`` (``bench``: ``"axibench"``,
    ``"corebench"`` or ``"projbench"``, which read ``SOFA_<BENCH>_JOBS``, ``_OUT`` and
    ``_MEM``) on a Verilator build ``name`` of ``cfg`` with ``jobs``, AxiRam sized for them
    (or ``mem_bytes``); its per-job results, also kept in ``raw``."""
    from hw.top import sofa_top
    prefix = f"SOFA_{bench.upper()}"
    raw = raw.resolve()
    mem = _memory_bytes(cfg, jobs) if mem_bytes is None else mem_bytes
    run_cocotb("sofa_top", sofa_top, cfg, f"gen.rtlsim.{bench}_tb", name=name,
               extra_env={f"{prefix}_JOBS": json.dumps(jobs), f"{prefix}_OUT": raw,
                          f"{prefix}_MEM": mem})
    return json.loads(raw.read_text())["jobs"]


def memory_predict_bench(args, log=print):
    """The memory-attached core's rows over ``predict_keys`` (:func:`gen.axibench.predict_config`
    on Verilator for each of :data:`gen.axibench.PREDICT_KEYS`, the cycle model beside)."""
    rows = []
    for P in axibench.PREDICT_KEYS:
        one = axibench.predict_config(P)
        rows += axibench.predict_rows(one, _memory_runs(
            one, axibench.predict_jobs(one), args.out / f"axi_runs-pk{P}.json",
            "axibench", f"bench-{one.name}"))
        log(f"memory core: predict_keys = {P} done")
    return rows


def on_demand_bench(args, log=print):
    """The on-demand K/V rows (:mod:`gen.projbench`): given, project and dense-project on
    Verilator at S = 1k, the models beside and at longer S."""
    pc, gc = projbench.project_config(), projbench.given_config()
    rtl = []
    for S in projbench.RTL_SEQ:
        jobs = projbench.project_jobs(pc, S)
        end = max(job_end(pc, projbench.project_job_data(pc, j)[0]) for j in jobs)
        project = _memory_runs(pc, jobs, args.out / f"project_runs-{S}.json", "projbench",
                               f"bench-{pc.name}", mem_bytes=1 << end.bit_length())
        given = _memory_runs(gc, projbench.given_jobs(gc, S),
                             args.out / f"given_runs-{S}.json", "axibench",
                             f"bench-{gc.name}")
        rtl += projbench.rtl_rows(project, given)
        log(f"on-demand K/V: RTL at S = {S} done")
    return rtl + projbench.model_rows(log=log)


def memory_bench(args, log=print):
    """The memory-attached core's rows (:mod:`gen.axibench`): ``(rows dict, markdown)``."""
    cfg = axibench.bench_config()
    rtl = axibench.rtl_rows(cfg, _memory_runs(cfg, axibench.rtl_jobs(cfg, args.memory_seq),
                                              args.out / "axi_runs.json",
                                              "axibench", f"bench-{cfg.name}"))
    log("memory core: RTL done")
    predict = memory_predict_bench(args, log=log) if args.memory_predict else []
    on_demand = on_demand_bench(args, log=log) if args.on_demand else []
    model = axibench.model_rows(cfg, args.model_seq, log=log)
    lanes = axibench.lane_rows(cfg)
    minilm = axibench.minilm_rows(cfg, log=log) if args.minilm else []
    axibench.write(args.out, cfg, rtl, model, lanes, minilm)
    rows = {"config": cfg.to_dict(), "rows": rtl + model + minilm, "lanes": lanes,
            "predict_keys": predict, "on_demand": on_demand}
    return rows, axibench.markdown(cfg, rtl, model, lanes, minilm) + "\n" + \
        axibench.predict_markdown(predict) + "\n" + projbench.markdown(on_demand)


def cores_bench(args, log=print):
    """Several memory-attached cores on one memory (:mod:`gen.corebench`): 1, 2 and 4 cores on
    Verilator, 1 … 16 from the model; ``(rows dict, markdown)``."""
    cfg = corebench.bench_config()
    results = []
    for N in corebench.RTL_CORES:
        one = cfg.replace(cores=N)
        results += _memory_runs(one, corebench.rtl_jobs(one, N, S=args.cores_seq),
                                args.out / f"core_runs-c{N}.json", "corebench",
                                f"bench-{cfg.name}-c{N}")
        log(f"cores: RTL with {N} core(s) done")
    rtl = corebench.rtl_rows(cfg, results, log=log)
    rows = rtl + corebench.model_rows(cfg, log=log)
    corebench.write(args.out, cfg, rows)
    return {"config": cfg.to_dict(), "rows": rows}, corebench.markdown(cfg, rows)


def add_arguments(parser):
    """The options of ``sofa bench``."""
    add_design_arguments(parser, out=False, preset_default="the default preset with "
                         "k_max = 8, named bench")
    parser.add_argument("--seq", metavar="S", type=int_arg(),
                        help="sequence length, 1 … max_seq_len (default: max_seq_len)")
    parser.add_argument("--rows", metavar="T", type=int_arg(), default=ROWS,
                        help=f"queries per run, at least 1 (default: {ROWS})")
    parser.add_argument("--out", metavar="DIR", type=path_arg, default=Path("build/bench"),
                        help="output directory (default: build/bench)")
    parser.add_argument("--no-projection", dest="projection", action="store_false",
                        help="skip the cycle model's projection to S = "
                             f"{' and '.join(map(str, PROJECT_SEQ))} and its table of "
                             f"{', '.join(map(str, CALL_QUERIES))} queries a call "
                             "(default: projected)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the memory-attached core's rows (default: run them)")
    parser.add_argument("--memory-seq", metavar="S,...", type=_seq_list,
                        default=list(axibench.RTL_SEQ),
                        help="S of the memory core's RTL runs (default: "
                             f"{','.join(map(str, axibench.RTL_SEQ))})")
    parser.add_argument("--model-seq", metavar="S,...", type=_seq_list,
                        default=list(axibench.MODEL_SEQ),
                        help="S of its cycle-model rows (default: "
                             f"{','.join(map(str, axibench.MODEL_SEQ))})")
    core = axibench.core_config()
    parser.add_argument("--no-memory-predict", dest="memory_predict", action="store_false",
                        help="skip the memory core's rows over predict_keys, "
                             f"{', '.join(map(str, axibench.PREDICT_KEYS))} on the "
                             f"memory board's per-core compute (d = {core.d}, a "
                             f"{core.axi_data_width}-bit bus) at "
                             f"S = {axibench.PREDICT_SEQ} "
                             "(default: run them)")
    parser.add_argument("--no-on-demand", dest="on_demand", action="store_false",
                        help="skip the on-demand K/V rows (kv_source given, project and "
                             "dense-project, d_model = 384, RTL at S = 1k and the models at "
                             "4k and 16k) (default: run them)")
    parser.add_argument("--no-minilm", dest="minilm", action="store_false",
                        help="skip the MiniLM traffic rows (default: run them)")
    parser.add_argument("--no-cores", dest="cores", action="store_false",
                        help="skip the multi-core rows, RTL and model (default: run them)")
    parser.add_argument("--cores-seq", metavar="S", type=int_arg(1, 65536),
                        default=corebench.RTL_SEQ,
                        help="S of the multi-core RTL runs, 1 … 65536 (default: "
                             f"{corebench.RTL_SEQ}; the model's rows are at "
                             f"{' and '.join(map(str, corebench.SEQS))})")


def _seq_list(text):
    """A comma-separated list of sequence lengths 1 … 65536."""
    parts = text.split(",")
    return [int_arg(1, 65536)(p.strip()) for p in parts]


def check(args):
    """Every input of ``sofa bench`` checked before anything is built or run: ``(cfg, S,
    top_ks)``. Raises :class:`ConfigError`: the config, one without counters (the bench
    reads them), a k_max too small for :data:`RATIOS`, ``--seq`` above max_seq_len, ``--rows``,
    an ``--out`` that cannot be made (nothing is created)."""
    cfg = bench_config(args)
    if cfg.counter_width == 0:
        raise ConfigError(f"counter_width = 0 ({cfg.name}): the bench reads the core's "
                          f"counters; use a config with counter_width 8 … 32")
    ks = top_ks(cfg, RATIOS)
    seq = check_int("--seq", cfg.max_seq_len if args.seq is None else args.seq, 1,
                    cfg.max_seq_len)
    check_int("--rows", args.rows, 1)
    check_out_dir("--out", args.out)
    return cfg, seq, ks


def run(args):
    """Run the bench on ``args`` (from :func:`add_arguments`); returns the exit status 0.

    Raises
    ------
    ConfigError
        Bad input (:func:`check`, before any work).
    SimulationError
        The Verilator build failed or the RTL disagreed with the golden model.
    """
    cfg, seq, ks = check(args)
    make_out_dir("--out", args.out)

    from hw.top import sofa_top
    start = time.monotonic()
    rows = []
    for P in bench_keys(cfg):
        one = cfg.replace(predict_keys=P)
        raw_path = (args.out / f"runs-pk{P}.json").resolve()
        run_cocotb("sofa_top", sofa_top, one, "gen.rtlsim.bench_tb",
                   name=f"bench-{cfg.name}" + (f"-pk{P}" if P > 1 else ""),
                   extra_env={"SOFA_BENCH_OUT": raw_path, "SOFA_BENCH_SEQ": seq,
                              "SOFA_BENCH_ROWS": args.rows,
                              "SOFA_BENCH_TOPK": ",".join(map(str, ks))})
        raw = json.loads(raw_path.read_text())
        dense = raw["runs"][0]
        rows += [metrics(one, run_, dense) | {"seq_len": seq, "queries": args.rows}
                 for run_ in raw["runs"]]
        print(f"predict_keys = {P}: RTL done", flush=True)
    proj = projections(cfg, ks, rows=args.rows) if args.projection else []
    calls = call_rows(cfg, seq, ks) if args.projection else []
    wall = time.monotonic() - start
    report = {"config": cfg.to_dict(), "seq_len": seq, "queries": args.rows, "runs": rows,
              "projection": proj, "per_call": calls, "wall_seconds": round(wall, 1)}
    md = markdown(cfg, rows, proj, wall, calls)
    if args.memory:
        report["memory"], memory_md = memory_bench(args)
        md += "\n" + memory_md
        report["wall_seconds"] = round(time.monotonic() - start, 1)
    if args.cores:
        report["cores"], cores_md = cores_bench(args)
        md += "\n" + cores_md
        report["wall_seconds"] = round(time.monotonic() - start, 1)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "bench.md").write_text(md)
    print(md)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0
