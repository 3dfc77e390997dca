"""Every vector in proto-spec/vectors/protocol-vectors.json, byte-exact: requests encoded by this client's codec (and
sent by the real Client over a socket), responses decoded to the vector's values (NaN included)."""

from __future__ import annotations

import datetime
import math
import selectors
import socket
import struct
import threading
import time

import pytest

from kairos_client import (
    AsyncClient,
    Client,
    Decay,
    Decision,
    ModelRef,
    ModelStamp,
    ProtocolError,
    Reason,
    ServingReport,
    UnknownModel,
    FrameTimeout,
)
from kairos_client import protocol as P
from kairos_test_support import load_vectors

VECTORS = load_vectors()
REQUESTS = [v for v in VECTORS if v["kind"] == "request"]
RESPONSES = [v for v in VECTORS if v["kind"] == "response"]
OPCODES = {"PING": 0x01, "HELLO": 0x02, "INFO": 0x03, "STATS": 0x04, "SCORE": 0x10, "TOPK": 0x11, "SIMILAR": 0x12,
           "PUSH_DECIDE": 0x13, "RELOAD": 0x20, "PIN": 0x21, "ROLLBACK": 0x22}


def test_vector_file_has_every_kind():
    kinds = {v["kind"] for v in VECTORS}
    assert kinds == {"request", "response", "invalid"}
    assert {v["message"]["op"] for v in REQUESTS} == set(OPCODES)
    # PIN has no reply vector of its own: it answers a serving report, the layout of RELOAD's and ROLLBACK's.
    assert {v["message"]["op"] for v in RESPONSES} == (set(OPCODES) - {"PIN"}) | {"ERROR"}


def test_pin_answer_is_a_serving_report():
    v = next(v for v in RESPONSES if v["name"] == "rollback-reply")
    payload = bytes.fromhex(v["hex"])[12:]
    report = P.decode_response(0x21, 0xA1, payload)
    assert isinstance(report, ServingReport) and report.model("default").version == 2 and report.rejected == []


# ------------------------------------------------------------------------------------------------ message -> call


def _decay(d):
    form = d["form"]
    if form == "model":
        return None
    if form == "none":
        return Decay.none()
    if form == "exponential":
        return Decay.exponential(d["a"])
    if form == "linear":
        return Decay.linear(d["a"])
    if form == "sigmoid":
        return Decay.sigmoid(d["a"], d["b"])
    raise ValueError(form)


def _f(x):
    return float("nan") if x == "NaN" else x


def _context_kwargs(c):
    return {
        "events": [(e["item"], _f(e["strength"]), e["timestamp"]) for e in c["events"]],
        "now": c["now"],
        "decay": _decay(c["decay"]),
    }


def _model(m):
    # Exercise each accepted spelling of a model: a name for version 0, a ModelRef for a pinned version.
    return m["name"] if m["version"] == 0 else ModelRef(m["name"], m["version"])


def call_for(m):
    """(method name, args, kwargs) of the Client call that sends message `m`."""
    op = m["op"]
    if op in ("PING", "INFO", "STATS", "RELOAD"):
        return op.lower(), (), {}
    if op == "PIN":
        return ("unpin", (m["name"],), {}) if m["version"] == 0 else ("pin", (m["name"], m["version"]), {})
    if op == "ROLLBACK":
        return "rollback", (m["name"],), {}
    if op == "HELLO":
        return "hello", (m["versions"],), {}
    if op == "SCORE":
        return "score", (_model(m["model"]), m["user"], m["candidates"]), _context_kwargs(m["context"])
    if op == "TOPK":
        kw = _context_kwargs(m["context"])
        kw.update(exclude=m["exclude"], allow_repeats=bool(m["options"] & 1), category=m["category"] or None)
        if m["options"] & 2:
            kw.update(trending_weight=m["trendingWeight"], buy_again_weight=m["buyAgainWeight"])
        else:
            assert m["trendingWeight"] == 0 and m["buyAgainWeight"] == 0
        return "topk", (_model(m["model"]), m["user"], m["k"]), kw
    if op == "SIMILAR":
        return "similar", (_model(m["model"]), m["item"], m["k"]), {"category": m["category"] or None}
    if op == "PUSH_DECIDE":
        c = m["context"]
        kw = dict(recent_pushes=m["recentPushes"], max_per_day=m["maxPerDay"], max_per_week=m["maxPerWeek"],
                  min_gap=m["minGapSeconds"], quiet_hours=(m["quietStartHour"], m["quietEndHour"]),
                  utc_offset_minutes=m["utcOffsetMinutes"], threshold=m["threshold"], k=m["k"],
                  events=[(e["item"], e["strength"], e["timestamp"]) for e in c["events"]], decay=_decay(c["decay"]))
        return "push_decide", (_model(m["model"]), m["user"], c["now"]), kw
    raise ValueError(op)


