# Two commands from a fresh clone: `make demo` (set up + the embedded demo) and
# `make test` (set up + whole test suite; what CI runs via .ci/run).
# torch is pinned to the CPU build and installed first so no CUDA wheels are pulled;
# the other dependencies are pinned by constraints.txt.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= intsim-demo

.PHONY: setup test rtl-tools rtl-test fuzz demo demo-quick demo-real readme-table clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[all]" -c constraints.txt
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2

# The reference RTL (rtl/, docs/rtl.md) cosimulated through cocotb with Icarus Verilog: Debian's
# iverilog 11 (installed here if missing; needs root or sudo) and cocotb (pinned in constraints.txt).
# Debian's Verilator 5.006 is too old for current cocotb, so Icarus it is.
rtl-tools: $(STAMP)
	command -v iverilog >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y iverilog || { $$SUDO apt-get update && $$SUDO apt-get install -y iverilog; }; }
	$(PY) -c "import cocotb_tools.runner" 2>/dev/null || $(PY) -m pip install cocotb -c constraints.txt

rtl-test: rtl-tools
	$(PY) -m pytest -q -p no:xdist tests/rtl

# Fuzz the five readers (artifact, golden, image, accelerator TOML, HDF5 weights) at the full budget,
# under a 2 GiB address-space limit (random seeds; CI runs tests/fuzz at a small one);
# writes benchmarks/results/fuzz.json. FUZZ_ATHERIS=N also runs the atheris harnesses N runs each.
FUZZ_EXAMPLES ?= 10000
FUZZ_ATHERIS ?= 0
fuzz: $(STAMP)
	nice $(PY) -m tests.fuzz.run --examples $(FUZZ_EXAMPLES) --atheris-runs $(FUZZ_ATHERIS)

demo: $(STAMP)
	$(VENV)/bin/intsim demo --out $(DEMO_OUT)

demo-quick: $(STAMP)
	$(VENV)/bin/intsim demo --quick --out $(DEMO_OUT)-quick

# IMDN x4 on Set5: needs the data root ($$INTSIM_DATA_ROOT or ../shared)
demo-real: $(STAMP)
	$(VENV)/bin/intsim demo --real --out $(DEMO_OUT)-real

# Rewrite README.md's results table from the committed results/*.json (copies of summary.json)
readme-table: $(STAMP)
	$(PY) -m reports.readme_table

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
