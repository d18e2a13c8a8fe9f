"""``sofa``: the one command line of SOFA-gen.

Every job is a subcommand; the make targets call them::

    sofa verilog       [--preset NAME | --config FILE] [--unit UNIT] [--out DIR]
    sofa regs          [--preset NAME | --config FILE] [--out DIR]
    sofa synth-report  [--preset NAME | --config FILE] [--device DEV] [--freq MHZ] ...
    sofa bench         [--preset NAME | --config FILE] [--seq S] [--rows T] ...
    sofa eval          [--quick] [--texts DIR] [--out DIR]
    sofa dse           [--budget F] [--trials N] [--fresh] ...
    sofa bitstream     BOARD [--baud B] [--program] ...
    sofa report        [--runs PRESET:DEVICE ...]
    sofa host          (--port DEV | --sim PRESET) {ident,counters,read-reg,write-reg,selftest}

``sofa COMMAND --help`` shows a command's options with their defaults. A job lives in its own
module, which provides ``add_arguments(parser)``, ``check(args)`` (every input checked before
any work: nothing is built, run or written by it) and ``run(args) -> int`` (which starts with
``check``); this module only dispatches, so a command imports nothing but its own module.
:func:`validate` parses and checks a command line without running it (the tests fuzz it).

Exit status: 0 on success; 2 for bad input (unknown preset or device, unreadable or malformed
file, invalid parameter or option value), with one line ``error: <message>`` on stderr naming
the parameter, the value and what is allowed; 1 when a job fails (a tool error, a design that
does not fit, a board that does not answer), also with one ``error:`` line.
"""

import argparse
import importlib
import json
import os
import re
import sys
import time
from pathlib import Path

from gen.design import (TOP_NAME, add_design_arguments, check_unit, default_out_dir,
                        load_cfg, unit_factory)
from spec.config import ConfigError
from spec.validate import check_out_dir, make_out_dir, one_line


__all__ = ["main", "build_parser", "command_parser", "validate", "write_verilog", "COMMANDS",
           "EXIT_BAD_INPUT", "EXIT_FAILED"]


EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

#: Subcommand -> (module with add_arguments/run, one-line help).
COMMANDS = {
    "verilog": ("gen.cli", "write sofa_top.v, its JSON sidecar and the register files"),
    "regs": ("gen.cli", "write the register map as SystemRDL, a C header and Markdown"),
    "synth-report": ("gen.synth", "synthesise, place and route one design; report.json/.md"),
    "bench": ("gen.bench", "RTL speed-up over dense mode on Verilator; bench.json/.md"),
    "eval": ("sim.evaluation", "accuracy study on all-MiniLM-L6-v2; report.md and plots"),
    "dse": ("sim.dse.cli", "per-layer design-space exploration with Optuna"),
    "bitstream": ("gen.boards", "build (and program) a board bitstream"),
    "report": ("gen.report", "resources, Fmax and throughput of the board tops"),
    "host": ("gen.host", "talk to a board (or a simulated one) over its serial link"),
}


class Parser(argparse.ArgumentParser):
    """argparse with the one-line ``error:`` format and exit status 2."""

    def error(self, message):
        # argparse quotes the whole value it refused: shorten a 5,000-digit one.
        message = re.sub(r"\S{81,}", lambda m: f"{m[0][:40]}…{m[0][-8:]}", one_line(message))
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written."""


# -- verilog and regs ----------------------------------------------------------------------------

def write_verilog(cfg, out_dir, *, component_factory=None, name=TOP_NAME):
    """Write ``<out_dir>/<name>.v`` and ``<out_dir>/<name>.json``; returns both paths."""
    from gen.artifacts import elaborate, sidecar, write_if_changed
    if component_factory is None:
        from hw.top import sofa_top as component_factory
    component = component_factory(cfg)
    verilog_text = elaborate(component, name=name)
    out_dir = Path(out_dir)
    v_path, j_path = out_dir / f"{name}.v", out_dir / f"{name}.json"
    write_if_changed(v_path, verilog_text)
    meta = sidecar(cfg, component, top=name, verilog_text=verilog_text)
    write_if_changed(j_path, json.dumps(meta, indent=2) + "\n")
    return v_path, j_path


def _add_verilog(parser):
    add_design_arguments(parser, unit=True)


def _check_verilog(args):
    """``(cfg, out_dir, component factory, module name)`` of ``sofa verilog``'s arguments."""
    unit_factory(args.unit)
    cfg = load_cfg(args)
    factory, name = check_unit(args.unit, cfg)
    return cfg, check_out_dir("--out", default_out_dir(args, cfg)), factory, name


