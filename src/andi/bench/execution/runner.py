"""One benchmark run: a :class:`RunConfig` in, a JSON-serialisable record out.

:func:`run` builds the task's model under ``init_seed`` and its data stream under ``data_seed`` (independent
seeds, shared by every arm so results pair per seed), builds the optimizer through
:func:`andi.create_optimizer` with the task's parameter roles, wraps it in the schedule
(:mod:`andi.bench.protocols.schedules`, a ``LambdaLR`` over all param groups), then trains::

    for step in range(T):
        loss = task.loss(model, next(batches))          # pre-update minibatch loss, recorded every
        if not finite(loss): status = "diverged"; stop  #   train_record_every steps
        optimizer.zero_grad(); loss.backward()
        if an evaluation follows this step:             # ‖all grads‖₂ of this batch, before the update
            norm = global_grad_norm(model.parameters()) #   (kept on the device, read at the end)
        optimizer.step()                                # timed alone (synchronized on CUDA); a
                                                        #   FloatingPointError / LinAlgError = diverged
        scheduler.step()
        every eval_every steps: task.evaluate(model, eval_split)   # untimed, eval() + no_grad

and evaluates once more at the end of the schedule (the protocol's primary metric). ``eval_split="none"``
selects the replay's data (``split_mode="paper"``: the whole training set, GPT's whole text) and never
evaluates. The record holds the curves, the final metrics, timings (training time excludes evaluation),
optimizer-state bytes (sum of ``nbytes`` of the tensors in ``optimizer.state``: exact and device-independent)
and peak memory (``torch.cuda.max_memory_allocated`` after a reset on CUDA; the process's peak RSS on CPU,
which is cumulative over the process and therefore only indicative).

Gradient norm at every evaluation point: ``train.grad_norm_steps`` and ``train.grad_norm`` (aligned lists).
For the evaluation at step ``k > 0`` they hold ``k - 1`` and ``‖∇L(θ_{k-1}; batch_{k-1})‖₂``, the global L2
norm over all parameters of the minibatch gradient that made the last update before that evaluation, taken
after ``backward()`` and before ``optimizer.step()`` (the same step indexing as ``train.steps``, whose loss is
that of the same parameters and batch); ``null`` when non-finite. The step-0 evaluation has no gradient before
it, and a run that never evaluates (``eval_split="none"``) records none. Records written before this field
existed lack both keys and stay valid.

``eval_schedule="v7"`` evaluates as the author's v7 experiment does (``experiments/ANDI.py`` @5cb1d03): after the
update of every step ``s`` with ``s % eval_every == 0`` (recorded at ``s + 1`` updates; no evaluation before training
and none added at the end), and the run's final metrics are the means of the last 5 evaluations (its score).
``decay_rule="v7"`` gives weight decay to the author's v7 groups only (:func:`andi.decayed_parameters`).
"""

from __future__ import annotations

import math
import os
import random
import statistics
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import andi
from andi.bench.protocols.run_config import EVAL_SPLITS, ROLE_MODES, RunConfig
from andi.bench.protocols.schedules import lr_scheduler
from andi.bench.tasks import Task, get_task
from andi.bench.tasks.external import source_file
from andi.bench.util import device_info, progress_bar, sync, versions
from andi.optim.registry import optimizer_origin

__all__ = ["EVAL_SPLITS", "ROLE_MODES", "SCHEMA_VERSION", "RunConfig", "global_grad_norm", "run"]

SCHEMA_VERSION = 1
#: Evaluations the v7 score averages (``np.mean(v[-5:])`` in the author's script).
V7_SCORE_EVALUATIONS = 5
_V7_SCORE_RULE = f"mean of the last {V7_SCORE_EVALUATIONS} evaluations"
#: Exceptions from ``optimizer.step()`` that mean the run diverged (non-finite gradients or states), not a bug:
#: ANDI raises FloatingPointError on a non-finite gradient; factorizations fail on non-finite input.
_DIVERGENCE_ERRORS = (FloatingPointError, torch.linalg.LinAlgError)


