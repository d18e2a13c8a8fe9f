"""Host side of the board link (protocol in :mod:`spec.protocol`): a library and ``sofa host``.

Parts, each usable on its own (the codec itself is :mod:`spec.protocol`):

* **transports**: :class:`SerialTransport` (pyserial) and :class:`SimulatedBoard`, a Python
  model of a board that answers like the RTL (same checks in the same order, the register rules
  of :mod:`spec.regmap`, ``O`` from :func:`sim.golden.sofa_attention`), for tests and demos.
* :class:`SofaHost`: IDENT, registers, counters, K/V loading and queries split into frames that
  fit the board's ``max_payload``; an error reply raises :class:`LinkError`, a register write the
  core rejected raises :class:`CoreRejected`; a board of another protocol version, or (with
  ``expect``) built from another config, raises :class:`ProtocolError` naming the difference.

Command line (``.venv/bin/sofa host``)::

    sofa host --port /dev/ttyUSB1 ident
    sofa host --port /dev/ttyUSB1 selftest --seq 256 --rows 4
    sofa host --sim tiny selftest           # the simulated board, no hardware
    sofa host --port /dev/ttyUSB1 --expect ice40 selftest   # and the board must be ice40
    sofa host --port /dev/ttyUSB1 counters
    sofa host --port /dev/ttyUSB1 read-reg 0 5
    sofa host --port /dev/ttyUSB1 write-reg 1 2

Bad arguments (a register address outside the map, a value that does not fit 32 bits, a
sequence longer than the board's, nan or zero where a positive number is needed) exit with
status 2 and one line; a board that answers with an error or not at all exits with 1.
"""

import time

import numpy as np

from spec.config import ConfigError, RunParams, SofaConfig, preset
from spec.protocol import (N_REGS, NO_CMD, SOF_REQUEST, Cmd, ProtocolError, ReplyParser, Status,
                           check_expected, cmd_name, config_from_ident, crc16, decode_out,
                           decode_rows,
                           elem_bytes, encode_reply, encode_request, ident_bytes,
                           link_regs, load_kv_payload, out_bytes, parse_ident, query_payload,
                           read_mem_payload, read_regs_payload, write_mem_payload,
                           write_reg_payload)
from spec.job import job_end
from spec.regmap import (COUNTER_BASE, COUNTERS, WORD_BITS, Reg, counter_names, registers,
                         expected_counters, parameter_writes, register)
from spec.validate import check_float, check_int, choice_arg, float_arg, int_arg


__all__ = ["LinkError", "CoreRejected", "JobFailed", "ProtocolError", "SerialTransport",
           "SimulatedBoard", "SofaHost", "config_from_ident"]


class LinkError(RuntimeError):
    """The board answered with an error status."""

    def __init__(self, cmd, status):
        self.cmd = cmd
        self.status = Status(status) if status in Status._value2member_map_ else status
        text = self.status.name if isinstance(self.status, Status) else f"status {status:#04x}"
        super().__init__(f"board replied {text} to {cmd_name(cmd)}")


class JobFailed(RuntimeError):
    """A memory board's job ended with a non-zero JOB_ERROR (:class:`spec.job.JobError`)."""

    def __init__(self, code):
        from spec.job import JobError
        self.code = JobError(code) if code in JobError._value2member_map_ else code
        name = self.code.name if isinstance(self.code, JobError) else str(code)
        super().__init__(f"the job failed: JOB_ERROR {name}")


class CoreRejected(RuntimeError):
    """The core ignored a register write (out-of-range value, read-only register or busy)."""

    def __init__(self, addr, value):
        self.addr, self.value = addr, value
        name = Reg(addr).name if addr in Reg._value2member_map_ else str(addr)
        super().__init__(f"the core rejected writing {value} to register {name}")


# -- transports ------------------------------------------------------------------------------------

