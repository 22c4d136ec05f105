"""Shared pieces of the serving and batch tests (imported by test_serve*.py, test_batch*.py)."""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def serve_models(request) -> Path:
    """The exported models: conftest's `exported_models`, or an already exported folder named
    by TRT_RESTORE_TEST_MODELS (saves the ~2 min export when iterating on these tests)."""
    given = os.environ.get("TRT_RESTORE_TEST_MODELS")
    if given:
        return Path(given)
    return request.getfixturevalue("exported_models")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_service(config, ready_timeout: float = 180.0):
    """The app for `config` under uvicorn in a thread on a free loopback port; yields its URL
    (after the models are loaded and warm) and stops it afterwards."""
    import threading
    import time

    import uvicorn

    from trt_restore.serve.app import create_app

    app = create_app(config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout
    try:
        while not (server.started and getattr(app.state, "engine", None) and app.state.engine.ready):
            engine = getattr(app.state, "engine", None)
            if engine is not None and engine.error:
                raise RuntimeError(engine.error)
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the service did not become ready")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(60)


REPO = Path(__file__).resolve().parents[1]


class IdentityRestorer:
    """Gives the photo back unchanged: what comes out is what the service made of the upload."""

    def __init__(self, mode, faces, threads):
        self._faces, self.face_note = None, "faces: off (fake)"

    def face_stage(self, mode, faces=None):
        return None, self.face_note

    def restore(self, image):
        return image.copy()

    def restore_with_stages(self, image, mask=None, on_stage=None, **call):
        return SimpleNamespace(restored=image.copy(), timings={"mapping": 0.001})
