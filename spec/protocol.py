"""The host-link protocol: a framed request/reply protocol over a byte stream (a UART).

Protocol
--------
Every request gets exactly one reply. Integers are little-endian; the CRC is CRC-16/CCITT-FALSE
(polynomial 0x1021, initial value 0xFFFF, not reflected, no final XOR) over every byte after
the start byte, sent most significant byte first, so the CRC over a whole frame without its
start byte is 0.

Request: ``A5 | cmd | len (2) | payload (len bytes) | crc (2, MSB first)``

Reply:   ``5A | cmd | status | len (2) | payload (len bytes) | crc (2, MSB first)``

==============  ====  ===========================================  ===================================
command         cmd   request payload                              reply payload (status OK)
==============  ====  ===========================================  ===================================
``IDENT``       0x00  none                                         :data:`IDENT_FIELDS` (config, link)
``WRITE_REG``   0x01  ``addr`` (1), ``value`` (4)                   STATUS register after the write (4)
``READ_REGS``   0x02  ``addr`` (1), ``count`` (1)                   ``count`` registers from ``addr``,
                                                                   4 bytes each
``LOAD_KV``     0x03  ``start`` (2), then n rows: K row, V row      none
                      (``d`` elements each)
``QUERY``       0x04  n Q rows (``d`` elements each; the last      ``O`` of the n rows, ``n·d``
                      closes a group of ``q_lanes``)              elements of ``out_bytes`` each
``WRITE_MEM``   0x05  ``addr`` (4), then n ≥ 1 bytes               none
``READ_MEM``    0x06  ``addr`` (4), ``count`` (2)                   ``count`` bytes from ``addr``
==============  ====  ===========================================  ===================================

Which commands a board answers depends on its core (IDENT's ``memory`` field): a board with
the on-chip core (``memory = 0``) takes LOAD_KV and QUERY, one with the memory-attached core
(``memory = 1``, :class:`hw.axicore.SofaAxiCore` over ``mem_bytes`` of block RAM) takes
WRITE_MEM and READ_MEM instead and answers the other two ``UNKNOWN_CMD``. On a memory board the
host writes Q, K and V into the memory, programs the job descriptor with WRITE_REG, starts the
job, polls JOB_STATUS with READ_REGS and reads O back with READ_MEM; the registers are reached
through the core's AXI4-Lite slave, so ``n_regs`` is the core's register space. WRITE_MEM and
READ_MEM must lie inside the memory (``addr + n ≤ mem_bytes``, else ``BAD_ARG``); a READ_MEM
``count`` is 1 … ``max_payload``.

An element of Q/K/V takes ``elem_bytes = ceil(data_width / 8)`` bytes (its low ``data_width``
bits are used); an ``O`` element ``out_bytes = ceil(out_width / 8)`` bytes, sign-extended two's
complement. Register addresses are those of :mod:`spec.regmap` (the counters from
``COUNTER_BASE``); the core itself rejects writes of out-of-range values (the STATUS in the reply
then has its error bit set).

Errors: a reply with a non-zero :class:`Status` (and no payload) instead of the command's reply;
``cmd`` echoes the request's command byte, or :data:`NO_CMD` if none arrived. Bytes outside a
frame (anything but ``A5`` while hunting) are ignored. The checks, in order: a UART framing
error or overrun inside the frame (``LINE_ERROR``), the CRC (``BAD_CRC``), the command
(``UNKNOWN_CMD``), the length for the command (``BAD_LENGTH``), the arguments (``BAD_ARG``: a
register address or count outside the register file, K/V rows past ``max_seq_len``). A frame
whose ``len`` exceeds ``max_payload`` is discarded (``len + 2`` more bytes, or until the line is
idle) and answered with ``OVERSIZED``; a frame that stops for ``timeout_cycles`` is answered
with ``TRUNCATED`` (``LINE_ERROR`` if a line error occurred in it: a framing error drops its
byte, so the frame ends short).

**Versions.** IDENT's second field is the protocol version (:data:`PROTOCOL_VERSION`; what
each one added: :data:`VERSION_HISTORY`). :func:`parse_ident` refuses any other version with a
message naming both, before it looks at the length (which differs between versions). Version
6 appended the compile-time knobs ``predict_keys``, ``adapt_bins`` and ``cores``, and a memory
board's ``axi_id_width``, a byte each, so the offsets of version 5 hold.

**Nothing is half-written.** The payload is buffered in a ``max_payload``-byte memory and only
applied (registers written, K/V rows loaded, queries issued) after every check has passed.

**Request queue.** Request bytes enter a queue of ``queue_bytes`` bytes (IDENT reports it;
by default the power of two that holds one largest request frame), and the link parses and
executes the requests in order, one at a time, answering each with exactly one reply, also
while an earlier reply is still being sent. A host may therefore send requests without waiting
for their replies, as long as the requests it has not yet had a reply to total at most
``queue_bytes`` bytes: then nothing is ever lost. Should the queue overflow anyway, the bytes
that do not fit are dropped and the next byte that does fit is answered ``BUSY`` (``cmd`` is
the frame's command, or ``NO_CMD`` between frames) and dropped too; the rest of a frame that
lost bytes is then parsed as line noise (a frame whose tail was lost is answered ``TRUNCATED``
after the timeout), so a host that sees ``BUSY`` waits for its outstanding
replies and sends the lost requests again. A link built with ``queue_bytes = 1`` (the iCE40
boards, where the logic for a queue does not fit) holds one byte: a host waits for each reply
before it sends the next request, and a request sent early is answered ``BUSY``.
"""

