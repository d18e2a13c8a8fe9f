"""The long-input study (sim/longstudy.py) and the adaptive budget in the study
(sim/adaptive.py), on small settings; the whole study runs in ``make eval``."""

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from sim import longstudy as LS
from sim.accuracy import jsonable
from sim.adaptive import ExactTopP, SofaAdaptive, SofaAdaptiveTail
from sim.minilm import LONG_TEXT_DIR, MiniLM, load_texts
from sim.predictors import ExactTopK
from spec.config import ConfigError


@pytest.fixture(scope="module")
def model():
    return MiniLM()


@pytest.fixture(scope="module")
def short_long(model):
    """The first long text at 128 tokens."""
    texts = dict(list(load_texts(LONG_TEXT_DIR).items())[:1])
    with threadpool_limits(limits=1, user_api="blas"):
        yield texts, LS.long_dataset(model, texts, 128)


def test_quick_long_rows_carry_the_headline_fields(model, short_long, tmp_path):
    texts, data = short_long
    assert [len(i) for i in data.ids] == [128]
    with threadpool_limits(limits=1, user_api="blas"):
        res = LS.run_long(model, texts, lengths=(128,), quick=True, log=lambda *a: None)
    rows = res["rows"]
    for r in rows:
        for key in ("tokens", "name", "kept", "saved", "cos_mean", "cos_min", "recall"):
            assert key in r, key
        assert r["tokens"] == 128 and 0 < r["kept"] <= 1 and r["cos_min"] <= r["cos_mean"]
    names = [r["name"] for r in rows]
    assert len(set(names)) == len(names)
    assert sum("adaptive" in n for n in names) >= 2 and sum("oracle" in n for n in names) >= 2
    adaptive = [r for r in rows if "adaptive" in r["name"]]
    assert adaptive[0]["kept"] < adaptive[1]["kept"]          # p = 72/256 < 96/256
    assert res["kept_per_head"]["kept"] and len(res["kept_per_head"]["kept"]) == 6
    json.dumps(jsonable(res), allow_nan=False)
    plots = LS.write_long_plots(res, tmp_path)
    assert [f for _, f in plots] == ["long_cosine_vs_saved.png", "adaptive_kept_per_head.png"]
    md = LS.long_markdown(res)
    assert "| SOFA adaptive |" in md and "exact top-p (oracle)" in md
    assert "| SOFA adaptive+tail |" in md
    # The headline: the best adaptive row (the tail blend's included) at >= 75 % saved.
    ok = [r for r in rows if "adaptive" in r["name"] and r["saved"] >= LS.SAVED_TARGET]
    best = LS.best_adaptive(rows, 128)
    assert best is (max(ok, key=lambda r: r["cos_mean"]) if ok else None)
    assert LS.best_adaptive(rows, 512) is None
    fake = [dict(r, saved=0.8) for r in rows]
    assert LS.best_adaptive(fake, 128)["name"].startswith("SOFA adaptive+tail")
    assert "**Headline** (128 tokens, the best adaptive row" in LS.long_markdown(
        dict(res, rows=fake))


def test_adaptive_cost_is_charged(short_long):
    _, data = short_long
    hd = data.layers[0][2]
    H, T, S, d = hd.shape
    sel = SofaAdaptive(64, 16, 128).select(hd)
    assert sel.ops["adapt_key"] == H * T * S and sel.ops["adapt_bin"] == H * T * 32
    assert sel.ops["int8_mac"] == 2 * d * int(sel.mask.sum())
    assert sel.mask.any(axis=-1).all()                      # the best key is always kept
    more = SofaAdaptive(64, 16, 200).select(hd).mask
    assert more.sum() > sel.mask.sum() and (more | sel.mask).sum() == more.sum()
    with pytest.raises(ConfigError, match="mass = 0 must be an integer 1 … 256"):
        SofaAdaptive(64, 16, 0)


