"""RTL simulation of the generated Verilog on Verilator with cocotb.

* :mod:`gen.rtlsim.runner`: elaborate, build and run a cocotb test module (:func:`run_cocotb`),
  and the toolchain's environment fixes. Imports neither cocotb nor Amaranth until it runs.
* :mod:`gen.rtlsim.streams`: the stream source, sink and checker of the testbenches, and the
  sidecar a testbench reads its config from.
* :mod:`gen.rtlsim.core`: the driver of ``sofa_top`` (K/V, registers, queries, ``O``,
  counters), shared by the benchmark and the core's tests.
* :mod:`gen.rtlsim.bench_tb`: the benchmark's testbench, run by :mod:`gen.bench`.

``streams``, ``core`` and ``bench_tb`` run inside the simulator (they import cocotb).
"""
