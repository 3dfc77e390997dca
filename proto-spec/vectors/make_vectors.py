#!/usr/bin/env python3
"""Writes protocol-vectors.json: byte-exact examples of every Kairos message and error, built from PROTOCOL.md.

This is an independent implementation of the wire format (Python struct, no Kairos code): the Swift tests and every
client check their own encoder and decoder against its output. Run: python3 proto-spec/vectors/make_vectors.py
"""
import json
import math
import os
import struct

MAGIC, VERSION, ERROR = 0xCA, 1, 0xFF
OPS = {"PING": 0x01, "HELLO": 0x02, "INFO": 0x03, "STATS": 0x04, "SCORE": 0x10, "TOPK": 0x11, "SIMILAR": 0x12,
       "PUSH_DECIDE": 0x13, "RELOAD": 0x20, "PIN": 0x21, "ROLLBACK": 0x22}
ERRORS = {"MALFORMED_FRAME": 1, "FRAME_TOO_LARGE": 2, "UNSUPPORTED_VERSION": 3, "UNKNOWN_OPCODE": 4,
          "BAD_REQUEST": 5, "LIMIT_EXCEEDED": 6, "UNKNOWN_MODEL": 7, "UNKNOWN_USER": 8, "UNKNOWN_ITEM": 9,
          "OVERLOADED": 10, "SHUTTING_DOWN": 11, "INTERNAL_ERROR": 12, "FRAME_TIMEOUT": 13}
DECAYS = {"model": 0, "none": 1, "exponential": 2, "linear": 3, "sigmoid": 4}


def s(text):
    b = text.encode("utf-8")
    return struct.pack("<H", len(b)) + b


def slist(items):
    return struct.pack("<I", len(items)) + b"".join(s(i) for i in items)


def f32(x):
    return struct.pack("<f", float("nan") if x == "NaN" else x)


def frame(opcode, request_id, payload):
    return struct.pack("<BBBBII", MAGIC, VERSION, opcode, 0, request_id, len(payload)) + payload


def model_ref(m):
    return s(m["name"]) + struct.pack("<Q", m["version"])


def stamp(m):
    return s(m["name"]) + struct.pack("<Q", m["version"])


def context(c):
    out = struct.pack("<H", len(c["events"]))
    for e in c["events"]:
        out += s(e["item"]) + f32(e["strength"]) + struct.pack("<q", e["timestamp"])
    d = c["decay"]
    return out + struct.pack("<Bddq", DECAYS[d["form"]], d.get("a", 0.0), d.get("b", 0.0), c["now"])


def limits(l):
    return struct.pack("<IIHH", l["maxPayload"], l["maxCandidates"], l["maxK"], l["maxEvents"])


def scored(items):
    return struct.pack("<H", len(items)) + b"".join(s(i["item"]) + f32(i["score"]) for i in items)


def request_payload(m):
    op = m["op"]
    if op in ("PING", "INFO", "STATS", "RELOAD"):
        return b""
    if op == "PIN":
        return s(m["name"]) + struct.pack("<Q", m["version"])
    if op == "ROLLBACK":
        return s(m["name"])
    if op == "HELLO":
        return struct.pack("<B", len(m["versions"])) + bytes(m["versions"])
    if op == "SCORE":
        return model_ref(m["model"]) + s(m["user"]) + slist(m["candidates"]) + context(m["context"])
    if op == "TOPK":
        return (model_ref(m["model"]) + s(m["user"]) + struct.pack("<HB", m["k"], m["options"]) + s(m["category"])
                + f32(m["trendingWeight"]) + f32(m["buyAgainWeight"]) + slist(m["exclude"]) + context(m["context"]))
    if op == "SIMILAR":
        return model_ref(m["model"]) + s(m["item"]) + struct.pack("<H", m["k"]) + s(m["category"])
    if op == "PUSH_DECIDE":
        return (model_ref(m["model"]) + s(m["user"]) + struct.pack("<H", len(m["recentPushes"]))
                + b"".join(struct.pack("<q", t) for t in m["recentPushes"])
                + struct.pack("<BBIBBh", m["maxPerDay"], m["maxPerWeek"], m["minGapSeconds"], m["quietStartHour"],
                              m["quietEndHour"], m["utcOffsetMinutes"])
                + f32(m["threshold"]) + struct.pack("<H", m["k"]) + context(m["context"]))
    raise ValueError(op)


