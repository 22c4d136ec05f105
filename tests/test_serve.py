"""The HTTP service: endpoints, limits, backpressure, auth, shutdown (fast: a stand-in
restorer for the protocol tests, the real exported models for one end-to-end restore)."""
from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn) is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra (fastapi, uvicorn) is not installed")
from PIL import Image  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from trt_restore.serve.app import ServeConfig, create_app, parse_multipart  # noqa: E402
from trt_restore.serve.decode import Limits, RequestImageError, decode_image  # noqa: E402
from trt_restore.serve.engine import Engine, EngineConfig, QueueFull, ShuttingDown  # noqa: E402
from trt_restore.serve.server import check_bind, is_loopback  # noqa: E402

from serve_support import free_port, serve_models  # noqa: E402,F401  (fixture)

REPO = Path(__file__).resolve().parents[1]


class FakeRestorer:
    """Inverts the photo after `delay` seconds; blocks while `gate` is cleared."""

    def __init__(self, mode, faces, threads, delay=0.0, gate=None):
        self.mode, self.delay, self.gate = mode, delay, gate
        self._faces = object() if faces else None
        self.face_note = "faces: on (fake)" if faces else "faces: off (fake has none)"

    def face_stage(self, mode, faces=None):
        return (self._faces if faces is not False else None), self.face_note

    def restore(self, image):
        return self.restore_with_stages(image).restored

    def restore_with_stages(self, image, mask=None, on_stage=None, mode=None, faces=None):
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)
        if min(image.shape[:2]) < 16:
            raise ValueError("image is too small")
        return SimpleNamespace(restored=255 - image, timings={"encode": 0.001, "mapping": 0.002})


def fake_factory(delay=0.0, gate=None, faces_ok=False):
    def make(mode, faces, threads):
        return FakeRestorer(mode, faces_ok and faces is not False, threads, delay, gate)
    return make


def png_bytes(array: np.ndarray, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def photo(h=40, w=56, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def client_for(config: ServeConfig) -> TestClient:
    return TestClient(create_app(config))


def wait_ready(client, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"not ready: {client.get('/readyz').json()}")


def config(**engine_kw) -> ServeConfig:
    limits = engine_kw.pop("limits", Limits())
    api_key = engine_kw.pop("api_key", None)
    engine_kw.setdefault("restorer_factory", fake_factory())
    return ServeConfig(engine=EngineConfig(models="unused", **engine_kw), limits=limits, api_key=api_key, grace=5)


# ---------------------------------------------------------------------------- decoding
def test_decode_refuses_bombs_before_decoding(monkeypatch):
    """A PNG of a few bytes declaring 12000x9000 is refused from its header: load() is never called."""
    from PIL import ImageFile

    bomb = png_bytes(np.zeros((1, 1, 3), np.uint8))
    # forge the IHDR to declare 30000 x 30000 (CRC fixed up)
    import struct
    import zlib

    def forge(width, height):
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        start = bomb.index(b"IHDR")
        return bomb[:start] + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + bomb[start + 21:]

    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(1))
    with pytest.raises(RequestImageError) as info:
        decode_image(forge(12000, 9000), Limits(max_pixels=40_000_000))
    assert info.value.status == 413 and "12000x9000" in str(info.value) and "before decoding" in str(info.value)
    with pytest.raises(RequestImageError) as info:  # beyond PIL's own guard
        decode_image(forge(60000, 60000), Limits(max_pixels=40_000_000))
    assert info.value.status == 413 and "before decoding" in str(info.value)
    with pytest.raises(RequestImageError, match="per side"):
        decode_image(forge(30000, 10), Limits(max_pixels=40_000_000, max_side=20000))
    assert loads == []


def test_decode_errors_are_clear():
    limits = Limits(max_bytes=10_000)
    with pytest.raises(RequestImageError, match="empty upload"):
        decode_image(b"", limits)
    with pytest.raises(RequestImageError, match="not an image format") as info:
        decode_image(b"hello, not an image", limits)
    assert info.value.status == 415
    truncated = png_bytes(photo(64, 64))[:300]
    with pytest.raises(RequestImageError, match="corrupt or truncated"):
        decode_image(truncated, Limits())
    with pytest.raises(RequestImageError, match="byte limit") as info:
        decode_image(png_bytes(photo(64, 64)), Limits(max_bytes=100))
    assert info.value.status == 413
    gray = decode_image(png_bytes(np.full((20, 30), 7, np.uint8)), limits)
    assert gray.shape == (20, 30, 3) and gray.dtype == np.uint8


def test_multipart_is_parsed_in_memory():
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"scratch\"\r\n\r\n1\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n\x89PNGdata\r\n--XyZ--\r\n")
    parts = parse_multipart(body, "multipart/form-data; boundary=XyZ")
    assert parts["scratch"] == (None, b"1") and parts["image"] == ("a.png", b"\x89PNGdata")


