"""RELOAD, PIN, ROLLBACK against a server on its own models folder: answers carry the version that computed them, and
ROLLBACK (not idempotent) is never retried behind the caller's back."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

import kairos_client as kc
from kairos_test_support import MODELS, DroppingProxy, free_port

ITEMS = ["item-%d" % i for i in range(0, 2000, 50)]


@pytest.fixture
def models_dir(tmp_path, kairos_binary):
    """A models folder holding default v1 (the shipped file); v2 is made on the side, published by the test."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(MODELS / "default.kmodel", folder / "default.kmodel")
    v2 = tmp_path / "default-v2.kmodel"
    subprocess.run([str(kairos_binary), "make-demo-model", "--out", str(v2), "--version", "2", "--seed", "7"],
                   check=True, stdout=subprocess.DEVNULL, timeout=120)
    return folder, v2


def _publish(kairos_binary, source, folder):
    subprocess.run([str(kairos_binary), "publish", str(source), str(folder)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)


def test_reload_pin_rollback_and_version_stamps(start_server, models_dir, kairos_binary):
    folder, v2 = models_dir
    srv = start_server(models=folder)
    with kc.Client("127.0.0.1", srv.port, timeout=30) as c:
        v1_scores = c.score("default", "user-1", ITEMS)
        assert v1_scores.model_version == 1

        report = c.reload()
        assert isinstance(report, kc.ServingReport)
        assert report.model("default").version == 1 and report.rejected == []

        _publish(kairos_binary, v2, folder)
        report = c.reload()  # whether or not the folder watcher got there first, v2 serves after RELOAD
        assert report.model("default").version == 2
        v2_scores = c.score("default", "user-1", ITEMS)
        assert v2_scores.model_version == 2 and v2_scores.model == kc.ModelStamp("default", 2)
        assert v2_scores.scores.tobytes() != v1_scores.scores.tobytes()
        assert c.info().model("default").version == 2
        # A pinned-version request names the version it wants.
        with pytest.raises(kc.UnknownModel):
            c.score(("default", 1), "user-1", ITEMS)

        report = c.rollback("default")
        assert report.model("default").version == 1
        again = c.score("default", "user-1", ITEMS)
        assert again.model_version == 1 and again.scores.tobytes() == v1_scores.scores.tobytes()
        with pytest.raises(kc.UnknownModel):
            c.rollback("default")  # nothing below v1: fails, changes nothing
        assert c.topk("default", "user-1", 3).model_version == 1

        assert c.pin("default", 2).model("default").version == 2
        assert c.similar("default", "item-1", 3).model_version == 2
        with pytest.raises(kc.UnknownModel):
            c.pin("default", 999)
        assert c.info().model("default").version == 2
        assert c.rollback("default").model("default").version == 1
        assert c.unpin("default").model("default").version == 2  # the highest valid version serves again

        (folder / "broken.kmodel").write_bytes(b"not a model" * 100)
        report = c.reload()
        assert report.model("default").version == 2
        assert any(r.startswith("broken.kmodel") for r in report.rejected), report.rejected


def test_async_admin(start_server, models_dir, kairos_binary):
    folder, v2 = models_dir
    srv = start_server(models=folder)
    _publish(kairos_binary, v2, folder)

    async def main():
        async with kc.AsyncClient("127.0.0.1", srv.port, timeout=30) as c:
            assert (await c.reload()).model("default").version == 2
            assert (await c.rollback("default")).model("default").version == 1
            assert (await c.score("default", "user-1", ITEMS)).model_version == 1
            assert (await c.pin("default", 2)).model("default").version == 2
            with pytest.raises(kc.UnknownModel):
                await c.pin("default", 3)
            assert (await c.unpin("default")).model("default").version == 2

    asyncio.run(main())


def test_rollback_is_not_retried_but_pin_is(start_server, models_dir, kairos_binary):
    folder, v2 = models_dir
    _publish(kairos_binary, v2, folder)
    srv = start_server(models=folder)
    proxy = DroppingProxy(srv.port)
    try:
        with kc.Client("127.0.0.1", proxy.port, timeout=30) as c:
            assert c.info().model("default").version == 2
            proxy.drop_requests = 1
            with pytest.raises(kc.KairosConnectionError) as e:
                c.rollback("default")
            assert "not retried" in str(e.value)
            assert proxy.connections == 1  # no second attempt
            assert c.info().model("default").version == 2  # and it never reached the server
            proxy.drop_requests = 1
            assert c.pin("default", 1).model("default").version == 1  # idempotent: retried on a fresh connection
            assert (proxy.dropped, proxy.connections) == (2, 3)

        async def main():
            async with kc.AsyncClient("127.0.0.1", proxy.port, timeout=30) as ac:
                await ac.ping()
                proxy.drop_requests = 1
                with pytest.raises(kc.KairosConnectionError):
                    await ac.rollback("default")
                return (await ac.info()).model("default").version

        assert asyncio.run(main()) == 1
    finally:
        proxy.close()


def test_admin_ops_are_unknown_opcodes_to_an_older_server(tmp_path):
    """A server without RELOAD answers UNKNOWN_OPCODE and keeps the connection (PROTOCOL.md, Versions)."""
    import socket
    import struct
    import threading

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def serve():
        conn, _ = lsock.accept()
        with conn:
            for _ in range(2):
                header = conn.recv(12)
                rid = struct.unpack_from("<I", header, 4)[0]
                if header[2] == 0x20:
                    msg = b"unknown opcode 0x20"
                    payload = struct.pack("<HH", 4, len(msg)) + msg
                    conn.sendall(struct.pack("<BBBBII", 0xCA, 1, 0xFF, 0, rid, len(payload)) + payload)
                else:
                    conn.sendall(struct.pack("<BBBBII", 0xCA, 1, header[2] | 0x80, 0, rid, 0))
        lsock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with kc.Client("127.0.0.1", lsock.getsockname()[1], timeout=5) as c:
        with pytest.raises(kc.UnknownOpcode) as e:
            c.reload()
        assert e.value.code == 4
        assert c.ping() is None  # same connection
    t.join(5)


def _model_gauges(port):
    """The per-model gauges on the metrics endpoint: {(metric, model): value}."""
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("kairos_model_") and "{model=" in line:
            name, rest = line.split("{model=\"", 1)
            model, value = rest.split("\"} ", 1)
            out[(name, model)] = float(value)
    return out


def _inspect(kairos_binary, path):
    out = subprocess.run([str(kairos_binary), "inspect", "--json", str(path)], check=True, stdout=subprocess.PIPE,
                         timeout=120).stdout
    return json.loads(out)


def test_metrics_name_the_serving_version_and_how_old_its_data_is(start_server, models_dir, kairos_binary):
    folder, v2 = models_dir
    metrics_port = free_port()
    before = int(time.time())
    srv = start_server("--metrics-port", str(metrics_port), models=folder)
    v1 = _inspect(kairos_binary, folder / "default.kmodel")
    trending_time = next(s["param"] for s in v1["sections"] if s["kind"] == "item_popularity")
    gauges = _model_gauges(metrics_port)
    assert gauges[("kairos_model_version", "default")] == 1
    assert gauges[("kairos_model_data_time_seconds", "default")] == trending_time
    loaded = gauges[("kairos_model_loaded_time_seconds", "default")]
    assert before <= loaded <= time.time() + 1

    _publish(kairos_binary, v2, folder)
    with kc.Client("127.0.0.1", srv.port, timeout=30) as c:
        assert c.reload().model("default").version == 2
    gauges = _model_gauges(metrics_port)
    assert gauges[("kairos_model_version", "default")] == 2
    v2_time = next(s["param"] for s in _inspect(kairos_binary, v2)["sections"] if s["kind"] == "item_popularity")
    assert v2_time != trending_time
    assert gauges[("kairos_model_data_time_seconds", "default")] == v2_time

