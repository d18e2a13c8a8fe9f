"""On-demand K/V jobs (kv_source = "project"): the descriptor checks of spec.job, the golden
job model of sim.projjobs (O from X and the weights, the memory image, the traffic and the
counters) and its bad inputs."""

import numpy as np
import pytest

from sim.jobs import fetch_schedule, golden_job
from sim.ondemand import lz_values, predict_keys, predict_scores
from sim.projjobs import (Weights, golden_project_job, layout_project_job, project_counters,
                          project_image, project_kv, project_traffic, project_workload)
from spec.config import ConfigError, RunParams, preset
from spec.job import (JobDescriptor, JobError, bus_bytes, check_job, job_end, weight_address,
                      weight_bytes)
from spec.regmap import job_writes, register

#: A small on-demand config (two lanes, a 64-bit bus, d_model = 24: three X beats a row).
CFG = preset("tiny").replace(name="axi-tiny-project", memory="axi", q_lanes=2,
                             max_seq_len=256, kv_source="project", d_model=24, khat_lanes=4,
                             proj_macs=4)


def params(cfg, S, dense=False, top_k=None):
    return RunParams(seq_len=S, top_k=top_k or cfg.k_max, radius=cfg.derived.radius_inf,
                     scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)


def workload(seed=0, S=40, T=3, H=2, shared_x=False, cfg=CFG, **job):
    rng = np.random.default_rng(seed)
    desc = layout_project_job(cfg, JobDescriptor(seq_len=S, queries=T, heads=H, **job),
                              shared_x=shared_x)
    return project_workload(cfg, rng, desc)