# ---------------------------------------------------------------------------- endpoints
def test_restore_png_and_json_with_timings():
    with client_for(config()) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        wait_ready(client)
        image = photo()
        response = client.post("/v1/restore?tag=abc", content=png_bytes(image), headers={"content-type": "image/png"})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.headers["x-tag"] == "abc"
        assert "queue_wait;dur=" in response.headers["server-timing"]
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), 255 - image)
        # multipart with form options, JSON answer
        response = client.post("/v1/restore/json", files={"image": ("old.jpg", png_bytes(image), "image/png")},
                               data={"scratch": "1", "tag": "t2"})
        body = response.json()
        assert response.status_code == 200, body
        assert body["mode"] == "scratch" and body["tag"] == "t2" and body["filename"] == "old_restored.png"
        assert {"decode_input", "queue_wait", "mapping", "restore_total", "encode_png"} <= set(body["timings"])
        decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["image_png_base64"]))))
        np.testing.assert_array_equal(decoded, 255 - image)
        body = client.post("/v1/restore/json?hr=1&image=0&original=1", content=png_bytes(image)).json()
        assert body["mode"] == "hr" and "image_png_base64" not in body and "original_png_base64" in body
        info = client.get("/v1/info").json()
        assert info["modes"] == ["quality", "scratch", "hr"] and info["auth_required"] is False
        page = client.get("/")
        assert page.status_code == 200 and "compare-slider" in page.text
        assert client.get("/static/app.js").status_code == 200


def test_bad_requests_get_clear_4xx():
    limits = Limits(max_bytes=200_000, max_pixels=100_000)
    with client_for(config(limits=limits)) as client:
        wait_ready(client)
        post = lambda data, q="": client.post(f"/v1/restore{q}", content=data)  # noqa: E731
        assert post(b"junk").status_code == 415
        assert post(b"").status_code == 422
        assert post(png_bytes(photo(400, 400))).status_code == 413  # 160 kP > 100 kP
        assert post(b"x" * 300_000).status_code == 413  # body too large
        response = post(png_bytes(photo(8, 8)))
        assert response.status_code == 422 and "too small" in response.json()["error"]
        assert post(png_bytes(photo()), "?mode=sepia").status_code == 422
        response = post(png_bytes(photo()), "?faces=1")
        assert response.status_code == 422 and "face enhancement is not available" in response.json()["error"]
        response = client.post("/v1/restore", files={"photo": ("a.png", png_bytes(photo()), "image/png")})
        assert response.status_code == 422 and "image" in response.json()["error"]


def test_faces_option_when_available():
    with client_for(config(restorer_factory=fake_factory(faces_ok=True))) as client:
        wait_ready(client)
        assert client.get("/v1/info").json()["faces"]["quality"] is True
        assert client.post("/v1/restore/json?faces=1&image=0", content=png_bytes(photo())).json()["faces"] is True
        assert client.post("/v1/restore/json?faces=0&image=0", content=png_bytes(photo())).json()["faces"] is False


def test_api_key():
    with client_for(config(api_key="s3cret")) as client:
        wait_ready(client)
        data = png_bytes(photo())
        assert client.post("/v1/restore", content=data).status_code == 401
        assert client.post("/v1/restore", content=data, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/v1/restore", content=data, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.post("/v1/restore", content=data, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/v1/info").status_code == 401
        assert client.get("/v1/info", headers={"X-API-Key": "s3cret"}).json()["auth_required"]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    check_bind("127.0.0.1", None, False)
    check_bind("0.0.0.0", "key", False)
    check_bind("0.0.0.0", None, True)
    with pytest.raises(ValueError, match="API key"):
        check_bind("0.0.0.0", None, False)


