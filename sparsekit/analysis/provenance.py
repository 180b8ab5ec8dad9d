"""Provenance of the runs: what each run is and what produced it (code version, machine,
library versions, locked environment, wall time), per run and per store, and how the stored
runs compare with the checkout's lock (`uv.lock`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from sparsekit.provenance import Lock, package_name

SHA = r"^([0-9a-f]{12})[0-9a-f]{28}"  # a git commit, shown by its first 12 hex digits
SHORT = 12  # hex digits shown of a lock's sha256
LOCK_SHOWN = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy")  # pins shown with the lock


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column of a store table, or NaN where the table has none (e.g. only failed runs)."""
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index)


def _integers(column: pd.Series) -> pd.Series:
    """Whole numbers shown as such, missing values kept (nullable integers)."""
    return pd.to_numeric(column, errors="coerce").round().astype("Int64")


def _joined(frame: pd.DataFrame, prefix: str) -> pd.Series:
    """'name value, ...' of the columns `prefix`* of each row (e.g. versions.*)."""
    columns = [c for c in frame if c.startswith(prefix)]
    return frame[columns].apply(
        lambda row: ", ".join(
            f"{c.removeprefix(prefix)} {row[c]}" for c in columns if pd.notna(row[c])
        ),
        axis=1,
    )


def provenance_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every run of a store table: what it is (family, key, S, N, D, loss, status) and what
    produced it (code version, machine, library versions, wall time, finished_at)."""
    frame = frame.reset_index(drop=True)
    machine = [
        f"{host} / {device} / {cpus} CPUs" if pd.notna(host) else None
        for host, device, cpus in zip(
            _column(frame, "machine.host"),
            _column(frame, "machine.device"),
            _integers(_column(frame, "machine.cpus")),
            strict=True,
        )
    ]
    table = pd.DataFrame(
        {
            "family": _column(frame, "family"),
            "key": _column(frame, "key"),
            "S": _column(frame, "sparsity"),
            "N": _integers(_column(frame, "N")),
            "D": _integers(_column(frame, "D")),
            "unit": _column(frame, "unit"),
            "loss": _column(frame, "loss").round(4),
            "status": _column(frame, "status"),
            "code version": _column(frame, "code_version")
            .astype("string")
            .str.replace(SHA, r"\1", regex=True),
            "machine": machine,
            "versions": _joined(frame, "versions."),
            "lock": _lock_labels(frame),
            "wall time (s)": _column(frame, "wall_time_s").round(1),
            "finished_at": _column(frame, "finished_at"),
        }
    )
    return table.sort_values(["family", "S", "N", "D"]).reset_index(drop=True)


def _lock_labels(frame: pd.DataFrame) -> pd.Series:
    """Each run's lock: its sha256 (first 12 hex), '(drifted)' when the installed packages
    differed from it; missing for runs without a lock hash (made before the lock existed)."""
    sha = _column(frame, "lock.sha256").astype("string").str[:SHORT]
    drifted = _column(frame, "lock.matches").eq(False)
    return sha.where(~drifted, sha + " (drifted)")


def _counts(column: pd.Series) -> str:
    """'value (runs); ...' for the distinct values of a column, most frequent first."""
    return "; ".join(f"{value} ({n})" for value, n in column.dropna().value_counts().items())


def provenance_summary(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One column per store: runs (finished and failed), CPU hours (sum of the runs' wall
    times), and the distinct machines, code versions and library versions behind them."""
    rows = {}
    for store, frame in frames.items():
        if frame.empty:
            rows[store] = {"runs": 0}
            continue
        table = provenance_table(frame)
        rows[store] = {
            "runs": len(table),
            "finished": int((table["status"] == "ok").sum()),
            "failed": int((table["status"] != "ok").sum()),
            "families": ", ".join(sorted(table["family"].dropna().unique())),
            "CPU hours": f"{table['wall time (s)'].sum() / 3600:.3g}",  # text: mixed column
            "machines": _counts(table["machine"]),
            "code versions": _counts(table["code version"]),
            "versions": _counts(table["versions"]),
            "finished between": f"{table['finished_at'].min()} and {table['finished_at'].max()}",
        }
    return pd.DataFrame(rows)


def lock_note(lock: Lock) -> str:
    """One line of Markdown: the lock's sha256 and the versions it pins for the libraries
    behind the numbers."""
    pins = ", ".join(
        f"{name} {' or '.join(lock.packages[name])}" for name in LOCK_SHOWN if name in lock.packages
    )
    return f"`uv.lock` sha256 `{lock.sha256[:SHORT]}`: {pins}."


def lock_summary(frames: Mapping[str, pd.DataFrame], lock: Lock) -> pd.DataFrame:
    """One column per store, over its runs with provenance (a code version): how many ran
    under `lock`, under another lock (by hash), or before any lock (no lock hash); how many
    ran in an environment that had drifted from its lock; and the recorded library versions
    (`versions.*`) that differ from the versions `lock` pins, with their runs ("as locked"
    when none does)."""
    rows = {}
    for store, frame in frames.items():
        frame = frame[_column(frame, "code_version").notna()]
        if frame.empty:
            rows[store] = {"runs": 0}
            continue
        sha = _column(frame, "lock.sha256")
        other = sha[sha.notna() & (sha != lock.sha256)].astype(str).str[:SHORT]
        differ = [
            f"{name} {version}"
            for column in frame
            if column.startswith("versions.")
            and (name := package_name(column.removeprefix("versions."))) in lock.packages
            for version in frame[column].dropna()
            if version not in lock.packages[name]
        ]
        rows[store] = {
            "runs": len(frame),
            "under this lock": int((sha == lock.sha256).sum()),
            "under another lock": _counts(other) or "none",
            "before the lock (no lock hash)": int(sha.isna().sum()),
            "environment drifted from its lock": int(_column(frame, "lock.matches").eq(False).sum()),
            "versions not as locked": _counts(pd.Series(differ, dtype=object)) or "as locked",
        }
    return pd.DataFrame(rows)
