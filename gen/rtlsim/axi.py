"""AXI verification kit: a protocol checker and a memory slave model as plain Python cycle models
(usable from the Amaranth simulator and from cocotb), and the cocotb harness around a DUT with
``m_axi_*`` / ``s_axil_*`` ports: cocotbext-axi's :class:`AxiRam` with random read latency,
error ranges and random pauses on all five channels, an :class:`AxiLiteMaster`, and monitor and
driver coroutines for the models.

Cycle models. :meth:`AxiProtocolChecker.step` and :meth:`AxiSlaveModel.clock` take a dict of
the port's signals (without the prefix: ``"arvalid"``, ``"araddr"``, …) sampled where the
clock edge sees them; a transfer happens when both VALID and READY are high there.
:meth:`AxiSlaveModel.outputs` gives the slave's signals for the cycle. In cocotb the harness
drives on the falling edge and samples in the ReadOnly phase after it (the discipline of
:mod:`gen.rtlsim.streams`; cocotbext-axi drives on the rising edge, so its values are settled
by then too).

cocotb 2.1 and cocotbext-axi 0.1.28 work together; cocotbext-axi only warns about deprecated
cocotb calls (``Task.kill``, ``setimmediatevalue``, ``Edge(signal)``, ``Event.data``), which
:func:`quiet_cocotbext` filters. cocotb and cocotbext-axi are imported only by the functions
that need them, so the cycle models import without them.
"""

import json
import os
import random
import warnings
from collections import Counter, deque


__all__ = ["AxiProtocolError", "AxiProtocolChecker", "AxiSlaveModel", "CHANNELS",
           "pause_generator", "quiet_cocotbext", "set_pauses", "axi_ram", "axil_master",
           "attach_checker", "drive_slave_model", "port_signals", "run_memory_job",
           "run_memory_bench"]

#: channel -> (VALID, READY, payload signals); AW, W, AR are driven by the master.
CHANNELS = {
    "aw": ("awvalid", "awready", ("awid", "awaddr", "awlen", "awsize", "awburst", "awlock",
                                  "awcache", "awprot")),
    "w": ("wvalid", "wready", ("wdata", "wstrb", "wlast")),
    "b": ("bvalid", "bready", ("bid", "bresp")),
    "ar": ("arvalid", "arready", ("arid", "araddr", "arlen", "arsize", "arburst", "arlock",
                                  "arcache", "arprot")),
    "r": ("rvalid", "rready", ("rid", "rdata", "rresp", "rlast")),
}
_SLAVE_DRIVEN = ("awready", "wready", "bid", "bresp", "bvalid", "arready", "rid", "rdata",
                 "rresp", "rlast", "rvalid")
SLVERR, DECERR = 2, 3


class AxiProtocolError(AssertionError):
    """An AXI4 rule broken on the checked port."""


