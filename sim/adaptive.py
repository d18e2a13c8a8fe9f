"""The adaptive selection budget in the accuracy study, and the exact cumulative-mass oracle.

:class:`SofaAdaptive` runs SOFA with the adaptive budget of docs/numerics.md bit-exact through
:mod:`sim.fastgolden` (the registers ``adapt_mass``, ``adapt_scale``, ``adapt_shift`` per
head); :class:`ExactTopP` is the oracle of the same rule on exact probabilities. Both return a
:class:`sim.predictors.Selection` like every predictor of :mod:`sim.predictors`.
:class:`SofaAdaptiveTail` adds the tail blend (bit-exact, the RTL's ``TAIL_SCALE``): the
adaptive budget's output blended with the head's mean V row by the row's predicted dropped
mass.
"""

import math

import numpy as np

from spec.config import ConfigError, RunParams
from spec.regmap import register
from sim.fastgolden import sofa_heads
from sim.predictors import LOG2E, Selection, SofaDLZS, Predictor, desc_order, sofa_config


__all__ = ["SofaAdaptive", "ExactTopP", "SofaAdaptiveTail", "tail_ops"]


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
            p = self._with_mass(self.mass[layer])
            p._cfgs = self._cfgs
            self._layers[key] = p
        return self._layers[key]

    def _with_mass(self, mass):
        """The same predictor with one ``mass`` (a layer's)."""
        return SofaAdaptive(self.block_size, self.top_k, mass, self.temperature, self.bins,
                            self.beta, self.max_seq_len)

    def _extra_registers(self, cfg, hd):
        """Further registers for :func:`sim.fastgolden.sofa_heads` (none here)."""
        return {}

    def _extra_ops(self, H, T, S, d):
        """Further operations charged (none here)."""
        return {}

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
            raise ValueError(f"{type(self).__name__} with a mass per layer: select through "
                             f"for_layer")
        H, T, S, d = hd.shape
        cfg, scale, radius = self.run_params(hd)
        a_scale, a_shift = self.adapt_registers(cfg, hd)
        res = sofa_heads(hd.Q, hd.K, hd.V, cfg, seq_len=S, top_k=self.top_k, radius=radius,
                         scale_log2e=scale, adapt_mass=self.mass, adapt_scale=a_scale,
                         adapt_shift=a_shift, **self._extra_registers(cfg, hd))
        mask = res.mask()
        ops = {"shift_add": H * T * S * d, "adapt_key": H * T * S,
               "adapt_bin": H * T * self.bins, "int8_mac": 2 * d * int(mask.sum()),
               **self._extra_ops(H, T, S, d)}
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


def tail_ops(heads, rows, seq_len, d, bins):
    """The tail blend's operations (keys of :data:`sim.predictors.COST_WEIGHTS`) for
    ``heads`` heads of ``rows`` query rows and ``seq_len`` keys each, ``d`` elements a row
    and ``bins`` histogram bins: ``tail_bin`` per bin and row (the second weight sweep),
    ``tail_frac`` per row (f's division), ``tail_mac`` per output element (the blend),
    ``tail_vsum`` per key, element and head (V's column sums) and ``tail_vdiv`` per element
    and head (the mean's division). What :class:`SofaAdaptiveTail` charges, and the DSE
    (:func:`sim.dse.evaluate.tail_cost`)."""
    H, T, S = heads, rows, seq_len
    return {"tail_bin": H * T * bins, "tail_frac": H * T, "tail_mac": H * T * d,
            "tail_vsum": H * S * d, "tail_vdiv": H * d}


class SofaAdaptiveTail(SofaAdaptive):
    """:class:`SofaAdaptive` with the tail blend (docs/numerics.md, "Tail blend"), bit-exact
    through :mod:`sim.fastgolden`: each output row becomes ``O + f·(mean(V) − O)`` with
    ``mean(V)`` the head's mean V row and ``f`` the row's dropped mass predicted from the
    gate's histogram (a second weight sweep at ``alpha·c``: the softmax of ``alpha·c·Â``
    over the bins above ``b_star``; ``alpha`` corrects DLZS's underestimate of the score,
    1.4 the best of 1.0 … 1.8 on the short texts joined in pairs). Renormalising over the
    kept keys moves every row towards them; the blend puts the dropped tail back as its mean.

    Register per head: ``tail_scale = alpha·c`` (``c = s_q·s_k·log2(e)/√d``, ``c_frac``
    fraction bits). Cost: :class:`SofaAdaptive`'s plus ``tail_bin`` per bin and row,
    ``tail_frac`` per row, ``tail_mac`` per output element, ``tail_vsum`` per key, element
    and head (the column sums of V) and ``tail_vdiv`` per element and head
    (:data:`sim.predictors.COST_WEIGHTS`)."""

    def __init__(self, block_size, cap, mass, temperature=1.5, alpha=1.4, bins=32, beta=0.25,
                 max_seq_len=512, label=None):
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ConfigError(f"alpha = {alpha!r} must be a number > 0 (tail_scale = "
                              f"alpha·c must fit the c_bits register)")
        super().__init__(block_size, cap, mass, temperature, bins, beta, max_seq_len, label)
        self.alpha = float(alpha)
        if label is None:
            self.name = self.name.replace("SOFA adaptive", "SOFA adaptive+tail", 1) + \
                f" alpha={alpha:g}"

    def _with_mass(self, mass):
        return SofaAdaptiveTail(self.block_size, self.top_k, mass, self.temperature,
                                self.alpha, self.bins, self.beta, self.max_seq_len)

    def params(self):
        return dict(super().params(), alpha=self.alpha)

    def tail_registers(self, cfg, hd):
        """``tail_scale`` per head of ``hd``; a ConfigError if ``alpha·c`` does not fit."""
        top = register("tail_scale").legal(cfg)[1]
        out = []
        for h in range(hd.shape[0]):
            value = round(float(hd.logit_scale[h]) * LOG2E * self.alpha * (1 << cfg.c_frac))
            if not 1 <= value <= top:
                raise ConfigError(f"tail_scale = {value} (alpha = {self.alpha:g} times head "
                                  f"{h}'s c) is outside the register's 1 … {top}")
            out.append(value)
        return out

    def _extra_registers(self, cfg, hd):
        return {"tail_scale": self.tail_registers(cfg, hd)}

    def _extra_ops(self, H, T, S, d):
        return tail_ops(H, T, S, d, self.bins)
