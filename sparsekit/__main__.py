"""Command line: train one config, or run a sweep into a results store.

    python -m sparsekit train --family vit --nonzero 3000 --sparsity 0.5 --data 2048 --json
    python -m sparsekit sweep sweeps/vit-smoke.yaml --store results/vit-smoke --workers 2
    python -m sparsekit sweep sweeps/t5.yaml --store results/t5 --plan   # cost only

Bad input (an invalid config, grid or store) prints one line naming the problem and exits
with status 2; a run that fails exits with status 1. Ctrl-C prints one line (for a sweep: what
finished, what was interrupted, and the command that resumes it) and exits with status 130.
"""

from __future__ import annotations

import argparse
import errno
import shlex
import sys
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparsekit.result import RunResult

# Columns of the sweep summary (`sparsekit.result.COLUMNS`), in order (those the rows have).
SUMMARY = [
    "key",
    "family",
    "sparsity",
    "pattern",
    "N",
    "width",
    "D",
    "steps",
    "loss",
    "loss_se",
    "status",
    "wall_time_s",
]


def _override(text: str) -> tuple[str, Any]:
    """NAME=VALUE with VALUE read as YAML (so 3e-3 is a float and true a bool)."""
    import yaml

    from sparsekit.sweep import yaml_loader, yaml_problem

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, yaml.load(value, Loader=yaml_loader())
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError(
            f"{name}: value {value!r} is not YAML: {yaml_problem(e)}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsekit", description=__doc__.splitlines()[0])
    commands = p.add_subparsers(dest="command", required=True)

    t = commands.add_parser("train", help="train one config and print its result")
    t.add_argument("--family", required=True, help="model family: vit or t5")
    size = t.add_mutually_exclusive_group(required=True)
    size.add_argument("--nonzero", type=int, help="target N: non-zero non-embedding params")
    size.add_argument("--width", type=int, help="model width (instead of --nonzero)")
    t.add_argument("--sparsity", type=float, default=0.0, help="final sparsity S in [0, 1)")
    t.add_argument(
        "--pattern",
        default="unstructured",
        help="unstructured, global or N:M such as 2:4 (default: unstructured)",
    )
    t.add_argument(
        "--data", type=int, required=True, help="training data D: tokens (t5) or images (vit)"
    )
    t.add_argument("--batch", type=int, help="examples per step (default: the family recipe)")
    t.add_argument(
        "--eval-examples",
        type=int,
        help="held-out examples for the final loss (default: the config default)",
    )
    t.add_argument("--seed", type=int, default=0, help="parameter-init seed")
    t.add_argument(
        "--set",
        type=_override,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any config field by dotted name, e.g. --set optim.lr=1e-3",
    )
    t.add_argument(
        "--json",
        action="store_true",
        help="print the full result (curves included) as one JSON object",
    )

    s = commands.add_parser("sweep", help="run a grid into a results store (resumable)")
    s.add_argument("grid", help="grid YAML file (see sweeps/)")
    s.add_argument("--store", required=True, help="results store directory")
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="runs at once (1: in this process; more: one process per run)",
    )
    s.add_argument(
        "--scheduler",
        metavar="ADDRESS|local",
        help="run on Dask: a scheduler address, or 'local' for a LocalCluster",
    )
    s.add_argument("--recompute", action="store_true", help="rerun stored configs too")
    s.add_argument("--retry-failed", action="store_true", help="rerun stored failed configs")
    s.add_argument("--plan", action="store_true",
                   help="print the runs to train and to reuse and the estimated time; train "
                        "nothing")
    return p


def train_config(args: argparse.Namespace):
    """The RunConfig the train flags describe (ValueError naming a bad parameter)."""
    from sparsekit.config import make_config

    data = {"amount": args.data, "batch": args.batch, "eval_examples": args.eval_examples}
    base = {
        "model": {"family": args.family, "nonzero": args.nonzero, "width": args.width},
        "data": {k: v for k, v in data.items() if v is not None},
        "sparsity": {"target": args.sparsity, "pattern": args.pattern},
        "seed": args.seed,
    }
    return make_config(base, dict(args.set))