class SerialTransport:
    """A serial port through pyserial (8N1, no flow control).

    Parameters
    ----------
    port : str
        Device, e.g. ``/dev/ttyUSB1`` (iCEBreaker: the second FTDI channel) or ``COM5``.
    baud : int
        Must match the bitstream (``gen.boards --baud``; 115200 by default).
    """

    def __init__(self, port, baud=115200):
        try:
            import serial
        except ImportError:
            raise ProtocolError("pyserial is not installed (pip install pyserial)") from None
        try:
            self._port = serial.Serial(port, baudrate=baud, bytesize=8, parity="N",
                                       stopbits=1, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as e:
            raise ConfigError(f"--port {port}: cannot open it: {e}") from None

    def write(self, data):
        self._port.write(data)
        self._port.flush()

    def read(self, n, timeout):
        deadline = time.monotonic() + timeout
        out = bytearray()
        while len(out) < n and time.monotonic() < deadline:
            out += self._port.read(n - len(out))
        return bytes(out)

    def drain(self):
        """Discard anything received so far."""
        self._port.reset_input_buffer()

    def close(self):
        self._port.close()


class SimulatedBoard:
    """A Python model of a board: the link protocol of :mod:`hw.hostlink` over a
    :class:`hw.top.SofaCore` modelled with the golden model.

    Requests written are parsed like the RTL does (start-byte hunt, the checks in the RTL's
    order, ``max_payload``, an incomplete frame becomes ``TRUNCATED`` when the host waits for
    a reply); registers follow the core's rules (range checks, error flag and address, counter
    clear); a QUERY computes ``O`` with :func:`sim.golden.sofa_attention` over the loaded K/V.
    Counters: those the golden model defines (``keys``, ``misses``, ``rescales``, ``rows``,
    ``k_rows_predict``, ``kv_rows_fetch``, the SADS counts, ``qk_cycles``, ``pv_cycles``,
    ``macs``) are exact; ``busy_cycles`` and ``cycles`` come from the cycle model
    :func:`sim.perf.core_cycles` (within 5 % of the RTL); the stall and prediction cycle
    counters are not modelled and read 0.
    """

    def __init__(self, cfg, *, max_payload=1024, clk_hz=12_000_000, divisor=104,
                 timeout_cycles=600_000, queue_bytes=None):
        if cfg.memory != "onchip":
            raise ConfigError(f"config {cfg.name!r} has memory = {cfg.memory!r}: a board "
                              f"carries the on-chip core (memory = 'onchip'), the "
                              f"memory-attached one has no host link")
        self.cfg = cfg
        self.max_payload = max_payload
        self.n_regs = link_regs(cfg)
        # It answers each request as it arrives, so its queue (in IDENT) never fills.
        self._ident = ident_bytes(cfg, max_payload=max_payload, clk_hz=clk_hz,
                                  divisor=divisor, timeout_cycles=timeout_cycles,
                                  queue_bytes=queue_bytes)
        self.K = np.zeros((cfg.max_seq_len, cfg.d), dtype=np.int64)
        self.V = np.zeros((cfg.max_seq_len, cfg.d), dtype=np.int64)
        self.regs = {r.address: r.reset(cfg) for r in registers(cfg) if r.access == "rw"}
        self.error, self.error_addr = 0, 0
        self.counters = dict.fromkeys(counter_names(), 0)
        self._rx = bytearray()
        self._tx = bytearray()
        self.applied = 0            # frames that changed state (for tests)

    # transport interface
    def write(self, data):
        self._rx += bytes(data)
        self._parse(final=False)

    def read(self, n, timeout):
        if self._rx:
            self._parse(final=True)          # the host waits: the inter-byte timeout expires
        out = bytes(self._tx[:n])
        del self._tx[:n]
        return out

    def drain(self):
        self._tx.clear()

    def close(self):
        pass

    # protocol
    def _reply(self, cmd, status, payload=b""):
        self._tx += encode_reply(cmd, status, payload)

    def _parse(self, final):
        while True:
            start = self._rx.find(bytes([SOF_REQUEST]))
            if start < 0:
                self._rx.clear()
                return
            del self._rx[:start]
            buf = self._rx
            if len(buf) >= 4:
                n = int.from_bytes(buf[2:4], "little")
                if n > self.max_payload:             # discarded: len + 2 more bytes
                    if len(buf) >= 6 + n or final:
                        cmd = buf[1]
                        del buf[:6 + n]
                        self._reply(cmd, Status.OVERSIZED)
                        continue
                    return
                if len(buf) >= 6 + n:
                    frame = bytes(buf[:6 + n])
                    del buf[:6 + n]
                    self._frame(frame)
                    continue
            if final:
                cmd = buf[1] if len(buf) >= 2 else NO_CMD
                buf.clear()
                self._reply(cmd, Status.TRUNCATED)
            return

    def _frame(self, frame):
        cmd, n = frame[1], int.from_bytes(frame[2:4], "little")
        payload = frame[4:4 + n]
        if crc16(frame[1:]) != 0:
            return self._reply(cmd, Status.BAD_CRC)
        if cmd not in Cmd._value2member_map_:
            return self._reply(cmd, Status.UNKNOWN_CMD)
        cfg = self.cfg
        q_row = cfg.d * elem_bytes(cfg)
        if cmd == Cmd.IDENT:
            ok_len = n == 0
        elif cmd == Cmd.WRITE_REG:
            ok_len = n == 5
        elif cmd == Cmd.READ_REGS:
            ok_len = n == 2
        elif cmd == Cmd.LOAD_KV:
            ok_len = n >= 2 + 2 * q_row and (n - 2) % (2 * q_row) == 0
        else:
            ok_len = n >= q_row and n % q_row == 0
        if not ok_len:
            return self._reply(cmd, Status.BAD_LENGTH)
        n_regs = self.n_regs
        if cmd == Cmd.WRITE_REG and payload[0] >= n_regs or cmd == Cmd.READ_REGS \
                and (payload[1] == 0 or payload[0] + payload[1] > n_regs) \
                or cmd == Cmd.LOAD_KV and int.from_bytes(payload[:2], "little") \
                + (n - 2) // (2 * q_row) > cfg.max_seq_len:
            return self._reply(cmd, Status.BAD_ARG)
        if cmd == Cmd.IDENT:
            return self._reply(cmd, Status.OK, self._ident)
        if cmd == Cmd.READ_REGS:
            vals = [self._read(a) for a in range(payload[0], payload[0] + payload[1])]
            return self._reply(cmd, Status.OK, b"".join(v.to_bytes(4, "little") for v in vals))
        self.applied += 1
        if cmd == Cmd.WRITE_REG:
            self._write(payload[0], int.from_bytes(payload[1:5], "little"))
            return self._reply(cmd, Status.OK, self._read(Reg.STATUS).to_bytes(4, "little"))
        if cmd == Cmd.LOAD_KV:
            start = int.from_bytes(payload[:2], "little")
            rows = decode_rows(cfg, payload[2:], 2)
            for j, (k, v) in enumerate(rows):
                self.K[start + j], self.V[start + j] = k, v
            return self._reply(cmd, Status.OK)
        Q = np.array([r[0] for r in decode_rows(cfg, payload, 1)])
        out = self._query(Q)
        ob = out_bytes(cfg)
        return self._reply(cmd, Status.OK, b"".join(int(x).to_bytes(ob, "little", signed=True)
                                                    for x in out.ravel()))

    def _write(self, addr, value):
        reg = next((r for r in registers(self.cfg) if r.address == addr), None)
        if reg is not None and reg.access == "rw":
            if reg.high and reg.value_width(self.cfg) > WORD_BITS:
                value |= self.regs[register(reg.high).address] << WORD_BITS
            lo, hi = reg.legal(self.cfg)
            if lo <= value <= hi:
                self.regs[addr] = value
            else:
                self.error, self.error_addr = 1, addr
        elif addr == Reg.STATUS:
            if value & 1:
                self.counters = dict.fromkeys(counter_names(), 0)
            if value & 2:
                self.error = 0
        else:
            self.error, self.error_addr = 1, addr

    def _read(self, addr):
        if addr in self.regs:
            return self.regs[addr] & ((1 << WORD_BITS) - 1)
        if addr == Reg.STATUS:
            return self.error << 1
        if addr == Reg.ERROR_ADDR:
            return self.error_addr
        if COUNTER_BASE <= addr < N_REGS:
            return self.counters[COUNTERS[addr - COUNTER_BASE].name] & \
                ((1 << self.cfg.counter_width) - 1)
        return 0

    def _query(self, Q):
        """``O`` of one QUERY frame (one call); its counters: exact ones, busy from the model."""
        from sim.golden import sofa_attention
        from sim.perf import core_cycles
        cfg = self.cfg
        S = self.regs[Reg.SEQ_LEN]
        adapt = {name: self.regs[register(name).address] for name in
                 ("adapt_mass", "adapt_scale", "adapt_shift", "tail_scale")} if cfg.adapt_bins else {}
        if adapt and (not adapt["adapt_mass"] or self.regs[Reg.DENSE]):
            adapt["tail_scale"] = 0            # the core blends only with the adaptive budget
        params = RunParams(seq_len=S, top_k=self.regs[Reg.TOP_K], radius=self.regs[Reg.RADIUS],
                           scale_log2e=self.regs[Reg.SCALE], dense=bool(self.regs[Reg.DENSE]),
                           **adapt)
        K, V = self.K[:S], self.V[:S]
        res = sofa_attention(Q, K, V, cfg, params)
        busy = core_cycles(cfg, params, res, Q, K, V)
        add = expected_counters(cfg, params, res.counters(), calls=[len(Q)])
        add |= {"busy_cycles": busy, "cycles": busy}
        for k, v in add.items():
            self.counters[k] += v
        return res.out


# -- the host API ------------------------------------------------------------------------------------

class SofaHost:
    """Talks to a board (or :class:`SimulatedBoard`) over ``transport``.

    Parameters
    ----------
    transport : object
        ``write(bytes)``, ``read(n, timeout) -> bytes``, ``drain()``, ``close()``.
    timeout : float
        Seconds to wait for a reply (a QUERY's reply is timed by its size at ``baud``).
    baud : int
        Line rate, to size the reply timeout of long replies.
    expect : SofaConfig, optional
        The board's config: :meth:`ident` raises :class:`ProtocolError` naming each difference.
    """

    def __init__(self, transport, *, timeout=2.0, baud=115200, expect=None):
        self.transport = transport
        self.timeout = check_float("timeout", timeout, 0, 3600, lo_open=True)
        self.baud = check_int("baud", baud, 1)
        if expect is not None and not isinstance(expect, SofaConfig):
            raise TypeError(f"expect must be a SofaConfig or None, not {expect!r}")
        self.expect = expect
        self._parser = ReplyParser()
        self.info = None
        self.cfg = None

    def close(self):
        self.transport.close()

    def request(self, cmd, payload=b"", *, expect_len=None):
        """Send one request and return its reply payload; raises :class:`LinkError`."""
        frame = encode_request(cmd, payload)
        self.transport.write(frame)
        wire = 10.0 / self.baud
        budget = self.timeout + wire * (len(frame) + (expect_len or 0) + 16)
        deadline = time.monotonic() + budget
        replies = []
        while not replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError(f"no reply to {cmd_name(cmd)} within {budget:.1f} s")
            replies = self._parser.feed(self.transport.read(4096, min(left, 0.05)))
        reply = replies[0]
        if len(replies) > 1:
            raise ProtocolError(f"{len(replies)} replies to one request")
        if reply.status != Status.OK:
            raise LinkError(reply.cmd, reply.status)
        if reply.cmd != int(cmd):
            raise ProtocolError(f"reply to command {reply.cmd:#04x}, expected {int(cmd):#04x}")
        if expect_len is not None and len(reply.payload) != expect_len:
            raise ProtocolError(f"reply of {len(reply.payload)} bytes, expected {expect_len}")
        return reply.payload

    def ident(self):
        """Read the board's configuration (sets :attr:`info`, :attr:`cfg`); a :class:`ProtocolError`
        for another protocol version, a config no build can have, or one other than ``expect``."""
        info = parse_ident(self.request(Cmd.IDENT))
        cfg = config_from_ident(info)
        if self.expect is not None:
            check_expected(cfg, self.expect)
        self.info, self.cfg = info, cfg
        return self.info

    def _need_cfg(self):
        if self.cfg is None:
            self.ident()
        return self.cfg

    def read_regs(self, addr, count=1):
        data = self.request(Cmd.READ_REGS, read_regs_payload(addr, count), expect_len=4 * count)
        return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]

    def write_reg(self, addr, value):
        """Write a register; raises :class:`CoreRejected` (and clears the flag) if refused."""
        status = int.from_bytes(self.request(Cmd.WRITE_REG, write_reg_payload(addr, value),
                                             expect_len=4), "little")
        if status & 2:
            where = self.read_regs(Reg.ERROR_ADDR)[0]
            self.request(Cmd.WRITE_REG, write_reg_payload(Reg.STATUS, 2), expect_len=4)
            raise CoreRejected(where, value)
        return status

    def set_params(self, params):
        """Write the run-time registers of ``params`` (a :class:`RunParams`)."""
        cfg = self._need_cfg()
        params.validate(cfg)
        for reg, value in parameter_writes(cfg, params):
            self.write_reg(reg, value)

    def clear_counters(self):
        self.write_reg(Reg.STATUS, 0b11)

    def counters(self):
        """``{name: value}`` of the performance counters (``counter_width`` bits, wrapping)."""
        if self._need_cfg().counter_width == 0:
            raise ProtocolError("this board has no performance counters (built with "
                                "counter_width = 0)")
        names = counter_names(self.cfg)
        return dict(zip(names, self.read_regs(COUNTER_BASE, len(names))))

    def load_kv(self, K, V, start=0):
        """Load K/V rows from row ``start``, in as many frames as ``max_payload`` needs."""
        cfg = self._need_cfg()
        K, V = np.asarray(K), np.asarray(V)
        per = (self.info["max_payload"] - 2) // (2 * cfg.d * elem_bytes(cfg))
        for a in range(0, len(K), per):
            self.request(Cmd.LOAD_KV, load_kv_payload(cfg, start + a, K[a:a + per],
                                                      V[a:a + per]), expect_len=0)

    def query(self, Q):
        """``O`` of the rows of ``Q`` (int64 ``[T, d]``, ``out_frac`` fraction bits)."""
        cfg = self._need_cfg()
        Q = np.asarray(Q)
        per = self.info["max_payload"] // (cfg.d * elem_bytes(cfg))
        out = []
        for a in range(0, len(Q), per):
            rows = Q[a:a + per]
            n = len(rows) * cfg.d * out_bytes(cfg)
            out.append(decode_out(cfg, self.request(Cmd.QUERY, query_payload(cfg, rows),
                                                    expect_len=n), len(rows)))
        return np.concatenate(out)

    def attention(self, Q, K, V, params):
        """Load K/V, set the registers, run the queries; returns ``O``."""
        self.load_kv(K, V)
        self.set_params(params)
        return self.query(Q)

    # -- memory boards --------------------------------------------------------------------------

    def _need_memory(self):
        self._need_cfg()
        if not self.info["memory"]:
            raise ProtocolError("this board carries the on-chip core: it has no memory "
                                "(use load_kv and query)")
        return self.info["mem_bytes"]

    def write_mem(self, addr, data):
        """Write ``data`` to a memory board's memory from byte ``addr``."""
        self._need_memory()
        data, per = bytes(data), self.info["max_payload"] - 4
        for a in range(0, len(data), per):
            self.request(Cmd.WRITE_MEM, write_mem_payload(addr + a, data[a:a + per]),
                         expect_len=0)

    def read_mem(self, addr, count):
        """``count`` bytes of a memory board's memory from byte ``addr``."""
        self._need_memory()
        out, per = bytearray(), self.info["max_payload"]
        while len(out) < count:
            n = min(per, count - len(out))
            out += self.request(Cmd.READ_MEM, read_mem_payload(addr + len(out), n),
                                expect_len=n)
        return bytes(out)

    def run_job(self, job, Q, K, V, params, *, rass=True, poll_s=0.01, job_timeout=600.0):
        """Run a job on a memory board: Q, K, V (``[heads, rows, d]``) into memory where the
        descriptor ``job`` (:class:`spec.job.JobDescriptor`) places them, the registers, start,
        wait for done; returns ``O`` ``[heads, queries, d]``. Raises :class:`JobFailed` for a
        non-zero JOB_ERROR and :class:`ProtocolError` if done does not come within
        ``job_timeout`` seconds."""
        from sim.jobs import memory_image, read_outputs
        from spec.regmap import job_writes
        mem_bytes = self._need_memory()
        cfg = self.cfg
        params.validate(cfg)
        end = job_end(cfg, job)
        if end > mem_bytes:
            raise ConfigError(f"the job's tensors end at byte {end}, beyond the board's "
                              f"{mem_bytes}-byte memory")
        for addr, data in sorted(memory_image(cfg, job, Q, K, V).items()):
            self.write_mem(addr, data)
        for reg, value in parameter_writes(cfg, params) + job_writes(cfg, job, rass=rass):
            self.write_reg(reg, value)
        self.write_reg(Reg.STATUS, 0b11)
        self.write_reg(Reg.CONTROL, 1)
        deadline = time.monotonic() + job_timeout
        while not self.read_regs(Reg.JOB_STATUS)[0] & 1:
            if time.monotonic() > deadline:
                raise ProtocolError(f"the job was not done within {job_timeout:g} s")
            time.sleep(poll_s)
        code = self.read_regs(Reg.JOB_ERROR)[0]
        if code:
            raise JobFailed(code)
        return read_outputs(cfg, job, self.read_mem)


