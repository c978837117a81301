"""`/healthz` and `/metrics` for the long-running processes (collector, scheduler).

Each process keeps its own Prometheus registry (prometheus-client) and a health check, a
function saying whether it is doing its job and why not. `serve_health` answers on a port of
its own in a daemon thread:

- `GET /metrics`: the registry in Prometheus' text format;
- `GET /healthz`: `200 {"status": "ok", ...}` or `503 {"status": "failing", "problems": [...]}`
  as JSON, for systemd, a load balancer or a person with curl.

The public server answers the same two paths on its own port (public/server.py) with
`health_response`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("health")

# A health check: (healthy, details to show). Details hold "problems" when unhealthy.
HealthCheck = Callable[[], tuple[bool, dict]]


def health_response(check: HealthCheck) -> tuple[int, bytes]:
    """The status code and JSON body of `/healthz`; a check that raises is a failure."""
    try:
        healthy, details = check()
    except Exception as exc:
        healthy, details = False, {"problems": [f"health check failed: {exc}"]}
    body = {"status": "ok" if healthy else "failing", **details}
    return (200 if healthy else 503), json.dumps(body, default=str).encode()


def metrics_response(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def serve_health(port: int, registry: CollectorRegistry, check: HealthCheck,
                 host: str = "127.0.0.1") -> ThreadingHTTPServer | None:
    """Answer `/healthz` and `/metrics` on `port` in a daemon thread (`.shutdown()` stops
    it); None, logged, if the port cannot be had. Local only by default: a Prometheus on
    the same host scrapes it, or a reverse proxy publishes it on purpose."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                code, body, kind = 200, metrics_response(registry), CONTENT_TYPE_LATEST
            elif path == "/healthz":
                code, body = health_response(check)
                kind = "application/json"
            else:
                code, body, kind = 404, b"not found: /healthz or /metrics\n", "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every 15 s would fill the log

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        # A port in use must not stop the process whose health it is: it keeps working and
        # says so, once.
        log.error("health and metrics not served: cannot listen on :%d (%s)", port, exc)
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"health:{port}", daemon=True).start()
    log.info("health on :%d (/healthz, /metrics)", port)
    return server
