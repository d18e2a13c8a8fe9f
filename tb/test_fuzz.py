"""Property tests (hypothesis) of everything a user or a host can hand the generator:

* config documents (random structures, types and values, and mutated files) into
  :mod:`spec.config`: a valid :class:`SofaConfig` or a one-line :class:`ConfigError`, never
  another exception;
* DSE plans (a valid plan with random fields replaced or removed) into
  :func:`sim.dse.load_plan`, likewise;
* command lines of every ``sofa`` subcommand (random options and values) through
  :func:`gen.cli.validate`, which parses and checks without running: a valid parse, a
  one-line ``ConfigError`` or argparse's exit status 2, never a traceback, nothing written;
* the register port of :class:`hw.top.SofaCore` in the Amaranth simulator: random writes and
  reads at random addresses against a Python model of the rules of :mod:`spec.regmap` (legal
  ranges, the error flag and ERROR_ADDR, RADIUS_HI staging, read values).

``make test`` runs a few derandomised examples of each; ``make fuzz`` many more
(:mod:`tb.support.fuzz`).
"""

import dataclasses
import json
import math
import random
import string

import pytest
from amaranth.sim import Simulator
from hypothesis import given, strategies as st

from gen.cli import COMMANDS, command_parser, validate
from hw.top import SofaCore
from sim.dse.plan import MODEL_SHAPE, load_plan
from sim.minilm import ModelMissing
from spec.config import PRESETS, RANGES, SIDECAR_KEYS, ConfigError, SofaConfig, load_config, preset
from spec.validate import one_line
from spec.regmap import COUNTER_BASE, N_REGS, WORD_BITS, Reg, register, registers
from tb.support.fuzz import fuzz_settings
from tb.support.plans import valid_plan
from tb.support.regmodel import RegisterModel

pytestmark = pytest.mark.fuzz

FIELDS = [f.name for f in dataclasses.fields(SofaConfig)]


def _one_line(e):
    message = str(e)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    return message


# -- JSON values ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.integers(-300, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["tiny", "default", "ice40", "ecp5", "axi", "onchip", "inf", "nan", ""]))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


def field_values(name):
    """Values for one config field: near its range, of the wrong type, or anything."""
    if name in RANGES:
        lo, hi = RANGES[name]
        near = st.sampled_from(sorted({lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, 2 * hi, 0, -1}))
        return st.one_of(near, st.integers(lo, hi), st.integers(lo, hi).map(float),
                         json_values)
    return json_values


keys = st.one_of(st.sampled_from(FIELDS + ["preset", "config", "derived", "bogus"]),
                 st.text(max_size=8))


@st.composite
def config_docs(draw):
    """A config document: a preset's parameters, ``{"preset": NAME}`` or nothing, with a few
    fields changed, added or removed; sometimes inside a sidecar, sometimes any JSON value."""
    doc = dict(draw(st.sampled_from(
        [{}] + [{"preset": n} for n in PRESETS] + [c.to_dict() for c in PRESETS.values()])))
    for _ in range(draw(st.integers(0, 4))):
        key = draw(keys)
        if draw(st.integers(0, 3)):
            doc[key] = draw(field_values(key))
        else:
            doc.pop(key, None)
    shape = draw(st.sampled_from(["plain", "plain", "sidecar", "any"]))
    if shape == "sidecar":
        extra = draw(st.dictionaries(st.sampled_from(sorted(SIDECAR_KEYS) + ["bogus"]),
                                     json_values, max_size=3))
        doc = {**extra, "config": doc}
    elif shape == "any":
        doc = draw(json_values)
    return doc


def _check_config(load):
    try:
        cfg = load()
    except ConfigError as e:
        _one_line(e)
        return None
    assert isinstance(cfg, SofaConfig)
    again = SofaConfig.from_json(cfg.to_json())          # a valid config round-trips
    assert again == cfg and again.derived == cfg.derived
    return cfg


@fuzz_settings(200)
@given(doc=config_docs())
def test_config_documents(doc):
    _check_config(lambda: SofaConfig.from_json(json.dumps(doc), source="fuzz"))


@st.composite
def config_files(draw):
    """Bytes of a config file: a document, a mutated document, or random bytes."""
    kind = draw(st.sampled_from(["doc", "mutated", "mutated", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    data = bytearray(json.dumps(draw(config_docs())).encode())
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data)))
            op = draw(st.sampled_from(["insert", "delete", "replace"]))
            byte = draw(st.sampled_from(list(b'{}[]",:0123456789.-eE \\nN') + [0, 0xff, 0xc3]))
            if op == "insert":
                data.insert(i, byte)
            elif i < len(data):
                if op == "delete":
                    del data[i]
                else:
                    data[i] = byte
    return bytes(data)


@fuzz_settings(100)
@given(data=config_files())
def test_config_files(tmp_path, data):
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    cfg = _check_config(lambda: load_config(path=path))
    if cfg is not None and "name" not in json.loads(data.decode()).get("config", {}):
        assert cfg.name  # named after a preset or the file


