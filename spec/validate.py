"""Checks for everything a user can give: files, JSON documents, numbers, names.

Every entry point (the ``sofa`` subcommands, the config, plan and text loaders, the host
library) checks its input with these functions, so that bad input always ends the same way: a
:class:`ConfigError` (exit status 2 on the command line) whose one-line message
names the parameter, the value and what is allowed. Nothing is clamped, truncated or ignored,
files are read with a size bound, and numbers are checked for nan, infinities and signs where
those make no sense.

The ``*_arg`` factories make ``argparse`` types of the same checks; argparse reports their
message as ``argument --NAME: ...``.
"""

import argparse
import json
import math
import os
import re
import stat
import sys
from pathlib import Path


__all__ = ["ConfigError", "MAX_FILE_BYTES", "MAX_JSON_DEPTH", "read_text", "parse_json",
           "load_json", "check_int", "check_float", "check_bool", "check_name", "check_choice",
           "check_out_dir", "make_out_dir", "one_line",
           "int_arg", "float_arg", "name_arg", "choice_arg", "path_arg"]


class ConfigError(ValueError):
    """Bad user input (a configuration, a run-time parameter, a file, an option value); the
    message names the parameter, the value and what is allowed. Re-exported by
    :mod:`spec.config`."""


#: Largest file a loader reads (configs, plans and texts are far smaller).
MAX_FILE_BYTES = 1 << 20
#: Deepest nesting a JSON document may have (configs and plans need 4).
MAX_JSON_DEPTH = 32

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")


def _show(value, limit=40):
    """``repr(value)``, shortened for a one-line message."""
    try:
        text = repr(value)
    except ValueError:                               # an int too long to print
        return f"<an integer of about {value.bit_length() * 3 // 10} digits>"
    return text if len(text) <= limit else text[:limit - 5] + "…" + text[-4:]


def read_text(path, *, what, max_bytes=MAX_FILE_BYTES):
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes.

    ``what`` names the parameter the path came from (``"--config"``); every failure is an
    :class:`ConfigError` naming it and the path.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ConfigError(f"{what} {path}: {kind}; expected a file")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{what} {path}: larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path}: not UTF-8 text (byte {e.start})") from None


def _depth(value, limit):
    """Nesting depth of a parsed JSON value, stopping past ``limit``."""
    stack, deepest = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def _no_constant(name):
    raise ConfigError(f"{name} is not a number JSON allows")


def parse_json(text, *, source, max_depth=MAX_JSON_DEPTH):
    """A JSON document from ``text``; ``source`` names it in errors.

    Rejects what :mod:`json` would accept but no config means: ``NaN``/``Infinity``, integers
    longer than Python converts, duplicate keys, and nesting deeper than ``max_depth``.
    """
    def pairs(items):
        out = {}
        for key, value in items:
            if key in out:
                raise ConfigError(f"{source}: the key {key!r} appears twice")
            out[key] = value
        return out

    if not text.strip():
        raise ConfigError(f"{source}: empty; expected a JSON document")
    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=_no_constant)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if not str(e).startswith(source) else str(e)) \
            from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: not valid JSON: {e.msg} at line {e.lineno} "
                          f"column {e.colno}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested deeper than {max_depth} levels") from None
    except ValueError:                               # an integer beyond int_max_str_digits
        raise ConfigError(f"{source}: an integer with more digits than any parameter "
                          f"allows") from None
    if _depth(value, max_depth) > max_depth:
        raise ConfigError(f"{source}: nested deeper than {max_depth} levels")
    return value


def load_json(path, *, what, max_bytes=MAX_FILE_BYTES):
    """:func:`parse_json` of :func:`read_text`."""
    return parse_json(read_text(path, what=what, max_bytes=max_bytes),
                      source=f"{what} {path}")


def _named(name, value):
    """``name = value`` in a message, or the value alone where the name is said elsewhere
    (argparse prefixes ``argument --NAME:``)."""
    return _show(value) if name is None else f"{name} = {_show(value)}"


def check_int(name, value, lo=None, hi=None):
    """``value`` as an int within ``lo … hi`` (either may be None); bools are not ints."""
    if isinstance(value, bool) or not isinstance(value, int):
        allowed = "" if lo is None and hi is None else \
            f" {'-∞' if lo is None else lo} … {'∞' if hi is None else hi}"
        raise ConfigError(f"{name or 'the value'} must be an integer{allowed}, not "
                          f"{_show(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{_named(name, value)} is out of range; allowed "
                          f"{'-∞' if lo is None else lo} … {'∞' if hi is None else hi}")
    return value


