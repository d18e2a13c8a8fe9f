"""Register exports: SystemRDL, a C header and register documentation from :mod:`spec.regmap`.

``sofa verilog`` writes, beside the Verilog of a design, ``sofa_regs.rdl`` (the map in
SystemRDL 2.0, generated from :mod:`spec.regmap` for that configuration) and, from it through
``systemrdl-compiler`` and the PeakRDL exporters, ``sofa_regs.h`` (``peakrdl-cheader``) and
``sofa_regs.md`` (``peakrdl-markdown``). ``sofa regs`` writes only these three.

Addresses: the core's register port and the host link address 32-bit words; the SystemRDL map
and the header give **byte** offsets, ``4 × word address``, as a memory-mapped bus (an
AXI4-Lite or Wishbone slave in an SoC) sees them. The legal range of each parameter register is
in its description and in the user properties ``sofa_min``/``sofa_max``.
"""

from pathlib import Path

from gen.artifacts import write_if_changed
from spec.regmap import WORD_BITS, register_map


__all__ = ["RDL_NAME", "rdl_text", "compile_rdl", "write_register_files", "register_files",
           "markdown_tables"]


#: Base name of the files and the SystemRDL address map.
RDL_NAME = "sofa_regs"

_UDPS = """\
property sofa_min { type = longint unsigned; component = field; };
property sofa_max { type = longint unsigned; component = field; };
"""


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _field(name, width, lsb, sw, hw, reset, desc, extra=""):
    msb = lsb + width - 1
    return (f"        field {{ sw = {sw}; hw = {hw};{extra} desc = {_quote(desc)}; }} "
            f"{name}[{msb}:{lsb}] = {reset:#x};\n")


def _register(entry):
    """The SystemRDL ``reg`` of one :func:`spec.regmap.register_map` entry."""
    name, width, desc = entry["name"], entry["width"], entry["description"]
    if entry["access"] == "rw":
        lo, hi = entry["legal"]
        if entry["value_width"] > WORD_BITS:
            desc += (f" The value has {entry['value_width']} bits; this word holds the low "
                     f"{WORD_BITS}.")
        body = _field("value", width, 0, "rw", "r", entry["reset"],
                      f"{desc} Legal: {lo} … {hi}; a write outside it, or while busy, is "
                      f"ignored and sets the error flag.",
                      f" sofa_min = {lo}; sofa_max = {min(hi, (1 << width) - 1)};")
    elif entry["access"] == "control":
        body = _field("start", 1, 0, "w", "r", 0, "Write 1: start a job (refused while busy).",
                      " singlepulse;")
    elif entry["access"] == "job_status":
        body = (_field("done", 1, 0, "rw", "rw", 0,
                       "A job ended or was refused since the last start. Write 1: clear it "
                       "(and the interrupt).", " woclr; hwset;")
                + _field("running", 1, 1, "r", "w", 0, "A job is being checked or run."))
    elif entry["access"] == "status":
        body = (_field("busy", 1, 0, "rw", "rw", 0,
                       "Read: a query is in flight. Write 1: clear the counters.", " we;")
                + _field("error", 1, 1, "rw", "rw", 0,
                         "Read: a write was rejected (see ERROR_ADDR). Write 1: clear it.",
                         " woclr; hwset;"))
    else:
        body = _field("value", width, 0, "r", "w", entry["reset"], desc)
    return (f"    reg {{\n        name = {_quote(name.upper())};\n"
            f"        desc = {_quote(entry['description'])};\n        regwidth = {WORD_BITS};\n"
            f"{body}    }} {name} @ {4 * entry['address']:#x};\n")


def rdl_text(cfg):
    """SystemRDL 2.0 source of the register map of a core built from ``cfg``.

    Counters are included only when the core has them (``counter_width > 0``); without
    counters their addresses read 0.
    """
    regs = [e for e in register_map(cfg) if e["width"] > 0]
    body = "".join(_register(e) for e in regs)
    top_desc = _quote(f"sofa_top ({cfg.name}): run-time parameters, status and performance "
                      f"counters.")
    return (f"// Register map of sofa_top for the configuration {cfg.name!r}, generated from\n"
            f"// spec/regmap.py by `sofa verilog`; byte offsets (4 x the word address).\n"
            f"{_UDPS}\naddrmap {RDL_NAME} {{\n"
            f"    name = \"SOFA core registers\";\n"
            f"    desc = {top_desc};\n"
            f"    default accesswidth = {WORD_BITS};\n\n{body}}};\n")


def compile_rdl(path):
    """Compile and elaborate a SystemRDL file; returns the root node (raises ValueError with
    the compiler's message on an error)."""
    from systemrdl import RDLCompileError, RDLCompiler
    compiler = RDLCompiler()
    try:
        compiler.compile_file(str(path))
        return compiler.elaborate(RDL_NAME)
    except RDLCompileError as e:
        raise ValueError(f"{path}: SystemRDL does not compile: {e}") from None


def register_files(out_dir):
    """The paths :func:`write_register_files` writes into ``out_dir``."""
    out_dir = Path(out_dir)
    return [out_dir / f"{RDL_NAME}{ext}" for ext in (".rdl", ".h", ".md")]


def write_register_files(cfg, out_dir):
    """Write ``sofa_regs.rdl``, ``sofa_regs.h`` and ``sofa_regs.md`` into ``out_dir``.

    The header and the documentation are exported to temporary files and moved into place
    only if they changed, so that unchanged output keeps its timestamps (``make`` stays quiet).
    """
    from peakrdl_cheader.exporter import CHeaderExporter
    from peakrdl_markdown import MarkdownExporter
    rdl, header, doc = register_files(out_dir)
    write_if_changed(rdl, rdl_text(cfg))
    root = compile_rdl(rdl)
    tmp = rdl.parent / f".{RDL_NAME}.tmp"
    tmp.mkdir(exist_ok=True)
    try:
        CHeaderExporter().export(root, str(tmp / header.name))
        MarkdownExporter().export(root.top, str(tmp / doc.name), input_files=[rdl.name])
        for path in (header, doc):
            write_if_changed(path, (tmp / path.name).read_text())
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    return [rdl, header, doc]


def markdown_tables(cfg):
    """The register and counter tables of ``cfg`` as Markdown (docs/registers.md shows the
    default preset's, and a test keeps them equal)."""
    def hexa(n):
        return f"{n:#x}" if n > 9 else str(n)

    rows = ["| word | byte | name | access | bits | reset | legal values | description |",
            "|---:|---:|---|---|---:|---:|---|---|"]
    counters = ["| word | byte | name | kind | description |", "|---:|---:|---|---|---|"]
    for e in register_map(cfg):
        if e["kind"] == "register":
            legal = f"{e['legal'][0]} … {e['legal'][1]}" if e["legal"] else "–"
            rows.append(f"| {e['address']} | {hexa(4 * e['address'])} | {e['name'].upper()} | "
                        f"{e['access']} | {e['value_width']} | {hexa(e['reset'])} | {legal} | "
                        f"{e['description']} |")
        else:
            counters.append(f"| {e['address']} | {hexa(4 * e['address'])} | "
                            f"{e['name'].upper()} | {e['kind']} | {e['description']} |")
    return "\n".join(rows) + "\n", "\n".join(counters) + "\n"
