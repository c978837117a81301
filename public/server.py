"""The public visitor pages and their JSON feed: a small read-only web server of its own.

`python -m public.server` (or `make public`) serves, on `public.host`:`public.port`:

- `/site/<site_id>` the page behind the site's QR code (`?lang=vi|en|zh`, else the phone's
  Accept-Language), `/` every site with its level now;
- `/api/v1/sites.json` and `/api/v1/sites/<site_id>.json`, the feed for the province's
  tourism app and portal (docs/public-feed.md);
- `/healthz`. Nothing else: no path of the officials' dashboard exists here.

Why the standard library (wsgiref with a thread per request) rather than a framework: the
server does four GET routes over one cached status, pages are a few KB rendered in
microseconds, and the only slow part, reading the store, happens at most once per
`public.cache_s` whatever the number of phones. It adds no dependency, and `app` is plain
WSGI, so a province that expects heavy traffic can run it under any WSGI server
(`waitress-serve --port 8502 public.server:create_app` style) or behind a caching proxy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from public.page import choose_language, index_page, message_page, site_page
from public.status import StatusCache, StatusUnavailable
from visitorflow.catalogue import CatalogueError, load_catalogue
from visitorflow.health import health_response, metrics_response
from visitorflow.settings import Settings, SettingsError, get_settings

log = logging.getLogger("public.server")

_SITE_PAGE = re.compile(r"^/site/([a-z0-9_]+)/?$")
_SITE_FEED = re.compile(r"^/api/v1/sites/([a-z0-9_]+)\.json$")
# No script, no outside resource: the page is self-contained (and cannot leak a visit).
_SECURITY = [
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
     "form-action 'none'; frame-ancestors *"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]
_GZIP_MIN_BYTES = 1000
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class PublicApp:
    """The WSGI application: routes GET/HEAD requests to pages and feed, all from one
    StatusCache."""

    def __init__(self, settings: Settings, cache: StatusCache) -> None:
        self.settings = settings
        self.cache = cache
        self.registry = CollectorRegistry()
        self.requests = Counter("visitorflow_public_requests", "Requests answered",
                                ["route", "code"], registry=self.registry)
        self.unavailable = Counter("visitorflow_public_status_unavailable",
                                   "Requests answered 503: no status could be read",
                                   registry=self.registry)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        query = parse_qs(environ.get("QUERY_STRING", ""))
        lang = choose_language(
            (query.get("lang") or [None])[0], environ.get("HTTP_ACCEPT_LANGUAGE"),
            self.settings.public.default_language,
        )
        if method not in ("GET", "HEAD"):
            status, headers, body = "405 Method Not Allowed", [("Allow", "GET, HEAD")], b""
        else:
            try:
                status, headers, body = self._route(path, lang)
            except StatusUnavailable as exc:
                log.warning("status unavailable: %s", exc)
                self.unavailable.inc()
                status, headers, body = self._html("503 Service Unavailable",
                                                   message_page("unavailable", lang), lang, 0)
                headers.append(("Retry-After", "30"))
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "") and len(body) >= _GZIP_MIN_BYTES:
            body = gzip.compress(body, 6)
            headers.append(("Content-Encoding", "gzip"))
        headers += [("Content-Length", str(len(body))), ("Vary", "Accept-Encoding")]
        self.requests.labels(_route_name(path), status.split(" ", 1)[0]).inc()
        start_response(status, headers + _SECURITY)
        return [b"" if method == "HEAD" else body]

    def _route(self, path: str, lang: str) -> tuple[str, list[tuple[str, str]], bytes]:
        max_age = int(self.settings.public.cache_s)
        if path == "/healthz":
            code, body = health_response(self._health)
            return ("200 OK" if code == 200 else "503 Service Unavailable",
                    [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body)
        if path == "/metrics":
            return "200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                              ("Cache-Control", "no-store")], metrics_response(self.registry)
        if path == "/api/v1/sites.json":
            return self._json({"generated": self._generated(),
                               "sites": self.cache.all_sites()}, max_age)
        if match := _SITE_FEED.match(path):
            if match[1] not in self.cache.catalogue.by_id:
                return self._json({"error": f"unknown site {match[1]!r}"}, max_age,
                                  "404 Not Found")
            return self._json(self.cache.site(match[1]), max_age)
        if match := _SITE_PAGE.match(path):
            if match[1] not in self.cache.catalogue.by_id:
                return self._html("404 Not Found", message_page("not_found", lang), lang, max_age)
            return self._html("200 OK", site_page(self.cache.site(match[1]), lang), lang, max_age)
        if path == "/":
            return self._html("200 OK", index_page(self.cache.all_sites(), lang), lang, max_age)
        return self._html("404 Not Found", message_page("not_found", lang), lang, max_age)

    def _health(self) -> tuple[bool, dict]:
        """Healthy when every site's status can be served (from the store or the cache)."""
        try:
            return True, {"generated": self._generated()}
        except StatusUnavailable as exc:
            return False, {"problems": [f"no status to serve: {exc}"]}

    def _generated(self) -> str | None:
        statuses = self.cache.all_sites()
        return statuses[0]["generated"] if statuses else None

    @staticmethod
    def _html(status: str, page: str, lang: str, max_age: int) -> tuple[str, list, bytes]:
        # The language follows Accept-Language: shared caches must keep one copy per language.
        return status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Language", lang),
                        ("Cache-Control", f"public, max-age={max_age}"),
                        ("Vary", "Accept-Language")], page.encode("utf-8")

    @staticmethod
    def _json(data: object, max_age: int, status: str = "200 OK") -> tuple[str, list, bytes]:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return status, [("Content-Type", "application/json; charset=utf-8"),
                        ("Cache-Control", f"public, max-age={max_age}"),
                        ("Access-Control-Allow-Origin", "*")], body


def _route_name(path: str) -> str:
    """A request's route for the metrics: a few names, never the raw path (unbounded)."""
    if path in ("/", "/healthz", "/metrics", "/api/v1/sites.json"):
        return path
    if _SITE_FEED.match(path):
        return "/api/v1/sites/{site}.json"
    if _SITE_PAGE.match(path):
        return "/site/{site}"
    return "other"


def create_app(settings: Settings | None = None) -> PublicApp:
    """The WSGI application for the settings in force (any WSGI server can run it)."""
    settings = settings or get_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    return PublicApp(settings, StatusCache(settings, catalogue))


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a phone on a stalled link never keeps the server from stopping
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    # `format` shadows the builtin: it is the name http.server gives this parameter.
    def log_message(self, format: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), format % args)


def make_public_server(app: PublicApp, host: str, port: int) -> WSGIServer:
    """A threaded server for `app` on host:port (port 0: any free port); OSError if taken."""
    return make_server(host, port, app, server_class=_ThreadingServer, handler_class=_Handler)


@contextmanager
def background_server(app: PublicApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """`app` served from a thread of this process (tests, benchmarks); yields its base URL."""
    server = make_public_server(app, host, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", help="address to bind (default: public.host)")
    parser.add_argument("--port", type=int, help="port (default: public.port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = get_settings()
        app = create_app(settings)
    except (SettingsError, CatalogueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.public.host
    port = args.port or settings.public.port
    try:
        server = make_public_server(app, host, port)
    except OSError as exc:
        print(f"error: cannot serve on {host}:{port} ({exc.strerror}); choose another with "
              "--port or VISITORFLOW_PUBLIC__PORT", file=sys.stderr)
        return 2
    print(f"public visitor pages on http://{host}:{port}/ (QR codes point at "
          f"{settings.public.base_url}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
