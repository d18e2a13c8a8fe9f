"""The accuracy of on-demand K/V's prediction: keys predicted from the activations X (phase 1.1
with LZ-format W_k, then phase 1.2) against keys predicted from K, as the core does today.

``sofa eval`` runs this after the long-input study, on the long texts at 512 tokens: SOFA's
fixed budget (Bc 64) at 12.5 % and 25 % of the keys, selecting from

* **K**: DLZS on Q and the int8 K (today's core);
* **X**: :mod:`sim.ondemand`'s phase 1.1 on the layer's int8 input X and W_k in the LZ
  format, ``K̂`` truncated to ``khat_width`` ∈ :data:`sim.ondemand.KHAT_WIDTHS` bits, then
  phase 1.2 against Q.

Both attend over the same exact int8 K and V, so the rows differ only in which keys are kept.
``khat_shift`` per layer and head is calibrated on other inputs than the ones measured: the
shipped short texts (:func:`calibrate_shifts`), as a deployment would fix it offline. Every
run is bit-exact through :func:`sim.fastgolden.sofa_heads`. The rows (``results.json``'s
``"from_x"``) carry ``tokens``, ``name``, ``source``, ``khat_width``, ``kept``, ``cos_mean``,
``cos_min``, ``recall`` (against the exact top-n of the same size) and ``agreement`` (the
share of the keys the K-predicted run keeps that the X-predicted run keeps too, per row).
"""

import time

import numpy as np

from sim.fastgolden import sofa_heads
from sim.longstudy import FULL, long_encodings
from sim.minilm import cosine, dense_attention, quantise_sym
from sim.ondemand import (KHAT_WIDTHS, khat_acc, khat_shift_for, lz_codes, predict_keys,
                          predict_scores)
from sim.predictors import HeadData, SofaDLZS


__all__ = ["RATIOS", "BLOCK_SIZE", "key_codes", "calibrate_shifts", "FromX", "run_from_x",
           "from_x_markdown"]

RATIOS = (0.125, 0.25)
BLOCK_SIZE = 64


def key_codes(model, layer):
    """The LZ codes ``[H, d, d_model]`` of layer ``layer``'s W_k, int8 per head
    (``quantise_sym``), as stored offline."""
    c = model.config
    W = np.asarray(model.w[f"encoder.layer.{layer}.attention.self.key.weight"], np.float64)
    return np.stack([lz_codes(quantise_sym(W[h * c.head_dim:(h + 1) * c.head_dim])[0])
                     for h in range(c.heads)])


class _AccMax:
    """A dense attention hook that records the largest phase-1.1 ``|acc|`` per layer and
    head."""
    takes_x = True

    def __init__(self, codes):
        self.codes = codes
        self.top = np.zeros((len(codes), codes[0].shape[0]), dtype=np.int64)

    def __call__(self, layer, q, k, v, x):
        X, _ = quantise_sym(x)
        for h, c in enumerate(self.codes[layer]):
            self.top[layer, h] = max(self.top[layer, h], int(np.abs(khat_acc(X, c)).max()))
        return dense_attention(layer, q, k, v)


def calibrate_shifts(model, texts, codes, widths=KHAT_WIDTHS):
    """``{width: shifts [layers, heads]}``: per head the smallest ``khat_shift`` that keeps
    the largest phase-1.1 sum over ``texts`` (``{name: text}``, the dense model) inside
    ``width`` bits."""
    hook = _AccMax(codes)
    for text in texts.values():
        model.embed(text, hook)
    return {w: np.vectorize(lambda a, w=w: khat_shift_for(int(a), w))(hook.top)
            for w in widths}


