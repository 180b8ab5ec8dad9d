# Two entry points (see README): `make book` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# JAX's persistent compilation cache: repeated shapes (every run of a sweep, every test that
# trains) compile once. A cache hit gives the same executable, so the numbers do not change.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0

.PHONY: book book-stored book-full book-smoke test lint env lock lock-check accelerator browser

# The environment is uv.lock (all extras, CPython 3.11), made by uv from pyproject.toml.
# uv itself comes from the package index into .venv, at the version the lock pins.
UV         := $(VENV)/bin/uv
UV_VERSION  = $(shell sed -n '/^name = "uv"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' uv.lock)
EXPORT      = $(UV) export --quiet --frozen --all-extras --no-hashes

$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"

# Fails, naming the fix, when pyproject.toml changed and the lock was not regenerated.
lock-check: $(UV)
	@$(UV) lock --check --quiet || { echo "uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock and requirements-lock.txt" >&2; exit 1; }
	@$(EXPORT) | cmp -s - requirements-lock.txt || { echo "requirements-lock.txt is not the export of uv.lock: run 'make lock' and commit it" >&2; exit 1; }

# Regenerate the lock after a change to pyproject.toml (versions already locked stay unless
# pyproject.toml excludes them; `$(UV) lock --upgrade-package NAME` moves one on purpose),
# and its pip-readable export for environment.yml.
lock: $(UV)
	$(UV) lock
	$(EXPORT) > requirements-lock.txt

# Non-empty when the installed packages differ from the lock (one installed by hand at another
# version, say): then the stamp is remade even though it is newer than the lock.
DRIFTED := $(shell test -f $(STAMP) && { $(PY) scripts/check_env.py >/dev/null 2>&1 || echo drifted; })

# Install exactly the locked versions (sparsekit editable, every extra) and register the kernel.
$(STAMP): pyproject.toml uv.lock $(if $(DRIFTED),FORCE) | lock-check
	@test -z "$(DRIFTED)" || echo "the installed packages differ from uv.lock: re-syncing"
	$(UV) sync --frozen --all-extras --quiet
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

env: $(STAMP)

FORCE:

# An accelerator build of the locked jax on top of the locked environment, the lock unedited:
# make accelerator JAX_EXTRA=cuda12 (or cuda13, tpu). A later re-sync (after a lock change)
# removes it again; run this once more then.
JAX_EXTRA ?= cuda12
accelerator: $(STAMP)
	$(UV) pip install --python $(PY) "jax[$(JAX_EXTRA)]==$$($(PY) -c 'import jax; print(jax.__version__)')"

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
