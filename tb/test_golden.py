"""Golden model: the paper's identities, independent re-derivations, exact special cases, and
the error bound against float64 attention, with hypothesis over shapes and values."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from spec.config import ConfigError, RunParams, preset
from sim import golden as G
from sim import reference as R

TINY, DEFAULT = preset("tiny"), preset("default")
ODD = TINY.replace(name="odd", d=6, block_size=5, sort_width=5, k_max=3, max_seq_len=40,
                   dlzs_lanes=3, mac_lanes=2)
CONFIGS = [TINY, ODD, DEFAULT]
HSET = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- DLZS ----------------------------------------------------------------------------------

def test_fig7_identity():
    """Fig. 7: 24·6 with 6 as the log operand -> 24 << 2 = 96 (exact 144, vanilla LZ 64)."""
    assert G.dlzs_term(6, 24, 8) == 96
    assert G.log_shift(6, 8) == (False, 2, True)
    # The convention is asymmetric: the log operand is the first argument.
    assert G.dlzs_term(5, 3, 8) == 12 and G.dlzs_term(3, 5, 8) == 10
    assert G.dlzs_term(-6, 24, 8) == -96 and G.dlzs_term(6, -24, 8) == -96
    assert G.dlzs_term(0, 100, 8) == 0
    assert G.dlzs_term(-128, -128, 8) == 16384


@st.composite
def int_rows(draw, rows, d, width=8):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    elem = st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, -1, 1]))
    return np.array(draw(st.lists(st.lists(elem, min_size=d, max_size=d),
                                  min_size=rows, max_size=rows)), dtype=np.int64)


@HSET
@given(st.data())
def test_dlzs_matches_scalar_definition(data):
    W = data.draw(st.integers(2, 12))
    cfg = TINY.replace(data_width=W, w_frac=max(10, W))
    Q = data.draw(int_rows(data.draw(st.integers(1, 3)), cfg.d, W))
    K = data.draw(int_rows(data.draw(st.integers(1, 5)), cfg.d, W))
    got = G.dlzs_scores(Q, K, cfg)
    for i in range(len(Q)):
        for j in range(len(K)):
            # Independent scalar form: sign(q)·k·2^(bit_length(|q|)-1).
            want = sum(int(np.sign(q)) * int(k) * (1 << (abs(int(q)).bit_length() - 1))
                       for q, k in zip(Q[i], K[j]) if q != 0)
            assert got[i, j] == want


# -- SADS ----------------------------------------------------------------------------------

def brute_selection(ahat, cfg, top_k, radius):
    """SADS from its definition with no streaming state: run_max before a batch is the max of
    all earlier keys of the row; the selection is the top_k unblocked keys of each tile."""
    der = cfg.derived
    S = len(ahat)
    out = []
    for a, b in G.tile_ranges(S, cfg.block_size):
        alive, blocked = [], 0
        for b0 in range(a, b, der.batch):
            for j in range(b0, min(b0 + der.batch, b)):
                if (radius != der.radius_inf and b0 > 0
                        and ahat[j] < ahat[:b0].max() - radius):
                    blocked += 1
                else:
                    alive.append(j)
        alive.sort(key=lambda j: (-ahat[j], j))
        out.append((alive[:top_k], blocked))
    return out


@st.composite
def sads_case(draw):
    cfg = draw(st.sampled_from(CONFIGS))
    S = draw(st.integers(1, min(cfg.max_seq_len, 3 * cfg.block_size + 3)))
    small = draw(st.booleans())                       # small range: many ties
    span = 3 if small else 1 << (cfg.derived.ahat_width - 2)
    ahat = np.array(draw(st.lists(st.integers(-span, span), min_size=S, max_size=S)))
    top_k = draw(st.integers(1, cfg.k_max))
    inf = cfg.derived.radius_inf
    radius = draw(st.one_of(st.just(inf), st.just(0), st.integers(0, 2 * span + 1)))
    return cfg, ahat, top_k, radius


@HSET
@given(sads_case())
def test_sads_matches_definition(case):
    cfg, ahat, top_k, radius = case
    tiles = G.sads_row(ahat, cfg, top_k=top_k, radius=radius)
    brute = brute_selection(ahat, cfg, top_k, radius)
    assert len(tiles) == len(brute)
    for t, (sel, blocked) in zip(tiles, brute):
        assert t.indices == sel
        assert t.values == [int(ahat[j]) for j in sel]
        assert t.blocked_radius == blocked
        # Every key of the tile is accounted for exactly once.
        n = len(range(*G.tile_ranges(len(ahat), cfg.block_size)[tiles.index(t)]))
        assert t.entered + t.blocked_radius + t.blocked_full == n
        assert t.steps <= -(-n // cfg.derived.batch)
        if radius == cfg.derived.radius_inf:
            assert t.steps == -(-n // cfg.derived.batch) or t.blocked_full > 0


def test_sads_ties_at_kth_value():
    """Equal Â across the k-th place: the lower index wins, in every batch position."""
    cfg = TINY                       # Bc = 8, batch = 6, k_max = 2
    ahat = np.array([1, 5, 3, 5, 5, 0, 5, 2])
    t, = G.sads_row(ahat, cfg, top_k=2, radius=cfg.derived.radius_inf)
    assert t.indices == [1, 3] and t.values == [5, 5]
    # Key 6 (second batch) ties with the survivors and is blocked as a later equal key.
    assert t.blocked_full == 2       # keys 6 (=5) and 7 (=2) cannot beat survivor value 5
    t, = G.sads_row(ahat, cfg, top_k=1, radius=cfg.derived.radius_inf)
    assert t.indices == [1]


def test_sads_radius_blocks_and_first_batch_is_free():
    cfg = TINY
    ahat = np.array([100, 0, 0, 0, 0, 0, 99, 40] + [50, 90, 1, 1, 1, 1, 10, 95])
    tiles = G.sads_row(ahat, cfg, top_k=2, radius=20)
    # Tile 0: batch 0 (keys 0-5) enters freely; batch 1: 40 < 100-20 is blocked, 99 enters.
    assert tiles[0].indices == [0, 6] and tiles[0].blocked_radius == 1
    # Tile 1: run_max = 100 carries over; only 90 and 95 survive the radius.
    assert tiles[1].indices == [15, 9] and tiles[1].blocked_radius == 6
    # R = 0 keeps only values equal to the running max.
    assert (tiles[0].steps, tiles[1].steps) == (2, 2)
    tiles = G.sads_row(ahat, cfg, top_k=2, radius=0)
    assert tiles[1].indices == [] and tiles[1].steps == 0     # every batch skipped


# -- exp2, divide --------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [TINY, DEFAULT, TINY.replace(exp_lut_bits=3)], ids=str)
def test_exp2_fx(cfg):
    lut = G.exp2_lut(cfg)
    assert len(lut) == 1 << cfg.exp_lut_bits and lut[0] == 1 << cfg.w_frac
    assert all(a <= b for a, b in zip(lut, lut[1:])) and lut[-1] < 1 << (cfg.w_frac + 1)
    xs = range(-(cfg.w_frac + 2) << cfg.exp_frac, 1)
    ws = [G.exp2_fx(x, cfg, lut) for x in xs]
    assert all(a <= b for a, b in zip(ws, ws[1:])), "exp2_fx must be monotonic"
    assert ws[-1] == 1 << cfg.w_frac
    assert ws[0] == 0                                   # saturated below -(w_frac+1)
    for x, w in zip(xs, ws):
        exact = 2.0 ** (x / (1 << cfg.exp_frac)) * (1 << cfg.w_frac)
        # Address truncation loses < 2^-exp_lut_bits of exponent; rounding and shift < 1.5 ulp.
        assert exact * 2.0 ** -(2.0 ** -cfg.exp_lut_bits) - 1.5 <= w <= exact + 0.5
    with pytest.raises(ValueError, match="positive"):
        G.exp2_fx(1, cfg)


@HSET
@given(st.integers(-(1 << 40), 1 << 40), st.integers(1, 1 << 30))
def test_div_round_half_away(num, den):
    q = G.div_round_half_away(num, den)
    exact = Fraction(num, den)
    assert abs(exact - q) <= Fraction(1, 2)
    if abs(exact - q) == Fraction(1, 2):                # a tie went away from zero
        assert abs(q) > abs(exact)


def test_div_edges():
    assert [G.div_round_half_away(n, 2) for n in (-5, -3, -1, 1, 3, 5)] == [-3, -2, -1, 1, 2, 3]
    assert G.div_round_half_away(0, 7) == 0
    with pytest.raises(ValueError):
        G.div_round_half_away(1, 0)


# -- SU-FA and the whole pipeline ------------------------------------------------------------

def run(cfg, Q, K, V, *, top_k=None, radius=None, c=0.01, dense=False, seq_len=None):
    params = RunParams(seq_len=len(K) if seq_len is None else seq_len,
                       top_k=cfg.k_max if top_k is None else top_k,
                       radius=cfg.derived.radius_inf if radius is None else radius,
                       scale_log2e=RunParams.scale_from_float(cfg, c), dense=dense)
    return G.sofa_attention(Q, K, V, cfg, params), params


def rand(rng, shape, cfg):
    return rng.integers(-(1 << (cfg.data_width - 1)), 1 << (cfg.data_width - 1), size=shape)


def test_equal_scores_give_exact_mean():
    """scale 0 makes every weight exactly 1.0: O is the rounded mean of the visited V rows."""
    rng = np.random.default_rng(0)
    cfg = DEFAULT
    Q, K, V = rand(rng, (3, 64), cfg), rand(rng, (40, 64), cfg), rand(rng, (40, 64), cfg)
    for dense in (True, False):
        res, _ = run(cfg, Q, K, V, top_k=3, c=0.0, dense=dense)
        for i, row in enumerate(res.rows):
            vs = V[row.order].sum(axis=0)
            want = [G.div_round_half_away(int(v) << cfg.out_frac, len(row.order)) for v in vs]
            assert list(res.out[i]) == want


def test_all_zero_query_rows():
    rng = np.random.default_rng(1)
    cfg = TINY
    Q = np.zeros((2, cfg.d), dtype=np.int64)
    K, V = rand(rng, (20, cfg.d), cfg), rand(rng, (20, cfg.d), cfg)
    res, _ = run(cfg, Q, K, V, top_k=2, radius=0)
    assert not res.ahat.any() and not res.scores.any()
    # All Â tie: the first two keys of each tile, in index order.
    assert [t.indices for t in res.selection[0]] == [[0, 1], [8, 9], [16, 17]]


def sorted_problem(cfg, S, rng):
    """Q = e_0 makes Â = s = K[:, 0]; K[:, 0] strictly decreasing within each tile makes the
    predicted order equal the natural order."""
    Q = np.zeros((1, cfg.d), dtype=np.int64)
    Q[0, 0] = 1
    K = rand(rng, (S, cfg.d), cfg)
    for a, b in G.tile_ranges(S, cfg.block_size):
        K[a:b, 0] = np.sort(rng.choice(np.arange(-100, 100), size=b - a, replace=False))[::-1]
    return Q, K, rand(rng, (S, cfg.d), cfg)


def test_all_keys_sparse_equals_dense_when_orders_agree():
    """top_k = Bc, R = ∞: the sparse path selects every key; with the predicted order equal to
    the natural order it is bit for bit dense mode (the same operations in the same order)."""
    cfg = TINY.replace(k_max=4, block_size=4, sort_width=8)
    rng = np.random.default_rng(2)
    Q, K, V = sorted_problem(cfg, 26, rng)
    sparse, _ = run(cfg, Q, K, V, top_k=cfg.block_size, c=0.05)
    dense, _ = run(cfg, Q, K, V, dense=True, c=0.05)
    assert sparse.rows[0].order == list(range(26)) == dense.rows[0].order
    assert np.array_equal(sparse.out, dense.out)
    assert (sparse.rows[0].rescales, sparse.rows[0].misses) == \
        (dense.rows[0].rescales, dense.rows[0].misses)


@st.composite
def attention_case(draw):
    cfg = draw(st.sampled_from(CONFIGS))
    S = draw(st.integers(1, min(cfg.max_seq_len, 4 * cfg.block_size + 1)))
    T = draw(st.integers(1, 3))
    W = cfg.data_width
    Q = draw(int_rows(T, cfg.d, W))
    K = draw(int_rows(S, cfg.d, W))
    V = draw(int_rows(S, cfg.d, W))
    if draw(st.booleans()):
        Q[0] = 0                                          # an all-zero row
    dense = draw(st.booleans())
    top_k = draw(st.integers(1, cfg.k_max))
    inf = cfg.derived.radius_inf
    radius = draw(st.one_of(st.just(inf), st.integers(0, 1 << (cfg.derived.ahat_width - 1))))
    c = draw(st.sampled_from([0.0, 1e-4, 2e-3, 0.01, 0.05]))
    return cfg, Q, K, V, dense, top_k, radius, c


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attention_case())
def test_output_within_bound_of_float64(case):
    """Dense mode against dense float64 softmax, sparse mode against float64 softmax over the
    same selected set: every element within :func:`sim.reference.error_bound`."""
    cfg, Q, K, V, dense, top_k, radius, c = case
    res, params = run(cfg, Q, K, V, top_k=top_k, radius=radius, c=c, dense=dense)
    cq = R.scale_of(cfg, params.scale_log2e)
    mask = R.selection_mask(res, len(K))
    if dense:
        assert mask.all()
    ref, bound = R.error_bound(cfg, res.scores, V, cq, mask, [r.rescales for r in res.rows])
    err = np.abs(res.out / (1 << cfg.out_frac) - ref)
    assert np.all(err <= bound), float((err - bound).max())
    # Every row visits at least one key, so l > 0 and the divide is defined.
    assert all(r.l > 0 for r in res.rows)
    # Values fit the derived widths.
    assert np.abs(res.out).max() < 1 << (cfg.derived.out_width - 1)
    assert all(r.l < 1 << cfg.derived.l_width for r in res.rows)


def test_error_metrics_default_random():
    """The measured error of the default datapath on random data (reported, and bounded)."""
    rng = np.random.default_rng(3)
    cfg = DEFAULT
    Q, K, V = rand(rng, (16, 64), cfg), rand(rng, (256, 64), cfg), rand(rng, (256, 64), cfg)
    c = 1.4427 / 8 / 3600 * 8        # logits spread over a few units, like real attention
    res, params = run(cfg, Q, K, V, dense=True, c=c)
    cq = R.scale_of(cfg, params.scale_log2e)
    m = R.error_metrics(res.out / (1 << cfg.out_frac), R.dense_attention(Q, K, V, cq))
    # 0.27 % relative weight error (2^-8 exponent floor) on V in [-128, 127]:
    assert m["max_abs"] < 0.5 and m["mean_abs"] < 0.1 and m["rel"] < 5e-3, m


def test_max_assurance_and_miss_counting():
    """Ascending visiting order misses on every key after the first two of a tile."""
    cfg = TINY.replace(k_max=4, block_size=4, sort_width=8)
    q = np.zeros(cfg.d, dtype=np.int64)
    q[0] = 1
    K = np.zeros((4, cfg.d), dtype=np.int64)
    K[:, 0] = [1, 2, 3, 4]
    V = np.ones((4, cfg.d), dtype=np.int64)
    tr = G.sufa_row(q, K, V, [[0, 1, 2, 3]], 1 << 18, cfg)
    assert (tr.misses, tr.rescales, tr.m) == (2, 2, 4)
    tr = G.sufa_row(q, K, V, [[3, 2, 1, 0]], 1 << 18, cfg)
    assert (tr.misses, tr.rescales, tr.m) == (0, 0, 4)
    # Max assurance from the second key: no miss, but l is rescaled at the next tile start.
    tr = G.sufa_row(q, K, V, [[1, 3], [2, 0]], 1 << 18, cfg)
    assert (tr.misses, tr.rescales) == (0, 0)
    tr = G.sufa_row(q, K, V, [[0, 1], [3, 2]], 1 << 18, cfg)
    assert (tr.misses, tr.rescales) == (0, 1)


def test_short_last_tile():
    rng = np.random.default_rng(4)
    cfg = TINY
    Q, K, V = rand(rng, (2, 8), cfg), rand(rng, (13, 8), cfg), rand(rng, (13, 8), cfg)
    res, _ = run(cfg, Q, K, V, top_k=2)
    assert [len(t.indices) for t in res.selection[0]] == [2, 2]
    assert all(8 <= j < 13 for j in res.selection[0][1].indices)
    assert res.selection[0][1].steps == 1                 # 5 keys: one short batch


@pytest.mark.parametrize("bad, message", [
    (dict(Q=np.zeros((2, 5))), r"^Q must have shape \[T, 8\] \(d = 8\), got \[2, 5\]$"),
    (dict(K=np.zeros((3, 8))), r"^K has 3 rows but seq_len = 10$"),
    (dict(V=np.full((10, 8), 128)), r"^V holds 128, outside the signed 8-bit range -128 … 127$"),
    (dict(Q=np.full((1, 8), 0.5)), r"^Q must hold integers \(quantise first\)$"),
    (dict(Q=np.zeros((0, 8))), r"^Q has no rows$"),
])
def test_bad_inputs(bad, message):
    arrays = dict(Q=np.zeros((2, 8)), K=np.zeros((10, 8)), V=np.zeros((10, 8)))
    arrays.update(bad)
    params = RunParams(seq_len=10, top_k=1, radius=0, scale_log2e=0)
    with pytest.raises(ConfigError, match=message):
        G.sofa_attention(arrays["Q"], arrays["K"], arrays["V"], TINY, params)
