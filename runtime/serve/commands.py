"""The `serve` and `batch` commands; cli.py registers them. Only typer is imported here."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import typer

from .. import cli_checks
from ..cli_options import MODELS_HELP, load_restorer, prepare_run, with_restore_options

RAY_ADDRESS = re.compile(r"auto|local|ray://\S+|[A-Za-z0-9][\w.\-]*:\d{2,5}")  # what `--ray ADDRESS` may be


def _parse_size(text: str) -> int:
    from ..tiling.plan import parse_size

    return int(parse_size(text))


def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback needs "
                             "an API key (--api-key / TRT_RESTORE_API_KEY) or --allow-no-auth."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    models: Optional[Path] = typer.Option(None, "--models", "-m", envvar="TRT_RESTORE_MODELS", help=MODELS_HELP),
    backend: str = typer.Option("auto", "--backend", help="auto | ort | trt."),
    modes: str = typer.Option("quality,scratch,hr", "--modes", help="Modes to load and warm up at start "
                              "(comma-separated; modes whose models are missing are left out)."),
    faces: str = typer.Option("auto", "--faces", help="auto: offer face enhancement where its models and a "
                              "detector exist (on by default then); on: required; off: never."),
    workers: int = typer.Option(1, "--workers", min=1, help="Inference workers, each with its own backend "
                                "context (onnxruntime sessions on the CPU; one per GPU)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="onnxruntime threads per worker "
                                          "(default: cores / workers)."),
    max_queue: int = typer.Option(8, "--max-queue", min=0, help="Photos that may wait for a worker; beyond "
                                  "that requests get 429 with Retry-After."),
    max_upload: str = typer.Option("50M", "--max-upload", help="Largest request body, e.g. 50M."),
    max_megapixels: float = typer.Option(40.0, "--max-megapixels", help="Largest photo (from its header, "
                                         "checked before decoding)."),
    grace: float = typer.Option(30.0, "--grace", help="At shutdown, seconds to finish queued photos before "
                                "the rest are answered 503."),
    tile: str = typer.Option("auto", "--tile", callback=cli_checks.tile_option,
                             help="auto | on | off | N, as for restore."),
    max_memory: str = typer.Option("4G", "--max-memory", callback=cli_checks.memory_option,
                                   help="Memory budget for one photo (at least 664M)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TRT_RESTORE_API_KEY",
                                          help="Require this key (X-API-Key or Authorization: Bearer)."),
    allow_no_auth: bool = typer.Option(False, "--allow-no-auth", help="Allow a non-loopback bind without "
                                       "an API key."),
    ray: bool = typer.Option(False, "--ray", help="Run as a Ray Serve deployment (on RAY_ADDRESS, a running "
                             "local Ray, or a new local one; see --ray-address)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to deploy on (implies "
                                              "--ray), e.g. auto or ray://head:10001."),
    replicas: int = typer.Option(1, "--replicas", min=1, help="Ray Serve replicas (one per GPU or CPU worker)."),
    replica_cpus: float = typer.Option(1.0, "--replica-cpus", help="CPUs per Ray Serve replica."),
    replica_gpus: float = typer.Option(0.0, "--replica-gpus", help="GPUs per Ray Serve replica."),
    log_level: str = typer.Option("info", "--log-level", help="debug | info | warning."),
    job_timeout: float = typer.Option(600.0, "--job-timeout", min=0, help="Seconds one photo may run; then it "
                                      "is stopped at the next stage and answered 503 (0: no limit)."),
    keep_sessions: bool = typer.Option(True, "--keep-sessions/--release-sessions", help="onnxruntime: keep every "
                                       "graph's session loaded between photos (default), or drop each after its "
                                       "run so only the running stage's weights stay resident (least memory, "
                                       "0.3-1.3 s more per photo; for boards that share 8 GB)."),
    max_uploads: int = typer.Option(4, "--max-uploads", min=1, help="Uploads received and decoded at once; "
                                    "others wait (their body unread) up to --read-timeout, then get 503."),
    read_timeout: float = typer.Option(30.0, "--read-timeout", min=1, help="Seconds a client may pause during "
                                       "an upload before it is dropped (408)."),
    allow_host: Optional[list[str]] = typer.Option(None, "--allow-host", help="On a loopback bind, another "
                                                   "Host name to accept (repeatable; DNS-rebinding guard)."),
    openapi: bool = typer.Option(False, "--openapi", help="Serve /openapi.json (behind the API key when set)."),
    face_detector: str = typer.Option("auto", "--face-detector", help="auto | yunet | scrfd | dlib. auto: YuNet "
                                      "(MIT) when its file is supplied or found, else faces stay off unless "
                                      "--face-model-licence-ok."),
    face_detector_model: Optional[Path] = typer.Option(None, "--face-detector-model", help="Face detector model "
                                                       "file (YuNet: face_detection_yunet_2023mar.onnx)."),
    face_model_licence_ok: bool = typer.Option(False, "--face-model-licence-ok", help="Run a face detector whose "
                                               "model licence excludes commercial use (SCRFD, dlib): only if "
                                               "your use is allowed."),
) -> None:
    """Serve restoration over HTTP with a web page (FastAPI + uvicorn; needs the \\[serve] extra).

    POST /v1/restore (PNG out) and /v1/restore/json (timings), GET / (web page), /healthz,
    /readyz, /v1/info. See docs/serving.md."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        typer.echo(f"error: serving needs the [serve] extra ({err.name} is missing): "
                   f"pip install 'trt-restore[serve]'", err=True)
        raise typer.Exit(2)
    from ..licences import choose_detector
    from ..restorer import DEFAULT_MODELS
    from .app import ServeConfig
    from .decode import Limits
    from .engine import EngineConfig
    from .server import check_bind, serve

    try:
        check_bind(host, api_key, allow_no_auth)
        chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
        detector, note = (None, "faces off") if faces == "off" else choose_detector(
            face_detector, face_detector_model, models or DEFAULT_MODELS, face_model_licence_ok)
        if detector == "off":  # no commercially usable detector: the service runs without faces
            if faces == "on":
                raise ValueError(note)
            faces, detector = "off", None
        typer.echo(note, err=True)
        engine = EngineConfig(models=models or DEFAULT_MODELS, backend=backend, workers=workers, threads=threads,
                              max_queue=max_queue, modes=chosen, faces=faces, tile=tile, max_memory=max_memory,
                              face_detector=detector, face_detector_model=face_detector_model, licence_note=note,
                              job_timeout=job_timeout or None, keep_sessions=keep_sessions)
        limits = Limits(max_bytes=_parse_size(max_upload), max_pixels=int(max_megapixels * 1e6))
        from .safety import LOOPBACK_HOSTS
        from .server import is_loopback

        # a loopback kiosk is reachable from this machine's browser only: accept only requests
        # addressed to it (a page elsewhere cannot rebind its name to 127.0.0.1)
        allowed = (*LOOPBACK_HOSTS, host, *(allow_host or ())) if is_loopback(host) else None
        config = ServeConfig(engine=engine, limits=limits, api_key=api_key, grace=grace, max_uploads=max_uploads,
                             read_timeout=read_timeout, allowed_hosts=allowed, openapi=openapi)
        from .engine import Engine

        Engine(engine)  # validates the options
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    if ray or ray_address:
        from .ray_serve import serve_on_ray

        serve_on_ray(config, ray_address, host, port, replicas, replica_cpus, replica_gpus)
        return
    serve(config, host, port, log_level)


