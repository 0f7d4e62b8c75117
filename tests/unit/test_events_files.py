"""The sample events in events/: valid JSON, a push signed with the documented secret, each one used by a test."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from bitbatch.signature import is_valid

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
TESTS = ROOT / "tests"
SAMPLE_SECRET = "bitbatch-sample-secret"

EVENT_FILES = sorted(EVENTS.glob("*.json"))
EXPECTED_FILES = {
    "batch-failed.json",
    "batch-succeeded.json",
    "sqs-submit.json",
    "transform-on-failure.json",
    "transform.json",
    "webhook-push-base64.json",
    "webhook-push.json",
}


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def raw_body(event: dict) -> bytes:
    """Return the body bytes the way the webhook function reads them."""
    body = event["body"]
    return base64.b64decode(body, validate=True) if event["isBase64Encoded"] else body.encode()


def test_expected_files_present():
    # Given the events folder
    # When its JSON files are listed
    names = {path.name for path in EVENT_FILES}

    # Then every sample event is there
    assert EXPECTED_FILES <= names


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.name)
def test_event_is_json_object(path):
    # Given a sample event file
    # When it is parsed
    event = json.loads(path.read_text(encoding="utf-8"))

    # Then it is a JSON object
    assert isinstance(event, dict)


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.name)
def test_event_used_by_a_test(path):
    # Given a sample event file
    # When the other test files are searched for its name
    users = [
        test_file.relative_to(ROOT)
        for test_file in TESTS.rglob("*.py")
        if test_file.name != Path(__file__).name and path.name in test_file.read_text(encoding="utf-8")
    ]

    # Then at least one test reads it
    assert users, f"no test under tests/ uses events/{path.name}"


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.name)
def test_event_described_in_readme(path):
    # Given the events README
    readme = (EVENTS / "README.md").read_text(encoding="utf-8")

    # When it is searched for the file name
    # Then the file is described there
    assert f"`{path.name}`" in readme


def test_readme_documents_secret():
    # Given the events README
    readme = (EVENTS / "README.md").read_text(encoding="utf-8")

    # When it is read
    # Then it gives the secret that signs the webhook events
    assert f"`{SAMPLE_SECRET}`" in readme


@pytest.mark.parametrize("name", ["webhook-push.json", "webhook-push-base64.json"])
def test_push_signature_verifies(name):
    # Given a webhook event and the documented secret
    event = load(name)

    # When its signature header is checked against the raw body
    # Then it verifies
    assert is_valid(SAMPLE_SECRET, raw_body(event), event["headers"]["x-hub-signature"])


@pytest.mark.parametrize("name", ["webhook-push.json", "webhook-push-base64.json"])
def test_push_signature_fails_with_other_secret(name):
    # Given a webhook event
    event = load(name)

    # When its signature is checked with another secret
    # Then it does not verify, so the test above checks the real secret
    assert not is_valid("another-secret", raw_body(event), event["headers"]["x-hub-signature"])


@pytest.mark.parametrize("name", ["webhook-push.json", "webhook-push-base64.json"])
def test_push_event_shape(name):
    # Given a webhook event
    event = load(name)
    headers = event["headers"]

    # When its envelope is read
    # Then it is an HTTP API payload 2.0 event for POST /webhook, on the ANY /webhook route, from Bitbucket Cloud
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /webhook"
    assert event["requestContext"]["routeKey"] == "ANY /webhook"
    assert event["rawPath"] == "/webhook"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert all(header == header.lower() for header in headers)
    assert headers["x-event-key"] == "repo:push"
    assert headers["content-type"] == "application/json"
    assert headers["x-request-uuid"]
    assert headers["x-hub-signature"].startswith("sha256=")
    assert int(headers["content-length"]) == len(raw_body(event))


def test_push_encodings_carry_same_delivery():
    # Given the plain and the base64 webhook events
    plain = load("webhook-push.json")
    encoded = load("webhook-push-base64.json")

    # When their bodies and headers are compared
    # Then they are the same delivery, encoded two ways
    assert plain["isBase64Encoded"] is False
    assert encoded["isBase64Encoded"] is True
    assert raw_body(encoded) == raw_body(plain)
    assert encoded["headers"] == plain["headers"]


def test_push_body_is_one_branch_update():
    # Given the body of the webhook event
    payload = json.loads(raw_body(load("webhook-push.json")))

    # When its changes are read
    changes = payload["push"]["changes"]

    # Then it updates one branch, with Ada Lovelace as the head commit's author
    assert len(changes) == 1
    assert changes[0]["new"]["type"] == "branch"
    assert changes[0]["old"]["type"] == "branch"
    assert changes[0]["new"]["target"]["author"]["raw"] == "Ada Lovelace <ada@example.com>"
    assert "@" not in json.dumps(payload["actor"])


def test_on_failure_record_shape():
    # Given the on-failure destination record
    record = load("transform-on-failure.json")

    # When it is read
    # Then it is the transform's exhausted event with the error it raised
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert set(record["requestPayload"]) == {"run_id"}
    assert record["responsePayload"]["errorMessage"]
    assert record["responsePayload"]["errorType"]


def test_sqs_records_shape():
    # Given the SQS event
    records = load("sqs-submit.json")["Records"]

    # When each record is read
    # Then there are two submit messages whose md5OfBody matches the body
    assert len(records) == 2
    for record in records:
        body = json.loads(record["body"])
        assert set(body) == {"run_id", "input_prefix", "output_prefix"}
        assert body["input_prefix"] == f"runs/{body['run_id']}/input/"
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert record["eventSource"] == "aws:sqs"


@pytest.mark.parametrize(("name", "status"), [("batch-succeeded.json", "SUCCEEDED"), ("batch-failed.json", "FAILED")])
def test_batch_event_shape(name, status):
    # Given a Batch job state change event
    event = load(name)
    detail = event["detail"]

    # When it is read
    # Then it names the run in the job name and the parameters
    assert event["source"] == "aws.batch"
    assert event["detail-type"] == "Batch Job State Change"
    assert detail["status"] == status
    assert detail["jobName"] == f"bitbatch-{detail['parameters']['run_id']}"
    assert event["resources"] == [detail["jobArn"]]


def test_batch_failed_has_exit_code_and_reason():
    # Given the failed job event
    detail = load("batch-failed.json")["detail"]

    # When its last attempt is read
    # Then the container exited with code 1 and Batch gives a reason
    assert detail["attempts"][-1]["container"]["exitCode"] == 1
    assert detail["statusReason"]
