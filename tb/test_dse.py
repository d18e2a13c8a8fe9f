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


def test_predict_keys_rule():
    """A layer's core predicts as many keys a cycle as spec.timing.predict_keys_for sizes for
    its smallest top_k (MiniLM's d = 32: dlzs_cycles 1, mac_cycles 4, so about 4·keep⁻¹/16
    keys); one under the adaptive budget; each tile's prediction takes ceil(size / P) beats."""
    from spec.timing import predict_keys_for
    d = 32
    for bc in dse.BLOCK_SIZES:
        for n in (2, 4, 8, 16):
            k = dse.top_k_for(bc, n)
            P = dse.layer_predict_keys(d, bc, k, k)
            assert P == predict_keys_for(dse.layer_config(d, bc, k), k)
            if n <= 4:                               # 6.25 % and 12.5 % kept need P > 1
                assert P == {2: 4, 4: 2}[n], (bc, n, P)
            # several heads: the smallest top_k decides
            assert dse.layer_predict_keys(d, bc, k, (k, dse.top_k_for(bc, 16))) == P
    assert dse.layer_predict_keys(d, 64, 32, 2, adapt_bins=32) == 1
    cfg = dse.layer_config(d, 16, 1, predict_keys=4)
    assert cfg.predict_keys == 4 and cfg.name == "dse-bc16-k1-p4"
    assert list(dse.tile_predict_cycles(cfg, np.array([16, 5, 1]))) == [4, 2, 1]
    assert dse.tile_predict_cycles(dse.layer_config(d, 16, 1), 16) == 16


@pytest.mark.parametrize("bc,n", [(16, 2), (16, 4), (32, 2), (32, 4), (64, 2), (64, 4)])
def test_cycles_with_predict_keys(bc, n):
    """With predict_keys from the rule the closed form stays within 2 % of core_cycles (a row
    is at least the divide of the previous one, d cycles), and the cycles fall from the
    one-key-a-cycle core's towards the multipliers' share."""
    rng = np.random.default_rng(bc + n)
    d, T, S = 32, 40, 200
    k = dse.top_k_for(bc, n)
    base = dse.layer_config(d, bc, k)
    cfg = dse.layer_config(d, bc, k, predict_keys=dse.layer_predict_keys(d, bc, k, k))
    Q, K, V = _random_head(rng, T, S, d)
    params = RunParams(seq_len=S, top_k=k, radius=base.derived.radius_inf, scale_log2e=3000)
    res = G.sofa_attention(Q, K, V, base, params, keep_steps=True)
    work = perf.tile_work(base, Q, K, V, params, res)
    n_sel = np.array([[w[1] for w in row] for row in work])
    resc = np.array([[w[2] for w in row] for row in work])
    exact = dse.exact_cycles(cfg, S, n_sel, resc)
    assert exact == perf.core_cycles(cfg, params, res, work=work)
    cf = dse.cycles_closed_form(cfg, S, n_sel, resc)
    assert abs(cf / exact - 1) < 0.02, (cf, exact)
    one = dse.exact_cycles(base, S, n_sel, resc)
    assert exact < 0.65 * one, (exact, one)


def test_attend_prices_prediction_with_predict_keys(monkeypatch):
    """A layer's cycles assume the rule's predict_keys (heads keeping 1 and 4 of 16 keys: the
    smallest top_k needs 4 keys a cycle): fewer cycles than one key a cycle, the same output,
    keys kept and dense cycles, and the closed form near core_cycles."""
    from sim.dse import evaluate
    from sim.predictors import HeadData
    rng = np.random.default_rng(3)
    H, T, S, d = 2, 12, 120, 32
    heads = [_random_head(rng, T, S, d) for _ in range(H)]
    hd = HeadData(*(np.stack([h[i] for h in heads]) for i in range(3)),
                  sq=np.full(H, 0.02), sk=np.full(H, 0.03), sv=np.full(H, 0.01))
    setting = dse.LayerSetting(16, (dse.HeadSetting(1), dse.HeadSetting(4)))
    assert dse.layer_predict_keys(d, 16, 4, (1, 4)) == 4
    out, st = dse.attend(setting, hd, exact=True)
    monkeypatch.setattr(evaluate, "layer_predict_keys", lambda *args: 1)
    out1, st1 = dse.attend(setting, hd, exact=True)
    np.testing.assert_array_equal(out, out1)
    assert st["kept"] == st1["kept"] and st["cycles_dense"] == st1["cycles_dense"]
    assert st["cycles"] < 0.8 * st1["cycles"], (st["cycles"], st1["cycles"])
    assert st["cycles_exact"] < 0.8 * st1["cycles_exact"]
    assert abs(st["cycles"] / st["cycles_exact"] - 1) < 0.03


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
    # predict_keys of every layer's core in results.json and the tables of summary.md
    assert all(ls["predict_keys"] in (1, 2, 4, 8) for ls in results["chosen"]["plan"])
    assert "| layer | Bc | top_k (keep) | predict_keys |" in md
    assert "| Bc | top_k | predict_keys |" in md


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
    # predict_keys: per layer its core's (the rule at its smallest top_k), per head its own
    from spec.timing import predict_keys_for
    for x, e in zip(layers, data["layers"]):
        ls, cfg = x["setting"], x["config"]
        assert e["predict_keys"] == cfg.predict_keys == dse.layer_predict_keys(
            32, ls.block_size, ls.k_max, [h.top_k for h in ls.heads])
        assert [h["predict_keys"] for h in e["heads"]] == \
            [predict_keys_for(cfg, h.top_k) for h in ls.heads]
        assert x["core"].predict_keys >= cfg.predict_keys

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