ENCODERS = {
    "ping": lambda: b"",
    "info": lambda: b"",
    "stats": lambda: b"",
    "reload": lambda: b"",
    "pin": P.encode_pin,
    "unpin": lambda name: P.encode_pin(name, 0),
    "rollback": P.encode_rollback,
    "hello": P.encode_hello,
    "score": P.encode_score,
    "topk": P.encode_topk,
    "similar": P.encode_similar,
    "push_decide": P.encode_push_decide,
}


@pytest.mark.parametrize("v", REQUESTS, ids=[v["name"] for v in REQUESTS])
def test_request_encodes_byte_exact(v):
    m = v["message"]
    name, args, kwargs = call_for(m)
    payload = ENCODERS[name](*args, **kwargs)
    assert P.frame(OPCODES[m["op"]], v["request_id"], payload).hex() == v["hex"]


def test_explicit_default_decay_and_zero_now_encode_like_omitted():
    v = next(v for v in REQUESTS if v["name"] == "score")
    explicit = P.encode_score("default", "user-1", ["item-1", "item-2", "nope"], events=[], now=0,
                              decay=Decay.model_default())
    assert P.frame(0x10, 5, explicit).hex() == v["hex"]
    assert P.encode_score(ModelRef("default"), "user-1", ["item-1", "item-2", "nope"]) == explicit
    assert P.encode_score(("default", 0), "user-1", ("item-1", "item-2", "nope")) == explicit


# ------------------------------------------------------------------------------------------------ decoding


def _request_opcode(m):
    return OPCODES[m["op"]] if m["op"] != "ERROR" else 0x10


def _check_items(got, want):
    assert [(p.item, p.score) for p in got] == [(w["item"], w["score"]) for w in want]


def check_result(m, result):
    """The decoded `result` carries exactly the values of response message `m`."""
    op = m["op"]
    if op == "PING":
        assert result is None
    elif op == "HELLO":
        assert result.chosen_version == m["chosen"]
        assert list(result.versions) == m["versions"]
        assert result.server == m["server"]
        _check_limits(result.limits, m["limits"])
    elif op == "INFO":
        _check_limits(result.limits, m["limits"])
        _check_models(result.models, m["models"])
    elif op in ("RELOAD", "PIN", "ROLLBACK"):
        assert isinstance(result, ServingReport)
        _check_models(result.models, m["models"])
        assert result.rejected == m["rejected"]
    elif op == "STATS":
        assert (result.uptime_seconds, result.open_connections, result.total_connections) == (
            m["uptimeSeconds"], m["openConnections"], m["totalConnections"])
        assert [(o.op, o.opcode, o.requests, o.errors, o.p50_us, o.p99_us, o.p999_us) for o in result.ops] == [
            (o["op"], OPCODES[o["op"]], o["requests"], o["errors"], o["p50"], o["p99"], o["p999"]) for o in m["ops"]]
    elif op == "SCORE":
        assert result.model == ModelStamp(m["model"]["name"], m["model"]["version"])
        assert result.model_version == m["model"]["version"]
        assert int(result.flags) == m["flags"]
        assert result.fallback == bool(m["flags"] & 1)
        assert len(result.scores) == len(m["scores"])
        for got, want in zip(result.scores, m["scores"]):
            if want == "NaN":
                assert math.isnan(got)
            else:
                assert got == want
        assert list(result.item_flags) == m["itemFlags"]
    elif op in ("TOPK", "SIMILAR"):
        assert result.model == ModelStamp(m["model"]["name"], m["model"]["version"])
        assert int(result.flags) == m["flags"]
        _check_items(result.items, m["items"])
    elif op == "PUSH_DECIDE":
        assert result.model == ModelStamp(m["model"]["name"], m["model"]["version"])
        assert int(result.flags) == m["flags"]
        assert result.decision == m["decision"] and isinstance(result.decision, Decision)
        assert result.reason == m["reason"] and isinstance(result.reason, Reason)
        assert result.send_at == m["sendAt"]
        _check_items(result.items, m["items"])
    else:
        raise AssertionError(op)


