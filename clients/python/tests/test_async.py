"""AsyncClient: every method, pipelining on one connection with answers matched by id, errors that fail only their own
request, timeouts, reconnect and retry, failover. No pytest plugin needed: each test runs its own event loop."""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import threading
import time

import pytest

import kairos_client as kc
from kairos_test_support import DroppingProxy, free_port

NOW = 1767225600


def run(coro):
    return asyncio.run(coro)


def test_every_method_matches_the_sync_client(server):
    items = ["item-1", "item-2", "nope"]
    with kc.Client("127.0.0.1", server.port, timeout=5) as sync:
        want = (
            sync.hello(),
            sync.info(),
            sync.score("default", "user-1", items, events=[("item-7", 2.0, NOW - 60)], now=NOW),
            sync.topk("default", "user-1", 5, category="category-3"),
            sync.similar("default", "item-1", 5),
            sync.push_decide("default", "user-1", NOW, recent_pushes=[NOW - 3600]),
        )

    async def main():
        async with kc.AsyncClient("127.0.0.1", server.port, timeout=5) as c:
            assert await c.ping() is None
            stats = await c.stats()
            assert stats.open_connections >= 1
            return (
                await c.hello(),
                await c.info(),
                await c.score("default", "user-1", items, events=[("item-7", 2.0, NOW - 60)], now=NOW),
                await c.topk("default", "user-1", 5, category="category-3"),
                await c.similar("default", "item-1", 5),
                await c.push_decide("default", "user-1", NOW, recent_pushes=[NOW - 3600]),
            )

    got = run(main())
    assert got[:2] == want[:2]
    score, sync_score = got[2], want[2]
    assert score.scores.tobytes() == sync_score.scores.tobytes() and math.isnan(score.scores[2])
    assert (score.model, score.flags, score.item_flags) == (sync_score.model, sync_score.flags, sync_score.item_flags)
    assert got[3:] == want[3:]
    assert len(got[3]) == 5 and got[5].model_version == 1


def test_pipelining_many_requests_on_one_connection(server):
    n = 300
    items = ["item-%d" % i for i in range(2000)]
    with kc.Client("127.0.0.1", server.port, timeout=5) as sync:
        expected = sync.score("default", "user-9", items).scores.tobytes()
        connections_before = sync.stats().total_connections

    async def main():
        async with kc.AsyncClient("127.0.0.1", server.port, timeout=10) as c:
            await c.ping()
            conn = c._conns[0]
            tasks = [asyncio.ensure_future(c.score("default", "user-9", items[(i * 7) % 1900:(i * 7) % 1900 + 100]))
                     for i in range(n)]
            await asyncio.sleep(0)  # every task runs up to its await: all n requests are written, none answered yet
            in_flight = len(conn.pending)
            results = await asyncio.gather(*tasks)
            stats = await c.stats()
            return in_flight, results, c._conns[0] is conn, stats

    in_flight, results, same_connection, stats = run(main())
    assert in_flight == n
    assert same_connection
    for i, r in enumerate(results):
        start = (i * 7) % 1900
        assert r.items[0] == items[start]
        assert r.scores.tobytes() == expected[4 * start:4 * (start + 100)], "answer %d matched to the wrong request" % i
    # One connection for the whole pipeline (plus the sync client's, counted before).
    assert stats.total_connections == connections_before + 1


