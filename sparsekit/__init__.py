"""sparsekit: sparse-training scaling laws for Transformers in JAX.

Submodules load lazily where they need heavy dependencies (pandas, plotly, dask, orbax), so
`import sparsekit` stays fast. N always means non-zero non-embedding parameters; D means
training tokens (T5) or images (ViT).
"""

import os as _os

__version__ = "0.1.0"

# Set in a sweep's worker processes (`sweep._sigint_deferred`): the sweep stops its workers on
# Ctrl-C, so a worker ignores the terminal's SIGINT from its first import on.
SWEEP_WORKER_ENV = "SPARSEKIT_SWEEP_WORKER"
if _os.environ.get(SWEEP_WORKER_ENV):
    import signal as _signal

    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
