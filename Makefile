# Two entry points (see README): `make book` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# JAX's persistent compilation cache: repeated shapes (every run of a sweep, every test that
# trains) compile once. A cache hit gives the same executable, so the numbers do not change.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0

.PHONY: book book-stored book-full book-smoke test lint env browser

# Create the virtual environment and install sparsekit with the book and dev extras.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

env: $(STAMP)

# Headless Chromium for the offline-rendering test (Debian package; needs root on a fresh machine).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Execute every notebook (default parameters, reusing finished runs) and render the book.
book: $(STAMP)
	$(PY) scripts/build_book.py

# Same, but training nothing: the chapters show the runs already stored (minutes).
book-stored: $(STAMP)
	$(PY) scripts/build_book.py -p train_missing False

# Same, recomputing every run instead of reusing the results store.
book-full: $(STAMP)
	$(PY) scripts/build_book.py --recompute

# Tiny grids, few steps: what CI runs.
book-smoke: $(STAMP)
	$(PY) scripts/build_book.py --smoke

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Lint, then the whole test suite (includes the smoke book build and the offline browser test).
test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q
