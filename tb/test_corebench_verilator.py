"""The multi-core benchmark's testbench (:mod:`gen.rtlsim.corebench_tb`) on a small config:
two cores on Verilator at two bandwidths, own K and split queries; the testbench checks every
O element and every counter (totals and each core's) exactly, and the rows it gives carry the
model's cycles within 6 % (the benchmark's own rows are in ``make bench``). Slow: a Verilator
build of two cores."""

import json

import pytest

from gen import corebench
from gen.rtlsim.runner import run_cocotb
from hw.top import sofa_top
from spec.config import preset

pytestmark = pytest.mark.slow

CFG = preset("tiny").replace(name="corebench-small", memory="axi", q_lanes=2,
                             max_seq_len=4096, axi_data_width=64, axi_id_width=4)


def test_two_cores_on_verilator(tmp_path):
    results = []
    for N in (1, 2):
        cfg = CFG.replace(cores=N)
        jobs = corebench.rtl_jobs(cfg, N, S=256, bandwidths=(2, 8), heads=2, queries=8)
        out = tmp_path / f"c{N}.json"
        run_cocotb("sofa_top", sofa_top, cfg, "gen.rtlsim.corebench_tb", name=f"{CFG.name}-c{N}",
                   extra_env={"SOFA_COREBENCH_JOBS": json.dumps(jobs),
                              "SOFA_COREBENCH_OUT": out, "SOFA_COREBENCH_MEM": 1 << 20})
        results += json.loads(out.read_text())["jobs"]
    rows = corebench.rtl_rows(CFG, results, log=lambda *a: None)
    assert len(rows) == 2 * 3 * 2
    assert all(abs(r["model_error"]) < 0.06 for r in rows)
    split = [r for r in rows if r["cores"] == 2 and r["split_queries"]]
    own = [r for r in rows if r["cores"] == 2 and not r["shared_k"]]
    assert all(s["k_bytes"] * 2 == o["k_bytes"] for s, o in zip(split, own))
