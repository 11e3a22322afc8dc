"""Helpers shared by the runner, the sweep, the report, the data loaders and the step benchmark, defined once.

The device and version facts here go into every record (``andi-bench`` runs and ``andi-bench step``), so records of
both kinds name the same machine the same way.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

import andi

__all__ = [
    "DataNote",
    "device_info",
    "final_value",
    "finite_or_none",
    "one_line_warnings",
    "plural",
    "progress_bar",
    "show_warning_in_one_line",
    "sync",
    "versions",
    "warn_once",
]

_warned: set[str] = set()


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously), so a host timer around it measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows, else ``"unknown"``."""
    name = platform.processor() or platform.machine() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        return name


def device_info(device: torch.device) -> dict[str, Any]:
    """``{"type", "name", "threads"}`` of ``device``: the GPU's name, or the CPU's model name, and torch's threads."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"type": device.type, "name": name, "threads": torch.get_num_threads()}


def versions() -> dict[str, str]:
    """Versions of andi, torch, Python and NumPy, recorded with every result."""
    return {
        "andi": getattr(andi, "__version__", "unknown"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


class _NoProgressBar:
    """Stands in for a tqdm bar when progress is off or tqdm is missing, so callers never test for ``None``."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, *, enabled: bool, unit: str = "it") -> Any:
    """A transient tqdm bar over ``total`` items, or a no-op bar when disabled, empty or tqdm is not installed."""
    if not enabled or total == 0:
        return _NoProgressBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar, no error
        return _NoProgressBar()
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def finite_or_none(x: Any) -> float | None:
    """``x`` as a float when it is a finite number (not a bool), else ``None``."""
    is_number = isinstance(x, (int, float)) and not isinstance(x, bool)
    return float(x) if is_number and math.isfinite(x) else None


def final_value(record: Mapping[str, Any]) -> float | None:
    """A run record's primary metric at the end of training; ``None`` unless the run finished and it is finite."""
    if record.get("status") != "ok":
        return None
    return finite_or_none(record["final"].get("value"))


class DataNote(UserWarning):
    """A note about the datasets (an approximate copy, verification off), true of every run that reads them.

    ``andi-bench`` checks the data in its own process before any run, so the note shows once there; worker
    processes ignore it rather than repeat it once per worker.
    """


def plural(n: Any, word: str) -> str:
    """``"1 thread"``, ``"2 threads"``; a count that is not a number (``"?"``) takes the plural."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def warn_once(key: str, message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message)`` the first time ``key`` is seen in this process (a setting read on every load)."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, category, stacklevel=3)


def show_warning_in_one_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """A ``warnings.showwarning`` that prints ``andi-bench: warning: <message>`` on one line, with no source line.

    The command line's users cannot act on the file and line of a library call; they can act on the message.
    """
    print(f"andi-bench: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Inside: each shown warning is one line (:func:`show_warning_in_one_line`)."""
    previous = warnings.showwarning
    warnings.showwarning = show_warning_in_one_line
    try:
        yield
    finally:
        warnings.showwarning = previous