# -- the adaptive budget -------------------------------------------------------------------

def test_adaptive_evaluation_equals_sofa_adaptive():
    """A uniform adaptive plan in the DSE gives what the accuracy study's SofaAdaptive gives
    (its own bins and beta, the long-input study's Bc, cap and temperature) through the same
    model: the same cosine, the same keys kept and the same compute; the screen's kept count
    is exact on layer 0 (the dense run's inputs)."""
    from sim.adaptive import SofaAdaptive
    from sim.longstudy import ADAPTIVE
    from sim.minilm import cosine
    from sim.predictors import HeadData
    ev = dse.Evaluator(dict(list(_texts().items())[:1]), max_tokens=96, screen=[0])
    rule = dse.AdaptiveRule()
    mass = 80
    r = ev.run_text(dse.adaptive_plan([mass] * 6, rule, 12), 0)
    pred = SofaAdaptive(ADAPTIVE["block_size"], ADAPTIVE["cap"], mass, ADAPTIVE["temperature"])
    seen = {"kept": 0, "cost": 0.0, "layer0": None}

    def hook(layer, q, k, v):
        hd = HeadData.from_float(q, k, v)
        sel = pred.select(hd)
        n = int(sel.mask.sum())
        seen["kept"] += n
        seen["cost"] += int8_equivalent(sel.ops)
        seen["layer0"] = n if layer == 0 else seen["layer0"]
        return sel.out * hd.sv[:, None, None]

    cos = cosine(ev.model.embed(ev.ids[0], hook), ev.ref[0])
    assert r["cos"] == cos
    assert r["kept"] == seen["kept"]
    assert r["cost"] == pytest.approx(seen["cost"], rel=1e-12)
    # The budget does select: fewer keys than the cap alone keeps (96 keys: 32 + 32 a row).
    assert r["kept"] < 6 * 12 * 96 * 64
    assert int(ev.kept(0, 0, 64, 32, math.inf, mass, rule).sum()) == seen["layer0"]
    assert r["layers"][0]["kept"] == seen["layer0"]


def test_adaptive_per_head_masses_equal_single_head_runs():
    """Heads with different masses in one layer each get what they get alone; the rule's
    own cost is charged as COST_WEIGHTS prices it."""
    from sim.predictors import COST_WEIGHTS, HeadData
    rng = np.random.default_rng(11)
    H, T, S, d = 3, 6, 80, 32
    heads = [_random_head(rng, T, S, d) for _ in range(H)]
    hd = HeadData(*(np.stack([h[i] for h in heads]) for i in range(3)),
                  sq=np.full(H, 0.02), sk=np.full(H, 0.03), sv=np.full(H, 0.01))
    rule = dse.AdaptiveRule(block_size=32, cap=8)
    masses = (40, 128, 200)
    ls = dse.adaptive_plan([masses], rule)[0]
    out, st = dse.attend(ls, hd, registers=True)
    for h in range(H):
        one = HeadData(hd.Q[h:h + 1], hd.K[h:h + 1], hd.V[h:h + 1], hd.sq[h:h + 1],
                       hd.sk[h:h + 1], hd.sv[h:h + 1])
        o1, s1 = dse.attend(dse.adaptive_plan([(masses[h],)], rule)[0], one, registers=True)
        np.testing.assert_array_equal(out[h], o1[0])
        assert st["registers"][h] == s1["registers"][0]
        assert st["registers"][h]["adapt_mass"] == masses[h]
    kept = st["kept"]
    assert kept < H * T * 3 * 8                          # the masses select below the cap
    expect = (0.2 * H * T * S * d + 2 * d * kept + COST_WEIGHTS["adapt_key"] * H * T * S
              + COST_WEIGHTS["adapt_bin"] * H * T * rule.bins)
    assert st["cost"] == pytest.approx(expect)
    assert "cycles_exact" not in dse.attend(ls, hd, exact=True)[1]


