"""Receiving a request's photo without letting clients tie up the service.

- `UploadSlots`: at most `max_uploads` requests receive, parse and decode a body at once;
  others wait for a slot with their body unread (no memory) for up to `read_timeout`, then
  get 503 + Retry-After, so slow or abandoned uploads cannot pile up memory. Parsing and decoding run on the slots' own
  threads, never on the event loop (a 20 MB multipart body of tiny parts used to stall
  /healthz for seconds).
- `read_body`: a byte limit (413 + `Connection: close`, the rest is never read), a read
  timeout between pieces and one for the whole body (408), and a client that disconnects
  mid-upload ends the request quietly (`ClientGone`, no traceback).
- `await_job`: waits for the engine's answer while watching the connection: a client that
  goes away cancels its job (dropped from the queue, or stopped at the next segment
  boundary), and the wait is bounded by the per-photo time limit.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading


class RequestFailed(Exception):
    """An HTTP answer to give (status, message, headers); app.py maps it to its HTTPError."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class ClientGone(Exception):
    """The client disconnected: nothing to answer, nothing to log beyond one line."""


class UploadSlots:
    """A non-blocking cap on concurrent uploads plus the threads that parse and decode them."""

    def __init__(self, max_uploads: int):
        self.max_uploads = max(1, int(max_uploads))
        self._lock = threading.Lock()
        self._busy = 0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # made on first use (picklable app)

    def try_acquire(self) -> bool:
        with self._lock:
            if self._busy >= self.max_uploads:
                return False
            self._busy += 1
            return True

    async def acquire(self, wait: float) -> None:
        """A slot within `wait` seconds (the body stays unread in the socket meanwhile, so a
        waiting request costs no memory), else 503."""
        deadline = asyncio.get_running_loop().time() + wait
        while not self.try_acquire():
            if asyncio.get_running_loop().time() >= deadline:
                raise RequestFailed(503, f"{self.max_uploads} uploads are in progress (the limit); retry shortly",
                                    {"Retry-After": "2", "Connection": "close"})
            await asyncio.sleep(0.02)

    def release(self) -> None:
        with self._lock:
            self._busy -= 1

    @property
    def busy(self) -> int:
        return self._busy

    async def run(self, function, *args):
        """`function(*args)` on an upload thread (off the event loop)."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.max_uploads + 1,
                                                                   thread_name_prefix="upload")
            pool = self._pool
        return await asyncio.get_running_loop().run_in_executor(pool, function, *args)

    def close(self) -> None:
        """Do not wait for decodes in flight (daemon-like: their requests are answered anyway)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


async def read_body(request, max_bytes: int, read_timeout: float, upload_timeout: float) -> bytes:
    """The whole body, or RequestFailed (413, 408) / ClientGone."""
    from starlette.requests import ClientDisconnect

    close = {"Connection": "close"}
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestFailed(413, f"request body of {declared} bytes exceeds the {max_bytes} byte limit", close)
    chunks, size = [], 0
    loop = asyncio.get_running_loop()
    ends = loop.time() + upload_timeout
    stream = request.stream().__aiter__()
    try:
        while True:
            wait = min(read_timeout, ends - loop.time())
            if wait <= 0:
                raise RequestFailed(408, f"the upload took longer than {upload_timeout:.0f} s", close)
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), wait)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise RequestFailed(408, f"no data from the client for {wait:.0f} s; upload abandoned", close) \
                    from None
            size += len(chunk)
            if size > max_bytes:
                raise RequestFailed(413, f"request body exceeds the {max_bytes} byte limit", close)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone("the client disconnected during the upload") from None
    return b"".join(chunks)


async def _disconnected(receive) -> None:
    """Returns when the client disconnects (only once the body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def await_job(engine, future: concurrent.futures.Future, receive, timeout: float | None):
    """The job's result; cancels the job when the client goes away (ClientGone) or when
    `timeout` passes (RequestFailed 503)."""
    job = asyncio.wrap_future(future)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({job, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        engine.cancel(future, "the request was cancelled")
        raise
    finally:
        watcher.cancel()
    if job in done:
        return job.result()
    engine.cancel(future, "the client went away" if watcher in done else "the per-photo time limit passed")
    job.cancel()
    if watcher in done:
        raise ClientGone("the client went away while its photo waited or ran; the job was cancelled")
    raise RequestFailed(503, f"the photo was not restored within the {timeout:.0f} s per-photo limit",
                        {"Retry-After": "5"})