# ------------------------------------------------------------------------------------------------ helpers
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    def walk(obj: Any) -> int:
        if torch.is_tensor(obj):
            return obj.nbytes
        if isinstance(obj, Mapping):
            return sum(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(walk(v) for v in obj)
        return 0

    return sum(walk(state) for state in optimizer.state.values())


def global_grad_norm(parameters: Iterable[torch.Tensor]) -> torch.Tensor | None:
    """The global L2 norm ``‖(g_1, …, g_n)‖₂`` of the parameters' gradients, as a 0-d float32 tensor.

    One ``torch._foreach_norm`` (per-tensor norms, accumulated in float32 whatever the gradients' dtype) and one
    ``vector_norm`` of their stack: a few kernels and no host synchronization, so recording it costs nothing
    measurable. ``None`` when no parameter has a gradient. The parameters must share one device.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float32)))


def _finite_or_none(values: list[torch.Tensor]) -> list[float | None]:
    """0-d tensors as floats (one device-to-host copy for all), non-finite ones as ``None`` (strict JSON)."""
    if not values:
        return []
    return [v if math.isfinite(v) else None for v in torch.stack(values).cpu().tolist()]


def _peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _median_after_warmup(times: list[float]) -> float | None:
    """Median over steps 50..T (over the second half when the run is shorter than 100 steps)."""
    if not times:
        return None
    skip = 50 if len(times) >= 100 else len(times) // 2
    return statistics.median(times[skip:])


def build_optimizer(config: RunConfig, model: nn.Module, task: Task) -> tuple[torch.optim.Optimizer, dict[str, str]]:
    """The run's optimizer from :func:`andi.create_optimizer` and the role of every parameter it was given."""
    if config.roles == "standard":
        roles = dict(andi.param_roles(model, overrides=dict(task.role_overrides)))
    else:
        roles = {name: "hidden_matrix" for name, _ in model.named_parameters()}
    optimizer = andi.create_optimizer(
        config.optimizer,
        model,
        lr=config.lr,
        roles=roles,
        weight_decay=config.weight_decay,
        decay_rule=config.decay_rule,
        **dict(config.optimizer_kwargs),
    )
    return optimizer, roles


# -------------------------------------------------------------------------------------------------- run
@dataclass
class _PreparedRun:
    """What :func:`_train` needs: the task, model, optimizer, schedule and data stream of one run, ready to step."""

    config: RunConfig
    task: Task
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    roles: dict[str, str]
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: Iterator[Any]
    steps: int
    batch_size: int
    eval_every: int
    split_mode: str

    @property
    def evaluating(self) -> bool:
        return self.config.eval_split != "none"


@dataclass
class _TrainingHistory:
    """What :func:`_train` observed: curves, timings, how the run ended and the last held-out metrics."""

    train_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    grad_norm_steps: list[int] = field(default_factory=list)
    grad_norms: list[torch.Tensor] = field(default_factory=list)  # 0-d float32 tensors, read once at the end
    last100: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    eval_steps: list[int] = field(default_factory=list)
    eval_values: dict[str, list[float]] = field(default_factory=dict)
    cumulative_train_s: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    iter_times: list[float] = field(default_factory=list)
    train_s: float = 0.0
    eval_s: float = 0.0
    status: str = "ok"
    diverged_at: int | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)

    def diverge(self, at: int) -> None:
        self.status, self.diverged_at = "diverged", at


