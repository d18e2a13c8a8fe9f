"""The generated top level, ``sofa_top``.

Until the integrated core exists, ``sofa_top`` is the largest finished part of the pipeline:
the DLZS predictor. The module name and the file names of ``make verilog`` stay the same when
the core replaces it.
"""

from hw.dlzs import DLZS


__all__ = ["sofa_top"]


def sofa_top(cfg):
    """The top-level component for ``cfg``."""
    return DLZS(cfg)