class FromX:
    """SOFA (fixed budget, ``Bc`` and ``ratio``) as a MiniLM attention hook, selecting from K
    (``source="K"``) or from X (``"X"``, with ``khat_width`` and the calibrated ``shifts``);
    accumulates the kept fraction, the recall and, given a ``reference`` run's masks, the
    agreement."""
    takes_x = True

    def __init__(self, model, ratio, source, codes=None, khat_width=None, shifts=None,
                 block_size=BLOCK_SIZE, reference=None):
        self.sofa = SofaDLZS(block_size, ratio, max_seq_len=model.token_limit)
        self.source, self.codes, self.width, self.shifts = source, codes, khat_width, shifts
        self.ratio = ratio
        # The reference run's masks, in call order (bit-packed), or this run's own.
        self.reference = reference
        self.masks = []
        self.sums = dict(rows=0, kept=0.0, recall=0.0, common=0.0, ref_kept=0.0)
        w = "" if source == "K" else f" (K̂ {khat_width} bits)"
        self.name = f"SOFA Bc={block_size} {100 * ratio:g} % from {source}{w}"

    def __call__(self, layer, q, k, v, x):
        hd = HeadData.from_float(q, k, v)
        H, T, S, d = hd.shape
        cfg, scale, radius = self.sofa.run_params(hd)
        ahat = None
        if self.source == "X":
            X, _ = quantise_sym(x)
            khat = np.stack([predict_keys(X, self.codes[layer][h], int(self.shifts[layer, h]),
                                          self.width) for h in range(H)])
            ahat = predict_scores(hd.Q, khat)
        res = sofa_heads(hd.Q, hd.K, hd.V, cfg, seq_len=S, top_k=self.sofa.top_k,
                         radius=radius, scale_log2e=scale, ahat=ahat)
        mask = res.mask()
        if self.reference is None:
            self.masks.append(np.packbits(mask))
        else:
            ref = np.unpackbits(self.reference[len(self.masks)],
                                count=mask.size).reshape(mask.shape).astype(bool)
            self.masks.append(None)
            self.sums["common"] += float((mask & ref).sum())
            self.sums["ref_kept"] += float(ref.sum())
        n = mask.sum(axis=-1)
        hits = (mask & (hd.rank < n[..., None])).sum(axis=-1)
        self.sums["rows"] += H * T
        self.sums["kept"] += float((n / S).sum())
        self.sums["recall"] += float((hits / np.maximum(n, 1)).sum())
        return res.out / float(1 << cfg.out_frac) * hd.sv[:, None, None]


def run_from_x(model, long_texts, calib_texts, split=False, ratios=RATIOS,
               widths=KHAT_WIDTHS, log=print):
    """The rows of the study (see the module docstring) on ``long_texts`` (whole: each within
    the model's limit, or with ``split`` cut at sentence ends) with shifts calibrated on
    ``calib_texts``; ``{"rows", "shifts", "calibrated_on"}``."""
    t0 = time.time()
    n_layers = model.config.layers
    codes = [key_codes(model, layer) for layer in range(n_layers)]
    shifts = calibrate_shifts(model, calib_texts, codes, widths)
    encs = long_encodings(model, long_texts, FULL, split)
    tokens = max(len(e) for e in encs.values())
    refs = {n: model.embed(e) for n, e in encs.items()}
    rows = []
    for ratio in ratios:
        ref = FromX(model, ratio, "K")
        runs = [ref] + [FromX(model, ratio, "X", codes, w, shifts[w], reference=ref.masks)
                        for w in widths]
        for hook in runs:
            t = time.time()
            cos = [cosine(model.embed(e, hook), refs[n]) for n, e in encs.items()]
            s = hook.sums
            rows.append({"tokens": tokens, "name": hook.name, "source": hook.source,
                         "khat_width": hook.width, "ratio": ratio,
                         "kept": s["kept"] / s["rows"], "recall": s["recall"] / s["rows"],
                         "agreement": (s["common"] / s["ref_kept"] if hook is not ref
                                       else 1.0),
                         "cos_mean": float(np.mean(cos)), "cos_min": float(np.min(cos)),
                         "cos_per_text": cos})
            r = rows[-1]
            log(f"  {r['name']:<40} kept {r['kept']:.3f} cos {r['cos_mean']:.4f} / "
                f"{r['cos_min']:.4f} recall {r['recall']:.3f} agreement {r['agreement']:.3f} "
                f"({time.time() - t:.1f} s)")
    log(f"  prediction from X: {time.time() - t0:.0f} s")
    return {"rows": rows, "calibrated_on": list(calib_texts),
            "shifts": {str(w): s.tolist() for w, s in shifts.items()}}


def from_x_markdown(res):
    """The report's section on prediction from X."""
    L = ["## On-demand K/V: predicting the keys from X", "",
         f"SOFA, fixed budget Bc {BLOCK_SIZE}, on the long texts (whole, up to "
         f"{max(r['tokens'] for r in res['rows'])} tokens); `khat_shift` "
         f"calibrated per layer and head on {', '.join(res['calibrated_on'])}. Both sources "
         "attend over the same exact K and V.", "",
         "| predictor | keys kept | cosine mean / min | recall | agreement with from-K |",
         "|---|---|---|---|---|"]
    for r in res["rows"]:
        L.append(f"| {r['name']} | {100 * r['kept']:.1f} % | {r['cos_mean']:.4f} / "
                 f"{r['cos_min']:.4f} | {r['recall']:.3f} | {r['agreement']:.3f} |")
    return "\n".join(L) + "\n"
