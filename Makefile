# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test bench system-dataset clean

# The virtual environment, rebuilt whenever the pinned requirements change.
$(INSTALLED): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(INSTALLED)

system-dataset:
	scripts/system-packages.sh dataset

# The main job: train the exercise's model and show its prediction for test image 0.
run: $(INSTALLED) system-dataset
	$(BIN)/denselab train --hidden 20 --seed 0 --out runs/exercise
	$(BIN)/denselab predict runs/exercise/model.keras --index 0

test: $(INSTALLED) system-dataset
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs reports
