"""Running the service: uvicorn with a graceful shutdown tied to the engine.

On SIGTERM/SIGINT `/readyz` turns 503 and new requests are answered 503 at once, while the
server keeps listening; queued and running photos are finished for up to `grace` seconds,
then what is still queued or running is answered 503 (never dropped silently; a running
photo stops at its next segment boundary); only then does uvicorn close the listener and
exit, after at most CLOSE_SECONDS more for the answers to go out. A second signal stops at
once: the engine answers everything 503, uvicorn skips its own waits (force_exit), and the
process exits by the signal.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading

log = logging.getLogger("trt_restore.serve")
CLOSE_SECONDS = 5  # after the drain: every job is answered, only the answers (and uploads) remain


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names resolving only to them (localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_bind(host: str, api_key: str | None, allow_no_auth: bool) -> None:
    """Refuse to expose the service beyond this machine without an API key."""
    if api_key or allow_no_auth or is_loopback(host):
        return
    raise ValueError(f"binding to {host} exposes the service to the network: set an API key with --api-key "
                     f"or TRT_RESTORE_API_KEY (or pass --allow-no-auth to run without one)")


def make_server(app, host: str, port: int, grace: float, log_level: str = "info"):
    """A uvicorn Server whose exit handler starts draining the engine at once."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # called from the signal handler
            engine = getattr(app.state, "engine", None)
            if getattr(self, "_draining", False):  # a second signal: stop now
                log.warning("second signal: stopping at once")
                if engine is not None:
                    engine.abort()  # non-blocking: the drain thread answers everything 503 now
                self._captured_signals.append(sig)
                self.should_exit = self.force_exit = True
                return
            if engine is None:
                super().handle_exit(sig, frame)
                return
            self._draining = True
            log.info("shutdown requested: draining (up to %.0f s), answering new requests 503", grace)

            def drain_then_stop():
                # keep listening while draining: newcomers get a clean 503 (not a reset
                # connection) and load balancers see /readyz fail; then uvicorn closes
                engine.shutdown(grace)
                uvicorn.Server.handle_exit(self, sig, None)

            threading.Thread(target=drain_then_stop, name="drain", daemon=True).start()

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=CLOSE_SECONDS,
                            timeout_keep_alive=5, access_log=log_level == "debug")
    return Server(config)


def serve(config, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Build the app for `config` (a ServeConfig) and serve it until a signal arrives."""
    from .app import create_app

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    server = make_server(app, host, port, config.grace, log_level)
    server.run()