class AxiProtocolChecker:
    """Checks an AXI4 master port cycle by cycle (the master and its slave's answers).

    Fails (:class:`AxiProtocolError`, or an entry in :py:`errors` with ``strict=False``) on:

    * a VALID dropped, or a payload changed, before its READY (all five channels);
    * ARBURST/AWBURST reserved (3); xSIZE wider than the bus; a WRAP burst not of 2, 4, 8 or
      16 beats or unaligned; a FIXED burst over 16 beats; an INCR burst crossing 4 KB;
      optionally (``incr_only``) anything but full-width INCR bursts;
    * an ARID/AWID outside ``ids``;
    * W bursts not matching the AW lengths in order (W may lead AW), WLAST not exactly on
      each burst's last beat;
    * a B for an ID without a write whose AW and last W beat were both transferred before;
    * an R beat for an ID with no read outstanding, RLAST not exactly on beat ARLEN + 1.

    Channels whose signals are missing from the sampled dict are not checked (a read-only
    port has no AW, W, B).

    Parameters
    ----------
    data_width : int
    ids : iterable of int, optional
        The IDs the master may use; any by default.
    incr_only : bool
        Also require ARBURST/AWBURST INCR and xSIZE of the bus width.
    name : str
        Prefixes the messages.
    strict : bool
        Raise at the first error (default) rather than only record it.
    """

    def __init__(self, *, data_width, ids=None, incr_only=False, name="m_axi", strict=True):
        self.bytes = data_width // 8
        self.max_size = self.bytes.bit_length() - 1
        self.ids = None if ids is None else frozenset(ids)
        self.incr_only, self.name, self.strict = incr_only, name, strict
        self.errors = []
        # handshakes per channel, and "w_leads": W beats transferred before their AW
        self.counts = Counter()
        self.reset()

    def reset(self):
        """Forget everything in flight (the port's reset)."""
        self.cycle = 0
        self._held = {}
        self._reads = {}                   # ARID -> deque of beats still due, per burst
        self._aw = deque()                 # (AWID, beats) whose W burst is not complete
        self._w_early = deque()            # beats of W bursts completed before their AW
        self._w_beats = 0                  # beats of the W burst in progress
        self._b_due = Counter()            # AWID -> writes complete (AW and WLAST), no B yet

    def _error(self, message):
        message = f"{self.name} cycle {self.cycle}: {message}"
        self.errors.append(message)
        if self.strict:
            raise AxiProtocolError(message)

    @property
    def outstanding(self):
        """Reads awaiting beats, W beats/bursts pending and writes awaiting B."""
        return {"reads": sum(len(q) for q in self._reads.values()),
                "writes_without_w": len(self._aw), "w_without_aw": len(self._w_early)
                + (self._w_beats > 0 and not self._aw), "b": sum(self._b_due.values())}

    def check_quiet(self):
        """Fail unless nothing is in flight (call when the master is idle)."""
        left = {k: v for k, v in self.outstanding.items() if v}
        if left:
            self._error(f"still in flight: {left}")

    def _address(self, ch, sig):
        x = ch
        ident, addr = sig[f"{x}id"], sig[f"{x}addr"]
        beats, size, burst = sig[f"{x}len"] + 1, sig[f"{x}size"], sig[f"{x}burst"]
        what = f"{ch.upper()} id {ident} addr {addr:#x} len {beats - 1} size {size}"
        if self.ids is not None and ident not in self.ids:
            self._error(f"{what}: {x.upper()}ID {ident} is not one of {sorted(self.ids)}")
        if burst == 3:
            self._error(f"{what}: reserved {x.upper()}BURST 3")
        if size > self.max_size:
            self._error(f"{what}: {x.upper()}SIZE {size} is wider than the {self.bytes}-byte bus")
        if self.incr_only and (burst != 1 or size != self.max_size):
            self._error(f"{what}: burst {burst} size {size}, expected INCR of the bus width")
        if burst == 2 and (beats not in (2, 4, 8, 16) or addr % (1 << size)):
            self._error(f"{what}: a WRAP burst needs 2, 4, 8 or 16 beats and an aligned address")
        if burst == 0 and beats > 16:
            self._error(f"{what}: a FIXED burst has at most 16 beats")
        if burst == 1:
            start = addr & ~((1 << size) - 1)
            end = start + (beats << size) - 1
            if start >> 12 != end >> 12:
                self._error(f"{what}: the burst crosses a 4 KB boundary ({start:#x}..{end:#x})")
        return ident, beats

    def step(self, sig):
        """One clock edge; ``sig`` maps signal names (without prefix) to their values."""
        fired = {}
        for ch, (valid, ready, payload) in CHANNELS.items():
            if valid not in sig:
                continue
            v, r = sig[valid], sig[ready]
            now = tuple(sig[p] for p in payload)
            held = self._held.get(ch)
            if held is not None:
                if not v:
                    self._error(f"{valid.upper()} dropped before {ready.upper()}")
                elif now != held:
                    changed = [p for p, a, b in zip(payload, held, now) if a != b]
                    self._error(f"{ch.upper()} payload changed before {ready.upper()}: "
                                f"{', '.join(changed)}")
            self._held[ch] = now if v and not r else None
            if v and r:
                fired[ch] = True
                self.counts[ch] += 1
        # R before AR, B before AW and W: a response never belongs to this cycle's request.
        if fired.get("r"):
            ident, last = sig["rid"], sig["rlast"]
            queue = self._reads.get(ident)
            if not queue:
                self._error(f"R beat for ID {ident} with no read outstanding")
            else:
                queue[0] -= 1
                if last and queue[0]:
                    self._error(f"RLAST on ID {ident} with {queue[0]} beats of the burst left")
                elif not last and not queue[0]:
                    self._error(f"no RLAST on the last beat of a burst of ID {ident}")
                if last or not queue[0]:
                    queue.popleft()
        if fired.get("ar"):
            ident, beats = self._address("ar", sig)
            self._reads.setdefault(ident, deque()).append(beats)
        if fired.get("b"):
            ident = sig["bid"]
            if not self._b_due[ident]:
                self._error(f"B for ID {ident} without a completed write outstanding")
            else:
                self._b_due[ident] -= 1
        if fired.get("aw"):
            ident, beats = self._address("aw", sig)
            if self._w_early:
                got = self._w_early.popleft()
                if got != beats:
                    self._error(f"AW of {beats} beats (id {ident}) came after its W burst of "
                                f"{got} beats")
                self._b_due[ident] += 1
            else:
                if not self._aw and self._w_beats > beats:
                    self._error(f"AW of {beats} beats (id {ident}) came after {self._w_beats} "
                                f"W beats of its burst")
                self._aw.append((ident, beats))
        if fired.get("w"):
            self._w_beat(sig["wlast"])
        self.cycle += 1

    def _w_beat(self, last):
        self._w_beats += 1
        n = self._w_beats
        self.counts["w_leads"] += not self._aw
        if self._aw:
            ident, beats = self._aw[0]
            if last and n != beats:
                self._error(f"WLAST on beat {n} of a burst of {beats} beats (id {ident})")
            elif not last and n == beats:
                self._error(f"no WLAST on beat {n}, the last of the burst (id {ident})")
            if last or n == beats:
                self._aw.popleft()
                self._b_due[ident] += 1
                self._w_beats = 0
        elif last:
            self._w_early.append(n)
            self._w_beats = 0
        elif n > 256:
            self._error("a W burst of more than 256 beats")


