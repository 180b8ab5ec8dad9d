"""One training run: a `RunConfig` in, one `RunResult` out.

The hot loop is split -> plain `jax.jit` -> merge: parameters travel as a pure dict, the
model is re-merged inside the jitted function, and `lax.scan` runs `chunk` steps per call
(much faster on CPU than one call per step). Host-side data for a chunk is generated while
nothing else runs; `benchmarks/throughput.py` measures how much of a step that costs.

A non-finite training loss ends the run early with status "failed" and the error in the
result, so a sweep records it instead of crashing: `failed_step` is the first step whose loss
was not finite, `steps` and `D` count the steps before it, and the curve runs up to it. A run
that trains to the end but whose final validation loss is not finite, or is at or above the
loss of uniform predictions (a collapsed model), is recorded as failed too, with its
measurements (`final_loss_problem`).

With `checkpoints` (`sparsekit.checkpoint.Checkpoints`), a run saves its training state at the
end of a chunk at least every 15 minutes and resumes from the latest one, with the same result
bit for bit; a sweep gives every run such a folder in its store.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sparsekit import pretrained, provenance, schedules
from sparsekit.checkpoint import Checkpoints, Progress
from sparsekit.config import RunConfig
from sparsekit.data import open_source
from sparsekit.data.source import check_units
from sparsekit.models import Family, kinds
from sparsekit.optim import make_optimizer
from sparsekit.pruning import census, sparsify
from sparsekit.result import RunResult


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a config implies before training: sizes, steps, data seen."""

    width: int  # model width d
    steps: int  # optimizer steps
    batch: int  # examples per step
    units_per_step: int  # tokens or images per step
    data_seen: int  # D actually trained on: steps * units_per_step (<= config amount)


def plan(cfg: RunConfig, source: Any) -> Plan:
    """Width and step count for a config; refuses a data amount smaller than one step."""
    width = cfg.width()
    units = cfg.data.batch * source.units_per_example
    steps = cfg.data.amount // units
    if steps < 1:
        raise ValueError(f"data amount D={cfg.data.amount} {source.unit} is less than one step "
                         f"of batch {cfg.data.batch} ({units} {source.unit})")
    return Plan(width, steps, cfg.data.batch, units, steps * units)


def final_loss_problem(loss: float, fam: Family) -> str | None:
    """Why a run whose training stayed finite still has no result, or None: its final
    validation loss is not finite, or it is at or above the family's uniform-prediction loss
    (`Family.uniform_loss`), so the model collapsed (e.g. a far too large learning rate)."""
    if not math.isfinite(loss):
        return f"non-finite validation loss ({loss}) after training"
    if loss >= fam.uniform_loss:
        return (f"collapsed: final validation loss {loss:.4f} is at or above {fam.uniform_loss:.4f}"
                f" = ln {fam.outputs}, the loss of uniform predictions over its {fam.outputs} "
                f"outputs (the model learned nothing; e.g. a learning rate far too large)")
    return None


