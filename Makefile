# Two commands from a fresh clone: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch that lies on these machines' disk; anywhere else pip resolves it normally.
TORCH_PIN ?= torch==2.13.0

.PHONY: train test sklearn-suite setup data browser lint bench docs clean

train: data
	$(BIN)/softmax-regression train

test: data browser
	$(BIN)/python -m pytest

# scikit-learn's own test file (linear_model/tests/test_logistic.py) run against its classes
# and ours; the tests allowed to differ are listed in docs/sklearn.md. About a minute: CI runs
# it after `make test`.
sklearn-suite: setup
	$(BIN)/python scripts/sklearn_suite.py

setup: $(VENV)/.installed

# The d2l 0.17.6 wheel is only read (never installed) by tests comparing the book drop-in with it.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)" || echo "note: $(TORCH_PIN) unavailable; pip will pick torch from pyproject.toml"
	$(BIN)/python -m pip install --quiet -e ".[dev,book]"
	$(BIN)/python -m pip download --quiet --no-deps --dest $(VENV)/d2l-oracle d2l==0.17.6
	touch $@

# Make Fashion-MNIST available: already found (data dir, ../data, cache, Debian package),
# else Debian's package dataset-fashion-mnist when apt-get can be used, else a verified download.
data: setup
	@if $(BIN)/softmax-regression data where >/dev/null 2>&1; then \
		$(BIN)/softmax-regression data where; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1; then \
		$(BIN)/softmax-regression data verify; \
	else \
		$(BIN)/softmax-regression data download; \
	fi

# Debian's Chromium for the report page's browser tests (Playwright drives it; its own browser
# download is not used). Without root or apt-get those tests skip, except under CI=true.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "note: /usr/bin/chromium is missing and cannot be installed here (apt-get as root)"; \
	fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests benchmarks scripts

# The documentation site (mkdocs.yml, docs/), served at http://127.0.0.1:8000 and rebuilt on
# every change; tests/test_docs.py builds it with --strict and runs its code blocks.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