# -- command line -------------------------------------------------------------------------------------

def _selftest_params(cfg, args):
    """``(S, top_k, scale_log2e)`` of ``selftest``'s options for a board built from ``cfg``:
    each checked against the board's limits, never capped."""
    S = min(256, cfg.max_seq_len) if args.seq is None else args.seq
    check_int("--seq", S, 1, cfg.max_seq_len)
    top_k = cfg.k_max if args.top_k is None else check_int("--top-k", args.top_k, 1, cfg.k_max)
    try:
        scale = RunParams.scale_from_float(cfg, args.scale)
    except ConfigError as e:
        raise ConfigError(f"--scale {args.scale!r}: {e}") from None
    if scale == 0:
        raise ConfigError(f"--scale {args.scale!r} rounds to 0 with c_frac = {cfg.c_frac}; "
                          f"the smallest is {1 / (1 << cfg.c_frac):g}")
    return S, top_k, scale


def _selftest_job(cfg, S, rows, mem_bytes):
    """The one-head job of ``selftest`` on a memory board, packed from address 0; a
    :class:`ConfigError` names ``--seq``/``--rows`` when it does not fit the memory."""
    from sim.jobs import layout_job
    from spec.job import JobDescriptor
    job = layout_job(cfg, JobDescriptor(seq_len=S, queries=rows))
    end = job_end(cfg, job)
    if end > mem_bytes:
        raise ConfigError(f"--seq {S} --rows {rows}: Q, K, V and O take {end} bytes, more "
                          f"than the board's {mem_bytes}-byte memory")
    return job