def models(ms):
    out = struct.pack("<H", len(ms))
    for x in ms:
        out += (s(x["name"]) + struct.pack("<QIII", x["version"], x["dimensions"], x["items"], x["users"])
                + s(x["encoding"]) + struct.pack("<qQ", x["loadedAt"], int(x["checksum"], 16)))
    return out


def response_payload(m):
    op = m["op"]
    if op in ("RELOAD", "PIN", "ROLLBACK"):
        return models(m["models"]) + struct.pack("<H", len(m["rejected"])) + b"".join(s(r) for r in m["rejected"])
    if op == "PING":
        return b""
    if op == "HELLO":
        return (struct.pack("<BB", m["chosen"], len(m["versions"])) + bytes(m["versions"]) + limits(m["limits"])
                + s(m["server"]))
    if op == "INFO":
        return limits(m["limits"]) + models(m["models"])
    if op == "STATS":
        out = struct.pack("<QQQH", m["uptimeSeconds"], m["openConnections"], m["totalConnections"], len(m["ops"]))
        for o in m["ops"]:
            out += struct.pack("<BQQfff", OPS[o["op"]], o["requests"], o["errors"], o["p50"], o["p99"], o["p999"])
        return out
    if op == "SCORE":
        return (stamp(m["model"]) + struct.pack("<BI", m["flags"], len(m["scores"]))
                + b"".join(f32(x) for x in m["scores"]) + bytes(m["itemFlags"]))
    if op in ("TOPK", "SIMILAR"):
        return stamp(m["model"]) + struct.pack("<B", m["flags"]) + scored(m["items"])
    if op == "PUSH_DECIDE":
        return (stamp(m["model"]) + struct.pack("<BBHq", m["flags"], m["decision"], m["reason"], m["sendAt"])
                + scored(m["items"]))
    if op == "ERROR":
        return struct.pack("<H", ERRORS[m["code"]]) + s(m["message"])
    raise ValueError(op)


M = {"name": "default", "version": 0}
STAMP = {"name": "default", "version": 1}
NO_EVENTS = {"events": [], "decay": {"form": "model"}, "now": 0}
EVENTS = {"events": [{"item": "item-7", "strength": 2.0, "timestamp": 1767225000},
                     {"item": "item-9", "strength": 8.0, "timestamp": 1767225500}],
          "decay": {"form": "exponential", "a": 3600.0}, "now": 1767225600}
LIMITS = {"maxPayload": 1048576, "maxCandidates": 10000, "maxK": 1000, "maxEvents": 256}

