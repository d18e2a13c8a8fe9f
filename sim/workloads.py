"""Stimulus with attention structure, shared by the benchmark, the host self-test and the tests.

Uniform random Q and K give flat attention, where keeping a few keys per tile says little about
real workloads. :func:`structured` plants, for every query, a few keys close to that query, so
each row has some dominant keys, as trained attention has. Plain numpy: the same arrays feed
the golden model, the cycle model, the Verilator testbenches and a real board.
"""

import numpy as np


__all__ = ["structured"]


def structured(cfg, rng, T, S, *, dominant=3, key_range=64, pull=2, noise=6):
    """Random int8 ``Q``, ``K``, ``V`` with ``dominant`` keys per query close to that query.

    The draws, in order: ``Q`` (``T × d``) uniform in [-128, 127]; ``K`` (``S × d``) uniform in
    [-key_range, key_range - 1]; ``V`` (``S × d``) uniform in [-128, 127]; then, query by query,
    ``min(dominant, S)`` distinct keys ``j`` are replaced by ``Q[i] // pull`` plus uniform noise
    in [-noise, noise]. Everything is finally saturated to the signed ``cfg.data_width`` range
    (a no-op at 8 bits). The order of the draws is part of the contract: the benchmark's figures
    and the tests' cases are reproducible from ``rng``'s seed.

    Parameters
    ----------
    cfg : SofaConfig
        Only ``d`` and ``data_width`` are read.
    rng : numpy.random.Generator
        Consumed as described above.
    T, S : int
        Queries and keys.
    dominant : int
        Planted keys per query; a later query may overwrite an earlier query's key.
    key_range : int
        Bound of the background keys: a smaller one than the queries' makes the planted keys
        stand out.
    pull : int
        Divisor of the query in a planted key (1: a near-copy; 2: half the query, so the
        planted key stays within ``key_range`` in magnitude).
    noise : int
        Bound of the noise added to a planted key.

    Returns
    -------
    tuple of numpy.ndarray
        ``(Q, K, V)``, int64.
    """
    Q = rng.integers(-128, 128, size=(T, cfg.d))
    K = rng.integers(-key_range, key_range, size=(S, cfg.d))
    V = rng.integers(-128, 128, size=(S, cfg.d))
    for i in range(T):
        for j in rng.choice(S, size=min(dominant, S), replace=False):
            K[j] = Q[i] // pull + rng.integers(-noise, noise + 1, size=cfg.d)
    lo, hi = -(1 << (cfg.data_width - 1)), (1 << (cfg.data_width - 1)) - 1
    return tuple(np.clip(a, lo, hi) for a in (Q, K, V))
