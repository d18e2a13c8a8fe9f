"""On-demand K/V in the golden model (sim/ondemand.py, the LZ format of spec/numerics.py) and
the study of prediction from X (sim/xstudy.py) on a short text."""

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from sim import xstudy
from sim.accuracy import build_dataset, embedding_cosines
from sim.fastgolden import dlzs_scores_fast, sofa_heads
from sim.golden import dlzs_scores
from sim.minilm import MiniLM, TEXT_DIR, load_texts
from sim.ondemand import (khat_acc, khat_shift_for, lz_codes, lz_values, predict_keys,
                          predict_scores, project_rows, requant_params)
from sim.predictors import SofaDLZS, sofa_config
from spec.config import ConfigError
from spec.numerics import LZ_ZERO, khat_truncate, lz_decode, lz_encode


def test_lz_format_every_int8_weight():
    """Every weight -127 … 127 round-trips to its leading one, sign kept; zero is LZ_ZERO."""
    for w in range(-127, 128):
        code = lz_encode(w)
        assert 0 <= code < 16 and code != 0b1111
        want = 0 if w == 0 else int(math.copysign(1 << int(math.log2(abs(w))), w))
        assert lz_decode(code) == want, w
    assert lz_encode(0) == LZ_ZERO and lz_encode(-1) == 0b1000 and lz_encode(96) == 0b0110
    codes = lz_codes(np.arange(-127, 128))
    assert codes.tolist() == [lz_encode(w) for w in range(-127, 128)]
    assert lz_values(codes).tolist() == [lz_decode(lz_encode(w)) for w in range(-127, 128)]


@pytest.mark.parametrize("w,message", [(128, "weight 128 is outside the LZ format's range"),
                                       (-128, "weight -128 is outside"),
                                       (1.5, "weight 1.5 is not an integer"),
                                       (True, "weight True is not an integer")])
def test_lz_encode_refuses(w, message):
    with pytest.raises(ValueError, match=message):
        lz_encode(w)


@pytest.mark.parametrize("code,message", [(15, "LZ code 15 \\(0b1111\\) is outside the format"),
                                          (16, "LZ code 16 is not a 4-bit word"),
                                          (-1, "LZ code -1 is not a 4-bit word")])
def test_lz_decode_refuses(code, message):
    with pytest.raises(ValueError, match=message):
        lz_decode(code)


def test_arrays_name_the_bad_entry():
    with pytest.raises(ConfigError, match=r"weight W\[1, 0\] = -128 is outside"):
        lz_codes(np.array([[1, 2], [-128, 3]]))
    with pytest.raises(ConfigError, match=r"LZ code at \[0, 1\]: LZ code 15 .* outside the"):
        lz_values(np.array([[3, 15]]))
    with pytest.raises(ConfigError, match=r"W_k has shape \(4, 6\) and X \(3, 5\)"):
        khat_acc(np.zeros((3, 5), np.int64), np.zeros((4, 6), np.int64))
    with pytest.raises(ConfigError, match="X holds 200; the tokens are int8"):
        khat_acc(np.full((1, 2), 200), np.zeros((1, 2), np.int64))


def test_phase_one_is_shift_and_add():
    """acc = Σ_m sign·(x << p) over the nonzero weights, K̂ its floor shift and saturation."""
    rng = np.random.default_rng(1)
    X = rng.integers(-127, 128, (5, 7))
    W = rng.integers(-127, 128, (3, 7))
    W[0, :3] = 0
    codes = lz_codes(W)
    acc = khat_acc(X, codes)
    for j in range(5):
        for c in range(3):
            want = 0
            for m in range(7):
                if W[c, m]:
                    p = abs(int(W[c, m])).bit_length() - 1
                    want += (int(X[j, m]) << p) * (1 if W[c, m] > 0 else -1)
            assert acc[j, c] == want
    for shift, width in [(0, 16), (3, 8), (9, 6)]:
        k = predict_keys(X, codes, shift, width)
        assert k.tolist() == [[khat_truncate(a, shift, width) for a in row] for row in acc]


@pytest.mark.parametrize("acc_max,width,shift", [(127, 8, 0), (128, 8, 1), (255, 8, 1),
                                                 (256, 8, 2), (0, 6, 0), (31, 6, 0),
                                                 (32, 6, 1), (3_000_000, 16, 7)])