@with_restore_options
def batch_command(
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Results log (default OUT/manifest.jsonl; "
                                            "a .csv summary is written beside it)."),
    ray: bool = typer.Option(False, "--ray", help="Run on Ray Data: `--ray` alone uses RAY_ADDRESS, a running "
                             "local Ray or a new local one; `--ray ADDRESS` (auto, ray://head:10001, head:6379) "
                             "a cluster. Paths must be shared by all nodes."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Same as `--ray ADDRESS`."),
    workers: int = typer.Option(1, "--workers", min=1, help="Parallel workers: threads in-process, actors "
                                "with --ray (each loads the models)."),
    worker_cpus: float = typer.Option(1.0, "--worker-cpus", help="CPUs per Ray worker."),
    worker_gpus: float = typer.Option(0.0, "--worker-gpus", help="GPUs per Ray worker."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Files per Ray Data batch."),
    progress_every: float = typer.Option(10.0, "--progress-every", help="Seconds between progress lines "
                                         "when stderr is not a terminal."),
    args=None,
) -> None:
    """Restore many photos with `restore`'s pipeline and options, in worker threads or on a Ray
    cluster (--ray): finished outputs are skipped on rerun, outputs are atomic, and the manifest
    records every file's status and error. Progress and the summary go to stderr.
    Exit code 0 all done, 1 some failed, 2 usage error (found before the first photo)."""
    from .batch import run_planned

    if ray:  # `--ray ADDRESS`: the address lands among the inputs (typer has no optional-value options)
        addresses = [i for i in args.inputs if RAY_ADDRESS.fullmatch(i) and not os.path.exists(i)]
        if len(addresses) > 1 or (addresses and ray_address):
            typer.echo(f"error: more than one Ray address given: {', '.join(addresses + [ray_address or ''])}",
                       err=True)
            raise typer.Exit(2)
        if addresses:
            ray_address = addresses[0]
            args.inputs = [i for i in args.inputs if i != ray_address]
    ray = ray or bool(ray_address)
    if ray:
        try:
            import ray as _ray  # noqa: F401
            import ray.data  # noqa: F401
        except ImportError:
            typer.echo("error: --ray needs the [ray] extra: pip install 'trt-restore[ray]'", err=True)
            raise typer.Exit(2)
    options, run = prepare_run(args, manifest, verify_models=ray)  # Ray workers build their own Restorers
    restorer = None if ray else load_restorer(options)
    try:
        summary = run_planned(run, options, overwrite=args.overwrite, ray_address=ray_address, use_ray=ray,
                              workers=workers, num_cpus=worker_cpus, num_gpus=worker_gpus, batch_size=batch_size,
                              progress_every=progress_every, restorer=restorer)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    typer.echo(summary.line(args.output_dir), err=True)
    raise typer.Exit(summary.exit_code)