def test_adaptive_search_space():
    rule = dse.AdaptiveRule()
    assert dse.MASS_GRID[0] == 32 and dse.MASS_GRID[-1] == 192 and dse.MASS_GRID[1] == 40
    plan = dse.plan_from_params({f"L{l}_mass": 32 + 8 * l for l in range(2)}, 2, 3,
                                adaptive=rule)
    assert plan[1] == dse.LayerSetting(64, (dse.HeadSetting(32, math.inf, 40),) * 3, rule)
    per_head = {f"L0H{h}_mass": 64 + 8 * h for h in range(3)}
    plan = dse.plan_from_params(per_head, 1, 3, adaptive=rule)
    assert [h.adapt_mass for h in plan[0].heads] == [64, 72, 80]
    assert plan[0].adapt_bins == 32 and dse.uniform_plan(1, 3, 16, 4)[0].adapt_bins == 0
    assert dse.layer_config(32, 64, 32, adapt_bins=32).adapt_bins == 32
    plan = dse.plan_from_params({**per_head, "T": 2.0}, 1, 3, adaptive=rule)
    assert plan[0].adapt == dse.AdaptiveRule(temperature=2.0) and rule.temperature != 2.0


def test_adaptive_temperature_search(tmp_path, capsys):
    """--search-temperature adds one temperature ``T`` per trial; the plan carries it."""
    storage = _storage(tmp_path / "t.db")
    code, out, err = run(capsys, *QUICK, "--adaptive", "--search-temperature", "--worker",
                         "--trials", "4", "--storage", storage, "--out", str(tmp_path))
    assert code == 0, err
    trials = _complete(storage, "sofa-dse-quick-adaptive-temperature")
    assert len(trials) == 4 and all(t.params["T"] in dse.TEMPERATURES for t in trials)
    assert trials[0].params["T"] == dse.AdaptiveRule().temperature        # the warm start
    t = trials[-1]
    plan = dse.plan_from_params(t.params, 6, 12, adaptive=dse.AdaptiveRule())
    assert plan[0].adapt.temperature == t.params["T"] and "L0_mass" in t.params


# -- the tail blend in the adaptive budget --------------------------------------------------

def test_adaptive_tail_evaluation_equals_sofa_adaptive_tail():
    """A uniform adaptive plan with the tail blend gives what the study's SofaAdaptiveTail
    gives through the same model (the same cosine, keys and compute), and against the plan
    without the blend: another cosine, and beyond the kept keys' MACs (the later layers'
    inputs differ) exactly the blend's ops (sim.adaptive.tail_ops) more in every layer."""
    from sim.adaptive import SofaAdaptiveTail, tail_ops
    from sim.longstudy import ADAPTIVE, TAIL_ALPHA
    from sim.minilm import cosine
    from sim.predictors import HeadData
    ev = dse.Evaluator(dict(list(_texts().items())[:1]), max_tokens=64)
    mass = 80
    rule = dse.AdaptiveRule(tail_alpha=TAIL_ALPHA)
    assert rule.tail and dse.TAIL_ALPHA == TAIL_ALPHA
    on = ev.run_text(dse.adaptive_plan([mass] * 6, rule, 12), 0)
    off = ev.run_text(dse.adaptive_plan([mass] * 6, rule, 12, [0.0] * 6), 0)
    pred = SofaAdaptiveTail(ADAPTIVE["block_size"], ADAPTIVE["cap"], mass,
                            ADAPTIVE["temperature"], TAIL_ALPHA)
    seen = {"kept": 0, "cost": 0.0}

    def hook(layer, q, k, v):
        hd = HeadData.from_float(q, k, v)
        sel = pred.select(hd)
        seen["kept"] += int(sel.mask.sum())
        seen["cost"] += int8_equivalent(sel.ops)
        return sel.out * hd.sv[:, None, None]

    cos = cosine(ev.model.embed(ev.ids[0], hook), ev.ref[0])
    assert on["cos"] == cos and on["kept"] == seen["kept"]
    assert on["cost"] == pytest.approx(seen["cost"], rel=1e-12)
    S = len(ev.ids[0])
    blend = 6 * int8_equivalent(tail_ops(12, S, S, 32, rule.bins))
    assert on["cos"] != off["cos"]                               # the blend is applied
    keys = 2 * 32 * (on["kept"] - off["kept"])
    assert on["cost"] - off["cost"] - keys == pytest.approx(blend, rel=1e-12)  # and charged


