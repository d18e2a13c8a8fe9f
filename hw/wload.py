"""WeightLoader: one head's weights of an on-demand K/V job (``kv_source = "project"``), read
from memory into :class:`hw.khat.KhatPredictor` and :class:`hw.project.ProjectionUnit`."""

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import read_cmd_layout
from hw.gearbox import Gearbox
from spec.job import WEIGHTS, weight_beats
from spec.numerics import LZ_BITS


__all__ = ["WeightLoader"]


class WeightLoader(wiring.Component):
    """On :py:`start`, four reads from the head's weight addresses (spec.job: the LZ codes,
    ``W_kᵀ``, ``W_vᵀ``, the biases), each of whole bus words, their bytes cut into the load
    words of the units:

    * the codes into words of ``khat_lanes · d`` codes for :py:`codes` (the stored order,
      ``m`` major and ``c`` minor, turned into KhatPredictor's ``c·khat_lanes + i``: wiring);
    * ``W_kᵀ`` and ``W_vᵀ`` into words of ``proj_macs`` weights for :py:`w`;
    * the biases into 32-bit words for :py:`bias`.

    Parameters
    ----------
    cfg : SofaConfig
        ``kv_source = "project"`` (spec.config checks that the words and the bus divide).

    Attributes
    ----------
    start : In(1)
        A pulse; :py:`bases` must hold the head's addresses then.
    bases : In(StructLayout({w: axi_addr_width for w in WEIGHTS}))
    cmd : Out(stream.Signature(read_cmd_layout(…, tag_width=0)))
    beat : In(stream.Signature(StructLayout({"data": axi_data_width, "last": 1})))
        The reads' beats, in command order (``last`` on each read's final beat).
    codes, w, bias : Out(stream)
        To ``KhatPredictor.w``, ``ProjectionUnit.w`` and ``ProjectionUnit.bias``.
    busy : Out(1)
        From :py:`start` until every word has left.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        aw, dw = cfg.axi_addr_width, cfg.axi_data_width
        self.code_bits = cfg.khat_lanes * cfg.d * LZ_BITS
        super().__init__({
            "start": In(1),
            "bases": In(data.StructLayout({w: aw for w in WEIGHTS})),
            "cmd": Out(stream.Signature(read_cmd_layout(aw, dw, 0))),
            "beat": In(stream.Signature(data.StructLayout({"data": dw, "last": 1}))),
            "codes": Out(stream.Signature(data.ArrayLayout(unsigned(LZ_BITS),
                                                           cfg.khat_lanes * cfg.d))),
            "w": Out(stream.Signature(data.ArrayLayout(signed(8), cfg.proj_macs))),
            "bias": Out(stream.Signature(signed(32))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        d, xl, dw = cfg.d, cfg.khat_lanes, cfg.axi_data_width
        counts = {"codes": cfg.d_model // xl, "w": 2 * d * cfg.d_model // cfg.proj_macs,
                  "bias": 2 * d}
        boxes = {"codes": Gearbox(dw, self.code_bits), "w": Gearbox(dw, 8 * cfg.proj_macs),
                 "bias": Gearbox(dw, 32)}
        for name, box in boxes.items():
            m.submodules[f"gear_{name}"] = box
        # the commands, one per tensor
        issued = Signal(range(len(WEIGHTS) + 1))
        with m.If(self.start):
            m.d.sync += issued.eq(0)
        for k, wt in enumerate(WEIGHTS):
            with m.If(issued == k):
                m.d.comb += [self.cmd.payload.addr.eq(self.bases[wt]),
                             self.cmd.payload.beats.eq(weight_beats(cfg, wt))]
        m.d.comb += self.cmd.valid.eq(self.busy & (issued != len(WEIGHTS)))
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += issued.eq(issued + 1)
        # the beats, tensor by tensor, to their gearbox
        tensor = Signal(range(len(WEIGHTS) + 1))
        with m.If(self.start):
            m.d.sync += tensor.eq(0)
        dest = {0: "codes", 1: "w", 2: "w", 3: "bias"}
        for k, name in dest.items():
            box = boxes[name]
            with m.If(tensor == k):
                m.d.comb += [box.i.valid.eq(self.beat.valid), box.i.payload.eq(self.beat.payload.data),
                             self.beat.ready.eq(box.i.ready)]
        with m.If(self.beat.valid & self.beat.ready & self.beat.payload.last):
            m.d.sync += tensor.eq(tensor + 1)
        # the words out; the codes' order turned from (i, c) to (c, i)
        left = {n: Signal(range(c + 1), name=f"left_{n}") for n, c in counts.items()}
        codes = boxes["codes"].o.payload
        m.d.comb += self.codes.payload.eq(Cat(
            codes[LZ_BITS * (i * d + c):LZ_BITS * (i * d + c + 1)]
            for c in range(d) for i in range(xl)))
        m.d.comb += [self.w.payload.eq(boxes["w"].o.payload),
                     self.bias.payload.eq(boxes["bias"].o.payload)]
        for name, out in (("codes", self.codes), ("w", self.w), ("bias", self.bias)):
            box = boxes[name]
            m.d.comb += [out.valid.eq(box.o.valid), box.o.ready.eq(out.ready)]
            with m.If(self.start):
                m.d.sync += left[name].eq(counts[name])
            with m.Elif(out.valid & out.ready):
                m.d.sync += left[name].eq(left[name] - 1)
        m.d.comb += self.busy.eq(Cat(left[n] != 0 for n in counts).any())
        return m
