"""The adaptive selection budget in the accuracy study, and the exact cumulative-mass oracle.

:class:`SofaAdaptive` runs SOFA with the adaptive budget of docs/numerics.md bit-exact through
:mod:`sim.fastgolden` (the registers ``adapt_mass``, ``adapt_scale``, ``adapt_shift`` per
head); :class:`ExactTopP` is the oracle of the same rule on exact probabilities. Both return a
:class:`sim.predictors.Selection` like every predictor of :mod:`sim.predictors`.
:class:`TailBlend` is a float model of a formal stage that is not built: the adaptive
budget's output blended with a mean of V by the row's predicted dropped mass.
"""

import math

import numpy as np

from spec.config import ConfigError, RunParams
from spec.regmap import register
from sim.fastgolden import sofa_heads
from sim.predictors import LOG2E, Selection, SofaDLZS, Predictor, desc_order, sofa_config


__all__ = ["SofaAdaptive", "ExactTopP", "TailBlend"]


class SofaAdaptive(SofaDLZS):
    """SOFA with the adaptive budget: DLZS, then the eligible keys of each row (the first
    passes: row maximum, a histogram of ``M − Â`` in ``bins`` bins, the cumulative-mass bin
    :func:`sim.golden.adaptive_eligible`), then SADS keeps at most ``cap`` eligible keys per
    tile of ``Bc``; SU-FA as ever. Bit-exact through :mod:`sim.fastgolden`.

    Registers per head: ``adapt_mass = mass`` (``p = mass/256``); ``adapt_scale`` is
    ``c_sel = s_q·s_k·log2(e)/(√d·temperature)``, the head's softmax on Â softened by the
    temperature; ``adapt_shift = ceil(log2(beta / c_sel))``, so a bin spans ``beta`` to
    ``2·beta`` log2 units of that softmax. ``mass`` may be one value or one per layer
    (a tuple, :meth:`for_layer`; the study's per-layer search, :func:`search_layer_mass`).

    Cost: as :class:`SofaDLZS`, plus ``adapt_key`` per query-key pair and ``adapt_bin`` per
    bin and row (:data:`COST_WEIGHTS`).
    """
    family = "SOFA adaptive"

    def __init__(self, block_size, cap, mass, temperature=1.5, bins=32, beta=0.25,
                 max_seq_len=512, label=None):
        super().__init__(block_size, cap / block_size, max_seq_len=max_seq_len)
        for m in (mass if isinstance(mass, tuple) else (mass,)):
            if not (isinstance(m, int) and 1 <= m <= 256):
                raise ConfigError(f"mass = {m!r} must be an integer 1 … 256 (p = mass/256)")
        if not temperature > 0 or not beta > 0:
            raise ConfigError(f"temperature = {temperature} and beta = {beta} must be > 0")
        self.mass, self.temperature, self.bins, self.beta = mass, temperature, bins, beta
        self._layers = {}
        shown = "/".join(map(str, mass)) if isinstance(mass, tuple) else str(mass)
        self.name = label or (f"SOFA adaptive Bc={block_size} cap={cap} "
                              f"p={shown}/256 T={temperature:g}")

    def for_layer(self, layer):
        """This predictor with layer ``layer``'s mass (itself with one mass for all)."""
        if not isinstance(self.mass, tuple):
            return self
        key = (layer, self.mass[layer])
        if key not in self._layers:
            p = SofaAdaptive(self.block_size, self.top_k, self.mass[layer], self.temperature,
                             self.bins, self.beta, self.max_seq_len)
            p._cfgs = self._cfgs
            self._layers[key] = p
        return self._layers[key]

    def params(self):
        return {"block_size": self.block_size, "top_k": self.top_k, "radius_nat": math.inf,
                "mass": list(self.mass) if isinstance(self.mass, tuple) else self.mass, "temperature": self.temperature, "bins": self.bins,
                "beta": self.beta}

    def config(self, d):
        if d not in self._cfgs:
            self._cfgs[d] = sofa_config(d, self.block_size, self.top_k, self.max_seq_len,
                                        name=f"minilm-bc{self.block_size}-k{self.top_k}"
                                             f"-a{self.bins}").replace(adapt_bins=self.bins)
        return self._cfgs[d]

    def adapt_registers(self, cfg, hd):
        """``(adapt_scale, adapt_shift)`` per head of ``hd``."""
        hi = register("adapt_shift").legal(cfg)[1]
        scale, shift = [], []
        for h in range(hd.shape[0]):
            c = float(hd.logit_scale[h]) * LOG2E / self.temperature
            scale.append(RunParams.scale_from_float(cfg, c))
            shift.append(int(min(hi, max(0, math.ceil(math.log2(self.beta / c))))))
        return scale, shift

    def run(self, hd):
        if isinstance(self.mass, tuple):
            raise ValueError("SofaAdaptive with a mass per layer: select through for_layer")
        H, T, S, d = hd.shape
        cfg, scale, radius = self.run_params(hd)
        a_scale, a_shift = self.adapt_registers(cfg, hd)
        res = sofa_heads(hd.Q, hd.K, hd.V, cfg, seq_len=S, top_k=self.top_k, radius=radius,
                         scale_log2e=scale, adapt_mass=self.mass, adapt_scale=a_scale,
                         adapt_shift=a_shift)
        mask = res.mask()
        ops = {"shift_add": H * T * S * d, "adapt_key": H * T * S,
               "adapt_bin": H * T * self.bins, "int8_mac": 2 * d * int(mask.sum())}
        out = res.out / float(1 << cfg.out_frac)
        return Selection(mask=mask, ops=ops, out=out, info=res.counters()), res, cfg, scale


