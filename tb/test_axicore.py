"""The memory-attached core (hw/axicore.py) in the Amaranth simulator, against the golden job
model: a Python AXI4 memory (gen.rtlsim.axi.AxiSlaveModel: random latency, interleaved and
reordered read data, random READY/VALID gaps on every channel) with the protocol checker on
the port, and a register master on AXI4-Lite. Sparse and dense, causal and multi-head, with and
without RASS, strides longer than a row, S not a multiple of the tile, and faults on every
stream. The cocotb tests (tb/test_axicore_verilator.py) repeat them with cocotbext-axi's AxiRam
on Verilator and add the descriptor checks, back-to-back jobs, stress and long sequences;
tb/test_regwalk_verilator.py walks the registers."""

import numpy as np
import pytest

from sim.jobs import fetch_schedule, golden_job, memory_image, read_outputs, traffic
from spec.config import RunParams
from spec.job import JobError
from spec.regmap import expected_counters, job_writes, parameter_writes
from tb.support.axicore import AXI_TINY, CONFIGS, job_case, run_job

def check_job_run(cfg, job, Q, K, V, *, dense=False, top_k=None, rass=True, seed=0, idle=0.0,
                  latency=0):
    params = RunParams(seq_len=job.seq_len, top_k=top_k or cfg.k_max,
                       radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=dense)
    writes = parameter_writes(cfg, params) + job_writes(cfg, job, rass=rass, irq=True)
    model, got = run_job(cfg, writes, image=memory_image(cfg, job, Q, K, V).items(), seed=seed,
                         idle=idle, latency=latency)
    assert got["job_error"] == JobError.NONE and got["irq"] == 1
    res = golden_job(cfg, params, job, Q, K, V)
    out = read_outputs(cfg, job, lambda a, n: bytes(model.mem[a:a + n]))
    assert np.array_equal(out, res.out), f"O differs:\n{out}\nexpected\n{res.out}"
    tr = traffic(cfg, params, job, res)
    calls = [n for _ in range(job.heads) for n in [min(cfg.q_lanes, job.queries - b)
                                                    for b in range(0, job.queries,
                                                                   cfg.q_lanes)]]
    want = expected_counters(cfg, params, res.stats, calls=calls,
                             lengths=res.lengths * job.heads, traffic=tr, rass=rass)
    for name, value in want.items():
        assert got[name] == value, f"counter {name}: {got[name]} != expected {value}"
    return res, got, tr


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("name", CONFIGS)
def test_job(name, dense):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(1)
    job, Q, K, V = job_case(cfg, rng, S=3 * cfg.block_size + 2)
    check_job_run(cfg, job, Q, K, V, dense=dense, top_k=1)


@pytest.mark.parametrize("name", CONFIGS)
def test_causal_strided_timing(name):
    """Causal with q_start, rows further apart than a row, random bus timing."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(2)
    job, Q, K, V = job_case(cfg, rng, H=2, T=5, S=2 * cfg.block_size + 3, causal=True,
                            q_start=cfg.block_size - 2, gap=1)
    check_job_run(cfg, job, Q, K, V, seed=3, idle=0.3, latency=6)


def test_rass_reads_fewer():
    cfg = AXI_TINY
    rng = np.random.default_rng(4)
    job, Q, K, V = job_case(cfg, rng, H=1, T=4, S=40)
    _, on, tr = check_job_run(cfg, job, Q, K, V, rass=True)
    _, off, _ = check_job_run(cfg, job, Q, K, V, rass=False)
    assert on["bytes_v"] == tr["v"] <= off["bytes_v"] == tr["v_no_rass"]


def test_onchip_memory_does_not_grow_with_S():
    """The memory core keeps tiles, not sequences: from max_seq_len 1k to 64k its memory
    grows only by the wider key indices in its FIFOs (the on-chip core's grows with S)."""
    from gen.artifacts import memory_bits
    from hw.top import sofa_top
    from spec.config import preset
    axi = [memory_bits(sofa_top(preset("axi").replace(max_seq_len=s)))["total"]
           for s in (1024, 65536)]
    onchip = [memory_bits(sofa_top(preset("tiny").replace(max_seq_len=s)))["total"]
              for s in (64, 256)]
    assert axi[0] <= axi[1] < 1.01 * axi[0] and axi[1] < 100_000
    assert onchip[1] - onchip[0] == 2 * (256 - 64) * 8 * 8          # K and V rows


@pytest.mark.parametrize("stream,code", [("q", JobError.READ_Q), ("k", JobError.READ_K),
                                         ("v", JobError.READ_V), ("o", JobError.WRITE_O)])
def test_fault(stream, code):
    """SLVERR on one row of a stream: the job ends with done and JOB_ERROR naming the stream
    (the engine stops, drains and resets; the Verilator tests also check the bus and the next
    job)."""
    cfg = AXI_TINY
    rng = np.random.default_rng(5)
    job, Q, K, V = job_case(cfg, rng, H=1, T=3, S=2 * cfg.block_size + 1)
    params = RunParams(seq_len=job.seq_len, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3), dense=False)
    row = job.seq_len // 2 if stream in "kv" else 1
    if stream == "v":
        res = golden_job(cfg, params, job, Q, K, V)
        row = fetch_schedule(cfg, job, res)[0][1]
    a = job.address(stream, 0, row)
    writes = parameter_writes(cfg, params) + job_writes(cfg, job, irq=True)
    _, got = run_job(cfg, writes, image=memory_image(cfg, job, Q, K, V).items(), seed=1,
                     idle=0.1, latency=3, errors=[(a, a + 8, 2)], timeout=20_000)
    assert got["job_error"] == code and got["irq"] == 1


@pytest.mark.parametrize("tensor", ["q", "k", "v", "o"])
def test_range_check_edges(tensor):
    """The pipelined range check at the top of the address space: a tensor whose last row ends
    exactly at 2^axi_addr_width passes (and runs on the model's memory), one bus word further
    is RANGE before any bus access; both as spec.job.check_job says."""
    from spec.job import bus_bytes, check_job, out_row_bytes, row_bytes
    cfg = AXI_TINY
    rng = np.random.default_rng(4)
    job, _, _, _ = job_case(cfg, rng, H=2, T=3, S=9)
    top = 1 << cfg.axi_addr_width
    rows = job.rows(tensor)
    row = out_row_bytes(cfg) if tensor == "o" else row_bytes(cfg)
    span = (job.heads - 1) * getattr(job, f"{tensor}_head_stride") + \
        (rows - 1) * getattr(job, f"{tensor}_stride") + row
    bus = bus_bytes(cfg)
    at_top = job.replace(**{f"{tensor}_base": (top - span) // bus * bus})
    past = at_top.replace(**{f"{tensor}_base": at_top.address(tensor, 0, 0) + bus})
    assert check_job(cfg, at_top) == JobError.NONE
    assert check_job(cfg, past) == JobError.RANGE
    params = RunParams(seq_len=job.seq_len, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                       scale_log2e=RunParams.scale_from_float(cfg, 2e-3))
    for desc, ok in ((at_top, True), (past, False)):
        model, got = run_job(cfg, parameter_writes(cfg, params) + job_writes(cfg, desc))
        if ok:
            assert got["job_error"] != JobError.RANGE
        else:
            assert got["job_error"] == JobError.RANGE
            assert got["bytes_q"] == got["bytes_k"] == got["bytes_o"] == 0
