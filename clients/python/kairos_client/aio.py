"""The asyncio client: many requests in flight on one connection (pipelining), answers matched by request id;
catalogue scans on a second connection (see ``_SCAN_LANE``)."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

from . import protocol as P
from ._endpoints import DEFAULT_PORT, Endpoint, EndpointSpec, choose, parse_endpoints
from .errors import (
    KairosConnectionError,
    KairosError,
    KairosTimeoutError,
    ShuttingDown,
    Unavailable,
)
from .types import Decay, Hello, PushDecision, Ranking, Scores, ServerInfo, ServerStats, ServingReport

__all__ = ["AsyncClient"]

# The server answers each connection's requests in order, so a catalogue scan (milliseconds on a large catalogue)
# holds up every SCORE pipelined behind it on the same connection. Scans and admin operations therefore go on a
# connection of their own (lane 1); everything else on lane 0.
_SCAN_LANE = 1
_LANE_OF = {op: _SCAN_LANE for op in (P.Op.TOPK, P.Op.SIMILAR, P.Op.PUSH_DECIDE, P.Op.RELOAD, P.Op.PIN, P.Op.ROLLBACK)}


class _Lost(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One pipelined connection. Requests are queued and written together once per event-loop turn, without waiting
    for earlier answers; ``data_received`` splits the answers out of the stream and completes the waiting future of
    each request id (the server answers in order, but matching by id does not depend on it)."""

    def __init__(self, index: int, lane: int, loop: asyncio.AbstractEventLoop):
        self.index = index
        self.lane = lane
        self.loop = loop
        self.transport: Optional[asyncio.Transport] = None
        self.pending: Dict[int, asyncio.Future] = {}
        self.next_id = 1
        self.buf = bytearray()
        self.closed = False
        self.error: Optional[BaseException] = None  # why it closed
        self.received = 0  # frames received (a timeout with none since the request was sent means a dead peer)
        self.fresh = True
        self._out: List[bytes] = []  # frames written in this event-loop turn, sent together by _flush

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        pending = self.pending
        try:
            while end - pos >= P.HEADER_SIZE:
                op, rid, length = P.parse_header(buf[pos:pos + P.HEADER_SIZE])
                stop = pos + P.HEADER_SIZE + length
                if stop > end:
                    break
                body = bytes(buf[pos + P.HEADER_SIZE:stop])
                pos = stop
                self.received += 1
                fut = pending.pop(rid, None)
                if fut is not None:
                    if not fut.done():
                        fut.set_result((op, body))
                elif rid == 0 and op == P.ERROR_OPCODE:
                    # Connection-level error: a refusal (OVERLOADED, SHUTTING_DOWN) or a framing error. It answers
                    # nothing in particular; every request waiting on this connection fails with it.
                    self._fail(P.decode_error(body, 0))
                    return
                # else: the answer to a request that already timed out; dropped
        except KairosError as e:  # not a Kairos stream
            self._fail(e)
            return
        del buf[:pos]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._fail(_Lost(str(exc) if exc else "connection closed by the server"))

    def _fail(self, error: BaseException) -> None:
        if not self.closed:
            self.closed = True
            self.error = error
            if self.transport is not None:
                self.transport.close()
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)

    def close(self) -> None:
        self._fail(_Lost("closed by the client"))

    def _flush(self) -> None:
        """Sends every frame queued during this turn of the event loop in one write: with many requests in flight
        that is one system call for all of them instead of one each (the costliest part of a request)."""
        out, self._out = self._out, []
        if out and not self.closed:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[union-attr]

    async def request(self, opcode: int, payload: bytes, deadline: float) -> Tuple[int, int, bytes]:
        if self.closed:
            raise self.error or _Lost("closed")
        rid = self.next_id
        self.next_id = rid + 1 if rid < 0xFFFFFFFF else 1
        fut = self.loop.create_future()
        self.pending[rid] = fut
        received_before = self.received
        out = self._out
        if not out:
            self.loop.call_soon(self._flush)
        out.append(P.HEADER.pack(P.MAGIC, P.VERSION, opcode, 0, rid, len(payload)) + payload)
        timer = self.loop.call_at(deadline, _expire, fut)
        try:
            op, body = await fut
        except asyncio.TimeoutError:  # set by _expire (on 3.9/3.10 not the built-in TimeoutError)
            if self.received == received_before:
                # Nothing at all came back since this request was sent: the peer looks dead or hung. Drop the
                # connection so the next call reconnects (and fails over if it has to).
                self._fail(_Lost("no answer within the timeout"))
            raise
        finally:
            timer.cancel()
            self.pending.pop(rid, None)  # cancelled callers leave nothing behind
        return op, rid, body


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())


