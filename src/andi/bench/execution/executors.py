"""Executors: run a batch of :class:`~andi.bench.execution.runner.RunConfig` objects and hand back what each produced.

An executor pulls configs lazily from an iterable (at most :attr:`Executor.capacity` in flight, so the
sweep claims a run only when a worker is free to start it) and yields an :class:`Outcome` for each as it
finishes: the runner's record, or the traceback of the exception it raised. Executors never touch the results
directory: the sweep's driver claims, validates and writes (:mod:`andi.bench.execution.sweep`), so workers on other
machines need no access to it, only to the datasets.

* :class:`SerialExecutor` — in this process, one run at a time, with this process's torch threads (the
  default, and what a sweep did before executors existed).
* :class:`LocalExecutor` — ``N`` worker processes on this machine (``spawn``, safe with torch), each with
  its own torch threads (cores / N by default). On CUDA, workers are spread round-robin over the visible GPUs
  (``CUDA_VISIBLE_DEVICES`` set per worker), ``K`` per GPU with ``workers_per_gpu``. A worker that dies (killed,
  out of memory) yields a failed outcome for the run it held and is replaced; the other workers go on.
* :class:`RayExecutor` — Ray tasks with ``num_cpus`` (= threads per run) and ``num_gpus`` (1 / runs per GPU),
  on a local Ray instance (``ray.init()``), a multi-GPU node, or a cluster (``address="auto"``). Ray is the
  optional extra ``ray`` (``pip install '.[ray]'`` in a checkout); every node needs ``andi-optim`` installed and the
  datasets at the same ``--data-root``.

The run function is :func:`andi.bench.execution.runner.run` unless the sweep is given another. For tests only, the
environment variable ``ANDI_BENCH_RUN_FN=module:function`` names a replacement that :func:`resolve_run_fn`
imports (so a test can drive the real ``andi-bench`` entry point in a subprocess without training).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
import traceback
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from andi.bench.errors import STOP_SIGNALS, SetupError, UserError
from andi.bench.util import DataNote, show_warning_in_one_line

if TYPE_CHECKING:
    from andi.bench.execution.runner import RunConfig

__all__ = [
    "ENV_RUN_FN",
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "Outcome",
    "RayExecutor",
    "RunSpec",
    "SerialExecutor",
    "available_cores",
    "execute_one",
    "resolve_run_fn",
    "visible_gpus",
]

logger = logging.getLogger("andi.bench")

EXECUTORS = ("serial", "local", "ray")
#: Test hook: ``module:function`` replacing :func:`andi.bench.execution.runner.run` (never set it for real results).
ENV_RUN_FN = "ANDI_BENCH_RUN_FN"
RAY_EXTRA = "pip install 'ray>=2.9' (the 'ray' extra)"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def resolve_run_fn() -> Callable[..., dict]:
    """:func:`andi.bench.execution.runner.run`, or the function named by ``$ANDI_BENCH_RUN_FN`` (tests only)."""
    spec = os.environ.get(ENV_RUN_FN, "").strip()
    if not spec:
        from andi.bench.execution import runner

        return runner.run
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise SetupError(f"${ENV_RUN_FN}={spec}: cannot import it ({e}); unset it (it is a test hook)") from None


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


# ============================================================================================== one run
@dataclass(frozen=True)
class RunSpec:
    """What every run of a sweep shares: the run function, the data root, whether the runner shows a bar."""

    run_fn: Callable[..., dict]
    data_root: str | None = None
    progress: bool = False


@dataclass
class Outcome:
    """What one run produced: ``record``, or ``error`` (a traceback, or why the worker died).

    ``fatal`` is set when the error is the machine's, not the run's (a dataset missing or corrupt): the sweep
    stops with it instead of retrying. ``host`` and ``threads`` say where and with how many torch threads
    the run was computed.
    """

    config: RunConfig
    record: dict | None = None
    error: str | None = None
    fatal: str | None = None
    host: str = ""
    threads: int | None = None


def execute_one(spec: RunSpec, config: RunConfig, threads: int | None = None) -> Outcome:
    """Run ``config`` here with ``threads`` torch threads (``None``: leave the setting); never raises an
    :class:`Exception` (it becomes the outcome's error); interrupts and exits propagate."""
    import torch

    from andi.bench.tasks.data import ChecksumError, DataMissingError

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    host, used = socket.gethostname(), torch.get_num_threads()
    try:
        record = spec.run_fn(config, data_root=spec.data_root, progress=spec.progress)
    except (UserError, DataMissingError, ChecksumError) as e:
        return Outcome(config, error=traceback.format_exc(), fatal=str(e), host=host, threads=used)
    except Exception:
        return Outcome(config, error=traceback.format_exc(), host=host, threads=used)
    return Outcome(config, record=record, host=host, threads=used)


# ============================================================================================= executors
class Executor(ABC):
    """Runs configs and yields their outcomes as they finish; a context manager that releases its workers."""

    #: ``serial``, ``local`` or ``ray``: stored in every record's ``execution``.
    name: str = ""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """Runs in flight at most (the ``workers`` of a record's ``execution``)."""

    @property
    def packed(self) -> int | None:
        """Runs sharing one GPU (1: alone); ``None`` when the runs are not on a GPU."""
        return None

    @property
    def inline(self) -> bool:
        """Whether runs happen in this process (then the runner may draw its own progress bar)."""
        return False

    @abstractmethod
    def run(self, configs: Iterable[RunConfig], spec: RunSpec) -> Iterator[Outcome]:
        """Pull configs as workers free up, yield each outcome when it is there (in completion order)."""

    def describe(self) -> str:
        return f"{self.name} executor, {self.capacity} run(s) at once"

    def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release workers (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """One run at a time in this process, with this process's torch threads."""

    name = "serial"

    def __init__(self, device: str = "cpu") -> None:
        self._on_gpu = device.startswith("cuda")

    @property
    def capacity(self) -> int:
        return 1

    @property
    def packed(self) -> int | None:
        return 1 if self._on_gpu else None

    @property
    def inline(self) -> bool:
        return True

    def run(self, configs: Iterable[RunConfig], spec: RunSpec) -> Iterator[Outcome]:
        for config in configs:
            yield execute_one(spec, config)


def _quiet_data_notes() -> None:
    """In a worker: notes about the data were shown by the driver's check; other warnings are one line each."""
    warnings.simplefilter("ignore", DataNote)
    warnings.showwarning = show_warning_in_one_line


# ------------------------------------------------------------------------------------------------ local
def _worker_main(conn: Connection, threads: int, gpu: str | None) -> None:
    """A local worker: receives ``(spec, config)`` pairs, sends back outcomes, until ``None`` or EOF."""
    # Ctrl-C, SIGTERM and SIGHUP reach the whole process group; they are the driver's to handle: it stops the
    # workers itself, so a worker dying first is never mistaken for a failed run.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    _die_with_parent()
    _quiet_data_notes()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before this process first touches CUDA
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        spec, config = job
        outcome = execute_one(spec, config, threads)
        try:
            conn.send(outcome)
        except (BrokenPipeError, OSError):  # the driver is gone (killed): nobody to report to
            return


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the driver dies, even by SIGKILL (no run computed for nobody)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the driver died before prctl took effect
            os._exit(0)


class _Worker:
    def __init__(self, ctx: Any, threads: int, gpu: str | None) -> None:
        self.conn, child = ctx.Pipe()
        self.gpu = gpu
        self.process = ctx.Process(
            target=_worker_main, args=(child, threads, gpu), daemon=True, name="andi-bench-worker"
        )
        self.process.start()
        child.close()
        self.job: RunConfig | None = None

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)
        self.process.join(timeout=None if kill else 10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class LocalExecutor(Executor):
    """``workers`` processes on this machine, ``threads`` torch threads each (default: cores / workers).

    With ``device`` on CUDA, worker ``i`` sees only GPU ``visible[i % len(visible)]``; ``workers_per_gpu=K``
    starts ``K`` workers per visible GPU (and then ``workers`` must not be given). An explicit device index
    (``cuda:1``) puts every worker on that device.
    """

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        *,
        threads: int | None = None,
        workers_per_gpu: int | None = None,
        device: str = "cpu",
    ) -> None:
        on_gpu = device.startswith("cuda")
        self._gpus: list[str | None] = [None]
        if on_gpu and ":" not in device:
            self._gpus = list(visible_gpus()) or [None]
        if workers_per_gpu is not None:
            if workers is not None:
                raise ValueError("give workers or workers_per_gpu, not both")
            if not on_gpu:
                raise ValueError("workers_per_gpu packs runs on GPUs: the device must be cuda")
            workers = workers_per_gpu * len(self._gpus)
        workers = workers if workers is not None else max(1, available_cores())
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = threads if threads is not None else max(1, available_cores() // workers)
        self._packed = math.ceil(workers / len(self._gpus)) if on_gpu else None
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []

    @property
    def capacity(self) -> int:
        return self.workers

    @property
    def packed(self) -> int | None:
        return self._packed

    def describe(self) -> str:
        where = f", {self._packed} per GPU" if self._packed else ""
        return f"local executor, {self.workers} worker(s) × {self.threads} thread(s){where}"

    def _start(self, i: int) -> _Worker:
        return _Worker(self._ctx, self.threads, self._gpus[i % len(self._gpus)])

    def run(self, configs: Iterable[RunConfig], spec: RunSpec) -> Iterator[Outcome]:
        if not self._pool:
            self._pool = [self._start(i) for i in range(self.workers)]
        pending = iter(configs)
        exhausted = False
        try:
            while True:
                for i in range(len(self._pool)):
                    if self._pool[i].job is None and not exhausted:
                        config = next(pending, None)
                        if config is None:
                            exhausted = True
                            break
                        self._dispatch(i, spec, config)
                busy = [w for w in self._pool if w.job is not None]
                if not busy:
                    return
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    outcome = self._receive(worker)
                    worker.job = None
                    yield outcome
        finally:  # stopped early (an error, an interrupt): runs in flight are abandoned with their workers,
            for worker in self._pool:  # which are replaced when next needed (_dispatch)
                if worker.job is not None:
                    worker.stop(kill=True)
                    worker.job = None

    def _dispatch(self, index: int, spec: RunSpec, config: RunConfig) -> None:
        """Send ``config`` to worker ``index`` (replaced first if it has died since its last run)."""
        worker = self._pool[index]
        try:
            if not worker.process.is_alive():
                raise BrokenPipeError
            worker.conn.send((spec, config))
        except (OSError, ValueError):
            worker.stop(kill=True)
            worker = self._pool[index] = self._start(index)
            worker.conn.send((spec, config))
        worker.job = config

    def _receive(self, worker: _Worker) -> Outcome:
        """The outcome ``worker`` sent; if it died instead, a failed outcome, and the worker is replaced."""
        config = worker.job
        assert config is not None
        try:
            if worker.conn.poll():
                return worker.conn.recv()
        except (EOFError, OSError):
            pass
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        logger.warning(
            "a local worker died (%s) while running %s/%s lr=%g; starting another",
            why,
            config.task,
            config.optimizer,
            config.lr,
        )
        index = self._pool.index(worker)
        worker.stop(kill=True)
        self._pool[index] = self._start(index)
        return Outcome(
            config,
            error=f"the worker process died ({why}) during this run",
            host=socket.gethostname(),
            threads=self.threads,
        )

    def close(self) -> None:
        for worker in self._pool:
            worker.stop(kill=worker.job is not None)
        self._pool = []


# -------------------------------------------------------------------------------------------------- ray
def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SetupError(f"--executor ray: Ray is not installed; {RAY_EXTRA}") from None
    return ray


class RayExecutor(Executor):
    """Ray tasks, ``threads`` CPUs (and torch threads) each and, on CUDA, ``1 / workers_per_gpu`` of a GPU.

    Connects to ``address`` (``"auto"``: the cluster this node belongs to; ``None``: a Ray already initialised
    in this process, else a new local one). Runs in flight: as many as the cluster's resources hold.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        threads: int | None = None,
        workers_per_gpu: int | None = None,
        device: str = "cpu",
    ) -> None:
        self._ray = _import_ray()
        self.threads = threads or 1
        self._on_gpu = device.startswith("cuda")
        if workers_per_gpu is not None and not self._on_gpu:
            raise ValueError("workers_per_gpu packs runs on GPUs: the device must be cuda")
        self._per_gpu = workers_per_gpu or 1
        self._owns = False
        if not self._ray.is_initialized():
            try:
                self._ray.init(address=address, log_to_driver=False)
            except Exception as e:  # no cluster at the address, ports taken, ...
                where = f" at {address}" if address else ""
                raise SetupError(
                    f"--executor ray: cannot start or join Ray{where} ({type(e).__name__}: {e}); "
                    "check --ray-address (`ray status` on a cluster node shows it)"
                ) from None
            self._owns = True
        num_gpus = 1.0 / self._per_gpu if self._on_gpu else 0
        self._task = self._ray.remote(_ray_task).options(num_cpus=self.threads, num_gpus=num_gpus, max_retries=0)

    @property
    def capacity(self) -> int:
        resources = self._ray.cluster_resources()
        n = int(resources.get("CPU", 1) // self.threads)
        if self._on_gpu:
            n = min(n, int(resources.get("GPU", 0) * self._per_gpu))
        return max(1, n)

    @property
    def packed(self) -> int | None:
        return self._per_gpu if self._on_gpu else None

    def describe(self) -> str:
        where = f", {self._per_gpu} per GPU" if self._on_gpu else ""
        return f"ray executor, {self.capacity} run(s) at once × {self.threads} CPU(s){where}"

    def run(self, configs: Iterable[RunConfig], spec: RunSpec) -> Iterator[Outcome]:
        ray = self._ray
        pending = iter(configs)
        capacity = self.capacity
        in_flight: dict[Any, RunConfig] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(in_flight) < capacity:
                    config = next(pending, None)
                    if config is None:
                        exhausted = True
                    else:
                        in_flight[self._task.remote(spec, config, self.threads)] = config
                if not in_flight:
                    return
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    config = in_flight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except Exception as e:  # the worker crashed, the node died, ...
                        outcome = Outcome(config, error=f"the Ray task failed: {type(e).__name__}: {e}")
                    yield outcome
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False


def _ray_task(spec: RunSpec, config: RunConfig, threads: int) -> Outcome:
    """The body of a Ray task (module level, so Ray ships it by reference)."""
    _quiet_data_notes()
    return execute_one(spec, config, threads)


def make_executor(
    name: str,
    *,
    workers: int | None = None,
    threads: int | None = None,
    workers_per_gpu: int | None = None,
    ray_address: str | None = None,
    device: str = "cpu",
) -> Executor:
    """The executor ``name`` (one of :data:`EXECUTORS`) with the CLI's options."""
    if name == "serial":
        return SerialExecutor(device)
    if name == "local":
        return LocalExecutor(workers, threads=threads, workers_per_gpu=workers_per_gpu, device=device)
    if name == "ray":
        return RayExecutor(ray_address, threads=threads, workers_per_gpu=workers_per_gpu, device=device)
    raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
