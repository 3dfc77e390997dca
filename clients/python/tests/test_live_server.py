"""Against a real `kairos serve` with the default model: every method, every error path, the invalid vectors sent raw,
and answers cross-checked against the Swift client (`kairos query --json`)."""

from __future__ import annotations

import json
import math
import socket
import struct
import subprocess

import pytest

import kairos_client as kc
from kairos_client import protocol as P
from kairos_test_support import load_vectors

NOW = 1767225600  # 2026-01-01T00:00:00Z
NOON = NOW + 12 * 3600
CODES = {"MALFORMED_FRAME": 1, "FRAME_TOO_LARGE": 2, "UNSUPPORTED_VERSION": 3, "UNKNOWN_OPCODE": 4, "BAD_REQUEST": 5,
         "LIMIT_EXCEEDED": 6, "UNKNOWN_MODEL": 7, "UNKNOWN_USER": 8, "UNKNOWN_ITEM": 9, "OVERLOADED": 10,
         "SHUTTING_DOWN": 11, "INTERNAL_ERROR": 12, "FRAME_TIMEOUT": 13}
INVALID = [v for v in load_vectors() if v["kind"] == "invalid"]


@pytest.fixture
def client(server):
    with kc.Client("127.0.0.1", server.port, timeout=5) as c:
        yield c


def _read_frame(sock):
    def exact(n):
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise EOFError("closed after %d of %d bytes" % (len(out), n))
            out += chunk
        return out

    header = exact(12)
    opcode, rid, length = P.parse_header(header)
    return opcode, rid, exact(length)


