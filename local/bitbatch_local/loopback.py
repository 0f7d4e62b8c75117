"""Start and stop the local stack's small HTTP servers on 127.0.0.1."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """Request handler without the standard library's line per request on stderr."""

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by BaseHTTPRequestHandler
        pass


class _LoopbackServer(ThreadingHTTPServer):
    # The standard library's listen backlog of 5 resets connections in a burst of requests.
    request_queue_size = 128


def start_server(handler_class: type[BaseHTTPRequestHandler], port: int, name: str) -> tuple[ThreadingHTTPServer, str]:
    """Serve handler_class in a daemon thread; returns the server and its base URL."""
    server = _LoopbackServer(("127.0.0.1", port), handler_class)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def stop_server(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
