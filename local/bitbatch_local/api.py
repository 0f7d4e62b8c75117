"""A local HTTP API that turns requests into API Gateway HTTP API (payload 2.0) events."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from bitbatch_local.loopback import QuietHandler, start_server, stop_server
from bitbatch_local.lambdas import ACCOUNT_ID, FunctionError, LocalLambda

# Matches the API Gateway payload limit for HTTP APIs (10 MB).
MAX_BODY_BYTES = 10 * 1024 * 1024
TEXT_MEDIA_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded")


def build_event(method: str, target: str, headers: dict[str, str], body: bytes, route_key: str, source_ip: str) -> dict:
    """Build the event API Gateway sends to a Lambda integration, payload format 2.0."""
    parts = urlsplit(target)
    lowered = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    content_type = lowered.get("content-type", "")
    is_text = any(content_type.startswith(prefix) for prefix in TEXT_MEDIA_TYPES)
    if is_text:
        try:
            encoded_body, is_base64 = body.decode("utf-8"), False
        except UnicodeDecodeError:
            encoded_body, is_base64 = base64.b64encode(body).decode(), True
    else:
        encoded_body, is_base64 = base64.b64encode(body).decode(), True

    now = datetime.now(UTC)
    event = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if parts.query:
        event["queryStringParameters"] = dict(parse_qsl(parts.query, keep_blank_values=True))
    if body:
        event["body"] = encoded_body
    return event


class LocalHttpApi:
    """Routes "METHOD /path" to local functions, like the HttpApi in template.yaml."""

    def __init__(self, lambdas: LocalLambda, routes: dict[str, str]):
        self._lambdas = lambdas
        self._routes = routes  # route key -> function name
        self._server: ThreadingHTTPServer | None = None

    def serve(self, port: int = 0) -> str:
        api = self

        class ApiHandler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                path = urlsplit(self.path).path
                route_key = f"{self.command} {path}"
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._send(413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
                    return
                body = self.rfile.read(length) if length else b""
                if route_key not in api._routes:
                    route_key = f"ANY {path}"
                function_name = api._routes.get(route_key)
                if function_name is None:
                    self._send(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
                    return

                event = build_event(self.command, self.path, dict(self.headers.items()), body, route_key, self.client_address[0])
                try:
                    result = api._lambdas.invoke(function_name, event)
                except FunctionError:
                    self._send(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
                    return
                self._send_result(result)

            def _send_result(self, result):
                if not isinstance(result, dict) or "statusCode" not in result:
                    # API Gateway treats any other return value as a 200 JSON body.
                    self._send(200, {"content-type": "application/json"}, json.dumps(result).encode())
                    return
                body = result.get("body") or ""
                data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
                headers = {name.lower(): str(value) for name, value in (result.get("headers") or {}).items()}
                self._send(int(result["statusCode"]), headers, data)

            def _send(self, status: int, headers: dict[str, str], data: bytes):
                self.send_response(status)
                for name, value in headers.items():
                    if name not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle  # noqa: N815

        self._server, url = start_server(ApiHandler, port, "http-api")
        return url

    def stop(self) -> None:
        stop_server(self._server)
