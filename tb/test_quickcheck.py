"""The quick accuracy check (``sofa eval --quick``) fails on real bugs.

Each fault is a one-line mutation of the bit-exact pipeline the study runs
(:mod:`sim.fastgolden`, executed from its patched source as a separate module and put in place
of :func:`sim.predictors.sofa_heads`); the audited SOFA run of the quick check
(:func:`sim.evaluation.quick_sofa`) must break at least one limit of
:data:`sim.quickcheck.QUICK_LIMITS`, the one named. The correct model passes every limit."""

import inspect
import types

import pytest
from threadpoolctl import threadpool_limits

import sim.adaptive
import sim.fastgolden
from sim import accuracy as A
from sim import quickcheck as QC
from sim import evaluation as E
from sim import predictors as P
from sim.minilm import MiniLM, load_texts


#: name -> (source lines replaced in sim/fastgolden.py, a limit the fault must break)
FAULTS = {
    "exponent off by one": (
        [("return lut[addr] >> np.minimum(-n, 62)", "return lut[addr] >> np.minimum(-n + 1, 62)")],
        "audit.l_under"),
    "exp table address off by one": (
        [("addr = f >> (cfg.exp_frac - cfg.exp_lut_bits)",
          "addr = np.minimum((f >> (cfg.exp_frac - cfg.exp_lut_bits)) + 1, len(lut) - 1)")],
        "audit.l_over"),
    "rescale skipped on a miss": (
        [("                    raise_max(rs[miss], sp[miss])",
          "                    m[rs[miss]] = sp[miss]")],
        "audit.l_over"),
    "reversed tie order": (
        [("np.where(em, ent, 0) * (Bc + 1) + (Bc - pos)", "np.where(em, ent, 0) * (Bc + 1) + pos")],
        "audit.selection_agrees"),
    "top_k + 1 keys kept": (
        [("cfg, top_k, np.repeat(rad, T), S",
          "cfg, top_k + 1, np.repeat(rad, T), S"),
         ("        kt = top_k\n", "        kt = top_k + 1\n")],
        "audit.kept_over_rule"),
}

#: Faults of the adaptive budget's path, checked on its quick run.
ADAPTIVE_FAULTS = {
    "eligible bins off by one": (
        [("return bins <= b_star[:, None], b_star", "return bins <= b_star[:, None] + 1, b_star")],
        "audit.selection_agrees"),
    "bin weight at the lower edge": (
        [("edge = -(np.arange(nb, dtype=np.int64)[None, :] << shift)",
          "edge = -((np.arange(nb, dtype=np.int64)[None, :] + 1) << shift)")],
        "audit.selection_agrees"),
}


def mutant(replacements):
    """sim.fastgolden with ``replacements`` applied to its source, as a new module."""
    src = inspect.getsource(sim.fastgolden)
    for old, new in replacements:
        assert src.count(old) == 1, f"mutation site not found once: {old!r}"
        src = src.replace(old, new)
    mod = types.ModuleType("sim.fastgolden_mutant")
    exec(compile(src, "<sim/fastgolden.py, mutated>", "exec"), mod.__dict__)
    return mod


@pytest.fixture(scope="module")
def quick():
    with threadpool_limits(limits=1, user_api="blas"):
        model = MiniLM()
        texts = dict(list(load_texts().items())[:A.QUICK["n_texts"]])
        yield model, A.build_dataset(model, texts)


def test_correct_model_passes_the_quick_check(quick):
    with threadpool_limits(limits=1, user_api="blas"):
        entry = E.quick_sofa(*quick)
    assert QC.quick_check(entry) == []
    margins = QC.quick_margins(entry)
    assert margins["audit.fp_err"][2] > 0.002                  # 4x under the limit
    assert margins["cos_mean"][2] > 0.01


@pytest.mark.parametrize("fault", list(FAULTS))
def test_injected_fault_fails_the_quick_check(quick, fault, monkeypatch):
    replacements, must_break = FAULTS[fault]
    monkeypatch.setattr(P, "sofa_heads", mutant(replacements).sofa_heads)
    with threadpool_limits(limits=1, user_api="blas"):
        entry = E.quick_sofa(*quick)
    broken = QC.quick_check(entry)
    assert broken, f"{fault}: the quick check passed"
    assert any(b.startswith(must_break + " ") for b in broken), (fault, broken)
    print(fault, broken)


def test_correct_adaptive_budget_passes_the_quick_check(quick):
    with threadpool_limits(limits=1, user_api="blas"):
        entry = E.quick_sofa(*quick, adaptive=True)
    assert QC.quick_check(entry, QC.QUICK_ADAPTIVE_LIMITS) == []
    assert entry["audit"]["selection_agrees"] == 1.0 and entry["audit"]["fp_err"] < 0.0015


@pytest.mark.parametrize("fault", list(ADAPTIVE_FAULTS))
def test_injected_adaptive_fault_fails_the_quick_check(quick, fault, monkeypatch):
    replacements, must_break = ADAPTIVE_FAULTS[fault]
    monkeypatch.setattr(sim.adaptive, "sofa_heads", mutant(replacements).sofa_heads)
    with threadpool_limits(limits=1, user_api="blas"):
        entry = E.quick_sofa(*quick, adaptive=True)
    broken = QC.quick_check(entry, QC.QUICK_ADAPTIVE_LIMITS)
    assert any(b.startswith(must_break + " ") for b in broken), (fault, broken)
    print(fault, broken)
