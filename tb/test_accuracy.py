"""Predictors (sim/predictors.py) and the accuracy study (sim/accuracy.py).

The last tests run the study's quick version (``python -m sim.accuracy --quick``: two texts,
25 % of the keys, Bc = 16) on the real all-MiniLM-L6-v2 and hold SOFA to measured accuracy.
"""

import json

import numpy as np
import pytest

from gen.cli import main as sofa
from spec.config import ConfigError, RunParams
from sim import accuracy as A
from sim import quickcheck as QC
from sim import golden as G
from sim import predictors as P
from sim import reference as R
from sim.minilm import load_texts


def head_data(rng, H=2, T=9, S=37, d=32, peaky=True):
    """Random int8 heads; ``peaky`` adds a few dominant keys like real attention."""
    Q = rng.integers(-127, 128, (H, T, d))
    K = rng.integers(-127, 128, (H, S, d)) // (4 if peaky else 1)
    if peaky:
        K[:, rng.choice(S, 3, replace=False)] = Q[:, :3]
    V = rng.integers(-127, 128, (H, S, d))
    return P.HeadData(Q=Q, K=K, V=V, sq=np.full(H, 0.02), sk=np.full(H, 0.03),
                      sv=np.full(H, 0.01))


# -- predictors ----------------------------------------------------------------------------

def test_pade_bounds_hold_on_every_plane():
    rng = np.random.default_rng(11)
    Q = rng.choice([-128, 127, 0, -1, 1, 64], (5, 16))
    Q[1] = rng.integers(-128, 128, 16)
    K = rng.integers(-128, 128, (40, 16))
    K[0], K[1] = -128, 127
    s = Q @ K.T
    for r in range(1, 9):
        lo, hi = P.PadeGuard.bounds(Q, K, r)
        assert np.all(lo <= s) and np.all(s <= hi), r
    lo, hi = P.PadeGuard.bounds(Q, K, 8)
    np.testing.assert_array_equal(lo, s)
    np.testing.assert_array_equal(hi, s)


@pytest.mark.parametrize("margin", [0.01, 0.5, 2.75, 8.0])
def test_pade_guard_filter_is_the_exact_threshold_set(margin):
    hd = head_data(np.random.default_rng(12))
    pade = P.PadeGuard(margin)
    sel = pade.select(hd)
    np.testing.assert_array_equal(sel.mask, pade.closed_form(hd))
    assert sel.mask.any(axis=-1).all()                       # the row maximum survives
    H, T, S, d = hd.shape
    assert sel.ops["bitplane_mac"] <= 8 * d * H * T * S
    assert sel.ops["int8_mac"] == d * sel.mask.sum()


def test_pade_prunes_planes_early():
    hd = head_data(np.random.default_rng(13))
    tight, loose = P.PadeGuard(0.5).select(hd), P.PadeGuard(1e6).select(hd)
    assert loose.mask.all() and loose.info["planes_per_key"] == 8
    assert tight.info["planes_per_key"] < 8
    with pytest.raises(ConfigError, match="margin_nat = 0"):
        P.PadeGuard(0)


def test_energon_thresholds():
    hd = head_data(np.random.default_rng(14))
    H, T, S, d = hd.shape
    everything = P.Energon(-1.0).select(hd)
    assert everything.mask.all()
    assert everything.ops == {"mac_4x2": H * T * S * d, "mac_4x4": H * T * S * d,
                              "int8_mac": 2 * d * H * T * S}
    only_max = P.Energon(1.0).select(hd)
    score = P.int_matmul_t(P.msb_truncate(hd.Q, 4), P.msb_truncate(hd.K, 2))
    assert only_max.mask.any(axis=-1).all()
    assert np.all(score[only_max.mask] == np.broadcast_to(score.max(axis=-1, keepdims=True),
                                                          score.shape)[only_max.mask])
    kept = [P.Energon(a).select(hd).mask.mean() for a in (-0.5, 0.0, 0.3, 0.6)]
    assert kept == sorted(kept, reverse=True)
    with pytest.raises(ConfigError, match="alpha"):
        P.Energon(1.5)
    with pytest.raises(ConfigError, match="rounds"):
        P.Energon(0.0, rounds=((3, 3),))


def test_msb_truncate_and_spatten():
    np.testing.assert_array_equal(P.msb_truncate([-128, -1, 0, 15, 16, 127], 4),
                                  [-8, -1, 0, 0, 1, 7])
    hd = head_data(np.random.default_rng(15))
    H, T, S, d = hd.shape
    sel = P.SpattenMSB(0.25).select(hd)
    assert (sel.mask.sum(axis=-1) == P.keep_count(0.25, S)).all()
    assert sel.ops == {"mac_4x4": H * T * S * d, "int8_mac": 2 * d * sel.mask.sum()}
    # Ties go to the lower index.
    np.testing.assert_array_equal(P.topk_mask_rows(np.array([[[3, 5, 5, 5, 1]]]), 2),
                                  [[[False, True, True, False, False]]])


def test_oracles_match_the_reference_masks():
    hd = head_data(np.random.default_rng(16), S=45)
    H, T, S, d = hd.shape
    ex = P.ExactTopK(0.25).select(hd)
    tile = P.ExactTileTopK(16, 0.25).select(hd)
    for h in range(H):
        np.testing.assert_array_equal(ex.mask[h], R.topk_mask_global(hd.scores[h],
                                                                     P.keep_count(0.25, S)))
        np.testing.assert_array_equal(tile.mask[h], R.topk_mask_tiles(hd.scores[h], 16, 4))
    assert (hd.rank[ex.mask] < P.keep_count(0.25, S)).all()


