"""Shared pieces of the serving and batch tests (imported by test_serve*.py, test_batch*.py)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

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
