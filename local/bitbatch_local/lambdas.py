"""A local stand-in for the Lambda service.

Handlers run in this process, in worker threads. Synchronous calls return
the handler's result. Asynchronous calls are queued, retried like Lambda
does (two retries by default, with a shorter wait than AWS), and sent to an
on-failure destination function when every attempt failed. The Invoke API
is also served over HTTP, so a handler's own boto3 Lambda client reaches
this service when AWS_ENDPOINT_URL_LAMBDA points at it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from urllib.parse import unquote

from bitbatch_local.loopback import QuietHandler, start_server, stop_server

log = logging.getLogger("bitbatch_local.lambdas")

ACCOUNT_ID = "123456789012"
INVOKE_PATH_PREFIX = "/2015-03-31/functions/"


class LocalContext:
    """The parts of the Lambda context object that Powertools reads."""

    def __init__(self, function_name: str, timeout_seconds: float, region: str):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = 1024
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    name: str
    handler: Callable[[dict, LocalContext], object]
    timeout_seconds: float = 30
    max_retry_attempts: int = 2
    on_failure: str | None = None  # name of the destination function


class FunctionError(RuntimeError):
    def __init__(self, function_name: str, error: BaseException):
        super().__init__(f"{function_name} raised {type(error).__name__}: {error}")
        self.error_payload = {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "stackTrace": traceback.format_exception(error)[-3:],
        }


class LocalLambda:
    def __init__(self, region: str, retry_delay_seconds: float = 0.5, workers: int = 8):
        self.region = region
        self.retry_delay_seconds = retry_delay_seconds
        self._functions: dict[str, LocalFunction] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self._server: ThreadingHTTPServer | None = None
        self._pending = 0
        self._pending_lock = threading.Condition()

    def register(self, function: LocalFunction) -> None:
        self._functions[function.name] = function

    def invoke(self, name: str, event: dict) -> object:
        """Run the function now and return its result; raises FunctionError."""
        function = self._function(name)
        context = LocalContext(function.name, function.timeout_seconds, self.region)
        try:
            return function.handler(event, context)
        except Exception as error:  # a Lambda function error, reported to the caller
            raise FunctionError(name, error) from error

    def invoke_async(self, name: str, event: dict) -> None:
        """Queue an event the way InvocationType=Event does."""
        self._function(name)
        with self._pending_lock:
            self._pending += 1
        self._pool.submit(self._run_async, name, event)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no asynchronous event is queued or running."""
        deadline = time.monotonic() + timeout
        with self._pending_lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._pending_lock.wait(remaining)
        return True

    def _function(self, name: str) -> LocalFunction:
        # Accept an ARN or a plain name, as the Invoke API does.
        short_name = name.rsplit(":function:", 1)[-1].split(":", 1)[0]
        if short_name not in self._functions:
            raise KeyError(f"function {short_name} is not registered in the local stack")
        return self._functions[short_name]

    def _run_async(self, name: str, event: dict) -> None:
        function = self._function(name)
        try:
            attempts = function.max_retry_attempts + 1
            for attempt in range(1, attempts + 1):
                try:
                    self.invoke(function.name, event)
                    return
                except FunctionError as error:
                    log.warning("%s attempt %d of %d failed: %s", function.name, attempt, attempts, error)
                    last_error = error
                    if attempt < attempts:
                        time.sleep(self.retry_delay_seconds * attempt)
            if function.on_failure:
                self._send_to_destination(function, event, last_error, attempts)
        finally:
            with self._pending_lock:
                self._pending -= 1
                self._pending_lock.notify_all()

    def _send_to_destination(self, function: LocalFunction, event: dict, error: FunctionError, attempts: int) -> None:
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{function.name}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": error.error_payload,
        }
        try:
            self.invoke(function.on_failure, record)
        except FunctionError as destination_error:
            log.error("on-failure destination %s failed: %s", function.on_failure, destination_error)

    # The Invoke API over HTTP, for handlers that call Lambda through boto3.

    def serve(self, port: int = 0) -> str:
        service = self

        class InvokeHandler(QuietHandler):
            def do_POST(self):  # noqa: N802 - name fixed by BaseHTTPRequestHandler
                if not self.path.startswith(INVOKE_PATH_PREFIX) or not self.path.split("?")[0].endswith("/invocations"):
                    self._reply(404, {"Message": f"unknown path {self.path}"})
                    return
                name = unquote(self.path[len(INVOKE_PATH_PREFIX) :].split("/", 1)[0])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    event = json.loads(body or b"{}")
                except json.JSONDecodeError:
                    self._reply(400, {"Type": "User", "Message": "payload is not JSON"})
                    return
                invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                try:
                    if invocation_type == "Event":
                        service.invoke_async(name, event)
                        self._reply(202, None)
                        return
                    result = service.invoke(name, event)
                    self._reply(200, result)
                except KeyError as error:
                    self._reply(404, {"Type": "User", "Message": str(error)}, error_type="ResourceNotFoundException")
                except FunctionError as error:
                    self._reply(200, error.error_payload, function_error="Unhandled")

            def _reply(self, status: int, payload, error_type: str | None = None, function_error: str | None = None):
                data = b"" if payload is None else json.dumps(payload, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_type:
                    self.send_header("x-amzn-ErrorType", error_type)
                if function_error:
                    self.send_header("X-Amz-Function-Error", function_error)
                self.end_headers()
                self.wfile.write(data)

        self._server, url = start_server(InvokeHandler, port, "lambda-api")
        return url

    def stop(self) -> None:
        stop_server(self._server)
        self._pool.shutdown(wait=False, cancel_futures=True)
