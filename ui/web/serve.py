"""`wonderzoom serve`: a read-only static server for one exported web folder.

Owns: serving the files of one folder (GET and HEAD only), nothing outside it: a request path
is decoded, split into plain names (no "..", no hidden names, no backslashes or NULs),
resolved without following links out of the folder, and must name a regular file; folders
are never listed. Loopback by default; binding to every interface (`host="0.0.0.0"`) is
the caller's explicit choice, to show the world on a phone on the same network.
Responses carry `Cache-Control: no-cache`, `X-Content-Type-Options: nosniff` and the same
Content-Security-Policy as the page's own meta tag.
Does not own: making the folder (`ui.web.export`) or the command line.
"""

from __future__ import annotations

import http.server
import os
import posixpath
import threading
import urllib.parse
from pathlib import Path

from engine.errors import UserError

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wzc": "application/octet-stream",
}
CSP = ("default-src 'none'; script-src 'self'; worker-src 'self'; connect-src 'self'; "
       "style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'")
MAX_PATH_CHARS = 1024
LOOPBACK = "127.0.0.1"


class ServeError(UserError, ValueError):
    """The folder cannot be served (missing, not an export) or the address is taken."""


def resolve(root: Path, url_path: str) -> Path | None:
    """The regular file under `root` that a URL path names, or None (traversal, hidden or
    odd names, folders, links leading out of `root`)."""
    if len(url_path) > MAX_PATH_CHARS:
        return None
    path = urllib.parse.urlsplit(url_path).path
    path = urllib.parse.unquote(path, errors="strict") if "%" in path else path
    if "\\" in path or "\x00" in path or not path.startswith("/"):
        return None
    if path.endswith("/"):
        path += "index.html"
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith(".") for p in parts):
        return None
    if posixpath.normpath("/" + "/".join(parts)) != "/" + "/".join(parts):
        return None
    candidate = root.joinpath(*parts)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if root not in real.parents or not real.is_file():
        return None
    return real


def _handler(root: Path) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "wonderzoom"
        sys_version = ""

        def do_GET(self) -> None:
            self._send(body=True)

        def do_HEAD(self) -> None:
            self._send(body=False)

        def _refuse(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()

        def _send(self, body: bool) -> None:
            try:
                target = resolve(root, self.path)
            except UnicodeDecodeError:
                target = None
            if target is None:
                self._refuse(404)
                return
            try:
                data = target.read_bytes()
            except OSError:
                self._refuse(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPES.get(target.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_POST(self) -> None:  # read-only: every other method is refused
            self._refuse(405)

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

        def log_message(self, format: str, *args) -> None:  # quiet; the server keeps a log
            self.server.requests.append(self.requestline)  # type: ignore[attr-defined]

    return Handler


class WebServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, host: str, port: int) -> None:
        self.root = root
        self.requests: list[str] = []  # request lines, for tests and logs
        super().__init__((host, port), _handler(root))

    @property
    def url(self) -> str:
        """The address to open on this machine."""
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/"

    @property
    def lan_url(self) -> str | None:
        """The address another device on the network opens, when bound to every interface."""
        host, port = self.server_address[:2]
        if host not in ("0.0.0.0", ""):
            return None
        address = lan_address()
        return None if address is None else f"http://{address}:{port}/"

    def start_background(self) -> threading.Thread:
        """Serve on a daemon thread (tests, `serve` with a temporary export); stop with
        `shutdown()` then `server_close()`."""
        thread = threading.Thread(target=self.serve_forever, name="wonderzoom-web", daemon=True)
        thread.start()
        return thread


def lan_address() -> str | None:
    """This machine's address on its local network (the interface a default route leaves
    by; a UDP socket's connect sends nothing), or None without one."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def make_server(folder: str | os.PathLike[str], host: str = LOOPBACK, port: int = 8000) -> WebServer:
    """A server for an exported folder (see `ui.web.export.is_web_export`); port 0 picks a
    free one. Raises `ServeError`."""
    root = Path(folder)
    if not (root / "manifest.json").is_file() or not (root / "index.html").is_file():
        raise ServeError(f"{folder}: not a web export (no manifest.json / index.html)")
    try:
        return WebServer(root.resolve(), host, port)
    except OSError as exc:
        raise ServeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
