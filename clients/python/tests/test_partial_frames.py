"""Requests still arriving (PROTOCOL.md, "Requests still arriving"): a client that sends part of a frame and then
waits is timed out, and the bytes held of such frames across connections are limited; both against a live server."""

from __future__ import annotations

import select
import socket
import threading
import urllib.request
import struct

from kairos_client.errors import ErrorCode
from kairos_test_support import free_port

WAIT_S = 20  # each answer comes within a second or two; this only bounds a failure


def _header(opcode: int, request_id: int, length: int) -> bytes:
    return struct.pack("<BBBBII", 0xCA, 1, opcode, 0, request_id, length)


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(WAIT_S)
    return s


def _read_frame(s: socket.socket):
    """(response code, request id, payload) of the next frame, or None at end of stream."""
    data = b""
    while len(data) < 12 or len(data) < 12 + struct.unpack("<I", data[8:12])[0]:
        chunk = s.recv(65536)
        if not chunk:
            assert data == b"", "the stream ended inside a frame"
            return None
        data += chunk
    length = struct.unpack("<I", data[8:12])[0]
    assert len(data) == 12 + length, "more than one frame arrived; this test sends one request at a time"
    return data[2], struct.unpack("<I", data[4:8])[0], data[12:]


def _error_code(frame) -> int:
    code, _, payload = frame
    assert code == 0xFF, "expected an error frame, got response code 0x%02x" % code
    return struct.unpack("<H", payload[:2])[0]


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=WAIT_S).read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.split(" ")[0] == name]
    assert len(values) == 1, "%s: %r" % (name, values)
    return values[0]


def test_a_frame_that_stops_arriving_is_answered_frame_timeout_and_closed(start_server):
    metrics_port = free_port()
    srv = start_server("--frame-timeout", "1", "--metrics-port", str(metrics_port))
    with _connect(srv.port) as s:
        s.sendall(_header(0x01, 41, 0))  # a whole PING first: it is answered, the timeout is only for the next frame
        code, rid, _ = _read_frame(s)
        assert (code, rid) == (0x81, 41)
        s.sendall(_header(0x01, 42, 100) + b"\x00" * 10)  # 10 of its 100 payload bytes, and no more
        frame = _read_frame(s)
        assert frame is not None and frame[1] == 42
        assert _error_code(frame) == ErrorCode.FRAME_TIMEOUT
        assert _read_frame(s) is None  # closed after it
    assert _metric(metrics_port, "kairos_frame_timeouts_total") == 1
    assert _metric(metrics_port, "kairos_partial_frame_bytes") == 0  # given back


def test_partial_frames_past_the_servers_limit_are_refused_and_the_rest_served(start_server):
    # One event-loop thread: the two connections' reads take turns, so exactly one of them takes the total past the
    # limit (on two threads, two growing at the same instant may both be refused, which is the safe side).
    srv = start_server("--max-partial-frames-mb", "1", "--threads", "1")
    size = 700_000  # either frame alone fits in 1 MiB; both do not
    with _connect(srv.port) as a, _connect(srv.port) as b:
        a.sendall(_header(0x01, 1, size) + b"\x00" * (size - 10))
        b.sendall(_header(0x01, 2, size) + b"\x00" * (size - 10))
        ready, _, _ = select.select([a, b], [], [], WAIT_S)
        assert len(ready) == 1, "expected exactly one connection to be answered, got %d" % len(ready)
        refused, kept = (a, b) if ready[0] is a else (b, a)
        frame = _read_frame(refused)
        assert frame is not None and frame[1] == (1 if refused is a else 2)
        assert _error_code(frame) == ErrorCode.OVERLOADED
        assert _read_frame(refused) is None  # then closed
        # The other was held all along: completing its frame gets its answer (a PING with a payload is a
        # BAD_REQUEST, which shows the server read all of it as one frame), and the connection goes on.
        kept.sendall(b"\x00" * 10)
        frame = _read_frame(kept)
        assert frame is not None and frame[1] == (1 if kept is a else 2)
        assert _error_code(frame) == ErrorCode.BAD_REQUEST
        kept.sendall(_header(0x01, 3, 0))
        assert _read_frame(kept)[:2] == (0x81, 3)


def test_a_client_still_sending_when_framing_is_lost_gets_the_error_before_the_close(server):
    # The server closes after a framing error; had it closed with the client's bytes unread, the kernel would send a
    # reset, which can destroy the error answer before the client reads it.
    with _connect(server.port) as s:
        garbage = b"\x00" * (4 << 20)
        sender = threading.Thread(target=_send_ignoring_reset, args=(s, garbage), daemon=True)
        sender.start()
        frame = _read_frame(s)
        assert frame is not None and frame[1] == 0
        assert _error_code(frame) == ErrorCode.MALFORMED_FRAME
        assert _read_frame(s) is None
        sender.join(WAIT_S)


def _send_ignoring_reset(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:
        pass  # the server closed: expected once it has answered