def _closed(sock):
    """True once the peer has closed (EOF or reset); the socket has a timeout so this cannot hang."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# ------------------------------------------------------------------------------------------------ invalid vectors


@pytest.mark.parametrize("v", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_gets_its_error(server, v):
    data = bytes.fromhex(v["hex"])
    with socket.create_connection(server.address, timeout=5) as s:
        s.sendall(data)
        opcode, rid, payload = _read_frame(s)
        assert opcode == P.ERROR_OPCODE
        err = P.decode_error(payload, rid)
        assert err.code == CODES[v["error"]], err
        assert isinstance(err, kc.KairosError) and err.code_name == v["error"]
        if v["closes_connection"]:
            assert _closed(s), "the server must close the connection after %s" % v["error"]
        else:
            # The request id is echoed, and the connection still answers.
            assert rid == struct.unpack_from("<I", data, 4)[0]
            s.sendall(P.frame(P.Op.PING, 4242, b""))
            assert _read_frame(s) == (P.Op.PING | 0x80, 4242, b"")


def test_requests_before_a_framing_error_are_answered_first(server):
    with socket.create_connection(server.address, timeout=5) as s:
        s.sendall(P.frame(P.Op.PING, 1, b"") + P.frame(P.Op.PING, 2, b"") + b"GET / HTTP/1.1\r\n\r\n")
        assert _read_frame(s) == (0x81, 1, b"")
        assert _read_frame(s) == (0x81, 2, b"")
        opcode, rid, payload = _read_frame(s)
        assert (opcode, rid) == (0xFF, 0)
        assert isinstance(P.decode_error(payload), kc.MalformedFrame)
        assert _closed(s)


# ------------------------------------------------------------------------------------------------ every method


def test_ping_hello_info(client):
    assert client.ping() is None
    hello = client.hello()
    assert hello.chosen_version == 1 and 1 in hello.versions and hello.server.startswith("kairos")
    assert client.hello([7]).chosen_version == 0  # nothing in common
    info = client.info()
    assert info.limits == kc.Limits(1048576, 10000, 1000, 256) == hello.limits
    m = info.model("default")
    assert (m.name, m.version, m.dimensions, m.items, m.users, m.encoding) == ("default", 1, 64, 2000, 500, "float32")
    assert m.checksum != 0 and m.loaded_at > 1_600_000_000


def test_stats_count_this_clients_requests(client):
    def score_requests():
        return next((o.requests for o in client.stats().ops if o.op == "SCORE"), 0)

    before = score_requests()
    for i in range(5):
        client.score("default", "user-1", ["item-%d" % i])
    stats = client.stats()
    assert score_requests() == before + 5
    assert stats.open_connections >= 1 and stats.total_connections >= stats.open_connections
    score = next(o for o in stats.ops if o.op == "SCORE")
    assert 0 < score.p50_us <= score.p99_us <= score.p999_us


def test_score(client):
    items = ["item-1", "item-2", "no-such-item", "item-1999"]
    r = client.score("default", "user-1", items)
    assert isinstance(r, kc.Scores) and r.model == kc.ModelStamp("default", 1) and r.model_version == 1
    assert not r.fallback and not r.cold_start
    assert list(r.items) == items and len(r) == 4 and r.scores.typecode == "f"
    assert math.isnan(r.scores[2]) and r.unknown_items == ["no-such-item"]
    assert all(math.isfinite(s) for i, s in enumerate(r.scores) if i != 2)
    assert list(r.item_flags) == [0, 0, 1, 0]
    assert set(r.as_dict()) == {"item-1", "item-2", "item-1999"}
    # Deterministic: the same question, the same answer (bit for bit).
    assert client.score("default", "user-1", items).scores.tobytes() == r.scores.tobytes()


def test_score_events_change_the_answer_and_now_makes_it_reproducible(client):
    items = ["item-%d" % i for i in range(50)]
    plain = client.score("default", "user-1", items, now=NOW)
    events = [kc.Event("item-7", kc.Strength.PURCHASE, NOW - 600), ("item-9", 2.0, NOW - 60)]
    a = client.score("default", "user-1", items, events=events, now=NOW, decay=kc.Decay.exponential(3600))
    b = client.score("default", "user-1", items, events=events, now=NOW, decay=kc.Decay.exponential(3600))
    assert a.scores.tobytes() == b.scores.tobytes()
    assert a.scores.tobytes() != plain.scores.tobytes()
    # Events in the future are ignored.
    future = client.score("default", "user-1", items, events=[("item-7", 8.0, NOW + 600)], now=NOW)
    assert future.scores.tobytes() == plain.scores.tobytes()


def test_score_unknown_user_falls_back_or_cold_starts(client):
    fallback = client.score("default", "nobody", ["item-1", "item-2"])
    assert fallback.fallback and not fallback.cold_start
    cold = client.score("default", "nobody", ["item-1", "item-2"], events=[("item-7", 8.0, NOW - 60)], now=NOW)
    assert cold.cold_start and not cold.fallback


def test_score_formats_agree(server):
    items = ["item-%d" % i for i in range(0, 2000, 7)] + ["nope"]
    with kc.Client("127.0.0.1", server.port, score_format="list") as c:
        as_list = c.score("default", "user-3", items).scores
    with kc.Client("127.0.0.1", server.port) as c:
        as_array = c.score("default", "user-3", items).scores
    assert isinstance(as_list, list) and len(as_list) == len(items)
    assert as_list[:-1] == as_array.tolist()[:-1] and math.isnan(as_list[-1])


def test_score_numpy(server):
    np = pytest.importorskip("numpy")
    items = ["item-%d" % i for i in range(1000)]
    with kc.Client("127.0.0.1", server.port, score_format="numpy") as c:
        r = c.score("default", "user-3", items)
    with kc.Client("127.0.0.1", server.port) as c:
        ref = c.score("default", "user-3", items)
    assert isinstance(r.scores, np.ndarray) and r.scores.shape == (1000,) and r.scores.dtype == np.float32
    assert r.scores.tobytes() == ref.scores.tobytes()


def test_largest_answers(client):
    items = ["item-%d" % (i % 2000) for i in range(10000)]  # maxCandidates
    r = client.score("default", "user-4", items)
    assert len(r) == 10000 and not r.unknown_items
    assert r.scores.tobytes()[:8000] == r.scores.tobytes()[8000:16000]  # item-i repeats every 2000
    top = client.topk("default", "user-4", 1000)  # maxK
    assert len(top) == 1000 and len(set(top.item_ids)) == 1000
    assert len(client.similar("default", "item-4", 1000)) == 1000


def test_topk(client):
    r = client.topk("default", "user-1", 20)
    assert isinstance(r, kc.Ranking) and r.model_version == 1 and len(r) == 20
    scores = [s for _, s in r]
    assert scores == sorted(scores, reverse=True)
    assert len(set(r.item_ids)) == 20
    # exclude: those items disappear, the next ones move up.
    excluded = r.item_ids[:3]
    r2 = client.topk("default", "user-1", 20, exclude=excluded)
    assert not set(excluded) & set(r2.item_ids) and r2.item_ids[:17] == r.item_ids[3:]
    # The events' items are left out (unless allow_repeats).
    top = r.item_ids[0]
    with_event = client.topk("default", "user-1", 20, events=[(top, 1.0, NOW - 60)], now=NOW)
    assert top not in with_event.item_ids


def test_topk_category_and_weights(client):
    by_category = {c: set(client.topk("default", "user-1", 30, category="category-%d" % c).item_ids)
                   for c in range(8)}
    assert all(len(s) == 30 for s in by_category.values())
    for a in range(8):
        for b in range(a + 1, 8):
            assert not by_category[a] & by_category[b], "an item in two categories"
    assert len(client.topk("default", "user-1", 5, category="no-such-category")) == 0
    trending = client.topk("default", "user-1", 10, trending_weight=50.0)
    assert trending.item_ids != client.topk("default", "user-1", 10).item_ids


def test_zero_k_is_an_empty_answer(client):
    # With repeats allowed and a history to merge, k = 0 used to stop the server.
    for allow in (False, True):
        assert len(client.topk("default", "user-1", 0, allow_repeats=allow)) == 0
    assert len(client.similar("default", "item-1", 0)) == 0
    assert client.ping() is None


def test_topk_unknown_user(client):
    fallback = client.topk("default", "nobody", 5)
    assert fallback.fallback and len(fallback) == 5
    cold = client.topk("default", "nobody", 5, events=[("item-7", 8.0, NOW - 60)], now=NOW)
    assert cold.cold_start and cold.item_ids != fallback.item_ids


def test_similar(client):
    r = client.similar("default", "item-1", 10)
    assert len(r) == 10 and "item-1" not in r.item_ids and r.model_version == 1
    scores = [s for _, s in r]
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    in_category = client.similar("default", "item-1", 10, category="category-2")
    assert len(in_category) == 10 and in_category.item_ids != r.item_ids


def test_push_decide(client):
    quiet = client.push_decide("default", "user-1", NOW)  # 00:00 UTC: inside the default 22-8 quiet hours
    assert isinstance(quiet, kc.PushDecision) and quiet.model_version == 1
    assert (quiet.decision, quiet.reason, quiet.send_at) == (kc.Decision.NOT_NOW, kc.Reason.QUIET_HOURS, NOW + 8 * 3600)
    assert not quiet.push_now and len(quiet.items) == 3
    gap = client.push_decide("default", "user-1", NOON, recent_pushes=[NOON - 3600], min_gap=4 * 3600, k=2)
    assert (gap.decision, gap.reason, gap.send_at) == (kc.Decision.NOT_NOW, kc.Reason.MINIMUM_GAP, NOON + 3 * 3600)
    assert len(gap.items) == 2
    never = client.push_decide("default", "user-1", NOON, threshold=1e9)
    assert (never.decision, never.reason, never.send_at) == (kc.Decision.NEVER, kc.Reason.BELOW_THRESHOLD, 0)
    weekly = client.push_decide("default", "user-1", NOON, recent_pushes=[NOON - d * 86400 for d in range(1, 4)],
                                max_per_week=3, max_per_day=0, min_gap=0, quiet_hours=None)
    assert (weekly.decision, weekly.reason) == (kc.Decision.NOT_NOW, kc.Reason.WEEKLY_CAP)
    assert weekly.send_at == NOON - 3 * 86400 + 7 * 86400
    # Somewhere in a day without caps or quiet hours, the policy says push now (at the user's best hour).
    decisions = {client.push_decide("default", "user-1", NOW + h * 3600, quiet_hours=None).decision for h in range(24)}
    assert kc.Decision.PUSH_NOW in decisions


def test_push_decide_accepts_datetimes_and_timedeltas(client):
    import datetime as dt

    utc = dt.timezone.utc
    a = client.push_decide("default", "user-1", dt.datetime.fromtimestamp(NOON, utc),
                           recent_pushes=[dt.datetime.fromtimestamp(NOON - 3600, utc)], min_gap=dt.timedelta(hours=4))
    b = client.push_decide("default", "user-1", NOON, recent_pushes=[NOON - 3600], min_gap=4 * 3600)
    assert a == b and a.send_at == NOON + 3 * 3600


# ------------------------------------------------------------------------------------------------ errors


def test_errors_are_typed_and_keep_the_connection(server):
    with kc.Client("127.0.0.1", server.port, timeout=5, pool_size=1) as c:
        c.ping()
        before = c.stats().total_connections
        cases = [
            (kc.UnknownModel, lambda: c.score("nope", "user-1", ["item-1"])),
            (kc.UnknownModel, lambda: c.topk(kc.ModelRef("default", 99), "user-1", 3)),
            (kc.UnknownItem, lambda: c.similar("default", "no-such-item", 3)),
            (kc.LimitExceeded, lambda: c.score("default", "user-1", ["i"] * 10001)),
            (kc.LimitExceeded, lambda: c.topk("default", "user-1", 1001)),
            (kc.LimitExceeded, lambda: c.similar("default", "x" * 1025, 3)),
            (kc.LimitExceeded, lambda: c.score("default", "user-1", ["item-1"], events=[("item-1", 1.0, NOW)] * 257,
                                               now=NOW)),
            (kc.BadRequest, lambda: c.score("default", "user-1", ["item-1"], events=[("item-1", math.nan, NOW)])),
            (kc.BadRequest, lambda: c.topk("default", "user-1", 3, trending_weight=math.inf)),
            (kc.BadRequest, lambda: c.score("default", "user-1", ["item-1"], decay=kc.Decay.exponential(-1))),
            (kc.BadRequest, lambda: c.push_decide("default", "user-1", NOW, quiet_hours=(24, 3))),
            (kc.BadRequest, lambda: c.push_decide("default", "user-1", NOW, utc_offset_minutes=15 * 60)),
        ]
        for cls, call in cases:
            with pytest.raises(cls) as e:
                call()
            assert e.value.code == cls.code and isinstance(e.value, kc.KairosError) and e.value.message
        # All of those answered on the one pooled connection: no reconnects.
        assert c.stats().total_connections == before
        assert c.score("default", "user-1", ["item-1"]).model_version == 1


def test_frame_too_large_from_the_server_closes_only_that_connection(server):
    with kc.Client("127.0.0.1", server.port, timeout=5) as c:
        # Above the server's 1 MiB maxPayload: rejected from the header. With 9 MB the server closes while the client
        # is still sending; the client must still report the server's error, not a broken pipe.
        for n in (1500, 9000):
            with pytest.raises(kc.FrameTooLarge) as e:
                c.score("default", "user-1", ["x" * 1000] * n)
            assert e.value.code == 2 and isinstance(e.value, kc.ProtocolError)
            assert c.ping() is None  # on a fresh connection


# ------------------------------------------------------------------------------------------------ Swift parity


def _swift_query(binary, port, *args):
    out = subprocess.run([str(binary), "query", "--port", str(port), "--json", *args], check=True,
                         stdout=subprocess.PIPE, timeout=60).stdout
    return json.loads(out)


def test_same_answers_as_the_swift_client(server, kairos_binary, client):
    items = ["item-1", "item-2", "nope", "item-77"]
    swift = _swift_query(kairos_binary, server.port, "score", "--user", "user-1", "--event", "item-7:2:1767225000",
                         "--now", str(NOW), "--decay", "exponential:3600", *items)
    mine = client.score("default", "user-1", items, events=[("item-7", 2.0, 1767225000)], now=NOW,
                        decay=kc.Decay.exponential(3600))
    assert swift["unknown_items"] == [bool(f & 1) for f in mine.item_flags]
    assert [None if math.isnan(s) else s for s in mine.scores] == swift["scores"]

    swift = _swift_query(kairos_binary, server.port, "topk", "--user", "user-2", "--k", "7", "--allow-repeats",
                         "--category", "category-1", "--trending-weight", "0.5", "--buy-again-weight", "0.25",
                         "--exclude", "item-4", "--event", "item-3:1:1767225000", "--decay", "sigmoid:1800:0.01",
                         "--now", str(NOW))
    mine = client.topk("default", "user-2", 7, exclude=["item-4"], allow_repeats=True, category="category-1",
                       events=[("item-3", 1.0, 1767225000)], now=NOW, decay=kc.Decay.sigmoid(1800, 0.01),
                       trending_weight=0.5, buy_again_weight=0.25)
    assert [(p.item, p.score) for p in mine] == [(x["item"], x["score"]) for x in swift["items"]]

    swift = _swift_query(kairos_binary, server.port, "similar", "item-5", "--k", "4")
    mine = client.similar("default", "item-5", 4)
    assert [(p.item, p.score) for p in mine] == [(x["item"], x["score"]) for x in swift["items"]]

    swift = _swift_query(kairos_binary, server.port, "push", "--user", "user-1", "--now", str(NOON),
                         "--pushed-at", str(NOW), "--pushed-at", str(NOW + 3600), "--utc-offset=-300", "--k", "2",
                         "--quiet", "23-6")
    mine = client.push_decide("default", "user-1", NOON, recent_pushes=[NOW, NOW + 3600], utc_offset_minutes=-300,
                              k=2, quiet_hours=(23, 6))
    assert (mine.reason.name, mine.send_at) == (swift["reason"], swift["send_at"])
    assert [(p.item, p.score) for p in mine.items] == [(x["item"], x["score"]) for x in swift["items"]]


def _bench(binary, port, *args):
    out = subprocess.run([str(binary), "bench", "--port", str(port), "--json", *args], check=True,
                         stdout=subprocess.PIPE, timeout=60).stdout
    return json.loads(out)


def test_bench_closed_loop_reports_its_schema(kairos_binary, server):
    r = _bench(kairos_binary, server.port, "--op", "score", "--candidates", "20", "--connections", "2",
               "--pipeline", "4", "--duration", "0.3")
    assert r["errors"] == 0 and r["requests"] > 0 and r["offered_rps"] is None
    lat = r["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert r["throughput_rps"] > 0


def test_bench_open_loop_sends_what_falls_due_and_no_more(kairos_binary, server):
    # 400 req/s over 0.5 s: 200 requests fall due (one more per connection at most, from the phase rounding).
    r = _bench(kairos_binary, server.port, "--op", "ping", "--connections", "4", "--rate", "400",
               "--duration", "0.5")
    assert r["offered_rps"] == 400 and r["errors"] == 0
    assert 150 <= r["requests"] <= 204
