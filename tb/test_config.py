"""SofaConfig: presets, JSON round trip, derived widths, and every validation message."""

import json

import numpy as np
import pytest

from spec.config import PRESETS, ConfigError, RunParams, SofaConfig, load_config, preset
from sim.golden import dlzs_scores, exact_scores


@pytest.mark.parametrize("name", PRESETS)
def test_presets_round_trip(name, tmp_path):
    cfg = preset(name)
    assert cfg.name == name
    assert SofaConfig.from_json(cfg.to_json()) == cfg
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg.sidecar()))          # a sidecar is accepted as a config
    assert load_config(path=path) == cfg


def test_json_with_preset_base():
    cfg = SofaConfig.from_json('{"preset": "tiny", "d": 16, "dlzs_lanes": 16}')
    assert (cfg.d, cfg.block_size, cfg.k_max) == (16, preset("tiny").block_size, 2)


#: A valid on-demand K/V config's fields (the test below changes one at a time).
AXP = {"memory": "axi", "kv_source": "project", "d_model": 64}


@pytest.mark.parametrize("changes, message", [
    ({"d": 0}, r"^d = 0 is out of range; allowed 1 … 256$"),
    ({"d": "64"}, r"^d must be an integer 1 … 256, not '64'$"),
    ({"data_width": 1}, r"^data_width = 1 is out of range; allowed 2 … 16$"),
    ({"block_size": 1}, r"^block_size = 1 is out of range"),
    ({"max_seq_len": 1}, r"^max_seq_len = 1 is out of range"),
    ({"sort_width": 65}, r"^sort_width = 65 is out of range"),
    ({"k_max": 0}, r"^k_max = 0 is out of range"),
    ({"q_lanes": 0}, r"^q_lanes = 0 is out of range"),
    ({"mac_lanes": 0}, r"^mac_lanes = 0 is out of range"),
    ({"dlzs_lanes": True}, r"^dlzs_lanes must be an integer 1 … 256, not True$"),
    ({"exp_frac": 17}, r"^exp_frac = 17 is out of range"),
    ({"exp_lut_bits": 0}, r"^exp_lut_bits = 0 is out of range"),
    ({"w_frac": 3}, r"^w_frac = 3 is out of range"),
    ({"c_bits": 33}, r"^c_bits = 33 is out of range"),
    ({"c_frac": 0}, r"^c_frac = 0 is out of range"),
    ({"out_frac": -1}, r"^out_frac = -1 is out of range"),
    ({"counter_width": 4}, r"^counter_width = 4 must be 0 \(no counters\) or 8 … 32$"),
    ({"counter_width": 33}, r"^counter_width = 33 is out of range; allowed 0 … 32$"),
    ({"skid_buffers": 1}, r"^skid_buffers must be true or false, not 1$"),
    ({"dlzs_lanes": 48}, r"^dlzs_lanes = 48 must divide d = 64$"),
    ({"mac_lanes": 24}, r"^mac_lanes = 24 must divide d = 64$"),
    ({"block_size": 16, "max_seq_len": 8},
     r"^block_size = 16 must not exceed max_seq_len = 8$"),
    ({"k_max": 8, "block_size": 4, "max_seq_len": 64},
     r"^k_max = 8 must not exceed block_size = 4$"),
    ({"k_max": 16, "sort_width": 16}, r"^k_max = 16 must be less than sort_width = 16"),
    ({"exp_lut_bits": 9}, r"^exp_lut_bits = 9 must not exceed exp_frac = 8"),
    ({"c_frac": 6}, r"^c_frac = 6 must be at least exp_frac = 8$"),
    ({"w_frac": 4, "max_seq_len": 4096},
     r"^max_seq_len = 4096 exceeds 2\^\(w_frac \+ data_width - 1\) = 2048; raise w_frac$"),
    ({"c_bits": 32, "w_frac": 24, "max_seq_len": 65536, "d": 256, "dlzs_lanes": 256,
      "data_width": 16},
     r"^derived width \w+ needs \d+ bits in an intermediate product, more than the 62"),
    ({"predict_keys": 3}, r"^predict_keys = 3 must be a power of two: 1, 2, 4 or 8$"),
    ({"cores": 0}, r"^cores = 0 is out of range; allowed 1 … 16$"),
    ({"cores": 32}, r"^cores = 32 is out of range; allowed 1 … 16$"),
    ({"cores": 3, "memory": "axi"}, r"^cores = 3 must be a power of two: 1, 2, 4, 8 or 16$"),
    ({"cores": 2}, r'^cores = 2: several cores share an AXI4 master; allowed cores = 1 with '
                   r'memory = "onchip", or memory = "axi"$'),
    ({"cores": 8, "memory": "axi"},
     r"^axi_id_width = 4 must be at least 5 with cores = 8 \(2 bits of stream ID and 3 of core "
     r"index\)$"),
    ({"predict_keys": 0}, r"^predict_keys = 0 is out of range; allowed 1 … 8$"),
    ({"predict_keys": 16}, r"^predict_keys = 16 is out of range; allowed 1 … 8$"),
    ({"predict_keys": 2.0}, r"^predict_keys must be an integer 1 … 8, not 2.0$"),
    ({"predict_keys": 8, "block_size": 4, "k_max": 2},
     r"^predict_keys = 8 must not exceed block_size = 4 \(the keys of a cycle lie in one "
     r"tile\)$"),
    ({"predict_keys": 4, "block_size": 6},
     r"^predict_keys = 4 must divide block_size = 6 \(the keys of a cycle lie in one tile\)$"),
    ({"predict_keys": 4, "max_seq_len": 1002, "block_size": 8},
     r"^predict_keys = 4 must divide max_seq_len = 1002 \(the K buffer has predict_keys "
     r"banks of max_seq_len / predict_keys rows\)$"),
    ({"predict_keys": 2, "memory": "axi", "d": 48, "dlzs_lanes": 16, "mac_lanes": 16,
      "axi_data_width": 512},
     r"^predict_keys = 2 with memory = \"axi\": a K row of d · elem bytes = 48 bytes must "
     r"divide the bus word \(axi_data_width / 8 = 64 bytes\) or be a multiple of it, so that "
     r"K rows are read packed; allowed predict_keys = 1 with this d, data_width and "
     r"axi_data_width$"),
    ({"predict_keys": 2, "memory": "axi", "d": 16, "dlzs_lanes": 16, "mac_lanes": 16,
      "axi_data_width": 512, "block_size": 6, "k_max": 4, "sort_width": 6},
     r"^predict_keys = 2 with memory = \"axi\": block_size = 6 must be a multiple of the 4 K "
     r"rows a bus word holds \(axi_data_width / 8 = 64 bytes, rows of 16 bytes\), so that "
     r"every tile starts on a bus word$"),
    ({"predict_keys": 2, "memory": "axi", "cores": 2},
     r"^predict_keys = 2 with cores = 2: several keys a cycle are built for one "
     r"memory-attached core; allowed cores = 1 with predict_keys > 1$"),
    ({"predict_keys": 2, "adapt_bins": 4},
     r"^predict_keys = 2: the adaptive selection \(adapt_bins = 4\) takes one key per cycle; "
     r"allowed predict_keys = 1 with adapt_bins > 0$"),
    # on-demand K/V (kv_source = "project")
    ({"kv_source": "projected"}, r"^kv_source = 'projected' is unknown; choose one of given, "
                                 r"project$"),
    ({"kv_source": "project", "d_model": 64},
     r'^kv_source = "project" with memory = "onchip": the on-demand K/V mode is built for the '
     r'memory-attached core with int8 tokens and weights, one core and one key a cycle; '
     r'allowed memory = "axi"$'),
    ({**AXP, "data_width": 12}, r'^kv_source = "project" with data_width = 12: .*; allowed '
                                r'data_width = 8$'),
    ({**AXP, "cores": 2}, r'^kv_source = "project" with cores = 2: .*; allowed cores = 1$'),
    ({**AXP, "predict_keys": 2}, r'^kv_source = "project" with predict_keys = 2: .*; allowed '
                                 r'predict_keys = 1$'),
    ({**AXP, "d_model": 0}, r'^d_model = 0 must be even and at least 2 with kv_source = '
                            r'"project" \(two LZ codes a byte\); allowed 2 … 1024$'),
    ({**AXP, "d_model": 63}, r'^d_model = 63 must be even'),
    ({**AXP, "d_model": 2048}, r'^d_model = 2048 is out of range; allowed 0 … 1024$'),
    ({**AXP, "d_model": 36}, r'^khat_lanes = 8 must divide d_model = 36$'),
    ({**AXP, "proj_macs": 24}, r'^proj_macs = 24 must divide d = 64$'),
    ({"d_model": 384}, r'^d_model = 384 is the token width of kv_source = "project"; allowed '
                       r'd_model = 0 with kv_source = "given"$'),
])
def test_validation_messages(changes, message):
    with pytest.raises(ConfigError, match=message):
        SofaConfig(**changes)
    # The same message when the bad value comes from a JSON file.
    if not isinstance(changes.get("d"), str):
        with pytest.raises(ConfigError, match=message):
            SofaConfig.from_json(json.dumps(changes))


