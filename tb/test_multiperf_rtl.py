"""The model of several cores on one memory (sim/multiperf.py) against the RTL (hw/axicore.py
with ``cores`` 2 and 4, Amaranth simulator, the AXI memory model with a fixed latency): the
job's busy cycles within 5 %, sparse and dense, with and without the shared K stream and the
query split, on jobs that split heads, queries (chunks that are not whole blocks) or both,
leave a core idle, or keep the bus busy."""

import numpy as np
import pytest

from sim.jobs import golden_job, memory_image
from sim.multiperf import multi_core_cycles
from spec.config import RunParams
from spec.regmap import job_writes, parameter_writes
from tb.support.axicore import AXI_ODD, AXI_TINY, job_case, run_job

CONFIGS = {(base.name, n): base.replace(name=f"{base.name}-c{n}", cores=n)
           for base in (AXI_TINY, AXI_ODD) for n in (2, 4)}
#: (config, cores, heads, queries, S, dense, latency, SHARED_K, SPLIT_QUERIES)
CASES = [("axi-tiny", 2, 2, 4, 64, False, 10, True, False),
         ("axi-tiny", 2, 1, 6, 64, True, 0, True, False),
         ("axi-tiny", 2, 2, 4, 64, False, 0, False, True),
         ("axi-tiny", 4, 2, 6, 64, False, 10, True, False),
         ("axi-tiny", 4, 1, 3, 64, True, 10, True, False),
         ("axi-tiny", 4, 2, 8, 64, False, 0, True, True),
         ("axi-tiny", 4, 4, 8, 64, False, 0, False, False),
         ("axi-odd", 4, 2, 7, 60, True, 0, True, False)]


@pytest.mark.parametrize("name,cores,H,T,S,dense,latency,shared_k,split", CASES,
                         ids=[f"{n}-c{c}-h{h}-t{t}-S{s}-{'dense' if d else 'sparse'}-lat{lat}"
                              f"{'-sharedk' if k else ''}{'-splitq' if q else ''}"
                              for n, c, h, t, s, d, lat, k, q in CASES])
def test_model_matches_the_rtl(name, cores, H, T, S, dense, latency, shared_k, split):
    cfg = CONFIGS[name, cores]
    rng = np.random.default_rng(2)
    job, Q, K, V = job_case(cfg, rng, H=H, T=T, S=S, base=4096)
    params = RunParams(seq_len=S, top_k=1, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
    writes = parameter_writes(cfg, params) + job_writes(cfg, job, shared_k=shared_k,
                                                        split_queries=split)
    _, got = run_job(cfg, writes, image=memory_image(cfg, job, Q, K, V).items(),
                     latency=latency, fixed=True, timeout=400_000)
    res = golden_job(cfg, params, job, Q, K, V)
    model = multi_core_cycles(cfg, params, job, res, (Q, K, V), latency=latency,
                              shared_k=shared_k, split_queries=split)
    rtl = got["busy_cycles"]
    print(f"model {model}, RTL {rtl}, {model / rtl - 1:+.2%}")
    assert abs(model - rtl) <= 0.05 * rtl, (model, rtl)