class AsyncClient:
    """asyncio Kairos client: same methods as ``Client``, as coroutines.

    Every concurrent call is written to one connection without waiting for earlier answers (pipelining); answers are
    matched by request id, so ``await asyncio.gather(*(client.score(...) for ...))`` keeps many requests in flight on
    one socket. Catalogue scans (topk, similar, push_decide) and admin calls use a second connection, so that a scan
    never holds up the scores behind it. Endpoints, timeouts, failover and the one retry on a fresh connection work
    as in ``Client``. Create it inside the event loop that uses it.
    """

    def __init__(
        self,
        host: Union[EndpointSpec, Sequence[EndpointSpec]] = "127.0.0.1",
        port: int = DEFAULT_PORT,
        timeout: float = 1.0,
        connect_timeout: Optional[float] = None,
        score_format: str = "array",
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ):
        if score_format not in ("array", "numpy", "list"):
            raise ValueError("score_format must be 'array', 'numpy' or 'list'")
        if score_format == "numpy":
            import numpy  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds, not %r" % (timeout,))
        self.endpoints: List[Endpoint] = [Endpoint(h, p) for h, p in parse_endpoints(host, port)]
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout) if connect_timeout is not None else self.timeout
        self.score_format = score_format
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._conns: List[Optional[_Connection]] = [None, None]  # per lane
        self._connecting: List[Optional[asyncio.Lock]] = [None, None]
        self._closed = False

    # ------------------------------------------------------------------------------------------------ public API

    async def ping(self) -> None:
        return await self._call(P.Op.PING, b"")

    async def hello(self, versions: Sequence[int] = (P.VERSION,)) -> Hello:
        return await self._call(P.Op.HELLO, P.encode_hello(versions))

    async def info(self) -> ServerInfo:
        return await self._call(P.Op.INFO, b"")

    async def stats(self) -> ServerStats:
        return await self._call(P.Op.STATS, b"")

    async def score(self, model: P.ModelLike, user: str, items: Sequence[str], events: Optional[Sequence[Any]] = None,
                    now: Optional[P.TimeLike] = None, decay: Optional[Decay] = None) -> Scores:
        items = items if isinstance(items, (list, tuple)) else list(items)
        return await self._call(P.Op.SCORE, P.encode_score(model, user, items, events, now, decay), items)

    async def topk(self, model: P.ModelLike, user: str, k: int, exclude: Optional[Sequence[str]] = None,
                   allow_repeats: bool = False, category: Optional[str] = None,
                   events: Optional[Sequence[Any]] = None, now: Optional[P.TimeLike] = None,
                   decay: Optional[Decay] = None, trending_weight: Optional[float] = None,
                   buy_again_weight: Optional[float] = None) -> Ranking:
        return await self._call(P.Op.TOPK, P.encode_topk(model, user, k, exclude, allow_repeats, category, events,
                                                         now, decay, trending_weight, buy_again_weight))

    async def similar(self, model: P.ModelLike, item: str, k: int, category: Optional[str] = None) -> Ranking:
        return await self._call(P.Op.SIMILAR, P.encode_similar(model, item, k, category))

    async def push_decide(self, model: P.ModelLike, user: str, now: Optional[P.TimeLike],
                          recent_pushes: Sequence[Any] = (), max_per_day: int = 2, max_per_week: int = 7,
                          min_gap: Any = 4 * 3600, quiet_hours: Optional[Tuple[int, int]] = (22, 8),
                          utc_offset_minutes: int = 0, threshold: float = 0.0, k: int = 3,
                          events: Optional[Sequence[Any]] = None, decay: Optional[Decay] = None) -> PushDecision:
        return await self._call(P.Op.PUSH_DECIDE, P.encode_push_decide(
            model, user, now, recent_pushes, max_per_day, max_per_week, min_gap, quiet_hours, utc_offset_minutes,
            threshold, k, events, decay))

    async def reload(self) -> ServingReport:
        return await self._call(P.Op.RELOAD, b"")

    async def pin(self, model: str, version: int) -> ServingReport:
        return await self._call(P.Op.PIN, P.encode_pin(model, version))

    async def unpin(self, model: str) -> ServingReport:
        return await self._call(P.Op.PIN, P.encode_pin(model, 0))

    async def rollback(self, model: str) -> ServingReport:
        """Not retried if the connection breaks after sending (a second ROLLBACK would go back one more version)."""
        return await self._call(P.Op.ROLLBACK, P.encode_rollback(model))

    async def close(self) -> None:
        """Closes the connections; requests still waiting fail."""
        self._closed = True
        conns, self._conns = self._conns, [None, None]
        for conn in conns:
            if conn is not None:
                conn.close()

    aclose = close

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -------------------------------------------------------------------------------------------------- internals

    async def _call(self, opcode: int, payload: bytes, items: Sequence[str] = ()) -> Any:
        if self._closed:
            raise KairosError("the client is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        tried: Set[int] = set()
        lane = _LANE_OF.get(opcode, 0)
        retried = False
        while True:
            conn = self._conns[lane]
            if conn is None or conn.closed:
                conn = await self._connect(lane, loop, deadline, tried)
            endpoint = self.endpoints[conn.index]
            try:
                rop, rid, body = await conn.request(opcode, payload, deadline)
            except _Lost as e:
                self._forget(conn)
                if self._closed:  # close() broke it: not a fault to retry, and no new connection after close
                    raise KairosConnectionError("the client was closed while the request was in flight") from None
                if conn.fresh:  # a brand-new connection broke: prefer another endpoint for the retry, if any
                    endpoint.mark_down(self._backoff, self._max_backoff)
                if opcode in P.Op.NOT_IDEMPOTENT:
                    raise KairosConnectionError(
                        "connection to %s:%d lost (%s) after sending %s: it may or may not have been applied, and is "
                        "not retried automatically" % (endpoint.host, endpoint.port, e, P.Op.NAMES[opcode])) from None
                if retried:
                    raise KairosConnectionError("connection to %s:%d lost (%s), on a fresh connection too"
                                                % (endpoint.host, endpoint.port, e)) from None
                retried = True
                continue
            except asyncio.TimeoutError:
                if conn.closed:
                    self._forget(conn)
                    endpoint.mark_down(self._backoff, self._max_backoff)
                raise KairosTimeoutError("no answer from %s:%d within %.3g s"
                                         % (endpoint.host, endpoint.port, self.timeout)) from None
            except Unavailable as e:
                self._forget(conn)
                endpoint.mark_down(self._backoff, self._max_backoff)
                tried.add(conn.index)
                if choose(self.endpoints, tried) is None:
                    raise e from None
                continue
            except KairosError:
                self._forget(conn)
                raise
            conn.fresh = False
            try:
                result = P.decode_response(opcode, rop, body, rid, items, self.score_format)
            except ShuttingDown as e:
                self._forget(conn)
                conn.close()
                endpoint.mark_down(self._backoff, self._max_backoff)
                tried.add(conn.index)
                if choose(self.endpoints, tried) is None:
                    raise e from None
                continue
            except KairosError as e:
                if e.code is None or P.closes_connection(e):
                    self._forget(conn)
                    conn.close()
                endpoint.mark_up()
                raise
            endpoint.mark_up()
            return result

    def _forget(self, conn: _Connection) -> None:
        if self._conns[conn.lane] is conn:
            self._conns[conn.lane] = None

    async def _connect(self, lane: int, loop: asyncio.AbstractEventLoop, deadline: float,
                       tried: Set[int]) -> _Connection:
        lock = self._connecting[lane]
        if lock is None:
            lock = self._connecting[lane] = asyncio.Lock()
        async with lock:  # concurrent callers share one connection attempt
            conn = self._conns[lane]
            if conn is not None and not conn.closed:
                return conn
            if self._closed:
                raise KairosConnectionError("the client was closed while the request was in flight")
            last_error: Optional[KairosError] = None
            while True:
                i = choose(self.endpoints, tried)
                if i is None:
                    raise last_error or KairosConnectionError("no Kairos endpoint could be reached")
                endpoint = self.endpoints[i]
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise KairosTimeoutError("no connection to %s:%d within %.3g s"
                                             % (endpoint.host, endpoint.port, self.timeout))
                conn = _Connection(i, lane, loop)
                try:
                    await asyncio.wait_for(loop.create_connection(lambda: conn, endpoint.host, endpoint.port),
                                           min(remaining, self.connect_timeout))
                except asyncio.TimeoutError:
                    last_error = KairosTimeoutError("connecting to %s:%d timed out" % endpoint.address)
                except OSError as e:
                    last_error = KairosConnectionError("cannot connect to %s:%d: %s"
                                                       % (endpoint.host, endpoint.port, e))
                else:
                    if self._closed:  # close() ran while this connection was being made
                        conn.close()
                        raise KairosConnectionError("the client was closed while the request was in flight")
                    self._conns[lane] = conn
                    return conn
                endpoint.mark_down(self._backoff, self._max_backoff)
                tried.add(i)
