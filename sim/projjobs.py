"""Jobs of the memory-attached core in the on-demand K/V mode (``kv_source = "project"``).

The job reads X and each head's weights instead of K and V (:mod:`spec.job`, "On-demand
K/V"); its output is bit-exact:

* the prediction is DLZS over ``K̂ = predict_keys(X, codes, khat_shift, 8)`` in place of K
  (:func:`sim.ondemand.predict_keys`, phase 1.1; no key bias);
* the exact rows are ``K = project_rows(X, W_k, b_k, k_mult, k_rshift)`` and ``V`` likewise
  (:func:`sim.ondemand.project_rows`); SU-FA attends over them exactly as over given K and V,
  so ``O`` is :func:`sim.jobs.golden_job` with these K, V and ``kpred = K̂``. Which rows the
  core actually projects (the selected ones, once per block and tile with RASS; every one
  in dense mode) changes the counters, not ``O``.

:func:`project_image` lays the tensors out as bytes, :func:`project_traffic` counts the bytes
and the projected rows, :func:`project_counters` gives the exact counters.
"""

from dataclasses import dataclass

import numpy as np

from sim.jobs import blocks, fetch_schedule, golden_job
from sim.ondemand import (khat_acc, khat_shift_for, lz_codes, lz_values, predict_keys,
                          project_rows, requant_params)
from spec.config import ConfigError
from spec.job import (PROJ_MULT_BITS, PROJ_RSHIFT_MAX, WEIGHTS, bus_bytes, khat_shift_max,
                      projects, row_beats, weight_address, weight_beats, x_row_beats)
from spec.regmap import expected_counters, query_groups


__all__ = ["Weights", "project_kv", "golden_project_job", "layout_project_job",
           "project_image", "weight_image", "project_traffic", "project_counters",
           "project_workload", "KHAT_WIDTH"]

#: Bits of K̂ (phase 1.2's linear operand): the core's K width (docs/numerics.md).
KHAT_WIDTH = 8


@dataclass
class Weights:
    """One layer's weights for the heads of a job (int arrays).

    Attributes
    ----------
    codes : [heads, d, d_model]
        LZ codes of W_k (:func:`sim.ondemand.lz_codes`), what phase 1.1 uses.
    wk, wv : [heads, d, d_model]
        int8 W_k and W_v (``K = X·W_kᵀ``).
    bk, bv : [heads, d]
        int32 biases in units of ``s_x·s_w``.
    """
    codes: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    bk: np.ndarray
    bv: np.ndarray


def _checked(cfg, job, X, w):
    """X and the weights as int64 arrays, their shapes and ranges checked against the config
    and the job (a ConfigError naming the array, its shape and the expected one)."""
    if not projects(cfg):
        raise ConfigError(f"kv_source = \"{cfg.kv_source}\": the job takes K and V; allowed "
                          f"kv_source = \"project\" for a job from X and weights")
    H, S, d, dm = job.heads, job.seq_len, cfg.d, cfg.d_model
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[0] != H or X.shape[1] != S:
        raise ConfigError(f"X must have shape [{H}, {S}, d_model] (heads, seq_len, d_model), "
                          f"got {list(X.shape)}")
    if X.shape[2] != dm:
        raise ConfigError(f"X rows of {X.shape[2]} elements: the config holds d_model = {dm} "
                          f"(allowed X [{H}, {S}, {dm}])")
    out = {"X": X}
    for name, shape in (("codes", (H, d, dm)), ("wk", (H, d, dm)), ("wv", (H, d, dm)),
                        ("bk", (H, d)), ("bv", (H, d))):
        a = np.asarray(getattr(w, name))
        if a.shape != shape:
            raise ConfigError(f"weights {name} have shape {list(a.shape)}; expected "
                              f"{list(shape)} (heads, d = {d}, d_model = {dm})")
        out[name] = a
    for name, a, lo, hi in (("X", X, -127, 127), ("wk", out["wk"], -127, 127),
                            ("wv", out["wv"], -127, 127),
                            ("bk", out["bk"], -(1 << 31), (1 << 31) - 1),
                            ("bv", out["bv"], -(1 << 31), (1 << 31) - 1)):
        if a.dtype.kind not in "iu":
            raise ConfigError(f"{name} must be an integer array, got dtype {a.dtype}")
        if a.size and (a.min() < lo or a.max() > hi):
            bad = int(a.min()) if a.min() < lo else int(a.max())
            raise ConfigError(f"{name} holds {bad}; allowed {lo} … {hi}")
    lz_values(out["codes"])                    # a code outside the format, with its position
    for name, hi in (("khat_shift", khat_shift_max(cfg)), ("k_rshift", PROJ_RSHIFT_MAX),
                     ("v_rshift", PROJ_RSHIFT_MAX), ("k_mult", (1 << PROJ_MULT_BITS) - 1),
                     ("v_mult", (1 << PROJ_MULT_BITS) - 1)):
        lo = 1 if name.endswith("rshift") else 0
        value = getattr(job, name)
        if not lo <= value <= hi:
            raise ConfigError(f"job {name} = {value} is out of range; allowed {lo} … {hi}")
    return {n: a.astype(np.int64) for n, a in out.items()}