def test_exact_top_p_oracle(short_long):
    _, data = short_long
    hd = data.layers[0][0]
    p = hd.probs()
    for pp in (0.5, 0.9):
        mask = ExactTopP(pp).select(hd).mask
        got = (p * mask).sum(axis=-1)
        assert (got >= pp - 1e-12).all()
        # dropping the smallest kept key falls below p (minimal), rows of one key aside
        smallest = np.where(mask, p, np.inf).min(axis=-1)
        assert ((got - smallest < pp) | (mask.sum(axis=-1) == 1)).all()
    top1 = ExactTopK(1 / 128).select(hd).mask
    assert (ExactTopP(1e-9).select(hd).mask == top1).all()
    # a temperature softens the mass: more keys for the same p, the same order of keys
    assert (ExactTopP(0.5, 1.0).select(hd).mask == ExactTopP(0.5).select(hd).mask).all()
    soft = ExactTopP(0.5, 2.0).select(hd).mask
    assert soft.sum() > ExactTopP(0.5).select(hd).mask.sum()
    n = soft.sum(axis=-1)
    assert (soft == (hd.rank < n[..., None])).all()
    with pytest.raises(ConfigError, match="temperature = 0 must be > 0"):
        ExactTopP(0.5, 0)


def test_tail_blend(short_long):
    """The blend keeps the adaptive budget's keys, pays its cost on top (a second bin sweep,
    f's division a row, the blend per output element, the column sums and the mean of V per
    head), is the bit-exact fast model's output, and with every key kept gives the adaptive
    budget's output unchanged (no dropped mass)."""
    _, data = short_long
    hd = data.layers[0][3]
    H, T, S, d = hd.shape
    ad = SofaAdaptive(64, 32, 60, 2.0)
    tail = SofaAdaptiveTail(64, 32, 60, 2.0, alpha=1.4)
    sel, blend = ad.select(hd), tail.select(hd)
    assert (blend.mask == sel.mask).all()
    assert tail.name == "SOFA adaptive+tail Bc=64 cap=32 p=60/256 T=2 alpha=1.4"
    extra = {k: v for k, v in blend.ops.items() if k not in sel.ops}
    assert extra == {"tail_bin": H * T * 32, "tail_frac": H * T, "tail_mac": H * T * d,
                     "tail_vsum": H * S * d, "tail_vdiv": H * d}
    assert all(blend.ops[k] == v for k, v in sel.ops.items())
    assert not np.allclose(blend.out, sel.out)
    _, res, cfg, _ = tail.run(hd)
    assert res.tail_f is not None and (res.tail_f > 0).any()
    assert np.array_equal(blend.out, res.out / float(1 << cfg.out_frac))
    full = SofaAdaptiveTail(16, 16, 256, 2.0)
    assert full.select(hd).mask.all()
    assert np.array_equal(full.select(hd).out, SofaAdaptive(16, 16, 256, 2.0).select(hd).out)
    with pytest.raises(ConfigError, match="alpha = 0 must be a number > 0"):
        SofaAdaptiveTail(64, 32, 60, 2.0, alpha=0)
    with pytest.raises(ConfigError, match="tail_scale = .* is outside the register's 1"):
        SofaAdaptiveTail(64, 32, 60, 2.0, alpha=1e6).select(hd)


def test_per_layer_search_meets_the_budget(model, short_long):
    _, data = short_long
    with threadpool_limits(limits=1, user_api="blas"):
        masses, searched = LS.search_layer_mass(model, data, target=0.7, grid=(64, 160),
                                                n_search=1, log=lambda *a: None)
    assert len(masses) == 6 and set(masses) <= {64, 160} and searched == [data.names[0]]
    pred = SofaAdaptive(64, 16, masses)
    assert [pred.for_layer(i).mass for i in range(6)] == list(masses)
    with pytest.raises(ValueError, match="select through for_layer"):
        pred.select(data.layers[0][0])


def test_interpolated_kept_for_a_cosine():
    pts = [{"kept": 0.1, "cos_mean": 0.9}, {"kept": 0.3, "cos_mean": 0.98}]
    assert abs(LS.interp_kept(pts, 0.94) - 0.2) < 1e-12
    assert LS.interp_kept(pts, 0.99) is None
    assert LS.interp_kept(pts, 0.8) == 0.1


def test_cli_refuses_an_over_long_text(tmp_path, capsys):
    from gen.cli import main as sofa
    texts = tmp_path / "long"
    texts.mkdir()
    (texts / "joined.txt").write_text(" ".join(load_texts(LONG_TEXT_DIR).values()))
    out = tmp_path / "out"
    assert sofa(["eval", "--long-texts", str(texts), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "text 'joined' has" in err and "at most 512" in err and "--split" in err
    assert not out.exists()
    assert sofa(["eval", "--long-texts", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "--long-texts: no *.txt texts" in capsys.readouterr().err