def stack(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batches stacked along a new leading axis [K, ...]: one `lax.scan` chunk's input."""
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def training_flops(fam: Family, width: int, dense_block: int, density: float,
                   examples: int) -> tuple[float, float]:
    """(dense, sparse) training FLOPs of `examples` examples: 3x the forward matmul FLOPs of
    the dense-width model, and that less the pruned share of the block matrices' 6 FLOPs per
    parameter per token at the schedule's average `density`."""
    dense = 3 * fam.flops_per_example(width) * examples
    block = 6 * dense_block * fam.block_tokens * examples
    return float(dense), float(dense - block * (1.0 - density))


def pure_loss(graphdef: Any, treedef: Any, loss_fn: Any):
    """loss_fn(model, batch) as a function of a params pure dict: merges the model inside."""

    def loss(params, batch):
        state = jax.tree.unflatten(treedef, jax.tree.leaves(params))
        return loss_fn(nnx.merge(graphdef, state), batch)

    return loss


def make_chunk(loss: Any, opt: optax.GradientTransformation):
    """Jitted (params, opt_state, batches stacked [K, ...]) -> (params, opt_state, ce [K]):
    K optimizer steps in one `lax.scan`. params and opt_state are donated."""

    def step(carry, batch):
        params, opt_state = carry
        (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), metrics["ce"]

    def chunk(params, opt_state, batches):
        (params, opt_state), ce = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, ce

    return jax.jit(chunk, donate_argnums=(0, 1))


class Trainer:
    """Holds the jitted functions of one run; `run()` is the usual entry point.

    `store`: the results store that resolves an `init_from` naming a stored run ("run:<key>",
    see `sparsekit.pretrained`); such a run continues that run's data stream from
    `first_step`."""

    def __init__(self, cfg: RunConfig, store: str | None = None):
        self.cfg = cfg
        self.source = open_source(cfg.source_config())
        self.fam = cfg.family().for_source(self.source)
        self.plan = plan(cfg, self.source)
        init, self.first_step = pretrained.resolve(cfg, store) if cfg.init_from else (None, 0)
        check_units(self.source, self.first_step * self.plan.units_per_step + self.plan.data_seen,
                    self.plan.batch)
        model = self.fam.make(self.plan.width, nnx.Rngs(cfg.seed))
        self.labels = kinds(model)
        self.graphdef, state = nnx.split(model)
        self.treedef = jax.tree.structure(state)
        self.params = nnx.to_pure_dict(state)
        if init:
            self.params = load_params(init, self.params)
        sp = cfg.sparsity
        self.schedule = schedules.make(sp.schedule, target=cfg.block_sparsity(), start=sp.start,
                                       end=sp.end, every=sp.every)
        inner = make_optimizer(cfg.optim, self.plan.steps, self.labels, self.plan.width)
        self.opt = sparsify(inner, schedule=self.schedule, total_steps=self.plan.steps,
                            labels=self.labels, pattern=sp.pattern, embed_rule=sp.embed_rule,
                            embed_target=cfg.embed_sparsity() if sp.embed_rule else None)
        self.opt_state = self.opt.init(self.params)
        loss = pure_loss(self.graphdef, self.treedef, self.fam.loss(cfg.optim.z_loss))
        self._chunk = make_chunk(loss, self.opt)
        self._eval = jax.jit(lambda p, b: loss(p, b)[1])

    def evaluate(self) -> tuple[float, float]:
        """Mean cross-entropy of the current params on the held-out set (per image / per
        target token) and its standard error, from per-batch means."""
        data = self.source.eval_set()
        n = len(next(iter(data.values())))
        size = max(1, min(self.plan.batch, n // 8))  # >= 8 batches for the standard error
        means, weights = [], []
        for i in range(0, n, size):
            metrics = self._eval(self.params, {k: v[i:i + size] for k, v in data.items()})
            means.append(float(metrics["ce"]))
            weights.append(float(metrics.get("tokens", min(size, n - i))))
        means, weights = np.asarray(means), np.asarray(weights)
        mean = float(np.sum(means * weights) / np.sum(weights))
        if len(means) < 2:
            return mean, math.nan
        spread = np.sqrt(np.sum(weights * (means - mean) ** 2) / np.sum(weights))
        return mean, float(spread / math.sqrt(len(means)))

    def train(self, chunk: int = 25, on_chunk=None,
              checkpoints: Checkpoints | None = None) -> dict[str, Any]:
        """Run every step; returns the loss curve and status (ok, or failed with error). A
        non-finite loss stops the run: `failed_step` is that step, and `steps_done` and the
        curve stop just before it. With `checkpoints`, the run continues from its latest
        checkpoint there, if any, and saves one when due at the end of a chunk
        (`sparsekit.checkpoint`); `elapsed_s` is the wall time of the earlier attempts."""
        curve, val_curve, step, error, failed_step = [], [], 0, None, None
        cfg, steps = self.cfg, self.plan.steps
        start, elapsed = time.perf_counter(), 0.0
        if checkpoints is not None:
            progress = Progress(cfg.key(), provenance.code_version(), steps, chunk, 0, [], [],
                                0.0)
            restored = checkpoints.restore(progress, self.params, self.opt_state)
            if restored is not None:
                progress, self.params, self.opt_state = restored
                step, curve, val_curve = progress.step, progress.curve, progress.val_curve
                elapsed = progress.elapsed_s
        while step < steps:
            k = min(chunk, steps - step)
            batches = stack([self.source.train_batch(self.first_step + step + i, self.plan.batch)
                              for i in range(k)])
            self.params, self.opt_state, ce = self._chunk(self.params, self.opt_state, batches)
            ce = np.asarray(ce)
            finite = np.isfinite(ce)
            if not finite.all():
                ok = int(np.argmin(finite))  # steps of this chunk before the first bad one
                failed_step = step + ok
                if ok:
                    curve.append([failed_step, float(ce[:ok].mean())])
                error = f"non-finite training loss at step {failed_step} of {steps}"
                step = failed_step
                break
            step += k
            curve.append([step, float(ce.mean())])
            if cfg.eval_every and (step // cfg.eval_every) > ((step - k) // cfg.eval_every):
                val_curve.append([step, self.evaluate()[0]])
            if checkpoints is not None and step < steps and checkpoints.due(step):
                spent = elapsed + time.perf_counter() - start
                checkpoints.save(dataclasses.replace(progress, step=step, curve=curve,
                                                     val_curve=val_curve, elapsed_s=spent),
                                 self.params, self.opt_state)
            if on_chunk is not None:
                on_chunk(step, steps)
        return {"curve": curve, "val_curve": val_curve, "steps_done": step, "error": error,
                "failed_step": failed_step, "elapsed_s": elapsed}

    def result(self, trained: dict[str, Any], wall: float) -> RunResult:
        """The run's result: loss, sizes, data, FLOPs, provenance."""
        c = census(self.params, self.labels, self.opt_state.masks)
        p, src = self.plan, self.source
        loss, loss_se = self.evaluate() if trained["error"] is None else (math.nan, math.nan)
        error = trained["error"] or final_loss_problem(loss, self.fam)
        density = self.schedule.average_density()
        flops_dense, flops_sparse = training_flops(self.fam, p.width, c.dense_block, density,
                                                   trained["steps_done"] * p.batch)
        measured = dict(
            loss=loss, loss_se=loss_se, N=c.N, N_target=self.cfg.model.nonzero,
            dense_block=c.dense_block, sparsity_measured=c.sparsity, total_params=c.total,
            nonzero_params=c.nonzero, embed_nonzero=c.embed, width=p.width, D=trained["steps_done"] * p.units_per_step,
            unit=src.unit, steps=trained["steps_done"], failed_step=trained["failed_step"],
            batch=p.batch, peak_lr=self.cfg.optim.peak_lr(p.width), flops_dense=flops_dense,
            flops_sparse=flops_sparse, avg_density=density, curve=trained["curve"],
            val_curve=trained["val_curve"], wall_time_s=wall, data=src.describe(),
            **provenance.record(),
        )
        if error is None:
            return RunResult.ok(self.cfg, **measured)
        return RunResult.failed(self.cfg, error, **measured)


def run(cfg: RunConfig, *, chunk: int = 25, save_to: str | None = None,
        on_chunk=None, store: str | None = None,
        checkpoints: Checkpoints | None = None) -> RunResult:
    """Train one config and return its result (see `Trainer.result`); `save_to`: save the
    final params there with orbax; `store`: resolves an init_from naming a stored run;
    `checkpoints`: resume from and save training checkpoints there (`sparsekit.checkpoint`;
    the result's wall time then counts every attempt)."""
    start = time.perf_counter()
    trainer = Trainer(cfg, store)
    trained = trainer.train(chunk, on_chunk, checkpoints)
    if save_to and trained["error"] is None:
        save_params(save_to, trainer.params)
    return trainer.result(trained, trained["elapsed_s"] + time.perf_counter() - start)


def save_params(path: str, params: Any) -> None:
    """Save a params pure dict with orbax (for pruning a pretrained dense model later)."""
    import orbax.checkpoint as ocp

    # The context closes the checkpointer's background threads once the save has finished.
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.abspath(path), params, force=True)
        ckpt.wait_until_finished()


def load_params(path: str, like: Any) -> Any:
    """Restore params saved by `save_params`, checked against the shapes of `like`."""
    import orbax.checkpoint as ocp

    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
    try:
        with ocp.StandardCheckpointer() as ckpt:
            restored = ckpt.restore(os.path.abspath(path), abstract)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise ValueError(f"init_from checkpoint {path!r} does not match this model: {e}") from e
    shapes = [(jnp.shape(a), jnp.shape(b)) for a, b in
              zip(jax.tree.leaves(restored), jax.tree.leaves(like), strict=True)]
    if jax.tree.structure(restored) != jax.tree.structure(like) or any(a != b for a, b in shapes):
        raise ValueError(f"init_from checkpoint {path!r} does not match this model: "
                         "parameter shapes differ (was it saved at another width or depth?)")
    return jax.tree.map(jnp.asarray, restored)
