"""Performance counters in a memory: small pre-counters swept into one RAM word per counter."""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["CounterBank", "unit_increments", "SUFA_COUNTERS", "SADS_COUNTERS"]


#: Counters that SU-FA and SADS keep themselves (wrapping, a few bits wide).
SUFA_COUNTERS = ("qk_cycles", "pv_cycles", "keys", "misses", "rescales", "rows")
SADS_COUNTERS = ("blocked_radius", "blocked_full", "entered", "sort_steps", "tiles")


def unit_increments(m, cfg, sufa, sads, *, restart=None):
    """The per-cycle increments of the units' own counters, summed over the lanes, for a
    :class:`CounterBank`: ``({name: increment}, {name: largest increment})``.

    A unit's counter only needs to be wide enough to be followed cycle by cycle: the
    increment is the difference to the previous cycle, modulo its width. ``restart`` (a
    signal) is the reset of the units: the counters drop to 0, which must not count.
    """
    L, incs, top = cfg.q_lanes, {}, {}
    for units, names, most in ((sufa, SUFA_COUNTERS, 1),
                               (sads, SADS_COUNTERS, cfg.derived.batch)):
        for name in names:
            steps = []
            for i, u in enumerate(units):
                now = getattr(u, name)
                prev = Signal.like(now, name=f"prev_{name}{i}")
                m.d.sync += prev.eq(now if restart is None else Mux(restart, 0, now))
                steps.append((now - prev)[:len(now)])
            incs[name] = sum(steps)
            top[name] = len(units) * most       # a SADSBank's units are listed one by one
    incs["macs"] = (incs["qk_cycles"] + incs["pv_cycles"]) * cfg.mac_lanes
    top["macs"] = 2 * L * cfg.mac_lanes
    return incs, top


class CounterBank(wiring.Component):
    """``N`` event counters of ``width`` bits (wrapping) kept in a memory.

    A counter as flip-flops costs a register and an adder of ``width`` bits each; on an iCE40
    twenty 32-bit counters with their read multiplexer take about 2,000 logic cells. Here
    each counter has a pre-counter just wide enough for ``N`` cycles of its largest increment;
    a sweep visits one counter per cycle, adds its pre-counter to its memory word and
    restarts the pre-counter, so every counter is flushed once every ``N`` cycles. A read
    adds the pre-counter to the word, so it is exact at every cycle.

    Parameters
    ----------
    events : dict of str to int
        Counter name -> the largest increment in one cycle (at least 1), in address order.
    width : int
        Bits of each counter.

    Attributes
    ----------
    inc : In(data.StructLayout)
        Per counter, the increment of this cycle.
    clear : In(1)
        Sets every counter to 0; the increments of this cycle are dropped.
    addr : In(range(N))
        Counter to read.
    data : Out(width)
        The counter :py:`addr` named ``latency`` cycles before: the increments of every cycle
        up to and including the one after the address, since the last clear.
    latency : int
        Read latency: 1 cycle (the memory's registered read), or 2 with ``registered``
        (the sum of the word and its pending increments registered too).
    sweep_period : int
        Cycles between two flushes of a counter, ``N``.
    """

    def __init__(self, events, *, width, registered=False):
        if not events:
            raise ValueError("a CounterBank needs at least one counter")
        for name, top in events.items():
            if not isinstance(top, int) or top < 1:
                raise ValueError(f"largest increment of counter {name!r} must be a positive "
                                 f"integer, not {top!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self._events = dict(events)
        self._width, self._registered = width, bool(registered)
        super().__init__({
            "inc": In(data.StructLayout({n: top.bit_length() for n, top in events.items()})),
            "clear": In(1),
            "addr": In(range(len(events))),
            "data": Out(width),
        })

    @property
    def names(self):
        return tuple(self._events)

    @property
    def width(self):
        return self._width

    @property
    def latency(self):
        return 2 if self._registered else 1

    @property
    def sweep_period(self):
        return len(self._events)

    def elaborate(self, platform):
        m = Module()
        N, CW = len(self._events), self._width
        names = list(self._events)

        # A pre-counter holds at most N cycles of increments between two flushes.
        pre = [Signal(max(1, (N * top).bit_length()), name=f"pre_{n}")
               for n, top in self._events.items()]
        # The word is stale (a clear, or a reset: the memory keeps its contents) until swept.
        zero = Signal(N, init=(1 << N) - 1)

        m.submodules.mem = mem = memory.Memory(shape=CW, depth=N, init=[])
        wr = mem.write_port()
        sweep_rd = mem.read_port(transparent_for=(wr,))
        host_rd = mem.read_port(transparent_for=(wr,))

        ptr = Signal(range(N))                 # counter whose word is being read
        w_ptr = Signal(range(N))               # counter whose word is written this cycle
        w_valid = Signal()
        m.d.sync += [ptr.eq(Mux(ptr == N - 1, 0, ptr + 1)), w_ptr.eq(ptr), w_valid.eq(1)]
        m.d.comb += sweep_rd.addr.eq(ptr)

        def pick(sigs, index):
            """``sigs[index]`` as a multiplexer over a list of signals."""
            out = Signal(max(len(s) for s in sigs))
            with m.Switch(index):
                for i, s in enumerate(sigs):
                    with m.Case(i):
                        m.d.comb += out.eq(s)
            return out

        w_zero = zero.bit_select(w_ptr, 1)
        m.d.comb += [
            wr.addr.eq(w_ptr),
            wr.en.eq(w_valid),
            wr.data.eq(Mux(w_zero, 0, sweep_rd.data) + pick(pre, w_ptr)),
        ]
        for i, name in enumerate(names):
            inc = self.inc[name]
            with m.If(self.clear):
                m.d.sync += pre[i].eq(0)
            with m.Elif(w_valid & (w_ptr == i)):
                m.d.sync += pre[i].eq(inc)                   # flushed into the word
            with m.Else():
                m.d.sync += pre[i].eq(pre[i] + inc)
        with m.If(self.clear):
            m.d.sync += zero.eq(Const(-1, N))
        with m.Elif(w_valid):
            m.d.sync += zero.bit_select(w_ptr, 1).eq(0)

        # Read: the word (transparent to this cycle's flush) plus what is still pending.
        r_ptr = Signal(range(N))
        m.d.sync += r_ptr.eq(self.addr)
        m.d.comb += host_rd.addr.eq(self.addr)
        total = Mux(zero.bit_select(r_ptr, 1), 0, host_rd.data) + pick(pre, r_ptr)
        m.d["sync" if self._registered else "comb"] += self.data.eq(total)
        return m