def _memory_selftest(host, args, S, top_k, scale):
    from sim.jobs import golden_job
    from sim.workloads import structured
    info, cfg = host.info, host.cfg
    job = _selftest_job(cfg, S, args.rows, info["mem_bytes"])
    Q, K, V = (x[None] for x in structured(cfg, np.random.default_rng(args.seed), args.rows, S))
    params = RunParams(seq_len=S, top_k=top_k, radius=cfg.derived.radius_inf,
                       scale_log2e=scale, dense=args.dense)
    t0 = time.monotonic()
    out = host.run_job(job, Q, K, V, params)
    t1 = time.monotonic()
    want = golden_job(cfg, params, job, Q, K, V).out
    counters = host.counters() if cfg.counter_width else None
    bad = int(np.sum(out != want))
    print(f"memory board: d={cfg.d} q_lanes={cfg.q_lanes} {info['mem_bytes']} bytes of memory, "
          f"clk {info['clk_hz'] / 1e6:g} MHz; S={S}, {args.rows} queries, "
          f"{'dense' if args.dense else f'top_k={top_k}'}")
    busy = (f"; core busy {counters['busy_cycles']} cycles "
            f"= {counters['busy_cycles'] / max(1, args.rows):.0f} per query"
            if counters else "; no counters in this build")
    print(f"job (memory writes, registers, run, O read back) {t1 - t0:.2f} s{busy}")
    print(f"O: {out.size - bad}/{out.size} elements match the golden model")
    return 0 if bad == 0 else 1


