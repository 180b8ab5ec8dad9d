"""The fit cache: a hit is a fresh fit without the optimiser; any change misses; off by default."""

import ast
import importlib.util
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest

from sparsekit import fitcache, fitting
from sparsekit.laws import PAPER_T5, PAPER_VIT, AverageParamLaw, ChinchillaLaw, cubic_schedule

ROOT = Path(__file__).resolve().parents[1]
FAST = {"grid": 8, "starts": 2}  # a coarse search: these tests are about the cache


def dense_data() -> tuple[np.ndarray, ...]:
    """Dense runs of a Chinchilla law, 3 sizes x 3 lengths, with 0.1% noise."""
    N, D = (x.ravel() for x in np.meshgrid([1e6, 4e6, 1.6e7], [1e8, 4e8, 1.6e9]))
    S = np.zeros_like(N)
    loss = PAPER_T5.predict(S, N, D) * np.exp(np.random.default_rng(0).normal(0, 1e-3, N.size))
    return S, N, D, loss


def sparse_data() -> tuple[np.ndarray, ...]:
    """Runs of the paper's ViT law at 3 sparsities, 2 sizes x 2 lengths each."""
    grid = np.meshgrid([0.0, 0.5, 0.75], [1e6, 8e6], [1e8, 8e8], indexing="ij")
    S, N, D = (x.ravel() for x in grid)
    loss = PAPER_VIT.predict(S, N, D) * np.exp(np.random.default_rng(1).normal(0, 1e-3, S.size))
    return S, N, D, loss


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """Counts the optimiser's runs (`fitting._fit_law`), one entry per run."""
    counted: list[int] = []
    real = fitting._fit_law

    def counting(*args, **kwargs):
        counted.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fitting, "_fit_law", counting)
    return counted


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """The cache on, in an empty folder."""
    folder = tmp_path / "fits"
    monkeypatch.setenv(fitcache.ENV, str(folder))
    return folder


def assert_same_result(a: fitting.FitResult, b: fitting.FitResult) -> None:
    """Every field of two FitResults equal, arrays exactly."""
    assert a.law == b.law and type(a.law) is type(b.law)
    assert a.objective == b.objective and a.n_points == b.n_points
    assert a.delta == b.delta and a.log == b.log
    np.testing.assert_array_equal(a.residuals, b.residuals)
    np.testing.assert_array_equal(a.diagnostics.relative_error, b.diagnostics.relative_error)
    assert (a.diagnostics.rmse, a.diagnostics.rmse_log) == (b.diagnostics.rmse,
                                                             b.diagnostics.rmse_log)
    assert a.intervals == b.intervals and list(a.intervals) == list(b.intervals)
    assert a.bootstrap_laws == b.bootstrap_laws
    assert a.undetermined == b.undetermined and a.at_bounds == b.at_bounds
    assert [f.name for f in fields(a)] == [  # a new field of FitResult needs a check here
        "law", "objective", "residuals", "n_points", "delta", "log", "diagnostics",
        "intervals", "bootstrap_laws", "undetermined"]


def test_a_hit_is_a_fresh_fit_without_the_optimiser(cache, calls, monkeypatch) -> None:
    data = sparse_data()
    kw = {"bootstrap": 3, "seed": 1, "sopt_at": [(1e7, 1e18)], **FAST}
    first = fitting.fit(*data, **kw)
    assert len(calls) == 4  # the fit and 3 refits
    assert sorted(p.name for p in cache.glob("*.json")) and (cache / fitcache.EVENTS).is_file()
    again = fitting.fit(*data, **kw)
    assert len(calls) == 4  # nothing refitted
    assert_same_result(again, first)
    monkeypatch.delenv(fitcache.ENV)
    fresh = fitting.fit(*data, **kw)
    assert len(calls) == 8
    assert_same_result(again, fresh)


@pytest.mark.parametrize("law", ["chinchilla", "average", "multiplier"])
def test_every_built_in_law_reads_back_equal(cache, calls, law) -> None:
    data = dense_data() if law == "chinchilla" else sparse_data()
    first = fitting.fit(*data, law=law, **FAST)
    assert_same_result(fitting.fit(*data, law=law, **FAST), first)
    assert len(calls) == 1


