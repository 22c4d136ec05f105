"""The HTTP API and the web page (FastAPI). Imported only by `trt-restore serve` and the Ray
Serve deployment, so the runtime imports without FastAPI installed.

Endpoints (see docs/serving.md):
  GET  /                     the web page (static/index.html, app.js, style.css)
  GET  /healthz              liveness: 200 while the process serves HTTP
  GET  /readyz               readiness: 200 once models are loaded and warmed up, 503 before and while stopping
  GET  /v1/info              modes, face stage, limits, whether an API key is needed
  POST /v1/restore           photo in (raw body or multipart field `image`, optional `mask`), PNG out
  POST /v1/restore/json      the same, JSON out: per-stage timings (+ the PNG as base64 unless image=0)
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .decode import Limits, RequestImageError, decode_image, encode_png
from .engine import Engine, EngineConfig, NotReady, OptionUnavailable, QueueFull, ShuttingDown

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


def create_app(config: ServeConfig, engine: Engine | None = None):
    """The FastAPI application; `engine` is created from `config.engine` when not given.
    Its lifespan starts the engine (loading and warm-up in the background) and drains it."""
    from .. import __version__

    limits = config.limits
    holder: dict = {"engine": engine}  # created in the lifespan when not given (picklable app for Ray Serve)

    class _Engine:
        """Forwards to the current engine (so handlers need not look it up)."""

        def __getattr__(self, name):
            current = holder["engine"]
            if current is None:
                raise NotReady("the service is starting")
            return getattr(current, name)

    engine = _Engine()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if holder["engine"] is None:
            holder["engine"] = Engine(config.engine)
        app.state.engine = holder["engine"]
        if not holder["engine"]._workers:
            holder["engine"].start()
        if config.block_startup and not await asyncio.to_thread(holder["engine"].wait_ready):
            raise RuntimeError(f"the models could not be loaded: {holder['engine'].error}")
        try:
            yield
        finally:
            await asyncio.to_thread(holder["engine"].shutdown, config.grace)

    app = FastAPI(title="trt-restore", version=__version__, lifespan=lifespan,
                  summary="Old-photo restoration service ('Bringing Old Photos Back to Life').")
    app.state.engine = holder["engine"]
    app.state.config = config
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def error(status: int, message: str, headers: dict | None = None):
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)

    @app.exception_handler(HTTPError)
    async def _http_error(request, exc: HTTPError):
        return error(exc.status, exc.message, exc.headers)

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

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
            raise HTTPError(413, f"request body of {declared} bytes exceeds the {limits.max_bytes} byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_bytes:
                raise HTTPError(413, f"request body exceeds the {limits.max_bytes} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

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
        if engine.error:
            body["error"] = engine.error
        return JSONResponse(body, status_code=200 if engine.ready else 503)

    @app.get("/v1/info")
    async def info():
        if holder["engine"] is None:
            raise HTTPError(503, "the service is starting", {"Retry-After": "5"})
        return {"version": __version__, "ready": engine.ready, "modes": list(engine.modes_available),
                "faces": engine.faces_available, "face_notes": engine.face_notes,
                "backend": engine.backend_description, "auth_required": bool(config.api_key),
                "limits": {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                           "max_side": limits.max_side},
                "queue": engine.stats()}

    async def run_restore(request: Request) -> tuple[dict, object, dict]:
        authorize(request)
        capacity()
        values = dict(request.query_params)
        clock = time.perf_counter()
        body = await read_body(request)
        content_type = request.headers.get("content-type", "")
        mask_bytes, name = None, Path(values.get("filename") or "upload").name[:200] or "upload"
        if content_type.lower().startswith("multipart/form-data"):
            parts = parse_multipart(body, content_type)
            for key, (filename, data) in parts.items():
                if filename is None and key not in ("image", "mask"):
                    values.setdefault(key, data.decode("utf-8", "replace"))
            if "image" not in parts:
                raise HTTPError(422, "multipart request without an `image` file field")
            name = Path(parts["image"][0] or name).name[:200] or "upload"
            body = parts["image"][1]
            mask_bytes = parts.get("mask", (None, None))[1] or None
        mode, faces = resolve_options(values)
        try:
            engine.check_options(mode, faces)
        except OptionUnavailable as err:
            raise HTTPError(422, str(err)) from None
        received = time.perf_counter() - clock
        clock = time.perf_counter()
        try:
            image = await asyncio.to_thread(decode_image, body, limits, name)
            mask = None
            if mask_bytes is not None:
                if mode == "quality":
                    raise HTTPError(422, "a scratch mask needs scratch=1 or hr=1")
                mask = (await asyncio.to_thread(decode_image, mask_bytes, limits, f"{name} (mask)"))[:, :, 0]
        except RequestImageError as err:
            raise HTTPError(err.status, str(err)) from None
        del body, mask_bytes
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
            job = await asyncio.wrap_future(future)
        except ShuttingDown as err:
            raise HTTPError(503, str(err), {"Retry-After": "5", "Connection": "close"}) from None
        except (ValueError, TypeError) as err:  # too small, bad mask, ...
            raise HTTPError(422, f"{name}: {err}") from None
        except Exception as err:  # noqa: BLE001
            log.exception("restore failed")
            raise HTTPError(500, f"{name}: restoration failed: {type(err).__name__}: {err}") from None
        clock = time.perf_counter()
        png = await asyncio.to_thread(encode_png, job.result.restored)
        encoded = time.perf_counter() - clock
        timings = {"receive": received, "decode_input": decoded, "queue_wait": job.queue_wait,
                   **{k: float(v) for k, v in job.result.timings.items()}, "restore_total": job.run_time,
                   "encode_png": encoded}
        height, width = job.result.restored.shape[:2]
        meta = {"tag": tag, "mode": mode, "faces": job.faces, "width": width, "height": height,
                "worker": job.worker, "server": server_id(), "filename": f"{Path(name).stem or 'photo'}_restored.png"}
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
        filename=... (names the photo in errors and in Content-Disposition for raw bodies)."""
        meta, png, timings = await run_restore(request)
        meta.pop("original_png_base64", None)
        headers = {"Server-Timing": server_timing(timings), "X-Tag": meta["tag"], "X-Mode": meta["mode"],
                   "X-Faces": str(meta["faces"]).lower(), "X-Server": meta["server"],
                   "X-Timings": json.dumps(timings, separators=(",", ":")),
                   "Content-Disposition": f'inline; filename="{meta["filename"]}"'}
        headers = {k: v.encode("latin-1", "replace").decode("latin-1") for k, v in headers.items()}
        return Response(png, media_type="image/png", headers=headers)

    @app.post("/v1/restore/json")
    async def restore_json(request: Request):
        """As /v1/restore, answering JSON: per-stage timings in seconds, size, mode, the face
        stage, and the PNG as base64 (`image_png_base64`, left out with image=0; with original=1
        also the decoded input as `original_png_base64`, for browsers that cannot show TIFF)."""
        meta, png, timings = await run_restore(request)
        include = _flag(request.query_params.get("image"), "image")
        body = {**meta, "timings": timings}
        if include is not False:
            body["image_png_base64"] = base64.b64encode(png).decode("ascii")
        return JSONResponse(body, headers={"Server-Timing": server_timing(timings)})

    return app
