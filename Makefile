# The two commands a fresh checkout needs are `make demo` and `make test`; each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-core

.PHONY: demo test lint manifests bench clean test-hermes bench-hermes

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

demo: $(STAMP)
	@$(BIN)/voice-channel demo --runtime demo

test: $(STAMP)
	$(BIN)/pytest
	$(MAKE) --no-print-directory test-hermes

# Hermes Agent adapter: the `hermes` extra, and its tests in their own pytest process (importing Hermes's
# gateway reads $$HERMES_HOME and rewrites os.environ, so it must not share a process with other tests).
HERMES_STAMP := $(VENV)/.installed-hermes

$(HERMES_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,hermes]'
	@touch $@

test-hermes: $(HERMES_STAMP)
	$(BIN)/pytest tests/adapters/hermes

bench-hermes: $(HERMES_STAMP)
	$(BIN)/python bench/hermes_first_chunk.py

lint: $(STAMP)
	$(BIN)/pip install --quiet ruff
	$(BIN)/ruff check plugin adapters tests bench

manifests: $(STAMP)
	$(BIN)/python -m voice_channel.manifest --write

bench: $(STAMP)
	$(BIN)/python bench/first_chunk.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