def selftest(host, args):
    """``sofa host selftest`` on ``host`` with the parsed ``args``; 0 if ``O`` matches."""
    from sim.golden import sofa_attention
    from sim.workloads import structured
    info = host.ident()
    cfg = host.cfg
    S, top_k, scale = _selftest_params(cfg, args)
    if info["memory"]:
        return _memory_selftest(host, args, S, top_k, scale)
    rng = np.random.default_rng(args.seed)
    Q, K, V = structured(cfg, rng, args.rows, S)
    params = RunParams(seq_len=S, top_k=top_k, radius=cfg.derived.radius_inf,
                       scale_log2e=scale, dense=args.dense)
    t0 = time.monotonic()
    host.load_kv(K, V)
    t1 = time.monotonic()
    host.set_params(params)
    host.clear_counters()
    t2 = time.monotonic()
    out = host.query(Q)
    t3 = time.monotonic()
    want = sofa_attention(Q, K, V, cfg, params).out
    counters = host.counters() if cfg.counter_width else None
    bad = int(np.sum(out != want))
    print(f"board: d={cfg.d} max_seq_len={cfg.max_seq_len} predict_keys={cfg.predict_keys} "
          f"adapt_bins={cfg.adapt_bins} clk {info['clk_hz'] / 1e6:g} MHz; "
          f"S={S}, {args.rows} queries, {'dense' if args.dense else f'top_k={params.top_k}'}")
    busy = (f"; core busy {counters['busy_cycles']} cycles "
            f"= {counters['busy_cycles'] / max(1, args.rows):.0f} per query"
            if counters else "; no counters in this build")
    print(f"load K/V {t1 - t0:.2f} s, registers {t2 - t1:.2f} s, queries {t3 - t2:.2f} s "
          f"(the link dominates){busy}")
    print(f"O: {out.size - bad}/{out.size} elements match the golden model")
    return 0 if bad == 0 else 1