def project_kv(cfg, job, X, w):
    """``(K̂, K, V)``, each ``[heads, S, d]``: the predicted keys and the exact rows of every
    key (the core projects only those it needs; their values are these)."""
    a = _checked(cfg, job, X, w)
    khat, K, V = [], [], []
    rows = np.arange(job.seq_len)
    for h in range(job.heads):
        khat.append(predict_keys(a["X"][h], a["codes"][h], job.khat_shift, KHAT_WIDTH))
        K.append(project_rows(a["X"][h], a["wk"][h], a["bk"][h], job.k_mult, job.k_rshift,
                              rows))
        V.append(project_rows(a["X"][h], a["wv"][h], a["bv"][h], job.v_mult, job.v_rshift,
                              rows))
    return tuple(np.array(t, dtype=np.int64).reshape(job.heads, job.seq_len, cfg.d)
                 for t in (khat, K, V))


def golden_project_job(cfg, params, job, Q, X, w):
    """``(JobResult, (K̂, K, V))`` of an on-demand job (module docstring)."""
    khat, K, V = project_kv(cfg, job, X, w)
    return golden_job(cfg, params, job, Q, K, V, kpred=khat), (khat, K, V)


def layout_project_job(cfg, job, *, base=0, gap=0, shared_x=False):
    """``job`` with Q, X, O and the weights laid out one after the other from ``base``: rows
    whole bus words apart (plus ``gap`` words), heads one after the other (``shared_x``: one
    X for every head, ``x_head_stride = 0``), each head's weights in one block
    (``w_head_stride``), each tensor on a bus word."""
    bus = bus_bytes(cfg)
    changes, addr = {}, base
    for t in ("q", "x", "o"):
        beats = x_row_beats(cfg) if t == "x" else row_beats(cfg, out=t == "o")
        stride = (beats + gap) * bus
        head = job.rows(t) * stride
        one = t == "x" and shared_x
        changes.update({f"{t}_base": addr, f"{t}_stride": stride,
                        f"{t}_head_stride": 0 if one else head})
        addr += (1 if one else job.heads) * head
    offset = 0
    for wt in WEIGHTS:
        changes[f"{wt}_base"] = addr + offset
        offset += (weight_beats(cfg, wt) + gap) * bus
    changes["w_head_stride"] = offset
    return job.replace(**changes)


def _bytes(values, nbytes):
    mask = (1 << (8 * nbytes)) - 1
    return b"".join((int(v) & mask).to_bytes(nbytes, "little") for v in values)


def weight_image(cfg, w, h):
    """``{weight tensor: bytes}`` of head ``h`` as stored (spec.job): codes and int8 weights
    transposed (``[d_model, d]`` row-major), codes two a byte low nibble first."""
    codes = np.asarray(w.codes[h], dtype=np.int64).T.reshape(-1)
    packed = bytes(int(codes[i]) | int(codes[i + 1]) << 4 for i in range(0, codes.size, 2))
    return {"wlz": packed,
            "wk": _bytes(np.asarray(w.wk[h]).T.reshape(-1), 1),
            "wv": _bytes(np.asarray(w.wv[h]).T.reshape(-1), 1),
            "bias": _bytes(np.concatenate([w.bk[h], w.bv[h]]), 4)}