def test_the_fit_without_bootstrap_is_the_one_with_it(cache, calls) -> None:
    data = dense_data()
    plain = fitting.fit(*data, law="chinchilla", **FAST)
    with_refits = fitting.fit(*data, law="chinchilla", bootstrap=2, **FAST)
    assert len(calls) == 1 + 2 and with_refits.law == plain.law


def test_bootstraps_of_one_seed_share_their_first_refits(cache, calls, monkeypatch) -> None:
    data = dense_data()
    kw = {"law": "chinchilla", "seed": 3, **FAST}
    four = fitting.fit(*data, bootstrap=4, **kw)
    assert len(calls) == 5
    two = fitting.fit(*data, bootstrap=2, **kw)  # the first 2 of the 4
    assert len(calls) == 5
    six = fitting.fit(*data, bootstrap=6, **kw)  # 4 read, 2 more fitted
    assert len(calls) == 7
    assert two.bootstrap_laws == four.bootstrap_laws[:2]
    assert six.bootstrap_laws[:4] == four.bootstrap_laws
    monkeypatch.delenv(fitcache.ENV)
    for cached in (two, six):
        assert_same_result(cached, fitting.fit(*data, bootstrap=len(cached.bootstrap_laws),
                                               **kw))


def _bumped(x: np.ndarray) -> np.ndarray:
    """x with its first value moved by one unit in the last place."""
    x = x.copy()
    x[0] = np.nextafter(x[0], np.inf)
    return x


CHANGES = {
    "loss, one ulp": lambda d, kw: ((*d[:3], _bumped(d[3])), kw),
    "N, one ulp": lambda d, kw: ((d[0], _bumped(d[1]), *d[2:]), kw),
    "D, one ulp": lambda d, kw: ((*d[:2], _bumped(d[2]), d[3]), kw),
    "S": lambda d, kw: ((np.where(d[0] == 0.75, 0.875, d[0]), *d[1:]), kw),
    "order": lambda d, kw: (tuple(x[::-1] for x in d), kw),
    "a point fewer": lambda d, kw: (tuple(x[1:] for x in d), kw),
    "float32 data": lambda d, kw: (tuple(x.astype(np.float32) for x in d), kw),
    "delta": lambda d, kw: (d, {**kw, "delta": 2e-3}),
    "log": lambda d, kw: (d, {**kw, "log": False}),
    "law": lambda d, kw: (d, {**kw, "law": "multiplier"}),
    "grid": lambda d, kw: (d, {**kw, "grid": 9}),
    "starts": lambda d, kw: (d, {**kw, "starts": 3}),
    "seed": lambda d, kw: (d, {**kw, "seed": 1}),
}


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_of_data_or_settings_misses(cache, calls, change) -> None:
    data, kw = sparse_data(), {"law": "sparse", "bootstrap": 1, "seed": 0, **FAST}
    fitting.fit(*data, **kw)
    assert len(calls) == 2
    data, kw = CHANGES[change](data, kw)
    fitting.fit(*data, **kw)
    # a new seed refits only the bootstrap; everything else refits both
    assert len(calls) == (3 if change == "seed" else 4)


def test_a_new_version_of_the_fitting_code_misses(cache, calls, monkeypatch) -> None:
    data = dense_data()
    fitting.fit(*data, law="chinchilla", **FAST)
    monkeypatch.setattr(fitcache, "code_version", lambda: "another fitter")
    fitting.fit(*data, law="chinchilla", **FAST)
    assert len(calls) == 2
    assert len(set(fitcache.SOURCES)) == len(fitcache.SOURCES) >= 3
    assert all((Path(fitcache.__file__).parent / name).is_file() for name in fitcache.SOURCES)


