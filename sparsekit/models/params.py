"""Parameter kinds: which weights are pruned and which count towards the law's N.

The pruning rule is a readable filter over these types, not a naming convention:
- `BlockParam`: a weight matrix of a Transformer block (attention q/k/v/o, MLP). Pruned to
  the run's sparsity S; its non-zeros are the law's N.
- `EmbedParam`: token or patch embedding and output head. Dense by default; with the paper's
  embedding rule it is pruned to the milder 1 - sqrt(1 - S). Never counted in N.
- any other `nnx.Param` (norm scales, biases, relative position bias): always dense, not in N.
"""

from flax import nnx


class BlockParam(nnx.Param):
    """Attention or MLP weight matrix of a Transformer block: pruned, counted in N."""


class EmbedParam(nnx.Param):
    """Embedding, patch-embedding or output-head matrix: dense unless the embedding rule is on."""