def test_queue_full_answers_429_with_retry_after():
    gate = threading.Event()
    cfg = config(restorer_factory=fake_factory(gate=gate), max_queue=2)
    with client_for(cfg) as client:
        gate.set()
        wait_ready(client)
        gate.clear()
        engine = client.app.state.engine
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            client.post("/v1/restore", content=png_bytes(photo())).status_code)) for _ in range(3)]
        try:
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 20
            while engine.stats()["queued"] + engine.stats()["running"] < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert engine.stats()["queued"] == 2, engine.stats()
            response = client.post("/v1/restore", content=png_bytes(photo()))
            assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
            assert client.get("/readyz").json()["queued"] == 2
        finally:
            gate.set()  # a failed check must not leave the worker blocked (the client's exit would wait)
        for thread in threads:
            thread.join(10)
        assert results == [200, 200, 200]


def test_readyz_waits_for_warmup():
    gate = threading.Event()
    with client_for(config(restorer_factory=fake_factory(gate=gate))) as client:
        assert client.get("/readyz").status_code == 503
        response = client.post("/v1/restore", content=png_bytes(photo()))
        assert response.status_code == 503 and "loading" in response.json()["error"]
        gate.set()
        wait_ready(client)


def test_engine_shutdown_finishes_or_rejects_every_job():
    """Within the grace period queued work is finished; after it, what is left is rejected."""
    engine = Engine(EngineConfig(models="unused", restorer_factory=fake_factory(delay=0.2), max_queue=10))
    engine.start()
    assert engine.wait_ready(10)
    futures = [engine.submit(photo(seed=i)) for i in range(6)]
    rejected = engine.shutdown(grace=0.5)
    with pytest.raises(ShuttingDown):
        engine.submit(photo())
    done = [f for f in futures if f.exception() is None]
    failed = [f for f in futures if isinstance(f.exception(), ShuttingDown)]
    assert len(done) + len(failed) == 6 and len(failed) == rejected and 1 <= len(done) < 6
    assert engine.stats()["running"] == 0 and engine.stats()["queued"] == 0


def test_engine_queue_full_and_cancelled_jobs():
    gate = threading.Event()
    engine = Engine(EngineConfig(models="unused", restorer_factory=fake_factory(gate=gate), max_queue=1,
                                 modes=("quality",)))
    engine.start()
    gate.set()
    engine.wait_ready(10)
    gate.clear()
    first = engine.submit(photo())
    while engine.stats()["running"] == 0:
        time.sleep(0.01)
    second = engine.submit(photo())
    with pytest.raises(QueueFull):
        engine.submit(photo())
    assert second.cancel()  # a client that went away while queued
    gate.set()
    first.result(10)
    engine.shutdown(5)
    assert engine.counters["cancelled"] == 1 and engine.counters["completed"] == 1


def test_one_restorer_per_worker_serves_every_mode_and_face_setting():
    """Each worker builds one Restorer (one backend) and hands it the job's mode and face
    setting per call, instead of one Restorer per (mode, faces) per worker."""
    made, calls = [], []

    class Recording(FakeRestorer):
        def restore_with_stages(self, image, mask=None, on_stage=None, mode=None, faces=None):
            calls.append((mode, faces))
            return super().restore_with_stages(image, mask)

    def make(mode, faces, threads):
        made.append((mode, faces))
        return Recording(mode, faces is not False, threads)

    engine = Engine(EngineConfig(models="unused", restorer_factory=make, workers=2, modes=("quality", "scratch")))
    engine.start()
    try:
        assert engine.wait_ready(10)
        jobs = [("quality", True), ("scratch", False), ("quality", False), ("scratch", None), ("quality", None)]
        futures = [engine.submit(photo(seed=k), mode=mode, faces=faces) for k, (mode, faces) in enumerate(jobs)]
        assert [f.result(10).faces for f in futures] == [True, False, False, True, True]
    finally:
        engine.shutdown(5)
    assert len(made) == 2  # one per worker, whatever the modes and face settings asked for
    served = calls[4:]  # after the warm-ups (2 modes x 2 workers)
    assert sorted(served, key=str) == sorted([("quality", None), ("scratch", False), ("quality", False),
                                              ("scratch", None), ("quality", None)], key=str)


def test_real_models_one_backend_serves_quality_and_scratch(serve_models, monkeypatch):
    """The real Restorer behind the engine: quality and scratch jobs run on one backend, whose
    onnxruntime sessions cover both modes' graphs."""
    import trt_restore.restorer as restorer_module

    backends = []
    real = restorer_module.create_backend

    def counting(*args, **kwargs):
        backends.append(real(*args, **kwargs))
        return backends[-1]

    monkeypatch.setattr(restorer_module, "create_backend", counting)
    engine = Engine(EngineConfig(models=serve_models, backend="ort", modes=("quality", "scratch"), threads=2,
                                 faces="off"))
    engine.start()
    try:
        assert engine.wait_ready(120), engine.error
        image = np.asarray(Image.open(REPO / "tests" / "data" / "old_a.png").convert("RGB"))[:64, :96].copy()
        results = [engine.submit(image, mode=mode).result(120) for mode in ("quality", "scratch", "quality")]
    finally:
        engine.shutdown(5)
    assert [r.result.restored.shape for r in results] == [(64, 96, 3)] * 3
    assert results[1].result.mask is not None and results[0].result.mask is None
    assert len(backends) == 1
    assert {"mapping_quality", "detection", "mapping_scratch_head"} <= backends[0].loaded


