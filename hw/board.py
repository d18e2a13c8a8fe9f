"""Board tops: the SOFA core behind the UART host link.

* :class:`SofaLinkCore` — :class:`hw.top.SofaCore` and :class:`hw.hostlink.HostLink` on byte
  streams (what the Amaranth-simulator tests drive; no UART). For a memory-attached config
  (``memory = "axi"``) the core is :class:`hw.axicore.SofaAxiCore` with its AXI4 master on
  :class:`hw.axiram.AxiBram` (``mem_bytes`` of block RAM) and its AXI4-Lite slave behind
  :class:`hw.axil.AxiLiteBridge`: a memory board.
* :class:`SofaBoardTop` — the same behind :class:`hw.uart.UARTRx`/:class:`hw.uart.UARTTx`: pins
  ``rx``, ``tx`` and two status outputs. This is the module the cocotb link test simulates and
  the plain Yosys/nextpnr flow synthesises (``constraints/*``).
* :class:`SofaBoardPins` — :class:`SofaBoardTop` with its own clock and reset pins, for the
  plain Yosys/nextpnr flow on a bare device (``gen.report``, pins in ``constraints/``).
* :class:`SofaBoard` — an ``Elaboratable`` for amaranth-boards platforms: requests the clock
  (optionally through an ECP5 PLL), the board's UART and LEDs, and instantiates
  :class:`SofaBoardTop`.
"""

from amaranth.hdl import ClockDomain, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io, stream, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from spec.config import ConfigError
from spec.regmap import lite_addr_width
from hw.axicore import SofaAxiCore
from hw.axil import AxiLiteBridge
from hw.axiram import AxiBram
from hw.hostlink import HostLink
from hw.top import SofaCore
from hw.uart import UARTRx, UARTTx, divisor_for


__all__ = ["SofaLinkCore", "SofaBoardTop", "SofaBoardPins", "SofaBoard", "ecp5_pll_params",
           "DEFAULT_BAUD", "DEFAULT_TIMEOUT_S", "DEFAULT_MAX_PAYLOAD", "DEFAULT_MEM_BYTES",
           "link_queue_bytes", "check_board_family"]


DEFAULT_BAUD = 115200
#: Inter-byte timeout inside a frame. USB-serial adapters deliver a frame in USB packets with
#: gaps of a few milliseconds at most; 50 ms keeps a slow host from being answered TRUNCATED.
DEFAULT_TIMEOUT_S = 0.05
DEFAULT_MAX_PAYLOAD = 1024
#: Block RAM behind a memory board's core: 64 KiB (32 of the ECP5-85F's 208 DP16KD, few
#: enough to sit near the core): Q, K, V and O of a d = 32 head (the ecp5-axi preset) up to
#: S = 292 with every query, S = 1014 with four.
DEFAULT_MEM_BYTES = 64 * 1024


def link_queue_bytes(family):
    """The host link's request queue on a board of an FPGA ``family``: one byte on iCE40 (the
    logic of a queue does not fit a UP5K beside the core; a host waits for each reply), the
    default (one largest frame, :func:`spec.protocol.default_queue_bytes`) elsewhere."""
    return 1 if family == "ice40" else None


def _connect_peers(m, a, a_prefix, b, b_prefix):
    """Connect the flat ``<a_prefix>_*`` members of ``a`` to the same-suffix ``<b_prefix>_*``
    members of its peer ``b`` (a master's ``m_axi_*`` to a slave's ``s_axi_*``): ``a``'s
    outputs drive ``b``'s inputs, ``b``'s outputs ``a``'s."""
    head = a_prefix + "_"
    for name, member in a.signature.members.items():
        if name.startswith(head):
            mine, peer = getattr(a, name), getattr(b, f"{b_prefix}_{name[len(head):]}")
            m.d.comb += peer.eq(mine) if member.flow == Out else mine.eq(peer)


def check_board_family(cfg, family):
    """A board top of ``cfg`` on an FPGA ``family``: a memory board (``memory = "axi"``) is
    built for ECP5 only; a :class:`ConfigError` says so otherwise."""
    if cfg.memory == "axi" and family != "ecp5":
        raise ConfigError(f"the config {cfg.name!r} has memory = 'axi': a memory board is "
                          f"built for ECP5 only (an {family} board carries the on-chip core, "
                          f"memory = 'onchip')")


