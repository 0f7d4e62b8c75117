"""A stand-in for Bitbucket's build-status REST endpoints that records each call.

Bitbucket Cloud: POST /2.0/repositories/<workspace>/<slug>/commit/<commit>/statuses/build
Data Center:     POST /rest/api/latest/projects/<key>/repos/<slug>/commits/<commit>/builds
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from dataclasses import dataclass

CLOUD_PATH = re.compile(r"^/2\.0/repositories/(?P<owner>[^/]+)/(?P<slug>[^/]+)/commit/(?P<commit>[0-9a-f]{40})/statuses/build$")
DATA_CENTER_PATH = re.compile(
    r"^/rest/api/latest/projects/(?P<owner>[^/]+)/repos/(?P<slug>[^/]+)/commits/(?P<commit>[0-9a-f]{40})/builds$"
)
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class StatusCall:
    product: str  # "cloud" or "data-center"
    repository: str
    commit: str
    body: dict


class BuildStatusRecorder:
    """Accepts build statuses sent with `Authorization: Bearer <token>` and keeps them in order."""

    def __init__(self, token: str):
        self._token = token
        self._lock = threading.Lock()
        self._calls: list[StatusCall] = []

    @property
    def calls(self) -> list[StatusCall]:
        with self._lock:
            return list(self._calls)

    @staticmethod
    def matches(path: str) -> bool:
        return bool(CLOUD_PATH.match(path) or DATA_CENTER_PATH.match(path))

    def handle(self, request, path: str) -> tuple[int, int]:
        """Handle one request on a BaseHTTPRequestHandler; returns the status and body size sent."""
        authorization = request.headers.get("Authorization", "")
        if not hmac.compare_digest(authorization.encode(), f"Bearer {self._token}".encode()):
            return _reply(request, 401, {"error": {"message": "Unauthorized"}})
        if request.command != "POST":
            return _reply(request, 405, {"error": {"message": "Only POST is supported here"}})

        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return _reply(request, 413, {"error": {"message": "Body too large"}})
        try:
            body = json.loads(request.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return _reply(request, 400, {"error": {"message": "Body is not JSON"}})

        cloud = CLOUD_PATH.match(path)
        match = cloud or DATA_CENTER_PATH.match(path)
        call = StatusCall(
            product="cloud" if cloud else "data-center",
            repository=f"{match['owner']}/{match['slug']}",
            commit=match["commit"],
            body=body,
        )
        with self._lock:
            self._calls.append(call)
        return _reply(request, 201 if cloud else 204, body if cloud else None)


def _reply(request, status: int, body: dict | None) -> tuple[int, int]:
    data = b"" if body is None else json.dumps(body).encode()
    request.send_response(status)
    if data:
        request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
    return status, len(data)