def test_adaptive_tail_attend_registers_and_terms():
    """One layer with the blend on: each head's tail_scale is SofaAdaptiveTail's register,
    the output is the fast model's with that register (not the output without it), the
    keys are those without the blend, and each cost term grows by the blend's share."""
    from sim.adaptive import SofaAdaptiveTail, tail_ops
    from sim.predictors import HeadData
    from spec.numerics import TAIL_FRAC
    from spec.timing import tail_sweep_cycles
    rng = np.random.default_rng(5)
    H, T, S, d = 3, 6, 80, 32
    heads = [_random_head(rng, T, S, d) for _ in range(H)]
    hd = HeadData(*(np.stack([h[i] for h in heads]) for i in range(3)),
                  sq=np.full(H, 0.02), sk=np.array([0.03, 0.02, 0.04]), sv=np.full(H, 0.01))
    rule = dse.AdaptiveRule(block_size=32, cap=8)
    masses = (40, 128, 200)
    off = dse.adaptive_plan([masses], rule)[0]
    on = dse.adaptive_plan([masses], rule, alphas=[1.8])[0]
    assert on.adapt.tail_alpha == 1.8 and not off.adapt.tail
    o0, s0 = dse.attend(off, hd, registers=True)
    o1, s1 = dse.attend(on, hd, registers=True)
    cfg = dse.layer_config(d, 32, 8, adapt_bins=rule.bins)
    want = SofaAdaptiveTail(32, 8, 64, rule.temperature, 1.8, rule.bins,
                            rule.beta).tail_registers(cfg, hd)
    assert [r["tail_scale"] for r in s1["registers"]] == want and min(want) > 0
    assert [r["tail_scale"] for r in s0["registers"]] == [0] * H
    assert len(set(want)) > 1                                     # per head, from its c
    regs = s1["registers"]
    fast = sofa_heads(hd.Q, hd.K, hd.V, cfg, seq_len=S, top_k=8,
                      radius=[r["radius"] for r in regs],
                      scale_log2e=[r["scale_log2e"] for r in regs], adapt_mass=list(masses),
                      adapt_scale=[r["adapt_scale"] for r in regs],
                      adapt_shift=[r["adapt_shift"] for r in regs], tail_scale=want)
    np.testing.assert_array_equal(o1, fast.out / float(1 << cfg.out_frac))
    assert not np.array_equal(o0, o1)
    assert s1["kept"] == s0["kept"]
    assert s1["cost"] - s0["cost"] == pytest.approx(
        int8_equivalent(tail_ops(H, T, S, d, rule.bins)))
    assert s1["sort_ops"] - s0["sort_ops"] == H * T * rule.bins
    assert s1["exp"] - s0["exp"] == H * T * rule.bins
    assert s1["cycles"] > s0["cycles"] and s1["cycles_dense"] == s0["cycles_dense"]
    assert tail_sweep_cycles(rule.bins, TAIL_FRAC) > 0


def test_adaptive_tail_search_space():
    """``L{l}_tail`` sets each layer's alpha (0: off); the rule's JSON has tail_alpha only
    when the blend is on (a rule without it reads as before)."""
    rule = dse.AdaptiveRule()
    assert dse.TAIL_ALPHAS == (0.0, 1.0, 1.4, 1.8)
    params = {**{f"L{l}_mass": 64 for l in range(3)},
              **{f"L{l}_tail": a for l, a in enumerate((0.0, 1.4, 1.8))}}
    plan = dse.plan_from_params(params, 3, 2, adaptive=rule)
    assert [ls.adapt.tail_alpha for ls in plan] == [0.0, 1.4, 1.8]
    assert [ls.adapt.tail for ls in plan] == [False, True, True]
    assert "tail_alpha" not in plan[0].adapt.to_dict()
    assert plan[2].adapt.to_dict()["tail_alpha"] == 1.8
    assert dse.AdaptiveRule(**plan[2].adapt.to_dict()) == plan[2].adapt
    fixed = dse.plan_from_params({f"L{l}_mass": 64 for l in range(3)}, 3, 2,
                                 adaptive=dse.AdaptiveRule(tail_alpha=1.0))
    assert {ls.adapt.tail_alpha for ls in fixed} == {1.0}


