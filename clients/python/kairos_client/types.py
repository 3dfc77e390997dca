"""Values going into and coming out of Kairos: small dataclasses, every answer stamped with its model version."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

__all__ = [
    "ModelRef",
    "ModelStamp",
    "AnswerFlags",
    "Event",
    "Strength",
    "Decay",
    "ScoredItem",
    "Scores",
    "Ranking",
    "Decision",
    "Reason",
    "PushDecision",
    "Limits",
    "ModelInfo",
    "ServerInfo",
    "OpStats",
    "ServerStats",
    "Hello",
    "ServingReport",
]


@dataclass(frozen=True)
class ModelRef:
    """Which model a request is for: a name, and a pinned version (0 = whatever version is serving now)."""

    name: str
    version: int = 0


@dataclass(frozen=True)
class ModelStamp:
    """The model (name and exact version) that computed an answer."""

    name: str
    version: int


class AnswerFlags(enum.IntFlag):
    """Bits on every scoring answer."""

    NONE = 0
    #: The user is unknown and no usable events were given: the answer is trending popularity, not personal.
    FALLBACK = 1
    #: The user is unknown but the request's real-time events made the answer personal.
    COLD_START_FROM_EVENTS = 2


class Strength:
    """Conventional event strengths (any finite float is allowed)."""

    VIEW = 1.0
    CLICK = 2.0
    CART = 4.0
    PURCHASE = 8.0


class Event(NamedTuple):
    """Something the user just did, folded into their vector at request time. A plain ``(item, strength,
    timestamp)`` tuple works too; ``timestamp`` is unix seconds (an aware ``datetime`` is accepted as well)."""

    item: str
    strength: float
    timestamp: int


@dataclass(frozen=True)
class Decay:
    """How the server discounts real-time events by age. ``Decay.model_default()`` (or ``None``) uses the model's."""

    form: int
    a: float = 0.0
    b: float = 0.0

    MODEL_DEFAULT = 0
    NONE = 1
    EXPONENTIAL = 2
    LINEAR = 3
    SIGMOID = 4

    @classmethod
    def model_default(cls) -> "Decay":
        return cls(0)

    @classmethod
    def none(cls) -> "Decay":
        """Every event counts fully, whatever its age."""
        return cls(1)

    @classmethod
    def exponential(cls, half_life_seconds: float) -> "Decay":
        return cls(2, float(half_life_seconds))

    @classmethod
    def linear(cls, window_seconds: float) -> "Decay":
        return cls(3, float(window_seconds))

    @classmethod
    def sigmoid(cls, midpoint_seconds: float, steepness_per_second: float) -> "Decay":
        return cls(4, float(midpoint_seconds), float(steepness_per_second))


class ScoredItem(NamedTuple):
    """An item and its score (a tuple: ``for item, score in ranking``)."""

    item: str
    score: float


class _Answer:
    """What every scoring answer has: the model stamp and the answer flags."""

    model: ModelStamp
    flags: AnswerFlags

    @property
    def model_version(self) -> int:
        """Version of the model that computed this answer."""
        return self.model.version

    @property
    def fallback(self) -> bool:
        """The user is unknown and there were no usable events: trending popularity, not personal."""
        return bool(self.flags & AnswerFlags.FALLBACK)

    @property
    def cold_start(self) -> bool:
        """The user is unknown but the request's events made the answer personal."""
        return bool(self.flags & AnswerFlags.COLD_START_FROM_EVENTS)


@dataclass
class Scores(_Answer):
    """SCORE's answer: one score per candidate, in the order the candidates were sent.

    ``scores`` is an ``array.array('f')`` by default (``numpy.ndarray`` of float32 with ``score_format="numpy"``, a
    ``list`` with ``"list"``). Unknown candidates score NaN and have bit 0 set in ``item_flags``.
    """

    model: ModelStamp
    flags: AnswerFlags
    items: Sequence[str]
    scores: Any
    item_flags: bytes

    UNKNOWN_ITEM = 1

    def __len__(self) -> int:
        return len(self.item_flags)

    def __iter__(self) -> Iterator[ScoredItem]:
        return (ScoredItem(i, s) for i, s in zip(self.items, self.scores))

    @property
    def unknown_items(self) -> List[str]:
        """Candidates the model does not know (their score is NaN)."""
        flags = self.item_flags
        if not any(flags):
            return []
        return [item for item, f in zip(self.items, flags) if f & 1]

    def as_dict(self) -> Dict[str, float]:
        """``{item: score}`` for the known candidates."""
        return {i: float(s) for i, s, f in zip(self.items, self.scores, self.item_flags) if not f & 1}

    def ranked(self, n: Optional[int] = None) -> List[ScoredItem]:
        """Known candidates best first (the first ``n`` if given)."""
        pairs = sorted(
            (ScoredItem(i, float(s)) for i, s, f in zip(self.items, self.scores, self.item_flags) if not f & 1),
            key=lambda p: p.score,
            reverse=True,
        )
        return pairs if n is None else pairs[:n]


@dataclass
class Ranking(_Answer):
    """TOPK's or SIMILAR's answer: items best first."""

    model: ModelStamp
    flags: AnswerFlags
    items: List[ScoredItem]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ScoredItem]:
        return iter(self.items)

    def __getitem__(self, i: int) -> ScoredItem:
        return self.items[i]

    @property
    def item_ids(self) -> List[str]:
        return [p.item for p in self.items]


class Decision(enum.IntEnum):
    PUSH_NOW = 0
    NOT_NOW = 1
    NEVER = 2


class Reason(enum.IntEnum):
    OK = 0
    DAILY_CAP = 1
    WEEKLY_CAP = 2
    MINIMUM_GAP = 3
    QUIET_HOURS = 4
    BELOW_THRESHOLD = 5
    BETTER_TIME_LATER = 6
    NO_CANDIDATES = 7


@dataclass
class PushDecision(_Answer):
    """PUSH_DECIDE's answer: whether to push now, why, when (``send_at``, unix seconds; 0 for never), and what."""

    model: ModelStamp
    flags: AnswerFlags
    decision: Decision
    reason: Reason
    send_at: int
    items: List[ScoredItem]

    @property
    def push_now(self) -> bool:
        return self.decision == Decision.PUSH_NOW


@dataclass(frozen=True)
class Limits:
    max_payload: int
    max_candidates: int
    max_k: int
    max_events: int


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    dimensions: int
    items: int
    users: int
    encoding: str
    loaded_at: int
    checksum: int


@dataclass(frozen=True)
class ServerInfo:
    limits: Limits
    models: List[ModelInfo]

    def model(self, name: str) -> ModelInfo:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


@dataclass(frozen=True)
class ServingReport:
    """RELOAD's, PIN's or ROLLBACK's answer: the models serving after the operation, and the files rejected during
    it (``"file: reason"``)."""

    models: List[ModelInfo]
    rejected: List[str]

    def model(self, name: str) -> ModelInfo:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


@dataclass(frozen=True)
class OpStats:
    opcode: int
    op: str
    requests: int
    errors: int
    p50_us: float
    p99_us: float
    p999_us: float


@dataclass(frozen=True)
class ServerStats:
    uptime_seconds: int
    open_connections: int
    total_connections: int
    ops: List[OpStats]


@dataclass(frozen=True)
class Hello:
    chosen_version: int
    versions: Tuple[int, ...]
    limits: Limits
    server: str

