"""Synthesis harness: puts a core with very wide ports on a handful of FPGA pins.

A SOFA core has ports far wider than any package (one K row alone is ``d × data_width`` bits),
and a core whose inputs are tied off or whose outputs are unused is optimised away by Yosys.
:class:`SynthHarness` therefore

* drives **every input bit** of the core (payloads, ``valid``, and the ``ready`` of output
  streams, so backpressure paths stay) from one serial-in shift register fed by the ``din`` pin;
  every bit is an independent flip-flop, so no input can be treated as a constant;
* **XOR-folds every output bit** of the core into ``fold_width`` bits, registers them and feeds
  them into a ``fold_width``-bit multiple-input signature register (an LFSR with parallel
  inputs) whose top bit drives the ``dout`` pin, so every output bit is observable.

The harness costs about ``n_in + 2·fold_width`` flip-flops and ``≈ n_out / 3`` LUT4s for the
XOR tree. The input shift register carries a ``keep`` attribute, so its size does not depend
on which inputs the core uses; :func:`harness_stub` builds the same harness around a core-less
stub with the same signature, which the synthesis flow uses to measure the overhead.

Pins: ``clk`` and ``rst`` (the ``sync`` domain), ``din``, ``dout``.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["SynthHarness", "StubCore", "harness_stub", "FOLD_WIDTH"]


#: Width of the output XOR fold and of the signature register.
FOLD_WIDTH = 16

# Taps of a maximal-length 16-bit Fibonacci LFSR (x^16 + x^14 + x^13 + x^11 + 1).
_LFSR16_TAPS = (15, 13, 12, 10)


def _port_values(component):
    """Input and output port values of ``component``, in signature order."""
    inputs, outputs = [], []
    for _path, member, value in component.signature.flatten(component):
        value = value.as_value() if hasattr(value, "as_value") else value
        (inputs if member.flow == In else outputs).append(value)
    return inputs, outputs


class SynthHarness(wiring.Component):
    """Wraps ``core`` (a ``wiring.Component``) for synthesis; see the module docstring.

    Parameters
    ----------
    core : wiring.Component
        The design under synthesis; becomes the submodule ``core``.
    fold_width : int
        Width of the output XOR fold / signature register.

    Attributes
    ----------
    din : In(1)
        Serial input of the input shift register.
    dout : Out(1)
        Top bit of the output signature register.
    n_in, n_out : int
        Input and output bits of the core.
    """

    din: In(1)
    dout: Out(1)

    def __init__(self, core, *, fold_width=FOLD_WIDTH):
        if not isinstance(core, wiring.Component):
            raise TypeError(f"core must be a wiring.Component, not {core!r}")
        if fold_width != FOLD_WIDTH:
            raise ValueError(f"only fold_width = {FOLD_WIDTH} is supported")
        super().__init__()
        self.core = core
        self.fold_width = fold_width
        inputs, outputs = _port_values(core)
        self.n_in = sum(len(v) for v in inputs)
        self.n_out = sum(len(v) for v in outputs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        inputs, outputs = _port_values(core)

        # Inputs: one long serial-in shift register.
        if self.n_in:
            chain = Signal(self.n_in, reset_less=True, attrs={"keep": 1})
            if self.n_in == 1:
                m.d.sync += chain.eq(self.din)
            else:
                m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
            offset = 0
            for value in inputs:
                m.d.comb += value.eq(chain[offset:offset + len(value)])
                offset += len(value)

        # Outputs: XOR fold, register, multiple-input signature register.
        F = self.fold_width
        flat = Cat(*outputs) if outputs else Const(0, 1)
        folded = []
        for j in range(F):
            bits = [flat[i] for i in range(j, len(flat), F)]
            folded.append(Cat(*bits).xor() if bits else Const(0, 1))
        fold_reg = Signal(F)
        misr = Signal(F)
        feedback = Cat(*(misr[tap] for tap in _LFSR16_TAPS)).xor()
        m.d.sync += [
            fold_reg.eq(Cat(*folded)),
            misr.eq(Cat(feedback, misr[:-1]) ^ fold_reg),
        ]
        m.d.comb += self.dout.eq(misr[-1])
        return m


class StubCore(wiring.Component):
    """A core-less stand-in with ``signature``: each output bit is a wire from an input bit.

    Synthesising :class:`SynthHarness` around it measures the harness overhead (the input shift
    register, the XOR tree and the signature register). It is an estimate: output bits that
    alias the same input bit may cancel in the XOR tree.
    """

    def __init__(self, signature):
        super().__init__(signature)

    def elaborate(self, platform):
        m = Module()
        inputs, outputs = _port_values(self)
        flat_in = Cat(*inputs) if inputs else Const(0, 1)
        i = 0
        for value in outputs:
            bits = []
            for _ in range(len(value)):
                bits.append(flat_in[i % len(flat_in)])
                i += 1
            m.d.comb += value.eq(Cat(*bits))
        return m


def harness_stub(core):
    """A :class:`SynthHarness` around a :class:`StubCore` with ``core``'s signature."""
    return SynthHarness(StubCore(core.signature))
