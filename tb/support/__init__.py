"""What the tests share among themselves: config matrices, stimulus, expected values and
scripts, used by the Amaranth-simulator tests and their cocotb testbenches on Verilator alike.

Only tests import this package; the product never does, and no test module imports another
test module.
"""
