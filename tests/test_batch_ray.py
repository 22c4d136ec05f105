"""Scale-out on a local Ray cluster (ray.init(num_cpus=2) on this machine, real models):
`trt-restore batch --ray` with Ray Data, a worker killed mid-run, and the service as a Ray
Serve deployment. Slow (Ray's start-up alone is ~10 s here): run with `pytest -m slow`."""
from __future__ import annotations

import collections
import io
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
pytest.importorskip("ray.data", reason="the [ray] extra (ray[data,serve]) is not installed")

from PIL import Image  # noqa: E402

from serve_support import free_port, serve_models  # noqa: E402,F401  (fixture)
from test_batch import make_photos  # noqa: E402
from trt_restore.serve.batch import LOCK_NAME, RestoreOptions, read_manifest, run_batch  # noqa: E402


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    pids = tmp_path_factory.mktemp("worker_pids")
    os.environ["TRT_RESTORE_BATCH_PID_DIR"] = str(pids)  # workers announce their pid (to be killed)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TRT_RESTORE_BATCH_PID_DIR": str(pids)}})
    yield pids
    ray.shutdown()
    os.environ.pop("TRT_RESTORE_BATCH_PID_DIR", None)


def test_cli_batch_on_ray_and_rerun(local_ray, serve_models, tmp_path):
    from typer.testing import CliRunner

    from trt_restore.cli import app

    photos = make_photos(tmp_path / "in", 6, size=(64, 64))
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    args = ["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--models", str(serve_models),
            "--workers", "2", "--threads", "1", "--batch-size", "2", "--ray"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # one bad file
    assert "6 restored, 0 skipped (done before), 1 failed" in result.output
    latest = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert latest[str(tmp_path / "in" / "bad.png")]["status"] == "failed"
    assert {latest[str(p)]["status"] for p in photos} == {"ok"}
    assert all(":" in latest[str(p)]["worker"] for p in photos)  # host:pid of a Ray worker
    again = CliRunner().invoke(app, args)
    assert "0 restored, 6 skipped (done before), 1 failed" in again.output, again.output


def test_ray_worker_killed_mid_run_then_rerun(local_ray, serve_models, tmp_path):
    """SIGKILL one Ray Data actor while the job runs. Ray restarts it and retries its batch,
    or the run fails; either way a rerun leaves every output present exactly once."""
    photos = make_photos(tmp_path / "in", 16, size=(64, 64))
    out = tmp_path / "out"
    options = RestoreOptions(models=str(serve_models), threads=1)
    for old in local_ray.iterdir():
        old.unlink()
    outcome = {}

    def job():
        try:
            outcome["summary"] = run_batch([str(tmp_path / "in")], out, options, use_ray=True, workers=2,
                                           batch_size=1)
        except Exception as err:  # noqa: BLE001 - a failed run is allowed; the rerun must fix it
            outcome["error"] = err

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 120
    while len(list(out.glob("scan_*.png"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = sorted(local_ray.glob("*.pid"))
    assert victims, "no Ray worker announced itself"
    os.kill(int(victims[0].read_text()), signal.SIGKILL)
    thread.join(300)
    assert not thread.is_alive()
    first = outcome.get("summary")
    rerun = run_batch([str(tmp_path / "in")], out, options, use_ray=True, workers=2, batch_size=1)
    assert rerun.failed == 0 and rerun.restored + rerun.skipped == 16
    if first is not None:  # Ray recovered by itself
        assert first.restored + first.failed == 16 and rerun.skipped == 16
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"scan_{k:03d}.png" for k in range(16)] + ["manifest.jsonl", "manifest.csv", LOCK_NAME])
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
    latest = read_manifest(out / "manifest.jsonl")
    assert {latest[str(p)]["status"] for p in photos} <= {"ok", "skipped"}
    ok = collections.Counter(r["input"] for r in records if r["status"] == "ok")
    assert set(ok) | {r["input"] for r in records if r["status"] == "skipped"} == {str(p) for p in photos}
    for photo in photos:
        assert Image.open(out / photo.name).size == (64, 64)


def test_ray_serve_deployment(local_ray, serve_models):
    """The same FastAPI app as a Ray Serve deployment with 2 replicas: both answer, none is
    routed more than it can take (the proxy queues the rest), every answer is the right one."""
    import http.client

    from ray import serve

    from trt_restore.serve.app import ServeConfig
    from trt_restore.serve.engine import EngineConfig
    from trt_restore.serve.ray_serve import build_application

    port = free_port()
    # max_queue=1: a replica takes at most 2 requests at a time, so 8 at once must use both
    config = ServeConfig(engine=EngineConfig(models=serve_models, backend="ort", modes=("quality",), threads=1,
                                             max_queue=1), grace=5)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_application(config, replicas=2, replica_cpus=0.5), name="trt_restore", route_prefix="/")

        def call(method, path, body=None):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request(method, path, body=body)
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())

        deadline = time.monotonic() + 120
        while call("GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "replicas did not become ready"
            time.sleep(0.5)
        image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        answers = {}

        def ask(k):
            status, body, _ = call("POST", f"/v1/restore/json?image=0&tag=r{k}", buffer.getvalue())
            answers[k] = (status, json.loads(body))

        clients = [threading.Thread(target=ask, args=(k,)) for k in range(8)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(120)
        assert sorted(answers) == list(range(8))
        for k, (status, answer) in answers.items():
            assert status == 200, answer
            assert answer["tag"] == f"r{k}" and (answer["width"], answer["height"]) == (80, 64)
        replicas = {answer["server"] for _, answer in answers.values()}
        assert len(replicas) == 2, replicas
        status, body, headers = call("POST", "/v1/restore", buffer.getvalue())
        assert status == 200 and headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(body)).size == (80, 64)
        assert call("GET", "/")[0] == 200
    finally:
        serve.shutdown()
