"""Which design a job works on: the ``--preset``/``--config``/``--unit``/``--out`` options that
``sofa verilog``, ``regs``, ``synth-report``, ``bench`` and ``bitstream`` share, and what they
select."""

from pathlib import Path

from spec.config import PRESETS, ConfigError, load_config
from spec.validate import path_arg


__all__ = ["TOP_NAME", "UNITS", "add_design_arguments", "load_cfg", "default_out_dir",
           "unit_factory", "check_unit"]


#: The Verilog module name of the core.
TOP_NAME = "sofa_top"
#: ``--unit`` choices: the core, or one pipeline stage on its own (for per-stage figures).
UNITS = ("top", "dlzs", "sads", "sufa", "adapt", "tail")


def add_design_arguments(parser, *, unit=False, out=True, preset_default="default"):
    """``--preset``/``--config`` (and ``--unit``, ``--out``): the design of a job.

    ``preset_default`` says in the help what a job uses when neither is given."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", metavar="NAME",
                       help=f"a named configuration: {', '.join(PRESETS)} "
                            f"(default: {preset_default})")
    group.add_argument("--config", metavar="FILE", type=path_arg,
                       help="a JSON file of SofaConfig parameters (a sidecar JSON also works; "
                            "\"preset\": NAME starts from a preset) (default: none)")
    if out:
        parser.add_argument("--out", metavar="DIR", type=path_arg,
                            help="output directory (default: build/<preset> or "
                                 "build/<config stem>, with -<unit> appended for a unit)")
    if unit:
        parser.add_argument("--unit", choices=UNITS, default="top", metavar="UNIT",
                            help=f"what to build: {', '.join(UNITS)} (default: top, the core "
                                 f"as module {TOP_NAME}; a unit keeps its own module name)")


def load_cfg(args, default=None):
    """The SofaConfig of ``--preset``/``--config``; ``default`` (a config) when neither is
    given and the job has its own, else the ``default`` preset. Raises ConfigError."""
    if default is not None and args.preset is None and args.config is None:
        return default
    return load_config(preset_name=args.preset, path=args.config, what="--config")


def default_out_dir(args, cfg):
    """``--out``, else ``build/<preset or config stem>[-<unit>]``."""
    if args.out is not None:
        return args.out
    stem = args.config.stem if args.config is not None else cfg.name
    unit = getattr(args, "unit", "top")
    return Path("build") / (stem if unit == "top" else f"{stem}-{unit}")


def unit_factory(unit):
    """``(component factory, module name)`` of a ``--unit`` choice; ConfigError for another."""
    if unit == "top":
        from hw.top import sofa_top
        return sofa_top, TOP_NAME
    if unit == "dlzs":
        from hw.dlzs import DLZS as factory
    elif unit == "sads":
        from hw.sads import SADS as factory
    elif unit == "sufa":
        from hw.sufa import SUFA as factory
    elif unit == "adapt":
        from hw.adapt import AdaptiveGate as factory
    elif unit == "tail":
        from hw.tail import TailBlend as factory
    else:
        raise ConfigError(f"--unit {unit!r} is unknown; choose one of {', '.join(UNITS)}")
    return factory, unit


def check_unit(unit, cfg):
    """``(component factory, module name)`` of ``--unit`` for ``cfg``; a :class:`ConfigError`
    naming ``--unit`` when the unit cannot be built from ``cfg``, before any file is
    written."""
    factory, name = unit_factory(unit)
    if unit == "sads" and cfg.predict_keys > 1:
        # several keys a cycle: a lane's selection is a bank of SADS units
        from hw.sadsbank import SADSBank as factory
    if unit in ("adapt", "tail") and not cfg.adapt_bins:
        what = "the adaptive gate" if unit == "adapt" else "the tail blend (built with the gate)"
        raise ConfigError(f"--unit {unit}: {what} needs adapt_bins > 0; "
                          f"{cfg.name} has adapt_bins = 0")
    return factory, name
