"""Kairos wire protocol v1 (proto-spec/PROTOCOL.md): pure bytes in, values out. No sockets here.

Requests: ``encode_*`` functions return a payload (``bytes``); ``frame(opcode, request_id, payload)`` puts the 12-byte
header in front. Responses: ``parse_header`` reads a header, ``decode_response(request_opcode, response_opcode,
payload)`` turns a payload into a result object or raises the server's error as an exception.

Everything is little-endian. SCORE's scores are decoded with one ``array.frombytes`` (or ``numpy.frombuffer``) call,
not a Python loop per score.
"""

from __future__ import annotations

import datetime as _dt
import math
import struct
import sys
from array import array
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .errors import ErrorCode, KairosError, ProtocolError, error_for_code
from .types import (
    AnswerFlags,
    Decay,
    Decision,
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
)

MAGIC = 0xCA
VERSION = 1
HEADER_SIZE = 12
ERROR_OPCODE = 0xFF
#: Largest response payload this client accepts (a guard against a peer that is not Kairos).
MAX_RESPONSE_PAYLOAD = 64 * 1024 * 1024


class Op:
    """Request opcodes; a success response carries ``opcode | 0x80``."""

    PING = 0x01
    HELLO = 0x02
    INFO = 0x03
    STATS = 0x04
    SCORE = 0x10
    TOPK = 0x11
    SIMILAR = 0x12
    PUSH_DECIDE = 0x13
    RELOAD = 0x20
    PIN = 0x21
    ROLLBACK = 0x22

    NAMES = {0x01: "PING", 0x02: "HELLO", 0x03: "INFO", 0x04: "STATS", 0x10: "SCORE", 0x11: "TOPK", 0x12: "SIMILAR",
             0x13: "PUSH_DECIDE", 0x20: "RELOAD", 0x21: "PIN", 0x22: "ROLLBACK"}

    #: Operations that must not be sent twice: ROLLBACK pins the version below the one serving, so a retry after a
    #: lost answer could roll back two versions. Every other operation is idempotent.
    NOT_IDEMPOTENT = frozenset({0x22})


HEADER = struct.Struct("<BBBBII")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F32 = struct.Struct("<f")
_STR_EVENT_TAIL = struct.Struct("<fq")  # event strength, timestamp
_CONTEXT_TAIL = struct.Struct("<Bddq")  # decay form, a, b, now
_TOPK_MID = struct.Struct("<HB")  # k, options
_WEIGHTS = struct.Struct("<ff")
_PUSH_MID = struct.Struct("<BBIBBh")  # per day, per week, min gap, quiet start, quiet end, utc offset
_F32_U16 = struct.Struct("<fH")  # threshold, k
_LIMITS = struct.Struct("<IIHH")
_MODEL_INFO_MID = struct.Struct("<QIII")
_MODEL_INFO_TAIL = struct.Struct("<qQ")
_STATS_HEAD = struct.Struct("<QQQH")
_OP_STATS = struct.Struct("<BQQfff")
_FLAGS_COUNT32 = struct.Struct("<BI")
_PUSH_HEAD = struct.Struct("<BBHq")

MAX_STRING_BYTES = 1024  # the server's limit (LIMIT_EXCEEDED above it); the wire format itself allows 65535
_BIG_ENDIAN = sys.byteorder == "big"

ModelLike = Union[str, ModelRef, Tuple[str, int]]
TimeLike = Union[int, float, _dt.datetime]
EventLike = Union[Tuple[str, float, TimeLike], Any]


# ---------------------------------------------------------------------------------------------------------- encoding


def frame(opcode: int, request_id: int, payload: bytes) -> bytes:
    """Header plus payload."""
    return HEADER.pack(MAGIC, VERSION, opcode, 0, request_id, len(payload)) + payload


def _str(text: str, what: str = "string") -> bytes:
    if not isinstance(text, str):
        raise TypeError("%s must be a str, not %s" % (what, type(text).__name__))
    b = text.encode("utf-8")
    if len(b) > 0xFFFF:
        raise ValueError("%s is %d bytes of UTF-8; the wire format allows at most 65535" % (what, len(b)))
    return _U16.pack(len(b)) + b


# u16 little-endian length prefixes as two latin-1 characters, for the all-ASCII fast path of _str_list.
_ASCII_PREFIX = [chr(n & 0xFF) + chr(n >> 8) for n in range(MAX_STRING_BYTES + 1)]


