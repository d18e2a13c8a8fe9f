"""``sofa bitstream BOARD`` (``make bitstream BOARD=…``): a board bitstream through
amaranth-boards and the YoWASP tools.

The design is :class:`hw.board.SofaBoard` (the SOFA core behind the UART host link) for the
board's preset. The build runs in ``build/boards/<board>/``; Amaranth writes its scripts there
and runs every tool with that directory as the working directory and relative paths (YoWASP
cannot see absolute paths under ``/tmp``, which it maps to a private directory). Also:

* the tools are chosen by Amaranth's per-tool environment variables pointing at the YoWASP
  commands of this interpreter's environment, set only for the build
  (:func:`gen.toolchain.platform_env`, which also fills in the programmers ULX3S and
  OrangeCrab platforms require even when not programming);
* ``synth_ice40 -dsp`` (SB_MAC16 multipliers; without it multipliers become logic cells);
* nextpnr ``--report`` JSON for utilisation and the post-route Fmax (never the log's first
  "Max frequency" line, which is the pre-route estimate), and Yosys ``stat -json`` for cell counts.

Nothing is programmed unless ``--program`` is given. The result is ``board.json`` (resources,
Fmax, bitstream, times) beside the bitstream.
"""

import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from spec.config import ConfigError, preset
from spec.validate import (check_float, check_int, check_out_dir, float_arg, int_arg,
                           make_out_dir, path_arg)
from gen.design import add_design_arguments, load_cfg
from gen.toolchain import (ROOT, SynthError, add_seed_argument, board_nextpnr_args,
                           error_lines, exported, over_capacity, platform_env, post_route_fmax,
                           resources, stat_cells, used_utilization)


__all__ = ["Board", "BOARDS", "BoardError", "check_board", "prepare_board", "build_board",
           "summarise", "add_arguments", "check", "run", "FAILURES", "BAUD_RANGE", "MAX_CLK_MHZ"]

NAME = "sofa_board"
#: UART line rates a board top is built for (the divisor must also fit the clock).
BAUD_RANGE = (300, 12_000_000)
#: Highest core clock asked of a PLL (the ECP5 PLL's output stops at 400 MHz).
MAX_CLK_MHZ = 400.0


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
    "ulx3s-85f": Board("amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5-axi", "ecp5",
                       clk_mhz=37.5, note="UART on the FTDI (US1 port); the memory board "
                       "(the ecp5-axi preset over 64 KiB of block RAM) at 37.5 MHz from the "
                       "25 MHz oscillator through the PLL (make report's seeds reach 50-58 "
                       "MHz; the target is 75)"),
    "ulx3s-45f": Board("amaranth_boards.ulx3s:ULX3S_45F_Platform", "ecp5", "ecp5",
                       note="UART on the FTDI (US1 port); the on-chip ecp5 preset at the 25 "
                       "MHz oscillator (the memory board needs the 85F's LUTs)"),
    "ulx3s-25f": Board("amaranth_boards.ulx3s:ULX3S_25F_Platform", "ice40", "ecp5",
                       clk_mhz=50.0, note="UART on the FTDI (US1 port); the ice40 preset "
                       "at 50 MHz through the PLL (the ecp5 preset needs the 45F or 85F)"),
    "orangecrab-85f": Board("amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_85FPlatform",
                            "ecp5-axi", "ecp5", clk_mhz=36.0, uart_pins=("0", "1", ("io", 0)),
                            note="no USB-serial bridge: a 3.3 V USB-UART adapter on feather "
                            "pins 0 (RX) and 1 (TX); the memory board at 36 MHz from the 48 "
                            "MHz oscillator through the PLL"),
    "orangecrab-25f": Board("amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform",
                            "ice40", "ecp5", uart_pins=("0", "1", ("io", 0)),
                            note="as orangecrab-85f, with the ice40 preset"),
}


class BoardError(SynthError):
    """A board build failed; the message names the step and the log."""


#: Errors of this job that the command line reports with exit status 1.
FAILURES = (SynthError,)


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


