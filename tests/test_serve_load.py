"""Load and fault tests on loopback with the real models: concurrent clients, every answer
checked against its tag and the expected restoration of the photo sent; backpressure
answers are counted, nothing may be lost or mixed up. The small version runs by default,
the heavy one with `pytest -m slow` (benchmarks/serve_bench.py reports the figures)."""
from __future__ import annotations


import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn) is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra (fastapi, uvicorn) is not installed")
from PIL import Image  # noqa: E402

from serve_support import REPO, running_service, serve_models  # noqa: E402,F401  (fixture)
from trt_restore.serve import loadtest  # noqa: E402
from trt_restore.serve.loadtest import Probe, require_loopback, run_load  # noqa: E402


def make_probes(models, count: int) -> list[Probe]:
    source = np.asarray(Image.open(REPO / "tests" / "data" / "old_a.png").convert("RGB"))
    probes = loadtest.make_probes(models, count, source, threads=2)
    assert len({p.expected.shape for p in probes}) == count  # a mixed-up answer shows in its size too
    return probes


def service_config(models, workers=1, max_queue=8, threads=2):
    from trt_restore.serve.app import ServeConfig
    from trt_restore.serve.engine import EngineConfig

    return ServeConfig(engine=EngineConfig(models=models, backend="ort", modes=("quality",), workers=workers,
                                           threads=threads, max_queue=max_queue), grace=10)


def assert_clean(figures: dict) -> None:
    assert figures["lost"] == 0 and figures["mixed_up"] == 0 and figures["error_status"] == 0, figures["problems"]
    assert figures["unaccounted"] == 0, figures


def test_concurrent_clients_get_their_own_answers(serve_models):
    """4 clients for 4 s against one worker with a queue of 2: some answers are 429s, every
    200 is the right photo's restoration, nothing is lost."""
    probes = make_probes(serve_models, 6)
    with running_service(service_config(serve_models, max_queue=2)) as (url, app):
        figures = run_load(url, probes, clients=4, seconds=4, max_requests=40)
    stats = app.state.engine.stats()  # after the drain: a counter may trail the answer it counts
    assert_clean(figures)
    assert figures["ok"] >= 4, figures
    assert figures["ok"] + figures["rejected_429_503"] == figures["sent"]
    assert stats["completed"] >= figures["ok"]  # (+ the warm-up-free count of the engine)


def test_clients_that_walk_away_cost_nothing_and_lose_nothing(serve_models, caplog):
    """Every third request hangs up right after sending: those jobs are cancelled by the
    service (queued or between segments), the other clients still get exactly their own
    answers, and /healthz answers throughout."""
    probes = make_probes(serve_models, 6)
    caplog.set_level("INFO", logger="trt_restore.serve")
    with running_service(service_config(serve_models, max_queue=4)) as (url, app):
        figures = run_load(url, probes, clients=4, seconds=5, max_requests=30, disconnect_every=3,
                           disconnect_after=0.02)
        engine = app.state.engine
        for _ in range(100):  # a cancellation is counted when the worker reaches the job
            if engine.stats()["queued"] == 0 and engine.stats()["running"] == 0:
                break
            time.sleep(0.05)
        stats = engine.stats()
    assert_clean(figures)
    assert figures["abandoned"] >= 4, figures
    assert stats["cancelled"] >= 1, stats  # walked-away jobs do not all run to the end
    assert stats["completed"] + stats["cancelled"] <= figures["ok"] + figures["abandoned"] + 1, stats
    assert figures["healthz"]["failed"] == 0 and figures["healthz"]["probes"] >= 5, figures["healthz"]
    # a walk-away is an ordinary event: one info line each, never an error with a traceback
    errors = [r.getMessage() for r in caplog.records if r.name.startswith("trt_restore") and r.levelno >= 40]
    assert not errors, errors[:3]
    assert any("went away" in r.getMessage() for r in caplog.records), "the disconnects were not noticed"


def test_load_targets_loopback_only():
    with pytest.raises(ValueError, match="only target this machine"):
        require_loopback("http://192.0.2.1:8000")
    assert require_loopback("http://127.0.0.1:8000") == ("127.0.0.1", 8000)


@pytest.mark.slow
@pytest.mark.parametrize("workers,clients", [(1, 8), (2, 16)])
def test_heavy_load(serve_models, workers, clients):
    probes = make_probes(serve_models, 12)
    with running_service(service_config(serve_models, workers=workers, max_queue=4, threads=1)) as (url, _):
        figures = run_load(url, probes, clients=clients, seconds=30)
    assert_clean(figures)
    assert figures["ok"] >= 10 and figures["latency_s"]["p99"] is not None