class SofaLinkCore(wiring.Component):
    """:class:`SofaCore` driven by :class:`HostLink` over byte streams.

    Parameters
    ----------
    cfg : SofaConfig
    iterative_divider : bool
        Passed to :class:`SofaCore` (the iterative divider is much smaller; the link is far
        slower than either).
    max_payload, timeout_cycles, queue_bytes, clk_hz, divisor :
        Passed to :class:`HostLink`.
    mem_bytes : int
        The memory of a memory board (``memory = "axi"``; default
        :data:`DEFAULT_MEM_BYTES`); must be 0 or left out for the on-chip core.
    global_reset : bool
        Passed to :class:`SofaAxiCore` on a memory board (an ECP5 global network for its
        engines' reset); ignored by the on-chip core.

    Attributes
    ----------
    rx : In(stream.Signature(8))
        Request bytes.
    rx_error : In(1)
        Line error pulses.
    tx : Out(stream.Signature(8))
        Reply bytes.
    busy : Out(1)
        The core has a query in flight.
    error : Out(1)
        The last reply was an error reply.
    """

    def __init__(self, cfg, *, iterative_divider=True, max_payload=DEFAULT_MAX_PAYLOAD,
                 timeout_cycles, queue_bytes=None, clk_hz=0, divisor=0, mem_bytes=None,
                 global_reset=False):
        self._cfg = cfg
        if mem_bytes is None:
            mem_bytes = DEFAULT_MEM_BYTES if cfg.memory == "axi" else 0
        self.link = HostLink(cfg, max_payload=max_payload, timeout_cycles=timeout_cycles,
                             queue_bytes=queue_bytes, clk_hz=clk_hz, divisor=divisor,
                             mem_bytes=mem_bytes)
        if cfg.memory == "axi":
            self.core = SofaAxiCore(cfg, global_reset=global_reset)
            self.ram = AxiBram(size=mem_bytes, data_width=cfg.axi_data_width,
                               addr_width=cfg.axi_addr_width, id_width=cfg.axi_id_width)
            self.bridge = AxiLiteBridge(addr_width=lite_addr_width(cfg),
                                        reg_addr_width=len(self.link.reg_addr))
        else:
            self.core = SofaCore(cfg, iterative_divider=iterative_divider)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "rx_error": In(1),
            "tx": Out(stream.Signature(8)),
            "busy": Out(1),
            "error": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def mem_bytes(self):
        return self.link.mem_bytes

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.link = link = self.link
        wiring.connect(m, wiring.flipped(self.rx), link.rx)
        wiring.connect(m, link.tx, wiring.flipped(self.tx))
        m.d.comb += [
            link.rx_error.eq(self.rx_error),
            self.busy.eq(core.busy),
            self.error.eq(link.error),
        ]
        if self._cfg.memory == "axi":
            m.submodules.ram = ram = self.ram
            m.submodules.bridge = bridge = self.bridge
            _connect_peers(m, core, "m_axi", ram, "s_axi")
            _connect_peers(m, bridge, "m_axil", core, "s_axil")
            for name in ("reg_addr", "reg_wdata", "reg_we", "reg_re"):
                m.d.comb += getattr(bridge, name).eq(getattr(link, name))
            for name in ("reg_rdata", "reg_rvalid", "reg_wdone"):
                m.d.comb += getattr(link, name).eq(getattr(bridge, name))
            m.d.comb += [ram.host_addr.eq(link.mem_addr), ram.host_wdata.eq(link.mem_wdata),
                         ram.host_we.eq(link.mem_we), ram.host_re.eq(link.mem_re),
                         link.mem_rdata.eq(ram.host_rdata), link.mem_ack.eq(ram.host_ack)]
        else:
            wiring.connect(m, link.kv_load, core.kv_load)
            wiring.connect(m, link.q, core.q)
            wiring.connect(m, core.o, link.o)
            m.d.comb += [
                core.reg_addr.eq(link.reg_addr),
                core.reg_wdata.eq(link.reg_wdata),
                core.reg_we.eq(link.reg_we),
                link.reg_rdata.eq(core.reg_rdata),
            ]
        return m


