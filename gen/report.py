"""``sofa report`` (``make report``): resources, post-route Fmax and throughput of the board
design per preset and device, as one Markdown table and one JSON file.

Each run is the plain Yosys/nextpnr flow over the generated Verilog of the board top
(:class:`hw.board.SofaBoardPins` around :class:`hw.board.SofaBoardTop`: the SOFA core behind the
UART host link, exactly what a board runs) for a bare device, with the pin and clock files of
``constraints/`` (``sofa_board_icebreaker.pcf`` for iCE40 UP5K, ``sofa_board_ulx3s.lpf`` for
the ECP5 parts in CABGA381). A memory-attached preset (``axi``) is the memory board: the core
with :data:`hw.board.DEFAULT_MEM_BYTES` of block RAM behind its AXI4 port, timed at
:data:`MEMORY_TARGET_MHZ` (the pin file's FREQUENCY line rewritten in the copy nextpnr reads).
A run may name its nextpnr seed (``PRESET:DEVICE:SEED``); runs of one design share one Yosys
run. Per run, in ``<out>/<preset>-<device>/``:

1. ``sofa_board.v`` from Amaranth (builtin Yosys, no source attributes), and ``sofa_board.il``,
   the same design as RTLIL, which Yosys reads (it miscompiles its own Verilog of this design);
2. YoWASP Yosys ``synth_ice40 -dsp`` / ``synth_ecp5 -abc9`` (each retried with the other abc9
   mode when Yosys 0.70's abc9 fails on a netlist), cell counts from ``stat -json``;
3. a fit check against the device's LUT/FF/DSP/BRAM, then YoWASP nextpnr with
   ``--timing-allow-fail --report`` and :func:`gen.toolchain.board_nextpnr_args` (ECP5:
   ``--placer static --router router2``); the post-route Fmax is read from the report JSON.

The toolchain (tools, scripts, arguments, reports, devices) is :mod:`gen.toolchain`.

Throughput: cycles per query at ``S = --seq`` (by default 256, or ``max_seq_len`` where that is
smaller; a ``--seq`` given must fit every preset run) from the cycle
model :func:`sim.perf.core_cycles` (checked against the RTL within 5 % by the core's tests) on
structured data (a few dominant keys per query, as in ``make bench``), eight queries a call, in
sparse mode at ``top_k = k_max`` and in dense mode, with the board top's iterative divider
(``d·divider.ii`` cycles a row, overlapped with the next row); queries per second = Fmax /
cycles. The UART column is
what the board's link delivers end to end at ``--baud`` (request and reply bytes of one query,
frame overhead shared by the rows of a full frame): the serial line, not the core, limits a
board.
"""

import json
import shutil
import sys
import time
from pathlib import Path

from spec.config import ConfigError, preset
from spec.validate import check_int, check_out_dir, int_arg, make_out_dir, path_arg
from gen.toolchain import (BOARD_SYNTH, DEVICES, ROOT, DoesNotFit, SynthError,
                           add_seed_argument, board_nextpnr_args, fit_problems, get_device,
                           place_and_route, post_route_fmax, resources, run_yosys, stat_cells,
                           used_utilization)


__all__ = ["run_report", "run_one", "throughput", "render_markdown", "DEFAULT_RUNS",
           "PIN_FILES", "MEMORY_TARGET_MHZ", "DEFAULT_SEQ", "add_arguments", "check", "run",
           "FAILURES", "target_mhz"]

TOP = "sofa_board"
#: (preset, device, seed) runs of ``sofa report`` (seed None: the family's default). The
#: memory board on the ECP5-85F is placed with three seeds: its clock target is what the
#: board flow asks of it, so every seed must meet it.
DEFAULT_RUNS = (("ice40", "ice40-up5k", None), ("ecp5-axi", "ecp5-85f", 1),
                ("ecp5-axi", "ecp5-85f", 2), ("ecp5-axi", "ecp5-85f", 3),
                ("tiny", "ice40-up5k", None),
                ("ice40", "ecp5-25f", None))
#: Pin/clock file per device family, and the clock target it sets (MHz).
PIN_FILES = {"ice40": ("sofa_board_icebreaker.pcf", 12.0), "ecp5": ("sofa_board_ulx3s.lpf", 50.0)}
#: Clock target of a memory board on ECP5 (MHz).
MEMORY_TARGET_MHZ = 75.0
#: Errors of this job that the command line reports with exit status 1.
FAILURES = (SynthError,)
#: Sequence length of the throughput columns without ``--seq`` (``max_seq_len`` if smaller).
DEFAULT_SEQ = 256


