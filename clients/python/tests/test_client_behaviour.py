"""Client behaviour against scripted servers (no Kairos needed): endpoint parsing, draining and misbehaving peers."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest

import kairos_client as kc
from kairos_client._endpoints import parse_endpoints


class ScriptedPeer:
    """Accepts any number of connections; answers each request frame with ``answer(opcode, request_id, payload)``
    (bytes to send, or None to close the connection)."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        with c:
            try:
                while True:
                    data = c.recv(65536)
                    if not data:
                        return
                    buf += data
                    while len(buf) >= 12:
                        length = struct.unpack_from("<I", buf, 8)[0]
                        if len(buf) < 12 + length:
                            break
                        opcode, rid = buf[2], struct.unpack_from("<I", buf, 4)[0]
                        payload, buf = buf[12:12 + length], buf[12 + length:]
                        self.requests += 1
                        out = self.answer(opcode, rid, payload)
                        if out is None:
                            return
                        c.sendall(out)
            except OSError:
                return

    def close(self):
        self.sock.close()


def frame(opcode, rid, payload=b""):
    return struct.pack("<BBBBII", 0xCA, 1, opcode, 0, rid, len(payload)) + payload


def error(rid, code, message=b"no"):
    return frame(0xFF, rid, struct.pack("<HH", code, len(message)) + message)


@pytest.fixture
def peers():
    made = []

    def make(answer):
        p = ScriptedPeer(answer)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def test_endpoint_forms():
    assert parse_endpoints("kairos-1", 7878) == [("kairos-1", 7878)]
    assert parse_endpoints("kairos-1:9000", 7878) == [("kairos-1", 9000)]
    assert parse_endpoints(("10.0.0.1", 1), 7878) == [("10.0.0.1", 1)]
    assert parse_endpoints([("10.0.0.1", 1), "10.0.0.2:2", "h3"], 7878) == [("10.0.0.1", 1), ("10.0.0.2", 2),
                                                                              ("h3", 7878)]
    assert parse_endpoints("::1", 7878) == [("::1", 7878)]  # IPv6 literal: not host:port
    with pytest.raises(ValueError):
        parse_endpoints([], 7878)
    with pytest.raises(ValueError):
        parse_endpoints("h:0", 7878)
    with pytest.raises(ValueError):
        kc.Client(timeout=0)
    with pytest.raises(ValueError):
        kc.Client(score_format="pandas")


def test_closed_client_refuses_calls():
    c = kc.Client(port=1)
    c.close()
    with pytest.raises(kc.KairosError):
        c.ping()


def test_shutting_down_answer_fails_over_to_the_next_endpoint(peers):
    draining = peers(lambda op, rid, p: error(rid, 11, b"draining"))
    healthy = peers(lambda op, rid, p: frame(op | 0x80, rid))
    with kc.Client([("127.0.0.1", draining.port), ("127.0.0.1", healthy.port)], timeout=5, backoff=30) as c:
        assert c.ping() is None
        assert c.ping() is None
        assert not c.endpoints[0].is_up()
    assert (draining.requests, healthy.requests) == (1, 2)
    with kc.Client("127.0.0.1", draining.port, timeout=5) as alone:
        with pytest.raises(kc.ShuttingDown) as e:
            alone.ping()
        assert e.value.code == 11 and e.value.message == "draining"


def test_async_shutting_down_answer_fails_over(peers):
    draining = peers(lambda op, rid, p: error(rid, 11))
    healthy = peers(lambda op, rid, p: frame(op | 0x80, rid))

    async def main():
        async with kc.AsyncClient([("127.0.0.1", draining.port), ("127.0.0.1", healthy.port)], timeout=5) as c:
            await asyncio.gather(*(c.ping() for _ in range(10)))
            return c.endpoints[0].is_up()

    assert asyncio.run(main()) is False
    assert healthy.requests == 10