class SofaBoardTop(wiring.Component):
    """The board's logic behind two UART pins: :class:`UARTRx` → :class:`SofaLinkCore` →
    :class:`UARTTx`.

    Parameters
    ----------
    cfg : SofaConfig
    divisor : int
        UART bit time in clock cycles (:func:`hw.uart.divisor_for`).
    timeout_cycles : int
        Inter-byte timeout of the link in cycles.
    clk_hz : int
        The clock, reported by IDENT.
    iterative_divider, max_payload, queue_bytes, mem_bytes, global_reset :
        See :class:`SofaLinkCore`.

    Attributes
    ----------
    rx : In(1)
        Serial input (idle high).
    tx : Out(1)
        Serial output.
    busy, error : Out(1)
        For LEDs: a query in flight; the last reply was an error.
    """

    def __init__(self, cfg, *, divisor, timeout_cycles, clk_hz=0, iterative_divider=True,
                 max_payload=DEFAULT_MAX_PAYLOAD, queue_bytes=None, mem_bytes=None,
                 global_reset=False):
        self._cfg = cfg
        self.uart_rx = UARTRx(divisor)
        self.uart_tx = UARTTx(divisor)
        self.link_core = SofaLinkCore(cfg, iterative_divider=iterative_divider,
                                      max_payload=max_payload, timeout_cycles=timeout_cycles,
                                      queue_bytes=queue_bytes, clk_hz=clk_hz, divisor=divisor,
                                      mem_bytes=mem_bytes, global_reset=global_reset)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "error": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def divisor(self):
        return self.uart_rx.divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = self.uart_rx
        m.submodules.uart_tx = utx = self.uart_tx
        m.submodules.link_core = lc = self.link_core
        wiring.connect(m, urx.o, lc.rx)
        wiring.connect(m, lc.tx, utx.i)
        m.d.comb += [
            urx.rx.eq(self.rx),
            self.tx.eq(utx.tx),
            lc.rx_error.eq(urx.frame_error | urx.overrun),
            self.busy.eq(lc.busy),
            self.error.eq(lc.error),
        ]
        return m


