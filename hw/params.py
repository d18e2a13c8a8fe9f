"""The parameter registers of :mod:`spec.regmap` (access ``"rw"``) as signals, with their
write and read cases; both cores (:class:`hw.top.SofaCore`, :class:`hw.axicore.SofaAxiCore`)
put these cases into their own register-port ``m.Switch`` beside the registers only they
have."""

from amaranth.hdl import Cat, Signal

from spec.regmap import registers


__all__ = ["parameter_signals", "parameter_write_cases", "parameter_read_cases"]


def parameter_signals(cfg):
    """``{name: Signal}`` of every parameter register of a core built from ``cfg``, at its
    reset value."""
    return {r.name: Signal(r.value_width(cfg), init=r.reset(cfg), name=r.name)
            for r in registers(cfg) if r.access == "rw"}


def parameter_write_cases(m, cfg, params, wdata, busy, reject, hit=None):
    """Inside a ``m.Switch`` on the write address: a case per parameter that takes
    ``wdata`` when it is legal and the core is idle, else calls ``reject(address)``. A
    parameter wider than the port takes its high bits from its ``_HI`` stage. With ``hit``
    (address → a signal high when the write is to it) the cases are ``m.If(hit(address))``
    instead, outside any ``m.Switch``."""
    for r in registers(cfg):
        if r.access != "rw":
            continue
        lo, hi = r.legal(cfg)
        value = Cat(wdata, params[r.high]) if r.high and r.value_width(cfg) > len(wdata) \
            else wdata
        with (m.Case(r.address) if hit is None else m.If(hit(r.address))):
            with m.If(busy | (value < lo) | (value > hi)):
                reject(r.address)
            with m.Else():
                m.d.sync += params[r.name].eq(value)


def parameter_read_cases(m, cfg, params, rdata):
    """Inside a ``m.Switch`` on the read address: a case per parameter driving ``rdata``
    (its low word)."""
    for r in registers(cfg):
        if r.access == "rw":
            with m.Case(r.address):
                m.d.comb += rdata.eq(params[r.name])