def add_arguments(parser):
    """``sofa host``'s options and its commands."""
    from spec.config import PRESETS
    # Boards carry the on-chip core; the memory-attached one has no host link.
    boards = [n for n, c in PRESETS.items() if c.memory == "onchip"]
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial device, e.g. /dev/ttyUSB1 (default: none)")
    where.add_argument("--sim", metavar="PRESET", type=choice_arg(boards),
                       help=f"a simulated board (golden model) with this preset, no hardware: "
                            f"{', '.join(boards)} (default: none)")
    parser.add_argument("--baud", type=int_arg(300, 12_000_000), default=115200,
                        help="line rate, 300 … 12000000 (default: 115200)")
    parser.add_argument("--timeout", type=float_arg(0, 3600, lo_open=True), default=2.0,
                        help="seconds to wait for a reply, above 0 and at most 3600 "
                             "(default: 2.0)")
    parser.add_argument("--expect", metavar="PRESET|FILE",
                        help=f"the board must be built from this preset ({', '.join(PRESETS)}) "
                             f"or JSON config: every IDENT field is compared (default: none)")
    sub = parser.add_subparsers(dest="host_command", metavar="COMMAND", required=True,
                                parser_class=type(parser))
    sub.add_parser("ident", help="print the board's configuration")
    sub.add_parser("counters", help="print the performance counters")
    rr = sub.add_parser("read-reg", help="read registers")
    # A memory board's register space is larger (IDENT n_regs), so is an adaptive core's.
    rr.add_argument("addr", type=int_arg(0, 255),
                    help=f"first register, 0 … the board's n_regs - 1 ({N_REGS - 1} on the "
                         f"on-chip core without adapt_bins)")
    rr.add_argument("count", type=int_arg(1, 255), nargs="?", default=1,
                    help="registers to read (default: 1)")
    wr = sub.add_parser("write-reg", help="write a register")
    wr.add_argument("addr", type=int_arg(0, 255),
                    help=f"register, 0 … the board's n_regs - 1 ({N_REGS - 1} on the on-chip "
                         f"core without adapt_bins)")
    wr.add_argument("value", type=int_arg(0, (1 << 32) - 1), help="value, 0 … 2^32-1")
    st = sub.add_parser("selftest", help="random attention on the board vs the golden model")
    st.add_argument("--seq", type=int_arg(1), default=None,
                    help="S, 1 … the board's max_seq_len (default: 256, or max_seq_len if "
                         "smaller)")
    st.add_argument("--rows", type=int_arg(1, 65535), default=4,
                    help="queries, 1 … 65535 (default: 4)")
    st.add_argument("--top-k", type=int_arg(1), default=None,
                    help="keys kept per tile, 1 … the board's k_max (default: k_max)")
    st.add_argument("--dense", action="store_true", help="dense mode (default: sparse)")
    st.add_argument("--scale", type=float_arg(0, lo_open=True), default=1e-3,
                    help="c = s_q·s_k·log2(e)/sqrt(d), above 0 (default: 0.001)")
    st.add_argument("--seed", type=int_arg(0), default=1, help="data seed (default: 1)")


