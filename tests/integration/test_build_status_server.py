"""Build status calls against a real HTTP server on 127.0.0.1 that records each request."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bitbatch.build_status import BuildState, BuildStatus, BuildStatusPublisher, status_for_run
from bitbatch.credentials import Credentials
from bitbatch.model import CLOUD, DATA_CENTER, Run, RunStatus

COMMIT = "b7e3a9f0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6"
TOKEN = "BBDC-sample-http-access-token-0123456789"
RUN_URL = "https://runs.example.com/runs/20261204T194832Z-3f9a1c0e2b7d?token=signed"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # delay the reply until the test ends, past the client's timeout


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class BitbucketStub:
    """Reply to requests from a script (201 once it runs out) and record each request."""

    def __init__(self):
        self.replies: deque[Reply] = deque()
        self.requests: list[RecordedRequest] = []
        self.release = threading.Event()
        self.url = ""

    def handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                stub.requests.append(RecordedRequest("POST", self.path, dict(self.headers.items()), body))
                reply = stub.replies.popleft() if stub.replies else Reply(201, b'{"state": "recorded"}')
                if reply.hold:
                    stub.release.wait(timeout=30)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST

            def log_message(self, format, *args):
                pass

        return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A held reply is written after the client gave up; the broken pipe is expected.
        pass


@pytest.fixture
def bitbucket():
    stub = BitbucketStub()
    server = QuietServer(("127.0.0.1", 0), stub.handler())
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield stub
    stub.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class RecordedSleep:
    def __init__(self):
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def make_run(product: str, repository: str, **changes) -> Run:
    values = dict(
        run_id="20261204T194832Z-3f9a1c0e2b7d",
        product=product,
        repository=repository,
        repository_uuid="{5a1c2f1e-0000-4000-8000-000000000001}",
        ref="refs/heads/release/2.0",
        ref_name="release/2.0",
        ref_type="branch",
        commit=COMMIT,
        previous_commit=None,
        commit_url=None,
        pusher_name="Ada Lovelace",
        pusher_email="ada@example.com",
        delivery_id=None,
        status=RunStatus.SUBMITTED,
    )
    values.update(changes)
    return Run(**values)


def cloud_publisher(stub: BitbucketStub, sleep=None, **options) -> BuildStatusPublisher:
    return BuildStatusPublisher(
        cloud_api_url=stub.url,
        credentials=Credentials("x-token-auth", TOKEN),
        sleep=sleep or RecordedSleep(),
        **options,
    )


def data_center_publisher(stub: BitbucketStub, **options) -> BuildStatusPublisher:
    return BuildStatusPublisher(
        data_center_base_url=stub.url + "/bitbucket",
        credentials=Credentials("build-bot", TOKEN),
        sleep=RecordedSleep(),
        **options,
    )


def test_cloud_states_recorded(bitbucket):
    # Given a Cloud run that is submitted and then succeeds
    publisher = cloud_publisher(bitbucket)
    run = make_run(CLOUD, "highland/weather-stations")

    # When both statuses are published
    started = publisher.publish(run, status_for_run(run, RUN_URL))
    run.status = RunStatus.SUCCEEDED
    finished = publisher.publish(run, status_for_run(run, RUN_URL))

    # Then the server recorded two posts to the commit's status resource, INPROGRESS then SUCCESSFUL
    assert started is True
    assert finished is True
    assert [request.path for request in bitbucket.requests] == [
        f"/2.0/repositories/highland/weather-stations/commit/{COMMIT}/statuses/build"
    ] * 2
    assert [request.json["state"] for request in bitbucket.requests] == ["INPROGRESS", "SUCCESSFUL"]


def test_cloud_body_and_headers(bitbucket):
    # Given a Cloud run with an access token configured
    publisher = cloud_publisher(bitbucket)

    # When its in-progress status is published
    publisher.publish(make_run(CLOUD, "highland/weather-stations"), BuildStatus("INPROGRESS", RUN_URL, "Job running"))

    # Then the request carries the token as Bearer and the JSON body Bitbucket Cloud reads
    request = bitbucket.requests[0]
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {
        "key": "bitbatch",
        "state": "INPROGRESS",
        "url": RUN_URL,
        "name": "bitbatch",
        "description": "Job running",
        "refname": "release/2.0",
    }


def test_data_center_body_and_headers(bitbucket):
    # Given a Data Center run and a token secret naming its owner
    publisher = data_center_publisher(bitbucket)
    run = make_run(DATA_CENTER, "WEATHER/stations", status=RunStatus.FAILED, failure_reason="exit code 3")

    # When its failed status is published
    published = publisher.publish(run, status_for_run(run, RUN_URL))

    # Then the builds resource below the context path got Basic auth and the Data Center body
    request = bitbucket.requests[0]
    assert published is True
    assert request.path == f"/bitbucket/rest/api/latest/projects/WEATHER/repos/stations/commits/{COMMIT}/builds"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"build-bot:{TOKEN}".encode()).decode()
    assert request.json == {
        "key": "bitbatch",
        "state": "FAILED",
        "url": RUN_URL,
        "name": "bitbatch",
        "description": "Failed: exit code 3",
        "ref": "refs/heads/release/2.0",
    }


def test_data_center_cancelled_state(bitbucket):
    publisher = data_center_publisher(bitbucket)

    publisher.publish(make_run(DATA_CENTER, "WEATHER/stations"), BuildStatus(BuildState.STOPPED, RUN_URL, "Stopped"))

    assert bitbucket.requests[0].json["state"] == "CANCELLED"


def test_server_error_then_created(bitbucket):
    # Given the server fails once with 500, then accepts
    bitbucket.replies.extend([Reply(500, b'{"error": "internal"}'), Reply(201)])
    sleep = RecordedSleep()

    # When a status is published
    published = cloud_publisher(bitbucket, sleep).publish(make_run(CLOUD, "highland/weather-stations"), _status())

    # Then it was sent twice with the same body, once after a backoff, and reported published
    assert published is True
    assert len(bitbucket.requests) == 2
    assert bitbucket.requests[0].body == bitbucket.requests[1].body
    assert sleep.seconds == [0.5]


def test_unauthorized_not_retried(bitbucket, caplog):
    # Given the server rejects the token
    bitbucket.replies.append(Reply(401, b'{"type": "error", "error": {"message": "Access token expired."}}'))
    sleep = RecordedSleep()

    # When a status is published
    with caplog.at_level(logging.WARNING):
        published = cloud_publisher(bitbucket, sleep).publish(make_run(CLOUD, "highland/weather-stations"), _status())

    # Then it was sent once, and the warning carries the status and body but no token
    assert published is False
    assert len(bitbucket.requests) == 1
    assert sleep.seconds == []
    warning = [record for record in caplog.records if record.levelno == logging.WARNING][0]
    assert warning.http_status == 401
    assert "Access token expired." in warning.response_body
    assert all(TOKEN not in str(vars(record)) for record in caplog.records)


def test_rate_limit_retry_after(bitbucket):
    bitbucket.replies.extend([Reply(429, b"slow down", {"Retry-After": "2"}), Reply(201)])
    sleep = RecordedSleep()

    published = cloud_publisher(bitbucket, sleep).publish(make_run(CLOUD, "highland/weather-stations"), _status())

    assert published is True
    assert sleep.seconds == [2.0]


def test_slow_response_times_out(bitbucket, caplog):
    # Given a server that delays every reply past the client's timeout
    bitbucket.replies.extend([Reply(201, hold=True), Reply(201, hold=True)])
    publisher = cloud_publisher(bitbucket, timeout_seconds=0.3, attempts=2)

    # When a status is published
    with caplog.at_level(logging.WARNING):
        published = publisher.publish(make_run(CLOUD, "highland/weather-stations"), _status())

    # Then each attempt reached the server, timed out, and the caller got False instead of an exception
    assert published is False
    assert len(bitbucket.requests) == 2
    warning = [record for record in caplog.records if record.levelno == logging.WARNING][0]
    assert "timed out" in warning.error


def test_redirect_not_followed(bitbucket):
    # Given a server that redirects the post elsewhere
    bitbucket.replies.append(Reply(302, headers={"Location": "http://127.0.0.1:9/collect"}))

    # When a status is published
    published = cloud_publisher(bitbucket).publish(make_run(CLOUD, "highland/weather-stations"), _status())

    # Then the redirect is not followed, so the token goes nowhere else
    assert published is False
    assert len(bitbucket.requests) == 1


def test_unreachable_server_returns_false(bitbucket):
    # Given nothing listens at the configured address
    publisher = BuildStatusPublisher(
        cloud_api_url="http://127.0.0.1:9",
        credentials=Credentials("x-token-auth", TOKEN),
        sleep=RecordedSleep(),
        attempts=2,
    )

    # When a status is published
    # Then the connection error stays inside the publisher
    assert publisher.publish(make_run(CLOUD, "highland/weather-stations"), _status()) is False


def _status() -> BuildStatus:
    return BuildStatus(BuildState.INPROGRESS, RUN_URL, "Job submitted to AWS Batch")
