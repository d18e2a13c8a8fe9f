"""DLZS on Verilator (cocotb, ``tb/cocotb/dlzs/cocotb_dlzs.py``) against the golden model for
the config matrix: tiny, default, an odd config (three chunks per key, a 3-lane adder tree)
and an eight-chunk config (d = 32, four lanes)."""

import pytest

from hw.dlzs import DLZS
from spec.config import preset
from gen.rtlsim.runner import run_cocotb
from tb.support.configs import DLZS_CONFIGS as CONFIGS


# default in make test-all: the core test builds it whole (test_top_verilator.py)
@pytest.mark.parametrize("name", ["tiny", "odd", "chunks8", pytest.param("default", marks=pytest.mark.slow)])
def test_dlzs_verilator(name):
    cfg = CONFIGS[name] if name in CONFIGS else preset(name)
    run_cocotb("dlzs", DLZS, cfg, "tb.cocotb.dlzs.cocotb_dlzs", name=name)