import enum
from dataclasses import dataclass

import numpy as np

from spec.config import ConfigError, SofaConfig
from spec.regmap import COUNTER_BASE, N_REGS, address_words, counter_names


__all__ = ["Cmd", "Status", "SOF_REQUEST", "SOF_REPLY", "NO_CMD", "PROTOCOL_VERSION", "N_REGS",
           "VERSION_HISTORY", "IDENT_FIELDS", "CONFIG_FIELDS", "KNOB_FIELDS",
           "version_message", "CRC_POLY", "CRC_INIT", "REQUEST_OVERHEAD", "REPLY_OVERHEAD",
           "crc16", "elem_bytes", "out_bytes", "ident_bytes", "parse_ident",
           "check_link_params", "default_queue_bytes", "encode_request", "encode_reply",
           "write_reg_payload", "read_regs_payload", "row_bytes", "load_kv_payload",
           "query_payload", "write_mem_payload", "read_mem_payload", "link_regs",
           "check_mem_bytes", "decode_out", "decode_rows", "Reply", "ReplyParser", "decode_reply",
           "ProtocolError", "cmd_name", "config_from_ident", "ident_mismatch",
           "check_expected"]


SOF_REQUEST = 0xA5
SOF_REPLY = 0x5A
NO_CMD = 0xFF
PROTOCOL_VERSION = 6
#: What each protocol version added (the host names it when it refuses another version).
VERSION_HISTORY = {
    2: "IDENT counter_width",
    3: "IDENT skid_buffers",
    4: "IDENT queue_bytes and the BUSY status",
    5: "memory boards: IDENT memory, mem_bytes, axi_data_width, WRITE_MEM and READ_MEM",
    6: "IDENT predict_keys, adapt_bins, cores and axi_id_width",
}
#: Bytes of a request / reply frame around its payload.
REQUEST_OVERHEAD = 6
REPLY_OVERHEAD = 7

CRC_POLY = 0x1021
CRC_INIT = 0xFFFF


class Cmd(enum.IntEnum):
    """Request commands."""
    IDENT = 0x00
    WRITE_REG = 0x01
    READ_REGS = 0x02
    LOAD_KV = 0x03
    QUERY = 0x04
    WRITE_MEM = 0x05
    READ_MEM = 0x06


class Status(enum.IntEnum):
    """Reply status codes; every one but ``OK`` is an error reply without payload."""
    OK = 0
    BAD_CRC = 1
    UNKNOWN_CMD = 2
    BAD_LENGTH = 3
    BAD_ARG = 4
    TRUNCATED = 5
    OVERSIZED = 6
    LINE_ERROR = 7
    BUSY = 8


#: SofaConfig fields of every board in the IDENT reply, 4 bytes each (a bool as 0 or 1).
_CONFIG_WORDS = ("d", "data_width", "block_size", "max_seq_len", "sort_width", "k_max",
                 "q_lanes", "mac_lanes", "dlzs_lanes", "exp_frac", "exp_lut_bits", "w_frac",
                 "c_bits", "c_frac", "out_frac", "counter_width", "skid_buffers")