def project_image(cfg, job, Q, X, w):
    """``{address: bytes}`` of the job's Q and X rows and each head's weights. Heads that
    share rows (a head stride of 0) must hold the same values there."""
    a = _checked(cfg, job, X, w)
    image = {}

    def put(addr, data, what):
        if image.get(addr, data) != data:
            raise ConfigError(f"{what} at address {addr:#x} differs from the row another head "
                              f"stores there (a head stride of 0 shares it)")
        image[addr] = data

    Q = np.asarray(Q)
    for h in range(job.heads):
        for t in range(job.queries):
            put(job.address("q", h, t), _bytes(Q[h, t], 1), f"Q[{h}, {t}]")
        for r in range(job.seq_len):
            put(job.address("x", h, r), _bytes(a["X"][h, r], 1), f"X[{h}, {r}]")
        for wt, data in weight_image(cfg, w, h).items():
            put(weight_address(job, wt, h), data, f"{wt} of head {h}")
    return image


def project_traffic(cfg, params, job, result, rass=True):
    """Bytes of an on-demand job per stream and the rows it projects.

    Returns a dict: ``q``, ``o``, ``x`` (X rows streamed once per block, tile by tile, as K is
    in the given mode), ``w`` (each head's weights once), ``k = v = 0``, ``rows_projected``
    (sparse: each row a block's lanes select in a tile, once with RASS, once a lane without;
    dense: every key a block sees), ``dram_bytes`` (their sum) and ``v_no_rass`` (0)."""
    bus = bus_bytes(cfg)
    lengths = result.lengths
    out = {"q": job.heads * job.queries * row_beats(cfg) * bus,
           "o": job.heads * job.queries * row_beats(cfg, out=True) * bus,
           "k": 0, "v": 0, "v_no_rass": 0, "x": 0,
           "w": job.heads * sum(weight_beats(cfg, wt) for wt in WEIGHTS) * bus}
    spans = 0
    for _ in range(job.heads):
        for first, n in blocks(cfg, job):
            spans += max(lengths[first:first + n])
    out["x"] = spans * x_row_beats(cfg) * bus
    if params.dense:
        out["rows_projected"] = spans
    else:
        out["rows_projected"] = len(fetch_schedule(cfg, job, result, rass))
    out["dram_bytes"] = out["q"] + out["o"] + out["x"] + out["w"]
    return out


def project_counters(cfg, params, job, Q, X, w, *, rass=True, wrap=True):
    """The exact counters after an on-demand job (one core)."""
    r, _ = golden_project_job(cfg, params, job, Q, X, w)
    calls = [n for _ in range(job.heads) for n in query_groups(job.queries, cfg.q_lanes)]
    tr = project_traffic(cfg, params, job, r, rass)
    return expected_counters(cfg, params, r.stats, calls=calls,
                             lengths=r.lengths * job.heads, traffic=tr, rass=rass, wrap=wrap)


def project_workload(cfg, rng, job, *, zero_frac=0.1):
    """Random int8 ``Q [H, T, d]``, ``X [H, S, d_model]`` (the same for every head when
    ``job.x_head_stride == 0``) and weights, with the job's ``khat_shift`` calibrated on X
    (:func:`sim.ondemand.khat_shift_for`) and requantisations that map the largest ``|acc|``
    to about 100: ``(Q, X, Weights, job)``."""
    H, S, T, d, dm = job.heads, job.seq_len, job.queries, cfg.d, cfg.d_model
    X = np.clip(np.round(rng.normal(0, 40, (1 if job.x_head_stride == 0 else H, S, dm))),
                -127, 127).astype(np.int64)
    X = np.broadcast_to(X, (H, S, dm)).copy()

    def weights():
        W = np.clip(np.round(rng.normal(0, 30, (H, d, dm))), -127, 127).astype(np.int64)
        return np.where(rng.random(W.shape) < zero_frac, 0, W)

    wk, wv = weights(), weights()
    w = Weights(codes=np.stack([lz_codes(wk[h]) for h in range(H)]), wk=wk, wv=wv,
                bk=rng.integers(-5000, 5000, (H, d)), bv=rng.integers(-5000, 5000, (H, d)))
    top = max(int(np.abs(khat_acc(X[h], w.codes[h])).max()) for h in range(H))
    acc_k = max(int(np.abs(X[h] @ wk[h].T + w.bk[h]).max()) for h in range(H))
    acc_v = max(int(np.abs(X[h] @ wv[h].T + w.bv[h]).max()) for h in range(H))
    km, kr = requant_params(100 / max(1, acc_k))
    vm, vr = requant_params(100 / max(1, acc_v))
    job = job.replace(khat_shift=khat_shift_for(top, KHAT_WIDTH), k_mult=km, k_rshift=kr,
                      v_mult=vm, v_rshift=vr)
    Q = rng.integers(-127, 128, (H, T, d))
    return Q, X, w, job
