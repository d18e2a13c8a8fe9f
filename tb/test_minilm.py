"""The numpy all-MiniLM-L6-v2 (sim/minilm.py) against the real implementation.

``tb/fixtures/minilm_embeddings.npz`` holds sentence-transformers' embeddings and token ids of
the shipped texts (written once by ``scripts/make_minilm_fixture.py`` on torch, CPU)."""

import math
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from sim import minilm as M

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "minilm_embeddings.npz"


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Small matrices: one BLAS thread is faster, and far faster on a busy machine."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def model():
    return M.MiniLM()


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as f:
        data = {k: f[k] for k in f.files}
    offsets = np.concatenate([[0], np.cumsum(data["token_lengths"])])
    data["ids"] = [data["token_ids"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return data


def test_fixture_covers_the_shipped_texts(fixture):
    texts = M.load_texts()
    assert list(fixture["names"]) == list(texts), "re-run scripts/make_minilm_fixture.py"
    assert fixture["embeddings"].shape == (len(texts), 384)


def test_tokenizer_matches_reference(model, fixture):
    for text, ids in zip(M.load_texts().values(), fixture["ids"]):
        np.testing.assert_array_equal(model.tokenize(text), ids)


def test_embeddings_match_sentence_transformers(model, fixture):
    """Cosine > 0.999 is the requirement; the float32 numpy pass actually agrees to ~1e-12."""
    for text, ref in zip(M.load_texts().values(), fixture["embeddings"]):
        emb = model.embed(text)
        assert abs(np.linalg.norm(emb) - 1) < 1e-9
        cos = M.cosine(emb, ref)
        assert cos > 0.999
        assert cos > 1 - 1e-6, f"numpy forward drifted from the reference: 1 - cos = {1 - cos}"


def test_capture_hook_sees_every_layer(model):
    ids = model.tokenize("A short sentence for the hook test.")
    cap = M.Capture()
    emb = model.embed(ids, cap)
    c = model.config
    assert len(cap.layers) == c.layers
    for q, k, v in cap.layers:
        assert q.shape == k.shape == v.shape == (c.heads, len(ids), c.head_dim)
    np.testing.assert_array_equal(emb, model.embed(ids))         # capturing changes nothing


def test_hook_replaces_attention(model):
    ids = model.tokenize("Attention replaced by a uniform average.")

    def uniform(layer, q, k, v):
        return np.broadcast_to(v.mean(axis=1, keepdims=True), v.shape)

    assert M.cosine(model.embed(ids, uniform), model.embed(ids)) < 0.99
    with pytest.raises(ValueError, match="attention hook returned shape"):
        model.embed(ids, lambda layer, q, k, v: q[:, :1])


def test_erf_against_math():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 1e-9, 6.0, -6.0, 50.0]])
    want = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(M.erf(x) - want)) < 1e-11


def test_quantise_sym():
    x = np.array([[-2.0, 0.5], [1.0, 0.0]])
    q, s = M.quantise_sym(x)
    assert s == 2.0 / 127 and q.min() == -127 and q.dtype == np.int64
    assert np.max(np.abs(q * s - x)) <= s / 2
    q0, s0 = M.quantise_sym(np.zeros((2, 2)))
    assert s0 == 1.0 and not q0.any()
    with pytest.raises(ValueError, match="bits = 1"):
        M.quantise_sym(x, bits=1)


def test_missing_texts_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        M.load_texts(tmp_path)


# -- long inputs: limit, attention mask, explicit lengths, splitting --------------------------

def test_long_texts_fit_the_model(model):
    texts = M.load_texts(M.LONG_TEXT_DIR)
    assert len(texts) >= 4
    assert model.token_limit == M.TOKEN_LIMIT == 512
    for name, text in texts.items():
        n = model.encode(text, name).tokens
        assert 480 <= n <= 512, (name, n)
    M.check_text_lengths(texts)


def test_padding_is_masked(model):
    text = "The attention mask keeps padding out of attention and out of the mean."
    enc = model.encode(text)
    padded = model.encode(text, pad_to=40)
    assert len(padded.ids) == 40 and padded.tokens == len(enc.ids)
    assert (padded.ids[len(enc.ids):] == 0).all() and padded.attention_mask[-1] == 0
    np.testing.assert_array_equal(model.embed(padded), model.embed(enc))
    unmasked = model.embed(padded.ids)                 # padding attended to: not the same
    assert M.cosine(unmasked, model.embed(enc)) < 1 - 1e-6
    with pytest.raises(ValueError, match="right padding"):
        model.forward(padded.ids, attention_mask=padded.attention_mask[::-1])


def test_explicit_length_keeps_the_first_tokens(model):
    text = next(iter(M.load_texts(M.LONG_TEXT_DIR).values()))
    full = model.encode(text)
    for n in (128, 256):
        enc = model.encode(text, length=n)
        assert enc.tokens == n and enc.ids[-1] == full.ids[-1]          # ends with [SEP]
        np.testing.assert_array_equal(enc.ids[:-1], full.ids[:n - 1])
    with pytest.raises(M.ConfigError, match="length = 600: allowed 3 … 512"):
        model.encode(text, length=600)


def test_over_long_text_is_refused_or_split(model):
    text = " ".join(M.load_texts(M.LONG_TEXT_DIR).values())
    with pytest.raises(M.ConfigError, match=r"has \d+ tokens; the model takes at most 512"):
        model.encode(text, "joined")
    with pytest.raises(M.ConfigError, match="split it with --split"):
        M.check_text_lengths({"joined": text})
    pieces = model.split(text, "joined")
    assert len(pieces) >= 4 and [p.name for p in pieces][:2] == ["joined#1", "joined#2"]
    ids = model.tokenizer.encode(text).ids
    assert [i for p in pieces for i in p.ids[1:-1].tolist()] == ids[1:-1]
    for p in pieces:
        assert p.tokens <= 512 and p.ids[0] == ids[0] and p.ids[-1] == ids[-1]
    assert all(model.tokenizer.id_to_token(int(p.ids[-2])) in ".!?" for p in pieces[:-1])
