"""Grids, the results store and sweeps.

Most tests use `toy_run`, a tiny deterministic stand-in for `train.run` (the paper's ViT law
evaluated at the config, with the same result keys), so they take milliseconds. The
end-to-end tests at the bottom run the real trainer on the smallest configs: a sweep killed
with SIGKILL and resumed, and the same grid on a Dask LocalCluster.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sparsekit import SWEEP_WORKER_ENV, provenance
from sparsekit.config import RunConfig, make_config
from sparsekit.result import RunResult
from sparsekit.store import (
    TABLE,
    DamagedResultError,
    DamagedResultWarning,
    Store,
    StoreBusyError,
    load,
)
from sparsekit.sweep import (
    Grid,
    GridError,
    SweepInterrupted,
    _sigint_deferred,
    load_grid,
    point_seed,
    sweep,
)

ROOT = Path(__file__).resolve().parents[1]
BASE = {"model": {"family": "vit"}, "data": {"amount": 256, "batch": 32, "eval_examples": 32}}
UNLUCKY_SEED = 13  # toy_run raises for this data seed


def toy_run(cfg: RunConfig, **_: object) -> RunResult:
    """The ViT law of the paper's Table 1 at (S, N, D), as a result like train.run's."""
    if cfg.data.seed == UNLUCKY_SEED:
        raise ValueError("unlucky data seed")
    s, n, d = cfg.sparsity.target, cfg.model.nonzero, cfg.data.amount
    loss = (2.94e2 * (1 - s) ** 0.821 + 4.68e2) * n**-0.392 + (2.37e8 / d) ** 0.890 + 4.517
    return RunResult.from_row({
        "key": cfg.key(),
        "config": cfg.to_dict(),
        "status": "ok",
        "error": None,
        "family": cfg.model.family,
        "sparsity": s,
        "pattern": cfg.sparsity.pattern,
        "loss": loss,
        "loss_se": float("nan"),
        "N": n,
        "N_target": n,
        "D": d,
        "unit": "images",
        "steps": d // cfg.data.batch,
        "curve": [[1, loss + 1.0], [2, loss]],
        "val_curve": [],
        "wall_time_s": 0.0,
        "data": {"fingerprint": "toy"},
        "code_version": "toy",
        "versions": {"python": sys.version.split()[0]},
        "machine": {"cpus": os.cpu_count()},
    })


def crashing_run(cfg: RunConfig) -> RunResult:
    """Kills its own process for sparsity 0.5 (an out-of-memory kill, say)."""
    if cfg.sparsity.target == 0.5:
        os.kill(os.getpid(), signal.SIGKILL)
    return toy_run(cfg)


def toy_grid(**kw) -> Grid:
    axes = {"sparsity.target": [0.0, 0.5], "model.nonzero": [2000, 4000]}
    return Grid(base=BASE, axes=axes, name="toy", **kw)


def counting(calls: list):
    def runner(cfg: RunConfig) -> RunResult:
        calls.append(cfg.key())
        return toy_run(cfg)

    return runner


# --- grids ----------------------------------------------------------------------------------


def test_grid_is_the_product_of_axes_first_axis_slowest():
    configs = toy_grid().configs()
    assert [(c.sparsity.target, c.model.nonzero) for c in configs] == [
        (0.0, 2000),
        (0.0, 4000),
        (0.5, 2000),
        (0.5, 4000),
    ]
    assert (configs[0].optim.lr, configs[0].optim.lr_width) == (3e-3, 0)  # ViT recipe filled in
    assert len({c.key() for c in configs}) == 4


def test_zipped_axes_vary_together_and_duplicates_run_once():
    grid = Grid(
        base={**BASE, "model": {"family": "vit", "nonzero": 2000}},
        axes={"sparsity.pattern": ["2:4", "unstructured"], "sparsity.target": [0.0, 0.5]},
        zipped={"optim.lr": [1e-3, 3e-3], "data.seed": [1, 2]},
    )
    configs = grid.configs()
    # 2:4 with target 0 or 0.5 is the same config (n:m sets S = 0.5): 3 distinct points x 2
    assert len(grid.points()) == 8 and len(configs) == 6
    assert {(c.optim.lr, c.data.seed) for c in configs} == {(1e-3, 1), (3e-3, 2)}


def test_seed_per_point_gives_each_point_its_own_stable_seeds(tmp_path):
    """Every point its own init and data seed, a function of the point alone (so a width's
    seed is not shared by its sparsities, and adding points changes no existing seed)."""
    axes = {"model.nonzero": [1600, 4000], "sparsity.target": [0.0, 0.5]}
    configs = Grid(base=BASE, axes=axes, seed_per_point=True).configs()
    seeds = [(c.seed, c.data.seed) for c in configs]
    assert all(s == d for s, d in seeds) and len({s for s, _ in seeds}) == 4
    assert all(0 <= s < 2**31 for s, _ in seeds)
    point = {"model.nonzero": 1600, "sparsity.target": 0.5}
    assert configs[1].seed == point_seed(point) == point_seed(dict(reversed(point.items())))
    wider = Grid(base=BASE, axes={**axes, "model.nonzero": [1600, 2000, 4000]},
                 seed_per_point=True).configs()
    assert {c.key() for c in configs} <= {c.key() for c in wider}
    assert {c.seed for c in Grid(base=BASE, axes=axes).configs()} == {0}
    with pytest.raises(GridError, match="seed_per_point sets"):
        Grid(base=BASE, axes={**axes, "seed": [1, 2]}, seed_per_point=True)
    with pytest.raises(GridError, match="true or false"):
        Grid(base=BASE, axes=axes, seed_per_point="yes")
    path = tmp_path / "g.yaml"
    path.write_text("base: {model: {family: vit, nonzero: 1600}, data: {amount: 256}}\n"
                    "axes: {sparsity.target: [0.0, 0.5]}\nseed_per_point: true\n"
                    "more:\n  - axes: {data.amount: [512]}\n")
    loaded = load_grid(path).configs()
    assert len({c.seed for c in loaded}) == 3 and all(c.seed == c.data.seed for c in loaded)


def test_load_grid_yaml(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(
        "base: {model: {family: t5}, data: {amount: 4096, options: {input_length: 128}}}\n"
        "axes: {model.nonzero: [3000, 6000], optim.lr: [1e-3], "
        "data.options.input_length: [256]}\n"
    )
    grid = load_grid(path)
    assert grid.name == "g"
    cfg = grid.configs()[0]
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # YAML 1.1 reads a str
    assert cfg.data.options == {"input_length": 256} and cfg.data.batch == 32


def test_grid_more_blocks_add_points_in_order(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(
        "base: {model: {family: t5, nonzero: 3000}, data: {amount: 4096}}\n"
        "axes: {model.nonzero: [3000, 6000]}\n"
        "more:\n"
        "  - axes: {data.amount: [8192, 4096]}\n"  # 4096 at N 3000 is the main block's: once
        "  - axes: {data.amount: [16384]}\n"
        "    zipped: {seed: [1, 2]}\n"
    )
    got = [(c.model.nonzero, c.data.amount, c.seed) for c in load_grid(path).configs()]
    assert got == [(3000, 4096, 0), (6000, 4096, 0), (3000, 8192, 0), (3000, 16384, 1),
                   (3000, 16384, 2)]


@pytest.mark.parametrize(
    ("more", "message"),
    [
        ({"axes": {}}, "more must be a list"),
        ([{"axes": {"model.size": [1]}}], r"more\[0\].*axis 'model.size'"),
        ([{"points": [1]}], r"more\[0\] must be a mapping with axes"),
        ([3], r"more\[0\] must be a mapping with axes"),
    ],
)
def test_grid_more_errors(more, message):
    base = {"model": {"family": "t5", "nonzero": 3000}, "data": {"amount": 4096}}
    with pytest.raises(GridError, match=message):
        Grid(base, more=more)


def test_shipped_smoke_grids_load():
    for name in ("vit-smoke", "t5-smoke"):
        configs = load_grid(ROOT / "sweeps" / f"{name}.yaml").configs()
        assert 2 <= len(configs) <= 8


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"axes": {"model.size": [1]}}, "axis 'model.size'.*Model has no field 'size'"),
        ({"axes": {"sparsity.target.x": [1]}}, "axis 'sparsity.target.x'"),
        ({"axes": {"optim": [1]}}, "axis 'optim'.*is a group"),
        ({"axes": {"sparsity.target": []}}, "axis 'sparsity.target' needs a non-empty list"),
        ({"axes": {"sparsity.target": 0.5}}, "axis 'sparsity.target' needs a non-empty list"),
        ({"zipped": {"optim.lr": [1, 2], "seed": [1]}}, "zipped axes need equal lengths"),
        ({"axes": {"seed": [1]}, "zipped": {"seed": [2]}}, "in both axes and zipped"),
        (
            {"axes": {"model.nonzero": [2000], "sparsity.target": [0.5, 1.0]}},
            r"point \{'model.nonzero': 2000, 'sparsity.target': 1.0\}: sparsity",
        ),
        (
            {"base": {**BASE, "model": {"family": "vit", "width": 16}}},
            "point .*exactly one of nonzero .* or width",
        ),
    ],
)
def test_bad_grids_fail_when_built(spec, message):
    kw = {"base": BASE, "axes": {"model.nonzero": [2000]}, **spec}
    with pytest.raises(GridError, match=message):
        Grid(**kw)


def test_bad_grid_files_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    for text, message in [
        ("base: {model: {family: vit}\n", "not valid YAML"),
        ("- 1\n", "a grid file is a mapping"),
        ("axes: {}\n", "missing 'base'"),
        ("base: {}\nsweep: {}\n", r"unknown keys \['sweep'\]"),
        ("base: {model: {family: vit}}\n", "needs model .* and data"),
    ]:
        path.write_text(text)
        with pytest.raises(GridError, match=f"{path}: .*{message}"):
            load_grid(path)


def test_make_config_overrides_by_dotted_name():
    cfg = make_config(BASE, {"model.nonzero": 2000, "sparsity.pattern": "2:4"})
    assert cfg.sparsity.target == 0.5 and cfg.model.nonzero == 2000
    with pytest.raises(ValueError, match=r"unknown config field 'optim\.learning_rate'"):
        make_config(BASE, {"optim.learning_rate": 1.0})


# --- the store ------------------------------------------------------------------------------


def test_store_round_trip_table_and_strict_json(tmp_path):
    df = sweep(toy_grid(), tmp_path, runner=toy_run, progress=False)
    assert len(df) == 4 and (df["status"] == "ok").all()
    text = (tmp_path / "runs" / f"{df['key'][0]}.json").read_text()
    assert '"loss_se": null' in text  # NaN written as null
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    table = pd.read_parquet(tmp_path / TABLE)  # the tidy table pandas reads directly
    assert sorted(table["key"]) == sorted(df["key"])
    assert {
        "config.optim.lr",
        "config.model.nonzero",
        "versions.python",
        "data.fingerprint",
    } <= set(table.columns)
    assert "curve" not in table.columns
    assert Store(tmp_path).get(df["key"][0]).curve[1][1] == df["loss"][0]  # curves in JSON
    loaded = load(tmp_path)
    assert loaded["loss_se"].isna().all() and loaded["loss"].dtype == float


def test_table_is_in_key_order_and_not_rewritten_when_unchanged(tmp_path):
    df = sweep(toy_grid(), tmp_path, runner=toy_run, progress=False)
    path = tmp_path / TABLE
    assert list(pd.read_parquet(path)["key"]) == sorted(df["key"])
    before = path.read_bytes()
    stamp = path.stat().st_mtime_ns
    store = Store(tmp_path)
    store.write_table(reversed(store.results()))  # another order, the same runs
    sweep(toy_grid(), tmp_path, runner=toy_run, progress=False)  # everything reused
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stamp
    store.put(dataclasses.replace(store.results()[0], loss=9.0))
    store.write_table()
    assert path.stat().st_mtime_ns != stamp and 9.0 in set(pd.read_parquet(path)["loss"])


def test_table_keeps_a_mixed_type_column_as_text(tmp_path):
    store = Store(tmp_path)
    for cfg, tag in zip(toy_grid().configs()[:2], [1, "one"], strict=True):
        store.put(dataclasses.replace(toy_run(cfg), data={"tag": tag}))
    store.write_table()
    table = pd.read_parquet(tmp_path / TABLE)
    assert sorted(table["data.tag"]) == ["1", "one"]


def test_load_empty_store(tmp_path):
    with pytest.raises(ValueError, match=f"results store {tmp_path / 'none'} has no runs"):
        load(tmp_path / "none")
    assert load(tmp_path / "none", allow_empty=True).empty


def test_interrupted_write_keeps_the_old_file_and_strays_are_ignored_then_cleaned(
    tmp_path, monkeypatch
):
    store = Store(tmp_path)
    cfg = toy_grid().configs()[0]
    store.put(toy_run(cfg))
    before = store.get(cfg.key())

    def killed(*args):
        raise KeyboardInterrupt  # the write is interrupted between fsync and rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.put(dataclasses.replace(toy_run(cfg), loss=0.0))
    monkeypatch.undo()
    assert store.get(cfg.key()) == before and store.clean() == []
    # A write killed by SIGKILL leaves its temp file behind: readers skip it, sweeps remove it.
    stray = store.runs / f".{cfg.key()}.json.x1y2.tmp"
    stray.write_text('{"key": "trunc')
    assert store.keys() == [cfg.key()] and len(load(store)) == 1
    sweep([cfg], store, runner=toy_run, progress=False)
    assert not stray.exists()


# What a run file damaged from outside may hold: cut mid-write, emptied, not a result at all.
DAMAGE = {
    "truncated": '{"key": "0123", "config": {"mod',
    "empty object": "{}",
    "empty list": "[]",
    "not json": "\x00\x01 binary",
    "no loss": None,  # filled in below: a finished result without its loss
    "another key": None,  # filled in below: another run's result under this name
}


def damage(store: Store, key: str, kind: str) -> bytes:
    """Overwrite the run file of `key` with damage of `kind`; returns the bytes written."""
    path, result = store.runs / f"{key}.json", store.get(key).to_row()
    if kind == "no loss":
        text = json.dumps({k: v for k, v in result.items() if k != "loss"})
    elif kind == "another key":
        text = json.dumps({**result, "key": "f" * 16})
    else:
        text = DAMAGE[kind]
    path.write_bytes(text.encode())
    return text.encode()


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_run_file_is_skipped_by_readers_and_set_aside_and_rerun_by_sweeps(
    tmp_path, kind
):
    first = sweep(toy_grid(), tmp_path, runner=toy_run, progress=False)
    store, key = Store(tmp_path), first["key"][1]
    others = {p.stem: p.read_bytes() for p in store.runs.glob("*.json") if p.stem != key}
    written = damage(store, key, kind)
    path = store.runs / f"{key}.json"
    # Readers: a warning naming the file, the other runs; strict readers raise.
    with pytest.warns(DamagedResultWarning, match=f"skipped {path}: not a valid result file"):
        assert sorted(load(tmp_path)["key"]) == sorted(others)
    with pytest.raises(DamagedResultError, match=f"{path}: not a valid result file"):
        load(tmp_path, strict=True)
    # The sweep moves it aside (same bytes), runs that point again, and leaves the rest alone.
    calls = []
    with pytest.warns(DamagedResultWarning, match=f"{path}: .*moved to .*damaged"):
        again = sweep(toy_grid(), tmp_path, runner=counting(calls), progress=False)
    assert calls == [key]
    assert (store.runs / "damaged" / f"{key}.json").read_bytes() == written
    assert {k: (store.runs / f"{k}.json").read_bytes() for k in others} == others
    pd.testing.assert_frame_equal(again, first)
    # Damaged twice: the earlier damaged copy is kept too, never overwritten.
    damage(store, key, kind)
    with pytest.warns(DamagedResultWarning):
        store.set_aside()
    assert sorted(p.name for p in (store.runs / "damaged").iterdir()) == [
        f"{key}.1.json", f"{key}.json"]


def test_store_has_one_writer(tmp_path):
    with Store(tmp_path).lock(), pytest.raises(StoreBusyError, match="another process"):
        sweep(toy_grid(), tmp_path, runner=toy_run, progress=False)


# --- sweeps ---------------------------------------------------------------------------------


def test_reuse_and_recompute(tmp_path):
    calls = []
    first = sweep(toy_grid(), tmp_path, runner=counting(calls), progress=False)
    assert len(calls) == 4
    bigger = Grid(
        base=BASE, axes={"sparsity.target": [0.0, 0.5], "model.nonzero": [2000, 4000, 16000]}
    )
    second = sweep(bigger, tmp_path, runner=counting(calls), progress=False)
    assert len(calls) == 6 and len(second) == 6  # only the two new configs ran
    pd.testing.assert_frame_equal(
        second[second["key"].isin(first["key"])].reset_index(drop=True), first
    )
    sweep(toy_grid(), tmp_path, runner=counting(calls), reuse=False, progress=False)
    assert len(calls) == 10 and sorted(calls[6:]) == sorted(first["key"])
    assert len(load(tmp_path)) == 6 and len(Store(tmp_path).keys()) == 6


def test_failed_runs_are_stored_and_retried_only_when_asked(tmp_path):
    grid = Grid(base=BASE, axes={"model.nonzero": [2000], "data.seed": [0, UNLUCKY_SEED]})
    calls = []
    df = sweep(grid, tmp_path, runner=counting(calls), progress=False)
    bad = df[df["status"] == "failed"]
    assert len(bad) == 1 and bad["error"].item() == "ValueError: unlucky data seed"
    assert "raise ValueError" in Store(tmp_path).get(bad["key"].item()).traceback
    sweep(grid, tmp_path, runner=counting(calls), progress=False)
    assert len(calls) == 2
    sweep(grid, tmp_path, runner=counting(calls), retry_failed=True, progress=False)
    assert calls[2:] == list(bad["key"])


def test_ctrl_c_stores_the_finished_runs_and_names_the_interrupted_one(tmp_path):
    configs = toy_grid().configs()

    def interrupted_at_the_third(cfg: RunConfig) -> dict:
        if cfg.key() == configs[2].key():
            raise KeyboardInterrupt
        return toy_run(cfg)

    with pytest.raises(SweepInterrupted) as err:
        sweep(toy_grid(), tmp_path, runner=interrupted_at_the_third, progress=False)
    assert str(err.value) == (
        f"toy: interrupted: 2 of 4 runs finished and stored in {tmp_path}; interrupted "
        f"{configs[2].key()} (vit N=2000 S=0.5 D=256); 1 not started"
    )
    assert Store(tmp_path).keys() == sorted(c.key() for c in configs[:2])
    assert isinstance(err.value, KeyboardInterrupt)  # callers that catch Ctrl-C still do


def test_worker_processes_match_in_process_and_isolate_crashes(tmp_path):
    grid = Grid(base=BASE, axes={"sparsity.target": [0.0, 0.5], "model.nonzero": [2000]})
    serial = sweep(grid, tmp_path / "a", runner=toy_run, progress=False)
    parallel = sweep(grid, tmp_path / "b", workers=2, runner=crashing_run, progress=False)
    assert parallel["status"].tolist() == ["ok", "failed"]
    assert parallel["error"][1] == "worker process died (exit code -9)"
    assert parallel["loss"][0] == serial["loss"][0]


# --- end to end, with the real trainer ------------------------------------------------------

E2E_GRID = """\
name: e2e
base: {model: {family: vit, nonzero: 3000}, data: {amount: 32, batch: 16, eval_examples: 16}}
axes: {sparsity.target: [0.0, 0.5]}
"""


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory) -> dict[str, str]:
    """Environment for a JAX persistent compilation cache shared by the end-to-end processes:
    compilation is most of a tiny run's cost (about 20 s -> 6 s of CPU per run), and a cached
    executable is the same program, so results stay bit-identical."""
    return {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, compile_cache):
    """A CLI sweep killed with SIGKILL once a run is stored, then resumed to the end.
    Returns (grid path, store path, results stored before the kill, resumed stdout)."""
    tmp = tmp_path_factory.mktemp("e2e")
    grid, store = tmp / "grid.yaml", tmp / "store"
    grid.write_text(E2E_GRID)
    command = [sys.executable, "-m", "sparsekit", "sweep", str(grid), "--store", str(store)]
    env = {**os.environ, **compile_cache}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    # Only a guard against a hang: a cold compile on a loaded 2-core machine took over 120 s.
    deadline = time.monotonic() + 600
    while not Store(store).keys():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no run stored within 600 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {r.key: r for r in Store(store).results()}
    assert len(before) == 1, "the sweep finished before it could be killed"
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return grid, store, before, done.stdout


def test_killed_sweep_resumes_keeping_finished_runs(killed_and_resumed):
    grid, store, before, stdout = killed_and_resumed
    keys = [c.key() for c in load_grid(grid).configs()]
    assert Store(store).keys() == sorted(keys)  # every run exactly once
    assert not list(store.glob("**/.*.tmp"))
    for key, result in before.items():
        assert Store(store).get(key) == result  # kept, not rerun
    df = load(store)
    assert sorted(df["key"]) == sorted(keys) and (df["status"] == "ok").all()
    assert pd.read_parquet(store / TABLE).shape == df.shape
    assert all(key in stdout for key in keys)  # the summary table


def test_a_ctrl_c_that_would_be_swallowed_is_recorded_and_raised_at_the_check():
    # Raised inside a gc callback (JAX has one), a KeyboardInterrupt is printed as "Exception
    # ignored" and dropped: there the sweep's handler only records it, and `check` raises it.
    from sparsekit.sweep import _sigint_polled

    def callback(phase, info):
        if phase == "start":
            signal.raise_signal(signal.SIGINT)  # handled here, inside the callback

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with _sigint_polled() as check:
            check()  # nothing recorded yet
            gc.callbacks.append(callback)
            try:
                gc.collect()  # no KeyboardInterrupt from the callback
            finally:
                gc.callbacks.remove(callback)
            with pytest.raises(KeyboardInterrupt):
                check()
        with _sigint_polled() as check, pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # anywhere else: raised where it lands
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with _sigint_polled() as check:  # an ignored Ctrl-C stays ignored
            signal.raise_signal(signal.SIGINT)
            check()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_a_cli_sweep_and_its_workers_with_one_line(tmp_path):
    # Ctrl-C in a terminal signals the whole process group: the sweep and its two workers,
    # here while the workers are still starting (importing JAX).
    grid = tmp_path / "grid.yaml"
    grid.write_text(E2E_GRID)
    command = [sys.executable, "-m", "sparsekit", "sweep", str(grid), "--store",
               str(tmp_path / "store"), "--workers", "2"]
    # A terminal's Ctrl-C reaches a sweep with SIGINT at its default, even when this test
    # runs where it is ignored (a job started in the background by a shell without job
    # control, say): an ignored signal stays ignored across exec, a handled one is reset to
    # the default, so SIGINT is handled here while the sweep starts.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    lines = []
    while not any("to run" in line for line in lines):  # the workers are being started
        line = proc.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    [last] = [line for line in err.splitlines() if line.startswith("sparsekit sweep:")]
    keys = [c.key() for c in load_grid(grid).configs()]
    assert last.startswith("sparsekit sweep: e2e: interrupted: 0 of 2 runs finished")
    assert all(key in last for key in keys)
    assert last.endswith(f"to resume: python -m sparsekit sweep {grid} --store "
                         f"{tmp_path / 'store'} --workers 2")


def test_dask_local_cluster_matches_local_bit_for_bit(
    killed_and_resumed, compile_cache, tmp_path, monkeypatch
):
    pytest.importorskip("dask.distributed")
    for name, value in compile_cache.items():
        monkeypatch.setenv(name, value)  # inherited by the cluster's worker processes
    grid, store, _, _ = killed_and_resumed
    configs = load_grid(grid).configs()
    local = load(store).set_index("key").loc[[c.key() for c in configs]]
    df = sweep(configs, tmp_path, scheduler="local", workers=2, progress=False)
    assert (df["status"] == "ok").all()
    assert df["loss"].tolist() == local["loss"].tolist()
    assert [r.curve for r in map(Store(tmp_path).get, df["key"])] == [
        Store(store).get(c.key()).curve for c in configs
    ]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_ctrl_c_while_a_worker_starts_is_raised_once_it_is_registered():
    # The race the CLI test can hit on a starved machine: SIGINT while a worker is being
    # started. It must not be lost, must not interrupt the start half-way, and the worker must
    # not see it: a process started meanwhile ignores SIGINT from `import sparsekit` on.
    handler_in_child = None
    previous = signal.getsignal(signal.SIGINT)  # the default, or ignored where this runs
    with pytest.raises(KeyboardInterrupt), _sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the signal has arrived, and is held
        handler_in_child = subprocess.run(
            [sys.executable, "-c", "import signal, sparsekit; "
             "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"],
            capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert handler_in_child == "True", "the interrupt escaped, or the worker would see it"
    assert SWEEP_WORKER_ENV not in os.environ  # only the workers started in the block
    assert signal.getsignal(signal.SIGINT) is previous  # restored
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_a_rate_is_measured_on_this_kind_of_machine_only():
    from sparsekit.sweep import measured_rate, work

    cfgs = toy_grid().configs()

    def timed(cfg: RunConfig, seconds: float, machine: dict) -> RunResult:
        row = toy_run(cfg).to_row()
        row.update(dense_block=cfg.family().block_params(cfg.width()), wall_time_s=seconds,
                   machine=machine)
        return RunResult.from_row(row)

    here = {"cpu": provenance.cpu_model(), "cpus": os.cpu_count()}
    elsewhere = {"cpu": "another CPU", "cpus": os.cpu_count()}
    assert measured_rate("vit", [timed(cfgs[0], 10.0, elsewhere)], "s") is None
    assert measured_rate("t5", [timed(cfgs[0], 10.0, here)], "s") is None
    one = measured_rate("vit", [timed(cfgs[0], 10.0, here)], "s")  # one run: no start-up
    assert (one.startup, one.seconds, one.runs) == (0.0, 10.0 / work(cfgs[0]), 1)
    line = measured_rate("vit", [timed(c, 5.0 + 2e-8 * work(c), here) for c in cfgs], "s")
    assert line.startup == pytest.approx(5.0) and line.seconds == pytest.approx(2e-8)
    assert line.time(cfgs[1]) == pytest.approx(5.0 + 2e-8 * work(cfgs[1]))
