"""What is run, declared before any run: the protocols, their arms, schedules, run configurations and plans.

This package owns the *description* of a study — :class:`FairProtocol` and the replays (:mod:`.fair`,
:mod:`.replay`), the declared instances (:mod:`.study`, :mod:`.registry`), the arms (:mod:`.arms`), the lr schedules
(:mod:`.schedules`), one run's settings (:mod:`.run_config`) and the plans that turn a protocol into stages of runs
and a manifest (:mod:`.plans`). It computes nothing and writes nothing: :mod:`andi.bench.execution` runs what it
describes. It may import :mod:`andi.bench.tasks`, :mod:`andi.bench.util` and the optimizer library, never execution,
report or the CLI.
"""

from andi.bench.protocols.arms import CORE_ARMS, FAMILY_ARMS, ArmSpec
from andi.bench.protocols.fair import FAIR, QUICK, QUICK_SMOKE, FairProtocol, select_fair_lr
from andi.bench.protocols.registry import (
    PROTOCOLS,
    REPLAY,
    REPLAY_V7,
    STUDY,
    STUDY_GPT_FULL,
    STUDY_SADDLE_FULL,
    STUDY_V2,
    WIDTH,
    WIDTH_V2,
    get_protocol,
)
from andi.bench.protocols.replay import (
    ANDI_GRID,
    BATCH_SIZE,
    EVAL_INTERVAL,
    PAPER_TASKS,
    SEEDS,
    TRAIN_STEPS,
    ReplayProtocol,
    ReplayV7Protocol,
    select_replay_lr,
)
from andi.bench.protocols.run_config import RunConfig

__all__ = [
    "ANDI_GRID",
    "BATCH_SIZE",
    "CORE_ARMS",
    "EVAL_INTERVAL",
    "FAIR",
    "FAMILY_ARMS",
    "PAPER_TASKS",
    "PROTOCOLS",
    "QUICK",
    "QUICK_SMOKE",
    "REPLAY",
    "REPLAY_V7",
    "SEEDS",
    "STUDY",
    "STUDY_GPT_FULL",
    "STUDY_SADDLE_FULL",
    "STUDY_V2",
    "TRAIN_STEPS",
    "WIDTH",
    "WIDTH_V2",
    "ArmSpec",
    "FairProtocol",
    "ReplayProtocol",
    "ReplayV7Protocol",
    "RunConfig",
    "get_protocol",
    "select_fair_lr",
    "select_replay_lr",
]