def check_float(name, value, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """``value`` as a finite float within the bounds (open where asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name or 'the value'} must be a number, not {_show(value)}")
    if isinstance(value, int) and value.bit_length() > 1000:     # float() would overflow
        raise ConfigError(f"{_named(name, value)} is out of range")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{_named(name, value)} is not a finite number")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        left = "-∞" if lo is None else f"{lo:g}"
        right = "∞" if hi is None else f"{hi:g}"
        brackets = ("(" if lo_open or lo is None else "[") + f"{left}, {right}" + \
            (")" if hi_open or hi is None else "]")
        raise ConfigError(f"{_named(name, value)} is out of range; allowed {brackets}")
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, not {_show(value)}")
    return value


def check_name(name, value):
    """A name that is safe as a file or directory name: letters, digits, ``_.+-``, 1 … 64
    characters, not starting with a dot or a dash."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(f"{_named(name, value)} is not a valid name; use 1 … 64 letters, "
                          f"digits, '_', '.', '+' or '-', not starting with '.', '+' or '-'")
    return value


def check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{_named(name, value)} is unknown; choose one of "
                          f"{', '.join(map(str, choices))}")
    return value


def check_out_dir(what, path):
    """``path`` as a directory a job can write into, checked without creating anything: an
    existing directory, or a path whose nearest existing ancestor is a writable directory.

    ``what`` names the parameter (``"--out"``). The directory itself is made by
    :func:`make_out_dir` once every input is checked, so bad input leaves nothing behind.
    """
    path = Path(path)
    try:
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise ConfigError(f"{what} {path}: exists and is not a directory; give a "
                                  f"directory (it is made if missing)")
            where = path
        else:
            where = next((p for p in path.absolute().parents if p.exists()), None)
            if where is None or not where.is_dir():
                raise ConfigError(f"{what} {path}: {where} is not a directory, so the "
                                  f"directory cannot be made")
        if not os.access(where, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} {path}: {where} is not writable")
    except OSError as e:                             # a name too long, a loop of links
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from None
    return path


def make_out_dir(what, path):
    """Make the directory ``path`` (and its parents) after :func:`check_out_dir`; an
    :class:`OSError` (a read-only file system, say) becomes a :class:`ConfigError`."""
    path = check_out_dir(what, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot create the directory: "
                          f"{e.strerror or e}") from None
    return path


def one_line(text):
    """``text`` as one printable line: line breaks and characters the terminal cannot encode
    (surrogates from undecodable file names) are shown as escapes."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _arg(check):
    """An argparse type from a check: its ConfigError becomes argparse's one-line error."""
    def convert(text):
        try:
            return check(text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = check.__name__
    return convert


def int_arg(lo=None, hi=None):
    """An argparse type: a decimal integer within ``lo … hi``."""
    def integer(text):
        try:
            value = int(text, 10)
        except ValueError:
            digits = text.strip().lstrip("+-")
            if len(digits) > 100 and digits.isdigit():       # beyond int_max_str_digits
                raise ConfigError(f"an integer of {len(digits)} digits is out of range; "
                                  f"allowed {'-∞' if lo is None else lo} … "
                                  f"{'∞' if hi is None else hi}") from None
            raise ConfigError(f"{_show(text)} is not a decimal integer") from None
        return check_int(None, value, lo, hi)
    return _arg(integer)


def float_arg(lo=None, hi=None, *, lo_open=False, hi_open=False):
    """An argparse type: a finite number within the bounds."""
    def number(text):
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{_show(text)} is not a number") from None
        return check_float(None, value, lo, hi, lo_open=lo_open, hi_open=hi_open)
    return _arg(number)


def name_arg(text):
    """An argparse type: :func:`check_name`."""
    return _arg(lambda t: check_name(None, t))(text)


def choice_arg(choices):
    """An argparse type: one of ``choices`` (the message lists them)."""
    def choice(text):
        return check_choice(None, text, choices)
    return _arg(choice)


def path_arg(text):
    """An argparse type: a path, not empty (``Path("")`` would silently be the working
    directory)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path; give a file or directory name")
    return Path(text)
