"""``sofa``: the SOFA-gen command line.

Commands
--------
``sofa verilog [--preset NAME | --config FILE] [--unit UNIT] [--out DIR]``
    Elaborate ``hw.top.sofa_top(cfg)`` to ``DIR/sofa_top.v`` and its JSON sidecar
    ``DIR/sofa_top.json`` (every resolved parameter, derived widths, ports, latency/ii).
    ``--unit dlzs|sads|sufa`` generates one stage instead, as ``DIR/<unit>.v``.
``sofa synth-report [--preset NAME | --config FILE] [--unit UNIT] [--device DEV] [--freq MHZ]
[--out DIR]``
    Synthesise, place and route the core inside a pin harness with YoWASP Yosys/nextpnr and
    write ``DIR/report.json`` and ``DIR/report.md``.

Bad input (unknown preset or device, unreadable or malformed config file, invalid parameter)
prints one line ``error: <message>`` on stderr and exits with status 2. A tool failure or a
design that does not fit prints ``error: <message>`` and exits with status 1.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path


__all__ = ["main", "build_parser", "load_cfg", "default_out_dir", "write_verilog"]


TOP_NAME = "sofa_top"
#: ``--unit`` choices: the core, or one pipeline stage on its own (for per-stage figures).
UNITS = ("top", "dlzs", "sads", "sufa")
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class _Parser(argparse.ArgumentParser):
    """argparse with the same one-line ``error:`` format and exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def _add_design_args(parser):
    from spec.config import PRESETS
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", metavar="NAME",
                       help=f"a named configuration: {', '.join(PRESETS)} (default: default)")
    group.add_argument("--config", metavar="FILE", type=Path,
                       help="a JSON file of SofaConfig parameters (a sidecar JSON also works; "
                            "\"preset\": NAME starts from a preset)")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help="output directory (default: build/<preset> or build/<config stem>, "
                             "with -<unit> appended for a single unit)")
    parser.add_argument("--unit", choices=UNITS, default="top", metavar="UNIT",
                        help=f"what to generate: {', '.join(UNITS)} (default: top, the core as "
                             f"module sofa_top; a unit keeps its own module name)")


def build_parser():
    from gen.synth import DEVICES
    parser = _Parser(
        prog="sofa",
        description="SOFA-gen: generate and evaluate a SOFA sparse-attention accelerator core.",
        epilog="Examples:\n"
               "  sofa verilog --preset tiny\n"
               "  sofa verilog --config my.json --out build/my\n"
               "  sofa synth-report --preset ice40\n"
               "  sofa synth-report --preset ecp5 --device ecp5-25f --freq 50\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    verilog = sub.add_parser(
        "verilog", help="write sofa_top.v and its JSON sidecar",
        description="Elaborate the core to Verilog (module sofa_top, no source attributes) and "
                    "write sofa_top.v and sofa_top.json (config, derived widths, ports, "
                    "latency/ii, generator versions).")
    _add_design_args(verilog)

    synth = sub.add_parser(
        "synth-report", help="synthesise, place and route; write report.json/report.md",
        description="Run YoWASP Yosys and nextpnr on the core wrapped in a pin harness and "
                    "report LUT/FF/DSP/BRAM use and post-route Fmax. The tools run in "
                    "<out>/synth-<device>/.")
    _add_design_args(synth)
    synth.add_argument("--device", choices=sorted(DEVICES), metavar="DEV",
                       help=f"target device: {', '.join(DEVICES)} "
                            "(default: ice40-up5k for the ice40 preset, else ecp5-85f)")
    synth.add_argument("--freq", type=float, metavar="MHZ",
                       help="clock target for nextpnr in MHz (default: 100 on ECP5, 24 on iCE40)")
    synth.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    synth.add_argument("--no-overhead", dest="overhead", action="store_false",
                       help="skip the extra Yosys run that measures the harness overhead")
    return parser