def test_answers_are_matched_by_id_not_by_order():
    """A scripted server that answers a batch of requests in reverse order."""
    n = 20
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    errors = []

    def serve():
        try:
            conn, _ = lsock.accept()
            with conn:
                conn.settimeout(10)
                buf = b""
                frames = []
                while len(frames) < n:
                    buf += conn.recv(65536)
                    while len(buf) >= 12:
                        length = struct.unpack_from("<I", buf, 8)[0]
                        if len(buf) < 12 + length:
                            break
                        frames.append(buf[:12 + length])
                        buf = buf[12 + length:]
                for f in reversed(frames):
                    rid = struct.unpack_from("<I", f, 4)[0]
                    # SIMILAR's payload: model, item, k, category. Answer with the asked item's name + "-similar".
                    name_len = struct.unpack_from("<H", f, 12)[0]
                    p = 12 + 2 + name_len + 8
                    item_len = struct.unpack_from("<H", f, p)[0]
                    item = f[p + 2:p + 2 + item_len]
                    answer = item + b"-similar"
                    payload = (struct.pack("<H", 7) + b"default" + struct.pack("<QBH", 1, 0, 1)
                               + struct.pack("<H", len(answer)) + answer + struct.pack("<f", 0.5))
                    conn.sendall(struct.pack("<BBBBII", 0xCA, 1, 0x92, 0, rid, len(payload)) + payload)
        except Exception as e:
            errors.append(repr(e))
        finally:
            lsock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    async def main():
        async with kc.AsyncClient("127.0.0.1", port, timeout=10) as c:
            return await asyncio.gather(*(c.similar("default", "item-%d" % i, 1) for i in range(n)))

    results = run(main())
    t.join(10)
    assert errors == []
    assert [r.items[0].item for r in results] == ["item-%d-similar" % i for i in range(n)]


def test_a_scan_in_progress_does_not_hold_up_the_requests_behind_it():
    """Like kairos serve, this stand-in answers each connection in order; it never finishes a TOPK, so on a shared
    connection every request behind one would wait for it. Scans go on a connection of their own."""

    async def main():
        scan_arrived = asyncio.Event()
        writers = []

        async def handle(reader, writer):
            writers.append(writer)
            blocked = False
            try:
                while True:
                    header = await reader.readexactly(12)
                    await reader.readexactly(struct.unpack_from("<I", header, 8)[0])
                    if header[2] == 0x11:
                        blocked = True
                        scan_arrived.set()
                    if not blocked:
                        rid = struct.unpack_from("<I", header, 4)[0]
                        writer.write(struct.pack("<BBBBII", 0xCA, 1, header[2] | 0x80, 0, rid, 0))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with kc.AsyncClient("127.0.0.1", port, timeout=3) as c:
                scan = asyncio.ensure_future(c.topk("m", "u", 10))
                await scan_arrived.wait()  # the TOPK is with the server before the PINGs are sent
                for _ in range(3):
                    assert await c.ping() is None
                assert len(writers) == 2
            with pytest.raises(kc.KairosConnectionError):  # closing the client fails it; it is not retried
                await scan
            assert len(writers) == 2
        finally:
            for w in writers:
                w.close()
            server.close()
            await server.wait_closed()

    run(main())


def test_errors_in_a_pipeline_fail_only_their_own_request(server):
    async def main():
        async with kc.AsyncClient("127.0.0.1", server.port, timeout=5) as c:
            calls = []
            for i in range(30):
                if i % 3 == 0:
                    calls.append(c.score("nope", "user-1", ["item-1"]))
                elif i % 3 == 1:
                    calls.append(c.similar("default", "no-such-item", 3))
                else:
                    calls.append(c.topk("default", "user-1", 3))
            results = await asyncio.gather(*calls, return_exceptions=True)
            await c.ping()  # the connection is still up
            return results

    results = run(main())
    for i, r in enumerate(results):
        expected = (kc.UnknownModel, kc.UnknownItem, kc.Ranking)[i % 3]
        assert isinstance(r, expected), (i, r)


def test_async_limits_and_bad_requests(server):
    async def main():
        async with kc.AsyncClient("127.0.0.1", server.port, timeout=5) as c:
            with pytest.raises(kc.LimitExceeded):
                await c.topk("default", "user-1", 5000)
            with pytest.raises(kc.BadRequest):
                await c.push_decide("default", "user-1", NOW, quiet_hours=(30, 1))
            with pytest.raises(kc.FrameTooLarge):
                await c.score("default", "user-1", ["x" * 1000] * 9000)
            return await c.similar("default", "item-3", 2)

    assert len(run(main())) == 2