def _prepare_run(config: RunConfig, data_root: str | os.PathLike[str] | None) -> _PreparedRun:
    """Resolve the task's defaults, then build the model (``init_seed``), optimizer, schedule and data stream."""
    split_mode = "paper" if config.eval_split == "none" else "fair"
    task = get_task(config.task, config.size, data_root, split_mode=split_mode)
    steps = config.steps if config.steps is not None else task.default_steps
    batch_size = config.batch_size if config.batch_size is not None else task.default_batch_size
    eval_every = config.eval_every if config.eval_every is not None else task.default_eval_every
    device = torch.device(config.device)
    dtype = getattr(torch, config.dtype)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _seed_everything(config.init_seed)
    model = task.build_model(config.init_seed).to(device=device, dtype=dtype)
    model.train()
    optimizer, roles = build_optimizer(config, model, task)
    scheduler = lr_scheduler(
        optimizer, config.schedule, steps, warmup_frac=config.warmup_frac, decay_frac=config.decay_frac
    )
    batches = task.train_batches(config.data_seed, batch_size=batch_size, device=device, dtype=dtype)
    return _PreparedRun(
        config, task, device, model, optimizer, roles, scheduler, batches, steps, batch_size, eval_every, split_mode
    )


def _train(prepared: _PreparedRun, *, progress: bool) -> _TrainingHistory:
    """The training loop of the module docstring: step, time ``optimizer.step()``, evaluate, stop on divergence."""
    config, task, model, optimizer = prepared.config, prepared.task, prepared.model, prepared.optimizer
    device, steps, eval_every, evaluating = prepared.device, prepared.steps, prepared.eval_every, prepared.evaluating
    history = _TrainingHistory()

    def evaluate(at: int) -> bool:
        """Record held-out metrics at step ``at``; False if any is non-finite (the run then diverged)."""
        t0 = time.perf_counter()
        metrics = task.evaluate(model, config.eval_split)
        sync(device)
        history.eval_s += time.perf_counter() - t0
        if not all(math.isfinite(v) for v in metrics.values()):
            return False
        history.eval_steps.append(at)
        history.cumulative_train_s.append(history.train_s)
        for name, value in metrics.items():
            history.eval_values.setdefault(name, []).append(float(value))
        history.final_metrics = {k: float(v) for k, v in metrics.items()}
        return True

    v7 = config.eval_schedule == "v7"

    def evaluates_after(done: int) -> bool:
        """Whether an evaluation (and a gradient-norm record) follows the update that completes ``done`` steps."""
        if not evaluating:
            return False
        if v7:
            return eval_every > 0 and (done - 1) % eval_every == 0
        return done == steps or (eval_every > 0 and done % eval_every == 0)

    bar = progress_bar(steps, f"{config.task}/{config.optimizer} lr={config.lr:g}", enabled=progress)
    try:
        if evaluating and eval_every > 0 and not v7 and not evaluate(0):
            history.diverge(0)
        step = 0
        while history.status == "ok" and step < steps:
            t_iter = time.perf_counter()
            loss = task.loss(model, next(prepared.batches))
            value = loss.item()
            if not math.isfinite(value):
                history.diverge(step)
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if evaluates_after(step + 1):
                grad_norm = global_grad_norm(model.parameters())  # no sync: read in _build_record
                if grad_norm is not None:
                    history.grad_norm_steps.append(step)
                    history.grad_norms.append(grad_norm)
            sync(device)
            t0 = time.perf_counter()
            try:
                optimizer.step()
            except _DIVERGENCE_ERRORS:  # e.g. ANDI refusing a non-finite gradient of a finite loss
                history.diverge(step)
                break
            sync(device)
            t1 = time.perf_counter()
            prepared.scheduler.step()
            history.step_times.append(t1 - t0)
            history.iter_times.append(t1 - t_iter)
            history.train_s += time.perf_counter() - t_iter
            if step % config.train_record_every == 0:
                history.train_steps.append(step)
                history.train_loss.append(value)
            history.last100.append(value)
            step += 1
            bar.update(1)
            if step % 10 == 0 or step == steps:
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            due = evaluates_after(step) if v7 else (evaluating and eval_every > 0 and step % eval_every == 0)
            if due and step < steps + v7 and not evaluate(step):
                history.diverge(step)
        if history.status == "ok" and evaluating and not v7 and not evaluate(steps):
            history.diverge(steps)
        if history.status == "ok" and v7:
            history.final_metrics = _v7_score(history.eval_values)
    finally:
        bar.close()
    return history