def _log(message):
    print(message, file=sys.stderr, flush=True)


def target_mhz(cfg, family):
    """The clock target of ``cfg``'s board top on a device ``family`` (MHz)."""
    from hw.board import check_board_family
    check_board_family(cfg, family)
    return MEMORY_TARGET_MHZ if cfg.memory == "axi" else PIN_FILES[family][1]


def _memory_throughput(cfg, seq, *, seed=1, rows=8):
    """Cycles per query of the memory board from the memory core's cycle model
    (:func:`sim.axiperf.axi_core_cycles`, one bus beat a cycle, the block RAM's three-cycle read
    latency), sparse at ``k_max`` and dense, one head of ``rows`` queries."""
    import numpy as np
    from hw.axiram import AxiBram
    from sim.axiperf import axi_core_cycles
    from sim.jobs import golden_job, layout_job
    from sim.workloads import structured
    from spec.config import RunParams
    from spec.job import JobDescriptor
    S = min(seq, cfg.max_seq_len)
    Q, K, V = (x[None] for x in structured(cfg, np.random.default_rng(seed), rows, S))
    job = layout_job(cfg, JobDescriptor(seq_len=S, queries=rows))
    out = {"seq_len": S}
    c = RunParams.scale_from_float(cfg, 1e-3)
    for mode, dense in (("sparse", False), ("dense", True)):
        params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                           scale_log2e=c, dense=dense)
        result = golden_job(cfg, params, job, Q, K, V)
        out[f"cycles_{mode}"] = axi_core_cycles(cfg, params, job, result, (Q, K, V),
                                                latency=AxiBram.READ_LATENCY) / rows
    out["top_k"] = cfg.k_max
    return out


