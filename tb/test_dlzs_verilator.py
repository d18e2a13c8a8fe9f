"""DLZS on Verilator (cocotb, ``tb/cocotb/dlzs/cocotb_dlzs.py``) against the golden model for
the config matrix: tiny, default, an odd config (three chunks per key, a 3-lane adder tree)
and the ice40 preset (eight chunks per key)."""

import pytest

from hw.dlzs import DLZS
from tb.cocotb_runner import run_cocotb
from tb.test_dlzs import CONFIGS

MATRIX = {"tiny": CONFIGS["tiny"], "odd": CONFIGS["odd"], "ice40": CONFIGS["ice40"]}


@pytest.mark.parametrize("name", ["tiny", "odd", "ice40", "default"])
def test_dlzs_verilator(name):
    from hw.config import preset
    cfg = MATRIX.get(name) or preset(name)
    run_cocotb("dlzs", DLZS, cfg, "cocotb_dlzs", name=name)
