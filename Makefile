# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test chaos bench lint typecheck clean

demo: $(VENV)/.installed
	$(BIN)/forkq demo

# The whole suite on python3, then its fast tests on the oldest and the newest Python forkq
# supports, each in a venv of its own (.venv-py3.X); `make test OTHER_PYTHONS=` leaves them out.
OTHER_PYTHONS ?= 3.10 3.13

test: $(VENV)/.dev-installed lint typecheck
	scripts/ensure-services
	$(BIN)/python -m pytest
	$(if $(strip $(OTHER_PYTHONS)),scripts/test-other-pythons $(OTHER_PYTHONS))

# The chaos suite (tests/chaos, marker `chaos`): children, whole workers and brokers killed
# under load, a warm shutdown, a Sentinel and a Cluster failover, partitions; each scenario
# prints one line of figures (sent, completed, lost, duplicates against the in-flight bound,
# dead-lettered, recovery), repeated at the end and written to .chaos/figures.txt
# (FORKQ_CHAOS_FIGURES names another file). About a minute on 2 vCPUs; the brokers it kills are private servers it starts.
chaos: $(VENV)/.dev-installed
	scripts/ensure-services
	$(BIN)/python -m pytest -m chaos tests/chaos

# forkq against Huey, Dramatiq, Celery and RQ on this machine, suites 1-7 (about 35 minutes on
# 2 vCPUs, the memory suite about 6 of them, fan-out and chords about 5), and suite 8, forkq's
# control round trip (under a minute); writes
# docs/benchmarks.md. `make bench BENCH_OPTIONS="--suites fanout"` runs some of them only. The
# peers go into bench/.peers-venv and forkq with its runtime dependencies only into
# bench/.forkq-venv, as users install them; .venv runs the harness.
bench: $(VENV)/.dev-installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	scripts/ensure-services
	$(BIN)/python bench/compare.py $(BENCH_OPTIONS)

# lint-imports checks the layer contract in pyproject.toml (which package may import which).
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/lint-imports

# mypy strict over src/forkq and tests/typing (pyproject's `files`): one incremental run. The
# typing tests hold lines that must be errors, each with a `type: ignore[code]` that strict
# mypy reports when it is not needed.
typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(VENV)/.installed $@

clean:
	rm -rf $(VENV) .venv-py3.* .chaos build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
