"""A stdlib HTTP server for the draw-a-digit page: GET / is the page, POST /predict classifies.

Request (POST /predict, Content-Type: application/json, at most MAX_BODY bytes):

    {"width": W, "height": H, "pixels": [W*H numbers]}

`pixels` is one grayscale image, row-major, values 0..255, either polarity (the page sends the
luma of its white canvas with black strokes); W and H are integers in MIN_SIDE..MAX_SIDE. The
server brings it to MNIST's form with `images.to_mnist` (the preprocessing every user image goes
through) and answers 200 with

    {"image": [[28 ints] x 28], "models": [{"name", "probabilities": [10], "top"}], "ms": float}

where `image` is what the models saw (white digit on black) and `ms` the server's time for the
request. A drawing with no ink answers 422 {"error": "draw a digit: ...", "empty": true}.
Every other bad request gets a JSON {"error": "..."}: 404 unknown path, 405 wrong method, 415
not application/json, 411 no Content-Length, 413 body over MAX_BODY (refused before reading it;
any MAX_SIDE x MAX_SIDE drawing fits), 408 a body slower than BODY_SECONDS in all, 400 not JSON
/ missing or wrong fields / sizes / values (a 4,000-digit pixel too), 503 when MAX_ACTIVE
connections are being served and no slot frees within BODY_SECONDS. GET /health answers
{"models": [...]}.

The server knows the models only through the `Predictor` protocol, so it never touches
checkpoints; one thread per connection (ThreadingHTTPServer), at most MAX_ACTIVE at once, and no
request, however malformed, can end the server: every handler error becomes a JSON response, and
a client that disconnects is one debug line.
"""

import contextlib
import importlib.resources
import json
import re
import sys
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Protocol

import numpy as np
from absl import logging

from mnist_jax.core.errors import UserError
from mnist_jax.serving.drawing import (
    MAX_SIDE,
    Predictor,
    RequestError,
    parse_drawing,
    predict_drawing,
)

# Bytes of a body: any MAX_SIDE x MAX_SIDE drawing of integers, compact or not ("255, " is 5
# bytes a pixel), with room for the keys; a 280x280 drawing from the page is ~250 KB.
MAX_BODY = 5 * MAX_SIDE * MAX_SIDE + 1024
SOCKET_TIMEOUT = 10.0  # seconds a connection may sit idle between requests
BODY_SECONDS = 10.0  # seconds the whole body of a request may take to arrive
MAX_ACTIVE = 8  # connections served at once; more wait in the listen queue, then get 503
LISTEN_BACKLOG = 128  # connections the kernel holds for accept (socketserver's default: 5)


class Model(Protocol):
    """One loaded model, as `mnist_jax.api.load_run` returns it."""

    name: str

    def predict_proba(self, images: np.ndarray) -> np.ndarray: ...


class ModelsPredictor:
    """A Predictor over models with `.name` and `.predict_proba(uint8 (N,28,28)) -> (N, 10)`.

    Calls are serialised by a lock: the page's requests come from many threads, and a model
    need not be thread-safe (one call takes milliseconds, so little is lost).
    """

    def __init__(self, models: Sequence[Model]):
        names = [model.name for model in models]
        if not names:
            raise UserError("no models to serve: give at least one run directory")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise UserError(f"two models share the name(s) {duplicates}; names must be unique")
        self._models = list(models)
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [model.name for model in self._models]

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            return {m.name: np.asarray(m.predict_proba(images)) for m in self._models}


