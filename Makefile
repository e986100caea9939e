# rnn-classifier: every target CI runs is here; `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= data/simulated_survey
DEMO_DIR ?= runs/demo

.DEFAULT_GOAL := help
.PHONY: help demo test lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The environment is rebuilt whenever the lock file or the package metadata changes.
$(BIN)/rnn-classifier: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/pip check
	touch $@

venv: $(BIN)/rnn-classifier ## create .venv from requirements.lock

$(DATA_DIR)/train_labels.npy: | $(BIN)/rnn-classifier
	$(BIN)/rnn-classifier simulate --output-dir $(DATA_DIR)

demo: $(BIN)/rnn-classifier $(DATA_DIR)/train_labels.npy ## simulate the survey (once), train GRU + focal loss, evaluate
	$(BIN)/rnn-classifier train --data-dir $(DATA_DIR) --output-dir $(DEMO_DIR)/model \
		--time-column 0 --overwrite
	$(BIN)/rnn-classifier evaluate --data-dir $(DATA_DIR) --model-dir $(DEMO_DIR)/model

test: $(BIN)/rnn-classifier ## run the test suite and the linter
	$(BIN)/ruff check rnn_classifier tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(BIN)/rnn-classifier ## ruff
	$(BIN)/ruff check rnn_classifier tests benchmarks

clean: ## remove build outputs and runs (keeps .venv and data)
	rm -rf build runs .pytest_cache
