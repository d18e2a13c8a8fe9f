"""The specification floor of SOFA-gen: plain Python that everything else builds on.

Nothing here imports Amaranth or another package of this project. The hardware (``hw``), the
models (``sim``), the flows and the host (``gen``) take every contract from here:

* :mod:`spec.config`: :class:`~spec.config.SofaConfig` (compile-time knobs, presets,
  validation, derived widths) and :class:`~spec.config.RunParams` (run-time parameters);
* :mod:`spec.regmap`: the register map as data (addresses, widths, access, reset values, legal
  ranges, counters and the values they must read after a query);
* :mod:`spec.numerics`: the fixed-point rules the RTL and the golden model share (the exp2
  table, every named rounding step);
* :mod:`spec.sortnet`: the SADS compare-exchange networks as data;
* :mod:`spec.timing`: latency and initiation interval of every unit, as formulas;
* :mod:`spec.protocol`: the host-link frame format (opcodes, status codes, CRC, IDENT, codec);
* :mod:`spec.validate`: the checks every entry point applies to what a user gives it.
"""