def test_async_timeout_then_reconnect(silent_server):
    async def main():
        async with kc.AsyncClient("127.0.0.1", silent_server.port, timeout=0.3) as c:
            started = time.monotonic()
            with pytest.raises(kc.KairosTimeoutError) as e:
                await c.ping()
            elapsed = time.monotonic() - started
            assert isinstance(e.value, TimeoutError)
            assert 0.29 <= elapsed < 2.0, elapsed
            assert c._conns[0] is None  # nothing came back at all: the connection was dropped
            with pytest.raises(TimeoutError):
                await c.ping()

    run(main())
    assert len(silent_server.accepted) == 2


def test_async_reconnects_after_the_server_closes_an_idle_connection(start_server):
    srv = start_server("--idle-timeout", "1")

    async def main():
        async with kc.AsyncClient("127.0.0.1", srv.port, timeout=5) as c:
            await c.ping()
            first = c._conns[0]
            deadline = time.monotonic() + 15
            while not first.closed:  # the event loop must run to notice the close
                assert time.monotonic() < deadline, "the server did not close the idle connection"
                await asyncio.sleep(0.02)
            await c.ping()
            assert c._conns[0] is not first
            return (await c.stats()).total_connections

    assert run(main()) == 2


def test_async_pipeline_survives_a_dropped_connection(server):
    proxy = DroppingProxy(server.port)
    try:
        async def main():
            async with kc.AsyncClient("127.0.0.1", proxy.port, timeout=10) as c:
                await c.ping()
                proxy.drop_requests = 1
                return await asyncio.gather(*(c.score("default", "user-1", ["item-%d" % i]) for i in range(50)))

        results = run(main())
        assert [r.items[0] for r in results] == ["item-%d" % i for i in range(50)]
        assert (proxy.dropped, proxy.connections) == (1, 2)  # every request retried on one fresh connection
    finally:
        proxy.close()


def test_async_failover(server, start_server):
    full = start_server("--max-connections", "1")

    async def main():
        async with kc.AsyncClient([("127.0.0.1", free_port()), ("127.0.0.1", server.port)], timeout=5,
                                  backoff=30) as c:
            results = await asyncio.gather(*(c.similar("default", "item-%d" % i, 2) for i in range(20)))
            assert all(len(r) == 2 for r in results)
            assert not c.endpoints[0].is_up() and c.endpoints[0].failures == 1
        async with kc.AsyncClient("127.0.0.1", full.port, timeout=5) as holder:
            await holder.ping()
            async with kc.AsyncClient("127.0.0.1", full.port, timeout=5) as refused:
                with pytest.raises(kc.Overloaded):
                    await refused.ping()
            async with kc.AsyncClient([full.address, server.address], timeout=5) as c:
                assert await c.ping() is None
                assert not c.endpoints[0].is_up()

    run(main())


def test_async_numpy_scores(server):
    np = pytest.importorskip("numpy")

    async def main():
        async with kc.AsyncClient("127.0.0.1", server.port, score_format="numpy") as c:
            return await c.score("default", "user-2", ["item-%d" % i for i in range(1000)])

    r = run(main())
    assert isinstance(r.scores, np.ndarray) and r.scores.shape == (1000,) and np.isfinite(r.scores).all()


def test_async_rolling_restart_loses_no_request(start_server):
    first, second = start_server(), start_server()

    async def main():
        done = 0
        async with kc.AsyncClient([first.address, second.address], timeout=5, backoff=30) as c:
            async def worker(t):
                nonlocal done
                for i in range(150):
                    r = await c.topk("default", "user-%d" % t, 3)
                    assert len(r) == 3
                    done += 1
                    if done == 200:
                        first.proc.send_signal(15)  # SIGTERM: drain, then exit

            await asyncio.gather(*(worker(t) for t in range(8)))
            return done, c.endpoints[0].is_up()

    done, first_up = run(main())
    assert done == 8 * 150
    assert first.proc.wait(20) == 0
    assert first_up is False