# -- plans ---------------------------------------------------------------------------------------

def _paths(value, prefix=()):
    """Every path into a JSON document."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


#: The plan once, and its paths (the mutations pick among them).
PLAN = valid_plan()
PLAN_PATHS = [p for p in _paths(PLAN) if p]


@st.composite
def plans(draw):
    doc = json.loads(json.dumps(PLAN))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PLAN_PATHS))
        *head, last = path
        node = doc
        try:
            for k in head:
                node = node[k]
            node[last]
        except (KeyError, IndexError, TypeError):
            continue                                   # an earlier change removed it
        op = draw(st.sampled_from(["set", "set", "near", "delete"]))
        if op == "delete":
            if isinstance(node, list):
                node.pop(last)
            else:
                del node[last]
        elif op == "near" and isinstance(node[last], (int, float)) \
                and not isinstance(node[last], bool):
            node[last] = draw(st.sampled_from([node[last] - 1, node[last] + 1, -node[last],
                                               node[last] * 1000, node[last] + 0.5]))
        else:
            node[last] = draw(json_values)
    return doc


@fuzz_settings(60)
@given(doc=plans())
def test_plan_loading(tmp_path, doc):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    try:
        plan = load_plan(path)
    except ConfigError as e:
        assert str(path) in _one_line(e)
        return
    assert len(plan["plan"]) == MODEL_SHAPE[0]
    for layer in plan["layers"]:
        assert len(layer["setting"].heads) == MODEL_SHAPE[1]
        for h, hs in enumerate(layer["setting"].heads):
            assert isinstance(hs.top_k, int) and 1 <= hs.top_k <= layer["core"].k_max
            assert hs.radius_nat >= 0 and not math.isnan(hs.radius_nat)
            for regs in layer["registers"].values():
                assert regs[h].top_k == hs.top_k


# -- command lines -------------------------------------------------------------------------------

def _options(command):
    """``{option string: takes a value}`` of a subcommand, and its sub-subcommands' words."""
    parser = command_parser(command)
    options, words = {}, []
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.option_strings:
                for o in action.option_strings:
                    if o not in ("-h", "--help"):
                        options[o] = action.nargs != 0
            elif action.choices and isinstance(action.choices, dict):     # subcommands
                words += list(action.choices)
                stack += list(action.choices.values())
    return options, words


OPTIONS = {c: _options(c) for c in COMMANDS}
VALUES = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "2", "4", "8", "16", "32", "64", "256", "1024",
                     "65536", "nan", "inf", "-inf", "1e309", "1.5", "0.5", "75%", "0x10",
                     "9" * 60, "tiny", "default", "ice40", "ecp5", "axi", "nope", "top",
                     "dlzs", "sads", "sufa", "icebreaker", "ulx3s-85f", "ulx3s-25f",
                     "ecp5-85f", "ice40-up5k", "tiny:ice40-up5k", "axi:ecp5-85f",
                     "sqlite:///{tmp}/s.db", "{tmp}/afile", "{tmp}/adir", "{tmp}/out",
                     "{tmp}/cfg.json", "{tmp}/bad.json", "/dev/zero", "a\nb", "é", "\udcff"]),
    st.integers(-(1 << 40), 1 << 40).map(str), st.floats().map(repr),
    st.text(string.printable, max_size=10))


@st.composite
def command_lines(draw, command):
    options, words = OPTIONS[command]
    argv = [command]
    if command == "bitstream" and draw(st.integers(0, 4)):
        argv.append(draw(st.sampled_from(["icebreaker", "ulx3s-85f", "ulx3s-25f", "nope"])))
    tokens = []
    for _ in range(draw(st.integers(0, 5))):
        option = draw(st.sampled_from(sorted(options)))
        tokens.append(option)
        if options[option] and draw(st.integers(0, 7)):
            tokens.append(draw(VALUES))
    if words:
        at = draw(st.integers(0, len(tokens)))
        extra = [draw(st.sampled_from(words))] if draw(st.integers(0, 5)) else []
        extra += [draw(VALUES) for _ in range(draw(st.integers(0, 2)))]
        tokens[at:at] = extra
    if draw(st.integers(0, 9)) == 0:
        tokens.insert(draw(st.integers(0, len(tokens))), draw(VALUES))
    return argv + tokens


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def cli_dir(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "cfg.json").write_text('{"preset": "tiny", "out_frac": 4}')
    (tmp_path / "bad.json").write_text('{"preset": ["tiny"]}')
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS)
def test_command_lines(cli_dir, capsys, command):
    before = _tree(cli_dir)

    @fuzz_settings(25, share=0.2)
    @given(argv=command_lines(command))
    def check(argv):
        argv = [a.replace("{tmp}", str(cli_dir)) for a in argv]
        try:
            validate(argv)
        except ConfigError as e:
            assert str(e) and "\n" not in one_line(e)         # as `sofa` prints it
        except ModelMissing:
            pass                              # the environment, not the input
        except SystemExit as e:
            err = capsys.readouterr().err
            assert e.code == 2, (e.code, err)
            assert err.startswith("error: ") and err.count("\n") == 1, err
        assert _tree(cli_dir) == before, argv

    check()


