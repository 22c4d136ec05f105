"""What the service puts into headers and bodies, and which requests reach it at all.

- Header values are built only from sanitised text: a client's `tag` or file name with a CR,
  LF, quote or non-Latin-1 character used to break the response after the work was done.
  `Content-Disposition` carries an ASCII fallback and the exact name as RFC 6266 `filename*`.
- Messages leave no internal paths (the models folder, the venv) in responses.
- `RequestGuard` (pure ASGI, so it never buffers a body or hides a disconnect): on a loopback
  bind only requests whose Host (and Origin, when sent) name this machine get through, so a
  web page elsewhere cannot reach the kiosk by DNS rebinding or a cross-site form post; and
  while the service drains every answer carries `Connection: close`.
"""
from __future__ import annotations

import re
import urllib.parse
from typing import Callable, Iterable

_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.\-+@~ ]+){2,}[/\\]?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def header_text(value: str, limit: int = 200) -> str:
    """Printable ASCII stays as it is; anything else (CR, LF, non-ASCII) is percent-encoded."""
    value = str(value)[:limit]
    if all(" " <= ch <= "~" for ch in value):
        return value
    return urllib.parse.quote(value, safe="".join(chr(c) for c in range(0x20, 0x7f) if chr(c) != "%"))


def safe_name(name: str | None, default: str = "upload", limit: int = 120) -> str:
    """A client's file name reduced to its last component, without control characters."""
    text = _CONTROL.sub("", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1].strip()
    return text[:limit] or default


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback in `filename`, the exact UTF-8 name in `filename*`."""
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", filename) or "photo.png"
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"


def scrub(text: str) -> str:
    """Remove file system paths from a message meant for a client."""
    return _PATH.sub("<path>", str(text))


def _host_only(value: str) -> str:
    """'[::1]:8000' -> '::1', 'LocalHost:80' -> 'localhost'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class RequestGuard:
    """ASGI middleware: Host/Origin allow-list (when `allowed_hosts` is given) and
    `Connection: close` on every answer while `draining()` is true."""

    def __init__(self, app, allowed_hosts: Iterable[str] | None, draining: Callable[[], bool]):
        self.app = app
        self.allowed = {h.lower().strip("[]") for h in allowed_hosts} if allowed_hosts else None
        self.draining = draining

    def _refusal(self, scope) -> str | None:
        if self.allowed is None:
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = _host_only(headers.get("host", ""))
        if host not in self.allowed:
            return "this service answers only requests addressed to its own host name"
        origin = headers.get("origin")
        if origin is not None:
            parsed = urllib.parse.urlsplit(origin)
            if origin == "null" or (parsed.hostname or "").lower() not in self.allowed:
                return "cross-origin requests are not accepted"
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _send_json(send, 403, {"error": refusal, "status": 403})
            return

        async def send_closing(message):
            if message["type"] == "http.response.start" and self.draining():
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": headers + [(b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


async def _send_json(send, status: int, body: dict) -> None:
    import json

    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
