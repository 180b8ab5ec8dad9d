"""The command line: `train` output, and bad input -> one clear line and a non-zero exit.

`python -m sparsekit sweep` as a subprocess (killed and resumed) is tested in test_sweep.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest

from sparsekit.__main__ import main, parser, summary, train_config
from sparsekit.result import RunResult

TINY = [
    "--family",
    "vit",
    "--nonzero",
    "3000",
    "--data",
    "64",
    "--batch",
    "16",
    "--eval-examples",
    "16",
]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `sparsekit ARGV`."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained() -> tuple[int, str]:
    """(exit status, stdout) of one real `train --json` run at the smallest size."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", *TINY, "--sparsity", "0.5", "--set", "optim.lr=1e-3", "--json"])
    return code, out.getvalue()


def test_train_json_is_one_object_with_the_result_fields(trained):
    code, out = trained
    assert code == 0
    result = json.loads(out)  # stdout holds nothing but the result
    assert {
        "key",
        "config",
        "status",
        "loss",
        "loss_se",
        "N",
        "D",
        "curve",
        "val_curve",
        "wall_time_s",
        "code_version",
        "versions",
        "machine",
    } <= result.keys()
    assert result["status"] == "ok" and result["sparsity"] == 0.5
    assert result["config"]["optim"]["lr"] == 1e-3 and result["steps"] == 4
    assert result["curve"][-1][0] == 4


def test_train_summary(trained):
    text = summary(RunResult.from_row(json.loads(trained[1])))
    assert text.startswith("vit S=0.5 (unstructured): N=") and "\nloss " in text


def test_train_flags_make_the_config():
    args = parser().parse_args(
        [
            "train",
            *TINY,
            "--pattern",
            "2:4",
            "--seed",
            "3",
            "--set",
            "data.options={}",
            "--set",
            "sparsity.every=7",
        ]
    )
    cfg = train_config(args)
    assert (cfg.sparsity.target, cfg.sparsity.every, cfg.seed) == (0.5, 7, 3)
    assert (cfg.data.amount, cfg.data.batch, cfg.data.eval_examples) == (64, 16, 16)


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (["--sparsity", "1.0"], "sparsity.target must be a number in [0, 1), got 1.0"),
        (["--family", "bert"], "model.family must be one of ['vit', 't5'], got 'bert'"),
        (["--data", "0"], "data.amount (D: tokens or images) must be an integer >= 1, got 0"),
        (["--nonzero", "-5"], "model.nonzero must be an integer >= 1 or None, got -5"),
        (["--width", "64"], "--width: not allowed with argument --nonzero"),
        (["--pattern", "2:3", "--sparsity", "0.5"], "sparsity.target must be 1 - n/m"),
        (["--set", "optim.learning_rate=1"], "unknown config field 'optim.learning_rate'"),
        (["--set", "optim.lr"], "expected NAME=VALUE"),
        # the settings a new user mistypes: each named, with its range and the value
        (["--set", "optim.lr=abc"], "optim.lr must be a number > 0 or None, got 'abc'"),
        (["--set", "data.batch=abc"], "data.batch must be an integer >= 1 or None, got 'abc'"),
        (["--set", "seed=1.5"], "seed must be an integer from 0 to 4294967295, got 1.5"),
        (["--set", "data.seed=-3"], "data.seed must be an integer >= 0, got -3"),
        (["--set", "data.options.bogus=1"], "data.options: unknown option 'bogus' for the vit "
                                            "dataset 'fractal' (FractalConfig); it has dataset, "),
        (["--set", "optim.name=adafactor", "--set", "optim.b1=0.5"],
         "optim.b1 = 0.5 is not used by optimizer 'adafactor'"),
        (["--pattern", "2:5", "--sparsity", "0.6"], "n:m pattern '2:5' does not fit the vit "
                                                    "model at width 16"),
        (["--nonzero", "10"], "model.nonzero: target N = 10 is out of reach for vit at S = 0: "
                              "the nearest N a width reaches is 3,072 (width 8"),
    ],
)
def test_train_bad_input_names_the_parameter(capsys, change, names):
    argv = list(TINY)
    for flag, value in zip(change[::2], change[1::2], strict=True):
        if flag in argv and flag != "--set":
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    code, out, err = run(capsys, "train", *argv)
    assert code == 2 and out == ""
    assert "Traceback" not in err and names in err.splitlines()[-1]
    assert len(err.splitlines()) == 1 or err.startswith("usage:")  # argparse adds its usage


