"""``make bench``: the core on Verilator in dense mode and in sparse mode at several top_k, same
config and data; every output checked against the golden model; the counters of each run
written as JSON to ``SOFA_BENCH_OUT`` for :mod:`gen.bench` to turn into the report."""

import json
import os

import cocotb
import numpy as np

from tb.cocotb.streams import TRAFFIC
from tb.cocotb.top.cocotb_top import CFG, check, params_for, run, start_clock, structured

SEQ = int(os.environ.get("SOFA_BENCH_SEQ", str(CFG.max_seq_len)))
ROWS = int(os.environ.get("SOFA_BENCH_ROWS", "4"))
TOP_K = [int(k) for k in os.environ.get("SOFA_BENCH_TOPK", str(CFG.k_max)).split(",")]
SEED = int(os.environ.get("SOFA_SEED", "1"))


@cocotb.test()
async def bench(dut):
    start_clock(dut)
    rng = np.random.default_rng(SEED)
    Q, K, V = structured(rng, ROWS, SEQ, dominant=max(3, SEQ // 64))
    runs = []
    for top_k in [None] + TOP_K:
        params = params_for(SEQ, top_k=top_k, dense=top_k is None)
        checker, counters, res = await run(dut, Q, K, V, params, TRAFFIC[0], SEED)
        check(dut, Q, K, V, params, checker, counters, res)
        runs.append({"dense": params.dense, "top_k": params.top_k, "seq_len": SEQ,
                     "rows": ROWS, "counters": counters})
    with open(os.environ["SOFA_BENCH_OUT"], "w") as f:
        json.dump({"seed": SEED, "runs": runs}, f, indent=2)