def load_cfg(args):
    """The SofaConfig selected by ``--preset``/``--config``; raises ConfigError."""
    from spec.config import load_config
    return load_config(preset_name=args.preset, path=args.config)


def default_out_dir(args, cfg):
    if args.out is not None:
        return args.out
    stem = args.config.stem if args.config is not None else cfg.name
    unit = getattr(args, "unit", "top")
    return Path("build") / (stem if unit == "top" else f"{stem}-{unit}")


def unit_factory(unit):
    """``(component factory, module name)`` of a ``--unit`` choice."""
    if unit == "top":
        return _sofa_top(), TOP_NAME
    if unit == "dlzs":
        from hw.dlzs import DLZS as factory
    elif unit == "sads":
        from hw.sads import SADS as factory
    elif unit == "sufa":
        from hw.sufa import SUFA as factory
    else:
        raise _BadInput(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    return factory, unit


def _sofa_top():
    try:
        from hw.top import sofa_top
    except ModuleNotFoundError as e:
        if e.name in ("hw.top", "hw"):
            raise _Failure("hw/top.py (sofa_top) is not available") from None
        raise
    return sofa_top


class _Failure(Exception):
    """A non-input failure reported as one line with exit status 1."""


def write_verilog(cfg, out_dir, *, component_factory=None, name=TOP_NAME):
    """Write ``<out_dir>/<name>.v`` and ``<out_dir>/<name>.json``; returns both paths."""
    from gen.artifacts import elaborate, sidecar, write_if_changed
    factory = component_factory or _sofa_top()
    component = factory(cfg)
    verilog_text = elaborate(component, name=name)
    out_dir = Path(out_dir)
    v_path, j_path = out_dir / f"{name}.v", out_dir / f"{name}.json"
    write_if_changed(v_path, verilog_text)
    meta = sidecar(cfg, component, top=name, verilog_text=verilog_text)
    write_if_changed(j_path, json.dumps(meta, indent=2) + "\n")
    return v_path, j_path


def _cmd_verilog(args):
    cfg = load_cfg(args)
    out_dir = default_out_dir(args, cfg)
    start = time.monotonic()
    factory, name = unit_factory(args.unit)
    try:
        v_path, j_path = write_verilog(cfg, out_dir, component_factory=factory, name=name)
    except OSError as e:
        raise _BadInput(f"cannot write to {out_dir}: {e.strerror or e}") from None
    print(f"wrote {v_path} and {j_path} ({cfg.name}, {time.monotonic() - start:.1f} s)")
    return 0


class _BadInput(Exception):
    pass


def _cmd_synth_report(args):
    from gen.synth import synth_report
    cfg = load_cfg(args)
    out_dir = default_out_dir(args, cfg)
    factory, _ = unit_factory(args.unit)
    report = synth_report(cfg, device=args.device, freq_mhz=args.freq, out_dir=out_dir,
                          overhead=args.overhead, seed=args.seed, component_factory=factory)
    res = report["resources"]
    met = {True: "met", False: "NOT met", None: "unknown"}[report["timing_met"]]
    fmax = report["fmax_mhz"]
    print(f"{report['device']}: LUT {res.get('lut')}, FF {res.get('ff')}, DSP {res.get('dsp')}, "
          f"BRAM {res.get('bram')}; Fmax {fmax if fmax is not None else '?'} MHz, "
          f"target {report['target_mhz']:g} MHz: timing {met}")
    print(f"wrote {Path(out_dir) / 'report.json'} and {Path(out_dir) / 'report.md'}")
    return 0


def main(argv=None):
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")     # reproducible Verilog
    # The project root must be importable when run as a plain script from elsewhere.
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from spec.config import ConfigError
    from gen.synth import SynthError

    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"verilog": _cmd_verilog, "synth-report": _cmd_synth_report}[args.command]
    try:
        return handler(args)
    except (ConfigError, _BadInput) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UnicodeDecodeError as e:
        print(f"error: config file is not UTF-8 text: {e.reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"error:{where} {e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (SynthError, _Failure) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