def test_checks():
    _, _, _, job = workload()
    assert check_job(CFG, job) == JobError.NONE
    bus = bus_bytes(CFG)
    top = 1 << CFG.axi_addr_width
    cases = [
        (dict(x_base=job.x_base + 1), JobError.ALIGN),
        (dict(x_stride=job.x_stride + bus // 2), JobError.ALIGN),
        (dict(x_head_stride=4), JobError.ALIGN),
        (dict(wlz_base=job.wlz_base + 4), JobError.ALIGN),
        (dict(bias_base=job.bias_base + 2), JobError.ALIGN),
        (dict(w_head_stride=job.w_head_stride + 1), JobError.ALIGN),
        (dict(x_stride=CFG.d_model - bus), JobError.STRIDE),
        (dict(x_base=top - bus), JobError.RANGE),
        (dict(wv_base=top - bus), JobError.RANGE),
        (dict(w_head_stride=top - bus), JobError.RANGE),
    ]
    for change, err in cases:
        assert check_job(CFG, job.replace(**change)) == err, change
    # K and V are not read: their registers are not checked.
    assert check_job(CFG, job.replace(k_base=3, v_stride=1)) == JobError.NONE
    # The last head's weights end exactly at the top: legal; a word more is not.
    end = weight_address(job, "bias", job.heads - 1) + weight_bytes(CFG, "bias")
    last = job.replace(bias_base=job.bias_base + top - end)
    assert job_end(CFG, last) == top and check_job(CFG, last) == JobError.NONE
    assert check_job(CFG, last.replace(bias_base=last.bias_base + bus)) == JobError.RANGE
    # x_head_stride = 0 (every head reads one X) is legal.
    assert check_job(CFG, job.replace(x_head_stride=0)) == JobError.NONE


def test_register_writes_cover_the_job():
    _, _, _, job = workload()
    written = {a for a, _ in job_writes(CFG, job)}
    for name in ("x_base", "x_stride", "x_head_stride", "wlz_base", "wk_base", "wv_base",
                 "bias_base", "w_head_stride", "khat_shift", "k_mult", "k_rshift", "v_mult",
                 "v_rshift"):
        assert register(name).address in written, name
        lo, hi = register(name).legal(CFG)
        assert lo <= getattr(job, name) <= hi, name


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_only_the_selected_rows_matter(dense, causal):
    """O of the on-demand job: DLZS over K̂ selects; SU-FA sees the exact projected rows of
    the keys it takes, and rows it never takes may hold anything."""
    Q, X, w, job = workload(seed=1, causal=causal, q_start=20 if causal else 0)
    p = params(CFG, job.seq_len, dense=dense)
    res, (khat, K, V) = golden_project_job(CFG, p, job, Q, X, w)
    assert np.array_equal(khat[0], predict_keys(X[0], w.codes[0], job.khat_shift, 8))
    if dense:
        assert np.array_equal(res.out, golden_job(CFG, p, job, Q, K, V).out)
        return
    used = {(h, j) for h, j in fetch_schedule(CFG, job, res)}
    rng = np.random.default_rng(9)
    K2, V2 = K.copy(), V.copy()
    for h in range(job.heads):
        for j in range(job.seq_len):
            if (h, j) not in used:
                K2[h, j], V2[h, j] = rng.integers(-127, 128, (2, CFG.d))
    assert len(used) < job.heads * job.seq_len
    assert np.array_equal(golden_job(CFG, p, job, Q, K2, V2, kpred=khat).out, res.out)
    # ... but the prediction is K̂'s, not K's: with K it selects differently.
    ahat = predict_scores(Q[0, :1], khat[0])
    assert ahat.shape == (1, job.seq_len)
    assert not np.array_equal(golden_job(CFG, p, job, Q, K, V).selections, res.selections)


def test_memory_image_holds_the_stored_format():
    Q, X, w, job = workload(seed=2, shared_x=True)
    assert job.x_head_stride == 0
    image = project_image(CFG, job, Q, X, w)
    h = 1
    codes = np.frombuffer(image[weight_address(job, "wlz", h)], np.uint8)
    nibbles = np.stack([codes & 15, codes >> 4], axis=1).reshape(-1)
    assert np.array_equal(nibbles.reshape(CFG.d_model, CFG.d).T, w.codes[h])
    assert np.array_equal(lz_values(nibbles), lz_values(w.codes[h].T.reshape(-1)))
    wk = np.frombuffer(image[weight_address(job, "wk", h)], np.int8)
    assert np.array_equal(wk.reshape(CFG.d_model, CFG.d).T, w.wk[h])
    bias = np.frombuffer(image[weight_address(job, "bias", h)], "<i4")
    assert np.array_equal(bias, np.concatenate([w.bk[h], w.bv[h]]))
    x = np.frombuffer(image[job.address("x", h, 5)], np.int8)
    assert np.array_equal(x, X[0, 5])
    # heads sharing X must agree on it
    X2 = X.copy()
    X2[1, 3, 0] ^= 1
    with pytest.raises(ConfigError, match=r"^X\[1, 3\] at address 0x[0-9a-f]+ differs from "
                                          r"the row another head stores there"):
        project_image(CFG, job, Q, X2, w)


@pytest.mark.parametrize("dense", [False, True])
def test_traffic_and_counters(dense):
    Q, X, w, job = workload(seed=3, S=45, T=5, H=2)
    p = params(CFG, job.seq_len, dense=dense)
    res, _ = golden_project_job(CFG, p, job, Q, X, w)
    bus = bus_bytes(CFG)
    tr = project_traffic(CFG, p, job, res)
    blocks = -(-job.queries // CFG.q_lanes)
    assert tr["x"] == job.heads * blocks * job.seq_len * 3 * bus          # 24 B in 3 beats
    assert tr["w"] == job.heads * (96 + 192 + 192 + 64)
    assert tr["k"] == tr["v"] == 0
    assert tr["dram_bytes"] == tr["q"] + tr["o"] + tr["x"] + tr["w"]
    spans = job.heads * blocks * job.seq_len
    if dense:
        assert tr["rows_projected"] == spans
    else:
        no_rass = project_traffic(CFG, p, job, res, rass=False)["rows_projected"]
        assert tr["rows_projected"] <= no_rass
        assert tr["rows_projected"] < spans
        assert no_rass == sum(len(t) for h in res.selections for q in h for t in q)
    c = project_counters(CFG, p, job, Q, X, w, wrap=False)
    assert c["rows_projected"] == tr["rows_projected"]
    assert c["projection_macs"] == 2 * CFG.d * CFG.d_model * tr["rows_projected"]
    assert (c["bytes_x"], c["bytes_w"], c["bytes_k"], c["bytes_v"]) == (tr["x"], tr["w"], 0, 0)


def test_bad_inputs():
    Q, X, w, job = workload(seed=4)
    p = params(CFG, job.seq_len)
    bad_w = Weights(codes=w.codes, wk=w.wk[:, :, :-2], wv=w.wv, bk=w.bk, bv=w.bv)
    with pytest.raises(ConfigError, match=r"^weights wk have shape \[2, 8, 22\]; expected "
                                          r"\[2, 8, 24\] \(heads, d = 8, d_model = 24\)$"):
        golden_project_job(CFG, p, job, Q, X, bad_w)
    codes = w.codes.copy()
    codes[1, 2, 3] = 0b1111
    with pytest.raises(ConfigError, match=r"^LZ code at \[1, 2, 3\]: .*15"):
        golden_project_job(CFG, p, job, Q, X, Weights(codes, w.wk, w.wv, w.bk, w.bv))
    with pytest.raises(ConfigError, match=r"^X rows of 32 elements: the config holds "
                                          r"d_model = 24 \(allowed X \[2, 40, 24\]\)$"):
        golden_project_job(CFG, p, job, Q, np.zeros((2, 40, 32), np.int64), w)
    with pytest.raises(ConfigError, match=r"^job k_rshift = 0 is out of range; allowed "
                                          r"1 … 48$"):
        project_kv(CFG, job.replace(k_rshift=0), X, w)
    with pytest.raises(ConfigError, match=r'^kv_source = "given": the job takes K and V'):
        project_kv(CFG.replace(kv_source="given", d_model=0), job, X, w)
