"""Offline, deterministic, never-repeating data for the T5 and ViT scaling runs.

- `make_source("t5", corpus="stdlib", input_length=128, ...)`: ByT5-style span corruption
  over the interpreter's standard library (or a local .txt / C4 JSON-lines corpus); D counts
  encoder input tokens.
- `make_source("vit", num_classes=256, ...)`: procedural FractalDB-style images, unlimited
  (the default, kept for the archived runs); `make_source("vit", dataset="teacher", ...)`:
  random-field images with a fixed random ViT teacher's targets and a known loss floor (the
  ViT grid's task); `make_source("vit", dataset=path)` reads a local CIFAR-10 style set in one
  pass. D counts images.
Every source follows `DataSource`; `max_units` / `check_units` guard the data budget. Vision
sources also carry `num_classes` (the head size); text ids live below VOCAB_SIZE.
"""

from typing import Literal

from sparsekit.data.fractal import FractalConfig, FractalSource
from sparsekit.data.images import ImageArrayConfig, ImageArraySource
from sparsekit.data.source import DataSource, check_units, max_units
from sparsekit.data.spans import EOS_ID, PAD_ID, VOCAB_SIZE
from sparsekit.data.teacher import TeacherConfig, TeacherSource
from sparsekit.data.text import TextConfig, TextSource

FRACTAL = "fractal"
TEACHER = "teacher"

__all__ = [
    "EOS_ID",
    "FRACTAL",
    "PAD_ID",
    "TEACHER",
    "VOCAB_SIZE",
    "DataSource",
    "FractalConfig",
    "FractalSource",
    "ImageArrayConfig",
    "ImageArraySource",
    "TeacherConfig",
    "TeacherSource",
    "TextConfig",
    "TextSource",
    "check_units",
    "make_source",
    "max_units",
]


def make_source(family: Literal["t5", "vit"], **options) -> DataSource:
    """The data source of a model family; `options` are the fields of its config.

    "t5": `TextConfig` fields. "vit": `dataset="fractal"` (default) with `FractalConfig` fields,
    `dataset="teacher"` with `TeacherConfig` fields, or `dataset=<path>` with
    `ImageArrayConfig` fields other than `path`.
    """
    if family == "t5":
        return TextSource(TextConfig(**options))
    if family == "vit":
        dataset = str(options.pop("dataset", FRACTAL))
        if dataset == FRACTAL:
            return FractalSource(FractalConfig(**options))
        if dataset == TEACHER:
            return TeacherSource(TeacherConfig(**options))
        return ImageArraySource(ImageArrayConfig(path=dataset, **options))
    raise ValueError(f"family must be 't5' or 'vit', got {family!r}")
