# The two commands a fresh checkout needs are `make demo` and `make test`; each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-core

.PHONY: demo test lint manifests bench clean
.PHONY: openclaw-gateway test-openclaw

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
	$(BIN)/ruff check adapters

manifests: $(STAMP)
	$(BIN)/python -m voice_channel.manifest --write

bench: $(STAMP)
	$(BIN)/python bench/first_chunk.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# --- runtime adapters (openai, openclaw) -------------------------------------------------------
# Their test peers: the openclaw extra (cryptography), hermes-agent (its API server is the openai
# runtime's real peer) and Node 24 from PyPI (for the real OpenClaw Gateway).
ADAPTERS_STAMP := $(VENV)/.installed-adapters

$(ADAPTERS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,openclaw,hermes,test-openclaw]'
	@touch $@

test: $(ADAPTERS_STAMP)

# The real OpenClaw Gateway (openclaw 2026.9.6 from npm) in .cache/openclaw; idempotent.
openclaw-gateway: $(ADAPTERS_STAMP)
	$(BIN)/python tests/adapters/openclaw/openclaw_sandbox.py install

# The slow real-Gateway tier alone (`make test` runs it too once the Gateway is installed).
test-openclaw: openclaw-gateway
	CI=1 $(BIN)/pytest tests/adapters/openclaw tests/manifests
