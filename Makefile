# ScraperV4 Scale: the single entry point. `make help` lists the targets.
#
# Everything is installed into ./.venv by the project itself (maturin, test tools, benchmark
# peers); nothing outside the repository is needed but Python >= 3.10, a Rust toolchain and,
# for the Redis tests, redis-server (`.ci/run` installs it with apt-get).

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# pyo3 must see the same interpreter in `cargo test`, `cargo clippy` and `maturin develop`,
# or each would rebuild the pyo3 crates for "another" Python.
export PYO3_PYTHON := $(abspath $(VPY))
# Rust test binaries link libpython; a pyenv/venv Python keeps it outside the loader's path.
PY_LIBDIR = $(shell $(VPY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')

.PHONY: help
help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.tools: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet 'maturin>=1.9.4,<2'
	touch $@

.PHONY: install
install: $(VENV)/.tools ## create .venv and install the package (debug build) with test tools
	rm -f python/scraperv4/_core*.so
	$(VENV)/bin/maturin develop --quiet --extras test,deploy

.PHONY: install-release
install-release: $(VENV)/.tools ## install an optimised build (benchmarks, the demo)
	rm -f python/scraperv4/_core*.so
	$(VENV)/bin/maturin develop --quiet --release --extras test,deploy

# The demo needs the package alone: no test tools (pytest, Playwright, schemathesis, mypy...).
.PHONY: install-demo
install-demo: $(VENV)/.tools
	rm -f python/scraperv4/_core*.so
	$(VENV)/bin/maturin develop --quiet --release

.PHONY: demo
demo: install-demo ## install the package (optimised) and run the main job: crawl the bundled demo shop
	$(VENV)/bin/scraperv4 demo

.PHONY: bench
bench: install-release ## build optimised, install the peers, run every benchmark
	@command -v nginx >/dev/null && command -v wrk >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq nginx-light wrk redis-server)
	$(VPY) -m pip install --quiet -r benches/requirements.txt
	@status=0; for script in benches/bench_*.py; do \
		echo "### $$script"; $(VPY) $$script || status=1; \
	done; exit $$status

FUZZ_SECONDS ?= 300
.PHONY: fuzz
fuzz: ## fuzz extraction and template loading for FUZZ_SECONDS each (needs a nightly toolchain)
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && for target in extract extract_diff template; do \
		cargo +nightly fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 \
			-max_len=200000 || exit 1; \
	done

.PHONY: docs
docs: install ## regenerate docs/configuration.md from the settings model
	$(VENV)/bin/scraperv4 config docs > docs/configuration.md

.PHONY: format
format: $(VENV)/.tools ## format Rust and Python code
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches examples monitoring
	$(VENV)/bin/ruff check --fix python tests benches examples monitoring

.PHONY: lint
lint: install ## all linters: rustfmt, clippy, ruff, stubtest
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches examples monitoring
	$(VENV)/bin/ruff format --check python tests benches examples monitoring
	$(VPY) -m mypy.stubtest scraperv4._core --allowlist .mypy-stubtest-allowlist
	$(VPY) -m mypy python/scraperv4

.PHONY: test-rust
test-rust: $(VENV)/.tools ## Rust unit and integration tests
	LD_LIBRARY_PATH="$(PY_LIBDIR):$$LD_LIBRARY_PATH" cargo test --all-targets

# promtool and the docker CLI, from Debian packages (.ci/deploy-tools says how and why).
$(VENV)/deploy-tools/.done: .ci/deploy-tools
	.ci/deploy-tools
	touch $@

.PHONY: deploy-tools
deploy-tools: $(VENV)/deploy-tools/.done ## the deployment kit's checkers that come from Debian

.PHONY: test-python
test-python: install deploy-tools ## pytest (the deployment kit's checks included)
	$(VPY) -m pytest

.PHONY: test-image
test-image: install-release deploy-tools ## build the runtime image with buildah from a Debian root filesystem, run it
	@command -v buildah >/dev/null && command -v mmdebstrap >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq buildah mmdebstrap)
	$(VPY) -m pytest -p no:cacheprovider -o addopts="" tests/image_build.py

.PHONY: test
test: lint test-rust test-python ## set up everything and run every check and test

CHAOS_REPORT ?= target/chaos-report.jsonl
.PHONY: chaos
chaos: install ## the chaos suite's long versions: faults in a real fleet, figures to CHAOS_REPORT
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	mkdir -p $(dir $(CHAOS_REPORT)) && rm -f $(CHAOS_REPORT)
	SCRAPERV4_CHAOS=long SCRAPERV4_CHAOS_REPORT=$(abspath $(CHAOS_REPORT)) \
		$(VPY) -m pytest -m chaos -s -rxX tests/test_chaos.py

.PHONY: clean
clean: ## remove build outputs and the virtualenv
	cargo clean
	rm -rf $(VENV) python/scraperv4/_core*.so .pytest_cache .ruff_cache .mypy_cache