def _check_models(got_models, want_models):
    assert len(got_models) == len(want_models)
    for got, want in zip(got_models, want_models):
        assert (got.name, got.version, got.dimensions, got.items, got.users, got.encoding, got.loaded_at) == (
            want["name"], want["version"], want["dimensions"], want["items"], want["users"], want["encoding"],
            want["loadedAt"])
        assert got.checksum == int(want["checksum"], 16)


def _check_limits(got, want):
    assert (got.max_payload, got.max_candidates, got.max_k, got.max_events) == (
        want["maxPayload"], want["maxCandidates"], want["maxK"], want["maxEvents"])


@pytest.mark.parametrize("v", RESPONSES, ids=[v["name"] for v in RESPONSES])
def test_response_decodes_exactly(v):
    m = v["message"]
    data = bytes.fromhex(v["hex"])
    opcode, rid, length = P.parse_header(data[:12])
    assert rid == v["request_id"] and length == len(data) - 12
    payload = data[12:]
    if m["op"] == "ERROR":
        assert opcode == 0xFF
        # The exception class and code each error vector names (PROTOCOL.md, "Errors").
        cls, code = {"UNKNOWN_MODEL": (UnknownModel, 7), "FRAME_TIMEOUT": (FrameTimeout, 13)}[m["code"]]
        with pytest.raises(cls) as e:
            P.decode_response(0x12, opcode, payload, rid)
        assert e.value.code == code and e.value.code_name == m["code"]
        assert e.value.message == m["message"] and e.value.request_id == rid
        return
    assert opcode == OPCODES[m["op"]] | 0x80
    check_result(m, P.decode_response(OPCODES[m["op"]], opcode, payload, rid))
    # The same bytes through a memoryview (zero-copy path) decode the same.
    check_result(m, P.decode_response(OPCODES[m["op"]], opcode, memoryview(payload), rid))


@pytest.mark.parametrize("v", [v for v in RESPONSES if v["message"]["op"] != "PING"],
                         ids=[v["name"] for v in RESPONSES if v["message"]["op"] != "PING"])
def test_truncated_or_padded_response_is_a_protocol_error(v):
    data = bytes.fromhex(v["hex"])
    opcode, payload = data[2], data[12:]
    req = _request_opcode(v["message"])
    for bad in (payload[:-1], payload + b"\x00"):
        with pytest.raises(ProtocolError):
            P.decode_response(req, opcode, bad)


