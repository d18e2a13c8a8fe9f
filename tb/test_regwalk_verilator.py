"""Every register of the map walked through the RTL port on Verilator
(``tb/cocotb/regwalk/cocotb_regwalk.py``): reset values, access rules, legal-range ends and one
past them, the error flag and ERROR_ADDR, ``_HI`` staging, every unused address; on the memory
core also the AXI4-Lite window (SLVERR beyond it) and refused job starts.

Configs: ``tiny`` (on chip; its Verilator build is shared with tb/test_top_verilator.py),
``tiny16`` (16-bit data: a 36-bit radius, so RADIUS_HI stages its top bits; no counters, which
read 0), ``axi-small``, ``axi-odd`` and ``axi-small-c2`` (memory-attached, the last with two
cores and their per-core blocks) and ``axi-small-project`` (on-demand K/V: the X, weight and
requantisation registers, the projection counters, a misaligned X refused; builds shared
with tb/test_axicore_verilator.py).
"""

import pytest

from gen.rtlsim.runner import run_cocotb
from hw.top import sofa_top
from spec.config import preset
from tb.support.axicore import AXI_ODD, AXI_SMALL, AXI_SMALL_C2, PROJ_SMALL

CONFIGS = {"tiny": preset("tiny"),
           "tiny16": preset("tiny").replace(name="tiny16", data_width=16, counter_width=0),
           "axi-small": AXI_SMALL, "axi-odd": AXI_ODD, "axi-small-c2": AXI_SMALL_C2,
           "axi-small-project": PROJ_SMALL}


@pytest.mark.parametrize("name", CONFIGS)
def test_regwalk_verilator(name):
    run_cocotb("sofa_top", sofa_top, CONFIGS[name], "tb.cocotb.regwalk.cocotb_regwalk",
               name=name)
