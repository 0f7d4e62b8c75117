"""Bitbucket build status client: URLs, bodies, key, auth and retry policy, with a fake opener and clock."""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import socket
import urllib.error
from email.message import Message
from email.utils import format_datetime
from datetime import UTC, datetime

import pytest

from bitbatch.build_status import (
    MAX_KEY_LENGTH,
    MAX_RETRY_AFTER_SECONDS,
    MAX_TEXT_LENGTH,
    BuildState,
    BuildStatus,
    BuildStatusPublisher,
    build_key,
    status_for_run,
)
from bitbatch.credentials import Credentials
from bitbatch.model import CLOUD, DATA_CENTER, Run, RunStatus

COMMIT = "3f9a1c0e2b7d4a5f8e6c1b0a9d8e7f6a5b4c3d2e"
TOKEN = "ATCTT3xFfGN0-sample-access-token"
ACCESS_TOKEN = Credentials("x-token-auth", TOKEN)
RUN_URL = "https://runs.example.com/runs/20261204T194832Z-3f9a1c0e2b7d?token=signed-page-token"
STATUS = BuildStatus(BuildState.INPROGRESS, RUN_URL, "Job submitted to AWS Batch")


def make_run(product: str = CLOUD, repository: str = "highland/weather-stations", **changes) -> Run:
    values = dict(
        run_id="20261204T194832Z-3f9a1c0e2b7d",
        product=product,
        repository=repository,
        repository_uuid="{5a1c2f1e-0000-4000-8000-000000000001}",
        ref="refs/heads/main",
        ref_name="main",
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


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"{}"):
        self.status = status
        self._body = io.BytesIO(body)

    def read(self, size: int = -1) -> bytes:
        return self._body.read(size)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def http_error(code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> urllib.error.HTTPError:
    message = Message()
    for name, value in (headers or {}).items():
        message[name] = value
    return urllib.error.HTTPError("https://api.example.com", code, "error", message, io.BytesIO(body))


class FakeOpener:
    """Reply to each request from a script: a status code for success, or an exception to raise."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.requests = []
        self.timeouts = []

    def open(self, request, timeout=None):
        self.requests.append(request)
        self.timeouts.append(timeout)
        reply = self.replies.pop(0) if self.replies else 201
        if isinstance(reply, BaseException):
            raise reply
        return FakeResponse(reply)


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self):
        self.now = 1_800_000_000.0
        self.sleeps = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_publisher(opener: FakeOpener, clock: FakeTime | None = None, **options) -> BuildStatusPublisher:
    clock = clock or FakeTime()
    settings = dict(
        cloud_api_url="https://api.bitbucket.example",
        data_center_base_url="https://bitbucket.example.com/",
        credentials=ACCESS_TOKEN,
        opener=opener,
        clock=clock.time,
        sleep=clock.sleep,
    )
    settings.update(options)
    return BuildStatusPublisher(**settings)


def sent_body(opener: FakeOpener, index: int = 0) -> dict:
    return json.loads(opener.requests[index].data)


def warnings_in(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno == logging.WARNING]


# URLs and encoding


def test_cloud_url_built():
    # Given a Cloud run
    opener = FakeOpener(201)

    # When its status is published
    make_publisher(opener).publish(make_run(), STATUS)

    # Then the commit's build status resource of the Cloud API is posted to
    request = opener.requests[0]
    assert request.get_method() == "POST"
    assert request.full_url == (
        f"https://api.bitbucket.example/2.0/repositories/highland/weather-stations/commit/{COMMIT}/statuses/build"
    )


def test_data_center_url_built():
    # Given a Data Center run and a base URL with a trailing slash
    opener = FakeOpener(204)

    # When its status is published
    make_publisher(opener).publish(make_run(DATA_CENTER, "WEATHER/stations"), STATUS)

    # Then the commit's builds resource below the base URL is posted to
    assert opener.requests[0].full_url == (
        f"https://bitbucket.example.com/rest/api/latest/projects/WEATHER/repos/stations/commits/{COMMIT}/builds"
    )


def test_data_center_url_under_context_path():
    # Given a Data Center server served below a context path
    opener = FakeOpener(204)
    publisher = make_publisher(opener, data_center_base_url="https://example.com/bitbucket")

    # When a status is published
    publisher.publish(make_run(DATA_CENTER, "WEATHER/stations"), STATUS)

    # Then the context path is kept
    assert opener.requests[0].full_url.startswith("https://example.com/bitbucket/rest/api/latest/projects/WEATHER/")


def test_path_parts_encoded():
    # Given a workspace given by its UUID and a slug with characters that are not safe in a path
    opener = FakeOpener(201)
    run = make_run(repository="{0f1e2d3c}/weather stations?#%")

    # When its status is published
    make_publisher(opener).publish(run, STATUS)

    # Then each part is percent-encoded, so none can add a path segment or a query
    assert opener.requests[0].full_url == (
        "https://api.bitbucket.example/2.0/repositories/%7B0f1e2d3c%7D/weather%20stations%3F%23%25"
        f"/commit/{COMMIT}/statuses/build"
    )


@pytest.mark.parametrize(
    "repository",
    ["weather-stations", "/weather-stations", "highland/", "highland/weather/stations", "../admin", "highland/.."],
    ids=["no-slash", "no-owner", "no-slug", "extra-segment", "dot-owner", "dot-slug"],
)
def test_invalid_repository_not_called(repository, caplog):
    # Given a run whose repository is not owner/slug, or would climb out of the path
    opener = FakeOpener()

    # When its status is published
    with caplog.at_level(logging.WARNING):
        published = make_publisher(opener).publish(make_run(repository=repository), STATUS)

    # Then nothing is sent and the warning names the repository
    assert published is False
    assert opener.requests == []
    assert repository in warnings_in(caplog)[0].reason


@pytest.mark.parametrize("commit", ["", "main", "3f9a1c", "../../admin", COMMIT + "/x"], ids=str)
def test_invalid_commit_not_called(commit):
    # Given a run whose commit is not a hex commit id
    opener = FakeOpener()

    # When its status is published
    published = make_publisher(opener).publish(make_run(commit=commit), STATUS)

    # Then nothing is sent
    assert published is False
    assert opener.requests == []


def test_data_center_without_base_url_not_called(caplog):
    # Given a publisher configured for Cloud only
    opener = FakeOpener()
    publisher = make_publisher(opener, data_center_base_url=None)

    # When a Data Center run's status is published
    with caplog.at_level(logging.WARNING):
        published = publisher.publish(make_run(DATA_CENTER, "WEATHER/stations"), STATUS)

    # Then nothing is sent and the warning names the missing setting
    assert published is False
    assert opener.requests == []
    assert "DATA_CENTER_BASE_URL" in warnings_in(caplog)[0].reason


def test_unknown_product_not_called():
    opener = FakeOpener()

    published = make_publisher(opener).publish(make_run("gitlab"), STATUS)

    assert published is False
    assert opener.requests == []


# Run URL


@pytest.mark.parametrize(
    "run_url",
    ["/runs/1", "runs.example.com/runs/1", "ftp://runs.example.com/1", "https:///runs/1", ""],
    ids=["path-only", "no-scheme", "ftp", "no-host", "empty"],
)
def test_relative_run_url_not_called(run_url, caplog):
    # Given a status whose link is not an absolute http(s) URL
    opener = FakeOpener()
    status = BuildStatus(BuildState.INPROGRESS, run_url, "Job submitted")

    # When it is published
    with caplog.at_level(logging.WARNING):
        published = make_publisher(opener).publish(make_run(), status)

    # Then nothing is sent, because Bitbucket would reject it, and the warning gives the reason
    assert published is False
    assert opener.requests == []
    assert "absolute http(s) URL" in warnings_in(caplog)[0].reason


def test_run_url_query_kept_out_of_log(caplog):
    # Given a run URL with a line break, whose query contains the page's access token
    opener = FakeOpener()
    status = BuildStatus(BuildState.INPROGRESS, "https://runs.example.com/runs/1\n?token=signed-page-token", "x")

    # When it is published
    with caplog.at_level(logging.WARNING):
        make_publisher(opener).publish(make_run(), status)

    # Then the warning names the URL without its query
    reason = warnings_in(caplog)[0].reason
    assert "runs.example.com/runs/1" in reason
    assert "signed-page-token" not in reason


def test_overlong_run_url_not_called():
    opener = FakeOpener()
    status = BuildStatus(BuildState.INPROGRESS, "https://runs.example.com/" + "r" * 500, "x")

    published = make_publisher(opener).publish(make_run(), status)

    assert published is False
    assert opener.requests == []


# Bodies


def test_cloud_body_fields():
    # Given a Cloud run on branch main
    opener = FakeOpener(201)

    # When an in-progress status is published
    publisher = make_publisher(opener)
    publisher.publish(make_run(), STATUS)

    # Then the body carries the key, state, link, name, description and the short branch name
    assert sent_body(opener) == {
        "key": "bitbatch",
        "state": "INPROGRESS",
        "url": RUN_URL,
        "name": "bitbatch",
        "description": "Job submitted to AWS Batch",
        "refname": "main",
    }


def test_data_center_body_fields():
    # Given a Data Center run on tag v1.0
    opener = FakeOpener(204)
    run = make_run(DATA_CENTER, "WEATHER/stations", ref="refs/tags/v1.0", ref_name="v1.0", ref_type="tag")

    # When a failed status is published
    make_publisher(opener).publish(run, BuildStatus(BuildState.FAILED, RUN_URL, "Failed: exit code 2", "nightly"))

    # Then the body names the full ref in ref, and has no Cloud refname
    assert sent_body(opener) == {
        "key": "bitbatch",
        "state": "FAILED",
        "url": RUN_URL,
        "name": "nightly",
        "description": "Failed: exit code 2",
        "ref": "refs/tags/v1.0",
    }


@pytest.mark.parametrize(
    ("product", "repository", "expected"),
    [(CLOUD, "highland/weather-stations", "STOPPED"), (DATA_CENTER, "WEATHER/stations", "CANCELLED")],
    ids=["cloud", "data-center"],
)
def test_stopped_state_per_product(product, repository, expected):
    # Given a cancelled run's status
    opener = FakeOpener(201)

    # When it is published
    make_publisher(opener).publish(make_run(product, repository), BuildStatus(BuildState.STOPPED, RUN_URL, "Stopped"))

    # Then the state is in the product's word
    assert sent_body(opener)["state"] == expected


def test_same_key_for_every_state():
    # Given one run that starts and then fails
    opener = FakeOpener(201, 201)
    publisher = make_publisher(opener)

    # When both statuses are published
    publisher.publish(make_run(), STATUS)
    publisher.publish(make_run(status=RunStatus.FAILED), BuildStatus(BuildState.FAILED, RUN_URL, "Failed"))

    # Then both use the same key, so the later state overwrites the earlier one in Bitbucket
    assert sent_body(opener, 0)["key"] == sent_body(opener, 1)["key"]


def test_description_flattened_to_one_line():
    opener = FakeOpener(201)
    status = BuildStatus(BuildState.FAILED, RUN_URL, "Failed:\r\nOutOfMemoryError:\tcontainer killed\x00")

    make_publisher(opener).publish(make_run(), status)

    assert sent_body(opener)["description"] == "Failed: OutOfMemoryError: container killed"


def test_long_description_cut():
    # Given a failure reason far longer than Bitbucket keeps
    opener = FakeOpener(201)
    status = BuildStatus(BuildState.FAILED, RUN_URL, "Failed: " + "x" * 1000)

    # When it is published
    make_publisher(opener).publish(make_run(), status)

    # Then the description is cut to the limit and shows it was cut
    description = sent_body(opener)["description"]
    assert len(description) == MAX_TEXT_LENGTH
    assert description.endswith("…")


def test_status_accepts_state_string():
    assert BuildStatus("SUCCESSFUL", RUN_URL, "done").state is BuildState.SUCCESSFUL


def test_status_rejects_unknown_state():
    with pytest.raises(ValueError, match="PASSED"):
        BuildStatus("PASSED", RUN_URL, "done")


# Key


def test_default_key():
    assert build_key() == "bitbatch"


def test_key_with_suffix():
    assert build_key("prod-eu") == "bitbatch-prod-eu"


def test_key_at_limit_accepted():
    suffix = "s" * (MAX_KEY_LENGTH - len("bitbatch-"))

    assert len(build_key(suffix)) == MAX_KEY_LENGTH


def test_key_over_limit_rejected():
    suffix = "s" * (MAX_KEY_LENGTH - len("bitbatch-") + 1)

    with pytest.raises(ValueError, match="at most 40"):
        build_key(suffix)


@pytest.mark.parametrize("suffix", ["prod/eu", "-prod", "prod eu", "prodé", "prod\n"], ids=repr)
def test_key_suffix_characters_rejected(suffix):
    with pytest.raises(ValueError, match="suffix"):
        build_key(suffix)


def test_publisher_key_suffix_used():
    opener = FakeOpener(201)

    make_publisher(opener, key_suffix="staging").publish(make_run(), STATUS)

    assert sent_body(opener)["key"] == "bitbatch-staging"


# Authorization


@pytest.mark.parametrize(
    ("product", "repository"),
    [(CLOUD, "highland/weather-stations"), (DATA_CENTER, "WEATHER/stations")],
    ids=["cloud", "data-center"],
)
def test_access_token_sent_as_bearer(product, repository):
    # Given a bare token secret, which reads as user x-token-auth
    opener = FakeOpener(201)

    # When a status is published
    make_publisher(opener, credentials=ACCESS_TOKEN).publish(make_run(product, repository), STATUS)

    # Then the token goes as a Bearer token
    assert opener.requests[0].get_header("Authorization") == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("product", "repository"),
    [(CLOUD, "highland/weather-stations"), (DATA_CENTER, "WEATHER/stations")],
    ids=["cloud", "data-center"],
)
def test_user_token_sent_as_basic(product, repository):
    # Given a secret naming a user, as for a Cloud API token or a Data Center token owner
    opener = FakeOpener(201)
    credentials = Credentials("ada@example.com", TOKEN)

    # When a status is published
    make_publisher(opener, credentials=credentials).publish(make_run(product, repository), STATUS)

    # Then Basic auth carries user name and token
    scheme, _, encoded = opener.requests[0].get_header("Authorization").partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"ada@example.com:{TOKEN}"


def test_authorization_not_redirected():
    # Given a published status
    opener = FakeOpener(201)

    # When its request is inspected
    make_publisher(opener).publish(make_run(), STATUS)

    # Then the Authorization header is one urllib does not copy to a redirected request
    request = opener.requests[0]
    assert "Authorization" in request.unredirected_hdrs
    assert "Authorization" not in request.headers


def test_json_content_type():
    opener = FakeOpener(201)

    make_publisher(opener).publish(make_run(), STATUS)

    assert opener.requests[0].get_header("Content-type") == "application/json"


def test_no_credentials_disabled():
    # Given no token secret configured
    opener = FakeOpener()
    publisher = make_publisher(opener, credentials=None)

    # When a status is published
    published = publisher.publish(make_run(), STATUS)

    # Then nothing is sent
    assert publisher.enabled is False
    assert published is False
    assert opener.requests == []


# Retry policy


@pytest.mark.parametrize("code", [200, 201, 204])
def test_success_codes_published(code):
    opener = FakeOpener(code)

    assert make_publisher(opener).publish(make_run(), STATUS) is True


def test_server_error_retried():
    # Given Bitbucket returns 503 once, then accepts the status
    clock = FakeTime()
    opener = FakeOpener(http_error(503), 201)

    # When a status is published
    published = make_publisher(opener, clock).publish(make_run(), STATUS)

    # Then it is sent again after the first backoff and reported published
    assert published is True
    assert len(opener.requests) == 2
    assert clock.sleeps == [0.5]


def test_connection_errors_back_off_exponentially():
    # Given Bitbucket cannot be reached at all
    clock = FakeTime()
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    opener = FakeOpener(refused, refused, refused, refused)

    # When a status is published with four attempts
    published = make_publisher(opener, clock, attempts=4, max_total_seconds=60).publish(make_run(), STATUS)

    # Then each wait doubles and the call reports failure after the last attempt
    assert published is False
    assert len(opener.requests) == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    "error",
    [TimeoutError("timed out"), urllib.error.URLError(socket.timeout("timed out")), ConnectionResetError(104, "reset")],
    ids=["read-timeout", "connect-timeout", "reset"],
)
def test_network_errors_retried(error):
    opener = FakeOpener(error, 201)

    assert make_publisher(opener).publish(make_run(), STATUS) is True
    assert len(opener.requests) == 2


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422])
def test_client_error_not_retried(code):
    # Given Bitbucket rejects the request itself
    clock = FakeTime()
    opener = FakeOpener(http_error(code), 201)

    # When a status is published
    published = make_publisher(opener, clock).publish(make_run(), STATUS)

    # Then it is sent once, without waiting, and reported failed
    assert published is False
    assert len(opener.requests) == 1
    assert clock.sleeps == []


def test_rate_limit_retry_after_honoured():
    # Given Bitbucket returns 429 and requests a 3 s wait
    clock = FakeTime()
    opener = FakeOpener(http_error(429, headers={"Retry-After": "3"}), 201)

    # When a status is published
    published = make_publisher(opener, clock).publish(make_run(), STATUS)

    # Then the retry waits as requested
    assert published is True
    assert clock.sleeps == [3.0]


def test_long_retry_after_capped():
    clock = FakeTime()
    opener = FakeOpener(http_error(429, headers={"Retry-After": "3600"}), 201)

    make_publisher(opener, clock, max_total_seconds=60).publish(make_run(), STATUS)

    assert clock.sleeps == [MAX_RETRY_AFTER_SECONDS]


def test_retry_after_date_honoured():
    # Given a Retry-After header with an HTTP date 4 s ahead of the clock
    clock = FakeTime()
    moment = format_datetime(datetime.fromtimestamp(clock.now + 4, UTC), usegmt=True)
    opener = FakeOpener(http_error(503, headers={"Retry-After": moment}), 201)

    # When a status is published
    make_publisher(opener, clock).publish(make_run(), STATUS)

    # Then the retry waits until that moment
    assert clock.sleeps == [4.0]


def test_invalid_retry_after_ignored():
    clock = FakeTime()
    opener = FakeOpener(http_error(503, headers={"Retry-After": "soon"}), 201)

    make_publisher(opener, clock).publish(make_run(), STATUS)

    assert clock.sleeps == [0.5]


def test_time_budget_stops_retries():
    # Given a 2 s budget and a server that keeps failing
    clock = FakeTime()
    opener = FakeOpener(*[http_error(502) for _ in range(10)])

    # When a status is published with many attempts allowed
    published = make_publisher(opener, clock, attempts=10, max_total_seconds=2).publish(make_run(), STATUS)

    # Then retries stop before a wait would pass the budget
    assert published is False
    assert clock.sleeps == [0.5, 1.0]
    assert len(opener.requests) == 3


def test_timeout_shrinks_to_budget():
    # Given a budget shorter than the request timeout
    opener = FakeOpener(201)

    # When a status is published
    make_publisher(opener, timeout_seconds=5, max_total_seconds=2).publish(make_run(), STATUS)

    # Then the request may take only what is left of the budget
    assert opener.timeouts == [2]


def test_failure_logged_without_token(caplog):
    # Given Bitbucket returns 401 with a long body that echoes the token
    body = (f'{{"type": "error", "error": {{"message": "Token {TOKEN} is invalid"}}, "detail": "' + "d" * 500).encode()
    opener = FakeOpener(http_error(401, body))

    # When a status is published
    with caplog.at_level(logging.INFO):
        make_publisher(opener).publish(make_run(), STATUS)

    # Then one warning names the status and the start of the body, and no log line contains the token
    warning = warnings_in(caplog)[0]
    assert warning.getMessage() == "build status not published"
    assert warning.http_status == 401
    assert warning.response_body.startswith('{"type": "error"')
    assert len(warning.response_body) <= 200
    assert "<token>" in warning.response_body
    assert all(TOKEN not in str(vars(record)) for record in caplog.records)


def test_failure_logged_with_run_keys(caplog):
    opener = FakeOpener(http_error(403, b"forbidden"))

    with caplog.at_level(logging.WARNING):
        make_publisher(opener).publish(make_run(), STATUS)

    warning = warnings_in(caplog)[0]
    assert warning.run_id == "20261204T194832Z-3f9a1c0e2b7d"
    assert warning.repository == "highland/weather-stations"
    assert warning.ref == "refs/heads/main"
    assert warning.commit == COMMIT


def test_incomplete_response_retried():
    # Given the connection drops halfway through the response
    opener = FakeOpener(http.client.IncompleteRead(b"par"), 201)

    # When a status is published
    # Then the error is retried like a network error instead of reaching the caller
    assert make_publisher(opener).publish(make_run(), STATUS) is True


# Construction


@pytest.mark.parametrize(
    "options",
    [
        {"cloud_api_url": "api.bitbucket.org"},
        {"data_center_base_url": "bitbucket.example.com"},
        {"attempts": 0},
        {"timeout_seconds": 0},
        {"backoff_seconds": -1},
        {"max_total_seconds": 0},
        {"key_suffix": "x" * 40},
    ],
    ids=["cloud-url", "data-center-url", "attempts", "timeout", "backoff", "budget", "key"],
)
def test_invalid_configuration_rejected(options):
    with pytest.raises(ValueError):
        make_publisher(FakeOpener(), **options)


# Statuses for runs


@pytest.mark.parametrize(
    ("run_status", "state"),
    [
        (RunStatus.SUBMITTED, BuildState.INPROGRESS),
        (RunStatus.RUNNING, BuildState.INPROGRESS),
        (RunStatus.SUCCEEDED, BuildState.SUCCESSFUL),
        (RunStatus.FAILED, BuildState.FAILED),
    ],
)
def test_status_for_run_state(run_status, state):
    assert status_for_run(make_run(status=run_status), RUN_URL).state is state


def test_status_for_failed_run_names_reason():
    run = make_run(status=RunStatus.FAILED, failure_reason="out of memory (container used more than 2048 MiB)")

    status = status_for_run(run, RUN_URL)

    assert status.description == "Failed: out of memory (container used more than 2048 MiB)"
    assert status.run_url == RUN_URL


def test_status_for_stored_run_status_string():
    # Given a run read back from the table, whose status is a plain string
    run = make_run(status="SUCCEEDED")

    # Then it maps like the enum member
    assert status_for_run(run, RUN_URL).state is BuildState.SUCCESSFUL


def test_no_status_for_skipped_run():
    assert status_for_run(make_run(status=RunStatus.SKIPPED), RUN_URL) is None