def test_score_formats():
    v = next(v for v in RESPONSES if v["name"] == "score-reply")
    payload = bytes.fromhex(v["hex"])[12:]
    as_list = P.decode_response(0x10, 0x90, payload, items=["a", "b", "c"], score_format="list")
    assert isinstance(as_list.scores, list)
    assert as_list.scores[:2] == [0.75, -0.125] and math.isnan(as_list.scores[2])
    assert as_list.unknown_items == ["c"]
    assert as_list.as_dict() == {"a": 0.75, "b": -0.125}
    assert as_list.ranked() == [("a", 0.75), ("b", -0.125)]
    with pytest.raises(ProtocolError):  # a count that disagrees with the candidates sent
        P.decode_response(0x10, 0x90, payload, items=["a", "b"])


def test_score_numpy_format():
    np = pytest.importorskip("numpy")
    v = next(v for v in RESPONSES if v["name"] == "score-reply")
    payload = bytes.fromhex(v["hex"])[12:]
    r = P.decode_response(0x10, 0x90, payload, items=["a", "b", "c"], score_format="numpy")
    assert isinstance(r.scores, np.ndarray) and r.scores.dtype == np.float32
    assert r.scores[:2].tolist() == [0.75, -0.125] and np.isnan(r.scores[2])
    r.scores[0] = 1.0  # a writable array of its own
    assert r.scores[0] == 1.0


def test_large_score_answer_decodes_without_per_score_work():
    # 10,000 scores: the decoder hands the raw bytes to array.frombytes in one call.
    n = 10_000
    values = [i / 8 for i in range(n)]
    payload = (struct.pack("<H", 7) + b"default" + struct.pack("<Q", 3) + struct.pack("<BI", 0, n)
               + struct.pack("<%df" % n, *values) + bytes(n))
    r = P.decode_scores(payload)
    assert r.model_version == 3 and len(r) == n
    assert r.scores.typecode == "f" and r.scores.tolist() == values


def test_wrong_response_opcode_and_header_checks():
    with pytest.raises(ProtocolError):
        P.decode_response(0x10, 0x91, b"")  # TOPK's answer to a SCORE
    with pytest.raises(ProtocolError):
        P.parse_header(b"HTTP/1.1 200")  # not Kairos
    with pytest.raises(ProtocolError):
        P.parse_header(bytes([0xCA, 2, 0x81, 0, 1, 0, 0, 0, 0, 0, 0, 0]))  # another version


def test_encoder_rejects_what_the_wire_cannot_carry():
    with pytest.raises(TypeError):
        P.encode_score("default", "user-1", "item-1")  # a str is not a list of items
    with pytest.raises(TypeError):
        P.encode_score("default", "user-1", [1, 2])
    with pytest.raises(ValueError):
        P.encode_similar("default", "item-1", 70000)  # k is u16
    with pytest.raises(ValueError):
        P.encode_score("default", "u" * 70000, ["item-1"])  # u16 string length
    with pytest.raises(ValueError):
        P.encode_push_decide("default", "user-1", 0, max_per_day=300)  # u8
    # Times are 1970 to 9999 on the wire (the server answers BAD_REQUEST to others)
    for bad in (-1, P.LATEST_TIME + 1, datetime.datetime(1969, 12, 31, tzinfo=datetime.timezone.utc)):
        with pytest.raises(ValueError):
            P.encode_score("default", "user-1", ["item-1"], events=[("item-7", 1.0, bad)])
        with pytest.raises(ValueError):
            P.encode_push_decide("default", "user-1", bad)
    assert P.unix_seconds(P.LATEST_TIME) == P.LATEST_TIME and P.unix_seconds(0) == 0


# ------------------------------------------------------------------------------------------------ over a socket


