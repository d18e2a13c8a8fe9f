"""The layering of the code base, checked on its source (see docs/architecture.md).

Layers, from the floor up; a module may import its own layer and those below, never above:

0. ``spec`` — the specification floor: plain Python, no Amaranth, nothing of the project.
1. ``hw`` (the hardware) and the models (bit-exact golden, fast golden, float64 reference,
   cycle model, workloads). Neither imports the other.
2. flows (elaboration, toolchain, synthesis, reports, boards, bench, register exports, the RTL
   simulation drivers) and studies (accuracy, DSE).
3. the host (board link library, simulated board).
4. the command line.

Tests (``tb``) import the product, never the reverse. Nothing imports a ``_private`` name
from another module, and nothing edits ``sys.path`` (the package is installed editable).
"""

import ast
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("spec", "hw", "sim", "gen")
MAX_LINES = 700

#: Module-name prefix -> (layer, group); the longest matching prefix wins.
LAYERS = {
    "spec": (0, "spec"),
    "hw": (1, "hw"),
    "sim": (1, "models"),
    "sim.golden": (1, "models"),
    "sim.fastgolden": (1, "models"),
    "sim.reference": (1, "models"),
    "sim.perf": (1, "models"),
    "sim.workloads": (1, "models"),
    "sim.jobs": (1, "models"),
    "sim.axiperf": (1, "models"),
    "sim.multiperf": (1, "models"),
    "sim.ondemand": (1, "models"),
    "sim.minilm": (2, "studies"),
    "sim.predictors": (2, "studies"),
    "sim.accuracy": (2, "studies"),
    "sim.adaptive": (2, "studies"),
    "sim.quickcheck": (2, "studies"),
    "sim.longstudy": (2, "studies"),
    "sim.xstudy": (2, "studies"),
    "sim.evaluation": (2, "studies"),
    "sim.dse": (2, "studies"),
    "gen": (2, "flows"),
    "gen.host": (3, "host"),
    "gen.cli": (4, "cli"),
    "gen.__main__": (4, "cli"),
}


def layer_of(module):
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    return None


def module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(tops):
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path, module_name(path), ast.parse(path.read_text(), str(path))


def imports(tree, module):
    """``(imported module, names, line)`` of every import; relative imports resolved."""
    package = module.rsplit(".", 1)[0] if "." in module else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, tuple(a.name for a in node.names), node.lineno


def project_module(name, names=()):
    """The project module an import refers to, or None for third-party and stdlib imports."""
    head = name.split(".")[0]
    if head not in PRODUCT + ("tb",):
        return None
    return name


PRODUCT_SOURCES = list(sources(PRODUCT))
TEST_SOURCES = list(sources(("tb",)))


def test_every_product_module_has_a_layer():
    missing = [m for _, m, _ in PRODUCT_SOURCES if layer_of(m) is None]
    assert not missing, f"modules without a layer in tb/test_architecture.py: {missing}"


def test_imports_run_downward():
    bad = []
    for path, module, tree in PRODUCT_SOURCES:
        mine, group = layer_of(module)
        for target, names, line in imports(tree, module):
            if target.split(".")[0] == "amaranth" and group in ("spec", "models"):
                bad.append(f"{module}:{line} imports {target} (no Amaranth in the {group})")
            if project_module(target) is None:
                continue
            where = f"{module}:{line} imports {target}"
            if target.split(".")[0] == "tb":
                bad.append(f"{where} (the product never imports tests)")
                continue
            # `from sim import golden` names a module inside the package.
            targets = [target] + [f"{target}.{n}" for n in names
                                  if layer_of(f"{target}.{n}") != layer_of(target)]
            for t in targets:
                theirs, their_group = layer_of(t)
                if theirs > mine:
                    bad.append(f"{where} (layer {mine} {group} -> layer {theirs} {their_group})")
                elif {group, their_group} == {"hw", "models"}:
                    bad.append(f"{where} (hardware and models do not import each other)")
                elif group == "spec" and their_group != "spec":
                    bad.append(f"{where} (the floor imports nothing of the project)")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


@pytest.mark.parametrize("tops", [PRODUCT_SOURCES, TEST_SOURCES], ids=["product", "tests"])
def test_no_private_imports(tops):
    bad = []
    for path, module, tree in tops:
        aliases = {}
        for target, names, line in imports(tree, module):
            if project_module(target) is None:
                continue
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    bad.append(f"{module}:{line} imports {n} from {target}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if project_module(a.name):
                        aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom) and node.module and \
                    project_module(node.module) and not node.level:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in aliases and node.attr.startswith("_") and \
                    not node.attr.startswith("__"):
                bad.append(f"{module}:{node.lineno} uses {node.value.id}.{node.attr}")
    bad = [b for b in bad if not b.endswith("_")]      # enum sunder names (_value2member_map_)
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("tops", [PRODUCT_SOURCES, TEST_SOURCES], ids=["product", "tests"])
def test_no_sys_path_edits(tops):
    bad = []
    for path, module, tree in tops:
        for node in ast.walk(tree):
            target = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value
            elif isinstance(node, (ast.Assign, ast.AugAssign)):
                for t in getattr(node, "targets", [getattr(node, "target", None)]):
                    target = t.value if isinstance(t, ast.Subscript) else t
            if isinstance(target, ast.Attribute) and target.attr == "path" and \
                    isinstance(target.value, ast.Name) and target.value.id == "sys":
                bad.append(f"{module}:{node.lineno}")
    assert not bad, f"sys.path edited at {bad}; the package is installed editable"


def test_product_modules_are_small():
    big = {m: n for path, m, _ in PRODUCT_SOURCES
           if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not big, f"product modules over {MAX_LINES} lines: {big}"


def test_the_checks_can_fail(tmp_path):
    """The walker sees what it must: an upward import, a private import, a sys.path edit."""
    tree = ast.parse("import sys\nfrom gen.cli import main\nfrom sim.golden import _x\n"
                     "sys.path.insert(0, 'x')\n")
    found = list(imports(tree, "hw.foo"))
    assert ("gen.cli", ("main",), 2) in found and ("sim.golden", ("_x",), 3) in found
    assert layer_of("gen.cli")[0] > layer_of("hw.foo")[0]
    assert layer_of("sim.dse.space") == (2, "studies")
    assert layer_of("sim.perf") == (1, "models")
