"""The SOFA core (``sofa_top``) on Verilator end to end (cocotb, ``tb/cocotb/top/cocotb_top.py``)
against the golden model: tiny, tiny with two lanes and the adaptive budget and its tail
blend (5 bins) and
ice40 at S = max_seq_len, tiny with ``predict_keys = 4``, and the default preset at S = 512;
``make test-all`` adds tiny with two lanes alone and with the adaptive budget on one lane
(4 bins), ecp5, the default preset's whole 1024, tiny with two lanes at
``predict_keys = 2`` and the default preset with ``predict_keys = 4`` at 1024."""

import pytest

from spec.config import preset
from hw.top import sofa_top
from gen.rtlsim.runner import run_cocotb


EXTRA = {"tiny2": preset("tiny").replace(name="tiny2", q_lanes=2),
            "tiny-adapt": preset("tiny").replace(name="tiny-adapt", adapt_bins=4),
            # The adaptive budget and tail blend with two lanes and an odd bin count.
            "tiny2-adapt": preset("tiny").replace(name="tiny2-adapt", q_lanes=2, adapt_bins=5),
            # Several keys predicted a cycle (banked K, SADSBank), with two lanes at P = 2.
            "tiny-pk4": preset("tiny").replace(name="tiny-pk4", predict_keys=4),
            "tiny2-pk2": preset("tiny").replace(name="tiny2-pk2", q_lanes=2, predict_keys=2),
            "default-pk4": preset("default").replace(name="default-pk4", predict_keys=4)}


@pytest.mark.parametrize("name,seq", [("tiny", None),
                                      # two lanes: tiny2-adapt runs the same tests on them
                                      # in make test (its cycle model check on two lanes
                                      # is tb/test_top.py's), tiny2 in make test-all
                                      pytest.param("tiny2", None, marks=pytest.mark.slow),
                                      ("ice40", None),
                                      # the adaptive gate on Verilator: the odd config in
                                      # make test, tiny in make test-all (time budget)
                                      pytest.param("tiny-adapt", None, marks=pytest.mark.slow),
                                      ("tiny2-adapt", None),
                                      ("tiny-pk4", None),
                                      pytest.param("tiny2-pk2", None, marks=pytest.mark.slow),
                                      pytest.param("ecp5", None, marks=pytest.mark.slow),
                                      ("default", 512),
                                      pytest.param("default", 1024, marks=pytest.mark.slow),
                                      pytest.param("default-pk4", 1024,
                                                   marks=pytest.mark.slow)])
def test_top_verilator(name, seq):
    env = {} if seq is None else {"SOFA_TOP_SEQ": str(seq)}
    cfg = EXTRA[name] if name in EXTRA else preset(name)
    run_cocotb("sofa_top", sofa_top, cfg, "tb.cocotb.top.cocotb_top",
               name=name, extra_env=env)