def test_predict_keys_default_and_values():
    """predict_keys defaults to 1 in every preset; each allowed value passes where it divides
    the tile and the sequence."""
    assert all(cfg.predict_keys == 1 for cfg in PRESETS.values())
    for value in (1, 2, 4, 8):
        assert preset("default").replace(predict_keys=value).predict_keys == value


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("text, message", [
    ("{", r"^cfg.json: not valid JSON: Expecting property name enclosed in double quotes at "
          r"line 1 column 2$"),
    ("[1]", r"^cfg.json: expected a JSON object of parameters, got a list$"),
    ('{"dd": 3}', r"^cfg.json: unknown parameter 'dd'; known parameters are "),
    ('{"preset": "huge"}', r"^unknown preset 'huge'; known presets are tiny, default, ice40, "
                           r"ecp5, axi, ecp5-axi, axi-project$"),
])
def test_bad_json(text, message):
    with pytest.raises(ConfigError, match=message):
        SofaConfig.from_json(text, source="cfg.json")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^config file .*nope.json: No such file or directory$"):
        load_config(path=tmp_path / "nope.json")


def test_file_name_names_custom_config(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text('{"preset": "tiny", "out_frac": 4}')
    assert load_config(path=path).name == "tiny"      # the preset's name is kept
    path.write_text('{"out_frac": 4}')
    assert load_config(path=path).name == "mine"


@pytest.mark.parametrize("name", PRESETS)
def test_widths_hold_extremes(name):
    """The derived widths hold the extreme values the golden model can produce."""
    cfg = preset(name)
    der = cfg.derived
    lo = -(1 << (cfg.data_width - 1))
    hi = (1 << (cfg.data_width - 1)) - 1
    rows = np.array([[lo] * cfg.d, [hi] * cfg.d, [lo, hi] * (cfg.d // 2) + [lo] * (cfg.d % 2)])
    for Q in rows:
        for K in rows:
            for value in (dlzs_scores(Q[None], K[None], cfg)[0, 0],
                          exact_scores(Q[None], K[None])[0, 0]):
                assert -(1 << (der.ahat_width - 1)) <= value < (1 << (der.ahat_width - 1))
    assert der.radius_inf == (1 << der.radius_width) - 1
    assert der.w_width == cfg.w_frac + 1
    assert der.batch == cfg.sort_width - cfg.k_max


@pytest.mark.parametrize("field, value, message", [
    ("seq_len", 0, r"^seq_len = 0 is out of range for this config; allowed 1 … 1024$"),
    ("seq_len", 1025, r"^seq_len = 1025 is out of range"),
    ("top_k", 5, r"^top_k = 5 is out of range for this config; allowed 1 … 4$"),
    ("radius", -1, r"^radius = -1 is out of range"),
    ("scale_log2e", 1 << 16, r"^scale_log2e = 65536 is out of range"),
    ("top_k", 2.0, r"^top_k must be an integer, not 2.0$"),
    ("dense", 1, r"^dense must be true or false, not 1$"),
])
def test_run_params_validation(field, value, message):
    params = dict(seq_len=64, top_k=2, radius=0, scale_log2e=100, dense=False)
    params[field] = value
    with pytest.raises(ConfigError, match=message):
        RunParams(**params).validate(preset("default"))


def test_scale_from_float():
    cfg = preset("default")
    assert RunParams.scale_from_float(cfg, 0.001) == round(0.001 * 2**20)
    with pytest.raises(ConfigError, match=r"^scale_log2e = 1.0 does not fit c_bits = 16"):
        RunParams.scale_from_float(cfg, 1.0)
