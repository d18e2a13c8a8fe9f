"""The board top (UART + host link + SOFA core) on Verilator through its serial pins
(cocotb, ``tb/cocotb/hostlink/cocotb_hostlink.py``), against the golden model: the ``tiny``
preset at a UART bit time of 8 cycles in ``make test``; the ``ice40`` board configuration
(marked slow) in ``make test-all``."""

import pytest

from hw.board import SofaBoardTop
from spec.config import preset
from gen.rtlsim.runner import run_cocotb

#: Bit time of the simulated UART in clock cycles (small: the test runs fast).
DIVISOR = 8
#: Inter-byte timeout: 30 bit times (three characters), longer than the host's random gaps.
TIMEOUT = 30 * DIVISOR


def board_top(cfg):
    # room for two K/V rows (the malformed-frame script needs them), small enough to overflow
    max_payload = max(256, 2 + 4 * cfg.d)
    return SofaBoardTop(cfg, divisor=DIVISOR, timeout_cycles=TIMEOUT, clk_hz=100_000_000,
                        iterative_divider=True, max_payload=max_payload)


@pytest.mark.parametrize("name", ["tiny", pytest.param("ice40", marks=pytest.mark.slow)])
def test_hostlink_verilator(name):
    run_cocotb("sofa_board", board_top, preset(name), "tb.cocotb.hostlink.cocotb_hostlink",
               name=name, extra_env={"SOFA_UART_DIVISOR": DIVISOR})
