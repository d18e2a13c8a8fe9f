"""The config matrices of the unit tests, shared by the Amaranth-simulator test of a unit and
its Verilator test (which builds one Verilog per entry, in ``build/cocotb/<unit>/<name>``)."""

from spec.config import preset


__all__ = ["DLZS_CONFIGS", "SADS_CONFIGS", "SUFA_CONFIGS"]

_TINY = preset("tiny")

DLZS_CONFIGS = {
    "tiny": _TINY,
    # Non-power-of-two lanes (tree with an odd level) and three chunks per key.
    "odd": _TINY.replace(name="odd", d=12, dlzs_lanes=3, max_seq_len=40, block_size=5,
                         sort_width=5, k_max=3, mac_lanes=4),
    "narrow": _TINY.replace(name="narrow", d=6, data_width=5, dlzs_lanes=6, mac_lanes=3),
    # Eight chunks per key (the ice40 preset before it shrank to fit the UP5K).
    "chunks8": preset("ice40").replace(name="chunks8", d=32, block_size=16, sort_width=8,
                                       k_max=4, mac_lanes=2, dlzs_lanes=4),
}

SADS_CONFIGS = {
    "tiny": _TINY,
    "default": preset("default"),
    # block_size 5, sort_width 5, k_max 3: batches of 2, a padded 5-input network.
    "odd": _TINY.replace(name="odd", d=6, block_size=5, sort_width=5, k_max=3, max_seq_len=40,
                         dlzs_lanes=3, mac_lanes=2),
}

SUFA_CONFIGS = {
    "tiny": _TINY,
    # One chunk per key.
    "wide": _TINY.replace(name="wide", mac_lanes=8),
    # d = 6: three chunks of two lanes, tiles of 5, plain stage registers.
    "odd": _TINY.replace(name="odd", d=6, block_size=5, sort_width=5, k_max=3, max_seq_len=40,
                         dlzs_lanes=3, mac_lanes=2, skid_buffers=False),
    "default": preset("default"),
}
