"""The benchmark's testbench: the core on Verilator in dense mode and in sparse mode at several
top_k, same config and data (:func:`sim.workloads.structured`); every output, counter and busy
count checked (:meth:`gen.rtlsim.core.CoreDriver.check`); the counters of each run written as
JSON for :mod:`gen.bench` to turn into the report.

Environment (set by :func:`gen.bench.run`): ``SOFA_BENCH_OUT`` (the JSON file to write),
``SOFA_BENCH_SEQ`` (S, default ``max_seq_len``), ``SOFA_BENCH_ROWS`` (queries, default 4),
``SOFA_BENCH_TOPK`` (comma-separated top_k of the sparse runs, default ``k_max``),
``SOFA_SEED`` (default 1).
"""

import json
import os

import cocotb
import numpy as np

from gen.rtlsim.core import CoreDriver, params_for
from gen.rtlsim.streams import TRAFFIC, load_sidecar
from sim.workloads import structured


@cocotb.test()
async def bench(dut):
    """Dense, then sparse at every requested top_k, on one set of structured data."""
    cfg, _ = load_sidecar()
    seq = int(os.environ.get("SOFA_BENCH_SEQ", str(cfg.max_seq_len)))
    rows = int(os.environ.get("SOFA_BENCH_ROWS", "4"))
    top_ks = [int(k) for k in os.environ.get("SOFA_BENCH_TOPK", str(cfg.k_max)).split(",")]
    seed = int(os.environ.get("SOFA_SEED", "1"))
    core = CoreDriver(dut, cfg)
    core.start_clock()
    rng = np.random.default_rng(seed)
    # A few dominant keys per query, more as S grows (about one in 64 keys).
    Q, K, V = structured(cfg, rng, rows, seq, dominant=max(3, seq // 64))
    runs = []
    for top_k in [None] + top_ks:
        params = params_for(cfg, seq, top_k=top_k, dense=top_k is None)
        run = await core.run(Q, K, V, params, TRAFFIC[0], seed)
        core.check(Q, K, V, params, run)
        runs.append({"dense": params.dense, "top_k": params.top_k, "seq_len": seq,
                     "rows": rows, "counters": run.counters})
    with open(os.environ["SOFA_BENCH_OUT"], "w") as f:
        json.dump({"seed": seed, "runs": runs}, f, indent=2)