def throughput(cfg, seq, *, baud=115200, max_payload=None, seed=1, rows=8,
               iterative_divider=True):
    """Cycles per query (sparse at k_max, dense) at ``S = min(seq, max_seq_len)`` and the
    queries per second the UART link carries. ``iterative_divider``: the core's divider, as
    in the board top (:class:`hw.board.SofaBoardTop` builds the iterative one)."""
    import numpy as np
    from hw.board import DEFAULT_MAX_PAYLOAD
    from spec.config import RunParams
    from spec.protocol import REPLY_OVERHEAD, REQUEST_OVERHEAD, elem_bytes, out_bytes
    from sim.golden import sofa_attention
    from sim.perf import core_cycles
    if cfg.memory == "axi":         # Q, K, V come from the board's memory, not over the UART
        return _memory_throughput(cfg, seq, seed=seed, rows=rows)
    S = min(seq, cfg.max_seq_len)
    rng = np.random.default_rng(seed)
    Q = rng.integers(-128, 128, size=(rows, cfg.d))
    K = rng.integers(-64, 64, size=(S, cfg.d))
    V = rng.integers(-128, 128, size=(S, cfg.d))
    for i in range(rows):
        for j in rng.choice(S, size=max(1, S // 64), replace=False):
            K[j] = np.clip(Q[i] // 2 + rng.integers(-6, 7, size=cfg.d), -128, 127)
    out = {"seq_len": S}
    c = RunParams.scale_from_float(cfg, 1e-3)
    for mode, dense in (("sparse", False), ("dense", True)):
        params = RunParams(seq_len=S, top_k=cfg.k_max, radius=cfg.derived.radius_inf,
                           scale_log2e=c, dense=dense)
        res = sofa_attention(Q, K, V, cfg, params)
        out[f"cycles_{mode}"] = core_cycles(cfg, params, res, Q, K, V,
                                            iterative_divider=iterative_divider) / rows
    max_payload = max_payload or DEFAULT_MAX_PAYLOAD
    per_frame = max_payload // (cfg.d * elem_bytes(cfg))
    wire = (REQUEST_OVERHEAD + per_frame * cfg.d * elem_bytes(cfg)
            + REPLY_OVERHEAD + per_frame * cfg.d * out_bytes(cfg)) / per_frame
    out["uart_bytes_per_query"] = round(wire, 1)
    out["uart_qps"] = baud / 10 / wire
    out["top_k"] = cfg.k_max
    return out


def run_one(preset_name, device_name, *, out_dir, seq=256, baud=115200, seed=None, log=_log,
            cfg=None, place=True):
    """Synthesise, place and route one (preset, device); returns its report row (dict).
    ``cfg`` replaces the preset's configuration (the row keeps ``preset_name``);
    ``place=False`` stops after Yosys and the fit check. An unchanged design reuses the
    previous Yosys run in its work directory."""
    from amaranth.back import rtlil
    from gen.artifacts import elaborate, write_if_changed
    from hw.board import SofaBoardPins, SofaBoardTop, link_queue_bytes
    from hw.uart import divisor_for
    cfg = cfg or preset(preset_name)
    device = get_device(device_name)
    pins = PIN_FILES[device.family][0]
    target = target_mhz(cfg, device.family)
    work = (Path(out_dir) / f"{preset_name}-{device_name}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    clk_hz = target * 1e6
    top = SofaBoardTop(cfg, divisor=divisor_for(clk_hz, baud), timeout_cycles=round(0.05 * clk_hz),
                       clk_hz=round(clk_hz), queue_bytes=link_queue_bytes(device.family),
                       global_reset=device.family == "ecp5")
    pins_top = SofaBoardPins(top, btn_active_low=device.family == "ice40",
                             led_active_low=device.family == "ice40")
    row = {"preset": preset_name, "device": device_name, "part": device.part,
           "family": device.family, "target_mhz": target, "constraints": f"constraints/{pins}",
           "config": cfg.to_dict(), "fits": True, "message": None, "times_s": {}}
    t0 = time.monotonic()
    write_if_changed(work / f"{TOP}.v", elaborate(pins_top, name=TOP))
    # Yosys synthesises the RTLIL of the same design, as Amaranth's board flow does: Yosys
    # 0.69 turns the link's 1024-bit shift register into conflicting drivers when it reads
    # its own Verilog output of this design (synth_ecp5, with or without abc9).
    changed = write_if_changed(work / f"{TOP}.il",
                               rtlil.convert(pins_top, name=TOP, emit_src=False))
    row["times_s"]["elaborate"] = round(time.monotonic() - t0, 1)
    row.update(throughput(cfg, seq, baud=baud,
                          iterative_divider=getattr(top.link_core.core, "iterative_divider",
                                                    True)))
    if cfg.memory == "axi":
        row["mem_bytes"] = top.link_core.mem_bytes
    done = work / "yosys_command.txt"
    if not changed and done.exists() and (work / "synth.json").exists():
        synth, t_yosys = done.read_text().strip(), 0.0
        log(f"yosys: {work / f'{TOP}.il'} unchanged, reusing synth.json")
    else:
        done.unlink(missing_ok=True)
        synth, t_yosys = run_yosys(work, f"read_rtlil {TOP}.il", BOARD_SYNTH[device.family],
                                   TOP, log)
        done.write_text(synth + "\n")
    cells = stat_cells(work / "stat.json", primitives_only=True)
    row["times_s"]["yosys"] = round(t_yosys, 1)
    row["yosys_command"] = synth
    row["cells"] = cells
    row["resources"] = res = resources(device.family, cells)
    problems = fit_problems(res, device)
    if problems:
        row.update(fits=False, message=f"does not fit: {', '.join(problems)}")
        return row
    if not place:
        return row
    row["seed"], seed_args = board_nextpnr_args(device.family, seed)
    try:
        pnr, t_pnr = place_and_route(work, device, pins, seed_args, log,
                                     clock_mhz=None if target == PIN_FILES[device.family][1]
                                     else target)
    except DoesNotFit as e:
        row.update(fits=False, message=str(e))
        return row
    row["times_s"]["nextpnr"] = round(t_pnr, 1)
    fmax, _ = post_route_fmax(pnr)
    row["fmax_mhz"] = round(fmax, 2) if fmax is not None else None
    row["timing_met"] = fmax is not None and fmax >= target
    row["utilization"] = used_utilization(pnr)
    lc = row["utilization"].get("ICESTORM_LC") or row["utilization"].get("TRELLIS_COMB")
    row["lc"] = lc and lc["used"]
    if fmax:
        row["qps_sparse"] = fmax * 1e6 / row["cycles_sparse"]
        row["qps_dense"] = fmax * 1e6 / row["cycles_dense"]
    # runs of one design share the directory: keep each seed's log and report
    for name in ("nextpnr.log", "report_pnr.json"):
        if (work / name).exists():
            shutil.copyfile(work / name, work / name.replace(".", f"-seed{row['seed']}.", 1))
    (work / f"row-seed{row['seed']}.json").write_text(json.dumps(row, indent=2) + "\n")
    return row


def _num(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)


def render_markdown(rows, *, baud):
    """The Markdown table of :func:`run_report`'s ``rows`` and its notes."""
    lines = [
        "| preset | device | seed | LC (LUT4) | FF | DSP | BRAM/EBR | Fmax MHz (target) | "
        "cycles/query sparse (dense) | queries/s at Fmax sparse (dense) | "
        f"queries/s over UART {baud} Bd |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        res = r.get("resources") or {}
        S = r.get("seq_len")
        cyc = (f"{_num(r.get('cycles_sparse'))} ({_num(r.get('cycles_dense'))})"
               + ("" if S == 256 else f" at S={S}"))
        if not r["fits"]:
            lines.append(f"| {r['preset']} | {r['device']} | {r.get('seed', '–')} | "
                         f"{res.get('lut', '–')} (LUT4) | "
                         f"{res.get('ff', '–')} | {res.get('dsp', '–')} | "
                         f"{res.get('bram', '–')} | does not fit | {cyc} | – | – |")
            continue
        met = "" if r.get("timing_met") else " **missed**"
        lines.append(
            f"| {r['preset']} | {r['device']} | {r.get('seed', '–')} | "
            f"{_num(r.get('lc'))} ({_num(res.get('lut'))}) | "
            f"{_num(res.get('ff'))} | {res.get('dsp')} | {res.get('bram')} | "
            f"{_num(r.get('fmax_mhz'), '{:.1f}')} ({r['target_mhz']:g}){met} | {cyc} | "
            f"{_num(r.get('qps_sparse'))} ({_num(r.get('qps_dense'))}) | "
            f"{_num(r.get('uart_qps'), '{:.1f}')} |")
    lines += [
        "",
        "LC: iCE40 logic cells (ICESTORM_LC) or ECP5 TRELLIS_COMB placed by nextpnr; LUT4: "
        "Yosys LUT4 cells (ECP5: + 2 per CCU2C carry cell). FF, DSP (SB_MAC16 / MULT18X18D) "
        "and BRAM (SB_RAM40_4K / DP16KD) are Yosys cell counts. Fmax is nextpnr's post-route "
        "figure from `--report` for the clock target in the constraint file, with the seed in "
        "report.json (by default gen.toolchain.DEFAULT_SEED: iCE40 1, ECP5 3). Cycles per query "
        "from the cycle model (sim/perf.py) at S = 256 (or max_seq_len if smaller), sparse at "
        "top_k = k_max, on structured data, eight queries a call, with the board top's "
        "iterative divider; the design is the whole board top (core, host link, UART).",
        "",
        "Memory boards (memory = axi): the memory-attached core with its block RAM behind AXI4 "
        f"(mem_bytes in report.json), timed at {MEMORY_TARGET_MHZ:g} MHz; cycles per query from "
        "the memory core's cycle model (sim/axiperf.py) at the block RAM's read latency; Q, K "
        "and V are loaded into the board's memory once, so the UART does not bound a query.",
    ]
    for r in rows:
        if not r["fits"]:
            lines.append(f"\n{r['preset']} on {r['device']}: {r['message']}")
    return "\n".join(lines) + "\n"


def run_report(runs=DEFAULT_RUNS, *, out_dir=None, seq=256, baud=115200, seed=None, log=_log):
    """:func:`run_one` for every ``(preset, device)`` of ``runs``; ``report.json`` and
    ``report.md`` in ``out_dir`` are rewritten after each run.

    Parameters
    ----------
    runs : iterable of (str, str, int or None)
        ``(preset, device, seed)``; a seed of None takes ``seed``.
    out_dir : path, optional
        Defaults to ``build/report`` under the repository root.
    seq, baud, seed :
        As :func:`run_one`.
    log : callable
        Progress messages.

    Returns
    -------
    list of dict
        The rows; a tool failure is a row with ``fits: false`` and the failure as message.
    """
    out_dir = make_out_dir("--out", Path(out_dir) if out_dir is not None
                           else ROOT / "build" / "report")
    rows = []
    for preset_name, device_name, run_seed in runs:
        t0 = time.monotonic()
        try:
            row = run_one(preset_name, device_name, out_dir=out_dir, seq=seq, baud=baud,
                          seed=seed if run_seed is None else run_seed, log=log)
        except SynthError as e:
            row = {"preset": preset_name, "device": device_name, "fits": False,
                   "message": f"tool failure: {e}"}
        row["wall_s"] = round(time.monotonic() - t0, 1)
        rows.append(row)
        log(f"{preset_name} on {device_name}: {row.get('resources')} Fmax "
            f"{row.get('fmax_mhz')} MHz ({row['wall_s']} s)")
        (out_dir / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
        (out_dir / "report.md").write_text(render_markdown(rows, baud=baud))
    return rows


def add_arguments(parser):
    """The options of ``sofa report``."""
    parser.add_argument("--runs", nargs="+", metavar="PRESET:DEVICE[:SEED]",
                        help="the runs: a preset, a device and optionally the nextpnr seed "
                             "(else --seed's); devices: "
                             f"{', '.join(DEVICES)} (default: "
                             + " ".join(f"{p}:{d}" + (f":{n}" if n is not None else "")
                                        for p, d, n in DEFAULT_RUNS) + ")")
    parser.add_argument("--seq", type=int_arg(1), default=None, metavar="S",
                        help=f"sequence length for cycles per query, 1 … the smallest "
                             f"max_seq_len of the presets run (default: {DEFAULT_SEQ}, or "
                             f"max_seq_len where that is smaller)")
    parser.add_argument("--baud", type=int_arg(300, 12_000_000), default=115200, metavar="B",
                        help="UART line rate of the board top, 300 … 12000000 (default: "
                             "115200)")
    add_seed_argument(parser)
    parser.add_argument("--out", type=path_arg, default=None, metavar="DIR",
                        help="output directory (default: build/report)")


def check(args):
    """Every input of ``sofa report`` checked before the first synthesis (a bad last pair
    would otherwise fail after an hour of runs): ``(runs, seq, out_dir)``, the ``(preset,
    device)`` pairs. Nothing is written."""
    from hw.uart import divisor_for
    from gen.toolchain import MAX_SEED
    runs = DEFAULT_RUNS
    if args.runs:
        runs = []
        for value in args.runs:
            parts = value.split(":")
            if len(parts) not in (2, 3):
                raise ConfigError(f"--runs {value!r}: expected PRESET:DEVICE or "
                                  f"PRESET:DEVICE:SEED, e.g. tiny:ice40-up5k or "
                                  f"axi:ecp5-85f:2")
            preset_name, device_name = parts[:2]
            run_seed = None
            if len(parts) == 3:
                text = parts[2]
                if not text.isdigit() or int(text) > MAX_SEED:
                    raise ConfigError(f"--runs {value!r}: seed {text!r} must be an integer "
                                      f"from 0 to {MAX_SEED}")
                run_seed = int(text)
            try:
                cfg = preset(preset_name)
                device = get_device(device_name)
                target_mhz(cfg, device.family)
            except ConfigError as e:                 # names the known presets or devices
                raise ConfigError(f"--runs {value!r}: {e}") from None
            runs.append((preset_name, device_name, run_seed))
    seq = DEFAULT_SEQ
    if args.seq is not None:
        smallest = min(runs, key=lambda r: preset(r[0]).max_seq_len)[0]
        try:
            seq = check_int("--seq", args.seq, 1, preset(smallest).max_seq_len)
        except ConfigError as e:
            raise ConfigError(f"{e} (max_seq_len of {smallest})") from None
    check_int("--baud", args.baud, 1)
    for p, d, _ in runs:
        try:
            divisor_for(target_mhz(preset(p), get_device(d).family) * 1e6, args.baud)
        except ValueError as e:
            raise ConfigError(f"--baud {args.baud}: {e}") from None
    out = args.out if args.out is not None else ROOT / "build" / "report"
    return runs, seq, check_out_dir("--out", out)


def run(args):
    """``sofa report``: :func:`run_report` over the pairs of ``--runs``; prints the table and
    the files written. Returns the exit status (0, also when a design does not fit: that is a
    row of the table); raises :class:`~spec.config.ConfigError` for bad input
    (:func:`check`)."""
    runs, seq, out = check(args)
    rows = run_report(runs, out_dir=out, seq=seq, baud=args.baud, seed=args.seed)
    print(render_markdown(rows, baud=args.baud))
    print(f"wrote {out / 'report.md'} and {out / 'report.json'}")
    return 0
