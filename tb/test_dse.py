"""Design-space exploration (the sim/dse package): the per-tile work and cycle model against
the golden model and sim/perf.py, a quick search end to end (outputs, the plan accepted by the
golden model, reproducibility with a fixed seed), two worker processes sharing one SQLite
study, resuming a study, and one-line errors for bad arguments.

The quick search (``sofa dse --quick``) runs on two texts cut to 48 tokens with a
compute budget of 50 %, so it tests the machinery, not the result."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spec.config import RunParams, load_config
from gen.cli import main as sofa
from sim import dse


def sofa_dse(argv):
    """``sofa dse ARGV``."""
    return sofa(["dse", *argv])
from sim import golden as G
from sim import perf
from sim.fastgolden import sofa_heads
from sim.predictors import int8_equivalent

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["--quick", "--no-progress"]


def run(capsys, *argv):
    code = sofa_dse(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _storage(path):
    return f"sqlite:///{path}"


def _complete(storage, name):
    import optuna
    from optuna.trial import TrialState
    study = optuna.load_study(study_name=name, storage=storage)
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


# -- per-tile work and cycles --------------------------------------------------------------

def _random_head(rng, T, S, d):
    Q = rng.integers(-127, 128, (T, d))
    K = rng.integers(-127, 128, (S, d)) // 3
    K[rng.choice(S, 4, replace=False)] = Q[:4]           # a few dominant keys
    V = rng.integers(-127, 128, (S, d))
    return Q, K, V


@pytest.mark.parametrize("bc,k,radius", [(16, 4, None), (16, 1, None), (32, 8, 3000),
                                         (16, 16, 1500)])
def test_tile_work_matches_golden_and_perf(bc, k, radius):
    """Selected keys and rescales per tile equal sim.perf.tile_work (recounted from the golden
    SU-FA trace); exact_cycles is core_cycles; the closed form is exact in dense mode and
    close in sparse mode once there are enough rows for the pipeline to settle."""
    rng = np.random.default_rng(bc * 100 + k)
    d = 16
    cfg = dse.layer_config(d, bc, k)
    radius = cfg.derived.radius_inf if radius is None else radius
    for T, S in ((5, 75), (40, 200)):
        Q, K, V = _random_head(rng, T, S, d)
        for dense in (False, True):
            params = RunParams(seq_len=S, top_k=k, radius=radius, scale_log2e=3000,
                               dense=dense)
            res = G.sofa_attention(Q, K, V, cfg, params, keep_steps=True)
            work = perf.tile_work(cfg, Q, K, V, params, res)
            if dense:
                sel = np.broadcast_to(dse.dense_order(S, bc), (T, len(work[0]), bc))
            else:
                sel = np.full((T, len(work[0]), k), -1)
                for i, row in enumerate(res.selection):
                    for t, tile in enumerate(row):
                        sel[i, t, :len(tile.indices)] = tile.indices
            n_sel, misses, resc = dse.tile_rescales(sel, res.scores)
            np.testing.assert_array_equal(n_sel, [[w[1] for w in row] for row in work])
            np.testing.assert_array_equal(resc, [[w[2] for w in row] for row in work])
            np.testing.assert_array_equal(misses.sum(axis=1), [r.misses for r in res.rows])
            exact = perf.core_cycles(cfg, params, res, work=work)
            assert dse.exact_cycles(cfg, S, n_sel, resc, dense=dense) == exact
            cf = dse.cycles_closed_form(cfg, S, n_sel, resc, dense=dense)
            if dense:
                assert cf == exact
            elif T == 40:
                # 5.6 % on the SU-FA-bound (16, 16) case since the prediction pipeline gained
                # two registers (the closed form charges the row start as a prediction row)
                assert abs(cf / exact - 1) < 0.06, (cf, exact)


def test_fast_path_counts_match_fastgolden():
    rng = np.random.default_rng(5)
    H, T, S, d = 3, 7, 90, 16
    heads = [_random_head(rng, T, S, d) for _ in range(H)]
    Q, K, V = (np.stack([h[i] for h in heads]) for i in range(3))
    cfg = dse.layer_config(d, 32, 6)
    res = sofa_heads(Q, K, V, cfg, seq_len=S, top_k=6, radius=[2000, 5000, 900],
                     scale_log2e=[2500, 4000, 3000])
    n_sel, misses, resc = dse.tile_rescales(res.sel.reshape(H * T, -1, 6),
                                            res.scores.reshape(H * T, S))
    np.testing.assert_array_equal(misses.sum(axis=1), res.misses.reshape(-1))
    np.testing.assert_array_equal(resc.sum(axis=1), res.rescales.reshape(-1))
    np.testing.assert_array_equal(n_sel.sum(axis=1), res.keys.reshape(-1))


def test_per_head_settings_equal_single_head_runs():
    """A layer whose heads differ in top_k and R gives each head what it would get alone
    (with the same cost sums), and the same as SofaDLZS for a uniform setting."""
    from sim.predictors import HeadData, SofaDLZS
    rng = np.random.default_rng(9)
    H, T, S, d = 4, 6, 70, 32
    heads = [_random_head(rng, T, S, d) for _ in range(H)]
    hd = HeadData(*(np.stack([h[i] for h in heads]) for i in range(3)),
                  sq=np.full(H, 0.02), sk=np.full(H, 0.03), sv=np.full(H, 0.01))
    hs = (dse.HeadSetting(2), dse.HeadSetting(4, 3.0), dse.HeadSetting(2, 5.0),
          dse.HeadSetting(8))
    out, st = dse.attend(dse.LayerSetting(32, hs), hd, registers=True)
    kept = 0
    for h in range(H):
        one = HeadData(hd.Q[h:h + 1], hd.K[h:h + 1], hd.V[h:h + 1], hd.sq[h:h + 1],
                       hd.sk[h:h + 1], hd.sv[h:h + 1])
        o1, s1 = dse.attend(dse.LayerSetting(32, (hs[h],)), one, registers=True)
        np.testing.assert_array_equal(out[h], o1[0])
        assert st["registers"][h] == s1["registers"][0]
        assert st["registers"][h]["top_k"] == hs[h].top_k
        kept += s1["kept"]
    assert st["kept"] == kept
    uniform = dse.LayerSetting(16, (dse.HeadSetting(4, 3.0),) * H)
    sel = SofaDLZS(16, 0.25, 3.0).select(hd)
    out, st = dse.attend(uniform, hd)
    np.testing.assert_array_equal(out, sel.out)
    assert st["kept"] == sel.mask.sum()
    assert st["cost"] == int8_equivalent(sel.ops)


def test_search_space_and_warm_start():
    assert [dse.top_k_for(16, n) for n in (2, 3, 4, 16)] == [1, 2, 2, 8]
    assert [dse.top_k_for(64, n) for n in (2, 5, 16)] == [4, 10, 32]
    plan = dse.plan_from_params({"L0_bc": 32, "L0_keep": 4, "L0_R": 0,
                                 "L1_bc": 64, "L1_keep": 16, "L1_R": 5}, 2, 3)
    assert plan[0] == dse.LayerSetting(32, (dse.HeadSetting(4, math.inf),) * 3)
    assert plan[1].heads[2] == dse.HeadSetting(32, 3.0)
    warm = dse.warm_start(0.75, 2, 3, False, 32, [200])
    assert [w["L0_bc"] for w in warm] == [16, 32, 64]
    for w in warm:                                       # inside the budget without clipping
        bc = w["L0_bc"]
        assert 0.9 - dse.kept_full([200], bc, dse.top_k_for(bc, w["L0_keep"])) >= 0.75


def test_frontier_interpolation():
    pts = [{"all": {"saved": s, "cos_mean": c}} for s, c in
           [(0.6, 0.98), (0.7, 0.95), (0.8, 0.90), (0.75, 0.91)]]
    assert dse.frontier_at(pts, 0.7) == pytest.approx(0.95)
    assert dse.frontier_at(pts, 0.725) == pytest.approx(0.93)     # between (0.7, 0.95), (0.75, 0.91)
    assert dse.frontier_at(pts, 0.5) == pytest.approx(0.98)
    assert dse.frontier_at(pts, 0.85) is None


# -- a quick search end to end -------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dse")
    assert sofa_dse([*QUICK, "--fresh", "--workers", "2", "--out", str(out)]) == 0
    return out


def test_quick_outputs(quick_run):
    out = quick_run
    for name in ("plan.json", "summary.md", "pareto.png", "results.json", "study.db"):
        assert (out / name).is_file(), name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "summary.md").read_text()
    assert "## Best point" in md and "sphere clipping alone" in md and "pareto.png" in md
    results = json.loads((out / "results.json").read_text())
    assert len(results["trials"]) == dse.QUICK["trials"]
    assert results["chosen"]["all"]["saved"] >= 0.5
    assert len(results["fixed"]) == sum(len(v) for v in dse.fixed_grid(quick=True).values())
    assert results["radius"]["uniform"]["all"]["saved"] >= results["radius"]["ref"]["all"]["saved"]
    # The closed-form cycle ratio tracks sim.perf.core_cycles.
    m = results["chosen"]["all"]
    assert abs(m["L_cycle"] / m["L_cycle_exact"] - 1) < 0.05


def test_plan_is_accepted_by_the_generator_and_the_golden_model(quick_run):
    plan = dse.load_plan(quick_run / "plan.json")            # validates every register set
    layers = plan["layers"]
    assert len(layers) == 6 and all(len(x["setting"].heads) == 12 for x in layers)
    for x in layers:
        assert len(x["registers"]) == 2 and all(len(r) == 12 for r in x["registers"].values())
    for name, core in plan["cores"].items():
        assert load_config(path=quick_run / f"core_{name}.json") == core
    data = json.loads((quick_run / "plan.json").read_text())
    assert set(data["parameters"]["run_time"]) >= {"seq_len", "top_k", "radius", "scale_log2e"}
    assert "block_size" in data["parameters"]["compile_time"]

    # Layer 0 sees the dense model's Q, K, V: run the golden model with the plan's registers,
    # on the layer's own config and on the shared core, against the fast path.
    from sim.predictors import HeadData
    ev = dse.Evaluator(dict(list(_texts().items())[:1]), max_tokens=dse.QUICK["max_tokens"])
    _, qkv = ev.model.capture(ev.ids[0])
    hd = HeadData.from_float(*qkv[0])
    x = layers[0]
    text = next(iter(x["registers"]))
    for h in (0, 7):
        p = x["registers"][text][h]
        assert p.seq_len == hd.shape[2] and p.top_k == x["setting"].heads[h].top_k
        fast = sofa_heads(hd.Q[h:h + 1], hd.K[h:h + 1], hd.V[h:h + 1], x["config"],
                          seq_len=p.seq_len, top_k=p.top_k, radius=p.radius,
                          scale_log2e=p.scale_log2e)
        for cfg in (x["config"], x["core"]):
            gold = G.sofa_attention(hd.Q[h][:4], hd.K[h], hd.V[h], cfg, p)
            np.testing.assert_array_equal(gold.out, fast.out[0, :4])


def _texts():
    from sim.minilm import load_texts
    return load_texts()


def test_quick_search_is_reproducible(quick_run, tmp_path):
    assert sofa_dse([*QUICK, "--fresh", "--workers", "2", "--out", str(tmp_path),
                     "--skip-radius"]) == 0
    assert (tmp_path / "plan.json").read_text() == (quick_run / "plan.json").read_text()
    a, b = (json.loads((d / "results.json").read_text())["trials"] for d in (quick_run, tmp_path))
    strip = [{k: t[k] for k in ("number", "value", "params", "metrics")} for t in a]
    assert strip == [{k: t[k] for k in ("number", "value", "params", "metrics")} for t in b]


# -- scaling out ---------------------------------------------------------------------------

def test_two_workers_share_one_sqlite_study(tmp_path):
    storage = _storage(tmp_path / "shared.db")
    cmd = [sys.executable, "-m", "gen", "dse", *QUICK, "--worker", "--trials", "8",
           "--storage", storage, "--study-name", "shared", "--out", str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Neither worker may run the whole budget alone (5 + 6 > 8 > 6), so both take part
    # however the two start: with one unlimited worker a slow start of the other left it
    # nothing to do.
    procs = [subprocess.Popen(cmd + extra, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for extra in (["--worker-trials", "5"], ["--worker-trials", "6"])]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    trials = _complete(storage, "shared")
    assert len(trials) == 8                                  # the budget, not more
    by_worker = {}
    for t in trials:
        by_worker[t.user_attrs["worker"]] = by_worker.get(t.user_attrs["worker"], 0) + 1
    assert len(by_worker) == 2, by_worker                    # both worked on it
    pid_a = procs[0].pid
    assert by_worker[next(w for w in by_worker if w.endswith(f":{pid_a}"))] <= 5
    # A coordinator then reports from the finished study without running trials.
    out = tmp_path / "report"
    assert sofa_dse([*QUICK, "--trials", "8", "--storage", storage, "--study-name", "shared",
                     "--workers", "1", "--skip-radius", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert sorted(t["number"] for t in results["trials"]) == sorted(t.number for t in trials)
    assert dse.load_plan(out / "plan.json")["metrics"]["saved"] >= 0.5


def test_a_study_resumes(tmp_path, capsys):
    storage = _storage(tmp_path / "s.db")
    args = [*QUICK, "--worker", "--storage", storage, "--study-name", "r", "--out",
            str(tmp_path)]
    assert run(capsys, *args, "--trials", "3")[0] == 0
    assert len(_complete(storage, "r")) == 3
    code, out, _ = run(capsys, *args, "--trials", "5")
    assert code == 0 and "3 complete trials of 5 (resumed)" in out
    assert [t.number for t in _complete(storage, "r")] == [0, 1, 2, 3, 4]
    # The same study with another budget is refused with one line.
    code, _, err = run(capsys, *args, "--trials", "5", "--budget", "0.6")
    assert code == 2 and err.startswith("error: study 'r' was made with budget = 0.5")
    assert err.count("\n") == 1


def test_per_head_search_space(tmp_path, capsys):
    storage = _storage(tmp_path / "h.db")
    code, _, err = run(capsys, *QUICK, "--worker", "--per-head", "--trials", "4", "--storage",
                       storage, "--study-name", "h", "--out", str(tmp_path))
    assert code == 0, err
    trials = _complete(storage, "h")
    assert len(trials) == 4
    t = trials[-1]
    assert {"L0_bc", "L0H0_keep", "L5H11_R"} <= set(t.params) and "L0_keep" not in t.params
    plan = dse.plan_from_params(t.params, 6, 12)
    assert [h.top_k for h in plan[0].heads] == [
        dse.top_k_for(t.params["L0_bc"], t.params[f"L0H{h}_keep"]) for h in range(12)]


# -- bad arguments -------------------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["--budget", "0.95"], "cannot be met: DLZS prediction alone costs 10.0 %"),
    (["--budget", "abc"], "--budget 'abc' is not a number"),
    (["--budget", "0"], "must be above 0"),
    (["--trials", "0"], "--trials = 0 is out of range; allowed 1 … 100000"),
    (["--trials", "x"], "argument --trials: 'x' is not a decimal integer"),
    (["--workers", "0"], "--workers = 0 is out of range; allowed 1 … 32"),
    (["--radius-bc", "64"], "needs k_max = 64, above the 32 a core supports"),
    (["--radius-bc", "24"], "--radius-bc 24 must be one of 16, 32, 64"),
    (["--search-texts", "3"], "--search-texts 3 must be 1 … 2"),
    (["--storage", "nonsense"], "is not a database URL"),
    (["--storage", "nosuchdb://x/y"], "--storage 'nosuchdb://x/y'"),
    (["--worker", "--fresh"], "--fresh cannot be used with --worker"),
    (["--worker-trials", "2"], "--worker-trials needs --worker"),
    (["--alpha", "-1"], "argument --alpha: -1.0 is out of range; allowed [0, ∞)"),
    (["--texts", "/nonexistent"], "no *.txt texts in /nonexistent"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments(tmp_path, capsys, argv, message):
    try:
        code, _, err = run(capsys, *QUICK, "--out", str(tmp_path), *argv)
    except SystemExit as e:                                  # argparse
        code, err = e.code, capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err
