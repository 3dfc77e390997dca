"""The sync client when things go wrong: timeouts, dropped connections, dead endpoints, refusals, many threads, fork."""

from __future__ import annotations

import os
import threading
import time

import pytest

import kairos_client as kc
from kairos_test_support import DroppingProxy, free_port, wait_until


@pytest.fixture
def proxy(server):
    p = DroppingProxy(server.port)
    yield p
    p.close()


def _total_connections(port):
    with kc.Client("127.0.0.1", port, timeout=5) as c:
        return c.stats().total_connections - 1  # minus this one


# ------------------------------------------------------------------------------------------------ timeouts


def test_timeout_on_a_server_that_never_answers(silent_server):
    with kc.Client("127.0.0.1", silent_server.port, timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(kc.KairosTimeoutError) as e:
            c.ping()
        elapsed = time.monotonic() - started
        assert isinstance(e.value, TimeoutError) and isinstance(e.value, kc.KairosError)
        assert 0.29 <= elapsed < 2.0, elapsed
        wait_until(lambda: silent_server.received >= 12, what="the request to reach the silent server")
        # The timed-out connection is not reused (a late answer would be read as the next one's).
        with pytest.raises(TimeoutError):
            c.ping()
        assert len(silent_server.accepted) == 2


def test_a_hung_endpoint_times_out_once_then_traffic_fails_over(silent_server, server):
    with kc.Client([("127.0.0.1", silent_server.port), ("127.0.0.1", server.port)], timeout=0.3, backoff=30) as c:
        with pytest.raises(kc.KairosTimeoutError):
            c.ping()
        assert not c.endpoints[0].is_up()
        for _ in range(5):
            assert c.score("default", "user-1", ["item-1"]).model_version == 1
        assert len(silent_server.accepted) == 1


# ------------------------------------------------------------------------------------------------ reconnect / retry


def test_reconnects_after_the_server_closes_an_idle_connection(start_server):
    srv = start_server("--idle-timeout", "1")
    with kc.Client("127.0.0.1", srv.port, timeout=5) as c:
        c.ping()
        (pooled,) = c._idle[0]
        wait_until(pooled.stale, timeout=15, what="the server to close the idle connection")
        assert c.ping() is None
        assert c.stats().total_connections == 2  # the dropped one and its replacement
        assert c._idle[0][0] is not pooled


def test_retries_once_on_a_fresh_connection_when_a_pooled_one_breaks(proxy):
    with kc.Client("127.0.0.1", proxy.port, timeout=5) as c:
        assert c.info().model("default").version == 1
        assert proxy.connections == 1
        proxy.drop_requests = 1  # the pooled connection breaks under the next request
        assert c.score("default", "user-1", ["item-1"]).model_version == 1
        assert (proxy.dropped, proxy.connections) == (1, 2)


def test_gives_up_after_one_retry(proxy):
    proxy.drop_requests = 100
    with kc.Client("127.0.0.1", proxy.port, timeout=5) as c:
        with pytest.raises(kc.KairosConnectionError) as e:
            c.ping()
        assert isinstance(e.value, ConnectionError)
        assert (proxy.dropped, proxy.connections) == (2, 2)


# ------------------------------------------------------------------------------------------------ failover


def test_failover_skips_a_dead_endpoint(server):
    dead = free_port()
    with kc.Client([("127.0.0.1", dead), "127.0.0.1:%d" % server.port], timeout=2, backoff=30) as c:
        for i in range(20):
            assert c.score("default", "user-1", ["item-%d" % i]).model_version == 1
        assert not c.endpoints[0].is_up() and c.endpoints[1].is_up()
        assert c.endpoints[0].failures == 1  # tried once, then avoided during its back-off


def test_all_endpoints_dead_is_a_connection_error():
    with kc.Client([("127.0.0.1", free_port()), ("127.0.0.1", free_port())], timeout=2) as c:
        with pytest.raises(kc.KairosConnectionError) as e:
            c.ping()
        assert "cannot connect" in str(e.value)


def test_failover_when_the_primary_stops(start_server, server):
    primary = start_server()
    with kc.Client([primary.address, server.address], timeout=5, backoff=30) as c:
        assert c.ping() is None
        assert _total_connections(primary.port) == 1  # the client is on the primary
        assert primary.stop() == 0
        assert c.topk("default", "user-1", 3).model_version == 1
        assert not c.endpoints[0].is_up() and c.endpoints[1].is_up()


def test_overloaded_server_refuses_and_the_client_fails_over(start_server, server):
    full = start_server("--max-connections", "1")
    with kc.Client("127.0.0.1", full.port, timeout=5) as holder:
        holder.ping()  # holds the only connection slot (pooled)
        with kc.Client("127.0.0.1", full.port, timeout=5) as refused:
            with pytest.raises(kc.Overloaded) as e:
                refused.ping()
            assert e.value.code == 10 and isinstance(e.value, kc.Unavailable)
        with kc.Client([full.address, server.address], timeout=5, backoff=30) as c:
            assert c.ping() is None
            assert not c.endpoints[0].is_up()
        assert holder.ping() is None


# ------------------------------------------------------------------------------------------------ threads, fork


@pytest.mark.parametrize("threads,pool_size", [(16, 16), (12, 2)])
def test_threads_share_one_client(server, threads, pool_size):
    items = ["item-%d" % i for i in range(2000)]
    with kc.Client("127.0.0.1", server.port, timeout=5) as ref:
        expected = ref.score("default", "user-7", items).scores.tobytes()
    before = _total_connections(server.port)
    calls_per_thread = 60
    errors = []
    barrier = threading.Barrier(threads)

    with kc.Client("127.0.0.1", server.port, timeout=10, pool_size=pool_size) as c:
        def worker(t):
            try:
                barrier.wait()
                for j in range(calls_per_thread):
                    start = (t * 97 + j * 31) % 1900
                    got = c.score("default", "user-7", items[start:start + 100])
                    # Each thread must get the answer to its own question.
                    if got.scores.tobytes() != expected[4 * start:4 * (start + 100)] or got.items[0] != items[start]:
                        errors.append("thread %d call %d: wrong answer" % (t, j))
            except Exception as e:  # reported below
                errors.append("thread %d: %r" % (t, e))

        workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert errors == []
        assert all(not w.is_alive() for w in workers)
        assert len(c._idle[0]) <= pool_size
        opened = _total_connections(server.port) - before - 1  # minus the counting client of the first call
    if pool_size >= threads:
        assert opened <= threads  # no churn when the pool holds every thread's connection
    assert opened >= 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_share_pooled_connections(server):
    with kc.Client("127.0.0.1", server.port, timeout=5) as c:
        c.ping()
        (parent_conn,) = c._idle[0]
        pid = os.fork()
        if pid == 0:  # child: the pool must be empty, and a call must work on its own connection
            status = 1
            try:
                if c._idle == [[]] and c.ping() is None and c._idle[0][0] is not parent_conn:
                    status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        assert c.ping() is None and c._idle[0][0] is parent_conn  # the parent's connection is untouched


def test_rolling_restart_loses_no_request(start_server):
    """Two endpoints; the first is stopped (SIGTERM, graceful drain) while 4 threads keep calling. Requests the
    draining server had read are answered; the rest see the connection close, are retried, and fail over."""
    first, second = start_server(), start_server()
    errors, done = [], []
    stop_at, total = 150, 600
    stopped = threading.Event()

    with kc.Client([first.address, second.address], timeout=5, backoff=30) as c:
        def worker(t):
            i = 0
            while len(done) < total:
                try:
                    r = c.score("default", "user-%d" % t, ["item-%d" % (i % 2000)])
                    assert r.items == ["item-%d" % (i % 2000)]
                    done.append(1)
                except Exception as e:  # reported below
                    errors.append(repr(e))
                    return
                i += 1
                if len(done) >= stop_at and not stopped.is_set():
                    stopped.set()
                    first.proc.send_signal(15)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert stopped.is_set() and len(done) >= total
        assert first.proc.wait(20) == 0
        assert not c.endpoints[0].is_up()
        assert _total_connections(second.port) >= 1
