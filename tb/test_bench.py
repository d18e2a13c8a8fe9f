"""``sofa bench`` (:mod:`gen.bench`) without the simulator: every option documents its default,
and bad input is one :class:`ConfigError` naming the parameter, the value and what is allowed,
raised before anything is built. The run itself is ``make bench``."""

import argparse

import pytest

from gen import bench
from spec.config import ConfigError


def parse(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser, parser.parse_args(list(argv))


class Recorder:
    """Stands in for a parser and records each option's keywords."""

    def __init__(self):
        self.options = {}

    def add_argument(self, *names, **kwargs):
        self.options[names[0]] = kwargs

    def add_mutually_exclusive_group(self, **kwargs):
        return self


def test_every_option_states_its_default():
    recorder = Recorder()
    bench.add_arguments(recorder)
    assert set(recorder.options) == {"--preset", "--config", "--seq", "--rows", "--out",
                                     "--no-projection", "--no-memory", "--memory-seq",
                                     "--model-seq", "--no-minilm", "--no-cores", "--cores-seq",
                                     "--no-memory-predict", "--no-on-demand"}
    for name, kwargs in recorder.options.items():
        assert "(default: " in kwargs["help"], name
    _, args = parse()
    assert args.rows == bench.ROWS == 16 and args.seq is None and args.projection
    assert str(args.out) == "build/bench"


def test_default_config():
    _, args = parse()
    cfg = bench.bench_config(args)
    assert cfg.name == "bench" and cfg.k_max == 8
    assert bench.top_ks(cfg, bench.RATIOS) == [8, 4, 2, 1]
    assert bench.bench_keys(cfg) == [1, 2, 4]


@pytest.mark.parametrize("argv,message", [
    (["--seq", "0"], "--seq = 0 is out of range; allowed 1 … 1024"),
    (["--seq", "2000"], "--seq = 2000 is out of range; allowed 1 … 1024"),
    (["--rows", "0"], "--rows = 0 is out of range; allowed 1 … ∞"),
    (["--preset", "tiny"], "k_max = 2 is too small for the bench: top_k ratio 0.5 of "
                           "block_size = 8 needs top_k = 4; allowed: k_max >= 4"),
    (["--preset", "nope"], "unknown preset 'nope'"),
])
def test_bad_input(tmp_path, argv, message):
    _, args = parse(*argv, "--out", str(tmp_path / "out"))
    with pytest.raises(ConfigError) as e:
        bench.run(args)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_unwritable_out(tmp_path):
    (tmp_path / "file").write_text("")
    _, args = parse("--seq", "16", "--out", str(tmp_path / "file" / "sub"))
    with pytest.raises(ConfigError, match="--out .* is not a directory"):
        bench.run(args)


def test_no_counters_is_refused_before_the_run(tmp_path, capsys):
    """A core without counters cannot be measured: one line, exit 2, nothing built or written."""
    from gen.cli import main
    path = tmp_path / "cw0.json"
    path.write_text('{"preset": "tiny", "counter_width": 0, "k_max": 4, "sort_width": 8}')
    out = tmp_path / "out"
    assert main(["bench", "--config", str(path), "--seq", "16", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: counter_width = 0") and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "a", "1024,", "70000", "-3"])
def test_bad_memory_seq(capsys, value):
    """--memory-seq, --model-seq and --cores-seq take lengths 1 … 65536, each checked."""
    from gen.cli import main
    for option in ("--memory-seq", "--model-seq", "--cores-seq"):
        with pytest.raises(SystemExit) as e:
            main(["bench", option, value])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: argument {option}:") and err.count("\n") == 1


def test_call_rows():
    """The cycle model's cost of a call (tiny at S = 64): every ratio at its sized
    predict_keys for every count of queries, the fill and drain paid once a call (the same
    for every count), so the cycles a query fall and the speed-up rises with the queries;
    the table is in bench.md."""
    from spec.config import preset
    from spec.timing import predict_keys_for
    cfg = preset("tiny").replace(name="t", k_max=4, sort_width=8)
    ks = bench.top_ks(cfg, bench.RATIOS)
    calls = bench.call_rows(cfg, 64, ks, counts=(1, 4, 16))
    assert len(calls) == 3 * len(ks)
    fields = {"predict_keys", "source", "seq_len", "queries", "keep", "cycles_per_query",
              "speedup", "ideal_mac_ratio", "of_ideal_mac", "pe_utilisation", "fill_cycles",
              "drain_cycles"}
    for k in ks:
        mine = [c for c in calls if c["mode"] == f"top_k={k}"]
        assert all(fields <= set(c) and c["source"] == "model" for c in mine)
        assert {c["predict_keys"] for c in mine} == {predict_keys_for(cfg, k)}
        assert len({(c["fill_cycles"], c["drain_cycles"]) for c in mine}) == 1
        assert mine[0]["fill_cycles"] > 0 and mine[0]["drain_cycles"] > cfg.d
        per_query = [c["cycles_per_query"] for c in mine]
        assert per_query == sorted(per_query, reverse=True), per_query
        assert mine[-1]["speedup"] > mine[0]["speedup"]
    md = "\n".join(bench.call_markdown(calls, 16))
    assert "(cycle model, S = 64)" in md and md.count("\n| ") == 1 + len(calls)


def test_memory_rows_have_the_fields():
    """The memory core's rows carry every field the benchmark promises (the RTL's counters
    turned into rows; the model's rows at a short S)."""
    from gen import axibench
    cfg = axibench.bench_config()
    rows = axibench.model_rows(cfg, seqs=[64], bandwidths=[8], log=lambda *a: None)
    fields = {"memory", "seq_len", "keep", "q_lanes", "bytes_per_cycle", "cycles_per_query",
              "speedup", "dram_bytes", "dram_bytes_no_rass", "dram_bytes_dense",
              "dram_lower_bound", "source", "data"}
    assert all(fields <= set(r) for r in rows) and len(rows) == 5
    dense = next(r for r in rows if r["keep"] == 1.0)
    assert dense["speedup"] == 1.0 and all(r["dram_bytes"] <= dense["dram_bytes_dense"]
                                           for r in rows)


def test_core_rows_have_the_fields():
    """The multi-core rows (the model at a short S) carry every field the benchmark promises;
    one core's efficiency is 1; the shared K stream reads less K where cores share a head."""
    from gen import corebench
    cfg = corebench.bench_config()
    rows = corebench.model_rows(cfg, seqs=[64], bandwidths=[8, 32], cores=(2, 4), heads=2,
                                queries=4, log=lambda *a: None)
    fields = {"cores", "seq_len", "bytes_per_cycle", "source", "queries_per_cycle",
              "dram_bytes", "bound", "scaling_efficiency", "shared_k", "split_queries"}
    assert all(fields <= set(r) for r in rows) and len(rows) == 3 * 3 * 2
    assert {r["bound"] for r in rows} <= {"compute", "memory"}
    assert all(r["scaling_efficiency"] == 1.0 for r in rows if r["cores"] == 1)

    def k_bytes(cores, shared_k, split):
        return {r["k_bytes"] for r in rows if (r["cores"], r["shared_k"], r["split_queries"])
                == (cores, shared_k, split)}

    # two cores: heads split, nothing shared; with split queries one read serves both
    assert k_bytes(2, True, False) == k_bytes(2, False, False)
    assert {2 * k for k in k_bytes(2, True, True)} == k_bytes(2, False, False)
    # four cores on two heads: two cores a head share K
    assert {2 * k for k in k_bytes(4, True, False)} == k_bytes(4, False, False)
    assert "| 4 |" in corebench.markdown(cfg, rows)


def test_core_rtl_jobs_and_rows():
    """The multi-core RTL jobs: every bandwidth, only the variants that read or split
    differently from each core reading its own K; their rows (here from counters the way the
    testbench reads them, :func:`sim.jobs.job_counters`, and the model's cycles standing in for
    the RTL's) carry the fields, the bus bytes count a shared K read once, one core's
    efficiency is 1 and the model's error is 0 against itself."""
    from gen import axibench, corebench
    from sim.jobs import golden_job, job_counters
    from sim.multiperf import multi_core_cycles
    cfg = corebench.bench_config()
    kw = dict(S=64, bandwidths=(4, 32), heads=2, queries=4)
    jobs = {N: corebench.rtl_jobs(cfg.replace(cores=N), N, **kw) for N in (1, 2, 4)}
    variants = {N: {(j["shared_k"], j["split_queries"]) for j in js} for N, js in jobs.items()}
    assert variants == {1: {(False, False)}, 2: {(False, False), (True, True)},
                        4: set(corebench.VARIANTS)}
    assert all({j["bytes_per_cycle"] for j in js} == {4, 32} for js in jobs.values())
    results = []
    for N, js in jobs.items():
        one = cfg.replace(cores=N)
        for spec in js:
            job, params, tensors = axibench.job_data(one, spec)
            res = golden_job(one, params, job, *tensors)
            totals, _ = job_counters(one, params, job, *tensors, shared_k=spec["shared_k"],
                                     split_queries=spec["split_queries"])
            totals["busy_cycles"] = multi_core_cycles(
                one, params, job, res, tensors, cores=N, bytes_per_cycle=spec["bytes_per_cycle"],
                latency=corebench.LATENCY, shared_k=spec["shared_k"],
                split_queries=spec["split_queries"])
            results.append(spec | {"counters": totals, "core_busy_cycles": []})
    rows = corebench.rtl_rows(cfg, results, log=lambda *a: None)
    assert len(rows) == 3 * 3 * 2 and {r["source"] for r in rows} == {"rtl"}
    fields = {"cores", "seq_len", "bytes_per_cycle", "source", "queries_per_cycle",
              "dram_bytes", "bound", "scaling_efficiency", "model_cycles", "model_error"}
    assert all(fields <= set(r) for r in rows)
    assert all(r["model_error"] == 0 for r in rows)
    assert all(r["scaling_efficiency"] == 1.0 for r in rows if r["cores"] == 1)
    model = corebench.model_rows(cfg, seqs=[64], bandwidths=[4, 32], cores=(2, 4), heads=2,
                                 queries=4, log=lambda *a: None)
    for r in rows:
        m = next(m for m in model if all(m[k] == r[k] for k in
                                         ("cores", "bytes_per_cycle", "shared_k",
                                          "split_queries")))
        assert r["k_bytes"] == m["k_bytes"] and r["dram_bytes"] == m["dram_bytes"]
        assert r["cycles"] == m["cycles"] and r["bound"] == m["bound"]
    md = corebench.markdown(cfg, rows + model)
    assert "on Verilator" in md and "within 0.0%" in md


def test_predict_rows_use_the_core_config_and_have_the_fields():
    """The rows over predict_keys run the multi-core bench's per-core config (one definition,
    :func:`gen.axibench.core_config`) at each predict_keys; their rows (from counters the way
    the testbench reads them, :func:`sim.jobs.job_counters`, and the model's cycles standing in
    for the RTL's) carry predict_keys, the model's cycles and a zero error against itself."""
    from gen import axibench, corebench
    from sim.axiperf import axi_core_cycles
    from sim.jobs import golden_job, job_counters, traffic
    core = corebench.bench_config().to_dict()
    rows = []
    for P in axibench.PREDICT_KEYS:
        cfg = axibench.predict_config(P)
        assert cfg.predict_keys == P and cfg.axi_data_width == 256 and cfg.d == 32
        mine = cfg.to_dict()
        assert {k for k in core if core[k] != mine[k]} <= {"name", "axi_id_width",
                                                           "predict_keys"}
        jobs = axibench.predict_jobs(cfg, S=64)
        assert [j["keep"] for j in jobs] == [1.0] + list(axibench.RATIOS)
        results = []
        for spec in jobs:
            job, params, tensors = axibench.job_data(cfg, spec)
            res = golden_job(cfg, params, job, *tensors)
            totals, _ = job_counters(cfg, params, job, *tensors)
            totals["busy_cycles"] = axi_core_cycles(cfg, params, job, res, tensors,
                                                    latency=axibench.LATENCY)
            results.append(spec | {"counters": totals, "traffic": traffic(cfg, params, job, res)})
        rows += axibench.predict_rows(cfg, results)
    assert len(rows) == len(axibench.PREDICT_KEYS) * (1 + len(axibench.RATIOS))
    fields = {"predict_keys", "bus_bits", "seq_len", "keep", "cycles_per_query", "speedup",
              "model_cycles_per_query", "model_error", "source"}
    assert all(fields <= set(r) for r in rows) and all(r["model_error"] == 0 for r in rows)
    md = axibench.predict_markdown(rows)
    assert "256-bit bus" in md and md.count("\n| ") == 1 + len(rows)


def test_on_demand_rows():
    """The on-demand K/V rows (gen.projbench) from the models at a short S: every field the
    issue asks for; projecting only the kept rows costs that share of the dense projection's
    MACs, and the given mode's totals include the projection of every row."""
    from gen import projbench
    S = 256
    rows = projbench.model_rows(seqs=(S,), log=lambda *_: None)
    assert {r["kv_source"] for r in rows} == {"given", "project", "dense-project"}
    for r in rows:
        assert {"kv_source", "seq_len", "keep", "source", "macs_per_query",
                "dram_bytes"} <= set(r)
        assert r["seq_len"] == S and r["source"] == "model"
    by = {(r["kv_source"], r["keep"]): r for r in rows}
    cfg = projbench.project_config()
    full = 2 * cfg.d * cfg.d_model * S
    assert by["dense-project", 1.0]["projection_macs_per_query"] == full
    assert by["given", 0.25]["projection_macs_per_query"] == full
    for keep in projbench.RATIOS:
        assert by["project", keep]["projection_macs_per_query"] == keep * full
        assert by["project", keep]["macs_per_query"] < by["given", keep]["macs_per_query"]
    assert projbench.markdown(rows).count("\n| model |") == len(rows)
