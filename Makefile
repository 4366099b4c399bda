# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test bench fuzz system-dataset system-browser system-c-runtime system-arduino tflm-trees clean

# Set-up prints one line a step (scripts/step.sh); what pip and apt print goes to
# build/setup-logs/STEP.log, whose end and path a failing step prints.
STEP := scripts/step.sh

# The virtual environment, rebuilt whenever the pinned requirements change.
$(INSTALLED): requirements.txt pyproject.toml
	@$(STEP) venv "creating $(VENV)" $(PYTHON) -m venv $(VENV)
	@$(STEP) pip "installing pip 26.3" $(BIN)/pip install --upgrade "pip==26.3"
	@$(STEP) pip-requirements "installing Python packages (requirements.txt)" \
		$(BIN)/pip install -r requirements.txt
	@$(STEP) pip-denselab "installing denselab (pip install -e .)" \
		$(BIN)/pip install --no-deps -e .
	@touch $(INSTALLED)

system-dataset:
	@scripts/system-packages.sh dataset

# Debian's chromium, for the browser test of the serving page (Playwright drives it).
system-browser:
	@scripts/system-packages.sh browser

# The C compiler, the ARM cross-compiler with newlib, and QEMU: the C runtime's three checks.
system-c-runtime:
	@scripts/system-packages.sh c-runtime

# avr-gcc, simavr and Debian's Arduino AVR core: the Arduino Uno's checks and the Arduino library's.
system-arduino:
	@scripts/system-packages.sh arduino

# The main job: every experiment of the exercise over 3 seeds, and its report
# (reports/explore/report.html). Runs already in runs/denselab.sqlite are reused. Where
# TFLM's trees are found, the report's TFLM boards use TFLM's measured figures; elsewhere it
# runs all the same, on the estimate, and says so.
run: $(INSTALLED) system-dataset system-browser system-c-runtime system-arduino
	DENSELAB_TFLM_TREES="$$(scripts/tflm-trees.sh 2>/dev/null)" $(BIN)/denselab explore

# TensorFlow Lite Micro's two source trees, which the firmware tests build against: checked
# first, so that without them `make test` stops at once with one line saying how to get them,
# and handed to pytest as DENSELAB_TFLM_TREES (scripts/tflm-trees.sh).
tflm-trees:
	@scripts/tflm-trees.sh >/dev/null

test: tflm-trees $(INSTALLED) system-dataset system-browser system-c-runtime system-arduino
	scripts/tflm-trees.sh $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs reports

# Benchmarks (not tests): the exercise's code vs denselab vs a near-limit JAX loop.
bench: tflm-trees $(INSTALLED) system-dataset system-c-runtime system-arduino
	scripts/tflm-trees.sh $(BIN)/python bench/run.py

# Fuzzing: `make test` runs tests/test_fuzz.py with a few hundred examples per test; this runs
# thousands of random and mutated inputs for the IDX reader, the image decoder, study files and
# /predict, and reports how many examples each test ran.
fuzz: $(INSTALLED) system-dataset
	DENSELAB_FUZZ_PROFILE=fuzz $(BIN)/python -m pytest tests/test_fuzz.py -q --hypothesis-show-statistics
