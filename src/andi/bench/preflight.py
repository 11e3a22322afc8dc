"""Checks ``andi-bench`` makes before the first run, so that a mistake costs seconds, not a finished run.

Each check raises :class:`~andi.bench.errors.UsageError` (the command line is wrong) or
:class:`~andi.bench.errors.SetupError` (this machine cannot serve it) with a one-line message that names the
option, says what is wrong and how to fix it. None of them writes anything, except that :func:`check_data`
downloads missing dataset files when downloads are allowed (``ANDI_DATA_DOWNLOAD``), as the first run would.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from andi.bench.errors import SetupError, UsageError
from andi.bench.protocols import FairProtocol, ReplayProtocol

__all__ = [
    "check_data",
    "check_device",
    "check_execution",
    "check_free_space",
    "check_names",
    "check_optimizer",
    "check_steps",
    "check_tasks",
    "check_writable_dir",
    "min_steps",
]


def check_names(
    option: str, what: str, requested: Sequence[str] | None, available: Sequence[str], default: Sequence[str]
) -> list[str]:
    """The requested names (``default`` when ``None``), duplicates dropped; an empty list or an unknown name
    is a :class:`UsageError`."""
    if requested is None:
        return list(default)
    names = list(dict.fromkeys(requested))
    if not names:
        raise UsageError(f"{option}: the list is empty; name at least one of {', '.join(available)}")
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UsageError(
            f"{option} {','.join(requested)}: unknown {what} {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(available)}"
        )
    return names


def check_optimizer(name: str) -> None:
    """Build the registry optimizer ``name`` once on a small MLP (hidden matrices, a head and vectors), so a user's
    factory that raises or returns something other than a ``torch.optim.Optimizer`` fails here, with its one-line
    reason, before any run."""
    import torch
    from torch import nn

    import andi

    with torch.random.fork_rng(devices=[]):
        model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    andi.create_optimizer(name, model, aux_lr=1e-3)


def check_tasks(
    requested: Sequence[str] | None, default: Sequence[str], size: str, data_root: str | os.PathLike[str] | None
) -> list[str]:
    """The requested tasks (``default`` when ``None``): the package's by name, a user's as ``path/to/file.py:Name``,
    ``package.module:Name`` or an installed entry point. A user's task is loaded and its contract tried at ``size``
    (:func:`andi.bench.tasks.check_task`) here, before any run; what is wrong is a one-line :class:`UsageError`."""
    from andi.bench.tasks import TASKS, TaskContractError, check_task, task_class

    names = list(default) if requested is None else list(dict.fromkeys(requested))
    if not names:
        raise UsageError(f"--task: the list is empty; name at least one of {', '.join(TASKS)}")
    for name in names:
        if name in TASKS:
            continue
        try:
            check_task(name, task_class(name), size, data_root)
        except TaskContractError as e:  # a task of the user's that cannot be loaded or breaks the contract
            raise UsageError(f"--task: {e}") from None
        except ValueError as e:  # a name that is neither the package's nor a spec nor an entry point
            raise UsageError(f"--task {','.join(requested or names)}: {e}") from None
    return names


def min_steps(schedule: str, warmup_frac: float = 0.0, decay_frac: float = 0.0, limit: int = 100_000) -> int | None:
    """The fewest steps a run of ``schedule`` can have (``None`` if none up to ``limit`` fits)."""
    from andi.bench.protocols.schedules import make_schedule

    for n in range(1, limit + 1):
        try:
            make_schedule(schedule, n, warmup_frac=warmup_frac, decay_frac=decay_frac)
        except ValueError:
            continue
        return n
    return None


def check_steps(protocol: FairProtocol | ReplayProtocol, steps: int | None) -> None:
    """``--steps`` must be at least the protocol schedule's minimum (one message for 0, negative and too few)."""
    if steps is None:
        return
    warmup = getattr(protocol, "warmup_frac", 0.0)
    decay = getattr(protocol, "decay_frac", 0.0)
    needed = min_steps(protocol.schedule, warmup, decay)
    if needed is not None and steps >= needed:
        return
    shape = {"wsd": f" ({warmup:.0%} warmup + {decay:.0%} decay)", "cosine": f" ({warmup:.0%} warmup)"}
    what = f"the {protocol.schedule} schedule{shape.get(protocol.schedule, '')} of protocol {protocol.name!r}"
    fix = f"use --steps {needed} or more" if needed is not None else "choose another protocol"
    raise UsageError(f"--steps {steps}: too few steps for {what}; {fix}")


def check_device(device: str) -> None:
    """``--device`` must name a torch device that exists here (cuda without CUDA is the common mistake)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device}: not a device name; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SetupError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise SetupError(
                f"--device {device}: this machine has {count} CUDA device(s); use --device cuda:0 … cuda:{count - 1}"
            )
        return
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SetupError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    try:  # any other backend: usable if it can hold a tensor
        torch.empty(1, device=dev)
    except Exception as e:  # torch raises RuntimeError, AssertionError, ... depending on the backend
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SetupError(f"--device {device}: not usable on this machine ({reason}); use --device cpu") from None


def check_writable_dir(path: Path, option: str) -> None:
    """Files can be created in the directory ``path`` (or, if it does not exist yet, ``path`` can be created).

    Probes by creating and removing a temporary directory, which also works where permission bits say
    nothing (root, ACLs, read-only mounts). Leaves nothing behind.
    """
    try:
        existing = _nearest_existing(path)
    except OSError as e:  # e.g. a name too long for the filesystem
        raise SetupError(f"{option} {_short(path)}: {e.strerror or e}; choose a shorter {option}") from None
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under {existing}, which is a file"
        raise SetupError(f"{option} {path}: {where}, not a directory; choose another {option}")
    _check_name_lengths(path, existing, option)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".andi-bench-probe-", dir=existing))
    except OSError as e:
        raise SetupError(
            f"{option} {_short(path)}: cannot write in {_short(existing)} ({e.strerror or e}); choose a writable "
            f"{option}"
        ) from None


def _nearest_existing(path: Path) -> Path:
    """``path`` itself, or its nearest ancestor that exists (where it would be created)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