def test_overloaded_answer_goes_elsewhere_and_keeps_the_connection(peers):
    """A request refused with OVERLOADED (too many scans waiting) was not processed: the blocking client sends it to
    the next endpoint; the refusing endpoint stays up and its connection is reused."""
    busy = peers(lambda op, rid, p: error(rid, 10, b"2 scans are already waiting or running; retry later"))
    healthy = peers(lambda op, rid, p: frame(op | 0x80, rid))
    with kc.Client([("127.0.0.1", busy.port), ("127.0.0.1", healthy.port)], timeout=5) as c:
        assert c.ping() is None
        assert c.ping() is None
        assert c.endpoints[0].is_up()
    assert (busy.requests, healthy.requests) == (2, 2)
    assert busy.connections == 1
    with kc.Client("127.0.0.1", busy.port, timeout=5) as alone:
        for _ in range(2):
            with pytest.raises(kc.Overloaded) as e:
                alone.ping()
            assert e.value.code == 10
    assert busy.connections == 2  # one more client, one more connection: the refusals did not close it

    async def main():  # the async client multiplexes one connection: it raises, and keeps that connection
        async with kc.AsyncClient("127.0.0.1", busy.port, timeout=5) as c:
            results = await asyncio.gather(*(c.ping() for _ in range(5)), return_exceptions=True)
            return [type(r) for r in results]

    assert asyncio.run(main()) == [kc.Overloaded] * 5
    assert busy.connections == 3


def test_unknown_error_code_keeps_its_number(peers):
    peer = peers(lambda op, rid, p: error(rid, 99, b"from the future"))
    with kc.Client("127.0.0.1", peer.port, timeout=5) as c:
        with pytest.raises(kc.KairosError) as e:
            c.ping()
        assert type(e.value) is kc.KairosError and e.value.code == 99 and "from the future" in str(e.value)


def test_answer_with_the_wrong_id_is_a_protocol_error(peers):
    peer = peers(lambda op, rid, p: frame(op | 0x80, rid + 1000))
    with kc.Client("127.0.0.1", peer.port, timeout=5) as c:
        with pytest.raises(kc.ProtocolError):
            c.ping()
        with pytest.raises(kc.ProtocolError):
            c.ping()
    assert peer.connections == 2  # the confused connection was not reused


def test_answer_that_is_not_kairos_is_a_protocol_error(peers):
    peer = peers(lambda op, rid, p: b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with kc.Client("127.0.0.1", peer.port, timeout=5) as c:
        with pytest.raises(kc.ProtocolError):
            c.ping()


def test_undecodable_answer_is_a_protocol_error(peers):
    peer = peers(lambda op, rid, p: frame(op | 0x80, rid, b"\x01\x02"))  # a SCORE answer of 2 bytes

    async def main():
        async with kc.AsyncClient("127.0.0.1", peer.port, timeout=5) as c:
            with pytest.raises(kc.ProtocolError):
                await c.score("default", "u", ["i"])

    asyncio.run(main())
    with kc.Client("127.0.0.1", peer.port, timeout=5) as c:
        with pytest.raises(kc.ProtocolError):
            c.score("default", "u", ["i"])


def test_connection_closed_without_answer_every_time(peers):
    peer = peers(lambda op, rid, p: None)

    async def main():
        async with kc.AsyncClient("127.0.0.1", peer.port, timeout=5) as c:
            with pytest.raises(kc.KairosConnectionError):
                await c.ping()

    asyncio.run(main())
    assert peer.connections == 2  # the first try and exactly one retry


class ChunkedSocket:
    """Stands in for a socket whose recv() returns the given chunks one by one (then EOF)."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self._real = socket.socket()  # only for poll registration

    def fileno(self):
        return self._real.fileno()

    def settimeout(self, t):
        pass

    def recv(self, n):
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        assert len(chunk) <= n
        return chunk

    def close(self):
        self._real.close()


@pytest.mark.parametrize("split", [1, 5, 12, 13, 700, 4096, 100000])
def test_frames_split_across_reads_are_reassembled(split):
    from kairos_client.client import _Conn, _Lost

    big = bytes(range(256)) * 200  # 51,200-byte payload
    stream = frame(0x90, 1, big) + frame(0x81, 2) + frame(0xFF, 3, struct.pack("<HH", 7, 2) + b"no")
    sock = ChunkedSocket([stream[i:i + split] for i in range(0, len(stream), split)])
    conn = _Conn(sock, 0)
    far = 1e18
    assert conn._read_frame(far) == (0x90, 1, big)
    assert conn._read_frame(far) == (0x81, 2, b"")
    assert conn._read_frame(far) == (0xFF, 3, struct.pack("<HH", 7, 2) + b"no")
    with pytest.raises(_Lost):
        conn._read_frame(far)
    sock.close()
