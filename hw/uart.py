"""A plain 8N1 UART: :class:`UARTRx` and :class:`UARTTx`, one byte per stream beat.

Both sides take the bit time as ``divisor`` clock cycles (``round(clk_hz / baud)``; at least
:data:`MIN_DIVISOR`). The line is idle high; a frame is a low start bit, eight data bits LSB
first and a high stop bit, ``10·divisor`` cycles in all.

The receiver synchronises the line through two flip-flops, times the start bit from its falling
edge, checks it again at its middle (a shorter low pulse is a glitch and is ignored) and samples
every data bit and the stop bit at their middles. A low stop bit is a framing error: the byte is
dropped, :py:`frame_error` pulses, and the receiver waits for the line to go high again (so a
break condition yields one error, not a stream of zero bytes). A byte that completes while the
previous one still waits on :py:`o` is dropped and :py:`overrun` pulses.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["UARTRx", "UARTTx", "MIN_DIVISOR", "divisor_for", "BITS_PER_FRAME"]


#: Smallest bit time in clock cycles: the receiver needs a start-bit middle and a few cycles of
#: margin for the two-flop synchroniser.
MIN_DIVISOR = 4
#: Bit times per character (start, 8 data, stop).
BITS_PER_FRAME = 10


def _check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise TypeError(f"divisor must be an integer number of clock cycles per bit, "
                        f"not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor = {divisor} is too small; the UART needs at least "
                         f"{MIN_DIVISOR} clock cycles per bit")
    return divisor


def divisor_for(clk_hz, baud, *, tolerance=0.02):
    """The bit time in cycles for ``baud`` at ``clk_hz``; raises if the rate error is too big.

    Parameters
    ----------
    clk_hz : float
        Clock frequency.
    baud : float
        Line rate in bits per second.
    tolerance : float
        Largest accepted relative error of the resulting rate (8N1 tolerates about 4 % in
        total between both ends; half of it is allowed here).

    Returns
    -------
    int
    """
    if not clk_hz > 0:
        raise ValueError(f"clk_hz = {clk_hz!r} must be positive")
    if not baud > 0:
        raise ValueError(f"baud = {baud!r} must be positive")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud = {baud:g} is too fast for clk_hz = {clk_hz:g}: the divisor "
                         f"would be {divisor} < {MIN_DIVISOR}")
    error = abs(clk_hz / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"baud = {baud:g} is {error:.1%} off with clk_hz = {clk_hz:g} "
                         f"(divisor {divisor}); allowed {tolerance:.0%}")
    return divisor


class UARTRx(wiring.Component):
    """UART receiver, 8N1.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Attributes
    ----------
    rx : In(1)
        The serial line (asynchronous; idle high).
    o : Out(stream.Signature(8))
        Received bytes. The beat stays valid until taken; see :py:`overrun`.
    frame_error : Out(1)
        Pulses for one cycle when a character ends with a low stop bit (the byte is dropped).
    overrun : Out(1)
        Pulses for one cycle when a byte is dropped because :py:`o` still holds the previous one.
    latency : int
        Cycles from the falling edge of the start bit on :py:`rx` to ``o.valid``:
        ``2 + divisor // 2 + 9·divisor + 1`` (synchroniser, half a bit to the start-bit middle,
        nine bits to the stop-bit middle, output register).
    ii : int
        Cycles per byte at the full line rate: ``10·divisor``.
    """

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    @property
    def latency(self):
        return 2 + self._divisor // 2 + 9 * self._divisor + 1

    @property
    def ii(self):
        return BITS_PER_FRAME * self._divisor

    def elaborate(self, platform):
        m = Module()
        N = self._divisor

        meta = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [meta.eq(self.rx), line.eq(meta)]

        timer = Signal(range(N))
        bit = Signal(range(8))
        shreg = Signal(8)
        tick = Signal()
        m.d.comb += tick.eq(timer == 0)
        with m.If(~tick):
            m.d.sync += timer.eq(timer - 1)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(N // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    with m.If(line):              # too short: a glitch
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(N - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), timer.eq(N - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(line):
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):                # wait for the line to be released
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """UART transmitter, 8N1.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Attributes
    ----------
    i : In(stream.Signature(8))
        Bytes to send; ready while the transmitter is idle.
    tx : Out(1)
        The serial line (registered; idle high).
    latency : int
        Cycles from the acceptance of a byte to the start bit on :py:`tx`: 1.
    ii : int
        Cycles per byte: ``10·divisor`` (the next byte is accepted in the cycle the stop bit
        ends, so back-to-back bytes leave without gaps).
    """

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self):
        return self._divisor

    @property
    def latency(self):
        return 1

    @property
    def ii(self):
        return BITS_PER_FRAME * self._divisor

    def elaborate(self, platform):
        m = Module()
        N = self._divisor
        shreg = Signal(BITS_PER_FRAME, init=(1 << BITS_PER_FRAME) - 1)
        bits = Signal(range(BITS_PER_FRAME + 1))
        timer = Signal(range(N))
        # Ready when idle, and in the last cycle of a stop bit (no gap between characters).
        m.d.comb += [self.i.ready.eq((bits == 0) | ((bits == 1) & (timer == 0))),
                     self.tx.eq(shreg[0])]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shreg.eq(Cat(0, self.i.payload, 1)), bits.eq(BITS_PER_FRAME),
                         timer.eq(N - 1)]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), bits.eq(bits - 1), timer.eq(N - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