def _str_list(items: Sequence[str], what: str) -> bytes:
    """``u32 count`` then each ``str``. Item ids are almost always ASCII: then the whole list is assembled as one str
    (length prefixes as latin-1 characters) and encoded once, about twice as fast as encoding item by item."""
    if isinstance(items, (str, bytes)):
        raise TypeError("%s must be a list of str, not a single %s" % (what, type(items).__name__))
    if not isinstance(items, (list, tuple)):
        items = list(items)
    n = len(items)
    parts: List[Any] = [None] * (2 * n)
    try:
        if "".join(items).isascii():
            parts[0::2] = map(_ASCII_PREFIX.__getitem__, map(len, items))
            parts[1::2] = items
            return _U32.pack(n) + "".join(parts).encode("latin-1")
    except TypeError:
        raise TypeError("%s must all be str" % what) from None
    except IndexError:
        pass  # an item longer than the server's limit: the general path (the server will answer LIMIT_EXCEEDED)
    try:
        encoded = list(map(str.encode, items))
    except TypeError:
        raise TypeError("%s must all be str" % what) from None
    lengths = list(map(len, encoded))
    if n and max(lengths) > 0xFFFF:
        raise ValueError("an item of %s is longer than 65535 bytes of UTF-8" % what)
    parts[0::2] = map(_U16.pack, lengths)
    parts[1::2] = encoded
    return _U32.pack(n) + b"".join(parts)


_model_cache: Dict[Any, bytes] = {}


def _model_ref(model: ModelLike) -> bytes:
    """``str name`` + ``u64 version``; accepts "name", ("name", version) or ModelRef. Cached (few distinct models)."""
    cached = _model_cache.get(model)
    if cached is not None:
        return cached
    if isinstance(model, str):
        name, version = model, 0
    elif isinstance(model, ModelRef):
        name, version = model.name, model.version
    elif isinstance(model, tuple) and len(model) == 2:
        name, version = model
    else:
        raise TypeError("model must be a name, a (name, version) tuple or a ModelRef, not %r" % (model,))
    out = _str(name, "model name") + _u64(version, "model version")
    if len(_model_cache) < 256:
        _model_cache[model] = out
    return out


def _u64(v: int, what: str) -> bytes:
    try:
        return _U64.pack(v)
    except struct.error:
        raise ValueError("%s must be an integer in 0..2^64-1, not %r" % (what, v)) from None


#: The latest time a request may carry (9999-12-31T23:59:59Z); the earliest is 0 (1970).
LATEST_TIME = 253402300799


def unix_seconds(t: TimeLike, what: str = "time") -> int:
    """Unix seconds from an int, a float (truncated) or a datetime (naive datetimes are taken as UTC), checked to be
    a time the protocol carries (1970 to 9999)."""
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        t = int(t.timestamp())
    elif isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError("%s must be unix seconds (int) or a datetime, not %r" % (what, t))
    elif isinstance(t, float):
        if not math.isfinite(t):
            raise ValueError("%s must be finite" % what)
        t = int(t)
    if not 0 <= t <= LATEST_TIME:
        raise ValueError("%s must be a unix time from 1970 to 9999 (0..%d), not %d" % (what, LATEST_TIME, t))
    return t


def _seconds(d: Union[int, float, _dt.timedelta], what: str) -> float:
    if isinstance(d, _dt.timedelta):
        return d.total_seconds()
    return d


def encode_context(events: Optional[Sequence[EventLike]] = None, decay: Optional[Decay] = None,
                   now: Optional[TimeLike] = None) -> bytes:
    """The realtime context: events, decay, now (None/0 = the server's clock)."""
    parts = []
    events = events or ()
    n = len(events)
    if n > 0xFFFF:
        raise ValueError("%d events cannot be encoded (u16 count)" % n)
    parts.append(_U16.pack(n))
    for e in events:
        item, strength, ts = e
        parts.append(_str(item, "event item"))
        try:
            parts.append(_STR_EVENT_TAIL.pack(strength, unix_seconds(ts, "event timestamp")))
        except struct.error as err:
            raise ValueError("bad event %r: %s" % (e, err)) from None
    d = decay if decay is not None else _MODEL_DEFAULT
    if not isinstance(d, Decay):
        raise TypeError("decay must be a kairos_client.Decay, not %r" % (d,))
    try:
        parts.append(_CONTEXT_TAIL.pack(d.form, d.a, d.b, 0 if now is None else unix_seconds(now, "now")))
    except struct.error as err:
        raise ValueError("bad decay or now: %s" % err) from None
    return b"".join(parts)


