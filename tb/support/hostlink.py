"""Scripts for the host link, shared by ``tb/test_hostlink.py`` (byte streams in the Amaranth
simulator) and ``tb/cocotb/hostlink/cocotb_hostlink.py`` (serial pins on Verilator): request
builders and the malformed-frame script with the replies it must get."""

import numpy as np

from spec.protocol import (N_REGS, NO_CMD, Cmd, Status, crc16, elem_bytes, encode_request,
                           load_kv_payload, read_regs_payload, write_reg_payload)
from spec.regmap import Reg, parameter_writes


__all__ = ["Step", "kv_requests", "param_requests", "malformed_script"]


class Step:
    """One request (or junk) on the link: bytes to send, then wait for ``replies`` replies.

    ``pause`` idle cycles follow the bytes (longer than the timeout: a truncated frame);
    ``line_error_at`` pulses ``rx_error`` with that byte.
    """

    def __init__(self, data, *, replies=1, pause=0, line_error_at=None):
        self.data, self.replies, self.pause, self.line_error_at = \
            bytes(data), replies, pause, line_error_at


def kv_requests(K, V, *, cfg, max_payload, start=0):
    """LOAD_KV requests of rows ``start …``, as many rows a frame as ``max_payload`` holds."""
    per = (max_payload - 2) // (2 * cfg.d * elem_bytes(cfg))
    return [encode_request(Cmd.LOAD_KV, load_kv_payload(cfg, start + a, K[a:a + per],
                                                         V[a:a + per]))
            for a in range(0, len(K), per)]


def param_requests(cfg, params):
    """WRITE_REG requests of the run-time registers (spec.regmap.parameter_writes), then a
    counter and error clear."""
    return [encode_request(Cmd.WRITE_REG, write_reg_payload(reg, value))
            for reg, value in parameter_writes(cfg, params) + [(Reg.STATUS, 0b11)]]


def malformed_script(cfg, K, V, params, *, max_payload, pause, line_error=True):
    """(steps, expected (cmd, status) per step): a good setup (K/V, registers), then bad
    frames, each carrying data that would change ``O`` or a register if it were applied.

    ``pause`` idle cycles follow a truncated frame (more than the link's timeout);
    ``line_error`` adds a frame with a line-error pulse (byte-stream tests only).
    """
    K2, V2 = np.clip(-K[::-1], -128, 127), V[::-1] // 2 - 1      # different rows
    steps, want = [], []

    def add(step, cmd, status):
        steps.append(step)
        want.append(None if step.replies == 0 else (cmd, status))

    for r in kv_requests(K, V, cfg=cfg, max_payload=max_payload) + param_requests(cfg, params):
        add(Step(r), r[1], Status.OK)
    good_kv = kv_requests(K2[:12], V2[:12], cfg=cfg, max_payload=max_payload)[0]
    bad_crc = bytearray(good_kv)
    bad_crc[-1] ^= 0x01
    add(Step(bad_crc), Cmd.LOAD_KV, Status.BAD_CRC)
    flipped = bytearray(encode_request(Cmd.WRITE_REG, write_reg_payload(Reg.SEQ_LEN, 5)))
    flipped[6] ^= 0x10                                  # a payload bit, CRC not updated
    add(Step(flipped), Cmd.WRITE_REG, Status.BAD_CRC)
    add(Step(encode_request(0x42, b"\x00\x01")), 0x42, Status.UNKNOWN_CMD)
    add(Step(encode_request(Cmd.WRITE_REG, b"\x00\x05\x00\x00")), Cmd.WRITE_REG,
        Status.BAD_LENGTH)
    add(Step(encode_request(Cmd.LOAD_KV, load_kv_payload(cfg, 0, K2[:3], V2[:3])[:-1])),
        Cmd.LOAD_KV, Status.BAD_LENGTH)
    add(Step(encode_request(Cmd.QUERY)), Cmd.QUERY, Status.BAD_LENGTH)
    add(Step(encode_request(Cmd.IDENT, b"\x00")), Cmd.IDENT, Status.BAD_LENGTH)
    add(Step(encode_request(Cmd.WRITE_REG, write_reg_payload(N_REGS, 1))), Cmd.WRITE_REG,
        Status.BAD_ARG)
    add(Step(encode_request(Cmd.READ_REGS, read_regs_payload(0, 0))), Cmd.READ_REGS,
        Status.BAD_ARG)
    add(Step(encode_request(Cmd.READ_REGS, read_regs_payload(N_REGS - 3, 4))), Cmd.READ_REGS,
        Status.BAD_ARG)
    # the last row and one past max_seq_len: neither may be written
    past = encode_request(Cmd.LOAD_KV, load_kv_payload(cfg, cfg.max_seq_len - 1, K2[:2], V2[:2]))
    assert len(past) - 6 <= max_payload, "max_payload must hold two K/V rows for this script"
    add(Step(past), Cmd.LOAD_KV, Status.BAD_ARG)
    # truncated: half a frame, then silence past the timeout
    add(Step(good_kv[:len(good_kv) // 2], pause=pause), Cmd.LOAD_KV, Status.TRUNCATED)
    add(Step(good_kv[:1], pause=pause), NO_CMD, Status.TRUNCATED)
    add(Step(good_kv[:3], pause=pause), Cmd.LOAD_KV, Status.TRUNCATED)
    # oversized: the whole frame (full of start bytes) is swallowed, then one reply
    n = max_payload + 1
    junk = bytes([0xA5]) * n
    body = bytes([Cmd.LOAD_KV]) + n.to_bytes(2, "little") + junk
    add(Step(bytes([0xA5]) + body + crc16(body).to_bytes(2, "big")), Cmd.LOAD_KV,
        Status.OVERSIZED)
    # oversized length, then the line goes quiet
    add(Step(bytes([0xA5, Cmd.QUERY, 0xFF, 0xFF]) + bytes(10), pause=pause), Cmd.QUERY,
        Status.OVERSIZED)
    if line_error:
        add(Step(encode_request(Cmd.WRITE_REG, write_reg_payload(Reg.SEQ_LEN, 7)),
                 line_error_at=3), Cmd.WRITE_REG, Status.LINE_ERROR)
    # junk outside a frame: ignored, no reply
    add(Step(bytes([0x00, 0x5A, 0xFF, 0x13]), replies=0), None, None)
    # a write the core itself rejects (top_k = 0): applied as a frame, refused by the core
    add(Step(encode_request(Cmd.WRITE_REG, write_reg_payload(Reg.TOP_K, 0))), Cmd.WRITE_REG,
        Status.OK)
    add(Step(encode_request(Cmd.READ_REGS, read_regs_payload(0, Reg.ERROR_ADDR + 1))),
        Cmd.READ_REGS, Status.OK)
    add(Step(encode_request(Cmd.WRITE_REG, write_reg_payload(Reg.STATUS, 2))), Cmd.WRITE_REG,
        Status.OK)
    return steps, want
