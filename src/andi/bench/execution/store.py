"""A results directory: one JSON record per run, keyed by its config hash, and one manifest per protocol task.

Each run is stored as ``<results_dir>/<config.key()>.json`` (written to a temporary file, fsynced, then
atomically renamed), so an interrupted sweep leaves only complete records behind. A record that does not
validate (schema, key and config match, required fields present) is logged with its path, moved aside to
``<key>.json.corrupt`` (``.corrupt.1``, ``.corrupt.2``, … when earlier copies are there: none is overwritten) and
never used. Files are written with the permissions of any other file (``0o666 & ~umask``).

A run whose worker raised (twice: it is retried once) is stored as a *failed* record: ``status="failed"``, the
traceback in ``error``, no curves. It scores like a diverged run, the report shows it as failed, and the next
sweep over the directory computes it again.

Records written by a sweep carry ``execution`` ``{executor, workers, host, threads, packed}``: how the run was
executed, which is not part of the config hash (the metrics do not depend on it; timings may). Older records
without it stay valid. Likewise the gradient-norm curve ``train.grad_norm_steps`` / ``train.grad_norm`` (see
:mod:`andi.bench.execution.runner`) is optional: records without it are valid, and a report skips what needs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andi.bench.execution.files import atomic_write_text, file_safe, quarantine_path
from andi.bench.protocols.plans import MANIFEST_SCHEMA

if TYPE_CHECKING:
    from andi.bench.execution.runner import RunConfig

__all__ = [
    "MANIFEST_SCHEMA",
    "RECORD_SCHEMA",
    "ResultStore",
    "manifest_path_for",
    "manifest_variant",
    "merge_manifest",
    "validate_record",
    "variant_id",
]

logger = logging.getLogger("andi.bench")

RECORD_SCHEMA = 1
_MANIFEST_PREFIX = "manifest-"


# ============================================================================================ validation
def _json_normal(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj))


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_record(
    record: Any, expected_key: str | None = None, expected_config: Mapping[str, Any] | None = None
) -> list[str]:
    """Problems that make ``record`` unusable (empty list = valid), per the runner's record contract.

    A failed record (``status="failed"``) needs only the identity fields and ``error``.
    """
    if not isinstance(record, dict):
        return [f"record is a {type(record).__name__}, not an object"]
    problems = []
    if record.get("schema") != RECORD_SCHEMA:
        problems.append(f"schema is {record.get('schema')!r}, expected {RECORD_SCHEMA}")
    key = record.get("key")
    if not isinstance(key, str):
        problems.append("missing key")
    elif expected_key is not None and key != expected_key:
        problems.append(f"key {key[:12]}… does not match the expected {expected_key[:12]}…")
    if expected_config is not None and record.get("config") != _json_normal(dict(expected_config)):
        problems.append("config differs from the requested run")
    if not isinstance(record.get("config"), dict):
        problems.append("missing config")
    if "execution" in record and not isinstance(record["execution"], dict):
        problems.append("execution is not an object")
    if record.get("status") == "failed":  # a run that raised: no curves, the traceback instead
        if not isinstance(record.get("error"), str):
            problems.append("failed record without its error")
        return problems
    if record.get("status") not in ("ok", "diverged"):
        problems.append(f"status is {record.get('status')!r}")
    train = record.get("train")
    if not isinstance(train, dict) or not isinstance(train.get("steps"), list):
        problems.append("missing train curve")
    else:
        if len(train["steps"]) != len(train.get("loss") or []):
            problems.append("train steps and losses differ in length")
        problems += _grad_norm_problems(train)
    ev = record.get("eval")
    if not isinstance(ev, dict):
        problems.append("missing eval")
    else:
        n_eval = len(ev.get("steps") or [])
        for name, vals in ev.items():
            if not isinstance(vals, list) or len(vals) != n_eval:
                problems.append(f"eval[{name!r}] is not a list aligned with eval steps")
    final = record.get("final")
    if not isinstance(final, dict) or not isinstance(final.get("metric"), str):
        problems.append("missing final metric")
    else:
        if not isinstance(final.get("higher_is_better"), bool):
            problems.append("final.higher_is_better is not a bool")
        if final.get("value") is not None and not _is_num(final["value"]):
            problems.append("final.value is not a number")
    timing = record.get("timing")
    if not isinstance(timing, dict) or not _is_num(timing.get("total_s")):
        problems.append("missing timing")
    elif isinstance(ev, dict) and len(timing.get("cumulative_train_s") or []) != len(ev.get("steps") or []):
        problems.append("timing.cumulative_train_s is not aligned with eval steps")
    memory = record.get("memory")
    if not isinstance(memory, dict) or not isinstance(memory.get("state_bytes"), int):
        problems.append("missing memory.state_bytes")
    return problems


def _grad_norm_problems(train: Mapping[str, Any]) -> list[str]:
    """Problems of the optional gradient-norm curve (``train.grad_norm_steps`` / ``train.grad_norm``).

    Both keys or neither: records written before the runner recorded gradient norms have neither and stay
    valid. When present they are lists of equal length, the values numbers or ``null`` (non-finite).
    """
    has_steps, has_values = "grad_norm_steps" in train, "grad_norm" in train
    if not has_steps and not has_values:
        return []
    steps, values = train.get("grad_norm_steps"), train.get("grad_norm")
    if not isinstance(steps, list) or not isinstance(values, list) or len(steps) != len(values):
        return ["train.grad_norm is not a list aligned with train.grad_norm_steps"]
    if not all(v is None or _is_num(v) for v in values):
        return ["train.grad_norm holds a value that is neither a number nor null"]
    return []


# ================================================================================================= store
#: A run record's file name: its key, the SHA-256 of its config, in hex.
_RECORD_NAME = re.compile(r"[0-9a-f]{64}\.json")


class ResultStore:
    """A results directory: one ``<key>.json`` per run plus ``manifest-*.json`` files.

    ``corrupt_note`` ends the warning logged for a corrupt record and says what the caller does about it
    (a sweep recomputes the run, a report leaves it out), so the warning never promises what won't happen.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        corrupt_note: str = "it is not used",
        quarantine: bool = True,
        shown_as: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.corrupt_note = corrupt_note
        self.quarantine = quarantine  # move corrupt files aside (False: a throw-away copy, e.g. an extracted archive)
        self.shown_as = shown_as  # how messages name the folder (e.g. the archive it was extracted from)
        self.corrupt: list[Path] = []  # files found corrupt (and moved aside when possible) by this object

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def _read(self, path: Path, expected_key: str | None, expected_config: Mapping | None) -> dict | None:
        """The validated record at ``path``; ``None`` if absent. Corrupt files are reported and moved aside."""
        if not path.exists():
            return None
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            problems = validate_record(record, expected_key, expected_config)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            problems = [f"unreadable JSON ({e})"]
        if not problems:
            return record
        if self.quarantine:
            aside = quarantine_path(path)
            try:
                os.replace(path, aside)
                where = f"moved to {aside.name}"
            except OSError as e:  # e.g. a read-only results directory being reported on
                where = f"left in place (cannot move it aside: {e.strerror or e})"
        else:
            where = "left out"
        shown = path if self.shown_as is None else f"{self.shown_as}: {path.relative_to(self.root)}"
        logger.warning("corrupt result file %s: %s; %s; %s", shown, "; ".join(problems), where, self.corrupt_note)
        self.corrupt.append(path)
        return None

    def load(self, config: RunConfig) -> dict | None:
        """The stored record of ``config`` if present and valid."""
        key = config.key()
        return self._read(self.path(key), key, config.to_dict())

    def get(self, key: str) -> dict | None:
        """The stored record with ``key`` (validated against its key only)."""
        return self._read(self.path(key), key, None)

    def save(self, record: Mapping[str, Any]) -> Path:
        """Write ``record`` atomically (temporary file in the same directory, fsync, ``os.replace``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return _atomic_write_json(self.path(record["key"]), record)

    def records(self) -> Iterator[dict]:
        """Every valid record in the directory (corrupt ones are reported and moved aside)."""
        for path in sorted(self.root.glob("*.json")):
            if _RECORD_NAME.fullmatch(path.name):  # not a manifest, nor the report's results.json
                rec = self._read(path, path.stem, None)
                if rec is not None:
                    yield rec

    def manifest_path(self, protocol: str, task: str, size: str) -> Path:
        return self.root / f"{_MANIFEST_PREFIX}{protocol}-{file_safe(task)}-{size}.json"

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        """Write ``manifest`` under its variant's name (:func:`manifest_path_for`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return _atomic_write_json(manifest_path_for(self, manifest), manifest)

    def manifests(self) -> list[dict]:
        out = []
        for path in sorted(self.root.glob(f"{_MANIFEST_PREFIX}*.json")):
            try:
                with open(path, encoding="utf-8") as f:
                    m = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                logger.warning("unreadable manifest %s (%s): skipped", path, e)
                continue
            if not isinstance(m, dict) or m.get("manifest") != MANIFEST_SCHEMA:
                logger.warning("manifest %s has an unknown schema: skipped", path)
                continue
            out.append(m)
        return out