def summary(r: RunResult) -> str:
    """Two lines on a finished run: what was trained, and its loss."""
    return (
        f"{r.family} S={r.sparsity} ({r.pattern}): N={r.N} (width {r.width}), "
        f"D={r.D} {r.unit} in {r.steps} steps of {r.batch}\n"
        f"loss {r.loss:.4f} +- {r.loss_se:.4f}, {r.wall_time_s:.1f} s, key {r.key}"
    )


def train(args: argparse.Namespace) -> int:
    cfg = train_config(args)  # bad input fails here, before anything trains
    from tqdm import tqdm

    from sparsekit import provenance
    from sparsekit import train as training
    from sparsekit.store import dumps

    provenance.warn_if_drifted()
    with tqdm(desc="steps", unit="step", disable=None, file=sys.stderr) as bar:

        def on_chunk(step: int, steps: int) -> None:
            bar.total = steps
            bar.update(step - bar.n)

        r = training.run(cfg, on_chunk=on_chunk)
    if args.json:
        print(dumps(r))
    elif r.status == "ok":
        print(summary(r))
    if r.status != "ok":
        print(f"sparsekit train: run failed: {r.error}", file=sys.stderr)
        return 1
    return 0


def sweep(args: argparse.Namespace) -> int:
    from sparsekit.sweep import load_grid, plan
    from sparsekit.sweep import sweep as run_sweep

    if args.plan:
        print(plan(load_grid(args.grid), args.store, reuse=not args.recompute,
                   retry_failed=args.retry_failed))
        return 0
    frame = run_sweep(
        load_grid(args.grid),
        args.store,
        workers=args.workers,
        scheduler=args.scheduler,
        reuse=not args.recompute,
        retry_failed=args.retry_failed,
    )
    columns = [c for c in SUMMARY if c in frame]
    print(frame[columns].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    bad = frame[frame["status"] != "ok"]
    for _, row in bad.iterrows():
        print(f"failed {row['key']}: {row['error']}", file=sys.stderr)
    if len(bad):
        print(
            f"{len(bad)} of {len(frame)} runs failed (rerun with --retry-failed)", file=sys.stderr
        )
    return 1 if len(bad) else 0


def resume_command(args: argparse.Namespace) -> str:
    """The command that resumes an interrupted sweep: the same grid, store and executor,
    reusing the runs that finished (so without --recompute)."""
    words = ["python", "-m", "sparsekit", "sweep", args.grid, "--store", args.store]
    if args.workers != 1:
        words += ["--workers", str(args.workers)]
    if args.scheduler:
        words += ["--scheduler", args.scheduler]
    if args.retry_failed:
        words.append("--retry-failed")
    return shlex.join(words)


def full_disk_hint(args: argparse.Namespace, error: Exception) -> str:
    """For a sweep stopped by a full disk (ENOSPC): that the runs stored before it are kept,
    and the command that resumes it once there is space; "" for any other error."""
    if args.command != "sweep" or getattr(error, "errno", None) != errno.ENOSPC:
        return ""
    return (f"; the runs stored before it are kept: free space on that disk, then resume "
            f"with: {resume_command(args)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m sparsekit` and the `sparsekit` script; returns the status."""
    p = parser()
    args = p.parse_args(argv)
    from sparsekit.provenance import EnvironmentDriftWarning
    from sparsekit.store import DamagedResultWarning, StoreBusyError
    from sparsekit.sweep import SweepInterrupted

    name = f"sparsekit {args.command}"
    default_show = warnings.showwarning

    def show(message, category, *rest, **kw) -> None:  # a set-aside file, a drift: one line
        if issubclass(category, DamagedResultWarning | EnvironmentDriftWarning):
            print(f"{name}: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, *rest, **kw)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            return {"train": train, "sweep": sweep}[args.command](args)
    except (ValueError, OSError, StoreBusyError) as e:  # bad input: one line, no traceback
        print(f"{name}: error: {e}{full_disk_hint(args, e)}", file=sys.stderr)
        return 2
    except SweepInterrupted as e:
        print(f"{name}: {e}; to resume: {resume_command(args)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{name}: interrupted (Ctrl-C); nothing was stored", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