def check_board(name, *, cfg=None, baud=115200, clk_mhz=None):
    """``(board, platform, cfg, clk_mhz)`` of board ``name`` with every input checked and
    nothing built: the board, the design (the host link over :class:`hw.top.SofaCore`, or on
    ECP5 a memory board: :class:`hw.axicore.SofaAxiCore` over block RAM), the line rate
    against the core clock, and a core clock other than the oscillator's only on ECP5 boards,
    within what their PLL makes. A :class:`~spec.config.ConfigError` names the bad value."""
    from hw.board import check_board_family, ecp5_pll_params
    from hw.uart import divisor_for
    try:
        board = BOARDS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown board {name!r}; known boards are "
                          f"{', '.join(BOARDS)}") from None
    cfg = cfg or preset(board.preset)
    try:
        check_board_family(cfg, board.family)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None
    check_int("--baud", baud, *BAUD_RANGE)
    clk_mhz = board.clk_mhz if clk_mhz is None else \
        check_float("--clk-mhz", clk_mhz, 0, MAX_CLK_MHZ, lo_open=True)
    plat = _platform(board)
    osc_hz = plat.default_clk_frequency
    if clk_mhz is not None and abs(clk_mhz * 1e6 - osc_hz) > 1:
        if board.family != "ecp5":
            raise ConfigError(f"--clk-mhz {clk_mhz:g}: {name} has no PLL here; leave it at "
                              f"the oscillator's {osc_hz / 1e6:g} MHz")
        try:
            ecp5_pll_params(osc_hz, clk_mhz * 1e6)
        except ConfigError as e:
            raise ConfigError(f"--clk-mhz {clk_mhz:g}: {e}") from None
    # Checked here: inside the build a bad rate only surfaces as a failed build.
    try:
        divisor_for(osc_hz if clk_mhz is None else clk_mhz * 1e6, baud)
    except ValueError as e:
        raise ConfigError(f"--baud {baud} on {name}: {e}") from None
    return board, plat, cfg, clk_mhz


