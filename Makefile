# The two commands a fresh checkout needs are `make demo` and `make test`; each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-core
LOCAL_STAMP := $(VENV)/.installed-local

.PHONY: demo test lint manifests bench bench-scale clean web web-test test-hermes bench-hermes test-local bench-local
.PHONY: openclaw-gateway test-openclaw test-deploy redis

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# Spoken in the browser when the local extra installs and the page builds; typed otherwise (the demo says why).
demo: $(STAMP) web
	@$(MAKE) --no-print-directory $(LOCAL_STAMP) || echo "make demo: the local extra (speech) did not install; the demo will be typed only" >&2
	@$(BIN)/voice-channel demo --runtime demo

test: $(STAMP) web web-test
	$(BIN)/pytest
	$(MAKE) --no-print-directory test-hermes
	$(MAKE) --no-print-directory test-local

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

# Single turns on a quiet server (bench/first_chunk.py), then N concurrent conversations per core (bench/scale.py).
bench: $(STAMP)
	$(BIN)/python bench/first_chunk.py
	$(MAKE) --no-print-directory bench-scale

bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py --compare-gc

# The local engine's extra (Whisper, piper, VAD; no torch) and its voice tests, which run only here.
$(LOCAL_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[local,test]'
	@touch $@

test-local: $(LOCAL_STAMP)
	VOICE_CHANNEL_LOCAL_TESTS=1 $(BIN)/pytest tests/plugin/local_engine

bench-local: $(LOCAL_STAMP)
	$(BIN)/python bench/local_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis web/node_modules $(WEB_BUILT)

# --- the browser page: web/ (package.json + lockfile) built with esbuild into plugin/voice_channel/static/ ---
# Needs Node.js and npm. Without them the page is not built and its tests skip, except under CI where that fails.
NPM       ?= npm
WEB_BUILT := plugin/voice_channel/static/app.js plugin/voice_channel/static/libsamplerate.worklet.js \
             plugin/voice_channel/static/THIRD_PARTY_LICENSES.txt
WEB_DEPS  := web/node_modules/.package-lock.json

ifneq ($(shell command -v $(NPM)),)
web: $(WEB_BUILT)

web-test: $(WEB_DEPS)
	cd web && $(NPM) test --silent
else
web-test: web
web:
	@if [ -n "$$CI" ]; then \
		echo "make web: npm not found; Node.js and npm are needed to build the browser page" >&2; exit 1; \
	fi
	@echo "make web: npm not found: the browser page is not built and its tests will be skipped" >&2
endif

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && $(NPM) ci --no-audit --no-fund --loglevel=error

# One run of build.mjs writes all three files (a grouped target).
$(WEB_BUILT) &: $(WEB_DEPS) web/build.mjs $(wildcard web/src/*.js)
	cd web && $(NPM) run --silent build

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

# --- serving past one process (issue #14): gunicorn, Redis, nginx, Kubernetes manifests --------------
# The `scale` extra (gunicorn, redis) and the deploy tests' schema validator. redis-server and nginx are
# Debian packages (.ci/run installs them); under CI their tests fail when they are missing.
DEPLOY_STAMP := $(VENV)/.installed-deploy

$(DEPLOY_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,scale,test-deploy]'
	@touch $@

test: $(DEPLOY_STAMP)

test-deploy: $(DEPLOY_STAMP)
	$(BIN)/pytest tests/deploy

# A local Redis for manual runs (VOICE_CHANNEL_REDIS__URL=redis://127.0.0.1:6379/0), in the foreground:
# Ctrl-C stops it. Nothing is saved to disk.
REDIS_PORT ?= 6379
redis:
	@command -v redis-server >/dev/null || { echo "make redis: redis-server not found (apt-get install redis-server)" >&2; exit 1; }
	redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --save '' --appendonly no --dir "$${TMPDIR:-/tmp}"