def test_khat_shift_is_the_smallest_that_fits(acc_max, width, shift):
    assert khat_shift_for(acc_max, width) == shift
    assert acc_max >> shift <= (1 << (width - 1)) - 1
    if shift:
        assert acc_max >> (shift - 1) > (1 << (width - 1)) - 1


def test_phase_two_is_the_cores_dlzs():
    cfg = sofa_config(8, 8, 2, 32)
    rng = np.random.default_rng(2)
    Q = rng.integers(-127, 128, (5, 8))
    khat = rng.integers(-2000, 2000, (11, 8))
    assert (predict_scores(Q, khat) == dlzs_scores(Q, khat, cfg)).all()


def test_given_scores_select_as_dlzs_and_a_key_bias_changes_nothing():
    """sofa_heads with ahat = DLZS's own scores is the plain run; a per-row constant (what a
    key bias adds to Â) selects the same keys; a wrong shape is refused."""
    cfg = sofa_config(8, 8, 2, 40)
    rng = np.random.default_rng(3)
    Q, K, V = (rng.integers(-127, 128, (2, n, 8)) for n in (6, 40, 40))
    kw = dict(seq_len=40, top_k=2, scale_log2e=1 << (cfg.c_frac - 6))
    plain = sofa_heads(Q, K, V, cfg, **kw)
    ahat = dlzs_scores_fast(Q, K, cfg)
    given = sofa_heads(Q, K, V, cfg, ahat=ahat, **kw)
    assert (given.out == plain.out).all() and given.counters() == plain.counters()
    shifted = sofa_heads(Q, K, V, cfg, ahat=ahat + rng.integers(-999, 999, (2, 6, 1)), **kw)
    assert (shifted.mask() == plain.mask()).all()
    with pytest.raises(ConfigError, match=r"ahat has shape \(2, 6, 39\); expected"):
        sofa_heads(Q, K, V, cfg, ahat=ahat[..., :39], **kw)


def test_exact_rows():
    rng = np.random.default_rng(4)
    X = rng.integers(-127, 128, (9, 16))
    W = rng.integers(-127, 128, (4, 16))
    bias = rng.integers(-5000, 5000, 4)
    mult, rshift = requant_params(0.0123)
    assert abs(mult / 2 ** rshift / 0.0123 - 1) < 2 ** -15 and mult < 1 << 16
    rows = [7, 2, 2]
    got = project_rows(X, W, bias, mult, rshift, rows)
    for i, j in enumerate(rows):
        for c in range(4):
            acc = int(X[j] @ W[c]) + int(bias[c])
            assert got[i, c] == max(-127, min(127, (acc * mult + (1 << (rshift - 1))) >> rshift))
    with pytest.raises(ConfigError, match=r"bias has shape \(3,\); expected \(d,\) = \(4,\)"):
        project_rows(X, W, bias[:3], mult, rshift, rows)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="requantisation ratio"):
            requant_params(bad)


@pytest.fixture(scope="module")
def model():
    return MiniLM()


def test_study_from_k_equals_the_plain_predictor_and_from_x_runs(model):
    """On one short text (shifts calibrated on another): the from-K row is SofaDLZS's own
    result, so the two paths cannot drift; the from-X row keeps as many keys."""
    texts = load_texts(TEXT_DIR)
    names = list(texts)
    with threadpool_limits(limits=1, user_api="blas"):
        res = xstudy.run_from_x(model, {names[0]: texts[names[0]]}, {names[1]: texts[names[1]]},
                                ratios=(0.125,), widths=(8,), log=lambda *a: None)
        data_cos = embedding_cosines(model, build_dataset(model, {names[0]: texts[names[0]]}),
                                     SofaDLZS(xstudy.BLOCK_SIZE, 0.125,
                                              max_seq_len=model.token_limit))
    k, x = res["rows"]
    assert k["source"] == "K" and x["source"] == "X" and x["khat_width"] == 8
    assert k["cos_mean"] == pytest.approx(data_cos[0], abs=1e-12)
    assert x["kept"] == k["kept"] and 0.5 < x["agreement"] < 1 and k["agreement"] == 1
    assert 0.8 < x["cos_mean"] <= 1 and res["calibrated_on"] == [names[1]]
    assert np.array(res["shifts"]["8"]).shape == (model.config.layers, model.config.heads)
    md = xstudy.from_x_markdown(res)
    assert f"| {k['name']} | {100 * k['kept']:.1f} % | {k['cos_mean']:.4f}" in md
    assert f"| {x['name']} |" in md and names[1] in md
