"""Errors the user can fix, as opposed to bugs: ``andi-bench`` prints them as one line, without a traceback.

Validation raises :class:`UsageError` or :class:`SetupError`; :func:`andi.bench.cli.main` catches
:class:`UserError` once, prints ``andi-bench: error: <message>`` to stderr and exits with the error's
:attr:`~UserError.exit_code` (the traceback too with ``--debug``). Any other exception is a bug and keeps
its traceback.

Exit codes: 0 success; 1 an unexpected error (a bug: Python's own code for an uncaught exception);
2 :data:`EXIT_USAGE`, the command line is wrong in itself; 3 :data:`EXIT_SETUP`, the command line is fine
but the machine or its files cannot serve it (device, output location, datasets, results directory).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "EXIT_SETUP",
    "EXIT_USAGE",
    "STOP_SIGNALS",
    "Interrupted",
    "SetupError",
    "UsageError",
    "UserError",
    "one_line",
    "stop_signals_deferred",
    "stop_signals_raise",
]

EXIT_USAGE = 2
EXIT_SETUP = 3


def one_line(text: str) -> str:
    """``text`` on one line: its non-empty lines, whitespace runs collapsed, joined with ``"; "``.

    Multi-line messages (e.g. :class:`andi.bench.tasks.data.ChecksumError`'s) become ``what; expected …; actual …;
    Fix: …``: a line's final ``:`` or ``.`` is dropped before the separator.
    """
    parts = [" ".join(line.split()) for line in str(text).splitlines() if line.strip()]
    return "; ".join(p.rstrip(":.") if i < len(parts) - 1 else p for i, p in enumerate(parts))


class UserError(Exception):
    """A mistake the user can fix; the message says what is wrong and how to fix it."""

    exit_code: int = EXIT_USAGE

    def __str__(self) -> str:
        return one_line(super().__str__())


class UsageError(UserError):
    """The command line itself is wrong: unknown names, empty lists, contradictory or out-of-range values."""

    exit_code = EXIT_USAGE


class SetupError(UserError):
    """The command line is valid but this machine cannot serve it: no such device, an unwritable output
    location, missing or corrupt datasets, a results directory without results."""

    exit_code = EXIT_SETUP


#: The signals that stop a sweep as Ctrl-C does: SIGINT, SIGTERM (SLURM, Kubernetes, systemd, ``timeout``), SIGHUP.
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupted(BaseException):  # like KeyboardInterrupt: not an error, so never caught as one
    """A stop signal arrived: raised in the main thread, so that every ``finally`` (workers, claims) runs."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _Deferral:
    depth = 0  # nesting of stop_signals_deferred() blocks in the main thread
    pending: int | None = None  # the first stop signal that arrived inside one


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    if _Deferral.depth:
        if _Deferral.pending is None:
            _Deferral.pending = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Within the block a stop signal waits: :class:`Interrupted` is raised as the block ends.

    For steps that must not be cut in two, such as creating a claim file and noting it as held (cut between them,
    the file would outlive the process that no longer knows it holds it). Python runs signal handlers in the main
    thread only, so blocks entered by other threads defer nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1
        if not _Deferral.depth and _Deferral.pending is not None:
            signum, _Deferral.pending = _Deferral.pending, None
            raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, each of :data:`STOP_SIGNALS` raises :class:`Interrupted` (previous handlers restored after)."""
    previous = {}
    for signum in STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave the handlers alone
            previous[signum] = signal.signal(signum, _raise_interrupted)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