_MODEL_DEFAULT = Decay(0)
_EMPTY_CONTEXT = encode_context()


def encode_hello(versions: Sequence[int] = (VERSION,)) -> bytes:
    return _U8.pack(len(versions)) + bytes(versions)


def encode_score(model: ModelLike, user: str, items: Sequence[str], events: Optional[Sequence[EventLike]] = None,
                 now: Optional[TimeLike] = None, decay: Optional[Decay] = None) -> bytes:
    ctx = _EMPTY_CONTEXT if not events and decay is None and not now else encode_context(events, decay, now)
    return b"".join((_model_ref(model), _str(user, "user"), _str_list(items, "items"), ctx))


def encode_topk(model: ModelLike, user: str, k: int, exclude: Optional[Sequence[str]] = None,
                allow_repeats: bool = False, category: Optional[str] = None,
                events: Optional[Sequence[EventLike]] = None, now: Optional[TimeLike] = None,
                decay: Optional[Decay] = None, trending_weight: Optional[float] = None,
                buy_again_weight: Optional[float] = None) -> bytes:
    """TOPK. Giving either weight sets the ``custom weights`` option (the other one is then 0)."""
    custom = trending_weight is not None or buy_again_weight is not None
    options = (1 if allow_repeats else 0) | (2 if custom else 0)
    try:
        mid = _TOPK_MID.pack(k, options)
        weights = _WEIGHTS.pack(trending_weight or 0.0, buy_again_weight or 0.0)
    except struct.error as err:
        raise ValueError("bad k or weights: %s" % err) from None
    ctx = _EMPTY_CONTEXT if not events and decay is None and not now else encode_context(events, decay, now)
    return b"".join((_model_ref(model), _str(user, "user"), mid, _str(category or "", "category"), weights,
                     _str_list(exclude or (), "exclude"), ctx))


def encode_similar(model: ModelLike, item: str, k: int, category: Optional[str] = None) -> bytes:
    try:
        kb = _U16.pack(k)
    except struct.error:
        raise ValueError("k must be in 0..65535, not %r" % (k,)) from None
    return b"".join((_model_ref(model), _str(item, "item"), kb, _str(category or "", "category")))


def encode_push_decide(model: ModelLike, user: str, now: Optional[TimeLike], recent_pushes: Sequence[TimeLike] = (),
                       max_per_day: int = 2, max_per_week: int = 7,
                       min_gap: Union[int, float, _dt.timedelta] = 4 * 3600,
                       quiet_hours: Optional[Tuple[int, int]] = (22, 8), utc_offset_minutes: int = 0,
                       threshold: float = 0.0, k: int = 3, events: Optional[Sequence[EventLike]] = None,
                       decay: Optional[Decay] = None) -> bytes:
    """PUSH_DECIDE. ``quiet_hours`` is ``(start, end)`` in the user's local hours, None for no quiet hours."""
    pushes = [unix_seconds(t, "recent push") for t in recent_pushes]
    if len(pushes) > 0xFFFF:
        raise ValueError("%d recent pushes cannot be encoded (u16 count)" % len(pushes))
    quiet_start, quiet_end = quiet_hours if quiet_hours is not None else (0, 0)
    try:
        mid = _PUSH_MID.pack(max_per_day, max_per_week, int(_seconds(min_gap, "min_gap")), quiet_start, quiet_end,
                             utc_offset_minutes)
        tail = _F32_U16.pack(threshold, k)
        push_bytes = struct.pack("<%dq" % len(pushes), *pushes)
    except struct.error as err:
        raise ValueError("bad PUSH_DECIDE field: %s" % err) from None
    return b"".join((_model_ref(model), _str(user, "user"), _U16.pack(len(pushes)), push_bytes, mid, tail,
                     encode_context(events, decay, now)))


def encode_pin(model: str, version: int) -> bytes:
    """PIN: ``str`` model name, ``u64`` version (0 = unpin: the highest valid version serves again)."""
    return _str(model, "model name") + _u64(version, "version")


def encode_rollback(model: str) -> bytes:
    """ROLLBACK: ``str`` model name."""
    return _str(model, "model name")


# ---------------------------------------------------------------------------------------------------------- decoding


