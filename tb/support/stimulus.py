"""Stimulus of the core's tests in the Amaranth simulator (``tb/test_top.py``) and of the host
link's (``tb/test_hostlink.py``)."""

import numpy as np

from sim.workloads import structured


__all__ = ["peaked_case"]


def peaked_case(cfg, seed, T=3, S=None):
    """``(Q, K, V)``: random int8 over the whole range, two near-copies of each query among the
    keys, so the selection matters (:func:`sim.workloads.structured` with a fresh generator of
    ``seed``). ``S`` defaults to ``max_seq_len``."""
    rng = np.random.default_rng(seed)
    return structured(cfg, rng, T, S or cfg.max_seq_len, dominant=2, key_range=128, pull=1,
                      noise=8)
