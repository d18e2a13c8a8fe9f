"""Hypothesis settings of the property tests: few examples in ``make test``, many in
``make fuzz``.

``make fuzz`` sets ``SOFA_FUZZ_EXAMPLES`` (1000 by default) and runs the tests marked
``fuzz``; a test takes that many examples times its ``share`` (the expensive ones, each example
a simulation, take a tenth), never fewer than its ``make test`` count. Without the variable the
examples are derandomised, so ``make test`` is repeatable; with it each run draws new ones.
"""

import os

from hypothesis import HealthCheck, settings

__all__ = ["ENV", "examples", "fuzz_settings", "fuzzing"]

#: The environment variable ``make fuzz`` sets.
ENV = "SOFA_FUZZ_EXAMPLES"


def fuzzing():
    """The examples ``make fuzz`` asks for, or None under ``make test``."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{ENV} = {text!r} is not a number of examples") from None
    if n < 1:
        raise ValueError(f"{ENV} = {n} must be at least 1")
    return n


def examples(fast, share=1.0):
    """Examples of a test: ``fast`` in ``make test``; in ``make fuzz`` ``SOFA_FUZZ_EXAMPLES ×
    share``, at least ``fast``."""
    n = fuzzing()
    return fast if n is None else max(fast, round(n * share))


def fuzz_settings(fast, share=1.0):
    """:func:`hypothesis.settings` for a property test (no deadline: simulations vary; no
    example database: nothing is written into the tree)."""
    return settings(max_examples=examples(fast, share), deadline=None, database=None,
                    derandomize=fuzzing() is None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])