class ScriptedServer:
    """Accepts connections (the async client opens a second one for scans); for each request frame it receives, on any
    of them, checks it against the next expected request vector (opcode and payload byte for byte; the id is the
    client's choice) and answers on that connection with the paired response vector under the client's id."""

    def __init__(self, exchanges):
        self.exchanges = list(exchanges)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _answer(self, c, frame):
        request_hex, response_hex = self.exchanges[len(self.seen)]
        rid = struct.unpack_from("<I", frame, 4)[0]
        expected = bytes.fromhex(request_hex)
        self.seen.append(frame)
        # Same bytes once the id is set to the vector's.
        if frame[:4] + expected[4:8] + frame[8:] != expected:
            self.errors.append("request differs: got %s want %s" % (frame.hex(), request_hex))
        response = bytearray(bytes.fromhex(response_hex))
        struct.pack_into("<I", response, 4, rid)
        c.sendall(bytes(response))

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        buffers = {}
        deadline = time.monotonic() + 10
        try:
            while len(self.seen) < len(self.exchanges):
                if time.monotonic() > deadline:
                    raise TimeoutError("%d of %d requests arrived" % (len(self.seen), len(self.exchanges)))
                for key, _ in sel.select(0.1):
                    if key.fileobj is self.sock:
                        c, _ = self.sock.accept()
                        c.settimeout(10)
                        buffers[c] = b""
                        sel.register(c, selectors.EVENT_READ)
                        continue
                    c = key.fileobj
                    chunk = c.recv(65536)
                    if not chunk:
                        sel.unregister(c)
                        continue
                    buf = buffers[c] + chunk
                    while len(buf) >= 12 and len(buf) >= 12 + struct.unpack_from("<I", buf, 8)[0]:
                        n = 12 + struct.unpack_from("<I", buf, 8)[0]
                        self._answer(c, buf[:n])
                        buf = buf[n:]
                    buffers[c] = buf
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))
        finally:
            sel.close()
            for c in buffers:
                c.close()
            self.sock.close()


def _pairs():
    by_id = {v["request_id"]: v for v in RESPONSES}
    return [(v, by_id[v["request_id"]]) for v in REQUESTS if v["request_id"] in by_id]


def test_client_sends_vector_bytes_and_decodes_vector_answers():
    pairs = _pairs()
    assert len(pairs) >= 9
    srv = ScriptedServer([(req["hex"], resp["hex"]) for req, resp in pairs])
    with Client("127.0.0.1", srv.port, timeout=5) as client:
        for req, resp in pairs:
            name, args, kwargs = call_for(req["message"])
            result = getattr(client, name)(*args, **kwargs)
            m = dict(resp["message"])
            check_result(m, result)
            if name == "score":
                assert list(result.items) == req["message"]["candidates"]
    srv.thread.join(10)
    assert srv.errors == []
    assert len(srv.seen) == len(pairs)


def test_async_client_sends_vector_bytes_and_decodes_vector_answers():
    import asyncio

    pairs = _pairs()
    srv = ScriptedServer([(req["hex"], resp["hex"]) for req, resp in pairs])

    async def main():
        async with AsyncClient("127.0.0.1", srv.port, timeout=5) as client:
            for req, resp in pairs:
                name, args, kwargs = call_for(req["message"])
                check_result(resp["message"], await getattr(client, name)(*args, **kwargs))

    asyncio.run(main())
    srv.thread.join(10)
    assert srv.errors == []
    assert len(srv.seen) == len(pairs)


def test_string_lists_encode_the_same_on_the_ascii_fast_path_and_the_general_path():
    def reference(items):  # item by item, straight from the spec
        out = struct.pack("<I", len(items))
        for s in items:
            b = s.encode("utf-8")
            out += struct.pack("<H", len(b)) + b
        return out

    cases = [
        [],
        [""],
        ["item-1", "item-22", "i" * 255, "j" * 256, "k" * 1024],
        ["café", "item-1", "商品-7", "emoji-\U0001F600"],  # non-ASCII: the general path
        ["x" * 1025, "item-1"],  # longer than the fast path's table
        ("tuple", "of", "items"),
    ]
    for items in cases:
        assert P._str_list(items, "items") == reference(list(items))
    assert P._str_list(iter(["a", "bb"]), "items") == reference(["a", "bb"])
    assert P._str_list({"only"}, "items") == reference(["only"])
    with pytest.raises(TypeError):
        P._str_list(["a", b"bytes"], "items")
