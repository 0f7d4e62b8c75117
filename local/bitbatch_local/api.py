"""A local HTTP API that turns requests into API Gateway HTTP API (payload 2.0) events."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from bitbatch_local.loopback import QuietHandler, start_server, stop_server
from bitbatch_local.lambdas import ACCOUNT_ID, FunctionError, LocalLambda

# Matches the API Gateway payload limit for HTTP APIs (10 MB).
MAX_BODY_BYTES = 10 * 1024 * 1024
TEXT_MEDIA_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded")


def match_route(route_keys: Iterable[str], method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """Return the route key that takes a request, and its path parameters, or None.

    Route paths may contain {name} for one path segment. As in API Gateway, a
    path with more literal segments wins, then a route for the request's method
    wins over ANY. Parameter values are percent-decoded.
    """
    segments = path.split("/")
    best = None
    for route_key in route_keys:
        route_method, _, route_path = route_key.partition(" ")
        if route_method not in (method, "ANY"):
            continue
        parts = route_path.split("/")
        if len(parts) != len(segments):
            continue

        parameters: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{") and part.endswith("}"):
                if not segment:
                    break
                parameters[part[1:-1]] = unquote(segment)
            elif part != segment:
                break
        else:
            rank = (len(parts) - len(parameters), route_method != "ANY")
            if best is None or rank > best[0]:
                best = (rank, route_key, parameters)
    return None if best is None else (best[1], best[2])


def build_event(
    method: str,
    target: str,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes,
    route_key: str,
    source_ip: str,
    path_parameters: dict[str, str] | None = None,
) -> dict:
    """Build the event API Gateway sends to a Lambda integration, payload format 2.0."""
    parts = urlsplit(target)
    lowered = {}
    # API Gateway lower-cases names and joins repeated headers with commas.
    for name, value in headers.items() if isinstance(headers, dict) else headers:
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
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body:
        event["body"] = encoded_body
    return event


class LocalHttpApi:
    """Routes "METHOD /path" (ANY for every method, {name} for a path segment) to local functions,
    like the HttpApi in template.yaml."""

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
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._send(413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
                    return
                body = self.rfile.read(length) if length else b""
                route = match_route(api._routes, self.command, path)
                if route is None:
                    self._send(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
                    return
                route_key, path_parameters = route
                function_name = api._routes[route_key]

                event = build_event(
                    self.command,
                    self.path,
                    list(self.headers.items()),
                    body,
                    route_key,
                    self.client_address[0],
                    path_parameters,
                )
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