class ExactTopP(Predictor):
    """Oracle: the exact cumulative-mass (top-p) rule. Each row keeps its keys in descending
    exact score until their mass reaches ``p`` (at least one key; ties: lower index), the
    mass taken from the exact softmax softened by ``temperature`` (1: the model's own
    probabilities; the adaptive budget's temperature makes it that rule with perfect scores
    and no bins). Cost as :class:`ExactTopK`."""
    family = "exact"

    def __init__(self, p, temperature=1.0):
        if not 0 < p <= 1:
            raise ConfigError(f"p = {p} must be in (0, 1]")
        if not temperature > 0:
            raise ConfigError(f"temperature = {temperature} must be > 0")
        self.p, self.temperature = float(p), float(temperature)
        t = "" if temperature == 1 else f", T={temperature:g}"
        self.name = f"exact top-p (oracle, p={p:.3f}{t})"

    def params(self):
        return {"p": self.p, "temperature": self.temperature}

    def select(self, hd):
        H, T, S, d = hd.shape
        probs = hd.probs()
        if self.temperature != 1:
            z = hd.scores * (hd.logit_scale / self.temperature)[:, None, None]
            probs = np.exp(z - z.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
        order = hd.rank
        sorted_p = np.take_along_axis(probs, desc_order(hd.scores), axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p       # mass of the better keys
        keep_n = (before < self.p).sum(axis=-1)                # keys until p is reached
        mask = order < np.maximum(keep_n, 1)[..., None]
        return Selection(mask=mask, ops={"pred_int8_mac": H * T * S * d,
                                         "int8_mac": d * int(mask.sum())})


class TailBlend(Predictor):
    """A proposal, not built (float model): :class:`SofaAdaptive`'s bit-exact selection and
    output ``o_kept``, then ``o = (1 − f)·o_kept + f·mean(V)`` per row, with ``mean(V)`` the
    head's mean value row and ``f`` the row's dropped mass predicted from DLZS alone, the
    softmax of ``alpha·c·Â`` over the keys that were not kept (``alpha`` corrects DLZS's
    underestimate of the score; 1.4 was the best of 1.0 … 1.8 on the short texts joined in
    pairs). Renormalising over the kept keys moves every row towards them; the blend puts
    the dropped tail back as its mean (docs/evaluation.md, "Why 0.941 and not 0.95").

    Cost: :class:`SofaAdaptive`'s, plus ``d`` MACs a row (the blend) and a second bin sweep
    a row (``f`` from the gate's histogram at scale ``alpha·c``); the mean of V, ``d`` adds a
    key once per head, is not counted (about ``d/T`` a pair)."""
    family = "proposal"

    def __init__(self, adaptive, alpha=1.4):
        if not alpha > 0:
            raise ConfigError(f"alpha = {alpha} must be > 0")
        self.adaptive, self.alpha = adaptive, float(alpha)
        self.name = (f"tail blend (float model, not built) on p={adaptive.mass}/256 "
                     f"T={adaptive.temperature:g} alpha={alpha:g}")

    def params(self):
        return dict(self.adaptive.params(), alpha=self.alpha)

    def select(self, hd):
        sel, res, cfg, _ = self.adaptive.run(hd)
        H, T, S, d = hd.shape
        z = res.ahat * (self.alpha * hd.logit_scale)[:, None, None]
        w = np.exp(z - z.max(axis=-1, keepdims=True))
        f = (w * ~sel.mask).sum(axis=-1, keepdims=True) / w.sum(axis=-1, keepdims=True)
        vbar = hd.V.astype(np.float64).mean(axis=1)[:, None, :]
        ops = dict(sel.ops)
        ops["int8_mac"] += H * T * d
        ops["adapt_bin"] += H * T * self.adaptive.bins
        return Selection(mask=sel.mask, ops=ops, out=(1 - f) * sel.out + f * vbar,
                         info=sel.info)