def test_sweep_bad_input(capsys, tmp_path):
    code, _, err = run(capsys, "sweep", str(tmp_path / "missing.yaml"), "--store", "s")
    assert code == 2 and "missing.yaml" in err
    grid = tmp_path / "g.yaml"
    grid.write_text(
        "base: {model: {family: vit}, data: {amount: 64}}\n"
        "axes: {model.nonzero: [], sparsity.target: [0.5]}\n"
    )
    code, _, err = run(capsys, "sweep", str(grid), "--store", str(tmp_path / "s"))
    assert code == 2 and err.strip() == (
        f"sparsekit sweep: error: {grid}: grid 'g': axis "
        "'model.nonzero' needs a non-empty list of values, "
        "got []"
    )
    code, _, err = run(capsys, "sweep", str(grid), "--store", "s", "--workers", "x")
    assert code == 2 and "--workers" in err


SWEEP_GRID = (
    "base: {model: {family: vit}, data: {amount: 256, batch: 32, eval_examples: 32}}\n"
    "axes: {sparsity.target: [0.0, 0.5], model.nonzero: [3000, 4000]}\n"
)


def _with(name: str, value: object):
    """Damage: the run file's JSON with `name` set to `value` (written as Python's json
    writes it, so a float NaN is the non-standard token NaN)."""
    return lambda data: json.dumps({**json.loads(data), name: value}).encode()