#: The compile-time knobs of version 6, a byte each, at the end: version 5's offsets hold.
KNOB_FIELDS = ("predict_keys", "adapt_bins", "cores")
#: SofaConfig fields IDENT reports on every board (``axi_data_width`` and ``axi_id_width``
#: only on a memory board; 0 on an on-chip board).
CONFIG_FIELDS = _CONFIG_WORDS + KNOB_FIELDS
#: The IDENT reply: ``(name, bytes)`` in order.
IDENT_FIELDS = (("magic", 4), ("version", 1),
                *((name, 4) for name in _CONFIG_WORDS),
                ("max_payload", 4), ("clk_hz", 4), ("divisor", 4), ("timeout_cycles", 4),
                ("queue_bytes", 4),
                ("n_regs", 1), ("counter_base", 1), ("n_counters", 1),
                ("memory", 1), ("mem_bytes", 4), ("axi_data_width", 2),
                *((name, 1) for name in KNOB_FIELDS), ("axi_id_width", 1))
_MAGIC = b"SOFA"


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE of ``data`` (bytes), continuing from ``crc``."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def elem_bytes(cfg):
    """Bytes per Q/K/V element on the link: ``ceil(data_width / 8)``."""
    return -(-cfg.data_width // 8)


def out_bytes(cfg):
    """Bytes per ``O`` element on the link: ``ceil(out_width / 8)``."""
    return -(-cfg.derived.out_width // 8)


def default_queue_bytes(max_payload):
    """The request queue of a link: the power of two that holds one largest request frame."""
    return 1 << (max_payload + REQUEST_OVERHEAD - 1).bit_length()


def link_regs(cfg):
    """Registers a link reaches: :data:`N_REGS` on the on-chip core, the whole register
    space where it reaches further: the memory-attached core's (job descriptor included),
    and the on-chip core's with the adaptive selection (its ``ADAPT_*`` registers lie
    above the counters)."""
    return address_words(cfg) if cfg.memory == "axi" or cfg.adapt_bins else N_REGS


def ident_bytes(cfg, *, max_payload, clk_hz, divisor, timeout_cycles, queue_bytes=None,
                mem_bytes=0):
    """The IDENT reply payload (bytes) of a link built with these parameters (``mem_bytes``:
    the memory of a memory board, 0 on the on-chip core)."""
    if queue_bytes is None:
        queue_bytes = default_queue_bytes(max_payload)
    values = {"magic": int.from_bytes(_MAGIC, "little"), "version": PROTOCOL_VERSION,
              **{name: int(getattr(cfg, name)) for name in CONFIG_FIELDS},
              "max_payload": max_payload, "clk_hz": int(clk_hz), "divisor": divisor,
              "timeout_cycles": timeout_cycles, "queue_bytes": queue_bytes,
              "n_regs": link_regs(cfg), "counter_base": COUNTER_BASE,
              "n_counters": len(counter_names(cfg)) if cfg.counter_width else 0,
              "memory": int(cfg.memory == "axi"), "mem_bytes": mem_bytes,
              "axi_data_width": cfg.axi_data_width if cfg.memory == "axi" else 0,
              "axi_id_width": cfg.axi_id_width if cfg.memory == "axi" else 0}
    out = bytearray()
    for name, size in IDENT_FIELDS:
        value = values[name]
        if not 0 <= value < 1 << (8 * size):
            raise ValueError(f"{name} = {value} does not fit the {size}-byte IDENT field")
        out += value.to_bytes(size, "little")
    return bytes(out)


def parse_ident(payload):
    """The fields of an IDENT reply payload as a dict; raises :class:`ProtocolError` if it is
    malformed or of another protocol version (checked before the length, which differs
    between versions, so the message names both versions)."""
    payload = bytes(payload)
    if payload[:4] != _MAGIC:
        raise ProtocolError(f"IDENT reply does not start with the magic {_MAGIC!r} "
                            f"(got {payload[:4]!r}): not a SOFA board")
    version = payload[4] if len(payload) > 4 else None
    if version != PROTOCOL_VERSION:
        raise ProtocolError(version_message(version))
    size = sum(n for _, n in IDENT_FIELDS)
    if len(payload) != size:
        raise ProtocolError(f"IDENT reply of protocol version {PROTOCOL_VERSION} has "
                            f"{len(payload)} bytes, expected {size}")
    out, pos = {}, 0
    for name, n in IDENT_FIELDS:
        out[name] = int.from_bytes(payload[pos:pos + n], "little")
        pos += n
    return out


def version_message(version):
    """Why a host of :data:`PROTOCOL_VERSION` refuses a board speaking ``version``."""
    if version is None:
        return "IDENT reply ends before its protocol version byte"
    if version < PROTOCOL_VERSION:
        missing = "; ".join(f"{v}: {VERSION_HISTORY[v]}"
                            for v in range(max(version + 1, 2), PROTOCOL_VERSION + 1))
        return (f"the board speaks protocol version {version}, this host speaks version "
                f"{PROTOCOL_VERSION} and refuses older ones (added since: {missing}); "
                f"rebuild the board's bitstream with this version of SOFA-gen")
    return (f"the board speaks protocol version {version}, newer than this host's version "
            f"{PROTOCOL_VERSION}; use the host library of the SOFA-gen that built the board")


def config_from_ident(info):
    """The :class:`SofaConfig` an IDENT reply (dict from :func:`spec.protocol.parse_ident`)
    names; a :class:`ProtocolError` if it names none (a value no build can have)."""
    values = {name: info[name] for name in CONFIG_FIELDS}
    if values["skid_buffers"] not in (0, 1):
        raise ProtocolError(f"IDENT: skid_buffers = {values['skid_buffers']} is not 0 or 1")
    values["skid_buffers"] = bool(values["skid_buffers"])
    if info.get("memory"):
        values.update(memory="axi", axi_data_width=info["axi_data_width"],
                      axi_id_width=info["axi_id_width"])
    try:
        return SofaConfig(**values, name="board")
    except ConfigError as e:
        raise ProtocolError(f"IDENT names no valid configuration: {e}") from None


def check_expected(board, expect):
    """Raise :class:`ProtocolError` naming every IDENT field, with both values, in which a
    board's config ``board`` differs from the config ``expect`` it should carry."""
    diff = ident_mismatch(board, expect)
    if diff:
        raise ProtocolError(f"IDENT: the board differs from the expected config "
                            f"{expect.name!r}: {', '.join(diff)}")


def ident_mismatch(board, expect):
    """The IDENT fields in which a board's config ``board`` differs from ``expect``, as
    ``"name = board's (expected expect's)"`` strings (empty if they agree)."""
    names = list(CONFIG_FIELDS) + ["memory"]
    if board.memory == "axi" or expect.memory == "axi":
        names += ["axi_data_width", "axi_id_width"]
    return [f"{n} = {getattr(board, n)} (expected {getattr(expect, n)})" for n in names
            if getattr(board, n) != getattr(expect, n)]



def check_link_params(cfg, *, max_payload, timeout_cycles, queue_bytes=None):
    """The link parameters a :class:`hw.hostlink.HostLink` for ``cfg`` can be built with; a
    :class:`ConfigError` names the one that does not fit."""
    if queue_bytes is None:
        queue_bytes = default_queue_bytes(max_payload) if isinstance(max_payload, int) else 0
    for name, value in (("max_payload", max_payload), ("timeout_cycles", timeout_cycles),
                        ("queue_bytes", queue_bytes)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, not {value!r}")
    eb, ob = elem_bytes(cfg), out_bytes(cfg)
    kv_row = 2 + 2 * cfg.d * eb
    if max_payload < kv_row:
        raise ConfigError(f"max_payload = {max_payload} is too small: one K/V row pair "
                          f"needs {kv_row} bytes (d = {cfg.d})")
    max_reply = (max_payload // (cfg.d * eb)) * cfg.d * ob
    if max_payload > 0xFFFF or max_reply > 0xFFFF:
        raise ConfigError(f"max_payload = {max_payload} is too large: a QUERY reply of "
                          f"that many rows takes {max_reply} bytes, more than the 16-bit "
                          f"length field holds")
    if timeout_cycles < 1:
        raise ConfigError(f"timeout_cycles = {timeout_cycles} must be at least 1")
    if queue_bytes != 1 and (queue_bytes < 16 or queue_bytes & (queue_bytes - 1)):
        raise ConfigError(f"queue_bytes = {queue_bytes} must be 1 (no queue: a host waits "
                          f"for each reply) or a power of two, at least 16")
    if cfg.max_seq_len > 1 << 16:
        raise ConfigError(f"max_seq_len = {cfg.max_seq_len}: LOAD_KV carries a 16-bit "
                          f"start row")
    n_regs = link_regs(cfg)
    if n_regs > 0xFF:
        raise ConfigError(f"cores = {cfg.cores}: the core's register space has {n_regs} "
                          f"words, more than the link's one-byte register address reaches "
                          f"(255); a board takes cores = 1")


def check_mem_bytes(cfg, mem_bytes):
    """``mem_bytes`` if a link for ``cfg`` can be built with that memory: 0 for the on-chip
    core; for the memory-attached core a power of two from one AXI word to what both the
    core's address width and WRITE_MEM's 4-byte address reach. A :class:`ConfigError` names
    the value otherwise."""
    if isinstance(mem_bytes, bool) or not isinstance(mem_bytes, int):
        raise TypeError(f"mem_bytes must be an integer, not {mem_bytes!r}")
    if cfg.memory != "axi":
        if mem_bytes:
            raise ConfigError(f"mem_bytes = {mem_bytes}: the on-chip core (memory = "
                              f"{cfg.memory!r}) has no memory behind the link; use 0")
        return mem_bytes
    lo, hi = cfg.axi_data_width // 8, 1 << min(32, cfg.axi_addr_width)
    if not lo <= mem_bytes <= hi or mem_bytes & (mem_bytes - 1):
        raise ConfigError(f"mem_bytes = {mem_bytes} must be a power of two from {lo} (one "
                          f"AXI word) to {hi}")
    return mem_bytes


# -- codec ---------------------------------------------------------------------------------------

class ProtocolError(RuntimeError):
    """A malformed or missing reply (line noise, wrong board, timeout)."""


def encode_request(cmd, payload=b""):
    """A request frame: ``A5 | cmd | len | payload | crc16 (MSB first)``."""
    payload = bytes(payload)
    if not 0 <= int(cmd) <= 0xFF:
        raise ValueError(f"cmd = {cmd} is not a byte")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the 16-bit length field")
    body = bytes([int(cmd)]) + len(payload).to_bytes(2, "little") + payload
    return bytes([SOF_REQUEST]) + body + crc16(body).to_bytes(2, "big")


def encode_reply(cmd, status, payload=b""):
    """A reply frame (what a board sends): ``5A | cmd | status | len | payload | crc16``."""
    payload = bytes(payload)
    body = bytes([int(cmd) & 0xFF, int(status)]) + len(payload).to_bytes(2, "little") + payload
    return bytes([SOF_REPLY]) + body + crc16(body).to_bytes(2, "big")


def write_reg_payload(addr, value):
    if not 0 <= int(addr) <= 0xFF:
        raise ValueError(f"register address {addr} is not a byte")
    if not 0 <= int(value) <= 0xFFFFFFFF:
        raise ValueError(f"register value {value} does not fit 32 bits")
    return bytes([int(addr)]) + int(value).to_bytes(4, "little")


def read_regs_payload(addr, count):
    for name, v in (("addr", addr), ("count", count)):
        if not 0 <= int(v) <= 0xFF:
            raise ValueError(f"{name} = {v} is not a byte")
    return bytes([int(addr), int(count)])


def write_mem_payload(addr, data):
    """WRITE_MEM payload: ``addr`` (4 bytes), then the bytes."""
    data = bytes(data)
    if not 0 <= int(addr) <= 0xFFFFFFFF:
        raise ValueError(f"memory address {addr} does not fit 32 bits")
    if not data:
        raise ValueError("WRITE_MEM needs at least one byte")
    return int(addr).to_bytes(4, "little") + data


def read_mem_payload(addr, count):
    """READ_MEM payload: ``addr`` (4 bytes), ``count`` (2 bytes)."""
    if not 0 <= int(addr) <= 0xFFFFFFFF:
        raise ValueError(f"memory address {addr} does not fit 32 bits")
    if not 1 <= int(count) <= 0xFFFF:
        raise ValueError(f"count = {count} must be 1 … 65535")
    return int(addr).to_bytes(4, "little") + int(count).to_bytes(2, "little")


def row_bytes(cfg, rows, name):
    """Rows of signed ``data_width``-bit integers as link bytes (``elem_bytes`` each, LE)."""
    a = np.asarray(rows)
    if a.ndim != 2 or a.shape[1] != cfg.d:
        raise ConfigError(f"{name} must have shape [n, {cfg.d}] (d = {cfg.d}), "
                          f"got {list(a.shape)}")
    lo, hi = -(1 << (cfg.data_width - 1)), (1 << (cfg.data_width - 1)) - 1
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ConfigError(f"{name} holds values outside the signed {cfg.data_width}-bit range "
                          f"{lo} … {hi}")
    eb = elem_bytes(cfg)
    return [b"".join(int(x).to_bytes(eb, "little", signed=True) for x in row) for row in a]


def load_kv_payload(cfg, start, K, V):
    """LOAD_KV payload: ``start`` (2 bytes), then K row, V row per key."""
    k_rows, v_rows = row_bytes(cfg, K, "K"), row_bytes(cfg, V, "V")
    if len(k_rows) != len(v_rows):
        raise ConfigError(f"K has {len(k_rows)} rows but V has {len(v_rows)}")
    if not 0 <= start <= 0xFFFF:
        raise ValueError(f"start = {start} does not fit 16 bits")
    return int(start).to_bytes(2, "little") + b"".join(k + v for k, v in zip(k_rows, v_rows))


def query_payload(cfg, Q):
    """QUERY payload: the Q rows."""
    return b"".join(row_bytes(cfg, Q, "Q"))


def decode_out(cfg, payload, rows=None):
    """A QUERY reply payload as an int64 array ``[rows, d]`` of ``O`` (``out_frac`` fraction bits)."""
    ob = out_bytes(cfg)
    n = len(payload) // (ob * cfg.d)
    if len(payload) != n * ob * cfg.d or (rows is not None and n != rows):
        raise ProtocolError(f"QUERY reply of {len(payload)} bytes; expected "
                            f"{(rows if rows is not None else '?')} rows of {cfg.d}×{ob} bytes")
    vals = [int.from_bytes(payload[i:i + ob], "little", signed=True)
            for i in range(0, len(payload), ob)]
    return np.array(vals, dtype=np.int64).reshape(n, cfg.d)


@dataclass(frozen=True)
class Reply:
    """One reply frame."""
    cmd: int
    status: int
    payload: bytes


class ReplyParser:
    """Incremental reply parser: :meth:`feed` bytes, collect complete :class:`Reply` objects.

    Bytes before a start byte are skipped (and counted in :attr:`skipped`). A frame whose CRC
    does not match raises :class:`ProtocolError` (the board never sends one; it means the line
    corrupted it). ``max_len`` bounds the length field (a corrupted length would otherwise make
    the parser wait for 64 KiB).
    """

    def __init__(self, max_len=0xFFFF):
        self._buf = bytearray()
        self.max_len = max_len
        self.skipped = 0

    def feed(self, data):
        self._buf += bytes(data)
        out = []
        while True:
            start = self._buf.find(bytes([SOF_REPLY]))
            if start < 0:
                self.skipped += len(self._buf)
                self._buf.clear()
                return out
            if start:
                self.skipped += start
                del self._buf[:start]
            if len(self._buf) < 5:
                return out
            n = int.from_bytes(self._buf[3:5], "little")
            if n > self.max_len:
                del self._buf[:1]
                raise ProtocolError(f"reply length {n} exceeds {self.max_len}")
            if len(self._buf) < 7 + n:
                return out
            frame = bytes(self._buf[:7 + n])
            del self._buf[:7 + n]
            if crc16(frame[1:]) != 0:
                raise ProtocolError(f"reply with a bad CRC: {frame.hex()}")
            out.append(Reply(cmd=frame[1], status=frame[2], payload=frame[5:5 + n]))

    @property
    def pending(self):
        """Bytes of an incomplete frame held back."""
        return len(self._buf)


def decode_reply(data):
    """Exactly one reply frame in ``data`` (bytes) as a :class:`Reply`."""
    parser = ReplyParser()
    replies = parser.feed(data)
    if len(replies) != 1 or parser.pending:
        raise ProtocolError(f"expected one reply frame, got {len(replies)} "
                            f"(+{parser.pending} bytes)")
    return replies[0]


def cmd_name(cmd):
    cmd = int(cmd)
    return Cmd(cmd).name if cmd in Cmd._value2member_map_ else f"command {cmd:#04x}"


def decode_rows(cfg, data, per_row):
    """Split link bytes into rows of ``per_row`` element vectors (K, V pairs for 2)."""
    eb = elem_bytes(cfg)
    vals = [int.from_bytes(data[i:i + eb], "little", signed=True) for i in range(0, len(data), eb)]
    shift = 64 - cfg.data_width                  # the RTL keeps the low data_width bits
    vals = [((v << shift) & ((1 << 64) - 1)) for v in vals]
    vals = [(v - (1 << 64) if v >> 63 else v) >> shift for v in vals]
    arr = np.array(vals, dtype=np.int64).reshape(-1, per_row, cfg.d)
    return [tuple(r) for r in arr]
