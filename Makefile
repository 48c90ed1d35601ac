# Set-up and entry points. `make demo` and `make test` work from a fresh clone: they build the
# pinned environment (.venv, Python 3.12, requirements.lock) first.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo test test-slow test-all bench lock ui clean labeler-env jars deploy-local

# delta-spark's jars for the Spark engine, from Maven Central, sha256 as pinned (deploy/delta-spark)
JARS := .jars/delta-spark/.pinned-$(shell cat deploy/delta-spark/pom.xml deploy/delta-spark/SHA256SUMS | sha256sum | cut -c1-12)

$(STAMP): requirements.lock pyproject.toml
	@py=$$(scripts/find-python312.sh) && echo "using $$py" && "$$py" -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	scripts/venv-hook.sh $(VENV)
	@rm -f $(VENV)/.installed-* && touch $@

$(JARS): deploy/delta-spark/pom.xml deploy/delta-spark/SHA256SUMS
	scripts/fetch-jars.sh
	@if ls .jars/delta-spark/delta-spark_*.jar >/dev/null 2>&1; then rm -f .jars/delta-spark/.pinned-* && touch $@; fi

jars: $(JARS)

setup: $(STAMP) $(JARS)

# The main job: the asset graph over the offline twin of PAI (FLYWHEEL_* variables change it).
demo: $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/flywheel demo

# Lint (ruff, and the import-linter contract: layers only point down), then the default (quick, offline) suite.
test: $(STAMP) $(JARS)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q

# The marked tests CI also runs: slow (real-size twin, whole graph), Spark local mode, and the UI in
# headless Chromium (Debian's chromium + chromium-driver; .ci/run installs them).
test-slow: $(STAMP) $(JARS)
	$(BIN)/pytest -q -m "slow or spark or ui"

# A labeler's own environment (labelers/envs/$(NAME).txt), for labelers whose dependencies clash with
# the pipeline's: `make labeler-env NAME=alpamayo` on a GPU node; NAME=standin is the tested stand-in.
NAME ?= standin
labeler-env: $(STAMP)
	scripts/labeler-env.sh $(NAME)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

# Re-pin after changing pyproject dependencies: resolve in a scratch venv, freeze to the lock.
lock:
	@py=$$(scripts/find-python312.sh) && rm -rf .lockenv && "$$py" -m venv .lockenv
	.lockenv/bin/pip install -q -e ".[dev]"
	.lockenv/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock && rm -rf .lockenv

# The Dagster UI (and daemon: sensors, schedules) on http://127.0.0.1:$(UI_PORT), local only.
UI_PORT ?= 3000
ui: $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	@echo "lineage with every group open: $$($(BIN)/python -m dagster_project.lineage http://127.0.0.1:$(UI_PORT))"
	$(BIN)/dagster dev -m dagster_project -h 127.0.0.1 -p $(UI_PORT)

# docker-compose.yml's services without Docker: PostgreSQL (needs Debian's `postgresql`), the code
# server, the daemon and the webserver on http://127.0.0.1:$(UI_PORT), state under .deploy; Ctrl-C stops them.
deploy-local: $(STAMP)
	$(BIN)/flywheel deploy-local --ui-port $(UI_PORT)

clean:
	rm -rf lakehouse data .dagster_home .deploy
