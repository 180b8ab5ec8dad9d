"""sparsekit: sparse-training scaling laws for Transformers in JAX.

Submodules load lazily where they need heavy dependencies (pandas, plotly, dask, orbax), so
`import sparsekit` stays fast. N always means non-zero non-embedding parameters; D means
training tokens (T5) or images (ViT).
"""

__version__ = "0.1.0"