def prepare_board(name, *, cfg=None, baud=115200, clk_mhz=None, seed=None,
                  timing_allow_fail=False, max_payload=None):
    """``(board, platform, design, cfg, build options)`` of board ``name``; see
    :func:`build_board` for the parameters. Bad input (:func:`check_board`) is a
    :class:`~spec.config.ConfigError`."""
    from hw.board import DEFAULT_MAX_PAYLOAD, SofaBoard
    board, plat, cfg, clk_mhz = check_board(name, cfg=cfg, baud=baud, clk_mhz=clk_mhz)
    design = SofaBoard(cfg, baud=baud, clk_hz=None if clk_mhz is None else clk_mhz * 1e6,
                       max_payload=max_payload or DEFAULT_MAX_PAYLOAD)
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
        nextpnr placement seed; defaults to :data:`gen.toolchain.DEFAULT_SEED` of the family.
    timing_allow_fail : bool
        Keep a bitstream that misses the clock target (nextpnr fails the build otherwise).
    max_payload : int, optional
        Host link buffer; defaults to :data:`hw.board.DEFAULT_MAX_PAYLOAD`.
    log : callable, optional
        Progress messages; defaults to printing on stderr.

    Returns
    -------
    dict
        The summary, also written as ``board.json`` beside the bitstream (see
        :func:`summarise`). Raises :class:`BoardError` when the build fails and
        :class:`~spec.config.ConfigError` for bad input.
    """
    if log is None:
        def log(message):
            print(message, file=sys.stderr, flush=True)
    board, plat, design, cfg, kwargs = prepare_board(
        name, cfg=cfg, baud=baud, clk_mhz=clk_mhz, seed=seed,
        timing_allow_fail=timing_allow_fail, max_payload=max_payload)
    out_dir = make_out_dir("--out", _out_dir(name, out_dir).resolve())
    log(f"{name}: building {cfg.name} in {out_dir} (logs: {NAME}.rpt, {NAME}.tim)")
    start = time.monotonic()
    try:
        with exported(platform_env(board.family, program=program)):
            plat.build(design, name=NAME, build_dir=str(out_dir), do_program=program, **kwargs)
    except ConfigError:                      # from elaboration (a clock the PLL cannot make)
        raise
    except Exception as e:                   # amaranth raises CalledProcessError etc.
        tim = out_dir / f"{NAME}.tim"
        over = over_capacity(tim)
        if over:
            raise BoardError(f"{name}: the {cfg.name} design does not fit the "
                             f"{plat.device}: {over} (nextpnr log {tim})") from None
        errors = error_lines(tim, 3, tail=False)
        raise BoardError(f"{name}: build failed ({type(e).__name__}: {e}); "
                         f"{'; '.join(errors) or 'see the logs'} in {out_dir}") from None
    elapsed = time.monotonic() - start
    summary = summarise(out_dir, board, cfg, design, name=name, elapsed=elapsed, baud=baud)
    (out_dir / "board.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarise(out_dir, board, cfg, design, *, name, elapsed, baud):
    """board.json: resources (Yosys cells, nextpnr utilisation), Fmax, bitstream."""
    pnr = json.loads((out_dir / f"{NAME}.report.json").read_text())
    cells = stat_cells(out_dir / f"{NAME}.stat.json", primitives_only=True)
    _, clocks = post_route_fmax(pnr)
    bit = out_dir / (f"{NAME}.bin" if board.family == "ice40" else f"{NAME}.bit")
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
        "mem_bytes": top.link_core.mem_bytes,
        "resources": resources(board.family, cells),
        "cells": cells,
        "utilization": used_utilization(pnr),
        "fmax_mhz": {clk: v.get("achieved") for clk, v in clocks.items()},
        "constraint_mhz": {clk: v.get("constraint") for clk, v in clocks.items()},
        "bitstream": str(bit.relative_to(ROOT)) if bit.is_relative_to(ROOT) else str(bit),
        "bitstream_bytes": bit.stat().st_size if bit.exists() else None,
        "build_s": round(elapsed, 1),
        "note": board.note,
    }


# -- command line -------------------------------------------------------------------------------

def add_arguments(parser):
    """The options of ``sofa bitstream``."""
    parser.add_argument("board", metavar="BOARD",
                        help=f"the board: {', '.join(BOARDS)} (required)")
    add_design_arguments(parser, out=False, preset_default="the board's: " + ", ".join(
        f"{n} {b.preset}" for n, b in BOARDS.items()))
    parser.add_argument("--baud", type=int_arg(*BAUD_RANGE), default=115200, metavar="B",
                        help=f"UART line rate, {BAUD_RANGE[0]} … {BAUD_RANGE[1]} (default: "
                             f"115200)")
    parser.add_argument("--clk-mhz", type=float_arg(0, MAX_CLK_MHZ, lo_open=True), default=None,
                        metavar="MHZ",
                        help="core clock, through the PLL on ECP5 boards (default: the "
                             "board's entry, mostly its oscillator)")
    parser.add_argument("--out", type=path_arg, default=None, metavar="DIR",
                        help="build directory (default: build/boards/BOARD)")
    add_seed_argument(parser)
    parser.add_argument("--timing-allow-fail", action="store_true",
                        help="keep a bitstream that misses the clock target (default: off, "
                             "the build fails)")
    parser.add_argument("--program", action="store_true",
                        help="program the board afterwards (default: off)")


def _out_dir(name, out):
    return Path(out) if out is not None else ROOT / "build" / "boards" / name


def check(args):
    """Every input of ``sofa bitstream`` checked, nothing built: ``(cfg, out_dir)``."""
    cfg = load_cfg(args) if (args.preset or args.config) else None
    _, _, cfg, _ = check_board(args.board, cfg=cfg, baud=args.baud, clk_mhz=args.clk_mhz)
    return cfg, check_out_dir("--out", _out_dir(args.board, args.out))


def run(args):
    """``sofa bitstream``: :func:`build_board` from ``args``; prints the summary line. Returns
    the exit status (0); raises :class:`~spec.config.ConfigError` for bad input
    (:func:`check`, before anything is built) and :class:`BoardError` (a
    :class:`~gen.toolchain.SynthError`) when the build fails."""
    cfg, out_dir = check(args)
    s = build_board(args.board, cfg=cfg, baud=args.baud, clk_mhz=args.clk_mhz,
                    out_dir=out_dir, program=args.program, seed=args.seed,
                    timing_allow_fail=args.timing_allow_fail)
    res = s["resources"]
    fmax = ", ".join(f"{v:.1f} MHz" for v in s["fmax_mhz"].values() if v)
    print(f"{s['board']} ({s['preset']}): LUT {res.get('lut')}, FF {res.get('ff')}, "
          f"DSP {res.get('dsp')}, BRAM {res.get('bram')}; Fmax {fmax} at "
          f"{s['clk_mhz']:g} MHz; {s['bitstream']} ({s['bitstream_bytes']} bytes) in "
          f"{s['build_s']:.0f} s")
    print(f"wrote {s['bitstream']} and {Path(s['bitstream']).with_name('board.json')}")
    return 0