def test_adaptive_tail_search_trials(tmp_path, capsys):
    """--tail search adds L{l}_tail per trial from TAIL_ALPHAS, warm-started at the study's
    alpha in every layer; the study's name says so."""
    storage = _storage(tmp_path / "t.db")
    code, out, err = run(capsys, *QUICK, "--adaptive", "--tail", "search", "--worker",
                         "--trials", "3", "--storage", storage, "--out", str(tmp_path))
    assert code == 0, err
    trials = _complete(storage, "sofa-dse-quick-adaptive-tail")
    assert len(trials) == 3
    assert all(t.params[f"L{l}_tail"] in dse.TAIL_ALPHAS for t in trials for l in range(6))
    assert {trials[0].params[f"L{l}_tail"] for l in range(6)} == {dse.TAIL_ALPHA}


def test_tail_settings(tmp_path):
    """--tail: off (the default) leaves the search as it was; on is the study's alpha in
    every layer, a number that alpha, search the per-layer space; the study is named so and
    the rule of the run carries a fixed alpha."""
    import argparse
    from sim.dse.pipeline import adaptive_rule
    p = dse.add_arguments(argparse.ArgumentParser())
    want = {None: None, "off": None, "on": dse.TAIL_ALPHA, "1.0": 1.0, "search": "search"}
    for arg, tail in want.items():
        argv = ["--quick", "--adaptive", "--out", str(tmp_path)] + \
            ([] if arg is None else ["--tail", arg])
        s = dse.settings_from_args(p.parse_args(argv), 2)
        assert s["tail"] == tail
        assert s["study"].endswith("-tail") == (tail is not None)
        rule = adaptive_rule(s)
        assert rule.tail_alpha == (tail if isinstance(tail, float) else 0.0)
        assert ("tail_alpha" in rule.to_dict()) == isinstance(tail, float)
    assert dse.AdaptiveRule().to_dict() == {"block_size": 64, "cap": 32, "temperature": 1.5,
                                            "bins": 32, "beta": 0.25}     # as before