requests = [
    ("ping", 1, {"op": "PING"}),
    ("hello", 2, {"op": "HELLO", "versions": [1]}),
    ("info", 3, {"op": "INFO"}),
    ("stats", 4, {"op": "STATS"}),
    ("score", 5, {"op": "SCORE", "model": M, "user": "user-1", "candidates": ["item-1", "item-2", "nope"],
                  "context": NO_EVENTS}),
    ("score-with-events", 6, {"op": "SCORE", "model": {"name": "default", "version": 1}, "user": "user-1",
                              "candidates": ["item-1"], "context": EVENTS}),
    ("topk", 7, {"op": "TOPK", "model": M, "user": "user-1", "k": 10, "options": 0, "category": "",
                 "trendingWeight": 0.0, "buyAgainWeight": 0.0, "exclude": [], "context": NO_EVENTS}),
    ("topk-options", 8, {"op": "TOPK", "model": M, "user": "user-2", "k": 3, "options": 3, "category": "category-1",
                         "trendingWeight": 0.5, "buyAgainWeight": 0.25, "exclude": ["item-4"],
                         "context": {"events": [{"item": "item-3", "strength": 1.0, "timestamp": 1767225000}],
                                     "decay": {"form": "sigmoid", "a": 1800.0, "b": 0.01}, "now": 1767225600}}),
    ("similar", 9, {"op": "SIMILAR", "model": M, "item": "item-1", "k": 5, "category": ""}),
    ("push-decide", 10, {"op": "PUSH_DECIDE", "model": M, "user": "user-1", "recentPushes": [1767139200, 1767200000],
                         "maxPerDay": 2, "maxPerWeek": 7, "minGapSeconds": 14400, "quietStartHour": 22,
                         "quietEndHour": 8, "utcOffsetMinutes": -300, "threshold": 0.5, "k": 3,
                         "context": {"events": [], "decay": {"form": "linear", "a": 86400.0}, "now": 1767225600}}),
    ("reload", 30, {"op": "RELOAD"}),
    ("pin", 31, {"op": "PIN", "name": "default", "version": 2}),
    ("unpin", 32, {"op": "PIN", "name": "default", "version": 0}),
    ("rollback", 33, {"op": "ROLLBACK", "name": "default"}),
]
responses = [
    ("pong", 1, {"op": "PING"}),
    ("hello-reply", 2, {"op": "HELLO", "chosen": 1, "versions": [1], "limits": LIMITS, "server": "kairos 0.1"}),
    ("info-reply", 3, {"op": "INFO", "limits": LIMITS, "models": [
        {"name": "default", "version": 1, "dimensions": 32, "items": 2000, "users": 500, "encoding": "float32",
         "loadedAt": 1767225600, "checksum": "0123456789abcdef"}]}),
    ("stats-reply", 4, {"op": "STATS", "uptimeSeconds": 60, "openConnections": 2, "totalConnections": 5, "ops": [
        {"op": "PING", "requests": 10, "errors": 0, "p50": 1.5, "p99": 4.0, "p999": 9.0},
        {"op": "SCORE", "requests": 7, "errors": 1, "p50": 12.0, "p99": 30.5, "p999": 41.0}]}),
    ("score-reply", 5, {"op": "SCORE", "model": STAMP, "flags": 0, "scores": [0.75, -0.125, "NaN"],
                        "itemFlags": [0, 0, 1]}),
    ("score-reply-fallback", 6, {"op": "SCORE", "model": STAMP, "flags": 1, "scores": [12.5], "itemFlags": [0]}),
    ("topk-reply", 7, {"op": "TOPK", "model": STAMP, "flags": 0, "items": [{"item": "item-3", "score": 1.5},
                                                                             {"item": "item-8", "score": 1.25}]}),
    ("similar-reply", 9, {"op": "SIMILAR", "model": STAMP, "flags": 0, "items": [{"item": "item-2", "score": 0.5}]}),
    ("push-decide-reply", 10, {"op": "PUSH_DECIDE", "model": STAMP, "flags": 0, "decision": 1, "reason": 6,
                               "sendAt": 1767247200, "items": [{"item": "item-3", "score": 1.5}]}),
    ("reload-reply", 30, {"op": "RELOAD", "models": [
        {"name": "default", "version": 3, "dimensions": 32, "items": 2000, "users": 500, "encoding": "int8",
         "loadedAt": 1767225700, "checksum": "fedcba9876543210"}],
        "rejected": ["broken.kmodel: ModelFormatError.truncated: header says the file is 411136 bytes, it is 1000"]}),
    ("rollback-reply", 33, {"op": "ROLLBACK", "models": [
        {"name": "default", "version": 2, "dimensions": 32, "items": 2000, "users": 500, "encoding": "float32",
         "loadedAt": 1767225800, "checksum": "00000000000000ff"}], "rejected": []}),
    ("error-reply", 11, {"op": "ERROR", "code": "UNKNOWN_MODEL", "message": "no model named \"nope\" is loaded"}),
    ("error-frame-timeout", 12, {"op": "ERROR", "code": "FRAME_TIMEOUT",
                                 "message": "a frame begun 30 s ago has not arrived whole"}),
]



def raw_frame(opcode, request_id, payload, length=None, magic=MAGIC, version=VERSION):
    n = len(payload) if length is None else length
    return struct.pack("<BBBBII", magic, version, opcode, 0, request_id, n) + payload


