"""Exceptions: one class per protocol error code, plus the client's own (timeouts, lost connections).

Hierarchy::

    KairosError                       every error this package raises; .code is the protocol code or None
      ProtocolError                   the two sides do not understand each other's bytes
        MalformedFrame (1), FrameTooLarge (2), UnsupportedVersion (3), UnknownOpcode (4), FrameTimeout (13)
      BadRequest (5), LimitExceeded (6), UnknownModel (7), UnknownUser (8), UnknownItem (9), InternalError (12)
      Unavailable                     the server cannot take the request now: retry later or elsewhere
        Overloaded (10), ShuttingDown (11)
      KairosConnectionError           (also a ConnectionError) no endpoint reachable / connection lost twice
      KairosTimeoutError              (also the built-in TimeoutError) no answer within the timeout
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
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
    "error_for_code",
]


class ErrorCode:
    """The protocol's error codes (PROTOCOL.md, "Errors")."""

    MALFORMED_FRAME = 1
    FRAME_TOO_LARGE = 2
    UNSUPPORTED_VERSION = 3
    UNKNOWN_OPCODE = 4
    BAD_REQUEST = 5
    LIMIT_EXCEEDED = 6
    UNKNOWN_MODEL = 7
    UNKNOWN_USER = 8
    UNKNOWN_ITEM = 9
    OVERLOADED = 10
    SHUTTING_DOWN = 11
    INTERNAL_ERROR = 12
    FRAME_TIMEOUT = 13

    NAMES = {
        1: "MALFORMED_FRAME",
        2: "FRAME_TOO_LARGE",
        3: "UNSUPPORTED_VERSION",
        4: "UNKNOWN_OPCODE",
        5: "BAD_REQUEST",
        6: "LIMIT_EXCEEDED",
        7: "UNKNOWN_MODEL",
        8: "UNKNOWN_USER",
        9: "UNKNOWN_ITEM",
        10: "OVERLOADED",
        11: "SHUTTING_DOWN",
        12: "INTERNAL_ERROR",
        13: "FRAME_TIMEOUT",
    }

    #: Codes after which the server closes the connection when they answer a request. OVERLOADED closes it only as
    #: a refusal at accept (request id 0, handled before any answer is matched); answering a request (too many
    #: scans waiting) it leaves the connection open.
    CLOSES_CONNECTION = frozenset({1, 2, 3, 13})


class KairosError(Exception):
    """Base of every exception raised by kairos_client.

    ``code`` is the protocol error code when the server sent one (None for client-side errors), ``message`` the
    server's human-readable text (not stable), ``request_id`` the id of the request it answered (0 when the server
    could not read one).
    """

    code: Optional[int] = None

    def __init__(self, message: str = "", code: Optional[int] = None, request_id: Optional[int] = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.request_id = request_id

    @property
    def code_name(self) -> Optional[str]:
        return ErrorCode.NAMES.get(self.code) if self.code is not None else None

    def __str__(self) -> str:
        if self.code is not None:
            name = ErrorCode.NAMES.get(self.code, "code %d" % self.code)
            return "%s: %s" % (name, self.message) if self.message else name
        return self.message


class ProtocolError(KairosError):
    """The bytes on the wire do not make sense to one side: a framing error reported by the server (codes 1-4 and
    13), or a response this client cannot decode (code None)."""


class MalformedFrame(ProtocolError):
    code = ErrorCode.MALFORMED_FRAME


class FrameTooLarge(ProtocolError):
    code = ErrorCode.FRAME_TOO_LARGE


class UnsupportedVersion(ProtocolError):
    code = ErrorCode.UNSUPPORTED_VERSION


class UnknownOpcode(ProtocolError):
    code = ErrorCode.UNKNOWN_OPCODE


class FrameTimeout(ProtocolError):
    """A request frame this connection began did not reach the server whole within its frame timeout (30 s by
    default); the server closed the connection."""

    code = ErrorCode.FRAME_TIMEOUT


class BadRequest(KairosError):
    """The request payload does not decode or has out-of-range fields (NaN, quiet hour 25, ...)."""

    code = ErrorCode.BAD_REQUEST


class LimitExceeded(KairosError):
    """A documented limit was exceeded: candidates, k, events, string length."""

    code = ErrorCode.LIMIT_EXCEEDED


class UnknownModel(KairosError):
    code = ErrorCode.UNKNOWN_MODEL


class UnknownUser(KairosError):
    code = ErrorCode.UNKNOWN_USER


class UnknownItem(KairosError):
    code = ErrorCode.UNKNOWN_ITEM


class InternalError(KairosError):
    code = ErrorCode.INTERNAL_ERROR


class Unavailable(KairosError):
    """The server did not take the request; it is safe to retry it later or on another endpoint."""


class Overloaded(Unavailable):
    code = ErrorCode.OVERLOADED


class ShuttingDown(Unavailable):
    code = ErrorCode.SHUTTING_DOWN


class KairosConnectionError(KairosError, ConnectionError):
    """No endpoint could be reached, or the connection was lost and the one retry failed too."""


class KairosTimeoutError(KairosError, TimeoutError):
    """No complete answer within the client's timeout. Also a built-in ``TimeoutError``."""


_BY_CODE: Dict[int, Type[KairosError]] = {
    cls.code: cls
    for cls in (
        MalformedFrame,
        FrameTooLarge,
        UnsupportedVersion,
        UnknownOpcode,
        FrameTimeout,
        BadRequest,
        LimitExceeded,
        UnknownModel,
        UnknownUser,
        UnknownItem,
        Overloaded,
        ShuttingDown,
        InternalError,
    )
}


def error_for_code(code: int, message: str, request_id: Optional[int] = None) -> KairosError:
    """The exception for a server error response; unknown (future) codes give a plain KairosError with the code."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return KairosError(message, code=code, request_id=request_id)
    return cls(message, request_id=request_id)