# -- the register port -------------------------------------------------------------------------

#: tiny (20-bit radius, counters) and a 16-bit tiny (36-bit radius: RADIUS_HI stages the top
#: four bits; no counters, which then read 0).
PORT_CFGS = {"tiny": preset("tiny"),
             "tiny16": preset("tiny").replace(name="tiny16", data_width=16, counter_width=0)}
ADDR_BITS = (N_REGS - 1).bit_length()
_CORES = {}


def _core(cfg):
    if cfg.name not in _CORES:
        _CORES[cfg.name] = SofaCore(cfg)
    return _CORES[cfg.name]


def _interesting_values(cfg):
    out = {0, 1, 2, 3, (1 << WORD_BITS) - 1, 1 << 31}
    for r in registers(cfg):
        if r.legal:
            lo, hi = r.legal(cfg)
            for v in (lo - 1, lo, hi, hi + 1, hi >> WORD_BITS, (hi >> WORD_BITS) + 1):
                out.add(v & ((1 << WORD_BITS) - 1))
    return sorted(out)


def port_ops(cfg):
    addrs = st.one_of(st.sampled_from([r.address for r in registers(cfg)] + [Reg.STATUS,
                                                                              COUNTER_BASE]),
                      st.integers(0, (1 << ADDR_BITS) - 1))
    values = st.one_of(st.sampled_from(_interesting_values(cfg)),
                       st.integers(0, (1 << WORD_BITS) - 1))
    op = st.one_of(st.tuples(st.just("w"), addrs, values), st.tuples(st.just("r"), addrs))
    return st.lists(op, min_size=1, max_size=40)


def run_port(cfg, ops):
    """Apply ``ops`` (("w", addr, value) / ("r", addr)) to the core and to the model, then
    read every address; returns the mismatches."""
    dut = _core(cfg)
    model = RegisterModel(cfg)
    ops = list(ops) + [("r", a) for a in range(1 << ADDR_BITS)]
    bad = []

    async def bench(ctx):
        cycles = 0
        for op in ops:
            ctx.set(dut.reg_addr, op[1])
            if op[0] == "w":
                ctx.set(dut.reg_wdata, op[2])
                ctx.set(dut.reg_we, 1)
                await ctx.tick()
                ctx.set(dut.reg_we, 0)
                model.write(op[1], op[2])
            else:
                await ctx.tick()
                got, want = ctx.get(dut.reg_rdata), model.read(op[1])
                if want is None:                          # cycles: it moves
                    want = got if got <= cycles + 1 else -1
                if got != want:
                    bad.append((op, got, want))
            cycles += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return bad


@pytest.mark.parametrize("name", PORT_CFGS)
def test_register_port(name):
    cfg = PORT_CFGS[name]

    @fuzz_settings(6, share=0.1)
    @given(ops=port_ops(cfg))
    def check(ops):
        assert run_port(cfg, ops) == []

    check()


@pytest.mark.parametrize("name", PORT_CFGS)
def test_register_port_long_run(name):
    """One long random sequence (cheaper per operation than many short examples)."""
    cfg = PORT_CFGS[name]
    rng = random.Random(name)
    values = _interesting_values(cfg)
    addrs = [r.address for r in registers(cfg)] + [Reg.STATUS]
    ops = []
    for _ in range(1500):
        addr = rng.choice(addrs) if rng.random() < 0.7 else rng.randrange(1 << ADDR_BITS)
        if rng.random() < 0.6:
            value = rng.choice(values) if rng.random() < 0.6 else rng.getrandbits(WORD_BITS)
            ops.append(("w", addr, value))
        else:
            ops.append(("r", addr))
    assert run_port(cfg, ops) == []


def test_radius_hi_staging_is_exercised():
    """tiny16's radius needs RADIUS_HI: a staged value above 32 bits is accepted whole."""
    cfg = PORT_CFGS["tiny16"]
    assert register("radius").value_width(cfg) > WORD_BITS
    top = cfg.derived.radius_inf >> WORD_BITS
    ops = [("w", Reg.RADIUS_HI, top), ("w", Reg.RADIUS, 5), ("r", Reg.RADIUS_HI),
           ("r", Reg.RADIUS), ("r", Reg.STATUS), ("w", Reg.RADIUS_HI, top + 1),
           ("r", Reg.STATUS), ("r", Reg.ERROR_ADDR)]
    assert run_port(cfg, ops) == []
    model = RegisterModel(cfg)
    model.write(Reg.RADIUS_HI, top)
    model.write(Reg.RADIUS, 5)
    assert model.values[Reg.RADIUS] == (top << WORD_BITS) | 5 and model.error == 0
    model.write(Reg.RADIUS_HI, top + 1)
    assert model.error == 1 and model.error_addr == Reg.RADIUS_HI