def _refuse_busy(request: Any) -> None:
    """503 to a connection that found every slot taken, without reading its request."""
    body = json.dumps({"error": "the server is busy; try again in a moment"}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        request.sendall(head.encode() + body)


def page_html(names: Sequence[str]) -> bytes:
    """The self-contained page (no external resources) with the model names filled in."""
    template = importlib.resources.files("mnist_jax.serving").joinpath("page.html").read_text()
    names_js = json.dumps(list(names)).replace("<", "\\u003c")  # never closes the <script>
    return template.replace("/*MODEL_NAMES*/[]", names_js).encode("utf-8")


class DigitServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the predictor and the rendered page, serving at most
    MAX_ACTIVE connections at once (a thread each); a connection beyond them waits up to
    BODY_SECONDS for a slot, then gets 503. The kernel queues LISTEN_BACKLOG more."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], predictor: Predictor):
        self.predictor = predictor
        self.page = page_html(predictor.names)
        self._slots = threading.BoundedSemaphore(MAX_ACTIVE)
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=BODY_SECONDS):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is routine, one debug line; anything else is logged."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logging.vlog(1, "%s: connection ended (%s)", client_address, type(error).__name__)
        else:
            logging.exception("error serving %s", client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    """Routes: GET / (page), GET /health, POST /predict; everything else a JSON 4xx."""

    server: DigitServer
    protocol_version = "HTTP/1.1"  # keep-alive: the page sends many small requests
    timeout = SOCKET_TIMEOUT
    routes: ClassVar[dict[str, tuple[str, ...]]] = {
        "/": ("GET", "HEAD"),
        "/health": ("GET", "HEAD"),
        "/predict": ("POST",),
    }

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def _handle(self, method: str) -> None:
        start = time.perf_counter()
        self._body_read = False
        try:
            path = self.path.split("?", 1)[0]
            if path not in self.routes:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no such path {path!r:.80}")
            allowed = self.routes[path]
            if method not in allowed:
                raise RequestError(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{method} is not allowed on {path}; use {' or '.join(allowed)}",
                    allow=", ".join(allowed),
                )
            if path == "/":
                self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8", method)
            elif path == "/health":
                self._send_json(HTTPStatus.OK, {"models": list(self.server.predictor.names)})
            else:
                result = predict_drawing(self.server.predictor, parse_drawing(self._read_json()))
                result["ms"] = round((time.perf_counter() - start) * 1000, 2)
                self._send_json(HTTPStatus.OK, result)
        except RequestError as e:
            if not self._body_read and self._has_body():
                self.close_connection = True  # its unread body would be taken for a request
            if e.status not in (HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY):
                logging.info("%s %s -> %d: %s", method, self.path[:80], e.status, e.message)
            headers = {"Allow": e.extra.pop("allow")} if "allow" in e.extra else {}
            self._send_json(e.status, {"error": e.message, **e.extra}, headers)
        except Exception as e:  # a bug must cost one request, never the server
            logging.exception("%s %s failed", method, self.path[:80])
            self.close_connection = True
            error = f"internal error: {type(e).__name__}: {e}"
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": error})

    def _read_json(self) -> bytes:
        """The request body, after checking its type and declared length (before reading it)."""
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be application/json, got {content_type!r:.60}",
            )
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
        if not re.fullmatch(r"[0-9]{1,12}", length.strip()):  # ASCII digits: '²' isdigit()
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length!r:.40}")
        if int(length) > MAX_BODY:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {int(length)} bytes; at most {MAX_BODY} are accepted",
            )
        body = self._read_body(int(length))
        self._body_read = True
        if len(body) != int(length):
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body is shorter than Content-Length")
        return body

    def _read_body(self, length: int) -> bytes:
        """`length` bytes within BODY_SECONDS in all (a per-read timeout let a body trickle in
        at a byte every few seconds); 408 past that."""
        deadline = time.monotonic() + BODY_SECONDS
        chunks, got = [], 0
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(length - got, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError:
            self.close_connection = True
            raise RequestError(
                HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive in {BODY_SECONDS:g} s"
            ) from None
        finally:
            self.connection.settimeout(SOCKET_TIMEOUT)
        return b"".join(chunks)

    def _has_body(self) -> bool:
        length = self.headers.get("Content-Length", "0").strip()
        return length not in ("", "0") or "Transfer-Encoding" in self.headers

    def _send_json(
        self, status: HTTPStatus, payload: dict, headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json", self.command, headers)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        method: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(
            "Content-Security-Policy",  # the page may load nothing from anywhere else
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
        )
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)
        except ConnectionError:  # the client left before its answer: nothing to tell it
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logging.vlog(1, "%s %s", self.address_string(), format % args)


def make_server(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000) -> DigitServer:
    """A bound (not yet serving) server; port 0 picks a free port (see `.server_address`)."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {port}")
    try:
        return DigitServer((host, port), predictor)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
