"""Model families (ViT, T5) in Flax NNX, their losses and the width solver.

N always means non-zero non-embedding parameters: the BlockParam census.
"""

from sparsekit.models.families import (
    REGISTRY,
    Family,
    T5Family,
    ViTFamily,
    census,
    get_family,
    kinds,
    width_for,
)
from sparsekit.models.losses import t5_loss, vit_loss
from sparsekit.models.params import BlockParam, EmbedParam
from sparsekit.models.t5 import T5, shift_right
from sparsekit.models.vit import ViT

__all__ = [
    "REGISTRY",
    "T5",
    "BlockParam",
    "EmbedParam",
    "Family",
    "T5Family",
    "ViT",
    "ViTFamily",
    "census",
    "get_family",
    "kinds",
    "shift_right",
    "t5_loss",
    "vit_loss",
    "width_for",
]