score_payload = request_payload(requests[4][2])
nan_event = dict(EVENTS, events=[{"item": "item-7", "strength": "NaN", "timestamp": 1767225000}])
# Times far apart overflowed a 64-bit difference (and stopped the server): times are 0 to 253402300799 (year 9999).
far_times = dict(EVENTS, events=[{"item": "item-7", "strength": 1.0, "timestamp": -9000000000000000000}],
                 now=9000000000000000000)
invalid = [
    ("http-get", bytes(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), "MALFORMED_FRAME", True),
    ("tls-client-hello", bytes.fromhex("16030100a5010000a10303") + bytes(32), "MALFORMED_FRAME", True),
    ("garbage", bytes.fromhex("deadbeef00112233445566778899"), "MALFORMED_FRAME", True),
    ("wrong-version", raw_frame(0x01, 12, b"", version=9), "UNSUPPORTED_VERSION", True),
    ("oversize-length", raw_frame(0x10, 13, b"", length=0x7FFFFFFF), "FRAME_TOO_LARGE", True),
    ("unknown-opcode", raw_frame(0x55, 14, b""), "UNKNOWN_OPCODE", False),
    ("truncated-payload", raw_frame(0x10, 15, score_payload[:-5]), "BAD_REQUEST", False),
    ("trailing-bytes", raw_frame(0x01, 16, b"\x00"), "BAD_REQUEST", False),
    ("count-past-end", raw_frame(0x10, 17, model_ref(M) + s("user-1") + struct.pack("<I", 5000) + s("x")),
     "BAD_REQUEST", False),
    ("nan-strength", raw_frame(0x10, 18, model_ref(M) + s("user-1") + slist(["item-1"]) + context(nan_event)),
     "BAD_REQUEST", False),
    ("invalid-utf8", raw_frame(0x12, 19, model_ref(M) + b"\x02\x00\xff\xfe" + struct.pack("<H", 5) + s("")),
     "BAD_REQUEST", False),
    ("k-over-limit", raw_frame(0x12, 20, model_ref(M) + s("item-1") + struct.pack("<H", 5000) + s("")),
     "LIMIT_EXCEEDED", False),
    ("too-many-candidates", raw_frame(0x10, 21, model_ref(M) + s("user-1") + slist(["i"] * 10001) + context(NO_EVENTS)),
     "LIMIT_EXCEEDED", False),
    ("unknown-model", raw_frame(0x12, 22, model_ref({"name": "nope", "version": 0}) + s("item-1")
                                + struct.pack("<H", 5) + s("")), "UNKNOWN_MODEL", False),
    ("pin-missing-version", raw_frame(0x21, 24, s("default") + struct.pack("<Q", 999)), "UNKNOWN_MODEL", False),
    ("time-out-of-range", raw_frame(0x10, 25, model_ref(M) + s("user-1") + slist(["item-1"]) + context(far_times)),
     "BAD_REQUEST", False),
    ("unknown-similar-item", raw_frame(0x12, 23, model_ref(M) + s("no-such-item") + struct.pack("<H", 5) + s("")),
     "UNKNOWN_ITEM", False),
]


def jsonable(m):
    return json.loads(json.dumps(m))


vectors = []
for name, rid, m in requests:
    vectors.append({"name": name, "kind": "request", "request_id": rid, "message": jsonable(m),
                    "hex": frame(OPS[m["op"]], rid, request_payload(m)).hex()})
for name, rid, m in responses:
    code = ERROR if m["op"] == "ERROR" else OPS[m["op"]] | 0x80
    vectors.append({"name": name, "kind": "response", "request_id": rid, "message": jsonable(m),
                    "hex": frame(code, rid, response_payload(m)).hex()})
for name, data, error, closes in invalid:
    vectors.append({"name": name, "kind": "invalid", "hex": data.hex(), "error": error, "closes_connection": closes,
                    "note": "sent to a server holding the default model; it answers with this error code"})

doc = {
    "about": "Kairos protocol v1 test vectors; see PROTOCOL.md. Scores given as the string NaN are IEEE NaN. "
             "'invalid' vectors are byte streams a server must answer with the given error code (then close the "
             "connection if closes_connection). Generated by make_vectors.py.",
    "vectors": vectors,
}
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "protocol-vectors.json"), "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print(f"wrote {len(vectors)} vectors")
