"""The HTTP API and the web page (FastAPI). Imported only by `trt-restore serve` and the Ray
Serve deployment, so the runtime imports without FastAPI installed.

Endpoints (see docs/serving.md):
  GET  /                     the web page (static/index.html, app.js, style.css)
  GET  /healthz              liveness: 200 while the process serves HTTP
  GET  /readyz               readiness: 200 once models are loaded and warmed up, 503 before and while stopping
  GET  /v1/info              modes, face stage, limits, whether an API key is needed
  POST /v1/restore           photo in (raw body or multipart field `image`, optional `mask`), PNG out
  POST /v1/restore/json      the same, JSON out: per-stage timings (+ the PNG as base64 unless image=0)

Uploads are capped, timed and parsed off the event loop (intake.py); a client that goes away
cancels its job; what reaches a header or a body is sanitised (safety.py). No /docs page
(Swagger loads from a CDN a kiosk cannot reach); /openapi.json only with `openapi=True`,
behind the key like everything but /, /static, /healthz and /readyz.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..licences import RESTORATION
from ..preprocess import check_aspect
from .decode import Limits, RequestImageError, decode_image, encode_png
from .files import encode_result, prepare_upload
from .engine import Engine, EngineConfig, JobStopped, NotReady, OptionUnavailable, QueueFull, ShuttingDown
from .intake import ClientGone, RequestFailed, UploadSlots, await_job, read_body
from .safety import RequestGuard, content_disposition, header_text, safe_name, scrub

log = logging.getLogger("trt_restore.serve")
STATIC = Path(__file__).with_name("static")
TRUE = {"1", "true", "yes", "on"}


def server_id() -> str:
    """Which process answered (Ray Serve replicas, load tests); computed where the app runs."""
    return f"{socket.gethostname()}:{os.getpid()}"

FALSE = {"0", "false", "no", "off"}


@dataclass
class ServeConfig:
    engine: EngineConfig
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None  # required in X-API-Key or "Authorization: Bearer" when set
    grace: float = 30.0  # seconds to finish queued work at shutdown before rejecting it
    block_startup: bool = False  # start-up waits for the warm-up (Ray Serve: a replica is RUNNING only when warm)
    max_uploads: int = 4  # requests receiving, parsing or decoding a body at once; others wait (then 503)
    read_timeout: float = 30.0  # seconds a client may leave between two pieces of its upload (then 408)
    upload_timeout: float = 300.0  # seconds for a whole upload
    allowed_hosts: tuple[str, ...] | None = None  # Host/Origin allow-list (loopback binds); None: no check
    openapi: bool = False  # serve /openapi.json (behind the key when one is set); never a CDN-loaded /docs page


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _flag(value, name: str) -> bool | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise HTTPError(422, f"option {name}={value!r}: expected true/false")


def resolve_options(values: dict) -> tuple[str, bool | None]:
    """(mode, faces) from request options: mode=quality|scratch|hr, or scratch=1 / hr=1; faces=1|0."""
    mode = values.get("mode") or None
    if mode is not None and mode not in ("quality", "scratch", "hr"):
        raise HTTPError(422, f"option mode={mode!r}: expected quality, scratch or hr")
    if mode is None:
        mode = "hr" if _flag(values.get("hr"), "hr") else "scratch" if _flag(values.get("scratch"), "scratch") \
            else "quality"
    return mode, _flag(values.get("faces"), "faces")


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """{field name: (filename or None, bytes)} parsed in memory (no spooling to disk)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPError(400, "multipart request without a boundary")
    parts: dict[str, tuple[str | None, bytes]] = {}
    state: dict = {"headers": {}, "field": b"", "value": b"", "data": []}

    def on_part_begin():
        state["headers"], state["data"] = {}, []

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data, start, end):
        state["data"].append(bytes(data[start:end]))

    def on_part_end():
        _, opts = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        filename = opts.get(b"filename")
        parts[name] = (filename.decode("utf-8", "replace") if filename is not None else None, b"".join(state["data"]))

    parser = MultipartParser(boundary, callbacks={
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        parser.write(body)
        parser.finalize()
    except Exception as err:  # noqa: BLE001 - any parser error is the client's
        raise HTTPError(400, f"malformed multipart body ({err})") from None
    return parts


def _on_thread(function, *args):
    """Await `function(*args)` run on a daemon thread of its own (not the loop's default
    executor: the event loop's exit waits for those threads)."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run():
        try:
            future.set_result(function(*args))
        except BaseException as err:  # noqa: BLE001 - delivered to the awaiting coroutine
            future.set_exception(err)

    threading.Thread(target=run, name=getattr(function, "__name__", "call"), daemon=True).start()
    return asyncio.wrap_future(future)


def _scrubbed(value):
    """`value` with file system paths removed from every string (the models folder, ...)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


def create_app(config: ServeConfig, engine: Engine | None = None):
    """The FastAPI application; `engine` is created from `config.engine` when not given.
    Its lifespan starts the engine (loading and warm-up in the background) and drains it."""
    from .. import __version__

    limits = config.limits
    job_timeout = config.engine.job_timeout
    # the request's own bound: its queue wait plus its run (the engine stops the run itself at
    # job_timeout; this only covers a worker stuck inside one long segment)
    wait_limit = None if not job_timeout else \
        job_timeout * (1 + config.engine.max_queue / max(1, config.engine.workers)) + 10
    holder: dict = {"engine": engine}  # created in the lifespan when not given (picklable app for Ray Serve)

    class _Engine:
        """Forwards to the current engine (so handlers need not look it up)."""

        def __getattr__(self, name):
            current = holder["engine"]
            if current is None:
                raise NotReady("the service is starting")
            return getattr(current, name)

    engine = _Engine()

    slots = UploadSlots(config.max_uploads)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if holder["engine"] is None:
            holder["engine"] = Engine(config.engine)
        app.state.engine = holder["engine"]
        if not holder["engine"]._workers:
            holder["engine"].start()
        if config.block_startup and not await _on_thread(holder["engine"].wait_ready):
            raise RuntimeError(f"the models could not be loaded: {holder['engine'].error}")
        try:
            yield
        finally:
            # bounded whatever the workers do: the engine answers every queued and running job
            # by the end of the grace (shutdown.md); a thread of its own, never the loop's
            # default executor, whose threads the event loop's own exit would wait for
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_on_thread(holder["engine"].shutdown, config.grace), config.grace + 10)
            slots.close()

    app = FastAPI(title="trt-restore", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, summary="Old-photo restoration service ('Bringing Old Photos Back to Life').")
    app.state.engine = holder["engine"]
    app.state.config = config
    app.state.uploads = slots
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(RequestGuard, allowed_hosts=config.allowed_hosts,
                       draining=lambda: holder["engine"] is not None and holder["engine"]._shutdown_started)

    def error(status: int, message: str, headers: dict | None = None):
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)

    @app.exception_handler(HTTPError)
    async def _http_error(request, exc: HTTPError):
        return error(exc.status, scrub(exc.message), exc.headers)  # e.g. a face note naming the models folder

    @app.exception_handler(RequestFailed)
    async def _request_failed(request, exc: RequestFailed):
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(ClientGone)
    async def _client_gone(request, exc: ClientGone):
        log.info("%s %s: %s", request.method, request.url.path, exc)  # an ordinary event: no traceback
        return Response(status_code=499, headers={"Connection": "close"})  # nobody reads it

    def authorize(request: Request) -> None:
        if not config.api_key:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), config.api_key.encode()):
            raise HTTPError(401, "missing or wrong API key (send it as X-API-Key or Authorization: Bearer)",
                            {"WWW-Authenticate": "Bearer"})

    def capacity() -> None:
        """Refuse before the body is read (so the connection closes: the body stays unread)."""
        try:
            engine.check_capacity()
        except QueueFull as err:
            raise HTTPError(429, str(err), {"Retry-After": str(int(round(err.retry_after))),
                                            "Connection": "close"}) from None
        except ShuttingDown as err:
            raise HTTPError(503, str(err), {"Retry-After": "5", "Connection": "close"}) from None
        except NotReady as err:
            raise HTTPError(503, f"not ready: {err}", {"Retry-After": "5", "Connection": "close"}) from None

    if config.openapi:
        @app.get("/openapi.json", include_in_schema=False)
        async def openapi(request: Request):
            authorize(request)
            return JSONResponse(app.openapi())

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
    async def readyz():
        if holder["engine"] is None:
            return JSONResponse({"ready": False, "error": "starting"}, status_code=503)
        body = {"ready": engine.ready, **engine.stats()}
        if engine.error:  # unauthenticated: the reason without paths (details: /v1/info, the log)
            body["error"] = scrub(engine.error)
        return JSONResponse(body, status_code=200 if engine.ready else 503)

    @app.get("/v1/info")
    async def info(request: Request):
        authorize(request)
        if holder["engine"] is None:
            raise HTTPError(503, "the service is starting", {"Retry-After": "5"})
        return _scrubbed({"version": __version__, "ready": engine.ready, "modes": list(engine.modes_available),
                "faces": engine.faces_available, "face_notes": engine.face_notes,
                "backend": engine.backend_description, "auth_required": bool(config.api_key),
                "licences": {"restoration": RESTORATION.licence, "faces": config.engine.licence_note or "see face_notes"},
                "limits": {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                           "max_side": limits.max_side},
                "queue": engine.stats()})

    async def run_restore(request: Request) -> tuple[dict, object, dict]:
        authorize(request)
        capacity()
        await slots.acquire(config.read_timeout)
        held = [True]

        def release_slot() -> None:  # once the photo is decoded: the slot bounds bodies, not jobs
            if held[0]:
                held[0] = False
                slots.release()

        try:
            return await _run_restore(request, release_slot)
        finally:
            release_slot()

    async def _run_restore(request: Request, release_slot) -> tuple[dict, object, dict]:
        values = dict(request.query_params)
        clock = time.perf_counter()
        body = await read_body(request, limits.max_bytes, config.read_timeout, config.upload_timeout)
        content_type = request.headers.get("content-type", "")
        mask_bytes, name = None, safe_name(values.get("filename"))
        if content_type.lower().startswith("multipart/form-data"):
            parts = await slots.run(parse_multipart, body, content_type)
            for key, (filename, data) in parts.items():
                if filename is None and key not in ("image", "mask"):
                    values.setdefault(key, data.decode("utf-8", "replace"))
            if "image" not in parts:
                raise HTTPError(422, "multipart request without an `image` file field")
            name = safe_name(parts["image"][0] or name)
            body = parts["image"][1]
            mask_bytes = parts.get("mask", (None, None))[1] or None
        mode, faces = resolve_options(values)
        fmt, quality = values.get("format") or "png", values.get("quality") or None
        try:
            quality = int(quality) if quality is not None else None
            encode_result(np.zeros((1, 1, 3), np.uint8), None, fmt, quality)  # validates format and quality
        except ValueError as err:
            raise HTTPError(422, f"option format={fmt!r} / quality={quality!r}: {err}") from None
        try:
            engine.check_options(mode, faces)
        except OptionUnavailable as err:
            raise HTTPError(422, str(err)) from None
        received = time.perf_counter() - clock
        clock = time.perf_counter()

        def admit(width: int, height: int) -> None:
            """From the header, before a pixel is decoded: the mode's shape limit, queue space."""
            try:
                check_aspect(height, width, name)
            except ValueError as err:
                raise RequestImageError(str(err), 422) from None
            capacity()

        try:
            image = await slots.run(decode_image, body, limits, name, admit)
            file_info, image = await slots.run(prepare_upload, body, image)  # DPI, EXIF, ICC -> sRGB
            mask = None
            if mask_bytes is not None:
                if mode == "quality":
                    raise HTTPError(422, "a scratch mask needs scratch=1 or hr=1")
                mask = (await slots.run(decode_image, mask_bytes, limits, f"{name} (mask)"))[:, :, 0]
        except RequestImageError as err:
            raise HTTPError(err.status, str(err)) from None
        del body, mask_bytes
        release_slot()
        decoded = time.perf_counter() - clock
        tag = values.get("tag", "")[:200]
        try:
            future = engine.submit(image, mode=mode, faces=faces, mask=mask, tag=tag)
        except QueueFull as err:
            raise HTTPError(429, str(err), {"Retry-After": str(int(round(err.retry_after)))}) from None
        except (ShuttingDown, NotReady) as err:
            raise HTTPError(503, str(err), {"Retry-After": "5"}) from None
        except OptionUnavailable as err:
            raise HTTPError(422, str(err)) from None
        original = image if _flag(values.get("original"), "original") else None
        del image
        try:
            job = await await_job(engine, future, request.receive, wait_limit)
        except ShuttingDown as err:
            raise HTTPError(503, str(err), {"Retry-After": "5", "Connection": "close"}) from None
        except JobStopped as err:  # the per-photo time limit, or stopped at shutdown
            raise HTTPError(503, f"{name}: {err}", {"Retry-After": "5"}) from None
        except (ValueError, TypeError) as err:  # too small, bad mask, ...
            raise HTTPError(422, f"{name}: {scrub(err)}") from None
        except ClientGone:
            raise  # an ordinary disconnect: its handler logs one line, no traceback
        except Exception:  # noqa: BLE001 - the details go to the log, not to the client
            ref = uuid.uuid4().hex[:8]
            log.exception("restore failed [%s]", ref)
            raise HTTPError(500, f"{name}: restoration failed (internal error, reference {ref} in the "
                                 f"service log)") from None
        clock = time.perf_counter()
        png, media_type, suffix = await asyncio.to_thread(encode_result, job.result.restored, file_info, fmt, quality)
        encoded = time.perf_counter() - clock
        timings = {"receive": received, "decode_input": decoded, "queue_wait": job.queue_wait,
                   **{k: float(v) for k, v in job.result.timings.items()}, "restore_total": job.run_time,
                   "encode_png": encoded}
        height, width = job.result.restored.shape[:2]
        meta = {"tag": tag, "mode": mode, "faces": job.faces, "width": width, "height": height,
                "worker": job.worker, "server": server_id(), "media_type": media_type,
                "filename": f"{Path(name).stem or 'photo'}_restored{suffix}"}
        if original is not None:
            meta["original_png_base64"] = base64.b64encode(await asyncio.to_thread(encode_png, original)).decode()
        return meta, png, timings

    def server_timing(timings: dict) -> str:
        return ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in timings.items())

    @app.post("/v1/restore", response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "the restored photo"}})
    async def restore(request: Request):
        """Photo in (raw body, or multipart field `image` + optional `mask`); options as query
        parameters or form fields: mode=quality|scratch|hr (or scratch=1, hr=1), faces=1|0, tag=...,
        filename=... (names the photo in errors and in Content-Disposition for raw bodies),
        format=png|jpeg|tiff and quality=1-100 (JPEG) for the answer's file, which keeps the upload's
        DPI and EXIF and is tagged sRGB."""
        meta, png, timings = await run_restore(request)
        meta.pop("original_png_base64", None)
        headers = {"Server-Timing": server_timing(timings), "X-Tag": header_text(meta["tag"]),
                   "X-Mode": meta["mode"], "X-Faces": str(meta["faces"]).lower(),
                   "X-Server": header_text(meta["server"]), "X-Timings": json.dumps(timings, separators=(",", ":")),
                   "Content-Disposition": content_disposition(meta["filename"])}
        return Response(png, media_type=meta.pop("media_type"), headers=headers)

    @app.post("/v1/restore/json")
    async def restore_json(request: Request):
        """As /v1/restore, answering JSON: per-stage timings in seconds, size, mode, the face
        stage, and the PNG as base64 (`image_png_base64`, left out with image=0; with original=1
        also the decoded input as `original_png_base64`, for browsers that cannot show TIFF)."""
        meta, png, timings = await run_restore(request)
        include = _flag(request.query_params.get("image"), "image")
        body = {**meta, "timings": timings}
        if include is not False:  # the file as asked for (format=...), under the PNG name when it is one
            key = "image_png_base64" if body["media_type"] == "image/png" else "image_base64"
            body[key] = base64.b64encode(png).decode("ascii")
        return JSONResponse(body, headers={"Server-Timing": server_timing(timings)})

    return app