def _sparsekit_imports(path: Path) -> set[str]:
    """The sparsekit modules a source file imports, as file names ("laws.py")."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "sparsekit":
            names |= {f"{alias.name}.py" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sparsekit."):
            names.add(node.module.split(".")[1] + ".py")
    return names


def test_the_code_version_covers_every_module_the_fitter_imports() -> None:
    package = Path(fitcache.__file__).parent
    missing = _sparsekit_imports(package / "fitting.py") - set(fitcache.SOURCES)
    assert not missing, f"fitcache.SOURCES lacks {sorted(missing)}: a change there would reuse stale fits"


def _slow_schedule(target: float):
    return cubic_schedule(target)


def test_a_law_option_is_part_of_the_key_and_an_unnamed_one_turns_the_cache_off(
        cache, calls) -> None:
    data = sparse_data()
    fitting.fit(*data, law="average", **FAST)
    fitting.fit(*data, law="average", schedule=cubic_schedule, **FAST)
    assert len(calls) == 2  # the default, given explicitly, is another key (not worth one)
    named = fitting.fit(*data, law="average", schedule=_slow_schedule, **FAST)
    assert fitting.fit(*data, law="average", schedule=_slow_schedule, **FAST).law == named.law
    assert len(calls) == 3 and named.law.schedule is _slow_schedule
    for _ in range(2):
        fitting.fit(*data, law="average", schedule=lambda s: cubic_schedule(s), **FAST)
    assert len(calls) == 5


def test_a_law_outside_laws_is_not_cached(cache, calls) -> None:
    @dataclass(frozen=True)
    class Mine(ChinchillaLaw):
        pass

    for _ in range(2):
        fitting.fit(*dense_data(), law=Mine, **FAST)
    assert len(calls) == 2


CORRUPTIONS = {
    "empty": lambda entry: "",
    "truncated": lambda entry: json.dumps(entry)[:-7],
    "not JSON": lambda entry: "\x80\x04\x95 pickle-like bytes",
    "a list": lambda entry: "[1, 2]",
    "another key": lambda entry: json.dumps({**entry, "key": "0" * 64}),
    "another format": lambda entry: json.dumps({**entry, "format": fitcache.FORMAT + 1}),
    "another law": lambda entry: json.dumps({**entry, "law": "sparse"}),
    "an extra field": lambda entry: json.dumps({**entry, "code": "print(1)"}),
    "a parameter as text": lambda entry: json.dumps(
        {**entry, "laws": [{**law, "A": "1.0"} for law in entry["laws"]]}),
    "a parameter missing": lambda entry: json.dumps(
        {**entry, "laws": [{k: v for k, v in law.items() if k != "E"} for law in entry["laws"]]}),
    "an unknown parameter": lambda entry: json.dumps(
        {**entry, "laws": [{**law, "__class__": 1.0} for law in entry["laws"]]}),
    "no laws": lambda entry: json.dumps({**entry, "laws": [], "attempts": []}),
    "a negative attempt": lambda entry: json.dumps(
        {**entry, "attempts": [-1, *entry["attempts"][1:]]}),
    "an attempt as text": lambda entry: json.dumps(
        {**entry, "attempts": ["0", *entry["attempts"][1:]]}),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_entry_is_recomputed_and_rewritten(cache, calls, monkeypatch,
                                                     corruption) -> None:
    data, kw = dense_data(), {"law": "chinchilla", "bootstrap": 2, **FAST}
    first = fitting.fit(*data, **kw)
    entries = sorted(cache.glob("*.json"))
    assert len(entries) == 2  # the fit and its bootstrap
    for path in entries:
        path.write_text(CORRUPTIONS[corruption](json.loads(path.read_text())))
    before = fitcache.stats["unreadable"]
    again = fitting.fit(*data, **kw)
    assert len(calls) == 6  # the fit and both refits, twice
    assert fitcache.stats["unreadable"] == before + 2
    assert_same_result(again, first)
    fitting.fit(*data, **kw)  # rewritten: read this time
    assert len(calls) == 6
    assert not list(cache.glob(".tmp-*"))


def test_the_cache_is_off_unless_the_variable_names_a_folder(tmp_path, calls,
                                                             monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = dense_data()
    for value in (None, "", "off", "0"):
        if value is None:
            monkeypatch.delenv(fitcache.ENV, raising=False)
        else:
            monkeypatch.setenv(fitcache.ENV, value)
        assert fitcache.directory() is None
        for _ in range(2):
            fitting.fit(*data, law="chinchilla", **FAST)
    assert len(calls) == 8
    assert not list(tmp_path.iterdir())


def test_an_unwritable_folder_only_costs_the_cache(tmp_path, calls, monkeypatch) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv(fitcache.ENV, str(blocker / "fits"))
    first = fitting.fit(*dense_data(), law="chinchilla", **FAST)
    assert fitting.fit(*dense_data(), law="chinchilla", **FAST).law == first.law
    assert len(calls) == 2


def test_a_law_that_would_not_read_back_equal_is_not_stored(cache) -> None:
    nan = ChinchillaLaw(1.0, float("nan"), 1.0, 0.3, 1.0)
    key = "1" * 64
    assert not fitcache.store(key, [nan], [0], {})
    assert fitcache.load(key, ChinchillaLaw, {}) is None
    law = ChinchillaLaw(1.0, 0.3, 2.0, float("inf"), 1.5)
    assert fitcache.store(key, [law], [0], {})
    assert fitcache.load(key, ChinchillaLaw, {}) == ((law,), (0,))
    assert fitcache.load(key, AverageParamLaw, {}) is None  # another law under the key


def test_events_count_what_each_fit_computed_and_reused(cache) -> None:
    data = dense_data()
    assert fitcache.event_totals(cache) == (dict(calls=0, hits=0, computed=0, reused=0), 0)
    fitting.fit(*data, law="chinchilla", bootstrap=2, **FAST)
    offset = fitcache.events_size(cache)
    fitting.fit(*data, law="chinchilla", bootstrap=3, **FAST)
    totals, end = fitcache.event_totals(cache, offset)
    assert totals == {"calls": 2, "hits": 1, "computed": 1, "reused": 3}
    assert end == fitcache.events_size(cache)
    assert fitcache.describe(totals) == "fits: 1 of 2 from the cache; laws 1 computed, 3 reused"
    assert fitcache.event_totals(cache)[0]["calls"] == 4
    assert fitcache.describe(fitcache.event_totals(None)[0]) == "fit cache off"


def test_events_say_which_notebook_looked_each_fit_up(cache, monkeypatch) -> None:
    data = dense_data()
    monkeypatch.setenv(fitcache.SOURCE_ENV, "04_fit_own_law")
    fitting.fit(*data, law="chinchilla", bootstrap=2, **FAST)
    monkeypatch.setenv(fitcache.SOURCE_ENV, "05_optimal_sparsity")
    fitting.fit(*data, law="chinchilla", bootstrap=3, **FAST)
    first = fitcache.event_totals(cache, source="04_fit_own_law")[0]
    second = fitcache.event_totals(cache, source="05_optimal_sparsity")[0]
    assert first == {"calls": 2, "hits": 0, "computed": 3, "reused": 0}
    assert second == {"calls": 2, "hits": 1, "computed": 1, "reused": 3}
    assert fitcache.event_totals(cache, source="00_findings")[0]["calls"] == 0


def _build_book():
    spec = importlib.util.spec_from_file_location("build_book_for_fitcache",
                                                  ROOT / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_build_turns_the_cache_on_in_the_checkout_unless_told_otherwise(monkeypatch) -> None:
    build_book = _build_book()
    assert build_book.FIT_CACHE == ROOT / ".cache" / "fits"
    assert ".cache/" in (ROOT / ".gitignore").read_text().splitlines()
    monkeypatch.delenv(fitcache.ENV, raising=False)
    with build_book.fit_cache() as folder:
        assert folder == build_book.FIT_CACHE and os.environ[fitcache.ENV] == str(folder)
    assert fitcache.ENV not in os.environ  # the caller's environment is left as it was
    monkeypatch.setenv(fitcache.ENV, "off")
    with build_book.fit_cache() as folder:
        assert folder is None
    assert os.environ[fitcache.ENV] == "off"