def parse_header(header: Union[bytes, bytearray, memoryview]) -> Tuple[int, int, int]:
    """(opcode, request id, payload length) of a 12-byte header; ProtocolError if it is not a Kairos v1 frame."""
    magic, version, opcode, _flags, request_id, length = HEADER.unpack_from(header)
    if magic != MAGIC:
        raise ProtocolError("response does not start with the Kairos magic byte (got 0x%02x): not a Kairos server?"
                            % magic)
    if version != VERSION:
        raise ProtocolError("response speaks protocol version %d; this client speaks %d" % (version, VERSION))
    if length > MAX_RESPONSE_PAYLOAD:
        raise ProtocolError("response payload of %d bytes is beyond this client's %d-byte guard"
                            % (length, MAX_RESPONSE_PAYLOAD))
    return opcode, request_id, length


class _Reader:
    """Bounds-checked reads from one payload; any overrun is a ProtocolError."""

    __slots__ = ("buf", "pos", "end", "what")

    def __init__(self, buf: Union[bytes, memoryview], what: str):
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.what = what

    def fail(self, detail: str) -> ProtocolError:
        return ProtocolError("malformed %s response: %s" % (self.what, detail))

    def unpack(self, st: struct.Struct) -> Tuple[Any, ...]:
        p = self.pos
        if p + st.size > self.end:
            raise self.fail("ends early")
        self.pos = p + st.size
        return st.unpack_from(self.buf, p)

    def u8(self) -> int:
        return self.unpack(_U8)[0]

    def u16(self) -> int:
        return self.unpack(_U16)[0]

    def u64(self) -> int:
        return self.unpack(_U64)[0]

    def string(self) -> str:
        n = self.u16()
        p = self.pos
        if p + n > self.end:
            raise self.fail("string runs past the end")
        self.pos = p + n
        try:
            return str(self.buf[p:p + n], "utf-8")
        except UnicodeDecodeError:
            raise self.fail("string is not UTF-8") from None

    def take(self, n: int) -> Union[bytes, memoryview]:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise self.fail("ends early")
        self.pos = p + n
        return self.buf[p:p + n]

    def finish(self) -> None:
        if self.pos != self.end:
            raise self.fail("%d unexpected bytes at the end" % (self.end - self.pos))


def _stamp(r: _Reader) -> ModelStamp:
    return ModelStamp(r.string(), r.u64())


def _limits(r: _Reader) -> Limits:
    return Limits(*r.unpack(_LIMITS))


def _scored_list(r: _Reader) -> List[ScoredItem]:
    """``u16 n``, n x (``str item``, ``f32 score``). Strings are variable-length, so this one is a loop per item."""
    n = r.u16()
    buf, p, end = r.buf, r.pos, r.end
    unpack_u16, unpack_f32 = _U16.unpack_from, _F32.unpack_from
    out: List[ScoredItem] = []
    append = out.append
    try:
        for _ in range(n):
            (ln,) = unpack_u16(buf, p)
            q = p + 2 + ln
            if q + 4 > end:
                raise r.fail("item list runs past the end")
            append(ScoredItem(str(buf[p + 2:q], "utf-8"), unpack_f32(buf, q)[0]))
            p = q + 4
    except struct.error:
        raise r.fail("item list runs past the end") from None
    except UnicodeDecodeError:
        raise r.fail("item is not UTF-8") from None
    r.pos = p
    return out


def _flags(v: int) -> AnswerFlags:
    return _FLAG_VALUES[v] if v < 4 else AnswerFlags(v)


_FLAG_VALUES = [AnswerFlags(i) for i in range(4)]


def _enum(cls: Any, v: int) -> Any:
    try:
        return cls(v)
    except ValueError:  # a newer server's value: keep the number
        return v


def decode_scores(payload: Union[bytes, memoryview], items: Sequence[str] = (), score_format: str = "array") -> Scores:
    r = _Reader(payload, "SCORE")
    model = _stamp(r)
    flags, n = r.unpack(_FLAGS_COUNT32)
    raw = r.take(4 * n)
    item_flags = bytes(r.take(n))
    r.finish()
    if score_format == "numpy":
        import numpy  # type: ignore[import-not-found, unused-ignore]

        scores: Any = numpy.frombuffer(raw, dtype="<f4", count=n).astype(numpy.float32)
    else:
        scores = array("f")
        scores.frombytes(raw)
        if _BIG_ENDIAN:
            scores.byteswap()
        if score_format == "list":
            scores = scores.tolist()
    if items and len(items) != n:
        raise ProtocolError("SCORE answered %d scores for %d candidates" % (n, len(items)))
    return Scores(model, _flags(flags), items, scores, item_flags)


def decode_ranking(payload: Union[bytes, memoryview], what: str = "TOPK") -> Ranking:
    r = _Reader(payload, what)
    model = _stamp(r)
    flags = r.u8()
    items = _scored_list(r)
    r.finish()
    return Ranking(model, _flags(flags), items)


