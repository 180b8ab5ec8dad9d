"""Run configs: every field checked where the config is built (type and range, named), the data
source's options typed, settings an optimizer ignores refused, the model a config asks for
checked to exist, and the keys of every stored run unchanged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sparsekit.config import (
    GROUPS,
    LATER_FIELDS,
    Data,
    Model,
    RunConfig,
    config_key,
    make_config,
)
from sparsekit.sweep import GridError, load_grid, sweep

ROOT = Path(__file__).resolve().parents[1]
T5 = {"model": {"family": "t5", "nonzero": 8000}, "data": {"amount": 4096}}
VIT = {"model": {"family": "vit", "nonzero": 4000}, "data": {"amount": 256}}

# One bad value per field: (dotted field, value, what the message must say after the name).
BAD_FIELDS = [
    ("model.family", "bert", "must be one of ['vit', 't5'], got 'bert'"),
    ("model.nonzero", "abc", "must be an integer >= 1 or None, got 'abc'"),
    ("model.width", 1.5, "must be an integer >= 1 or None, got 1.5"),
    ("model.depth", 0, "must be an integer >= 1 or None, got 0"),
    ("model.head_init", "big", "must be a number in [0, 10], got 'big'"),
    ("model.exact", "yes", "must be True or False, got 'yes'"),
    ("sparsity.target", "half", "must be a number in [0, 1), got 'half'"),
    ("sparsity.pattern", 24, "must be a non-empty string, got 24"),
    ("sparsity.schedule", "linear", "must be one of ['cubic', 'oneshot', 'constant'], got "
                                    "'linear'"),
    ("sparsity.start", 1.5, "must be a number in [0, 1], got 1.5"),
    ("sparsity.end", 0.1, "must be >= sparsity.start = 0.25 (the pruning window), got 0.1"),
    ("sparsity.every", 0, "must be an integer >= 1, got 0"),
    ("sparsity.embed_rule", "yes", "must be True or False, got 'yes'"),
    ("optim.name", "lion", "must be one of ['adamw', 'adafactor', 'sparse_adafactor'], got "
                           "'lion'"),
    ("optim.lr", "abc", "must be a number > 0 or None, got 'abc'"),
    ("optim.lr_width", 48.0, "must be an integer >= 0 or None, got 48.0"),
    ("optim.warmup", 1, "must be a number in [0, 1), got 1"),
    ("optim.decay_to", 2, "must be a number in [0, 1] or None, got 2"),
    ("optim.b1", 1.0, "must be a number in [0, 1), got 1.0"),
    ("optim.b2", float("nan"), "must be a number in [0, 1) or None, got nan"),
    ("optim.weight_decay", -0.1, "must be a number >= 0 or None, got -0.1"),
    ("optim.clip", 0, "must be a number > 0, got 0"),
    ("optim.z_loss", True, "must be a number >= 0 or None, got True"),
    ("data.amount", 1.6e7, "(D: tokens or images) must be an integer >= 1, got 16000000.0"),
    ("data.batch", "abc", "must be an integer >= 1 or None, got 'abc'"),
    ("data.seed", -3, "must be an integer >= 0, got -3"),
    ("data.eval_examples", 0, "must be an integer >= 1, got 0"),
    ("data.options", [1], "must be a mapping of option names to values, got [1]"),
    ("seed", 1.5, "must be an integer from 0 to 4294967295, got 1.5"),
    ("init_from", 3, "must be a non-empty string or None, got 3"),
    ("eval_every", -1, "must be an integer >= 0, got -1"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_FIELDS, ids=[b[0] for b in BAD_FIELDS])
def test_a_bad_value_names_the_field_its_range_and_the_value(name, value, message):
    with pytest.raises(ValueError) as err:
        make_config(T5, {name: value})
    assert str(err.value) == f"{name} {message}"


def test_every_field_has_a_bad_value_checked():
    fields = {f"{group}.{f.name}" for group, cls in GROUPS.items()
              for f in dataclasses.fields(cls)}
    fields |= {f.name for f in dataclasses.fields(RunConfig)} - set(GROUPS)
    assert fields == {name for name, _, _ in BAD_FIELDS}


def test_configs_are_hashable_and_options_read_only():
    cfg = make_config(VIT, {"data.options.num_classes": 64})
    same = make_config(VIT, {"data.options": {"num_classes": 64}})
    assert cfg == same and hash(cfg) == hash(same) and len({cfg, same}) == 1
    assert dict(cfg.data.options) == {"num_classes": 64}
    with pytest.raises(TypeError):
        cfg.data.options["num_classes"] = 2  # type: ignore[index]
    assert cfg.to_dict()["data"]["options"] == {"num_classes": 64}
    assert type(cfg.to_dict()["data"]["options"]) is dict  # JSON text as before
    assert cfg.replace(**{"data.options.num_classes": 16}).data.options["num_classes"] == 16


@pytest.mark.parametrize(
    ("base", "options", "message"),
    [
        (T5, {"bogus": 1}, "data.options: unknown option 'bogus' for the t5 data source "
                           "(TextConfig); it has corpus, input_length, noise_density, "
                           "mean_noise_span_length (and seed, eval_examples: data.seed, "
                           "data.eval_examples)"),
        (VIT, {"bogus": 1}, "data.options: unknown option 'bogus' for the vit dataset 'fractal' "
                            "(FractalConfig); it has dataset, num_classes, task_seed, "
                            "points_per_image, jitter, min_fill (and seed, eval_examples"),
        (VIT, {"dataset": "cifar/", "num_classes": 10}, "data.options: unknown option "
                                                        "'num_classes' for the vit dataset "
                                                        "'cifar/' (ImageArrayConfig)"),
        (VIT, {"num_classes": "many"}, "data.options: num_classes must be an integer, got "
                                       "'many'"),
        (VIT, {"num_classes": 1}, "data.options: num_classes must be >= 2, got 1"),
        (T5, {"noise_density": 1.5}, "data.options: noise_density must be in (0, 1), got 1.5"),
        (T5, {"seed": 1}, "data.options: set seed as data.seed, not as an option"),
    ],
)
def test_data_options_are_checked_against_the_source(base, options, message):
    with pytest.raises(ValueError) as err:
        make_config(base, {f"data.options.{k}": v for k, v in options.items()})
    assert str(err.value).startswith(message)


def test_a_grid_with_a_bad_option_fails_at_load_and_writes_nothing(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("base: {model: {family: t5, nonzero: 8000}, data: {amount: 4096}}\n"
                    "axes: {data.options.bogus: [1, 2]}\n")
    with pytest.raises(GridError, match=rf"{grid}: grid 'g', point \{{'data.options.bogus': 1\}}"
                                        r": data.options: unknown option 'bogus'"):
        sweep(load_grid(grid), tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()


def test_settings_the_optimizer_ignores_are_refused():
    ada = {**T5, "optim": {"name": "adafactor"}}
    cfg = make_config(ada, {})
    # Unset, they are recorded at their defaults (as before: the keys of such configs hold).
    assert (cfg.optim.b1, cfg.optim.b2, cfg.optim.weight_decay) == (0.9, 0.98, 0.0)
    assert make_config(ada, {"optim.b2": 0.98}).key() == cfg.key()
    for name, value in [("optim.b1", 0.5), ("optim.b2", 0.9), ("optim.weight_decay", 0.1)]:
        with pytest.raises(ValueError) as err:
            make_config({**ada, "optim": {"name": "sparse_adafactor"}}, {name: value})
        assert str(err.value).startswith(
            f"{name} = {value} is not used by optimizer 'sparse_adafactor', which has no b1, "
            "b2, weight_decay; leave it unset")
    make_config(T5, {"optim.b1": 0.5, "optim.weight_decay": 0.1})  # AdamW uses them


def test_a_pattern_that_does_not_fit_the_width_names_both_and_the_m_that_fit():
    with pytest.raises(ValueError) as err:
        make_config(T5, {"sparsity.pattern": "2:5", "sparsity.target": 0.6,
                         "model.nonzero": 4000})
    assert str(err.value) == (
        "n:m pattern '2:5' does not fit the t5 model at width 16: its groups run over m = 5 "
        "consecutive inputs, and its matrices have 16, 40 inputs. At width 16, m can be 2, 4, "
        "8; at every width, 2, 4, 8 (widths and MLP widths are multiples of 8)")
    make_config(T5, {"sparsity.pattern": "2:8", "model.nonzero": 4000})


def test_a_target_n_no_width_reaches_gives_the_nearest():
    with pytest.raises(ValueError) as err:
        make_config(T5, {"model.nonzero": 10})
    assert str(err.value) == (
        "model.nonzero: target N = 10 is out of reach for t5 at S = 0: the nearest N a width "
        "reaches is 3,840 (width 8, 384x the target), and none comes within 2x. Ask for the "
        "smallest model by its width instead (width 8)")
    assert make_config(T5, {"model.nonzero": None, "model.width": 8}).width() == 8
    with pytest.raises(ValueError, match=r"^model\.width must be a multiple of 8 for t5, got 12"):
        make_config(T5, {"model.nonzero": None, "model.width": 12})
    # depth changes N: 1 layer per stack reaches a smaller target
    assert make_config(T5, {"model.nonzero": 2000, "model.depth": 1}).width() == 8


def test_groups_and_unknown_fields_are_named():
    with pytest.raises(ValueError, match=r"^config field 'model' is a group: give a mapping"):
        RunConfig.from_dict({"model": 3, "data": {"amount": 64}})
    with pytest.raises(ValueError, match=r"^unknown config field model\.'size': Model has "
                                         r"family, nonzero, width, depth, head_init"):
        RunConfig.from_dict({"model": {"family": "vit", "size": 3}, "data": {"amount": 64}})
    with pytest.raises(ValueError, match=r"^data must be a Data, got \{'amount': 64\}"):
        RunConfig(Model("vit", nonzero=4000), {"amount": 64})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^unknown config field 'optim\.learning_rate'"):
        RunConfig(Model("vit", nonzero=4000), Data(64)).replace(**{"optim.learning_rate": 1})


# --- stored runs keep their keys --------------------------------------------------------------

STORED = sorted(ROOT.glob("results/**/runs/*.json"))  # archived stores included
# The stored runs each grid produced when this test was written (config keys by grid file
# name, wherever under sweeps/ it now lives, e.g. sweeps/archive/). If a grid drops points on
# purpose, drop their keys here; a config that changed its key is a bug: the stores are keyed
# by `RunConfig.key()`.
GRID_KEYS = json.loads((ROOT / "tests" / "data" / "grid_keys.json").read_text())


def test_every_stored_config_is_valid_and_keeps_its_dict_and_key():
    fields = {group: {f.name for f in dataclasses.fields(cls)} for group, cls in GROUPS.items()}
    current = 0
    for path in STORED:
        result = json.loads(path.read_text())
        cfg = RunConfig.from_dict(result["config"])  # every setting passes today's checks
        if all(set(result["config"][g]) | set(LATER_FIELDS.get(g, {})) == names
               for g, names in fields.items()):
            # written with today's fields (older check stores lack later ones): same dict
            assert json.dumps(cfg.to_dict()) == json.dumps(result["config"]), path
            assert cfg.key() == result["key"] == path.stem, path
            current += 1
    assert len(STORED) >= 200 and current >= 100


def test_every_committed_run_keeps_its_key_and_every_stored_value_its_type():
    # Holding numbers as their fields declare (0 -> 0.0 in a float field) must not touch a
    # stored config: every committed run, archived ones included, gives back its own values
    # with their types (the JSON text), and each config it has every field of, its own key.
    # Runs written before a field existed (lr_width: results/t5-lr and the archived ViT
    # pilots) lack it; their dicts are compared on the fields they have.
    stored = sorted(ROOT.glob("results/*/runs/*.json")) + sorted(
        ROOT.glob("results/archive/**/runs/*.json"))
    assert set(stored) == set(STORED) and len(stored) >= 400
    complete = 0
    for path in stored:
        result = json.loads(path.read_text())
        config = result["config"]
        assert config_key(config) == result["key"] == path.stem, path
        cfg = RunConfig.from_dict(config)
        again = cfg.to_dict()
        kept = {g: {k: v for k, v in again[g].items() if k in config[g]} if g in GROUPS else
                again[g] for g in config}
        assert json.dumps(kept, sort_keys=True) == json.dumps(config, sort_keys=True), path
        if kept == again:
            assert cfg.key() == result["key"], path
            complete += 1
    assert complete >= 320


@pytest.mark.parametrize(("base", "name", "spellings"), [
    (T5, "sparsity.target", ["0", "0.0", "0e0", "0.0e+0"]),
    (T5, "sparsity.target", ["0.5", "5e-1", ".5"]),
    (T5, "optim.lr", ["1", "1.0", "1e0"]),
    (T5, "model.head_init", ["0", "0.0"]),
    (T5, "sparsity.pattern", ["'2:4'", "' 2:4'", "'2 : 4 '"]),
    (VIT, "sparsity.pattern", ["unstructured", "' Unstructured'"]),
    ({**VIT, "data": {"amount": 256, "options": {"dataset": "teacher"}}}, "data.options.scale",
     ["3", "3.0", "3e0"]),
])
def test_a_value_gives_one_key_however_it_is_written(base, name, spellings):
    from sparsekit.__main__ import _override

    keys = {make_config(base, dict([_override(f"{name}={text}")])).key() for text in spellings}
    assert len(keys) == 1, spellings


@pytest.mark.parametrize("grid", sorted(GRID_KEYS))
def test_grids_still_produce_the_keys_of_their_stored_runs(grid):
    files = sorted((ROOT / "sweeps").rglob(grid))
    if not files:
        pytest.skip(f"{grid} was removed")
    keys = {cfg.key() for path in files for cfg in load_grid(path).configs()}
    lost = sorted(set(GRID_KEYS[grid]) - keys)
    assert not lost, f"{grid} ({', '.join(map(str, files))}) no longer produces the stored " \
                     f"runs {lost}"
