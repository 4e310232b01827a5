"""A flaky object store for tests: a loopback HTTP proxy that fails a seeded share of requests.

:class:`FlakyProxy` listens on 127.0.0.1 (a free port) in front of an S3 endpoint (the
moto server of ``tests/s3server.py``) and relays every request to it, except a seeded
``failure_rate`` of them, which fail the way object stores fail: every other failure is
an HTTP 503 with the ``SlowDown`` XML body S3 sends when throttling, the others close
the connection without any response (a dropped connection). A failed request never
reaches the store, so a retry is always safe. Clients reach the proxy through the
environment only (``AWS_ENDPOINT_URL``), as they would reach a real endpoint.

Bounded: at most ``max_connections`` connections are served at once, an idle
keep-alive connection is closed after ``idle_timeout_s``, upstream calls time out, and
:meth:`FlakyProxy.close` (or leaving the ``with`` block) shuts every connection and
joins the server thread. ``counts`` says what it did (requests, forwarded, slowdown,
dropped).

Usage::

    with FlakyProxy(moto_url, failure_rate=0.05, seed=0) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        ...
    assert proxy.counts["slowdown"] + proxy.counts["dropped"] > 0
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["SLOWDOWN_BODY", "FlakyProxy"]

logger = logging.getLogger(__name__)

#: The body S3 sends with its 503 when a client must slow down.
SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message>"
    b"<RequestId>FLAKYPROXY</RequestId><HostId>flaky-proxy</HostId></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "expect"}


class FlakyProxy:
    """A loopback proxy in front of ``upstream`` failing a seeded share of its requests.

    Parameters
    ----------
    upstream : str
        ``http://host:port`` of the real endpoint.
    failure_rate : float
        Share of requests failed (0-1); half as 503 SlowDown, half as dropped connections.
    seed : int
        Seed of the failure draws (one draw per request, in arrival order).
    max_connections : int
        Connections served at once; more wait to be accepted.
    idle_timeout_s : float
        An idle keep-alive connection is closed after this many seconds.
    upstream_timeout_s : float
        Timeout of each call to the upstream endpoint.
    """

    def __init__(
        self,
        upstream: str,
        *,
        failure_rate: float = 0.05,
        seed: int = 0,
        max_connections: int = 64,
        idle_timeout_s: float = 10.0,
        upstream_timeout_s: float = 30.0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self.failure_rate = failure_rate
        self.upstream_timeout_s = upstream_timeout_s
        self.counts = {"requests": 0, "forwarded": 0, "slowdown": 0, "dropped": 0}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._server.timeout_s = idle_timeout_s
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the proxy."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def failures(self) -> int:
        """Requests failed so far (503 SlowDown + dropped connections)."""
        return self.counts["slowdown"] + self.counts["dropped"]

    def fate(self) -> str:
        """Draw the fate of the next request: ``"forward"``, ``"slowdown"`` or ``"dropped"``."""
        with self._lock:
            self.counts["requests"] += 1
            fate = "forward"
            if self._random.random() < self.failure_rate:
                fate = "slowdown" if self.failures % 2 == 0 else "dropped"
            self.counts["forwarded" if fate == "forward" else fate] += 1
            return fate

    def close(self) -> None:
        """Stop serving, close every open connection and join the server thread."""
        self._server.shutdown()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()  # joins the handler threads
        self._thread.join(timeout=10)
        logger.info("flaky proxy %s closed: %s", self.url, self.counts)

    def __enter__(self) -> FlakyProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    proxy: FlakyProxy
    timeout_s: float

    def process_request(self, request: Any, client_address: Any) -> None:
        proxy = self.proxy
        if not proxy._slots.acquire(timeout=60):
            self.shutdown_request(request)
            return
        with proxy._lock:
            proxy._open.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.proxy._lock:
                self.proxy._open.discard(request)
            self.proxy._slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.timeout_s
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("flaky proxy: " + format, *args)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = bytearray()
            while True:  # relay the chunks as they came (the signature may cover them)
                line = self.rfile.readline(65537)
                raw += line
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, up to the empty line
                        trailer = self.rfile.readline(65537)
                        raw += trailer
                        if trailer in (b"\r\n", b"\n", b""):
                            return bytes(raw)
                raw += self.rfile.read(size + 2)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _relay(self) -> None:
        body = self._body()
        fate = self.server.proxy.fate()
        if fate == "dropped":
            self.close_connection = True  # closed with no response at all
            return
        if fate == "slowdown":
            self.send_response_only(503, "Slow Down")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOWDOWN_BODY)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD response has no body
                self.wfile.write(SLOWDOWN_BODY)
            return
        drop = {"expect", "connection", "keep-alive", "proxy-connection"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in drop}
        conn = http.client.HTTPConnection(
            *self.server.proxy.upstream, timeout=self.server.proxy.upstream_timeout_s
        )
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status, reason, out_headers = resp.status, resp.reason, resp.getheaders()
        finally:
            conn.close()
        self.send_response_only(status, reason)
        for name, value in out_headers:
            low = name.lower()
            if low in _HOP_BY_HOP or (low == "content-length" and self.command != "HEAD"):
                continue
            self.send_header(name, value)
        if self.command != "HEAD" and status not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay
