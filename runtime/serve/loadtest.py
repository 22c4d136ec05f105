"""A bounded load test for a running service on this machine (loopback only).

N client threads post photos for M seconds (and at most `max_requests` each). Every request
carries a tag and one of K distinct photos (distinct sizes and contents); every answer is
checked against the tag it should carry and the restoration expected for that photo, so a
lost, failed or mixed-up answer is counted, never missed. 429 answers (backpressure) are
counted apart and retried after their Retry-After (capped), as a well-behaved client would.

With `disconnect_every=k`, every k-th request of a client is abandoned: the client sends the
whole photo, waits `disconnect_after` seconds and closes its connection without reading the
answer (a kiosk user who walks away). Those are counted as `abandoned`, never as lost; the
service should cancel their jobs (its `cancelled` counter) and keep answering the others.
A prober thread times `/healthz` throughout, so a stalled event loop shows.
"""
from __future__ import annotations

import collections
import http.client
import io
import ipaddress
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


@dataclass
class Probe:
    """One distinct photo: what is sent and what must come back."""

    png: bytes
    expected: np.ndarray  # the restoration computed in-process with the same models
    name: str = ""


@dataclass
class ClientLog:
    latencies: list = field(default_factory=list)  # seconds, 200 answers
    ok: int = 0
    rejected: int = 0  # 429 (backpressure) and 503
    failed: list = field(default_factory=list)  # (status or exception, detail)
    mixed_up: list = field(default_factory=list)  # (tag sent, what came back)
    sent: int = 0
    abandoned: int = 0  # requests this client walked away from on purpose
    servers: collections.Counter = field(default_factory=collections.Counter)  # X-Server of the 200 answers


def make_probes(models, count: int, source: np.ndarray, mode: str = "quality", threads: int | None = None,
                base=(48, 56)) -> list[Probe]:
    """`count` photos cut from `source` with distinct sizes (so a mixed-up answer shows in its
    size as well as its content) and their restorations computed in-process."""
    from PIL import Image

    from ..restorer import Restorer

    restorer = Restorer(models, backend="ort", mode=mode, threads=threads)
    probes = []
    step = 4 if mode == "quality" else 16 if mode == "scratch" else 32
    for k in range(count):
        h, w = base[0] + step * (k % 4), base[1] + step * (k // 4)
        if h > source.shape[0] or w > source.shape[1]:
            raise ValueError(f"the source photo is too small for {count} probes")
        top = (7 * k) % (source.shape[0] - h + 1)
        left = (5 * k) % (source.shape[1] - w + 1)
        crop = np.ascontiguousarray(source[top:top + h, left:left + w])
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, format="PNG")
        probes.append(Probe(buffer.getvalue(), restorer.restore(crop), f"probe{k} ({w}x{h})"))
    return probes


def require_loopback(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"{url}: load tests only target this machine (127.0.0.0/8, ::1, localhost)")
    return host, parts.port or 80


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values), q))


def _check(body: bytes, headers: dict, tag: str, probe: Probe, tolerance: int) -> str | None:
    from PIL import Image

    if headers.get("x-tag") != tag:
        return f"tag {headers.get('x-tag')!r}"
    try:
        image = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    except Exception as err:  # noqa: BLE001
        return f"undecodable answer ({err})"
    if image.shape != probe.expected.shape:
        return f"shape {image.shape} instead of {probe.expected.shape}"
    worst = int(np.abs(image.astype(np.int16) - probe.expected.astype(np.int16)).max())
    if worst > tolerance:
        return f"content differs from {probe.name}'s restoration by up to {worst}"
    return None


def run_load(url: str, probes: list[Probe], clients: int, seconds: float, query: str = "",
             max_requests: int = 10_000, max_backoff: float = 2.0, api_key: str | None = None,
             tolerance: int = 2, timeout: float = 120.0, fresh_connections: bool = False,
             disconnect_every: int = 0, disconnect_after: float = 0.05, health_every: float = 0.25) -> dict:
    """Run the load; returns figures (latencies in seconds) and the problems found."""
    host, port = require_loopback(url)
    deadline = time.monotonic() + seconds
    logs = [ClientLog() for _ in range(clients)]
    headers = {"Content-Type": "image/png"}
    if fresh_connections:  # one connection per request (no keep-alive races at shutdown)
        headers["Connection"] = "close"
    if api_key:
        headers["X-API-Key"] = api_key

    def client(index: int) -> None:
        log = logs[index]
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        n = 0
        while time.monotonic() < deadline and n < max_requests:
            k = (index * 7 + n) % len(probes)
            probe = probes[k]
            tag = f"c{index}-n{n}-p{k}"
            n += 1
            log.sent += 1
            started = time.perf_counter()
            if disconnect_every and n % disconnect_every == 0:
                _abandon(connection, tag, probe, headers, query, disconnect_after)
                log.abandoned += 1
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
                continue
            try:
                connection.request("POST", f"/v1/restore?tag={tag}{'&' + query if query else ''}", body=probe.png,
                                   headers=headers)
                response = connection.getresponse()
                body = response.read()
                answer = {k.lower(): v for k, v in response.getheaders()}
            except Exception as err:  # noqa: BLE001 - a lost answer
                log.failed.append((type(err).__name__, f"{tag}: {err}"))
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
                time.sleep(max(0.0, min(max_backoff, deadline - time.monotonic())))  # no busy loop on a dead server
                continue
            elapsed = time.perf_counter() - started
            if response.status == 200:
                problem = _check(body, answer, tag, probe, tolerance)
                if problem:
                    log.mixed_up.append((tag, problem))
                else:
                    log.ok += 1
                    log.latencies.append(elapsed)
                    log.servers[answer.get("x-server", "?")] += 1
            elif response.status in (429, 503):
                log.rejected += 1
                wait = min(float(answer.get("retry-after", "1") or 1), max_backoff)
                time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
            else:
                log.failed.append((response.status, f"{tag}: {body[:200]!r}"))
            if fresh_connections or answer.get("connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), name=f"load-client-{i}") for i in range(clients)]
    health = HealthProbe(host, port, health_every, deadline)
    health.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + timeout + 30)
    health.join(seconds + 10)
    wall = time.monotonic() - started
    latencies = [x for log in logs for x in log.latencies]
    sent = sum(log.sent for log in logs)
    ok = sum(log.ok for log in logs)
    rejected = sum(log.rejected for log in logs)
    abandoned = sum(log.abandoned for log in logs)
    failed = [f for log in logs for f in log.failed]
    mixed = [m for log in logs for m in log.mixed_up]
    return {
        "clients": clients, "seconds": seconds, "wall_s": round(wall, 2), "sent": sent, "ok": ok,
        "rejected_429_503": rejected, "mixed_up": len(mixed),
        "lost": sum(1 for f in failed if isinstance(f[0], str)),  # no answer at all
        "error_status": sum(1 for f in failed if not isinstance(f[0], str)),  # 4xx/5xx other than 429/503
        "abandoned": abandoned,
        "unaccounted": sent - ok - rejected - abandoned - len(failed) - len(mixed),
        "healthz": health.figures(),
        "throughput_per_s": round(ok / wall, 3) if wall else None,
        "latency_s": {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
                      "p99": percentile(latencies, 99), "max": max(latencies) if latencies else None,
                      "mean": statistics.fmean(latencies) if latencies else None},
        "answered_by": dict(sum((log.servers for log in logs), collections.Counter())),
        "lost_by_kind": dict(collections.Counter(f[0] for f in failed if isinstance(f[0], str))),
        "problems": [str(p) for p in (failed + mixed)[:20]],
    }


def _abandon(connection: http.client.HTTPConnection, tag: str, probe: Probe, headers: dict, query: str,
             after: float) -> None:
    """Send the whole request, then hang up without reading the answer."""
    try:
        connection.request("POST", f"/v1/restore?tag={tag}{'&' + query if query else ''}", body=probe.png,
                           headers=headers)
        time.sleep(after)
    except OSError:
        pass  # the server closed first: still a request walked away from
    finally:
        connection.close()


class HealthProbe(threading.Thread):
    """Times GET /healthz every `every` seconds until `deadline`: the event loop's responsiveness."""

    def __init__(self, host: str, port: int, every: float, deadline: float):
        super().__init__(name="load-healthz", daemon=True)
        self.host, self.port, self.every, self.deadline = host, port, every, deadline
        self.latencies: list[float] = []
        self.failures = 0

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
                connection.request("GET", "/healthz")
                ok = connection.getresponse().status == 200
                connection.close()
            except OSError:
                ok = False
            if ok:
                self.latencies.append(time.perf_counter() - started)
            else:
                self.failures += 1
            time.sleep(self.every)

    def figures(self) -> dict:
        return {"probes": len(self.latencies) + self.failures, "failed": self.failures,
                "p50_ms": _ms(percentile(self.latencies, 50)), "p99_ms": _ms(percentile(self.latencies, 99)),
                "max_ms": _ms(max(self.latencies) if self.latencies else None)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)