#: Failures of the board or the line rather than of the input (``sofa`` exits 1).
FAILURES = (LinkError, CoreRejected, JobFailed, ProtocolError)


def check(args):
    """The checks of ``sofa host``'s options that need no board: the register range of
    ``read-reg``, and with ``--sim`` the ``selftest`` options against the simulated board's
    preset (a real board's limits are known once it answers IDENT). Opens nothing."""
    if args.host_command == "read-reg":
        check_int("count", args.count, 1, 255 - args.addr + 1)
    if args.sim and args.host_command in ("read-reg", "write-reg"):
        _check_reg_range(args, link_regs(preset(args.sim)))
    if args.sim and args.host_command == "selftest":
        _selftest_params(preset(args.sim), args)
    return _expected_config(args)


def _expected_config(args):
    """The config of ``--expect`` (a preset name, else a JSON file), or None."""
    from spec.config import PRESETS, load_config
    if args.expect is None or args.expect in PRESETS:
        return None if args.expect is None else preset(args.expect)
    if not args.expect.lower().endswith(".json"):
        raise ConfigError(f"--expect {args.expect!r} is neither a preset ({', '.join(PRESETS)}) "
                          f"nor a .json config file")
    return load_config(path=args.expect, what="--expect")


def _check_reg_range(args, n_regs):
    """``read-reg``/``write-reg``'s addresses against a board with ``n_regs`` registers."""
    check_int("addr", args.addr, 0, n_regs - 1)
    if args.host_command == "read-reg":
        check_int("count", args.count, 1, n_regs - args.addr)


def run(args):
    """``sofa host``: one command against a board or a simulated one."""
    expect = check(args)
    if args.sim:
        transport = SimulatedBoard(preset(args.sim))
    else:
        transport = SerialTransport(args.port, args.baud)
    host = SofaHost(transport, timeout=args.timeout, baud=args.baud, expect=expect)
    try:
        if args.host_command == "ident":
            for k, v in host.ident().items():
                print(f"{k:>16} {v}")
        elif args.host_command == "counters":
            for k, v in host.counters().items():
                print(f"{k:>18} {v}")
        elif args.host_command == "read-reg":
            _check_reg_range(args, host.ident()["n_regs"])
            for n, v in enumerate(host.read_regs(args.addr, args.count)):
                print(f"{args.addr + n:3d} {v}")
        elif args.host_command == "write-reg":
            _check_reg_range(args, host.ident()["n_regs"])
            print(f"status {host.write_reg(args.addr, args.value):#x}")
        else:
            return selftest(host, args)
    finally:
        host.close()
    return 0
