"""The blocking client: thread-safe, a small connection pool per endpoint, failover across endpoints."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import weakref
from typing import Any, List, Optional, Sequence, Set, Tuple, Union

from . import protocol as P
from ._endpoints import DEFAULT_PORT, Endpoint, EndpointSpec, choose, parse_endpoints
from .errors import (KairosConnectionError, KairosError, KairosTimeoutError, Overloaded, ProtocolError, ShuttingDown,
                     Unavailable)
from .types import Decay, Hello, PushDecision, Ranking, Scores, ServerInfo, ServerStats, ServingReport

__all__ = ["Client"]

_SCORE_FORMATS = ("array", "numpy", "list")


class _Lost(Exception):
    """The connection broke (reset, closed by the peer) before a complete response arrived."""


class _Timeout(Exception):
    pass


class _Conn:
    """One TCP connection, used by one thread at a time: write a frame, read the frame that answers it."""

    __slots__ = ("sock", "index", "fresh", "next_id", "rbuf", "_poll")

    def __init__(self, sock: socket.socket, index: int):
        self.sock = sock
        self.index = index
        self.fresh = True  # never used yet: a failure on it says something about the endpoint, not a stale socket
        self.next_id = 1
        self.rbuf = b""
        if hasattr(select, "poll"):
            self._poll: Any = select.poll()
            self._poll.register(sock, select.POLLIN | select.POLLPRI)
        else:  # Windows
            self._poll = None

    def stale(self) -> bool:
        """An idle connection with something to read is closed (EOF), reset, or carries an unsolicited error (a
        server refusing or draining): either way it cannot be reused."""
        if self._poll is not None:
            return bool(self._poll.poll(0))
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def roundtrip(self, opcode: int, payload: bytes, deadline: float) -> Tuple[int, int, bytes]:
        """Sends one request and returns (response opcode, request id, payload) of its answer."""
        rid = self.next_id
        self.next_id = rid + 1 if rid < 0xFFFFFFFF else 1
        sock = self.sock
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout()
        data = P.HEADER.pack(P.MAGIC, P.VERSION, opcode, 0, rid, len(payload)) + payload
        try:
            sock.settimeout(remaining)
            try:
                sock.sendall(data)
            except socket.timeout:
                raise
            except OSError as e:
                # The server may have answered and closed before reading everything (FRAME_TOO_LARGE is decided
                # from the header): its error says more than a broken pipe.
                answer = self._error_left_behind()
                if answer is not None:
                    raise answer from None
                raise _Lost(str(e) or type(e).__name__) from None
            while True:
                op, got, body = self._read_frame(deadline)
                if got == rid:
                    return op, rid, body
                if got == 0 and op == P.ERROR_OPCODE:
                    # A connection-level error (OVERLOADED / SHUTTING_DOWN refusal, framing error): not our answer.
                    raise P.decode_error(body, 0)
                raise ProtocolError("response for request id %d while waiting for %d" % (got, rid))
        except socket.timeout:
            raise _Timeout() from None
        except (ConnectionError, OSError) as e:
            if isinstance(e, KairosError):
                raise
            raise _Lost(str(e) or type(e).__name__) from None

    def _error_left_behind(self) -> Optional[KairosError]:
        try:
            op, _rid, body = self._read_frame(time.monotonic() + 0.1)
            return P.decode_error(body, _rid) if op == P.ERROR_OPCODE else None
        except (OSError, KairosError, _Lost, _Timeout):
            return None

    def _read_frame(self, deadline: float) -> Tuple[int, int, bytes]:
        """The next whole frame: (opcode, request id, payload). Usually one recv() holds all of it."""
        buf = self.rbuf
        if len(buf) >= P.HEADER_SIZE:
            op, rid, length = P.parse_header(buf)
            need = P.HEADER_SIZE + length
            if len(buf) >= need:
                self.rbuf = buf[need:]
                return op, rid, buf[P.HEADER_SIZE:need]
        else:
            need = P.HEADER_SIZE
        acc = bytearray(buf)
        sock = self.sock
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout()
            sock.settimeout(remaining)
            chunk = sock.recv(max(65536, need - len(acc)))
            if not chunk:
                raise _Lost("connection closed by the server")
            if not acc and len(chunk) >= P.HEADER_SIZE:
                op, rid, length = P.parse_header(chunk)
                need = P.HEADER_SIZE + length
                if len(chunk) >= need:  # the common case: the whole answer in one read, sliced once
                    self.rbuf = chunk[need:]
                    return op, rid, chunk[P.HEADER_SIZE:need]
            acc += chunk
            if len(acc) >= P.HEADER_SIZE:
                op, rid, length = P.parse_header(acc)
                need = P.HEADER_SIZE + length
                if len(acc) >= need:
                    self.rbuf = bytes(acc[need:])
                    return op, rid, bytes(acc[P.HEADER_SIZE:need])


_live_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Pooled sockets are shared with the parent after fork(): never use them in the child (two processes reading one
    # socket would steal each other's answers). Closing the child's descriptors leaves the parent's connections open.
    for c in list(_live_clients):
        c._drop_pools()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """Blocking Kairos client. One instance per process, shared by every thread.

    ``Client()`` talks to 127.0.0.1:7878; ``Client("kairos-1", 7878)``; ``Client([("10.0.0.1", 7878),
    ("10.0.0.2", 7878)])`` fails over from the first to the next when one cannot be reached or refuses.

    - ``timeout``: seconds for a whole call (connect, send, answer); past it, ``KairosTimeoutError`` (a
      ``TimeoutError``). ``connect_timeout`` caps one connection attempt (so a dead endpoint leaves time to try the
      next one).
    - ``pool_size``: idle connections kept per endpoint. Threads never wait for a connection: when all pooled ones are
      busy a new one is opened, and closed on return if the pool is full.
    - ``score_format``: how ``score()`` returns scores: ``"array"`` (``array.array('f')``, default), ``"numpy"``
      (``numpy.ndarray`` float32; needs numpy) or ``"list"``.

    A connection that breaks is dropped and the call is retried once on a fresh connection (every operation but the
    admin ROLLBACK is idempotent: the server keeps no per-request state). Server errors raise ``KairosError``
    subclasses.
    """

    def __init__(
        self,
        host: Union[EndpointSpec, Sequence[EndpointSpec]] = "127.0.0.1",
        port: int = DEFAULT_PORT,
        timeout: float = 1.0,
        pool_size: int = 8,
        connect_timeout: Optional[float] = None,
        score_format: str = "array",
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ):
        if score_format not in _SCORE_FORMATS:
            raise ValueError("score_format must be one of %s" % (_SCORE_FORMATS,))
        if score_format == "numpy":
            import numpy  # type: ignore[import-not-found, unused-ignore]  # noqa: F401  (fail now, not on the first call)
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds, not %r" % (timeout,))
        self.endpoints: List[Endpoint] = [Endpoint(h, p) for h, p in parse_endpoints(host, port)]
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout) if connect_timeout is not None else self.timeout
        self.pool_size = int(pool_size)
        self.score_format = score_format
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._idle: List[List[_Conn]] = [[] for _ in self.endpoints]
        self._closed = False
        _live_clients.add(self)

    # ------------------------------------------------------------------------------------------------ public API

    def ping(self) -> None:
        """Round trip to the server (raises if it does not answer)."""
        return self._call(P.Op.PING, b"")

    def hello(self, versions: Sequence[int] = (P.VERSION,)) -> Hello:
        """Protocol versions both sides speak, the server's limits and name."""
        return self._call(P.Op.HELLO, P.encode_hello(versions))

    def info(self) -> ServerInfo:
        """Limits and the loaded models (name, version, size, checksum)."""
        return self._call(P.Op.INFO, b"")

    def stats(self) -> ServerStats:
        """Uptime, connections, per-operation counts and server-side latencies."""
        return self._call(P.Op.STATS, b"")

    def score(self, model: P.ModelLike, user: str, items: Sequence[str], events: Optional[Sequence[Any]] = None,
              now: Optional[P.TimeLike] = None, decay: Optional[Decay] = None) -> Scores:
        """Scores of ``items`` for ``user``, in the order given (NaN for items the model does not know).

        ``events``: what the user just did, as ``Event(item, strength, timestamp)`` or plain tuples; ``now``: the
        reference time (unix seconds or datetime; default the server's clock); ``decay``: override the model's event
        decay (``Decay.exponential(3600)``, ...)."""
        items = items if isinstance(items, (list, tuple)) else list(items)
        return self._call(P.Op.SCORE, P.encode_score(model, user, items, events, now, decay), items)

    def topk(self, model: P.ModelLike, user: str, k: int, exclude: Optional[Sequence[str]] = None,
             allow_repeats: bool = False, category: Optional[str] = None, events: Optional[Sequence[Any]] = None,
             now: Optional[P.TimeLike] = None, decay: Optional[Decay] = None, trending_weight: Optional[float] = None,
             buy_again_weight: Optional[float] = None) -> Ranking:
        """The user's best ``k`` items. Items in the user's history (and the events' items) are left out unless
        ``allow_repeats``; ``exclude`` items never appear; ``category`` keeps one category. Giving
        ``trending_weight`` and/or ``buy_again_weight`` replaces the model's blend weights."""
        return self._call(P.Op.TOPK, P.encode_topk(model, user, k, exclude, allow_repeats, category, events, now,
                                                   decay, trending_weight, buy_again_weight))

    def similar(self, model: P.ModelLike, item: str, k: int, category: Optional[str] = None) -> Ranking:
        """The ``k`` items most similar to ``item`` (``UnknownItem`` if the model does not know it)."""
        return self._call(P.Op.SIMILAR, P.encode_similar(model, item, k, category))

    def push_decide(self, model: P.ModelLike, user: str, now: Optional[P.TimeLike], recent_pushes: Sequence[Any] = (),
                    max_per_day: int = 2, max_per_week: int = 7, min_gap: Any = 4 * 3600,
                    quiet_hours: Optional[Tuple[int, int]] = (22, 8), utc_offset_minutes: int = 0,
                    threshold: float = 0.0, k: int = 3, events: Optional[Sequence[Any]] = None,
                    decay: Optional[Decay] = None) -> PushDecision:
        """Whether to push to ``user`` now, what, and if not now, when. You keep the user's push history and pass it
        as ``recent_pushes`` (unix seconds or datetimes); ``quiet_hours=(start, end)`` in the user's local hours
        (``utc_offset_minutes`` from UTC), None for none; ``min_gap`` seconds or a timedelta; caps of 0 mean none."""
        return self._call(P.Op.PUSH_DECIDE, P.encode_push_decide(
            model, user, now, recent_pushes, max_per_day, max_per_week, min_gap, quiet_hours, utc_offset_minutes,
            threshold, k, events, decay))

    # Admin operations (operators on a trusted network): they load model files, so give them a generous timeout.

    def reload(self) -> ServingReport:
        """Rescans the server's models folder now (like SIGHUP); returns what serves and the files rejected."""
        return self._call(P.Op.RELOAD, b"")

    def pin(self, model: str, version: int) -> ServingReport:
        """Makes ``model`` serve exactly ``version`` (a valid file in the folder) until unpinned; ``UnknownModel`` if
        there is no such version (nothing changes)."""
        return self._call(P.Op.PIN, P.encode_pin(model, version))

    def unpin(self, model: str) -> ServingReport:
        """The highest valid version of ``model`` serves again."""
        return self._call(P.Op.PIN, P.encode_pin(model, 0))

    def rollback(self, model: str) -> ServingReport:
        """Pins the highest valid version below the one serving (``UnknownModel`` if there is none). Not retried if
        the connection breaks after sending: a second ROLLBACK would go back one more version."""
        return self._call(P.Op.ROLLBACK, P.encode_rollback(model))

    def close(self) -> None:
        """Closes the pooled connections. Calls after close() raise."""
        self._closed = True
        self._drop_pools()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Client(%s, timeout=%s, pool_size=%d)" % (self.endpoints, self.timeout, self.pool_size)

    # -------------------------------------------------------------------------------------------------- internals

    def _drop_pools(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, [[] for _ in self.endpoints]
        for conns in idle:
            for c in conns:
                c.close()

    def _call(self, opcode: int, payload: bytes, items: Sequence[str] = ()) -> Any:
        if self._closed:
            raise KairosError("the client is closed")
        deadline = time.monotonic() + self.timeout
        tried: Set[int] = set()
        retried = False
        fresh = False
        cause: Optional[KairosError] = None
        while True:
            conn = self._acquire(deadline, tried, fresh, cause)
            endpoint = self.endpoints[conn.index]
            try:
                rop, rid, body = conn.roundtrip(opcode, payload, deadline)
            except _Lost as e:
                conn.close()
                if conn.fresh:  # a brand-new connection broke: prefer another endpoint for the retry, if any
                    endpoint.mark_down(self._backoff, self._max_backoff)
                cause = KairosConnectionError("connection to %s:%d lost (%s)%s" % (
                    endpoint.host, endpoint.port, e, ", on a fresh connection too" if retried else ""))
                if opcode in P.Op.NOT_IDEMPOTENT:
                    raise KairosConnectionError(
                        "connection to %s:%d lost (%s) after sending %s: it may or may not have been applied, and is "
                        "not retried automatically" % (endpoint.host, endpoint.port, e, P.Op.NAMES[opcode])) from None
                if retried:
                    raise cause from None
                retried = True
                fresh = True
                continue
            except _Timeout:
                conn.close()  # a late answer would arrive on it: never reuse
                endpoint.mark_down(self._backoff, self._max_backoff)
                raise KairosTimeoutError("no answer from %s:%d within %.3g s" % (endpoint.host, endpoint.port,
                                                                              self.timeout)) from None
            except Unavailable as e:  # refused at connect (OVERLOADED) or draining (SHUTTING_DOWN): not processed
                conn.close()
                endpoint.mark_down(self._backoff, self._max_backoff)
                tried.add(conn.index)
                if choose(self.endpoints, tried) is None:
                    raise e from None
                continue
            except KairosError:  # framing error or an undecodable answer: the stream cannot be trusted any more
                conn.close()
                raise
            conn.fresh = False
            try:
                result = P.decode_response(opcode, rop, body, rid, items, self.score_format)
            except ShuttingDown as e:  # an answer "not processed, I am draining": safe to send elsewhere
                conn.close()
                endpoint.mark_down(self._backoff, self._max_backoff)
                tried.add(conn.index)
                if choose(self.endpoints, tried) is None:
                    raise e from None
                continue
            except Overloaded as e:  # a scan refused unprocessed (too many waiting there): the connection stays good
                self._release(conn)
                tried.add(conn.index)
                if choose(self.endpoints, tried) is None:
                    raise e from None
                continue
            except KairosError as e:
                if e.code is None or P.closes_connection(e):
                    conn.close()
                else:
                    self._release(conn)
                endpoint.mark_up()
                raise
            self._release(conn)
            endpoint.mark_up()
            return result

    def _acquire(self, deadline: float, tried: Set[int], fresh: bool, cause: Optional[KairosError] = None) -> _Conn:
        last_error = cause
        while True:
            i = choose(self.endpoints, tried)
            if i is None:
                raise last_error or KairosConnectionError("no Kairos endpoint could be reached")
            if not fresh:
                pool = self._idle[i]
                while True:
                    with self._lock:
                        conn = pool.pop() if pool else None
                    if conn is None:
                        break
                    if not conn.stale():
                        return conn
                    conn.close()
            endpoint = self.endpoints[i]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KairosTimeoutError("no connection to %s:%d within %.3g s" % (endpoint.host, endpoint.port,
                                                                                self.timeout))
            try:
                sock = socket.create_connection(endpoint.address, timeout=min(remaining, self.connect_timeout))
            except socket.timeout:
                last_error = KairosTimeoutError("connecting to %s:%d timed out" % endpoint.address)
            except OSError as e:
                last_error = KairosConnectionError("cannot connect to %s:%d: %s" % (endpoint.host, endpoint.port, e))
            else:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return _Conn(sock, i)
            endpoint.mark_down(self._backoff, self._max_backoff)
            tried.add(i)

    def _release(self, conn: _Conn) -> None:
        with self._lock:
            pool = self._idle[conn.index] if conn.index < len(self._idle) else None
            if pool is not None and len(pool) < self.pool_size and not self._closed:
                pool.append(conn)
                return
        conn.close()