def _atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


#: Manifest fields that, with the protocol's spec (its arms aside), say what a sweep ran: one manifest per variant.
_VARIANT_FIELDS = ("manifest", "kind", "device", "dtype", "steps")


def manifest_variant(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two sweeps of one protocol, task and size different runs: steps, dtype, device and every
    declared setting of the protocol (grids, seeds, schedule, batch sizes, ...), its list of arms aside."""
    return _json_normal(
        {
            **{k: manifest.get(k) for k in _VARIANT_FIELDS},
            "spec": {k: v for k, v in manifest.get("spec", {}).items() if k != "arms"},
        }
    )


def variant_id(manifest: Mapping[str, Any]) -> str:
    """A short stable name of :func:`manifest_variant` (8 hex digits)."""
    text = json.dumps(manifest_variant(manifest), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _read_manifest(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return old if isinstance(old, dict) else None


def manifest_path_for(store: ResultStore, manifest: Mapping[str, Any]) -> Path:
    """Where ``manifest`` goes: ``manifest-<protocol>-<task>-<size>.json`` for the first variant to arrive (so
    results written before variants existed keep their names), ``...-<size>-<variant id>.json`` for any other, so
    a second sweep with other steps, dtype or seeds on the same folder never replaces the first one's manifest.
    The caller holds the lock of the plain name."""
    plain = store.manifest_path(manifest["protocol"], manifest["task"], manifest["size"])
    old = _read_manifest(plain) if plain.exists() else None
    if old is None or manifest_variant(old) == manifest_variant(manifest):
        return plain
    return plain.with_name(f"{plain.stem}-{variant_id(manifest)}.json")


def merge_manifest(store: ResultStore, manifest: dict[str, Any]) -> dict[str, Any]:
    """Keep arms of an earlier manifest of the same variant (:func:`manifest_path_for`) that this invocation did
    not run.

    The caller holds the manifest's lock (:meth:`andi.bench.execution.claims.Claims.locked`) from this read to the
    write, so two processes finishing the same task at once both keep their arms.
    """
    path = manifest_path_for(store, manifest)
    old = _read_manifest(path) if path.exists() else None
    if old is not None and manifest_variant(old) == manifest_variant(manifest):
        names = {a["arm"] for a in manifest["arms"]}
        manifest["arms"] = [a for a in old["arms"] if a["arm"] not in names] + manifest["arms"]
    return manifest
