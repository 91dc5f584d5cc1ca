# nadkit: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DEMO_DIR ?= out/demo

.PHONY: install lock system-packages demo test test-slow test-all test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# torch first, pinned, so that the project's "torch>=" requirement is already met and no GPU build is pulled in.
# Every other package at the version constraints.txt names: the set the tests last passed with, so that a
# release of a dependency cannot change a run between two clones of the same commit.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install -c constraints.txt -e ".[all,dev]"
	touch $@

install: $(VENV)/.installed

# Move the tested set forward: every dependency to its newest release that pyproject.toml allows (torch
# stays at TORCH_VERSION), then constraints.txt rewritten from what is installed. Run the tests after.
lock: install
	$(BIN)/python -m pip install --upgrade --upgrade-strategy eager "torch==$(TORCH_VERSION)" -e ".[all,dev]"
	$(BIN)/python tools/lock.py --out constraints.txt

# Debian packages the end-to-end tests use: chromium (triage page), softflowd and nfdump (NetFlow export
# and collection), and a Java 17 runtime for Spark (`nadkit detect --engine spark`). Installed only when
# missing; needs root or sudo.
SYSTEM_PACKAGES ?= chromium softflowd nfdump argus-server argus-client openjdk-17-jre-headless
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: install
	$(BIN)/nadkit demo --out $(DEMO_DIR)

# the system packages are installed where this user may (root or sudo); otherwise the tests that need
# them are skipped and the last line of the run lists them.
# `make test`: the default run, every test not marked slow; `make test-slow`: the slow ones (long
# end-to-end runs, kills, Spark, fuzzing); `make test-all`: both in one run. CI runs test and test-slow.
test: install
	@$(MAKE) --no-print-directory system-packages || echo "could not install the system packages; the tests that need them are skipped and listed at the end"
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install
	@$(MAKE) --no-print-directory system-packages || echo "could not install the system packages; the tests that need them are skipped and listed at the end"
	$(BIN)/python -m pytest -q -m slow

test-all: install
	@$(MAKE) --no-print-directory system-packages || echo "could not install the system packages; the tests that need them are skipped and listed at the end"
	$(BIN)/python -m pytest -q

test-fast: test

lint: install
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools

bench: install
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