def decode_push_decision(payload: Union[bytes, memoryview]) -> PushDecision:
    r = _Reader(payload, "PUSH_DECIDE")
    model = _stamp(r)
    flags, decision, reason, send_at = r.unpack(_PUSH_HEAD)
    items = _scored_list(r)
    r.finish()
    return PushDecision(model, _flags(flags), _enum(Decision, decision), _enum(Reason, reason), send_at, items)


def _model_infos(r: _Reader) -> List[ModelInfo]:
    models = []
    for _ in range(r.u16()):
        name = r.string()
        version, dims, items, users = r.unpack(_MODEL_INFO_MID)
        encoding = r.string()
        loaded_at, checksum = r.unpack(_MODEL_INFO_TAIL)
        models.append(ModelInfo(name, version, dims, items, users, encoding, loaded_at, checksum))
    return models


def decode_info(payload: Union[bytes, memoryview]) -> ServerInfo:
    r = _Reader(payload, "INFO")
    limits = _limits(r)
    models = _model_infos(r)
    r.finish()
    return ServerInfo(limits, models)


def decode_serving_report(payload: Union[bytes, memoryview], what: str = "RELOAD") -> ServingReport:
    """RELOAD / PIN / ROLLBACK: what serves after the operation, and the files rejected during it."""
    r = _Reader(payload, what)
    models = _model_infos(r)
    rejected = [r.string() for _ in range(r.u16())]
    r.finish()
    return ServingReport(models, rejected)


def decode_stats(payload: Union[bytes, memoryview]) -> ServerStats:
    r = _Reader(payload, "STATS")
    uptime, open_conns, total, n = r.unpack(_STATS_HEAD)
    ops = []
    for _ in range(n):
        op, requests, errors, p50, p99, p999 = r.unpack(_OP_STATS)
        ops.append(OpStats(op, Op.NAMES.get(op, "0x%02x" % op), requests, errors, p50, p99, p999))
    r.finish()
    return ServerStats(uptime, open_conns, total, ops)


def decode_hello(payload: Union[bytes, memoryview]) -> Hello:
    r = _Reader(payload, "HELLO")
    chosen = r.u8()
    versions = tuple(bytes(r.take(r.u8())))
    limits = _limits(r)
    server = r.string()
    r.finish()
    return Hello(chosen, versions, limits, server)


def decode_ping(payload: Union[bytes, memoryview]) -> None:
    if len(payload):
        raise ProtocolError("malformed PING response: %d unexpected bytes" % len(payload))
    return None


def decode_error(payload: Union[bytes, memoryview], request_id: Optional[int] = None) -> KairosError:
    """The exception an error response stands for."""
    r = _Reader(payload, "error")
    code = r.u16()
    message = r.string()
    r.finish()
    return error_for_code(code, message, request_id)


_DECODERS: Dict[int, Callable[..., Any]] = {
    Op.PING: decode_ping,
    Op.HELLO: decode_hello,
    Op.INFO: decode_info,
    Op.STATS: decode_stats,
    Op.TOPK: decode_ranking,
    Op.SIMILAR: lambda p: decode_ranking(p, "SIMILAR"),
    Op.PUSH_DECIDE: decode_push_decision,
    Op.RELOAD: decode_serving_report,
    Op.PIN: lambda p: decode_serving_report(p, "PIN"),
    Op.ROLLBACK: lambda p: decode_serving_report(p, "ROLLBACK"),
}


def decode_response(request_opcode: int, response_opcode: int, payload: Union[bytes, memoryview],
                    request_id: Optional[int] = None, items: Sequence[str] = (), score_format: str = "array") -> Any:
    """The result of a response to a request with ``request_opcode``; raises the server's error if it is one."""
    if response_opcode == ERROR_OPCODE:
        raise decode_error(payload, request_id)
    if response_opcode != request_opcode | 0x80:
        raise ProtocolError("response opcode 0x%02x does not answer request opcode 0x%02x"
                            % (response_opcode, request_opcode))
    if request_opcode == Op.SCORE:
        return decode_scores(payload, items, score_format)
    decoder = _DECODERS.get(request_opcode)
    if decoder is None:
        raise ProtocolError("no decoder for opcode 0x%02x" % request_opcode)
    return decoder(payload)


def closes_connection(err: KairosError) -> bool:
    """Whether the server closes the connection after sending this error."""
    return err.code in ErrorCode.CLOSES_CONNECTION
