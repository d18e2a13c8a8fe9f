"""SADS on Verilator (cocotb, ``tb/cocotb/sads/cocotb_sads.py``) for the config matrix: tiny,
default and an odd config (block_size 5, sort_width 5, k_max 3: batches of 2, a padded
5-input network). One Verilator build per config, reused while the Verilog is unchanged."""

import pytest

from hw.sads import SADS
from gen.rtlsim.runner import run_cocotb
from tb.support.configs import SADS_CONFIGS as CONFIGS


# default in make test-all: the core test builds it whole (test_top_verilator.py)
@pytest.mark.parametrize("name", ["tiny", pytest.param("default", marks=pytest.mark.slow), "odd"])
def test_sads_verilator(name):
    run_cocotb("sads", SADS, CONFIGS[name], "tb.cocotb.sads.cocotb_sads", name=name)
