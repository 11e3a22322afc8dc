"""The paper's claims as the benchmark tests them, declared before the runs: ``paper_claims.json`` beside this module.

Each claim is a list of comparisons — ``(protocol, task, size, arm, baseline, metric, direction)`` — and a verdict
rule (``robust-not-worse``, ``parity-at-lower-cost`` or ``better-than-all``, spelled out in the file); the Holm family
of a claim's verdict is exactly its comparisons, so toys and duplicate rows never enter it. The file also declares
α and each task's *penalty*: the metric a diverged or failed reporting run counts as, so that it stays in its arm's
n, mean and tests instead of vanishing.

Every manifest records :func:`claims_sha256` at run time; a report over records whose hash differs from the current
file says so on its first line (:func:`hash_note`). The name differs on purpose from the run *claims*
(``*.claim`` files) of a shared results directory (:mod:`andi.bench.execution.claims`).

>>> from andi.bench.paper_claims import load_claims
>>> claims = load_claims()
>>> claims.alpha, claims.penalty("gpt")
(0.05, 4.174387)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["CLAIMS_FILE", "RULES", "Claim", "Claims", "Comparison", "claims_sha256", "hash_note", "load_claims"]

#: The declared claims (package data, so an installed ``andi-bench`` records the same hash as a checkout).
CLAIMS_FILE = Path(__file__).with_name("paper_claims.json")
#: The verdict rules a claim may use (their wording is in the file).
RULES = ("robust-not-worse", "parity-at-lower-cost", "better-than-all")


@dataclass(frozen=True)
class Comparison:
    """``arm`` against ``baseline`` on ``task`` at ``size`` in the records of ``protocol``; ``direction`` says
    which way is better for ``metric`` (``"lower"`` or ``"higher"``)."""

    protocol: str
    task: str
    size: str
    arm: str
    baseline: str
    metric: str
    direction: str


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    rule: str
    comparisons: tuple[Comparison, ...]
    margin: float | None = None  # parity-at-lower-cost: the CI must lie within ± margin


@dataclass(frozen=True)
class Claims:
    alpha: float
    penalties: Mapping[str, float]
    rules: Mapping[str, str]
    claims: tuple[Claim, ...]
    sha256: str

    def penalty(self, task: str) -> float | None:
        """The declared metric of a diverged or failed reporting run on ``task``; ``None`` where none is declared."""
        return self.penalties.get(task)

    def for_protocol(self, protocol: str) -> tuple[Claim, ...]:
        """The claims with a comparison in the records of ``protocol``."""
        return tuple(c for c in self.claims if any(k.protocol == protocol for k in c.comparisons))


def claims_sha256(path: str | Path = CLAIMS_FILE) -> str:
    """The SHA-256 of the claims file's bytes (what manifests record)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _require(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise ValueError(f"{path}: {what}")


def _comparison(raw: Any, path: Path, where: str) -> Comparison:
    _require(isinstance(raw, dict), path, f"{where}: a comparison must be an object")
    fields = ("protocol", "task", "size", "arm", "baseline", "metric", "direction")
    missing = [f for f in fields if not isinstance(raw.get(f), str)]
    _require(not missing, path, f"{where}: missing or non-text fields {missing}")
    _require(raw["direction"] in ("lower", "higher"), path, f"{where}: direction must be 'lower' or 'higher'")
    _require(raw["arm"] != raw["baseline"], path, f"{where}: an arm compared with itself")
    return Comparison(**{f: raw[f] for f in fields})


def _claim(raw: Any, path: Path, rules: Sequence[str]) -> Claim:
    _require(isinstance(raw, dict) and isinstance(raw.get("id"), str), path, "every claim needs a text id")
    where = f"claim {raw['id']!r}"
    _require(raw.get("rule") in rules, path, f"{where}: rule must be one of {list(rules)}")
    comparisons = raw.get("comparisons")
    _require(isinstance(comparisons, list) and bool(comparisons), path, f"{where}: needs a list of comparisons")
    parsed = tuple(_comparison(c, path, where) for c in comparisons)
    _require(len(set(parsed)) == len(parsed), path, f"{where}: a comparison is listed twice")
    margin = raw.get("margin")
    if raw["rule"] == "parity-at-lower-cost":
        _require(isinstance(margin, (int, float)) and margin > 0, path, f"{where}: parity needs a positive margin")
    return Claim(raw["id"], str(raw.get("paper", "")), raw["rule"], parsed, None if margin is None else float(margin))


@cache
def _load(path: Path, digest: str) -> Claims:
    raw = json.loads(path.read_text())
    _require(raw.get("schema") == 1, path, "unknown schema (expected 1)")
    alpha = raw.get("alpha")
    _require(isinstance(alpha, float) and 0 < alpha < 1, path, "alpha must be a number in (0, 1)")
    rules = raw.get("rules") or {}
    _require(set(rules) <= set(RULES), path, f"rules may only describe {list(RULES)}")
    penalties = {k: float(v) for k, v in (raw.get("penalties") or {}).items() if k != "about"}
    claims = tuple(_claim(c, path, list(rules)) for c in raw.get("claims") or ())
    ids = [c.id for c in claims]
    _require(len(set(ids)) == len(ids), path, "claim ids must be unique")
    for c in claims:
        for k in c.comparisons:
            _require(k.task in penalties, path, f"claim {c.id!r}: no penalty declared for task {k.task!r}")
    return Claims(alpha, penalties, dict(rules), claims, digest)


def load_claims(path: str | Path = CLAIMS_FILE) -> Claims:
    """The declared claims, validated (a malformed file raises ``ValueError`` naming it and what is wrong)."""
    path = Path(path)
    return _load(path, claims_sha256(path))


def hash_note(recorded: Sequence[str | None], current: str | None = None) -> str | None:
    """The report's first-line warning when records were made under another claims file; ``None`` when every
    recorded hash is the current file's (records from before the file existed, ``None``, are not flagged)."""
    current = current if current is not None else claims_sha256()
    other = sorted({h for h in recorded if h is not None and h != current})
    if not other:
        return None
    return (
        "**Warning: these records were made under another version of the claims file** "
        f"(recorded SHA-256 {', '.join(h[:12] for h in other)}; current {current[:12]}): the verdict rules, "
        "penalties or comparisons may have changed since the runs."
    )
