"""A Python model of the register rules of :mod:`spec.regmap` for an idle core, on chip or
memory-attached, built from the map alone (the tests compare the RTL port against it).

Rules modelled: a ``rw`` register takes a value within :meth:`Register.legal` (a wide one with
its ``_HI`` stage above the low word); any other write (out of range, read-only, a counter, an
unused address) is ignored and sets the error flag and ERROR_ADDR; STATUS bit 1 clears the flag,
bit 0 the counters; reads return the low word of a parameter, STATUS, ERROR_ADDR, and 0 at
unused addresses. The memory-attached core adds CONTROL (bit 0 starts a job: with the
descriptor the registers hold, which :func:`spec.job.check_job` refuses or accepts), JOB_STATUS
(bit 0 done, cleared by writing 1) and JOB_ERROR. With several cores, each core's block
(:data:`spec.regmap.CORE_BASE`) is read-only: while no job has run, ``status`` reads "no
queries" (bit 2), the sub-job and error 0, the counters as the totals'.
"""

from spec.job import JobDescriptor, JobError, check_job
from spec.regmap import (CORE_BASE, CORE_COUNTER_OFFSET, CORE_REGS, CORE_WORDS, WORD_BITS, Reg,
                         address_words, counters, register, registers)

__all__ = ["RegisterModel", "port_words"]

_MASK = (1 << WORD_BITS) - 1


def port_words(cfg):
    """Words the register port decodes: on chip ``2**ceil(log2(N_REGS))`` (the address
    port's range), memory-attached the AXI4-Lite window ``2**ceil(log2(address_words))``."""
    return 1 << (address_words(cfg) - 1).bit_length()


class RegisterModel:
    """The registers of an idle core built from ``cfg``; see the module docstring.

    ``write`` returns None; ``read`` returns the word, or None for a counter whose value the
    model does not know (``cycles``, and the timing counters once a job was started)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.axi = cfg.memory == "axi"
        self.rw = {r.address: r for r in registers(cfg) if r.access == "rw"}
        self.values = {a: r.reset(cfg) for a, r in self.rw.items()}
        self.counters = {c.address: c for c in counters(cfg)} if cfg.counter_width else {}
        self.error = self.error_addr = 0
        self.done = 0
        self.job_error = JobError.NONE
        self.started = False
        self.core = {}                   # address -> (core, name) of the per-core blocks
        if cfg.cores > 1:
            for c in range(cfg.cores):
                base = CORE_BASE + c * CORE_WORDS
                self.core |= {base + off: (c, name) for name, off, _, _ in CORE_REGS}
                if cfg.counter_width:
                    self.core |= {base + CORE_COUNTER_OFFSET + i: (c, f"counter_{k.name}")
                                  for i, k in enumerate(counters(cfg))}

    def value(self, name):
        return self.values[register(name).address]

    def descriptor(self):
        """The :class:`JobDescriptor` the registers hold (fields without a register in this
        config, the on-demand ones of a given-K/V core, keep their defaults)."""
        have = {r.name for r in registers(self.cfg)}
        return JobDescriptor(**{f: self.value(f) for f in JobDescriptor.__dataclass_fields__
                                if f in have})

    def write(self, addr, value):
        reg = self.rw.get(addr)
        if reg is not None:
            if reg.high and reg.value_width(self.cfg) > WORD_BITS:
                value |= self.values[register(reg.high).address] << WORD_BITS
            lo, hi = reg.legal(self.cfg)
            if lo <= value <= hi:
                self.values[addr] = value
                return
        elif addr == Reg.STATUS:
            if value & 2:
                self.error = 0
            return
        elif self.axi and addr == Reg.CONTROL:
            if value & 1:
                # Idle: the job starts; the walk's descriptors are refused at once, a legal
                # one would run (the tests that start jobs use a memory).
                self.started = True
                self.job_error = check_job(self.cfg, self.descriptor())
                self.done = 1
            return
        elif self.axi and addr == Reg.JOB_STATUS:
            if value & 1:
                self.done = 0
            return
        self.error, self.error_addr = 1, addr

    def read(self, addr):
        if addr in self.values:
            return self.values[addr] & _MASK
        if addr == Reg.STATUS:
            return self.error << 1
        if addr == Reg.ERROR_ADDR:
            return self.error_addr
        if self.axi and addr == Reg.JOB_STATUS:
            return self.done
        if self.axi and addr == Reg.JOB_ERROR:
            return int(self.job_error)
        counter = self.counters.get(addr)
        if counter is None and addr in self.core:
            name = self.core[addr][1]
            if name == "status":
                return 0b100
            if name.startswith("counter_"):
                counter = next(k for k in counters(self.cfg) if k.name == name[8:])
        if counter is not None:
            if counter.name == "cycles" or (counter.kind == "timing" and self.started):
                return None
            return 0
        return 0

    def expect(self, addr, got):
        """``None`` if ``got`` is what ``read(addr)`` allows, else a message."""
        want = self.read(addr)
        if want is None or got == want:
            return None
        name = next((r.name for r in registers(self.cfg) if r.address == addr), None) or \
            (f"counter {self.counters[addr].name}" if addr in self.counters else None) or \
            (f"core {self.core[addr][0]} {self.core[addr][1]}" if addr in self.core else "unused")
        return f"{name} (address {addr}) reads {got:#x}, the map says {want:#x}"
