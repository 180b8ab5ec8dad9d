"""RunResult: its columns, the ok and failed constructors, and the round trip through the store
(a stored run file loads to the same row, byte for byte)."""

import json
import math

import pytest

from sparsekit.__main__ import SUMMARY
from sparsekit.analysis.runs import RUN_COLUMNS
from sparsekit.config import RunConfig
from sparsekit.result import COLUMNS, DERIVED, MEASURED, RunResult
from sparsekit.store import Store, dumps, table

CFG = RunConfig.from_dict({"model": {"family": "vit", "width": 16},
                           "data": {"amount": 64, "batch": 8},
                           "sparsity": {"target": 0.5}})


def measured(**changes) -> dict:
    """Every measurement of a (made-up) finished run."""
    values = dict(
        loss=2.0, loss_se=0.01, N=1000, N_target=None, dense_block=2000,
        sparsity_measured=0.5, total_params=3000, nonzero_params=2000, embed_nonzero=500,
        width=16, D=64, unit="images", steps=8, failed_step=None, batch=8, peak_lr=3e-3, flops_dense=1e9,
        flops_sparse=6e8, avg_density=0.6875, curve=[[8, 2.1]], val_curve=[], wall_time_s=1.5,
        data={"fingerprint": "f"}, code_version="abc", versions={"jax": "0.10.2"},
        lock={"sha256": None, "matches": None, "drift": None},
        machine={"host": "h", "cpu": "some CPU"}, finished_at="2025-01-01T00:00:00+00:00",
    )
    return values | changes


def test_columns_are_named_once_in_run_file_order():
    assert COLUMNS[:7] == ("key", "config", "status", "error", "family", "sparsity", "pattern")
    assert COLUMNS[-1] == "traceback" and len(set(COLUMNS)) == len(COLUMNS)
    assert set(MEASURED) == set(COLUMNS) - {*COLUMNS[:4], *DERIVED, "traceback"}
    assert set(SUMMARY) <= set(COLUMNS)  # the CLI's sweep summary reads result columns
    assert set(RUN_COLUMNS) - {"reused"} <= set(COLUMNS)  # and so does the runs table


def test_ok_result_keeps_family_sparsity_and_pattern_once():
    r = RunResult.ok(CFG, **measured())
    assert (r.key, r.status, r.error) == (CFG.key(), "ok", None)
    assert (r.family, r.sparsity, r.pattern) == ("vit", 0.5, "unstructured")
    row = r.to_row()
    assert list(row) == [c for c in COLUMNS if c != "traceback"]
    assert (row["family"], row["sparsity"], row["pattern"]) == ("vit", 0.5, "unstructured")
    assert row["config"] == CFG.to_dict()
    with pytest.raises(TypeError, match="missing"):
        RunResult.ok(CFG, loss=1.0)


def test_failed_result_without_measurements():
    r = RunResult.failed(CFG, "ValueError: boom", wall_time_s=0.5, traceback="Traceback ...")
    assert list(r.to_row()) == ["key", "config", "status", "error", "family", "sparsity",
                                "pattern", "failed_step", "wall_time_s", "traceback"]
    assert r.status == "failed" and r.loss is None and r.failed_step is None
    bare = RunResult.failed(CFG, "worker process died (exit code -9)")
    assert "traceback" not in bare.to_row() and math.isnan(bare.wall_time_s)


def test_diverged_run_is_failed_with_every_measurement():
    r = RunResult.failed(CFG, "non-finite training loss at step 3 of 8",
                         **measured(loss=math.nan, loss_se=math.nan, failed_step=3, steps=3))
    assert list(r.to_row()) == list(RunResult.ok(CFG, **measured()).to_row())
    assert r.status == "failed" and r.failed_step == 3


def test_round_trip_through_the_store(tmp_path):
    store = Store(tmp_path)
    ok = RunResult.ok(CFG, **measured(loss_se=math.nan))
    other = CFG.replace(**{"sparsity.target": 0.0})
    failed = RunResult.failed(other, "RuntimeError: x", wall_time_s=0.1, traceback="tb")
    store.put(ok)
    store.put(failed)
    back = {r.key: r for r in store.results()}
    assert back[failed.key] == failed and back[failed.key].absent == failed.absent
    # NaN is stored as null (strict JSON): the same row otherwise
    assert back[ok.key] == RunResult.ok(CFG, **measured(loss_se=None))
    text = (tmp_path / "runs" / f"{ok.key}.json").read_text()
    assert dumps(back[ok.key], indent=1) == text  # loading and writing again changes no byte
    frame = table(sorted(back.values(), key=lambda r: r.key))
    assert frame.set_index("key").loc[failed.key, "status"] == "failed"
    assert math.isnan(frame.set_index("key").loc[failed.key, "loss"])
    assert "machine.cpu" in frame and "curve" not in frame


def test_an_older_run_file_loads_without_the_later_columns(tmp_path):
    row = RunResult.ok(CFG, **measured()).to_row()
    for later in ("lock", "peak_lr", "failed_step"):  # columns added after the first stores
        del row[later]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / f"{CFG.key()}.json").write_text(json.dumps(row, indent=1))
    r = Store(tmp_path).get(CFG.key())
    assert r.to_row() == row and r.absent == {"lock", "peak_lr", "failed_step", "traceback"}
    assert "peak_lr" not in table([r])


def test_from_row_refuses_unknown_columns_and_a_second_family():
    row = RunResult.ok(CFG, **measured()).to_row()
    with pytest.raises(ValueError, match="unknown columns"):
        RunResult.from_row(row | {"colour": "red"})
    with pytest.raises(ValueError, match=r"family .t5. differs from the config.s model.family"):
        RunResult.from_row(row | {"family": "t5"})
    with pytest.raises(ValueError, match="status must be one of"):
        RunResult.from_row(row | {"status": "done"})
