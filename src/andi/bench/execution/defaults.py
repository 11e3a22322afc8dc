"""How a sweep runs when the command line does not say: workers and threads chosen from the machine and the models.

On a CPU, a small model's step is too short for torch's intra-op threads to pay for their synchronisation: one run
per core, one thread each, finishes a sweep fastest, and it does not collapse when other work shares the cores
(oversubscribed threads spin and wait on each other). A large model's matrix products do gain from a few threads,
so its runs get up to :data:`LARGE_MODEL_THREADS` each. When the sweep has fewer runs than cores, the spare cores
go to the runs as threads. On CUDA, one worker per visible GPU.

Any of ``--executor``, ``--workers``, ``--threads``, ``--workers-per-gpu`` or ``--ray-address`` turns the choice off:
explicit flags always win. The choice is printed on one line and stored in every record (``execution``).

>>> choose_execution(cores=2, gpus=0, device="cpu", runs=45, largest_params=112_512)
Execution(executor='local', workers=2, threads=1, why='2 cores, models up to 0.11 M parameters')
>>> choose_execution(cores=1, gpus=0, device="cpu", runs=45, largest_params=112_512).executor
'serial'
"""

from __future__ import annotations

from dataclasses import dataclass

from andi.bench.util import plural

__all__ = ["LARGE_MODEL_PARAMS", "LARGE_MODEL_THREADS", "Execution", "choose_execution"]

#: From this many parameters a model counts as large: its runs get several threads each.
LARGE_MODEL_PARAMS = 2_000_000
#: Threads per run for a large model on a CPU with cores to spare (more rarely pays on these sizes).
LARGE_MODEL_THREADS = 4


@dataclass(frozen=True)
class Execution:
    """An executor with its workers (``None`` for serial) and torch threads per run, and why they were chosen."""

    executor: str
    workers: int | None
    threads: int
    why: str

    def describe(self) -> str:
        runs = f"{self.workers} runs at once" if self.workers else "one run at a time"
        return f"{runs}, {plural(self.threads, 'thread')} each ({self.why})"


def choose_execution(*, cores: int, gpus: int, device: str, runs: int, largest_params: int) -> Execution:
    """The default execution of a sweep of ``runs`` runs whose largest model has ``largest_params`` parameters.

    CPU: ``threads = 1`` for small models (< :data:`LARGE_MODEL_PARAMS`), ``min(cores, LARGE_MODEL_THREADS)``
    for large ones; ``workers = min(runs, cores // threads)``, then the cores left over become threads; one worker
    runs in this process (serial). CUDA: one worker per visible GPU, the cores shared among them.
    """
    cores, runs = max(1, cores), max(1, runs)
    if device.startswith("cuda"):
        n = max(1, gpus)
        threads = max(1, cores // n)
        if n == 1:
            return Execution("serial", None, threads, "one GPU")
        return Execution("local", n, threads, f"one worker per GPU, {n} GPUs")
    large = largest_params >= LARGE_MODEL_PARAMS
    threads = min(cores, LARGE_MODEL_THREADS) if large else 1
    workers = max(1, min(runs, cores // threads))
    threads = max(threads, cores // workers)
    why = f"{plural(cores, 'core')}, models up to {largest_params / 1e6:.2g} M parameters"
    if workers == 1:
        return Execution("serial", None, threads, why)
    return Execution("local", workers, threads, why)
