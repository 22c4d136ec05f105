"""The same service as a Ray Serve deployment: one replica per CPU or GPU worker.

Each replica runs the FastAPI app of `app.py` (same endpoints, same web page) with its own
engine of one inference worker, i.e. one backend context per replica; Ray Serve's proxy
spreads requests over the replicas. Backpressure: the engine's queue answers 429 as on a
single machine, and Ray Serve itself answers 503 once `max_queued_requests` requests wait
at the proxy.

    trt-restore serve --ray [ADDRESS] --replicas 4 --replica-cpus 4      # CPU replicas
    trt-restore serve --ray ADDRESS --replicas 8 --replica-gpus 1        # one replica per GPU

The model folder must exist at the same path on every node.
"""
from __future__ import annotations

import dataclasses
import time

from .app import ServeConfig, create_app


def build_application(config: ServeConfig, replicas: int = 1, replica_cpus: float = 1.0,
                      replica_gpus: float = 0.0, max_ongoing_requests: int | None = None,
                      max_queued_requests: int = 64):
    """A bound Ray Serve application (`serve.run(...)` it)."""
    from ray import serve

    engine_config = dataclasses.replace(config.engine, workers=1,
                                        threads=config.engine.threads or max(1, int(replica_cpus)))
    replica_config = dataclasses.replace(config, engine=engine_config, block_startup=True)
    fastapi_app = create_app(replica_config)  # the engine starts in each replica's lifespan
    options = {"num_cpus": replica_cpus}
    if replica_gpus:
        options["num_gpus"] = replica_gpus

    @serve.deployment(name="trt_restore", num_replicas=replicas, ray_actor_options=options,
                      max_ongoing_requests=max_ongoing_requests or engine_config.max_queue + 1,
                      max_queued_requests=max_queued_requests, health_check_period_s=5,
                      graceful_shutdown_timeout_s=config.grace, graceful_shutdown_wait_loop_s=1)
    @serve.ingress(fastapi_app)
    class TrtRestoreDeployment:
        def check_health(self):
            engine = getattr(fastapi_app.state, "engine", None)  # None until the app's lifespan started it
            if engine is not None and engine.error:
                raise RuntimeError(engine.error)

    return TrtRestoreDeployment.bind()


def serve_on_ray(config: ServeConfig, address: str | None, host: str, port: int, replicas: int,
                 replica_cpus: float, replica_gpus: float, blocking: bool = True) -> None:
    """Start (or connect to) Ray, deploy, and block until interrupted."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_application(config, replicas, replica_cpus, replica_gpus), name="trt_restore",
              route_prefix="/")
    if not blocking:
        return
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
