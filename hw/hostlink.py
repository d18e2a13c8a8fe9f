"""HostLink: the request/reply protocol of :mod:`spec.protocol` in hardware, over a byte stream.

It receives request bytes (from :class:`hw.uart.UARTRx`), buffers the payload, checks the frame
in the protocol's order and only then drives a :class:`hw.top.SofaCore`'s register port and its
``kv_load`` and ``q`` streams; the reply, with ``O`` serialised as the core produces it, leaves
as bytes (to :class:`hw.uart.UARTTx`). The frame format, the commands, the status codes and
the IDENT reply are specified in :mod:`spec.protocol`.

For a memory-attached config (``memory = "axi"``) the link is that of a memory board: no
``kv_load``, ``q`` and ``o``; WRITE_MEM and READ_MEM drive a byte port of the board's memory
(:class:`hw.axiram.AxiBram`), and the register port is a request/acknowledge one (in front of
:class:`hw.axil.AxiLiteBridge`), since the core's registers sit behind AXI4-Lite.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.sufa import out_layout
from hw.top import kv_load_layout, query_layout
from spec.protocol import (CRC_INIT, CRC_POLY, NO_CMD, SOF_REPLY, SOF_REQUEST, Cmd, Status,
                           check_link_params, check_mem_bytes, default_queue_bytes, elem_bytes,
                           ident_bytes, link_regs, out_bytes)
from spec.regmap import Reg


__all__ = ["HostLink"]


def _crc16_step(crc, byte):
    """The same update as :func:`spec.protocol.crc16` for one byte, as an Amaranth expression."""
    bits = [crc[i] ^ (byte[i - 8] if i >= 8 else 0) for i in range(16)]
    for _ in range(8):
        msb = bits[15]
        bits = [(bits[i - 1] if i else Const(0, 1)) ^ (msb if (CRC_POLY >> i) & 1 else 0)
                for i in range(16)]
    return Cat(*bits)


class HostLink(wiring.Component):
    """Parser, dispatcher and responder of the host protocol (see the module docstring).

    Receives request bytes on :py:`rx`, buffers the payload, checks the frame and then drives
    the core's register port and its :py:`kv_load` and :py:`q` streams; the reply leaves on
    :py:`tx`, with ``O`` taken from the core's :py:`o` stream and serialised as it arrives
    (backpressure from :py:`tx` stalls the core, nothing is buffered).

    Parameters
    ----------
    cfg : SofaConfig
        The core's configuration.
    max_payload : int
        Request payload buffer in bytes; larger requests are answered with ``OVERSIZED``.
        At least one K/V row pair (``2 + 2·d·elem_bytes``) and at most what keeps the
        largest reply (a QUERY of as many rows as fit) within the 16-bit length field.
    timeout_cycles : int
        Idle cycles inside a frame after which it is answered with ``TRUNCATED``.
    queue_bytes : int, optional
        The request queue in bytes (1, or a power of two from 16; default: the smallest that holds one
        largest request frame). Bytes wait there while a request executes; see
        :mod:`spec.protocol` for the rule that keeps it from overflowing and the ``BUSY``
        reply when it does.
    clk_hz, divisor : int
        Reported in the IDENT reply (the clock and the UART bit time); not used otherwise.
    mem_bytes : int
        A memory board's memory (:func:`spec.protocol.check_mem_bytes`); 0 for the on-chip
        core.

    Attributes
    ----------
    rx : In(stream.Signature(8))
        Request bytes (always ready: a byte that finds the queue full is dropped and makes
        the next one a ``BUSY`` reply).
    rx_error : In(1)
        A pulse for a framing error or overrun on the line (from :class:`hw.uart.UARTRx`); it
        marks the next byte, so it counts where it happened in the byte stream.
    tx : Out(stream.Signature(8))
        Reply bytes.
    kv_load, q : Out(stream)
        To the core's :py:`kv_load` and :py:`q` (on-chip core only).
    o : In(stream)
        From the core's :py:`o` (on-chip core only).
    reg_addr, reg_wdata, reg_we : Out
        To the core's register port; :py:`reg_rdata` from it. On a memory board
        :py:`reg_we` is held until :py:`reg_wdone`, and :py:`reg_re` asks for the register at
        :py:`reg_addr`, held until :py:`reg_rvalid` shows :py:`reg_rdata` (and dropped after).
    mem_addr, mem_wdata, mem_we, mem_re : Out
        A memory board's byte port, a request held until :py:`mem_ack` (the byte read is
        :py:`mem_rdata` in that cycle).
    error : Out(1)
        The last reply was an error reply.
    latency : int
        Cycles from the acceptance of the last byte of an IDENT or READ_REGS request to its
        first reply byte on :py:`tx` with the transmitter idle and the queue empty: 6 (three
        through the request queue and the register behind its block RAM; check, dispatch,
        reply start), 5 with ``queue_bytes = 1``; a WRITE_REG takes one cycle more (the
        write).
    """

    def __init__(self, cfg, *, max_payload=1024, timeout_cycles, queue_bytes=None, clk_hz=0,
                 divisor=0, mem_bytes=0):
        for name, value in (("clk_hz", clk_hz), ("divisor", divisor)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        check_link_params(cfg, max_payload=max_payload, timeout_cycles=timeout_cycles,
                          queue_bytes=queue_bytes)
        self._mem_bytes = check_mem_bytes(cfg, mem_bytes)
        self._memory = cfg.memory == "axi"
        self._n_regs = link_regs(cfg)
        self._cfg = cfg
        self._max_payload = max_payload
        self._timeout = timeout_cycles
        self._queue = default_queue_bytes(max_payload) if queue_bytes is None else queue_bytes
        self._ident = ident_bytes(cfg, max_payload=max_payload, clk_hz=clk_hz,
                                  divisor=divisor, timeout_cycles=timeout_cycles,
                                  queue_bytes=self._queue, mem_bytes=mem_bytes)
        if self._memory:
            port = {"reg_re": Out(1), "reg_rvalid": In(1), "reg_wdone": In(1),
                    "mem_addr": Out(range(mem_bytes)), "mem_wdata": Out(8), "mem_we": Out(1),
                    "mem_re": Out(1), "mem_rdata": In(8), "mem_ack": In(1)}
        else:
            port = {"kv_load": Out(stream.Signature(kv_load_layout(cfg))),
                    "q": Out(stream.Signature(query_layout(cfg))),
                    "o": In(stream.Signature(out_layout(cfg)))}
        super().__init__({
            "rx": In(stream.Signature(8)),
            "rx_error": In(1),
            "tx": Out(stream.Signature(8)),
            **port,
            "reg_addr": Out(range(self._n_regs)),
            "reg_wdata": Out(32),
            "reg_we": Out(1),
            "reg_rdata": In(32),
            "error": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def max_payload(self):
        return self._max_payload

    @property
    def timeout_cycles(self):
        return self._timeout

    @property
    def queue_bytes(self):
        return self._queue

    @property
    def mem_bytes(self):
        return self._mem_bytes

    @property
    def ident(self):
        """The IDENT reply payload (bytes)."""
        return self._ident

    @property
    def latency(self):
        return 5 if self._queue == 1 else 6

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        D, W = cfg.d, cfg.data_width
        EB, OB = elem_bytes(cfg), out_bytes(cfg)
        MAXP = self._max_payload
        Q_ROW = D * EB                       # bytes of one Q row
        KV_ROW = 2 * Q_ROW                   # bytes of one K/V row pair
        MAX_ROWS = MAXP // Q_ROW
        MEMORY, N_REGS = self._memory, self._n_regs
        N_ARGS = 6 if MEMORY else 5            # payload bytes kept as arguments

        # -- the payload buffer -------------------------------------------------------------
        m.submodules.buf = buf = memory.Memory(shape=8, depth=MAXP, init=[])
        buf_wr = buf.write_port()
        buf_rd = buf.read_port(transparent_for=())

        # -- replier (TX side) --------------------------------------------------------------
        SRC_NONE, SRC_IDENT, SRC_REGS, SRC_OUT = range(4)
        SRC_MEM = SRC_OUT                      # a memory board has no O stream
        rp_start = Signal()
        rp_cmd = Signal(8)
        rp_status = Signal(8)
        rp_len = Signal(16)
        rp_src = Signal(2)
        rp_reg = Signal(range(N_REGS))        # SRC_REGS: first register
        rp_busy = Signal()

        # -- parser (RX side) ---------------------------------------------------------------
        cmd = Signal(8)
        length = Signal(16)
        waddr = Signal(range(MAXP))            # payload bytes so far (buffer address)
        left = Signal(17)                      # bytes left in the payload / to discard
        acnt = Signal(range(N_ARGS + 1))       # payload bytes so far, saturating at N_ARGS
        crc = Signal(16, init=0xFFFF)
        args = Signal(8 * N_ARGS)              # the first payload bytes
        rows = Signal(range(MAX_ROWS + 1))
        col = Signal(range(KV_ROW))
        line_err = Signal()
        timer = Signal(range(self._timeout))
        timed_out = Signal()
        status = Signal(8)
        # command execution
        row = Signal(range(MAX_ROWS + 1))
        rd_ptr = Signal(range(MAXP))
        nbyte = Signal(range(KV_ROW))
        stage = Signal(KV_ROW * 8)
        mem_ptr = Signal(range(max(2, self._mem_bytes)))

        # -- the request queue: bytes wait here while a request executes ----------------------
        # An entry is a byte and two flags: a line error, and bytes dropped on a full queue,
        # both just before this byte (so they count where they happened in the stream).
        # A queue in block RAM is read through a register: the RAM's output is slow, and the
        # parser decodes the byte deeply. The register is one of the queue's entries.
        staged = self._queue > 1
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(
            width=10, depth=self._queue - 1 if staged else 1)
        line_pend = Signal()
        lost_pend = Signal()
        m.d.comb += [self.rx.ready.eq(1),
                     queue.w_data.eq(Cat(self.rx.payload, line_pend | self.rx_error, lost_pend)),
                     queue.w_en.eq(self.rx.valid)]
        with m.If(self.rx.valid & queue.w_rdy):
            m.d.sync += [line_pend.eq(0), lost_pend.eq(0)]
        with m.Else():
            with m.If(self.rx_error):
                m.d.sync += line_pend.eq(1)
            with m.If(self.rx.valid):
                m.d.sync += lost_pend.eq(1)

        parsing = Signal()                     # in a state that takes bytes
        got = Signal()
        if staged:
            head = Signal(10)
            head_valid = Signal()
            pop = queue.r_rdy & (~head_valid | got)
            m.d.comb += [got.eq(head_valid & parsing), queue.r_en.eq(pop)]
            with m.If(pop):
                m.d.sync += [head.eq(queue.r_data), head_valid.eq(1)]
            with m.Elif(got):
                m.d.sync += head_valid.eq(0)
        else:
            head = queue.r_data
            m.d.comb += [got.eq(queue.r_rdy & parsing), queue.r_en.eq(got)]
        rx_byte = head[:8]
        line_mark, lost_mark = head[8], head[9]
        with m.If(got):
            m.d.sync += timer.eq(0)
        with m.Elif(~timed_out):
            m.d.sync += timer.eq(timer + 1)
        m.d.comb += timed_out.eq(timer == self._timeout - 1)

        is_kv = cmd == Cmd.LOAD_KV
        row_bytes = Mux(is_kv, KV_ROW, Q_ROW)

        a_addr, a_count = args[0:8], args[8:16]
        a_value = args[8:40]
        a_start = args[0:16]
        a_maddr, a_mcount = args[0:32], args[32:48]     # WRITE_MEM / READ_MEM
        if MEMORY:
            m.d.comb += [self.mem_addr.eq(mem_ptr), self.mem_wdata.eq(buf_rd.data)]

        m.d.comb += [buf_wr.addr.eq(waddr), buf_wr.data.eq(rx_byte)]

        def start_reply(st, *, n=0, src=SRC_NONE, reg=0, command=None):
            m.d.comb += rp_start.eq(1)
            m.d.sync += [rp_cmd.eq(cmd if command is None else command), rp_status.eq(st),
                         rp_len.eq(n), rp_src.eq(src), rp_reg.eq(reg)]

        def element(region_lo, j):
            lo = region_lo + j * EB * 8
            return stage[lo:lo + W]

        m.d.comb += [buf_rd.addr.eq(rd_ptr), buf_rd.en.eq(1)]

        # Payloads are wired unconditionally (only valid qualifies them): no gating logic.
        m.d.comb += self.reg_wdata.eq(a_value)
        if not MEMORY:
            for j in range(D):
                m.d.comb += [
                    self.kv_load.payload.k[j].eq(element(0, j)),
                    self.kv_load.payload.v[j].eq(element(Q_ROW * 8, j)),
                    self.q.payload.data[j].eq(element(Q_ROW * 8, j)),
                ]
            m.d.comb += [self.kv_load.payload.index.eq(a_start + row),
                         # a frame's last query closes a partial group of q_lanes queries
                         self.q.payload.last.eq(row + 1 == rows)]

        def busy_reply():
            """Bytes were dropped before this one: answer BUSY, drop it too."""
            m.d.sync += status.eq(Status.BUSY)
            m.next = "ERROR"

        with m.FSM(name="parser"):
            with m.State("HUNT"):
                m.d.comb += parsing.eq(1)
                with m.If(got & lost_mark):
                    m.d.sync += cmd.eq(NO_CMD)
                    busy_reply()
                with m.Elif(got & (rx_byte == SOF_REQUEST)):
                    m.d.sync += [crc.eq(CRC_INIT), line_err.eq(0), waddr.eq(0), acnt.eq(0),
                                 rows.eq(0), col.eq(0), cmd.eq(NO_CMD)]
                    m.next = "CMD"

            def frame_state(name, on_byte):
                with m.State(name):
                    m.d.comb += parsing.eq(1)
                    with m.If(got & lost_mark):
                        busy_reply()
                    with m.Elif(got):
                        with m.If(line_mark):
                            m.d.sync += line_err.eq(1)
                        m.d.sync += crc.eq(_crc16_step(crc, rx_byte))
                        on_byte()
                    with m.Elif(timed_out):
                        # A framing error drops its byte, so such a frame usually ends short.
                        m.d.sync += status.eq(Mux(line_err | line_pend, Status.LINE_ERROR,
                                                  Status.TRUNCATED))
                        m.next = "ERROR"

            def on_cmd():
                m.d.sync += cmd.eq(rx_byte)
                m.next = "LEN0"

            def on_len0():
                m.d.sync += length[:8].eq(rx_byte)
                m.next = "LEN1"

            def on_len1():
                full = Cat(length[:8], rx_byte)
                m.d.sync += length[8:].eq(rx_byte)
                with m.If(full > MAXP):
                    m.d.sync += left.eq(full + 2)
                    m.next = "DISCARD"
                with m.Elif(full == 0):
                    m.next = "CRC0"
                with m.Else():
                    m.d.sync += left.eq(full)
                    m.next = "PAYLOAD"

            def on_payload():
                m.d.comb += buf_wr.en.eq(1)
                with m.Switch(acnt):
                    for k in range(N_ARGS):
                        with m.Case(k):
                            m.d.sync += args[8 * k:8 * k + 8].eq(rx_byte)
                with m.If(acnt != N_ARGS):
                    m.d.sync += acnt.eq(acnt + 1)
                with m.If(~is_kv | (acnt >= 2)):           # past LOAD_KV's start row
                    with m.If(col == row_bytes - 1):
                        m.d.sync += [col.eq(0), rows.eq(rows + 1)]
                    with m.Else():
                        m.d.sync += col.eq(col + 1)
                m.d.sync += [waddr.eq(waddr + 1), left.eq(left - 1)]
                with m.If(left == 1):
                    m.next = "CRC0"

            def on_crc0():
                m.next = "CRC1"

            def on_crc1():
                m.next = "CHECK"

            frame_state("CMD", on_cmd)
            frame_state("LEN0", on_len0)
            frame_state("LEN1", on_len1)
            frame_state("PAYLOAD", on_payload)
            frame_state("CRC0", on_crc0)
            frame_state("CRC1", on_crc1)

            with m.State("DISCARD"):
                m.d.comb += parsing.eq(1)
                with m.If(got & lost_mark):
                    busy_reply()
                with m.Else():
                    with m.If(got):
                        m.d.sync += left.eq(left - 1)
                    with m.If((got & (left == 1)) | (~got & timed_out)):
                        m.d.sync += status.eq(Status.OVERSIZED)
                        m.next = "ERROR"

            with m.State("CHECK"):
                length_ok = Signal()
                arg_ok = Signal()
                known = Signal()
                with m.Switch(cmd):
                    with m.Case(Cmd.IDENT):
                        m.d.comb += [known.eq(1), length_ok.eq(length == 0), arg_ok.eq(1)]
                    with m.Case(Cmd.WRITE_REG):
                        m.d.comb += [known.eq(1), length_ok.eq(length == 5),
                                     arg_ok.eq(a_addr < N_REGS)]
                    with m.Case(Cmd.READ_REGS):
                        m.d.comb += [known.eq(1), length_ok.eq(length == 2),
                                     arg_ok.eq((a_count != 0) & (a_addr + a_count <= N_REGS))]
                    if MEMORY:
                        with m.Case(Cmd.WRITE_MEM):
                            m.d.comb += [known.eq(1), length_ok.eq(length > 4),
                                         arg_ok.eq(a_maddr + (length - 4) <= self._mem_bytes)]
                        with m.Case(Cmd.READ_MEM):
                            m.d.comb += [known.eq(1), length_ok.eq(length == 6),
                                         arg_ok.eq((a_mcount != 0) & (a_mcount <= MAXP) &
                                                   (a_maddr + a_mcount <= self._mem_bytes))]
                    else:
                        with m.Case(Cmd.LOAD_KV):
                            m.d.comb += [known.eq(1), length_ok.eq((rows != 0) & (col == 0)),
                                         arg_ok.eq(a_start + rows <= cfg.max_seq_len)]
                        with m.Case(Cmd.QUERY):
                            m.d.comb += [known.eq(1), length_ok.eq((rows != 0) & (col == 0)),
                                         arg_ok.eq(1)]
                m.d.sync += [row.eq(0), rd_ptr.eq(Mux(is_kv, 2, 0)), nbyte.eq(0)]
                with m.If(line_err):
                    m.d.sync += status.eq(Status.LINE_ERROR)
                    m.next = "ERROR"
                with m.Elif(crc != 0):
                    m.d.sync += status.eq(Status.BAD_CRC)
                    m.next = "ERROR"
                with m.Elif(~known):
                    m.d.sync += status.eq(Status.UNKNOWN_CMD)
                    m.next = "ERROR"
                with m.Elif(~length_ok):
                    m.d.sync += status.eq(Status.BAD_LENGTH)
                    m.next = "ERROR"
                with m.Elif(~arg_ok):
                    m.d.sync += status.eq(Status.BAD_ARG)
                    m.next = "ERROR"
                with m.Else():
                    m.next = "DISPATCH"

            with m.State("ERROR"):
                with m.If(~rp_busy):
                    start_reply(status)
                    m.next = "HUNT"

            with m.State("DISPATCH"):
                with m.If(~rp_busy):
                    with m.Switch(cmd):
                        with m.Case(Cmd.IDENT):
                            start_reply(Status.OK, n=len(self._ident), src=SRC_IDENT)
                            m.next = "HUNT"
                        with m.Case(Cmd.WRITE_REG):
                            if MEMORY:
                                m.next = "WRITE_WAIT"
                            else:
                                m.d.comb += self.reg_we.eq(1)
                                m.next = "WRITE_DONE"
                        with m.Case(Cmd.READ_REGS):
                            start_reply(Status.OK, n=a_count * 4, src=SRC_REGS, reg=a_addr)
                            m.next = "HUNT"
                        if MEMORY:
                            with m.Case(Cmd.WRITE_MEM):
                                m.d.sync += [mem_ptr.eq(a_maddr), rd_ptr.eq(4),
                                             left.eq(length - 4)]
                                m.next = "MEM_A"
                            with m.Case(Cmd.READ_MEM):
                                m.d.sync += mem_ptr.eq(a_maddr)
                                start_reply(Status.OK, n=a_mcount, src=SRC_MEM)
                                m.next = "HUNT"
                        else:
                            with m.Case(Cmd.LOAD_KV):
                                m.next = "READ_A"
                            with m.Case(Cmd.QUERY):
                                start_reply(Status.OK, n=rows * (D * OB), src=SRC_OUT)
                                m.next = "READ_A"

            if MEMORY:
                with m.State("WRITE_WAIT"):     # the write goes out over AXI4-Lite
                    m.d.comb += self.reg_we.eq(1)
                    with m.If(self.reg_wdone):
                        m.next = "WRITE_DONE"
                # WRITE_MEM: a byte a request; the buffer shows rd_ptr's byte a cycle later.
                with m.State("MEM_A"):
                    m.next = "MEM_W"
                with m.State("MEM_W"):
                    m.d.comb += self.mem_we.eq(1)
                    with m.If(self.mem_ack):
                        m.d.sync += [mem_ptr.eq(mem_ptr + 1), rd_ptr.eq(rd_ptr + 1),
                                     left.eq(left - 1)]
                        with m.If(left == 1):
                            m.next = "FINISH"
                        with m.Else():
                            m.next = "MEM_A"

            with m.State("WRITE_DONE"):
                start_reply(Status.OK, n=4, src=SRC_REGS, reg=Reg.STATUS)
                m.next = "HUNT"

            if not MEMORY:
                # Row assembly: two cycles a byte (address, then data) into the staging register.
                with m.State("READ_A"):
                    m.next = "READ_B"
                with m.State("READ_B"):
                    m.d.sync += [stage.eq(Cat(stage[8:], buf_rd.data)), rd_ptr.eq(rd_ptr + 1),
                                 nbyte.eq(nbyte + 1)]
                    m.next = "READ_A"
                    with m.If(nbyte == row_bytes - 1):
                        m.d.sync += nbyte.eq(0)
                        m.next = "SEND"
                with m.State("SEND"):
                    sent = Signal()
                    with m.If(is_kv):
                        m.d.comb += [self.kv_load.valid.eq(1),
                                     sent.eq(self.kv_load.ready)]
                    with m.Else():
                        m.d.comb += [self.q.valid.eq(1), sent.eq(self.q.ready)]
                    with m.If(sent):
                        m.d.sync += row.eq(row + 1)
                        with m.If(row + 1 == rows):
                            m.next = "FINISH"
                        with m.Else():
                            m.next = "READ_A"
            with m.State("FINISH"):
                with m.If(is_kv | (cmd == Cmd.WRITE_MEM)):
                    with m.If(~rp_busy):
                        start_reply(Status.OK)
                        m.next = "HUNT"
                with m.Else():
                    m.next = "HUNT"

        # -- replier FSM -------------------------------------------------------------------
        out_crc = Signal(16)
        pcount = Signal(range(len(self._ident) + 1))   # IDENT ROM address
        pleft = Signal(16)                     # payload bytes left
        word = Signal(max(32, OB * 8))         # the register or O element being sent
        bsel = Signal(range(max(4, OB)))
        reg_ptr = Signal(range(N_REGS))
        free = Signal()
        m.d.comb += free.eq(~self.tx.valid | self.tx.ready)
        with m.If(self.tx.ready):
            m.d.sync += self.tx.valid.eq(0)

        # The IDENT bytes: a ROM with a synchronous read port (a block RAM on FPGAs).
        m.submodules.ident_rom = rom = memory.Memory(shape=8, depth=len(self._ident),
                                                     init=list(self._ident))
        rom_rd = rom.read_port(transparent_for=())
        m.d.comb += [rom_rd.addr.eq(pcount), rom_rd.en.eq(1)]
        # Both synchronous sources, the ROM and the core's registers, show the data of a new
        # address one cycle later; their addresses (pcount, reg_ptr) change only when a
        # payload byte is sent, which clears this flag for that cycle.
        fresh = Signal()
        m.d.sync += fresh.eq(1)

        def emit(byte, *, crc_it=True):
            m.d.sync += [self.tx.payload.eq(byte), self.tx.valid.eq(1)]
            if crc_it:
                m.d.sync += out_crc.eq(_crc16_step(out_crc, byte))

        # The register port: the replier's address while it sends registers, else the
        # request's (a WRITE_REG is only issued while the replier is idle).
        m.d.comb += self.reg_addr.eq(Mux(rp_busy & (rp_src == SRC_REGS), reg_ptr, a_addr))

        with m.FSM(name="replier"):
            with m.State("IDLE"):
                with m.If(rp_start):
                    m.next = "SOF"
            with m.State("SOF"):
                m.d.comb += rp_busy.eq(1)
                m.d.sync += [out_crc.eq(CRC_INIT), pcount.eq(0), pleft.eq(rp_len), bsel.eq(0),
                             reg_ptr.eq(rp_reg), self.error.eq(rp_status != Status.OK)]
                with m.If(free):
                    emit(SOF_REPLY, crc_it=False)
                    m.next = "CMD"
            for name, byte, nxt in (("CMD", rp_cmd, "STATUS"), ("STATUS", rp_status, "LEN0"),
                                    ("LEN0", rp_len[:8], "LEN1")):
                with m.State(name):
                    m.d.comb += rp_busy.eq(1)
                    with m.If(free):
                        emit(byte)
                        m.next = nxt
            with m.State("LEN1"):
                m.d.comb += rp_busy.eq(1)
                with m.If(free):
                    emit(rp_len[8:])
                    with m.If(rp_len == 0):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += rp_busy.eq(1)
                advance = Signal()
                byte = Signal(8)
                with m.Switch(rp_src):
                    with m.Case(SRC_IDENT):
                        m.d.comb += [byte.eq(rom_rd.data), advance.eq(free & fresh)]
                    with m.Case(SRC_REGS):
                        with m.If(bsel == 0):
                            if MEMORY:
                                m.d.comb += self.reg_re.eq(1)
                            m.d.comb += [byte.eq(self.reg_rdata[:8]),
                                         advance.eq(free & (self.reg_rvalid if MEMORY
                                                            else fresh))]
                            with m.If(advance):
                                m.d.sync += word.eq(self.reg_rdata >> 8)
                        with m.Else():
                            m.d.comb += [byte.eq(word[:8]), advance.eq(free)]
                            with m.If(free):
                                m.d.sync += word.eq(word >> 8)
                        with m.If(advance):
                            m.d.sync += bsel.eq(Mux(bsel == 3, 0, bsel + 1))
                            with m.If(bsel == 3):
                                m.d.sync += reg_ptr.eq(reg_ptr + 1)
                    if MEMORY:
                        with m.Case(SRC_MEM):
                            have = Signal()
                            m.d.comb += [self.mem_re.eq(~have), byte.eq(word[:8]),
                                         advance.eq(free & have)]
                            with m.If(self.mem_ack):
                                m.d.sync += [word[:8].eq(self.mem_rdata), have.eq(1),
                                             mem_ptr.eq(mem_ptr + 1)]
                            with m.If(advance):
                                m.d.sync += have.eq(0)
                    else:
                        with m.Case(SRC_OUT):
                            value = self.o.payload.value
                            wide = Signal(signed(OB * 8))
                            m.d.comb += wide.eq(value)
                            with m.If(bsel == 0):
                                m.d.comb += [byte.eq(wide[:8]), advance.eq(free & self.o.valid),
                                             self.o.ready.eq(free)]
                                with m.If(advance):
                                    m.d.sync += word.eq(wide.as_unsigned() >> 8)
                            with m.Else():
                                m.d.comb += [byte.eq(word[:8]), advance.eq(free)]
                                with m.If(free):
                                    m.d.sync += word.eq(word >> 8)
                            with m.If(advance):
                                m.d.sync += bsel.eq(Mux(bsel == OB - 1, 0, bsel + 1))
                with m.If(advance):
                    emit(byte)
                    m.d.sync += [pcount.eq(pcount + 1), pleft.eq(pleft - 1), fresh.eq(0)]
                    with m.If(pleft == 1):
                        m.next = "CRC0"
            with m.State("CRC0"):
                m.d.comb += rp_busy.eq(1)
                with m.If(free):
                    emit(out_crc[8:], crc_it=False)
                    m.next = "CRC1"
            with m.State("CRC1"):
                m.d.comb += rp_busy.eq(1)
                with m.If(free):
                    emit(out_crc[:8], crc_it=False)
                    m.next = "IDLE"
        return m