def _run_verilog(args):
    from gen.regs import write_register_files
    cfg, out_dir, factory, name = _check_verilog(args)
    make_out_dir("--out", out_dir)
    start = time.monotonic()
    paths = list(write_verilog(cfg, out_dir, component_factory=factory, name=name))
    if args.unit == "top":
        paths += write_register_files(cfg, out_dir)
    print(f"wrote {', '.join(str(p) for p in paths)} ({cfg.name}, "
          f"{time.monotonic() - start:.1f} s)")
    return 0


def _add_regs(parser):
    add_design_arguments(parser)


def _check_regs(args):
    cfg = load_cfg(args)
    return cfg, check_out_dir("--out", default_out_dir(args, cfg))


def _run_regs(args):
    from gen.regs import write_register_files
    cfg, out_dir = _check_regs(args)
    make_out_dir("--out", out_dir)
    paths = write_register_files(cfg, out_dir)
    print(f"wrote {', '.join(str(p) for p in paths)} ({cfg.name})")
    return 0


_LOCAL = {"verilog": (_add_verilog, _check_verilog, _run_verilog),
          "regs": (_add_regs, _check_regs, _run_regs)}


# -- dispatch ------------------------------------------------------------------------------------

def _job(command):
    """``(add_arguments, check, run, failures, interrupted)`` of a subcommand: ``failures``
    are the exceptions that mean the job failed (exit 1), ``interrupted`` a hint for Ctrl-C."""
    if command in _LOCAL:
        return (*_LOCAL[command], (), None)
    module = importlib.import_module(COMMANDS[command][0])
    return (module.add_arguments, module.check, module.run, getattr(module, "FAILURES", ()),
            getattr(module, "INTERRUPTED", None))


def build_parser(command=None):
    """The ``sofa`` parser; only ``command``'s options are built (its module is imported)."""
    parser = Parser(
        prog="sofa", formatter_class=Formatter,
        description="SOFA-gen: generate, verify, measure and deploy a SOFA sparse-attention "
                    "accelerator core.",
        epilog="Commands:\n" + "\n".join(f"  {name:<13} {text}"
                                         for name, (_, text) in COMMANDS.items())
               + "\n\n`sofa COMMAND --help` shows a command's options and their defaults.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, (_, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                           formatter_class=Formatter)
        if name == command:
            _job(name)[0](p)
    return parser


def command_parser(command):
    """A parser of ``command``'s own options alone (``sofa COMMAND``'s), e.g. to list them."""
    parser = Parser(prog=f"sofa {command}", formatter_class=Formatter)
    _job(command)[0](parser)
    return parser


def _parse(argv):
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")     # reproducible Verilog
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in COMMANDS), None)
    return build_parser(command).parse_args(argv)


def validate(argv):
    """Parse ``argv`` and check every input of its command without running it; returns the
    parsed arguments. Bad input raises :class:`ConfigError` or exits with status 2 (argparse);
    nothing is written."""
    args = _parse(argv)
    _job(args.command)[1](args)
    return args


def main(argv=None):
    args = _parse(argv)
    _, check, run, failures, interrupted = _job(args.command)
    try:
        return run(args)
    except ConfigError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except failures as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"error: interrupted{'; ' + interrupted if interrupted else ''}",
              file=sys.stderr)
        return 130