#: The longest file name a results directory holds: a 64-hex-digit key, ``.claim.takeover`` or a temporary suffix.
_LONGEST_ENTRY = 64 + len(".json.") + 8 + len(".tmp") + len(".takeover")


def _check_name_lengths(path: Path, existing: Path, option: str) -> None:
    """Refuse a path whose components, or whose files' full paths, the filesystem cannot name."""
    name_max = _pathconf(existing, "PC_NAME_MAX", 255)
    path_max = _pathconf(existing, "PC_PATH_MAX", 4096)
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise SetupError(
                f"{option} {_short(path)}: the name {_short(Path(part))} is longer than this filesystem's "
                f"{name_max} bytes; choose a shorter {option}"
            )
    if len(os.fsencode(str(path.absolute()))) + 1 + _LONGEST_ENTRY >= path_max:
        raise SetupError(
            f"{option} {_short(path)}: the files in it would exceed this filesystem's path limit of {path_max} "
            f"bytes; choose a shorter {option}"
        )


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(path, name))
    except (OSError, ValueError, AttributeError):
        return default


def _short(path: Path, keep: int = 160) -> str:
    text = str(path)
    return text if len(text) <= keep else f"{text[: keep // 2]}…{text[-keep // 2 :]} ({len(text)} characters)"


#: Bytes of a run record: a fixed part plus the loss and evaluation curves (85 KB for 2,500 steps).
RECORD_BASE_BYTES = 8_000
RECORD_BYTES_PER_STEP = 34
#: The report, its figures and the manifests.
REPORT_BYTES = 20_000_000


def check_free_space(path: Path, runs: int, steps: int, option: str = "--out") -> None:
    """Refuse a sweep whose records (``runs`` records of about ``steps`` steps each) and report would not fit."""
    try:
        free = shutil.disk_usage(_nearest_existing(path)).free
    except OSError:
        return  # nothing to measure with; writing will say what is wrong
    needed = runs * (RECORD_BASE_BYTES + RECORD_BYTES_PER_STEP * steps) + REPORT_BYTES
    if free < needed:
        raise SetupError(
            f"{option} {_short(path)}: {free / 1e6:.1f} MB free, and this sweep's {runs} records and its report need "
            f"about {needed / 1e6:.0f} MB; free some space or choose another {option}"
        )


def check_data(tasks: Sequence[str], data_root: str | os.PathLike[str] | None) -> None:
    """Every dataset the tasks read is present and matches its checksum (see :mod:`andi.bench.tasks.data`)."""
    from andi.bench.tasks import data, task_class

    needed: dict[str, list[str]] = {}
    for task in tasks:
        for name in task_class(task).datasets:
            needed.setdefault(name, []).append(task)
    for name, users in needed.items():
        try:
            data.ensure_dataset(name, data_root)
        except (OSError, data.ChecksumError) as e:  # DataMissingError is an OSError
            raise SetupError(f"dataset {name} (task {', '.join(users)}): {e}") from e


def check_execution(
    executor: str | None,
    *,
    workers: int | None = None,
    workers_per_gpu: int | None = None,
    ray_address: str | None = None,
    device: str = "cpu",
    claim_timeout: float = 1.0,
) -> str:
    """The executor the options ask for, after checking that they fit together; returns its name.

    Without ``--executor``: ``ray`` when ``--ray-address`` is given, ``local`` when ``--workers`` or
    ``--workers-per-gpu`` is, else ``serial``. Options that the chosen executor would ignore are errors.
    """
    for option, value in (("--workers", workers), ("--workers-per-gpu", workers_per_gpu)):
        if value is not None and value < 1:
            raise UsageError(f"{option} {value}: must be >= 1")
    if not claim_timeout > 0:
        raise UsageError(f"--claim-timeout {claim_timeout:g}: must be a positive number of seconds")
    name = executor or ("ray" if ray_address else "local" if workers or workers_per_gpu else "serial")
    if name == "serial" and (workers is not None or workers_per_gpu is not None):
        raise UsageError(
            "--workers/--workers-per-gpu: the serial executor runs one run at a time; "
            "use --executor local (or drop --executor serial)"
        )
    if ray_address is not None and name != "ray":
        raise UsageError(f"--ray-address: only the ray executor joins a cluster; drop --executor {name}")
    if name == "local" and workers is not None and workers_per_gpu is not None:
        raise UsageError(
            "--workers and --workers-per-gpu: give one (--workers-per-gpu K starts K workers per visible GPU)"
        )
    if name == "ray" and workers is not None:
        raise UsageError(
            "--workers: Ray runs as many runs at once as the cluster's resources hold; set the CPUs "
            "of each run with --threads"
        )
    if workers_per_gpu is not None and not device.startswith("cuda"):
        raise UsageError(
            f"--workers-per-gpu: packs runs onto GPUs, but --device is {device}; add --device cuda or use --workers"
        )
    if name == "ray" and not _ray_installed():
        raise SetupError("--executor ray: Ray is not installed; pip install 'ray>=2.9' (the 'ray' extra)")
    return name


def _ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None