class SofaBoardPins(wiring.Component):
    """:class:`SofaBoardTop` as a bare-device top: the ``sync`` domain is built from the
    ``osc`` and ``btn`` pins, so the Verilog ports are exactly the pins in ``constraints/``.

    Parameters
    ----------
    top : SofaBoardTop
    btn_active_low, led_active_low : bool
        Polarity of the reset button and of the two LEDs on the board the pins are for.

    Attributes
    ----------
    osc : In(1)
        The clock pin.
    btn : In(1)
        Reset button (held: the design is in reset).
    uart_rx : In(1)
    uart_tx : Out(1)
    led_busy, led_error : Out(1)
    """

    def __init__(self, top, *, btn_active_low=False, led_active_low=False):
        if not isinstance(top, SofaBoardTop):
            raise TypeError(f"top must be a SofaBoardTop, not {top!r}")
        self.top = top
        self._btn_low, self._led_low = bool(btn_active_low), bool(led_active_low)
        super().__init__({
            "osc": In(1),
            "btn": In(1, init=int(self._btn_low)),
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "led_busy": Out(1),
            "led_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync", async_reset=False)
        m.d.comb += cd.clk.eq(self.osc)
        m.submodules.rst_sync = ResetSynchronizer(~self.btn if self._btn_low else self.btn,
                                                  domain="sync")
        m.submodules.top = top = self.top
        m.d.comb += [
            top.rx.eq(self.uart_rx),
            self.uart_tx.eq(top.tx),
            self.led_busy.eq(top.busy ^ self._led_low),
            self.led_error.eq(top.error ^ self._led_low),
        ]
        return m


# -- platforms ------------------------------------------------------------------------------------

def ecp5_pll_params(f_in_hz, f_out_hz, *, tolerance=0.005):
    """EHXPLLL dividers for ``f_out_hz`` from ``f_in_hz``: ``(CLKI_DIV, CLKFB_DIV, CLKOP_DIV,
    achieved Hz)``, feedback from CLKOP. PFD 3.125–400 MHz, VCO 400–800 MHz (ECP5 data sheet).
    """
    best = None
    for clki in range(1, 129):
        pfd = f_in_hz / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for fb in range(1, 81):
            fout = pfd * fb
            for op in range(1, 129):
                vco = fout * op
                if not 400e6 <= vco <= 800e6:
                    continue
                err = abs(fout - f_out_hz)
                if best is None or err < best[0]:
                    best = (err, clki, fb, op, fout)
    if best is None or best[0] > tolerance * f_out_hz:
        raise ConfigError(f"clock {f_out_hz / 1e6:g} MHz cannot be made from "
                          f"{f_in_hz / 1e6:g} MHz with the ECP5 PLL")
    return best[1], best[2], best[3], best[4]


class SofaBoard(Elaboratable):
    """:class:`SofaBoardTop` on an amaranth-boards platform.

    Parameters
    ----------
    cfg : SofaConfig
    baud : int
        UART line rate.
    clk_hz : float or None
        Core clock. ``None`` runs from the board's oscillator; another value uses an ECP5 PLL
        (ECP5 boards only).
    uart : tuple
        ``(resource name, number)`` of the UART to use.
    leds : bool
        Show ``busy`` and ``error`` on ``led`` 0 and 1 if the board has them.
    timeout_s : float
        Inter-byte timeout of the link.
    iterative_divider, max_payload, mem_bytes :
        See :class:`SofaLinkCore`; the request queue follows :func:`link_queue_bytes`.
    """

    def __init__(self, cfg, *, baud=DEFAULT_BAUD, clk_hz=None, uart=("uart", 0), leds=True,
                 timeout_s=DEFAULT_TIMEOUT_S, iterative_divider=True,
                 max_payload=DEFAULT_MAX_PAYLOAD, mem_bytes=None):
        self.cfg = cfg
        self.baud = baud
        self.clk_hz = clk_hz
        self.uart = uart
        self.leds = leds
        self.timeout_s = timeout_s
        self.iterative_divider = iterative_divider
        self.max_payload = max_payload
        self.mem_bytes = mem_bytes
        self.top = None                     # the SofaBoardTop, after elaboration
        self.resolved_clk_hz = None         # the core clock, after elaboration

    def elaborate(self, platform):
        m = Module()
        osc_hz = platform.default_clk_frequency
        clk_hz = osc_hz if self.clk_hz is None else float(self.clk_hz)
        if self.clk_hz is not None and abs(clk_hz - osc_hz) > 1:
            if getattr(platform, "family", None) != "ecp5":
                raise ConfigError(f"clk_hz = {clk_hz:g}: a PLL is only built for ECP5 boards; "
                                  f"leave it at the oscillator's {osc_hz:g} Hz")
            clki, fb, op, clk_hz = ecp5_pll_params(osc_hz, clk_hz)
            m.domains.sync = cd_sync = ClockDomain("sync")
            clk_pin = platform.request(platform.default_clk, dir="-")
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_pin)
            locked = Signal()
            pll_clk = Signal()
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{osc_hz / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{clk_hz / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=clki, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=op,
                p_CLKOP_CPHASE=op - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=fb,
                i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_buf.i, o_CLKOP=pll_clk,
                i_CLKFB=pll_clk, i_PHASESEL0=Const(0), i_PHASESEL1=Const(0),
                i_PHASEDIR=Const(1), i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1),
                i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0), o_LOCK=locked)
            m.d.comb += cd_sync.clk.eq(pll_clk)
            m.submodules.rst_sync = ResetSynchronizer(~locked, domain="sync")
            platform.add_clock_constraint(pll_clk, clk_hz)
        self.resolved_clk_hz = clk_hz
        divisor = divisor_for(clk_hz, self.baud)
        self.top = top = SofaBoardTop(
            self.cfg, divisor=divisor, timeout_cycles=max(1, round(self.timeout_s * clk_hz)),
            clk_hz=round(clk_hz), iterative_divider=self.iterative_divider,
            max_payload=self.max_payload, mem_bytes=self.mem_bytes,
            queue_bytes=link_queue_bytes(getattr(platform, "family", None)),
            global_reset=getattr(platform, "family", None) == "ecp5")
        m.submodules.top = top

        uart = platform.request(*self.uart, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx_buf.i), tx_buf.o.eq(top.tx)]
        if self.leds:
            for n, sig in enumerate((top.busy, top.error)):
                try:
                    led = platform.request("led", n, dir="-")
                except Exception:           # the board has fewer LEDs: skip the rest
                    break
                m.submodules[f"led{n}"] = buf = io.Buffer("o", led)
                m.d.comb += buf.o.eq(sig)
        return m
