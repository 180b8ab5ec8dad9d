"""Offline, deterministic, never-repeating data for the T5 and ViT scaling runs.

- `make_source("t5", corpus="stdlib", input_length=128, ...)`: ByT5-style span corruption
  over the interpreter's standard library, `corpus="pinned"` over the locked environment's
  Python source and the standard library (about 190 MB, pinned by a committed manifest:
  `sparsekit.data.pinned`), or a local .txt / C4 JSON-lines corpus; D counts encoder input
  tokens.
- `make_source("vit", num_classes=256, ...)`: procedural FractalDB-style images, unlimited
  (the default, kept for the archived runs); `make_source("vit", dataset="teacher", ...)`:
  random-field images with a fixed random ViT teacher's targets and a known loss floor (the
  ViT grid's task); `make_source("vit", dataset=path)` reads a local CIFAR-10 style set in one
  pass. D counts images.
Every source follows `DataSource`; `max_units` / `check_units` guard the data budget. Vision
sources also carry `num_classes` and `image_size` (the head size, pixels per side) and text
sources `lengths`, which the model family reads (`Family.for_source`); text ids live below
VOCAB_SIZE.
`source_config` types and checks the options (a run config checks its `data.options` with it
before anything runs); `open_source` opens the source they describe.
"""

import dataclasses
import typing
from typing import Any, Literal

from sparsekit.data.fractal import FractalConfig, FractalSource
from sparsekit.data.images import ImageArrayConfig, ImageArraySource
from sparsekit.data.source import DataSource, check_units, max_units
from sparsekit.data.spans import EOS_ID, PAD_ID, VOCAB_SIZE
from sparsekit.data.teacher import TeacherConfig, TeacherSource
from sparsekit.data.text import TextConfig, TextSource
from sparsekit.validate import check_text, check_typed

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
    "open_source",
    "source_config",
]

SourceConfig = TextConfig | FractalConfig | TeacherConfig | ImageArrayConfig
SOURCES = {TextConfig: TextSource, FractalConfig: FractalSource, TeacherConfig: TeacherSource,
           ImageArrayConfig: ImageArraySource}
DATASETS = {FRACTAL: FractalConfig, TEACHER: TeacherConfig}  # vit `dataset` names; any other
# value is a local path (ImageArrayConfig)
SHARED = ("seed", "eval_examples")  # fields of every source's config; a run config sets them
# from data.seed and data.eval_examples, not from data.options


def source_config(family: Literal["t5", "vit"], **options: Any) -> SourceConfig:
    """The typed settings of a family's data source; `options` are the fields of its config.

    "t5": `TextConfig` fields. "vit": `dataset="fractal"` (default) with `FractalConfig` fields,
    `dataset="teacher"` with `TeacherConfig` fields, or `dataset=<path>` with `ImageArrayConfig`
    fields other than `path`. ValueError naming an option the source does not have (with those
    it has), or a value of the wrong type or range.
    """
    fixed: dict[str, Any] = {}  # fields set by the choice of source, not by an option
    if family == "t5":
        cls, source = TextConfig, "the t5 data source (TextConfig)"
    elif family == "vit":
        dataset = options.pop("dataset", FRACTAL)
        check_text("dataset", dataset)
        cls = DATASETS.get(dataset, ImageArrayConfig)
        source = f"the vit dataset {dataset!r} ({cls.__name__})"
        if cls is ImageArrayConfig:
            fixed["path"] = dataset
    else:
        raise ValueError(f"family must be 't5' or 'vit', got {family!r}")
    types = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
    for name, value in options.items():
        if name not in allowed:
            own = [n for n in allowed if n not in SHARED]
            own = ["dataset", *own] if family == "vit" else own
            raise ValueError(f"unknown option {name!r} for {source}; it has {', '.join(own)} "
                             f"(and {', '.join(SHARED)}: data.{', data.'.join(SHARED)})")
        check_typed(name, value, types[name])
    return cls(**fixed, **options)


def open_source(config: SourceConfig) -> DataSource:
    """The data source that `config` (from `source_config`) describes."""
    return SOURCES[type(config)](config)


def make_source(family: Literal["t5", "vit"], **options: Any) -> DataSource:
    """The data source of a model family: `open_source(source_config(family, **options))`."""
    return open_source(source_config(family, **options))
