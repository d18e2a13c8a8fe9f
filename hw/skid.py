"""SkidBuffer: a two-entry stream register whose ``ready`` towards the producer is a flip-flop
(or, optionally, a plain one-entry stage register)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """A pipeline register that cuts the ``ready`` path.

    A plain register stage passes its consumer's ``ready`` combinationally back to its
    producer, so handshake logic of a whole pipeline chains into one timing path. Here the
    output register :py:`o` is backed by a second register: when :py:`o` is held and a beat
    arrives, it waits in the skid register, and :py:`i.ready` is just "the skid register is
    empty", a flip-flop output.

    With ``skid=False`` it is that plain register stage instead (:py:`i.ready` is
    ``~o.valid | o.ready``): half the flip-flops, the same latency and throughput.

    Parameters
    ----------
    shape : shape-castable
        The payload.
    skid : bool
        Build the skid register (default); ``False`` builds the plain stage register.

    Attributes
    ----------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    latency : int
        ``1``: a beat accepted on :py:`i` is on :py:`o` in the next cycle when :py:`o` is free.
    ii : int
        ``1``: full throughput with :py:`o` always ready.
    """

    def __init__(self, shape, *, skid=True):
        self._shape = shape
        self._skid = bool(skid)
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    @property
    def skid(self):
        return self._skid

    @property
    def latency(self):
        return 1

    @property
    def ii(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        if not self._skid:
            m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
            with m.If(self.i.ready):
                m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
            return m
        skid = Signal(self._shape)
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        take = self.i.valid & self.i.ready
        with m.If(~self.o.valid | self.o.ready):
            # the output register is free: fill it from the skid register first
            m.d.sync += self.o.valid.eq(skid_valid | take)
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += self.o.payload.eq(self.i.payload)
        with m.Elif(take):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