class AxiSlaveModel:
    """An AXI4 memory slave with random timing, for testing masters.

    Reads: each accepted burst is due after a random latency; every R beat goes to a random
    ID among those whose next burst is due, so bursts of different IDs come back reordered and
    their beats interleaved (``interleave=False``: a burst runs to its end once started);
    one ID's bursts stay in order. Writes: W beats are taken before or after their AW; each
    burst's B is due after a random latency, in order. READY and VALID of the slave's channels
    are held low at random (probability ``idle`` per cycle). Beats inside an error range get
    that response; writes there are not performed.

    Parameters
    ----------
    data_width : int
    size : int
        Bytes of memory (addresses wrap).
    seed : int
    idle : float or dict
        Probability of a low ARREADY/AWREADY/WREADY and of a withheld RVALID/BVALID in a cycle;
        a dict gives it per channel (``"ar"``, ``"r"``, ``"aw"``, ``"w"``, ``"b"``; 0 if absent).
    latency : int
        Largest random latency of a burst, in cycles.
    min_latency : int
        Smallest one (``min_latency = latency``: a fixed latency, for timing comparisons).
    interleave : bool
    errors : list of (start, stop, resp)
        Byte ranges ``[start, stop)`` answered with ``resp`` (2 SLVERR, 3 DECERR).
    faults : set of str
        Deliberate protocol violations, to test checkers: ``"stray_r"`` and ``"stray_b"``, an
        R beat or a B of ID 0 at cycle 5 (nothing may be outstanding on ID 0 then);
        ``"early_rlast"``, RLAST on the last but one beat of every burst.
    """

    def __init__(self, *, data_width, size=1 << 16, seed=0, idle=0.0, latency=0,
                 min_latency=0, interleave=True, errors=(), faults=()):
        self.bytes = data_width // 8
        self.mem = bytearray(size)
        self.rng = random.Random(seed)
        self.idle, self.latency, self.interleave = idle, latency, interleave
        self.min_latency = min(min_latency, latency)
        self.errors, self.faults = list(errors), set(faults)
        self.now = 0
        self.interleaved = 0               # R beats of another ID inside an unfinished burst
        self._reads = {}                   # ARID -> deque of [addr, beats left, due]
        self._r = None                     # presented R beat: (id, data, resp, last)
        self._r_cur = None                 # ID of the burst being sent (interleave=False)
        self._aw = deque()                 # [id, addr, beats left, resp]
        self._w = deque()                  # (data, strb)
        self._b = deque()                  # (due, id, resp)
        self._b_shown = None
        self._out = None

    def resp(self, addr):
        for start, stop, resp in self.errors:
            if start <= addr < stop:
                return resp
        return 0

    def read_word(self, addr):
        a = (addr % len(self.mem)) // self.bytes * self.bytes
        return int.from_bytes(self.mem[a:a + self.bytes], "little")

    def _due(self):
        return self.now + (self.rng.randint(self.min_latency, self.latency)
                           if self.latency else 0)

    def _busy(self, ch):
        p = self.idle.get(ch, 0.0) if isinstance(self.idle, dict) else self.idle
        return p and self.rng.random() < p

    def outputs(self):
        """The slave's signals for this cycle."""
        if self._out is not None:
            return self._out
        out = {"arready": int(not self._busy("ar")), "awready": int(not self._busy("aw")),
               "wready": int(not self._busy("w"))}
        if self._r is None and not self._busy("r"):
            ready = [i for i, q in self._reads.items() if q and q[0][2] <= self.now]
            if not self.interleave and self._r_cur is not None:
                ready = [i for i in ready if i == self._r_cur]
            if ready:
                ident = self.rng.choice(sorted(ready))
                addr, left, _ = self._reads[ident][0]
                last = left == 1 or ("early_rlast" in self.faults and left == 2)
                resp = self.resp(addr)
                self._r = (ident, 0 if resp else self.read_word(addr), resp, int(last))
        if "stray_r" in self.faults and self.now == 5:
            self._r = (0, 0, 0, 1)
        r = self._r or (0, 0, 0, 0)
        out.update(rvalid=int(self._r is not None), rid=r[0], rdata=r[1], rresp=r[2],
                   rlast=r[3])
        if self._b_shown is None and self._b and self._b[0][0] <= self.now and not self._busy("b"):
            self._b_shown = self._b[0]
        if "stray_b" in self.faults and self.now == 5:
            self._b_shown = (0, 0, 0)
        b = self._b_shown or (0, 0, 0)
        out.update(bvalid=int(self._b_shown is not None), bid=b[1], bresp=b[2])
        self._out = out
        return out

    def clock(self, sig):
        """The clock edge; ``sig`` holds the master's signals (without prefix)."""
        out = self.outputs()
        if sig.get("arvalid") and out["arready"]:
            self._reads.setdefault(sig["arid"], deque()).append(
                [sig["araddr"] // self.bytes * self.bytes, sig["arlen"] + 1, self._due()])
        if self._r is not None and sig.get("rready"):
            ident, _, _, last = self._r
            queue = self._reads.get(ident)
            if queue:
                queue[0][0] += self.bytes
                queue[0][1] -= 1
                if queue[0][1] == 0 or last:
                    queue.popleft()
            self.interleaved += self._r_cur is not None and self._r_cur != ident
            self._r_cur = None if last else ident
            self._r = None
        if sig.get("awvalid") and out["awready"]:
            self._aw.append([sig["awid"], sig["awaddr"] // self.bytes * self.bytes,
                             sig["awlen"] + 1, 0])
        if sig.get("wvalid") and out["wready"]:
            self._w.append((sig["wdata"], sig["wstrb"]))
        while self._aw and self._w:
            aw = self._aw[0]
            data, strb = self._w.popleft()
            resp = self.resp(aw[1])
            aw[3] = max(aw[3], resp)
            if not resp:
                a = aw[1] % len(self.mem)
                for k, byte in enumerate(data.to_bytes(self.bytes, "little")):
                    if strb >> k & 1:
                        self.mem[a + k] = byte
            aw[1] += self.bytes
            aw[2] -= 1
            if aw[2] == 0:
                self._aw.popleft()
                self._b.append((self._due(), aw[0], aw[3]))
        if self._b_shown is not None and sig.get("bready"):
            if self._b and self._b_shown is self._b[0]:
                self._b.popleft()
            self._b_shown = None
        self._out = None
        self.now += 1

    @property
    def quiet(self):
        """No read or write pending."""
        return not (any(self._reads.values()) or self._aw or self._w or self._b
                    or self._r or self._b_shown)


# ---- cocotb ---------------------------------------------------------------------------------

def quiet_cocotbext():
    """Silence cocotbext-axi's deprecation warnings under cocotb 2.1 (see the module doc)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")


def pause_generator(seed, idle, burst=1):
    """Infinite pause pattern for cocotbext-axi's ``set_pause_generator``: each cycle starts a
    pause of 1 … ``burst`` cycles with probability ``idle``."""
    rng = random.Random(seed)
    while True:
        if idle and rng.random() < idle:
            for _ in range(rng.randint(1, burst)):
                yield True
        else:
            yield False


def set_pauses(channels, seed, idle, burst=1):
    """Random pauses on every channel of ``channels`` (name -> cocotbext-axi channel, as in
    :py:`ram.channels`); ``seed`` is one seed per channel (a dict by name or a sequence in
    the order of ``channels``) or one int they are derived from; ``idle=0`` removes them."""
    for k, (name, channel) in enumerate(channels.items()):
        if isinstance(seed, dict):
            s = seed[name]
        elif isinstance(seed, (list, tuple)):
            s = seed[k]
        else:
            s = seed * 101 + k
        if idle:
            channel.set_pause_generator(pause_generator(s, idle, burst))
        else:
            channel.clear_pause_generator()


def _ram_channels(ram):
    return {"aw": ram.write_if.aw_channel, "w": ram.write_if.w_channel,
            "b": ram.write_if.b_channel, "ar": ram.read_if.ar_channel,
            "r": ram.read_if.r_channel}


class _InjectedError(Exception):
    pass


def axi_ram(dut, *, prefix="m_axi", clk=None, rst=None, size=1 << 16, seed=0, idle=0.0,
            burst=1, latency=0, errors=()):
    """cocotbext-axi :class:`AxiRam` on the ``<prefix>_*`` port of ``dut``.

    Parameters
    ----------
    dut : cocotb handle
    prefix : str
    clk, rst : cocotb handles, optional
        ``dut.clk`` and ``dut.rst`` (active high) by default.
    size : int
        Bytes of memory.
    seed, idle, burst :
        Random pauses on the five channels (:func:`set_pauses`).
    latency : int
        Each read beat waits 0 … ``latency`` cycles at random (half of them wait none).
    errors : list of (start, stop)
        Byte ranges whose reads and writes fail: SLVERR (AxiRam has no DECERR; see
        :class:`AxiSlaveModel`).

    Returns
    -------
    AxiRam
        With :py:`channels` (name -> channel), for :func:`set_pauses`.
    """
    from cocotb.triggers import ClockCycles
    from cocotbext.axi import AxiBus, AxiRam

    quiet_cocotbext()
    clk = dut.clk if clk is None else clk
    rst = dut.rst if rst is None else rst
    ram = AxiRam(AxiBus.from_prefix(dut, prefix), clk, rst, size=size)
    rng = random.Random(seed + 7)
    ranges = list(errors)

    def failing(address, length):
        return any(a < address + length and address < b for a, b in ranges)

    # AxiRam's per-beat hooks (AxiSlaveRead/Write call self._read/_write; an exception there
    # answers SLVERR): wrapped on this instance only.
    plain_read, plain_write = ram.read_if._read, ram.write_if._write

    async def read(address, length):
        if latency and rng.random() < 0.5:
            await ClockCycles(clk, rng.randint(1, latency))
        if failing(address, length):
            raise _InjectedError(f"injected read error at {address:#x}")
        return await plain_read(address, length)

    async def write(address, data):
        if failing(address, len(data)):
            raise _InjectedError(f"injected write error at {address:#x}")
        await plain_write(address, data)

    ram.read_if._read, ram.write_if._write = read, write
    ram.read_if.log.setLevel("WARNING")
    ram.write_if.log.setLevel("WARNING")
    ram.channels = _ram_channels(ram)
    set_pauses(ram.channels, seed, idle, burst)
    return ram


def axil_master(dut, *, prefix="s_axil", clk=None, rst=None, seed=0, idle=0.0, burst=1):
    """cocotbext-axi :class:`AxiLiteMaster` on the ``<prefix>_*`` port of ``dut``, with random
    pauses on its five channels; :py:`channels` as for :func:`axi_ram`."""
    from cocotbext.axi import AxiLiteBus, AxiLiteMaster

    quiet_cocotbext()
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, prefix), dut.clk if clk is None else clk,
                           dut.rst if rst is None else rst)
    master.write_if.log.setLevel("WARNING")
    master.read_if.log.setLevel("WARNING")
    master.channels = {"aw": master.write_if.aw_channel, "w": master.write_if.w_channel,
                       "b": master.write_if.b_channel, "ar": master.read_if.ar_channel,
                       "r": master.read_if.r_channel}
    set_pauses(master.channels, seed, idle, burst)
    return master


def port_signals(dut, prefix="m_axi"):
    """``{name without prefix: handle}`` of the AXI4 signals the DUT has."""
    names = [s for valid, ready, payload in CHANNELS.values() for s in (valid, ready, *payload)]
    return {s: getattr(dut, f"{prefix}_{s}") for s in names if hasattr(dut, f"{prefix}_{s}")}


async def _cycles(dut, clk, rst, body):
    from cocotb.triggers import FallingEdge, ReadOnly

    while True:
        await FallingEdge(clk)
        await ReadOnly()
        body(rst is not None and int(rst.value))


def _sample(checker, signals):
    """The port's values for :meth:`AxiProtocolChecker.step`. A payload that is X or Z while
    its VALID is low is a don't-care (None): Verilator starts every bit at 0, Icarus leaves
    registers without a reset value X and undriven inputs Z. X or Z on a VALID or READY, or on
    a payload under VALID, is a protocol error."""
    values = {k: int(h.value) if h.value.is_resolvable else None for k, h in signals.items()}
    for valid, ready, payload in CHANNELS.values():
        if valid not in values:
            continue
        unknown = [s for s in (valid, ready) if values.get(s, 0) is None]
        if values[valid]:
            unknown += [s for s in payload if s in values and values[s] is None]
        if unknown:
            checker._error(f"{', '.join(u.upper() for u in unknown)} X or Z")
            values.update({u: 0 for u in unknown})
    return values


def attach_checker(dut, checker, *, prefix="m_axi", clk=None, rst=None):
    """Start a monitor task feeding ``checker`` every cycle (reset while ``rst`` is high).

    A strict checker's :class:`AxiProtocolError` fails the running test. Returns the task."""
    import cocotb

    signals = port_signals(dut, prefix)

    def body(in_reset):
        if in_reset:
            checker.reset()
        else:
            checker.step(_sample(checker, signals))

    return cocotb.start_soon(_cycles(dut, dut.clk if clk is None else clk,
                                     dut.rst if rst is None else rst, body))


def drive_slave_model(dut, model, *, prefix="m_axi", clk=None):
    """Start a task that makes ``model`` (an :class:`AxiSlaveModel`) the slave on the port:
    its outputs are driven on each falling edge, the port sampled in the ReadOnly phase after.
    Returns the task."""
    import cocotb
    from cocotb.triggers import FallingEdge, ReadOnly

    clk = dut.clk if clk is None else clk
    signals = port_signals(dut, prefix)
    outputs = {k: h for k, h in signals.items() if k in _SLAVE_DRIVEN}

    async def run():
        while True:
            await FallingEdge(clk)
            for name, value in model.outputs().items():
                if name in outputs:
                    outputs[name].value = value
            await ReadOnly()
            # X/Z (Icarus, before reset values settle) reads 0 here; the checker reports it
            # where it matters (on VALID, READY, or a payload under VALID).
            model.clock({k: int(h.value) if h.value.is_resolvable else 0
                         for k, h in signals.items()})

    return cocotb.start_soon(run())


async def run_memory_job(dut, cfg, ram, lite, job, tensors, writes, *, poll=200, image=None):
    """One job of a memory-attached core through its registers (the benchmarks' testbenches):
    Q, K, V into ``ram`` (or the ``{address: bytes}`` of ``image``), the register ``writes``
    (parameters and job), STATUS cleared, start, JOB_STATUS polled every ``poll`` cycles;
    fails on a JOB_ERROR. Returns ``(counters, O)``: the total counters by name and O read
    back from ``ram``."""
    from cocotb.triggers import ClockCycles

    from sim.jobs import memory_image, read_outputs
    from spec.job import JobError
    from spec.regmap import Reg, counters

    if image is None:
        image = memory_image(cfg, job, *tensors)
    for addr, data in image.items():
        ram.write(addr, data)
    for addr, value in writes:
        await lite.write_dword(4 * addr, value)
    await lite.write_dword(4 * Reg.STATUS, 0b11)
    await lite.write_dword(4 * Reg.CONTROL, 1)
    while not (await lite.read_dword(4 * Reg.JOB_STATUS)) & 1:
        await ClockCycles(dut.clk, poll)
    error = await lite.read_dword(4 * Reg.JOB_ERROR)
    assert error == JobError.NONE, f"job error {JobError(error).name}"
    values = {c.name: await lite.read_dword(4 * c.address) for c in counters(cfg)}
    return values, read_outputs(cfg, job, lambda a, n: bytes(ram.read(a, n)))


async def run_memory_bench(dut, run_job, prefix):
    """A benchmark testbench's body: clock, reset, AxiRam of ``<prefix>_MEM`` bytes and the
    AXI4-Lite master, then ``run_job(dut, cfg, ram, lite, spec)`` for each job of the JSON list
    ``<prefix>_JOBS``; their results go to ``<prefix>_OUT`` as ``{"jobs": [...]}``."""
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge

    from gen.rtlsim.streams import load_sidecar

    cfg, _ = load_sidecar()
    jobs = json.loads(os.environ[f"{prefix}_JOBS"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    ram = axi_ram(dut, size=int(os.environ.get(f"{prefix}_MEM", str(1 << 22))))
    lite = axil_master(dut)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    results = [await run_job(dut, cfg, ram, lite, spec) for spec in jobs]
    with open(os.environ[f"{prefix}_OUT"], "w") as f:
        json.dump({"jobs": results}, f, indent=2)