# ---------------------------------------------------------------------------- the real server
SERVER_SCRIPT = """
import sys, time, logging
from types import SimpleNamespace
sys.path.insert(0, {tests!r})
from test_serve import fake_factory
from trt_restore.serve.app import ServeConfig, create_app
from trt_restore.serve.engine import EngineConfig
from trt_restore.serve.server import make_server
config = ServeConfig(engine=EngineConfig(models="unused", restorer_factory=fake_factory(delay=0.4), max_queue=20,
                                         modes=("quality",)), grace={grace})
logging.basicConfig(level=logging.INFO)
make_server(create_app(config), "127.0.0.1", {port}, config.grace, "warning").run()
"""


def http(port, method, path, body=None, timeout=30):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "image/png"} if body else {})
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


@pytest.mark.parametrize("grace", [10.0, 0.5])
def test_sigterm_drains_in_flight_requests(tmp_path, grace):
    """uvicorn + SIGTERM with 6 requests in flight: with a long grace all finish (200) and a
    request arriving during the drain gets 503; with a short grace the running one finishes
    and the queued ones get 503 — none is dropped."""
    port = free_port()
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT.format(tests=str(REPO / "tests"), grace=grace, port=port))
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http(port, "GET", "/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        statuses = []
        data = png_bytes(photo())
        clients = [threading.Thread(target=lambda: statuses.append(http(port, "POST", "/v1/restore", data)[0]))
                   for _ in range(6)]
        for thread in clients:
            thread.start()
        time.sleep(0.6)  # all six are in; the first is running
        server.send_signal(signal.SIGTERM)
        if grace > 5:  # still listening while draining: newcomers get a clean 503, /readyz fails
            time.sleep(0.3)
            assert http(port, "GET", "/readyz")[0] == 503
            late = http(port, "POST", "/v1/restore", data)
            assert late[0] == 503 and "shutting down" in late[1].decode()
        for thread in clients:
            thread.join(30)
        output, _ = server.communicate(timeout=30)
    finally:
        server.kill()
    assert len(statuses) == 6, (statuses, output)
    if grace > 5:
        assert statuses == [200] * 6, output
    else:
        assert statuses.count(200) >= 1 and statuses.count(503) >= 1 and set(statuses) <= {200, 503}, statuses
    # uvicorn re-raises the signal after its graceful shutdown: exit by SIGTERM, after draining
    assert server.returncode in (0, -signal.SIGTERM) and "drained:" in output, output
    assert list((tmp_path / "tmp").iterdir()) == []  # no temporary files


def test_real_models_over_http(serve_models):
    """The real runtime behind the API (quality mode): the served photo equals Restorer's."""
    from trt_restore import Restorer

    cfg = ServeConfig(engine=EngineConfig(models=serve_models, backend="ort", modes=("quality",), threads=2))
    image = np.asarray(Image.open(REPO / "tests" / "data" / "old_a.png").convert("RGB"))[:96, :128].copy()
    with client_for(cfg) as client:
        wait_ready(client, 120)
        info = client.get("/v1/info").json()
        assert info["modes"] == ["quality"] and info["faces"] == {"quality": False}
        response = client.post("/v1/restore/json", files={"image": ("old_a.png", png_bytes(image), "image/png")})
        assert response.status_code == 200, response.text
        body = response.json()
        assert {"encode", "mapping", "decode", "queue_wait", "restore_total"} <= set(body["timings"])
        served = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["image_png_base64"]))))
        scratch = client.post("/v1/restore?scratch=1", content=png_bytes(image))
        assert scratch.status_code == 422 and "scratch mode is not available" in scratch.json()["error"]
    expected = Restorer(serve_models, backend="ort", mode="quality", threads=2).restore(image)
    assert served.shape == expected.shape == (96, 128, 3)
    assert np.abs(served.astype(int) - expected.astype(int)).max() <= 1
