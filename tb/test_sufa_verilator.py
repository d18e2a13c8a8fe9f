"""SU-FA on Verilator (cocotb, ``tb/cocotb/sufa/cocotb_sufa.py``) against the golden model for
the config matrix: tiny (two chunks per key), wide (one chunk), odd (d = 6, three chunks of two
lanes, tiles of 5) and default (four chunks of 16 lanes, d = 64)."""

import pytest

from hw.sufa import SUFA
from gen.rtlsim.runner import run_cocotb
from tb.support.configs import SUFA_CONFIGS as CONFIGS


# default in make test-all: the core test builds it whole (test_top_verilator.py)
@pytest.mark.parametrize("name", ["tiny", "wide", "odd", pytest.param("default", marks=pytest.mark.slow)])
def test_sufa_verilator(name):
    run_cocotb("sufa", SUFA, CONFIGS[name], "tb.cocotb.sufa.cocotb_sufa", name=name)