def test_sofa_predictor_is_the_golden_pipeline():
    """SofaDLZS selects and outputs exactly what sim.golden does with its registers."""
    hd = head_data(np.random.default_rng(17), S=45)
    pred = P.SofaDLZS(16, 0.25, radius_nat=3.0)
    sel = pred.select(hd)
    cfg, scale, radius = pred.run_params(hd)
    assert cfg.k_max == 4 and cfg.sort_width == 16 and cfg.d == 32
    for h in range(hd.shape[0]):
        params = RunParams(seq_len=45, top_k=4, radius=radius[h], scale_log2e=scale[h])
        gold = G.sofa_attention(hd.Q[h], hd.K[h], hd.V[h], cfg, params)
        np.testing.assert_array_equal(sel.mask[h], R.selection_mask(gold, 45))
        np.testing.assert_array_equal(sel.out[h], gold.out / 2 ** cfg.out_frac)
    full = P.SofaDLZS(16, 1.0).select(hd)
    assert full.mask.all()
    with pytest.raises(ConfigError, match="ratio = 0.3 times block_size = 16"):
        P.SofaDLZS(16, 0.3)


def test_cost_model():
    ops = {"int8_mac": 64, "shift_add": 10, "mac_4x2": 8, "bitplane_mac": 16}
    assert P.int8_equivalent(ops) == 64 + 2 + 1 + 2
    assert P.prediction_ops(ops) == {"shift_add": 10, "mac_4x2": 8, "bitplane_mac": 16}
    assert P.compute_saved({"int8_mac": 2 * 32 * 3 * 5}, 3, 5, 32) == 0.0
    with pytest.raises(KeyError, match="no cost weight"):
        P.int8_equivalent({"fp16_mac": 1})


# -- the quick study on the real model -----------------------------------------------------

#: The quick study's SOFA row (2 texts, 25 % of the keys, Bc = 16, R = ∞) is held to
#: sim.quickcheck.QUICK_LIMITS (audits and accuracy; tb/test_quickcheck.py shows that injected
#: faults break them); the mass is held here too. Measured: mass 0.731, dense datapath cosine
#: 0.99985.
SOFA_MIN_MASS = 0.70


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    texts = dict(list(load_texts().items())[:A.QUICK["n_texts"]])
    kw = {k: v for k, v in A.QUICK.items() if k != "n_texts"}
    res = A.run_study(texts, out=out, log=lambda *a: None, audit=True, **kw)
    return res, out


def _entry(res, name):
    found = [e for e in res["entries"] if e["name"] == name]
    assert len(found) == 1, name
    return found[0]


def test_quick_study_sofa_accuracy(quick):
    res, _ = quick
    sofa = _entry(res, "SOFA Bc=16 R=∞")
    assert QC.quick_check(sofa) == []
    assert sofa["mass"] >= SOFA_MIN_MASS
    assert "audit" not in _entry(res, "SOFA Bc=16 R=3")        # audited without clipping only
    assert 0.25 <= sofa["kept"] < 0.27                  # short last tiles keep a bit more
    assert sofa["saved"] > 0.6


def test_quick_study_baselines_and_oracles(quick):
    res, _ = quick
    assert _entry(res, "dense, bit-exact int8 datapath")["cos_min"] > 0.9995
    assert _entry(res, "dense, float64 on int8 inputs")["out_rel_err"] == 0.0
    oracle = _entry(res, "exact top-k (oracle)")
    assert oracle["recall"] == 1.0
    for e in res["entries"]:
        if e["ratio"] == 0.25:
            assert e["mass"] <= oracle["mass"] + 0.01, e["name"]
    clipped = _entry(res, "SOFA Bc=16 R=3")
    assert clipped["kept"] < _entry(res, "SOFA Bc=16 R=∞")["kept"]
    for fam in ("Energon", "PADE"):                      # calibrated to the target
        e = [x for x in res["entries"] if x["family"] == fam and x["ratio"] == 0.25][0]
        assert abs(e["kept"] - 0.25) < 0.01, fam


def test_quick_study_writes_the_report(quick):
    res, out = quick
    report = (out / "report.md").read_text()
    assert "## Key table: 25 % of the keys" in report
    assert A.key_table(res) in report
    for png in ("accuracy_vs_compute.png", "sofa_radius.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    def no_constants(c):
        raise AssertionError(f"results.json holds {c}, not strict JSON")

    saved = json.loads((out / "results.json").read_text(), parse_constant=no_constants)
    assert len(saved["entries"]) == len(res["entries"])


def test_calibrate_reports_an_unreachable_target():
    class Fixed:
        def __init__(self, x):
            self.x = x

    data = A.Dataset(["t"], [None], [None], [[head_data(np.random.default_rng(18))]])
    with pytest.raises(ValueError, match="outside the kept range"):
        A.calibrate(Fixed, data, 0.5, 0.0, 1.0,
                    kept_of=lambda p, hd: np.zeros(hd.scores.shape, dtype=bool))


def test_cli_rejects_a_missing_text_dir(tmp_path, capsys):
    assert sofa(["eval", "--texts", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no *.txt texts" in capsys.readouterr().err
