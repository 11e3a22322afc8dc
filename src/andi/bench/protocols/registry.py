"""Every declared protocol by name: :data:`PROTOCOLS` and :func:`get_protocol` (what ``andi-bench run --protocol``
accepts).

The table is the one place that knows every protocol; the modules that declare them (:mod:`~andi.bench.protocols.fair`,
:mod:`~andi.bench.protocols.replay`, :mod:`~andi.bench.protocols.study`) never import it back.
"""

from __future__ import annotations

from andi.bench.protocols.fair import FAIR, QUICK, QUICK_SMOKE, FairProtocol
from andi.bench.protocols.replay import ReplayProtocol, ReplayV7Protocol
from andi.bench.protocols.study import study_protocols

__all__ = [
    "PROTOCOLS",
    "REPLAY",
    "REPLAY_V7",
    "STUDY",
    "STUDY_GPT_FULL",
    "STUDY_SADDLE_FULL",
    "STUDY_V2",
    "WIDTH",
    "WIDTH_V2",
    "get_protocol",
]

#: The paper's replay.
REPLAY = ReplayProtocol()
#: The evidence study (:mod:`andi.bench.protocols.study`, built from the classes and arm tables above).
_STUDY_PROTOCOLS = study_protocols()
#: ``andi-bench run --protocol study``: every fair arm on the paper tasks, ``cifar-proj`` and the toys at CPU size.
STUDY: FairProtocol = _STUDY_PROTOCOLS["study"]
#: ``andi-bench run --protocol study-saddle-full``: SADDLE at the paper's size for ANDI, ANDI-hybrid, AdamW, Muon.
STUDY_SADDLE_FULL: FairProtocol = _STUDY_PROTOCOLS["study-saddle-full"]
#: ``andi-bench run --protocol width``: char-GPT at widths 64, 128, 256 (lr transfer).
WIDTH: FairProtocol = _STUDY_PROTOCOLS["width"]

#: ``andi-bench run --protocol study-gpt-full``: the GPT at the paper's size in the author's v7 setting.
STUDY_GPT_FULL: FairProtocol = _STUDY_PROTOCOLS["study-gpt-full"]
#: ``andi-bench run --protocol study-v2``: the headline arms under the reviewer-grade rules.
STUDY_V2: FairProtocol = _STUDY_PROTOCOLS["study-v2"]
#: ``andi-bench run --protocol width-v2``: the width sweep under the reviewer-grade rules.
WIDTH_V2: FairProtocol = _STUDY_PROTOCOLS["width-v2"]
#: ``andi-bench run --protocol replay-v7``: the author's v7 GPT experiment as it runs it.
REPLAY_V7 = ReplayV7Protocol()

PROTOCOLS: dict[str, FairProtocol | ReplayProtocol] = {
    "fair": FAIR,
    "replay": REPLAY,
    "replay-v7": REPLAY_V7,
    "quick": QUICK,
    "quick-smoke": QUICK_SMOKE,
    **_STUDY_PROTOCOLS,
}


def get_protocol(name: str) -> FairProtocol | ReplayProtocol:
    """The declared protocol called ``name`` (see :data:`PROTOCOLS`)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; choose from {sorted(PROTOCOLS)}") from None
