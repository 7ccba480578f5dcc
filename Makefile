# The two commands a fresh checkout needs are `make demo` and `make test`; each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-core

.PHONY: demo test lint manifests bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

demo: $(STAMP)
	@$(BIN)/voice-channel demo --runtime demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/pip install --quiet ruff
	$(BIN)/ruff check plugin tests bench

manifests: $(STAMP)
	$(BIN)/python -m voice_channel.manifest --write

bench: $(STAMP)
	$(BIN)/python bench/first_chunk.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