def _v7_score(eval_values: Mapping[str, list[float]]) -> dict[str, float]:
    """The v7 experiment's score of every metric: the mean of its last :data:`V7_SCORE_EVALUATIONS` evaluations."""
    return {name: float(np.mean(values[-V7_SCORE_EVALUATIONS:])) for name, values in eval_values.items() if values}


def _build_record(prepared: _PreparedRun, history: _TrainingHistory, started: float) -> dict:
    """The run's JSON record (schema :data:`SCHEMA_VERSION`); ``started`` is the ``perf_counter`` at :func:`run`."""
    config, task, model, optimizer, device = (
        prepared.config,
        prepared.task,
        prepared.model,
        prepared.optimizer,
        prepared.device,
    )
    if device.type == "cuda":
        peak, peak_kind = int(torch.cuda.max_memory_allocated(device)), "cuda"
    else:
        peak, peak_kind = _peak_rss_bytes(), "rss"
    ok = history.status == "ok"
    evaluated = ok and prepared.evaluating
    task_info = task.describe()
    optimizer_info = {
        "class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
        "param_groups": len(optimizer.param_groups),
        "roles": prepared.roles,
    }
    if config.task_source is not None:  # a task from outside the package: where it came from
        task_info["source"] = {"spec": config.task, "file": source_file(type(task)), "sha256": config.task_source}
    if config.optimizer_source is not None:
        origin = optimizer_origin(config.optimizer)[0]
        optimizer_info["source"] = {"spec": config.optimizer, "origin": origin, "sha256": config.optimizer_source}
    return {
        "schema": SCHEMA_VERSION,
        "key": config.key(),
        "config": config.to_dict(),
        "status": history.status,
        "diverged_at": history.diverged_at,
        "versions": versions(),
        "device": device_info(device),
        "task_info": task_info,
        "resolved": {
            "steps": prepared.steps,
            "batch_size": prepared.batch_size,
            "eval_every": prepared.eval_every,
            "split_mode": prepared.split_mode,
            "param_count": sum(p.numel() for p in model.parameters()),
        },
        "optimizer_info": optimizer_info,
        "train": {
            "steps": history.train_steps,
            "loss": history.train_loss,
            "grad_norm_steps": history.grad_norm_steps,
            "grad_norm": _finite_or_none(history.grad_norms),
        },
        "eval": {"steps": history.eval_steps, **history.eval_values},
        "final": {
            "metric": task.primary_metric,
            "higher_is_better": task.higher_is_better,
            "value": history.final_metrics.get(task.primary_metric) if evaluated else None,
            "train_loss_last100": float(statistics.fmean(history.last100)) if ok and history.last100 else None,
            "metrics": history.final_metrics if evaluated else {},
            **({"rule": _V7_SCORE_RULE} if config.eval_schedule == "v7" else {}),
        },
        "timing": {
            "total_s": time.perf_counter() - started,
            "train_s": history.train_s,
            "cumulative_train_s": history.cumulative_train_s,
            "optimizer_step_median_s": _median_after_warmup(history.step_times),
            "train_step_median_s": _median_after_warmup(history.iter_times),
            "eval_s": history.eval_s,
        },
        "memory": {"state_bytes": _state_bytes(optimizer), "peak_bytes": peak, "peak_kind": peak_kind},
    }


def run(config: RunConfig, *, data_root: str | os.PathLike[str] | None = None, progress: bool = False) -> dict:
    """Train and evaluate one configuration; return its record (see the module docstring and the contract).

    Raises whatever building the task, model or optimizer raises (unknown task, missing data, unknown
    optimizer name); a diverging run is not an error: its record has ``status="diverged"``.
    """
    started = time.perf_counter()
    prepared = _prepare_run(config, data_root)
    history = _train(prepared, progress=progress)
    return _build_record(prepared, history, started)
