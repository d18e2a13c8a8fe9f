"""The SOFA core (``sofa_top``) on Verilator end to end (cocotb, ``tb/cocotb/top/cocotb_top.py``)
against the golden model: tiny (one and two query lanes, and with the adaptive budget) and
ice40 at S = max_seq_len, and the default preset at S = 512; ``make test-all`` adds ecp5 and
the default preset's whole 1024."""

import pytest

from spec.config import preset
from hw.top import sofa_top
from gen.rtlsim.runner import run_cocotb


EXTRA = {"tiny2": preset("tiny").replace(name="tiny2", q_lanes=2),
            "tiny-adapt": preset("tiny").replace(name="tiny-adapt", adapt_bins=4)}


@pytest.mark.parametrize("name,seq", [("tiny", None), ("tiny2", None), ("ice40", None),
                                      ("tiny-adapt", None),
                                      pytest.param("ecp5", None, marks=pytest.mark.slow),
                                      ("default", 512),
                                      pytest.param("default", 1024, marks=pytest.mark.slow)])
def test_top_verilator(name, seq):
    env = {} if seq is None else {"SOFA_TOP_SEQ": str(seq)}
    cfg = EXTRA[name] if name in EXTRA else preset(name)
    run_cocotb("sofa_top", sofa_top, cfg, "tb.cocotb.top.cocotb_top",
               name=name, extra_env=env)