@pytest.mark.parametrize("value,names", [
    ("3", "--tail 3: alpha is out of range; allowed: off, on (alpha 1.4), search, or an "
          "alpha 0.5 … 2"),
    ("0", "--tail 0: alpha is out of range"),
    ("nan", "--tail nan: alpha is out of range"),
    ("maybe", "--tail 'maybe' is not a mode or a number; allowed: off, on"),
])
def test_bad_tail_option(tmp_path, capsys, value, names):
    code, out, err = run(capsys, *QUICK, "--adaptive", "--tail", value, "--out",
                         str(tmp_path))
    assert code == 2 and names in err and len(err.strip().splitlines()) == 1, err
    code, out, err = run(capsys, *QUICK, "--tail", "search", "--out", str(tmp_path))
    assert code == 2 and "--tail search needs --adaptive" in err, err


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dse-adaptive")
    assert sofa_dse([*QUICK, "--adaptive", "--per-head", "--fresh", "--workers", "1",
                     "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def adaptive_tail_run(tmp_path_factory):
    """``--adaptive --tail search``: the mass and the tail blend's alpha per layer."""
    out = tmp_path_factory.mktemp("dse-adaptive-tail")
    assert sofa_dse([*QUICK, "--adaptive", "--tail", "search", "--fresh", "--workers", "1",
                     "--out", str(out)]) == 0
    return out


def test_adaptive_tail_plan_round_trip(adaptive_tail_run):
    """``--tail search``: plan.json, results.json and summary.md carry each layer's alpha,
    every register set its tail_scale (non-zero exactly where the blend is on), the uniform
    points come with and without the blend, and the golden model with the plan's registers
    reproduces the fast path (blend included) on a layer with the blend on."""
    out = adaptive_tail_run
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["tail"] == "search"
    rule = dse.AdaptiveRule(**results["settings"]["adaptive"])
    assert rule == dse.AdaptiveRule()                   # the alphas are the layers'
    ch = results["chosen"]
    want = dse.plan_from_params(ch["params"], 6, 12, adaptive=rule)
    assert all(f"L{l}_tail" in ch["params"] for l in range(6))
    loaded = dse.load_plan(out / "plan.json")
    assert loaded["plan"] == want
    alphas = [ls.adapt.tail_alpha for ls in want]
    data = json.loads((out / "plan.json").read_text())
    assert "tail_scale" in data["parameters"]["run_time"]
    assert [x["tail_alpha"] for x in data["layers"]] == alphas
    assert [ls["tail_alpha"] for ls in ch["plan"]] == alphas
    for x, ls in zip(loaded["layers"], want):
        for regs in x["registers"].values():
            assert all(p.tail == ls.adapt.tail for p in regs)
    summary = (out / "summary.md").read_text()
    assert "| tail alpha |" in summary and "tail blend" in summary
    assert any(e["tail_alpha"] for e in results["adaptive_uniform"]) and \
        any(not e["tail_alpha"] for e in results["adaptive_uniform"])
    assert max(alphas) > 0, "the search kept no layer with the blend"
    l = alphas.index(max(alphas))

    from sim.predictors import HeadData
    ev = dse.Evaluator(dict(list(_texts().items())[:1]), max_tokens=dse.QUICK["max_tokens"])
    x = loaded["layers"][l]
    p = x["registers"][ev.names[0]][0]
    assert p.tail_scale > 0
    hd = None

    def hook(layer, q, k, v):                 # the layer's inputs in the plan's own run
        nonlocal hd
        if layer == l:
            hd = HeadData.from_float(q, k, v)
        h = HeadData.from_float(q, k, v)
        o, _ = dse.attend(want[layer], h)
        return o * h.sv[:, None, None]

    ev.model.embed(ev.ids[0], hook)
    fast = sofa_heads(hd.Q[:1], hd.K[:1], hd.V[:1], x["config"], seq_len=p.seq_len,
                      top_k=p.top_k, radius=p.radius, scale_log2e=p.scale_log2e,
                      adapt_mass=p.adapt_mass, adapt_scale=p.adapt_scale,
                      adapt_shift=p.adapt_shift, tail_scale=p.tail_scale)
    assert fast.tail_f is not None and fast.tail_f.max() > 0
    for cfg in (x["config"], x["core"]):
        gold = G.sofa_attention(hd.Q[0][:4], hd.K[0], hd.V[0], cfg, p)
        np.testing.assert_array_equal(gold.out, fast.out[0, :4])


def test_adaptive_plan_round_trip(adaptive_run):
    """``--adaptive --per-head``: plan.json holds the masses per head, the rule, the adaptive
    registers per text and a core with bins; load_plan gives back the searched plan, and the
    golden model with the plan's registers reproduces the fast path on layer 0."""
    out = adaptive_run
    results = json.loads((out / "results.json").read_text())
    rule = dse.AdaptiveRule(**results["settings"]["adaptive"])
    assert rule == dse.AdaptiveRule()
    ch = results["chosen"]
    want = dse.plan_from_params(ch["params"], 6, 12, adaptive=rule)
    assert len({h.adapt_mass for ls in want for h in ls.heads}) > 1     # searched per head
    loaded = dse.load_plan(out / "plan.json")
    assert loaded["plan"] == want
    assert [m for ls in ch["plan"] for m in ls["adapt_mass"]] == \
        [h.adapt_mass for ls in want for h in ls.heads]
    assert loaded["cores"]["bc64"].adapt_bins == rule.bins
    assert load_config(path=out / "core_bc64.json") == loaded["cores"]["bc64"]
    data = json.loads((out / "plan.json").read_text())
    assert {"adapt_mass", "adapt_scale", "adapt_shift", "tail_scale"} <= \
        set(data["parameters"]["run_time"])
    assert all(x["tail_alpha"] == 0 for x in data["layers"])      # no --tail: the blend off
    assert "adapt_bins" in data["parameters"]["compile_time"]
    assert results["adaptive_uniform"] and "## Uniform adaptive points" in \
        (out / "summary.md").read_text()
    assert ch["all"]["saved"] >= 0.5 and "L_cycle_exact" not in ch["all"]

    from sim.predictors import HeadData
    ev = dse.Evaluator(dict(list(_texts().items())[:1]), max_tokens=dse.QUICK["max_tokens"])
    _, qkv = ev.model.capture(ev.ids[0])
    hd = HeadData.from_float(*qkv[0])
    x = loaded["layers"][0]
    regs = x["registers"][ev.names[0]]
    for h in (0, 5):
        p = regs[h]
        assert p.adapt_mass == want[0].heads[h].adapt_mass and p.adapt_shift > 0
        fast = sofa_heads(hd.Q[h:h + 1], hd.K[h:h + 1], hd.V[h:h + 1], x["config"],
                          seq_len=p.seq_len, top_k=p.top_k, radius=p.radius,
                          scale_log2e=p.scale_log2e, adapt_mass=p.adapt_mass,
                          adapt_scale=p.adapt_scale, adapt_shift=p.adapt_shift,
                          tail_scale=p.tail_scale)
        assert fast.blocked_mass.sum() > 0                # the budget blocked keys
        for cfg in (x["config"], x["core"]):
            gold = G.sofa_attention(hd.Q[h][:4], hd.K[h], hd.V[h], cfg, p)
            np.testing.assert_array_equal(gold.out, fast.out[0, :4])


_DELETE = object()

#: (case id, path into an adaptive plan.json, value, what the message names).
ADAPTIVE_PLAN_CASES = [
    ("mass-zero", ("layers", 0, "heads", 3, "adapt_mass"), 0, "adapt_mass = 0"),
    ("mass-257", ("layers", 0, "heads", 3, "adapt_mass"), 257, "allowed 1 … 256"),
    ("mass-float", ("layers", 0, "heads", 3, "adapt_mass"), 64.5, "adapt_mass"),
    ("mass-string", ("layers", 0, "heads", 3, "adapt_mass"), "64", "adapt_mass"),
    ("mass-missing", ("layers", 0, "heads", 3, "adapt_mass"), _DELETE, "adapt_mass"),
    ("top_k-not-cap", ("layers", 1, "heads", 0, "top_k"), 16, "cap = 32"),
    ("rule-missing", ("layers", 2, "adaptive"), _DELETE, "'adaptive' is missing"),
    ("rule-extra", ("layers", 2, "adaptive", "bogus"), 1, "adaptive must have the fields"),
    ("rule-temperature", ("layers", 2, "adaptive", "temperature"), 0, "temperature = 0"),
    ("rule-bins", ("layers", 2, "adaptive", "bins"), 16, "bins = 16"),
    ("rule-cap", ("layers", 2, "adaptive", "cap"), 64, "cap = 64"),
    ("core-no-bins", ("cores", "bc64", "adapt_bins"), 0, "adapt_bins = 32"),
    ("register-mass", ("layers", 0, "registers", "TEXT", 4, "adapt_mass"), 1, "adapt_mass = 1"),
    ("register-shift", ("layers", 0, "registers", "TEXT", 4, "adapt_shift"), 99,
     "adapt_shift"),
    ("register-scale", ("layers", 0, "registers", "TEXT", 4, "adapt_scale"), -1,
     "adapt_scale"),
    ("register-missing", ("layers", 0, "registers", "TEXT", 4, "adapt_scale"), _DELETE,
     "adapt_mass, adapt_scale, adapt_shift"),
]


@pytest.mark.parametrize("path,value,names", [c[1:] for c in ADAPTIVE_PLAN_CASES],
                         ids=[c[0] for c in ADAPTIVE_PLAN_CASES])
def test_bad_adaptive_plan(adaptive_run, tmp_path, path, value, names):
    from spec.config import ConfigError
    doc = json.loads((adaptive_run / "plan.json").read_text())
    text = next(iter(doc["layers"][0]["registers"]))
    *head, last = (text if k == "TEXT" else k for k in path)
    obj = doc
    for k in head:
        obj = obj[k]
    if value is _DELETE:
        del obj[last]
    else:
        obj[last] = value
    file = tmp_path / "plan.json"
    file.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as e:
        dse.load_plan(file)
    message = str(e.value)
    assert "\n" not in message and str(file) in message and names in message, message


def test_bad_tail_in_a_plan(adaptive_tail_run, tmp_path):
    """tail_scale must be non-zero exactly in the layers whose rule has the blend on, and a
    layer's tail_alpha must be its rule's; a plan from before the blend (no tail_scale, no
    tail_alpha) reads as the blend off."""
    from spec.config import ConfigError
    adaptive_run = adaptive_tail_run
    base = json.loads((adaptive_run / "plan.json").read_text())
    on = [l for l, x in enumerate(base["layers"]) if x["tail_alpha"]]
    off = [l for l, x in enumerate(base["layers"]) if not x["tail_alpha"]]
    assert on, "the search kept no layer with the blend"
    cases = [((on[0], "registers", "TEXT", 2, "tail_scale"), 0, "tail_scale = 0, but the "
              "layer's tail_alpha is"),
             ((on[0], "adaptive", "tail_alpha"), -1.0, "adaptive.tail_alpha = -1"),
             ((on[0], "tail_alpha"), 0.5, "tail_alpha = 0.5 differs from its rule's")]
    if off:
        cases.append(((off[0], "registers", "TEXT", 2, "tail_scale"), 100,
                      "tail_scale = 100, but the layer's tail_alpha is 0; allowed 0"))
    file = tmp_path / "plan.json"
    for path, value, names in cases:
        doc = json.loads(json.dumps(base))
        obj = doc["layers"]
        *head, last = path
        for k in head:
            obj = obj[next(iter(obj)) if k == "TEXT" else k]
        obj[last] = value
        file.write_text(json.dumps(doc))
        with pytest.raises(ConfigError) as e:
            dse.load_plan(file)
        assert "\n" not in str(e.value) and names in str(e.value), (path, str(e.value))
    if off:                                      # as written before the blend: still loads
        doc = json.loads(json.dumps(base))
        x = doc["layers"][off[0]]
        del x["tail_alpha"]
        for regs in x["registers"].values():
            for r in regs:
                del r["tail_scale"]
        file.write_text(json.dumps(doc))
        assert dse.load_plan(file)["plan"] == dse.load_plan(adaptive_run / "plan.json")["plan"]


@pytest.mark.parametrize("where,value,message", [
    ("head", 8, r"head 0: predict_keys = 8, but top_k = \d+ needs \d on the layer's config "
                r"\(spec.timing.predict_keys_for\); allowed \d$"),
    ("head", "2", r"head 0: predict_keys"),
    ("layer", 8, r"layer 0: predict_keys = 8 differs from its config's predict_keys = \d; "
                 r"allowed \d$"),
    ("layer", 0, r"layer 0: predict_keys = 0 is out of range; allowed 1 … 8"),
])
def test_bad_predict_keys_in_a_plan(quick_run, tmp_path, where, value, message):
    """The predict_keys a plan shows must be the rule's (a head's) and its config's (a
    layer's); absent, nothing is checked (a plan written by hand)."""
    from spec.config import ConfigError
    doc = json.loads((quick_run / "plan.json").read_text())
    obj = doc["layers"][0]["heads"][0] if where == "head" else doc["layers"][0]
    if obj["predict_keys"] == value:
        value = 4
    obj["predict_keys"] = value
    file = tmp_path / "plan.json"
    file.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=message):
        dse.load_plan(file)
    del obj["predict_keys"]
    file.write_text(json.dumps(doc))
    dse.load_plan(file)


def test_adapt_mass_needs_an_adaptive_layer(tmp_path):
    from spec.config import ConfigError
    from tb.support.plans import valid_plan
    doc = valid_plan()
    doc["layers"][3]["heads"][2]["adapt_mass"] = 64
    file = tmp_path / "plan.json"
    file.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"layer 3: head 2: adapt_mass = 64 needs a layer "
                                          r"with the adaptive budget .*; allowed 0$"):
        dse.load_plan(file)
    doc["layers"][3]["heads"][2]["adapt_mass"] = 0            # the fixed budget: accepted
    file.write_text(json.dumps(doc))
    assert dse.load_plan(file)["plan"][3].heads[2].adapt_mass == 0


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
    (["--adaptive", "--adapt-temperature", "0"],
     "argument --adapt-temperature: 0.0 is out of range; allowed (0, 8]"),
    (["--adaptive", "--adapt-temperature", "9"], "allowed (0, 8]"),
    (["--adaptive", "--adapt-temperature", "nan"], "--adapt-temperature: nan is not a finite"),
    (["--adaptive", "--adapt-temperature", "x"], "--adapt-temperature: 'x' is not a number"),
    (["--adapt-temperature", "2"], "--adapt-temperature 2 needs --adaptive"),
    (["--search-temperature"], "--search-temperature needs --adaptive"),
    (["--adaptive", "--search-temperature", "--adapt-temperature", "2"],
     "--adapt-temperature 2 cannot be used with --search-temperature"),
    (["--adaptive", "--radius-trials", "3"],
     "--radius-trials 3: the radius-only comparison is not run with --adaptive"),
])
def test_bad_arguments(tmp_path, capsys, argv, message):
    try:
        code, _, err = run(capsys, *QUICK, "--out", str(tmp_path), *argv)
    except SystemExit as e:                                  # argparse
        code, err = e.code, capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err
