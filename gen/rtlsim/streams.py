"""cocotb stream toolbox: payload packing from Amaranth layouts, a source with random idle
cycles, a sink with random backpressure, and an in-order checker; and :func:`load_sidecar`, the
config a testbench's DUT was generated with.

Timing discipline: inputs change only on the falling clock edge; handshakes are decided in the
ReadOnly phase after that, so a beat with ``valid & ready`` there transfers on the next rising
edge. This is independent of how the simulator orders register updates around the rising edge.

Runs inside the simulator only (it imports cocotb); :func:`gen.rtlsim.runner.run_cocotb`
starts it.
"""

import json
import os
import random

from amaranth.hdl import Shape
from amaranth.lib import data
from cocotb.triggers import FallingEdge, ReadOnly

from spec.config import SofaConfig


__all__ = ["load_sidecar", "Packer", "StreamSource", "StreamSink", "Checker", "TRAFFIC", "STRESS"]

#: (name, idle probability, backpressure probability, longest gap)
TRAFFIC = [
    ("steady", 0.0, 0.0, 1),
    ("idle", 0.4, 0.0, 1),
    ("backpressure", 0.0, 0.4, 1),
    ("both", 0.3, 0.3, 1),
]
#: Long gaps and backpressure bursts, for the stress tests.
STRESS = ("stress", 0.5, 0.5, 6)


def load_sidecar():
    """The config and the whole sidecar the DUT was generated with.

    Returns
    -------
    tuple
        ``(SofaConfig, dict)`` from the JSON file named by ``SOFA_SIDECAR``, which
        :func:`gen.rtlsim.runner.run_cocotb` always sets.
    """
    with open(os.environ["SOFA_SIDECAR"]) as f:
        sidecar = json.load(f)
    return SofaConfig.from_dict(sidecar["config"]), sidecar


class Packer:
    """Packs dicts into the flat bit vector of an Amaranth layout (LSB-first, field order) and
    back. Array fields take lists; signed fields are sign-extended on unpacking."""

    def __init__(self, layout):
        self.fields = [(name, field.offset, self._norm(field.shape)) for name, field in layout]
        self.width = layout.size

    @staticmethod
    def _norm(shape):
        return shape if isinstance(shape, data.ArrayLayout) else Shape.cast(shape)

    @classmethod
    def _pack_one(cls, shape, value, name):
        if isinstance(shape, data.ArrayLayout):
            elem = cls._norm(shape.elem_shape)
            if len(value) != shape.length:
                raise ValueError(f"field {name}: {len(value)} elements, expected {shape.length}")
            return sum(cls._pack_one(elem, v, name) << (n * elem.width)
                       for n, v in enumerate(value))
        v, w = int(value), shape.width
        lo = -(1 << (w - 1)) if shape.signed else 0
        hi = (1 << (w - 1 if shape.signed else w)) - 1
        if not lo <= v <= hi:
            raise ValueError(f"field {name}: {v} does not fit {shape}")
        return v & ((1 << w) - 1)

    @classmethod
    def _unpack_one(cls, shape, bits):
        if isinstance(shape, data.ArrayLayout):
            elem = cls._norm(shape.elem_shape)
            mask = (1 << elem.width) - 1
            return [cls._unpack_one(elem, (bits >> (n * elem.width)) & mask)
                    for n in range(shape.length)]
        if shape.signed and bits >> (shape.width - 1):
            return bits - (1 << shape.width)
        return bits

    def pack(self, beat):
        return sum(self._pack_one(shape, beat[name], name) << offset
                   for name, offset, shape in self.fields)

    def unpack(self, bits):
        bits = int(bits)
        return {name: self._unpack_one(shape, (bits >> offset) & ((1 << shape.size) - 1)
                                       if isinstance(shape, data.ArrayLayout) else
                                       (bits >> offset) & ((1 << shape.width) - 1))
                for name, offset, shape in self.fields}


def _signal(dut, name):
    return getattr(dut, name)


