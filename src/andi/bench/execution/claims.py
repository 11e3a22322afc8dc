"""Claims: who is computing which run, so that processes sharing one results directory never duplicate work.

Before a run is started, the sweep's driver creates ``<results>/<key>.claim`` with ``O_CREAT | O_EXCL`` (atomic
on local filesystems and on NFSv3+), holding JSON ``{host, pid, pid_start, started, executor}``; it removes the
claim once the run's record is written, or the run failed, or the sweep stopped. A process that finds a run
claimed does not compute it: it computes the rest and comes back, using the record once it appears.

While it holds claims, a process keeps them alive with a *heartbeat*: a background thread touches each claim file
every :data:`DEFAULT_HEARTBEAT_S` seconds (its modification time is the beat; the claim records the interval).

A claim is *stale*, and is taken over, when its owner cannot finish it:

* same host: the owner's pid is gone (or is now another process: its start time differs), e.g. after
  ``kill -9`` of an ``andi-bench`` process or a reboot;
* any host: its holder missed :data:`MISSED_BEATS` heartbeats in a row (2 minutes by default), e.g. a requeued
  job resuming on another node after its first node died. (The file times are the file server's, so clocks
  that differ by more than that between the machines sharing a folder would make live claims look stale.)
* any host, for a claim written without a heartbeat (by an older version): it is older than the timeout
  (:data:`DEFAULT_CLAIM_TIMEOUT_S`, 6 hours; ``--claim-timeout``). A live run taken over is computed twice (the
  record stays whole, the later atomic write simply replaces the earlier).

Take-over is race-free between any number of takers: a taker first creates ``<key>.claim.takeover`` with
``O_EXCL``; only while holding it does it re-read the claim and remove it, and only if the claim is byte for
byte the one it judged stale. The fresh claim is then created with ``O_EXCL`` like any other, so exactly one
process holds it. A takeover lock left by a taker that died in those few milliseconds is removed after a
minute. A claim file still being written (empty or unreadable) counts as live for 30 s.

The same files serve as short locks (:meth:`Claims.locked`), e.g. to merge a manifest without losing another
process's arms.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from andi.bench.errors import stop_signals_deferred

__all__ = [
    "CLAIM_SUFFIX",
    "DEFAULT_CLAIM_TIMEOUT_S",
    "DEFAULT_HEARTBEAT_S",
    "MISSED_BEATS",
    "ClaimInfo",
    "Claims",
    "pid_alive",
    "process_start",
]

logger = logging.getLogger("andi.bench")

#: Default age after which any claim is stale (6 hours: above a full-size CPU run of the paper's GPT, ≈ 30 min).
DEFAULT_CLAIM_TIMEOUT_S = 6 * 3600.0
#: Seconds between two heartbeats of a claim holder.
DEFAULT_HEARTBEAT_S = 30.0
#: A claim whose holder missed this many heartbeats in a row is stale, on any host.
MISSED_BEATS = 4
CLAIM_SUFFIX = ".claim"
_TAKEOVER_SUFFIX = ".takeover"
_UNREADABLE_GRACE_S = 30.0  # a claim being written is empty for microseconds; older than this it is debris
_TAKEOVER_LOCK_STALE_S = 60.0  # a takeover takes milliseconds


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (``os.kill(pid, 0)``; another user's process counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), ``None`` where unknown.

    Tells a live owner from a new process that was given a dead owner's pid.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ClaimInfo:
    """What a claim file holds: who claimed the run and when (unix time)."""

    host: str
    pid: int
    started: float
    executor: str = ""
    pid_start: int | None = None
    heartbeat_s: float | None = None

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes) -> ClaimInfo | None:
        """The claim in ``raw``, or ``None`` when it is not a complete claim."""
        try:
            d = json.loads(raw.decode())
            return cls(
                str(d["host"]),
                int(d["pid"]),
                float(d["started"]),
                str(d.get("executor", "")),
                None if d.get("pid_start") is None else int(d["pid_start"]),
                None if d.get("heartbeat_s") is None else float(d["heartbeat_s"]),
            )
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        return f"{self.executor or 'andi-bench'} pid {self.pid} on {self.host}, since {time.ctime(self.started)}"


class Claims:
    """The claims of this process in the directory ``root`` (one per config key or lock name).

    ``timeout_s`` is the age after which any claim is stale; ``executor`` is written into the claims.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S,
        executor: str = "",
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"the claim timeout must be positive, got {timeout_s}")
        if not heartbeat_s > 0:
            raise ValueError(f"the heartbeat interval must be positive, got {heartbeat_s}")
        self.root = Path(root)
        self.timeout_s = float(timeout_s)
        self.heartbeat_s = float(heartbeat_s)
        self.executor = executor
        self.host = socket.gethostname()
        self._held: dict[str, bytes] = {}  # name -> the bytes this process wrote
        self._lock = threading.Lock()
        self._stop_beating = threading.Event()
        self._beater: threading.Thread | None = None
        self.taken_over: list[str] = []  # names whose stale claim this process took over

    def path(self, name: str) -> Path:
        return self.root / f"{name}{CLAIM_SUFFIX}"

    def _me(self) -> ClaimInfo:
        pid = os.getpid()
        return ClaimInfo(self.host, pid, time.time(), self.executor, process_start(pid), self.heartbeat_s)

    # ------------------------------------------------------------------------------------------- heartbeat
    def _beat(self) -> None:
        while not self._stop_beating.wait(self.heartbeat_s):
            with self._lock:
                names = list(self._held)
            for name in names:
                with contextlib.suppress(OSError):  # released meanwhile, or the disk is away for a moment
                    os.utime(self.path(name))

    def _start_heartbeat(self) -> None:
        if self._beater is None or not self._beater.is_alive():
            self._stop_beating.clear()
            self._beater = threading.Thread(target=self._beat, name="andi-bench-claims-heartbeat", daemon=True)
            self._beater.start()

    def close(self) -> None:
        """Release every claim and stop the heartbeat."""
        self.release_all()
        self._stop_beating.set()
        if self._beater is not None:
            self._beater.join()
            self._beater = None

    # -------------------------------------------------------------------------------------------- acquire
    def acquire(self, name: str) -> bool:
        """Claim ``name``: True if this process now holds it, False if a live owner does.

        A stale claim is taken over (see the module docstring). Holding a claim already is an error.
        """
        if name in self._held:
            raise RuntimeError(f"{name} is already claimed by this process")
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(name)
        for _ in range(4):  # create; else judge the owner; a stale one is removed and creation retried
            mine = self._me().to_bytes()
            if self._create(path, name, mine):
                self._start_heartbeat()
                return True
            try:
                raw, mtime = path.read_bytes(), path.stat().st_mtime
            except FileNotFoundError:  # released meanwhile: try to create again
                continue
            if not self.is_stale(ClaimInfo.parse(raw), mtime):
                return False
            if not self._remove_stale(name, raw):
                return False  # another process is taking it over right now
        return False

    def _create(self, path: Path, name: str, mine: bytes) -> bool:
        """Create the claim file holding ``mine`` and note it as held; False if the file exists already."""
        with stop_signals_deferred():  # a stop between creating and noting would leave a claim nobody releases
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                return False
            try:
                os.write(fd, mine)
                os.fsync(fd)
            except OSError:  # e.g. the disk filled up: leave no empty claim behind for others to wait on
                os.close(fd)
                with contextlib.suppress(OSError):
                    path.unlink()
                raise
            os.close(fd)
            with self._lock:
                self._held[name] = mine
            return True

    def is_stale(self, info: ClaimInfo | None, mtime: float, now: float | None = None) -> bool:
        """Whether a claim (``None``: unreadable, with file time ``mtime``) can no longer be finished by its owner."""
        now = time.time() if now is None else now
        if info is None:
            return now - mtime > _UNREADABLE_GRACE_S
        if info.heartbeat_s is not None:
            if now - mtime > MISSED_BEATS * info.heartbeat_s:
                return True
        elif now - info.started > self.timeout_s:
            return True
        if info.host != self.host:
            return False
        if not pid_alive(info.pid):
            return True
        start = process_start(info.pid)
        return info.pid_start is not None and start is not None and start != info.pid_start

    def _remove_stale(self, name: str, judged: bytes) -> bool:
        """Remove the claim on ``name`` if it is still ``judged``, under the takeover lock; False if busy."""
        path = self.path(name)
        lock = path.with_name(path.name + _TAKEOVER_SUFFIX)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > _TAKEOVER_LOCK_STALE_S:
                    lock.unlink()
            return False
        try:
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                return True
            if current == judged:
                info = ClaimInfo.parse(judged)
                logger.warning(
                    "taking over the stale claim %s (%s)", path.name, info.describe() if info else "unreadable"
                )
                path.unlink()
                self.taken_over.append(name)
            return True
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    # -------------------------------------------------------------------------------------------- release
    def release(self, name: str) -> None:
        """Remove this process's claim on ``name`` (left alone if another process has taken it over)."""
        with stop_signals_deferred():  # a stop between forgetting and removing would leave the file behind
            with self._lock:
                mine = self._held.pop(name, None)
            if mine is None:
                return
            path = self.path(name)
            try:
                if path.read_bytes() == mine:
                    path.unlink()
            except FileNotFoundError:
                pass

    def release_all(self) -> None:
        for name in list(self._held):
            self.release(name)

    def holder(self, name: str) -> ClaimInfo | None:
        """Who holds ``name`` now (``None``: nobody, or the claim is unreadable)."""
        try:
            return ClaimInfo.parse(self.path(name).read_bytes())
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def locked(self, name: str, *, poll_s: float = 0.05) -> Iterator[None]:
        """Hold the claim ``name`` as a lock for the ``with`` block, waiting (polling) while another holds it."""
        delay = poll_s
        while not self.acquire(name):
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        try:
            yield
        finally:
            self.release(name)
