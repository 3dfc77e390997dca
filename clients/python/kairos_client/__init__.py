"""Python client for Kairos (wire protocol v1).

    from kairos_client import Client
    kairos = Client("127.0.0.1", 7878, timeout=0.2)
    ranking = kairos.topk("default", "user-42", k=10)
    for item, score in ranking:
        ...

``Client`` is blocking and thread-safe (a pool of connections); ``AsyncClient`` is for asyncio and pipelines
concurrent requests on one connection (catalogue scans on a second). Both fail over across several endpoints. Errors are ``KairosError``
subclasses carrying the protocol's error code; timeouts raise ``KairosTimeoutError``, a ``TimeoutError``.
"""

from .aio import AsyncClient
from .client import Client
from .errors import (
    BadRequest,
    ErrorCode,
    FrameTooLarge,
    InternalError,
    KairosConnectionError,
    KairosError,
    KairosTimeoutError,
    LimitExceeded,
    MalformedFrame,
    Overloaded,
    ProtocolError,
    ShuttingDown,
    Unavailable,
    UnknownItem,
    UnknownModel,
    UnknownOpcode,
    FrameTimeout,
    UnknownUser,
    UnsupportedVersion,
)
from .types import (
    AnswerFlags,
    Decay,
    Decision,
    Event,
    Hello,
    Limits,
    ModelInfo,
    ModelRef,
    ModelStamp,
    OpStats,
    PushDecision,
    Ranking,
    Reason,
    ScoredItem,
    Scores,
    ServerInfo,
    ServerStats,
    ServingReport,
    Strength,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "AnswerFlags",
    "Decay",
    "Decision",
    "Event",
    "Hello",
    "Limits",
    "ModelInfo",
    "ModelRef",
    "ModelStamp",
    "OpStats",
    "PushDecision",
    "Ranking",
    "Reason",
    "ScoredItem",
    "Scores",
    "ServerInfo",
    "ServerStats",
    "ServingReport",
    "Strength",
    "KairosError",
    "ProtocolError",
    "MalformedFrame",
    "FrameTooLarge",
    "UnsupportedVersion",
    "UnknownOpcode",
    "FrameTimeout",
    "BadRequest",
    "LimitExceeded",
    "UnknownModel",
    "UnknownUser",
    "UnknownItem",
    "Unavailable",
    "Overloaded",
    "ShuttingDown",
    "InternalError",
    "KairosConnectionError",
    "KairosTimeoutError",
    "ErrorCode",
]