class StreamSource:
    """Drives ``<prefix>__payload/valid`` and waits for ``<prefix>__ready``."""

    def __init__(self, dut, prefix, layout, *, idle=0.0, burst=1, seed=0):
        self.clk = dut.clk
        self.valid = _signal(dut, f"{prefix}__valid")
        self.ready = _signal(dut, f"{prefix}__ready")
        self.payload = _signal(dut, f"{prefix}__payload")
        self.packer = Packer(layout)
        self.idle, self.burst = idle, burst
        self.rng = random.Random(seed)
        self.sent = 0
        self.valid.value = 0

    async def send(self, beats, *, on_cycle=None):
        """Send ``beats``. ``on_cycle(beat)``, if given, runs after every falling edge at which
        the source drives its inputs (``beat`` is None on idle cycles and after the last beat),
        so a testbench can drive side ports in step with the stream."""
        def cycle(beat):
            if on_cycle is not None:
                on_cycle(beat)
        for beat in beats:
            while self.idle and self.rng.random() < self.idle:
                for _ in range(self.rng.randint(1, self.burst)):
                    await FallingEdge(self.clk)
                    self.valid.value = 0
                    cycle(None)
            await FallingEdge(self.clk)
            self.valid.value = 1
            self.payload.value = self.packer.pack(beat)
            cycle(beat)
            while True:
                await ReadOnly()
                if self.ready.value:
                    break
                await FallingEdge(self.clk)
                cycle(beat)
            self.sent += 1
        await FallingEdge(self.clk)
        self.valid.value = 0
        cycle(None)


class StreamSink:
    """Sets ``<prefix>__ready`` with random backpressure; calls ``on_beat(dict)`` per transfer."""

    def __init__(self, dut, prefix, layout, on_beat, *, backpressure=0.0, burst=1, seed=1):
        self.clk = dut.clk
        self.valid = _signal(dut, f"{prefix}__valid")
        self.ready = _signal(dut, f"{prefix}__ready")
        self.payload = _signal(dut, f"{prefix}__payload")
        self.packer = Packer(layout)
        self.on_beat = on_beat
        self.backpressure, self.burst = backpressure, burst
        self.rng = random.Random(seed)
        self.ready.value = 0

    async def run(self):
        stall = 0
        while True:
            await FallingEdge(self.clk)
            if stall == 0 and self.backpressure and self.rng.random() < self.backpressure:
                stall = self.rng.randint(1, self.burst)
            self.ready.value = 0 if stall else 1
            stall = max(0, stall - 1)
            await ReadOnly()
            if self.valid.value and self.ready.value:
                self.on_beat(self.packer.unpack(self.payload.value))


class Checker:
    """Compares received beats, in order, with expected ones; the first mismatch fails with
    its position and both values."""

    def __init__(self, expected, fields=None, name="stream"):
        self.expected = list(expected)
        self.fields = fields
        self.name = name
        self.received = 0
        self.errors = []

    def __call__(self, beat):
        n = self.received
        self.received += 1
        if n >= len(self.expected):
            self.errors.append(f"{self.name}: unexpected extra beat #{n}: {beat}")
            return
        want = self.expected[n]
        got = {k: beat[k] for k in (self.fields or want)}
        if got != {k: want[k] for k in got}:
            self.errors.append(f"{self.name}: beat #{n}: got {got}, expected {want}")

    @property
    def done(self):
        return self.received >= len(self.expected)

    def check(self):
        assert not self.errors, "\n".join(self.errors[:10])
        assert self.received == len(self.expected), \
            f"{self.name}: received {self.received} of {len(self.expected)} beats"

    def check_catches(self, victim):
        """The mutation check: :meth:`check` must fail, naming beat ``victim`` (the one whose
        expected value the test corrupted)."""
        try:
            self.check()
        except AssertionError as e:
            assert f"beat #{victim}" in str(e), \
                f"the checker failed, but not at beat #{victim}: {e}"
        else:
            raise AssertionError(f"{self.name}: a corrupted expected beat #{victim} went unnoticed")
