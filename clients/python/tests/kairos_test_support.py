"""Test helpers: `kairos serve` processes on free ports, a silent server, a connection-dropping proxy, the vectors,
and polling with a deadline (never a sleep as synchronisation)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "proto-spec" / "vectors" / "protocol-vectors.json"
MODELS = REPO / "models"
LISTENING = "kairos: listening on "

BUILD_TIMEOUT_S = 20 * 60
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20


def load_vectors() -> List[dict]:
    """For parametrize (collection time)."""
    with open(VECTORS) as f:
        return json.load(f)["vectors"]


class ServerProcess:
    """A running `kairos serve` on a free port (port 0), stopped with SIGTERM."""

    def __init__(self, binary: Path, extra: List[str], models: Optional[Path] = None):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--models", str(models or MODELS), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=str(REPO),
        )
        self.port = self._wait_for_listening_line()

    def _wait_for_listening_line(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        data = b""
        try:
            while b"\n" not in data:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    self.kill()
                    raise RuntimeError("kairos serve did not print its listening line within %ds; log:\n%s"
                                       % (START_TIMEOUT_S, self.log_text()))
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.proc.wait(5)
                    raise RuntimeError("kairos serve exited (%s) before listening; log:\n%s"
                                       % (self.proc.returncode, self.log_text()))
                data += chunk
        finally:
            sel.close()
        line = data.split(b"\n", 1)[0].decode()
        assert line.startswith(LISTENING), line
        address = line[len(LISTENING):].split(" ", 1)[0]
        return int(address.rsplit(":", 1)[1])

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    @property
    def address(self):
        return ("127.0.0.1", self.port)

    def stop(self) -> Optional[int]:
        """SIGTERM, then wait for the exit (graceful drain); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.stdout.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SilentServer:
    """Accepts connections and reads them, never answers (a hung server)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: List[socket.socket] = []
        self.received = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        while not self._stop:
            for key, _ in sel.select(0.05):
                if key.fileobj is self.sock:
                    try:
                        c, _ = self.sock.accept()
                    except OSError:
                        continue
                    self.accepted.append(c)
                    sel.register(c, selectors.EVENT_READ)
                else:
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(key.fileobj)
                    self.received += len(data)
        sel.close()

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)
        for c in self.accepted:
            c.close()
        self.sock.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Polls `predicate` until true or the deadline passes (for waiting on another process, never as a delay)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.01)


class DroppingProxy:
    """A TCP proxy in front of a real server that can break connections on purpose.

    While ``drop_requests`` is above 0, the next connection that sends bytes is closed at once (the request is never
    forwarded) and the count goes down by one. ``connections`` counts accepted connections."""

    def __init__(self, target_port: int, drop_requests: int = 0):
        self.target_port = target_port
        self.drop_requests = drop_requests
        self.dropped = 0
        self.connections = 0
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self._open: List[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            first = client.recv(1 << 20)
            if not first:
                return
            with self._lock:
                drop = self.drop_requests > 0
                if drop:
                    self.drop_requests -= 1
                    self.dropped += 1
            if drop:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open.append(upstream)
            upstream.sendall(first)
            back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
            back.start()
            self._pump(client, upstream)
            back.join(10)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                if self.drop_requests > 0 and src is not None and dst.getpeername()[1] == self.target_port:
                    with self._lock:
                        self.drop_requests -= 1
                        self.dropped += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        with self._lock:
            for s in self._open:
                try:
                    s.close()
                except OSError:
                    pass