DAMAGE = {
    "truncated": lambda data: b'{"key": "trunc',
    "emptied": lambda data: b"{}",
    "a list": lambda data: b"[]",
    "a stray byte": lambda data: data + b"\xff",  # not UTF-8
    "an ok run with a NaN loss": _with("loss", float("nan")),
    "an ok run with a null loss": _with("loss", None),
    "a loss stored as text": _with("loss", "5.0"),
    "a loss_se stored as text": _with("loss_se", "0.1"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_sweep_sets_a_damaged_run_file_aside_in_one_line_and_reruns_it(
    capsys, tmp_path, monkeypatch, damage
):
    import sparsekit.sweep
    from tests.test_sweep import toy_run

    monkeypatch.setattr(sparsekit.sweep, "_train_run", toy_run)  # no real training
    grid, store = tmp_path / "g.yaml", tmp_path / "store"
    grid.write_text(SWEEP_GRID)
    assert run(capsys, "sweep", str(grid), "--store", str(store))[0] == 0
    path = sorted((store / "runs").glob("*.json"))[0]
    damaged = DAMAGE[damage](path.read_bytes())
    path.write_bytes(damaged)
    code, _, err = run(capsys, "sweep", str(grid), "--store", str(store))
    assert code == 0 and "Traceback" not in err
    aside = store / "runs" / "damaged" / path.name
    [warning] = [line for line in err.splitlines() if "warning" in line]
    assert warning.startswith(f"sparsekit sweep: warning: {path}: not a valid result file (")
    assert warning.endswith(f"; moved to {aside}, the point counts as missing")
    assert aside.read_bytes() == damaged and path.is_file()
    assert "3 reused" in err and "1 to run" in err


@pytest.mark.parametrize(("store", "message"), [
    ("", "results store path is empty: name a directory"),
    ("grid", "is an existing file, not a directory: a store is a directory of run files"),
])
def test_a_store_path_that_is_empty_or_a_file_is_refused(capsys, tmp_path, store, message):
    grid = tmp_path / "g.yaml"
    grid.write_text(SWEEP_GRID)
    store = str(grid) if store == "grid" else store
    code, out, err = run(capsys, "sweep", str(grid), "--store", store)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("sparsekit sweep: error: results store") and message in err
    assert grid.read_text() == SWEEP_GRID


def test_a_full_disk_names_the_file_and_the_resume_command(capsys, tmp_path, monkeypatch):
    import errno
    import os

    import sparsekit.store
    import sparsekit.sweep
    from tests.test_sweep import toy_run

    monkeypatch.setattr(sparsekit.sweep, "_train_run", toy_run)
    grid, store = tmp_path / "g.yaml", tmp_path / "store"
    grid.write_text(SWEEP_GRID)
    puts, put, fsync = [], sparsekit.store.Store.put, os.fsync

    def put_counted(self, result) -> None:  # the disk is full from the second run on
        puts.append(result.key)
        put(self, result)

    def full_disk_fsync(fd: int) -> None:
        if len(puts) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(sparsekit.store.Store, "put", put_counted)
    monkeypatch.setattr(sparsekit.store.os, "fsync", full_disk_fsync)
    code, _, err = run(capsys, "sweep", str(grid), "--store", str(store))
    assert code == 2 and "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith("sparsekit sweep: error: [Errno 28] No space left on device: "
                           f"'{store / 'runs'}/")
    assert line.endswith(f"free space on that disk, then resume with: python -m sparsekit "
                         f"sweep {grid} --store {store}")
    assert len(list((store / "runs").glob("*.json"))) == 1  # the first run is kept
    assert not list((store / "runs").glob(".*"))  # no temp file left


def test_ctrl_c_in_a_sweep_prints_one_line_with_the_resume_command(capsys, monkeypatch):
    import sparsekit.sweep

    def interrupted(*args, **kw):
        raise sparsekit.sweep.SweepInterrupted("g: interrupted: 1 of 3 runs finished")

    monkeypatch.setattr(sparsekit.sweep, "load_grid", lambda path: None)
    monkeypatch.setattr(sparsekit.sweep, "sweep", interrupted)
    code, out, err = run(capsys, "sweep", "g.yaml", "--store", "my store", "--workers", "2",
                         "--recompute")
    assert code == 130 and out == ""
    assert err == (
        "sparsekit sweep: g: interrupted: 1 of 3 runs finished; to resume: "
        "python -m sparsekit sweep g.yaml --store 'my store' --workers 2\n"
    )


def test_a_grid_that_writes_0_for_0_0_reuses_the_stored_runs(capsys, tmp_path, monkeypatch):
    import sparsekit.sweep
    from tests.test_sweep import toy_run

    monkeypatch.setattr(sparsekit.sweep, "_train_run", toy_run)
    grid, copy, store = tmp_path / "g.yaml", tmp_path / "copy.yaml", tmp_path / "store"
    grid.write_text(SWEEP_GRID + "zipped: {sparsity.pattern: [unstructured]}\n")
    assert run(capsys, "sweep", str(grid), "--store", str(store))[0] == 0
    copy.write_text(SWEEP_GRID.replace("[0.0, 0.5]", "[0, 5e-1]") +
                    "zipped: {sparsity.pattern: [' Unstructured']}\n")
    code, _, err = run(capsys, "sweep", str(copy), "--store", str(store))
    assert code == 0 and "4 runs, 4 reused" in err and "0 to run" in err
    assert len(list((store / "runs").glob("*.json"))) == 4


def test_a_grid_with_a_key_given_twice_is_refused_naming_it(capsys, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(SWEEP_GRID + "axes: {model.nonzero: [2000]}\n")
    code, out, err = run(capsys, "sweep", str(grid), "--store", str(tmp_path / "s"))
    assert code == 2 and out == "" and not (tmp_path / "s").exists()
    assert err == (f"sparsekit sweep: error: {grid}: not valid YAML: duplicate key 'axes': a "
                   "mapping holds each key once (line 3, column 1)\n")
    code, _, err = run(capsys, "train", *TINY, "--set", "data.options={a: 1, a: 2}")
    assert code == 2 and "duplicate key 'a'" in err


@pytest.mark.parametrize(("size", "message"), [
    (["--nonzero", "50000000"],
     "model.nonzero must be an integer from 1 to 44,236,800 on this machine, got 50000000: "
     "training that vit model (about 5e+07 block parameters) takes at least 1.12 GiB (24 bytes "
     "per block parameter: weights, gradients, Adam moments, update, mask), more than this "
     "machine's 1.00 GiB of memory; the largest that fits: N = 44,236,800 at S = 0 (width 960)"),
    (["--nonzero", "50000000", "--sparsity", "0.5"],
     "model.nonzero must be an integer from 1 to 22,118,400 on this machine, got 50000000: "
     "training that vit model (about 1e+08 block parameters) takes at least 2.24 GiB"),
    (["--width", "968"],
     "model.width must be a multiple of 8 up to 960 on this machine, got 968: training that "
     "vit model (44,977,152 block parameters) takes at least 1.01 GiB"),
    (["--nonzero", str(10**29)], "model.nonzero must be an integer from 1 to 44,236,800 on "
                                 "this machine, got " + str(10**29)),
])
def test_a_model_too_large_for_the_memory_is_refused_naming_the_largest_that_fits(
    capsys, monkeypatch, size, message
):
    import sparsekit.train
    from sparsekit import provenance

    def never(*args, **kw):
        raise AssertionError("a model that does not fit must not start training")

    monkeypatch.setattr(provenance, "memory_bytes", lambda: 2**30)  # a 1 GiB machine
    monkeypatch.setattr(sparsekit.train, "run", never)
    argv = ["train", "--family", "vit", "--data", "64", *size]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"sparsekit train: error: {message}")


def test_the_largest_model_that_fits_is_accepted(monkeypatch):
    from sparsekit import provenance

    monkeypatch.setattr(provenance, "memory_bytes", lambda: 2**30)
    args = parser().parse_args(["train", "--family", "vit", "--data", "64", "--nonzero",
                                "44236800"])
    assert train_config(args).width() == 960


DRIFT = ("jax 0.10.1 (locked 0.10.2)", "optax 0.2.0 (locked 0.2.5)")


def test_a_drifted_environment_gives_one_warning_line_naming_the_differences(
    capsys, tmp_path, monkeypatch
):
    import sparsekit.sweep
    import sparsekit.train
    from sparsekit import provenance
    from tests.test_sweep import toy_run

    monkeypatch.setattr(provenance, "_checked_lock", lambda: ("0" * 64, DRIFT))
    monkeypatch.setattr(sparsekit.sweep, "_train_run", toy_run)
    monkeypatch.setattr(sparsekit.train, "run", lambda cfg, **kw: toy_run(cfg))
    expected = ("warning: the installed packages differ from uv.lock: jax 0.10.1 (locked "
                "0.10.2); optax 0.2.0 (locked 0.2.5); results record it (lock.drift); `make env` "
                "installs the locked versions")
    grid, store = tmp_path / "g.yaml", tmp_path / "store"
    grid.write_text(SWEEP_GRID)
    code, _, err = run(capsys, "sweep", str(grid), "--store", str(store))
    assert code == 0
    assert [line for line in err.splitlines() if "uv.lock" in line] == [
        f"sparsekit sweep: {expected}"]
    code, _, err = run(capsys, "sweep", str(grid), "--store", str(store))  # nothing to train
    assert code == 0 and "uv.lock" not in err
    code, out, err = run(capsys, "train", *TINY)
    assert code == 0 and out.startswith("vit S=0.0")
    assert [line for line in err.splitlines() if "uv.lock" in line] == [
        f"sparsekit train: {expected}"]


def timed_run(cfg, **_):
    """toy_run's result, as if trained here: 60 s + 1e-9 s per image x block parameter."""
    from sparsekit import provenance
    from sparsekit.sweep import work
    from tests.test_sweep import toy_run

    row = toy_run(cfg).to_row()
    row.update(dense_block=cfg.family().block_params(cfg.width()), wall_time_s=60 + 1e-9 * work(
        cfg), machine={"cpu": provenance.cpu_model(), "cpus": os.cpu_count()})
    return RunResult.from_row(row)


def test_sweep_plan_prints_the_runs_and_the_estimated_time_and_trains_nothing(
    capsys, tmp_path, monkeypatch
):
    import sparsekit.sweep

    monkeypatch.setattr(sparsekit.sweep, "_train_run", timed_run)
    grid, bigger = tmp_path / "g.yaml", tmp_path / "bigger.yaml"
    store = tmp_path / "results" / "store"
    grid.write_text(SWEEP_GRID)
    bigger.write_text(SWEEP_GRID.replace("[3000, 4000]", "[3000, 4000, 16000, 32000]"))
    code, _, err = run(capsys, "sweep", str(grid), "--store", str(store), "--plan")
    assert code == 0 and not store.exists()  # read only
    code, _, err = run(capsys, "sweep", str(grid), "--store", str(store))  # 4 runs of 60-61 s
    assert code == 0
    assert (f"g: 4 runs, 0 reused from {store}, 4 to run; no time estimate: no finished vit "
            f"run on this kind of machine in {store} or beside it to measure its rate (the "
            "first runs will)") in err
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    code, out, err = run(capsys, "sweep", str(bigger), "--store", str(store), "--plan")
    # the 4 new runs at the rate fitted to the 4 stored ones: 4 x 60 s + 1e-9 s x 256 images
    # x their block parameters (a few million): 4 min
    assert code == 0 and err == "" and out == (
        f"bigger: 8 runs, 4 reused from {store}, 4 to run; estimated 4 min of training (vit: "
        f"60 s + 1e-09 s per image x block parameter a run, from 4 runs in {store})\n")
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    # a store with no runs of its own takes the rate of the stores beside it
    code, out, _ = run(capsys, "sweep", str(bigger), "--store", str(tmp_path / "results" / "new"),
                       "--plan")
    assert code == 0 and "8 to run; estimated 8 min of training" in out
    assert f"from 4 runs in {tmp_path / 'results'}/*" in out
    # the sweep prints the same line before it trains
    code, _, err = run(capsys, "sweep", str(bigger), "--store", str(store))
    assert code == 0
    assert f"bigger: 8 runs, 4 reused from {store}, 4 to run; estimated 4 min of training" in err
    assert len(list((store / "runs").glob("*.json"))) == 8
