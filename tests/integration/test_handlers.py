"""Each Lambda handler called with the sample events, against moto's server over HTTP.

The webhook reaches a recording stand-in for the transform function through
the Lambda Invoke API, and the transform function fetches from a real git
server. Sent email is read from moto's SES backend.
"""

from __future__ import annotations

import base64
import hashlib
import json
import traceback

import boto3
import pytest

# The helpers module is also loaded as a plugin below; let pytest rewrite its asserts first.
pytest.register_assert_rewrite("fixtures_handlers")

from fixtures_handlers import (
    BITBUCKET_TOKEN,
    FALLBACK_RECIPIENT,
    PUSHER_EMAIL,
    REPOSITORY,
    SAMPLE_SECRET,
    body_text,
    http_answer,
    lambda_context,
    load_event,
    record_run,
    run_store,
    sent_messages,
    signed_webhook_event,
    stored_items,
    webhook_payload,
)

from bitbatch.checkout import CheckoutError
from bitbatch.model import RunStatus
from handlers import notifier, submitter, transform, webhook

# Loads the fixtures resources, fake_transform and served_repository.
pytest_plugins = ["fixtures_handlers"]

HEAD = "7de5c744462044a30d3f711293f80ff03adf7d79"
WRONG_TOKEN = "bb-access-token-0000000000"


def call_webhook(event: dict) -> tuple[int, dict]:
    return http_answer(webhook.lambda_handler(event, lambda_context("bitbatch-webhook")))


def call_transform(event: dict) -> dict:
    return transform.lambda_handler(event, lambda_context("bitbatch-transform"))


def call_submitter(event: dict) -> dict:
    return submitter.lambda_handler(event, lambda_context("bitbatch-submitter"))


def call_notifier(event: dict) -> dict:
    return notifier.lambda_handler(event, lambda_context("bitbatch-notifier"))


# Webhook


def test_webhook_push_starts_run(resources, fake_transform):
    # Given the sample push, signed with the secret stored in Secrets Manager
    event = load_event("webhook-push.json")

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 202 with one run
    assert status == 202
    assert len(answer["runs"]) == 1
    run_id = answer["runs"][0]["run_id"]
    assert answer["runs"][0]["commit"] == HEAD

    # and the run is recorded as received, with the pusher's address from the commit author
    run = run_store(resources).get(run_id)
    assert run.status == RunStatus.RECEIVED
    assert run.pusher_email == PUSHER_EMAIL
    assert run.repository == REPOSITORY
    assert run.ref == "refs/heads/main"
    assert run.commit == HEAD
    assert run.delivery_id == event["headers"]["x-request-uuid"]

    # and the transform function was started with the run id only
    assert fake_transform.received() == [{"run_id": run_id}]


def test_webhook_base64_push_starts_run(resources, fake_transform):
    # Given the same delivery with a base64-encoded body
    event = load_event("webhook-push-base64.json")

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 202 and records the run for the pushed commit
    assert status == 202
    assert len(answer["runs"]) == 1
    run = run_store(resources).get(answer["runs"][0]["run_id"])
    assert run.commit == HEAD
    assert fake_transform.received() == [{"run_id": run.run_id}]


def test_webhook_charset_parameter_accepted(resources, fake_transform):
    # Given the sample push with a charset parameter on its media type
    event = load_event("webhook-push.json")
    event["headers"]["content-type"] = "application/json; charset=utf-8"

    # When the webhook receives it
    status, _ = call_webhook(event)

    # Then the parameter is ignored and the push is accepted
    assert status == 202


def test_webhook_tampered_body_rejected(resources, fake_transform):
    # Given the sample push with its author changed after signing
    event = load_event("webhook-push.json")
    event["body"] = event["body"].replace("ada@example.com", "eve@example.com")

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 401, records nothing and starts nothing
    assert status == 401
    assert "X-Hub-Signature" in answer["error"]
    assert stored_items(resources) == []
    assert fake_transform.received() == []


def test_webhook_base64_tampered_body_rejected(resources, fake_transform):
    # Given the base64 delivery with one byte of the decoded body changed
    event = load_event("webhook-push-base64.json")
    body = bytearray(base64.b64decode(event["body"]))
    body[-2] ^= 0x01
    event["body"] = base64.b64encode(bytes(body)).decode()

    # When the webhook receives it
    status, _ = call_webhook(event)

    # Then it returns 401 and records nothing
    assert status == 401
    assert stored_items(resources) == []


def test_webhook_unsigned_push_rejected(resources, fake_transform):
    # Given the sample push without its signature header
    event = load_event("webhook-push.json")
    del event["headers"]["x-hub-signature"]

    # When the webhook receives it
    status, _ = call_webhook(event)

    # Then it returns 401 and records nothing
    assert status == 401
    assert stored_items(resources) == []


def test_webhook_other_secret_rejected(resources, fake_transform):
    # Given the sample push signed with a secret other than the stored one
    event = load_event("webhook-push.json")
    event = signed_webhook_event(event, event["body"].encode(), secret="old-rotated-secret")

    # When the webhook receives it
    status, _ = call_webhook(event)

    # Then it returns 401
    assert status == 401


def test_webhook_non_json_content_type_rejected(resources, fake_transform):
    # Given a correctly signed delivery sent as a form
    event = load_event("webhook-push.json")
    event["headers"]["content-type"] = "application/x-www-form-urlencoded"

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 415, names the type it wants, and records nothing
    assert status == 415
    assert "application/json" in answer["error"]
    assert stored_items(resources) == []
    assert fake_transform.received() == []


def test_webhook_other_event_key_ignored(resources, fake_transform):
    # Given a correctly signed delivery of another Bitbucket event
    event = load_event("webhook-push.json")
    event["headers"]["x-event-key"] = "pullrequest:created"

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 200 with the reason it ignored it, and records nothing
    assert status == 200
    assert answer["runs"] == []
    assert "pullrequest:created" in answer["ignored"]
    assert stored_items(resources) == []
    assert fake_transform.received() == []


def test_webhook_deletion_only_push_ignored(resources, fake_transform):
    # Given a signed push whose only change deletes the branch
    base_event = load_event("webhook-push.json")
    payload = webhook_payload(base_event)
    change = payload["push"]["changes"][0]
    change.update({"new": None, "closed": True, "commits": []})
    event = signed_webhook_event(base_event, json.dumps(payload).encode())

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 200, names the deleted ref, and records nothing
    assert status == 200
    assert answer["runs"] == []
    assert "main was deleted" in answer["ignored"]
    assert stored_items(resources) == []
    assert fake_transform.received() == []


def test_webhook_empty_push_ignored(resources, fake_transform):
    # Given a signed push with an empty changes list
    base_event = load_event("webhook-push.json")
    payload = webhook_payload(base_event)
    payload["push"]["changes"] = []
    event = signed_webhook_event(base_event, json.dumps(payload).encode())

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 200 and records nothing
    assert status == 200
    assert answer["runs"] == []
    assert stored_items(resources) == []


def test_webhook_invalid_json_rejected(resources, fake_transform):
    # Given a correctly signed body that is not JSON
    event = signed_webhook_event(load_event("webhook-push.json"), b'{"push": {"changes": [')

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 400 and records nothing
    assert status == 400
    assert "not valid JSON" in answer["error"]
    assert stored_items(resources) == []


def test_webhook_payload_missing_field_rejected(resources, fake_transform):
    # Given a correctly signed push without repository.full_name
    base_event = load_event("webhook-push.json")
    payload = webhook_payload(base_event)
    del payload["repository"]["full_name"]
    event = signed_webhook_event(base_event, json.dumps(payload).encode())

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 400 naming the field
    assert status == 400
    assert "repository.full_name" in answer["error"]


def test_webhook_two_branches_start_two_runs(resources, fake_transform):
    # Given a signed push that updates main and creates a release branch
    base_event = load_event("webhook-push.json")
    payload = webhook_payload(base_event)
    release = json.loads(json.dumps(payload["push"]["changes"][0]))
    release["new"]["name"] = "release/2024-03"
    release.update({"old": None, "created": True})
    payload["push"]["changes"].append(release)
    event = signed_webhook_event(base_event, json.dumps(payload).encode())

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then each ref gets its own run and transform
    assert status == 202
    assert [run["ref"] for run in answer["runs"]] == ["refs/heads/main", "refs/heads/release/2024-03"]
    run_ids = [run["run_id"] for run in answer["runs"]]
    assert len(set(run_ids)) == 2
    assert sorted(event["run_id"] for event in fake_transform.received()) == sorted(run_ids)


def test_webhook_redelivered_push_starts_one_run(resources, fake_transform):
    # Given the sample push, delivered once
    event = load_event("webhook-push.json")
    _, first_answer = call_webhook(event)

    # When Bitbucket delivers it again, as it does after a 5xx or a manual resend
    event["headers"]["x-attempt-number"] = "2"
    status, answer = call_webhook(event)

    # Then the second delivery is acknowledged as a duplicate of the first run
    assert status == 200
    assert answer["duplicate"] is True
    assert answer["runs"] == first_answer["runs"]
    assert len(stored_items(resources)) == 1
    assert len(fake_transform.received()) == 1


def test_webhook_base64_redelivery_is_duplicate(resources, fake_transform):
    # Given the sample push, delivered once as plain text
    _, first_answer = call_webhook(load_event("webhook-push.json"))

    # When the same delivery arrives base64-encoded
    status, answer = call_webhook(load_event("webhook-push-base64.json"))

    # Then the encoding makes no difference: it is the same push
    assert status == 200
    assert answer["runs"] == first_answer["runs"]
    assert len(stored_items(resources)) == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_webhook_other_method_rejected(resources, fake_transform, method):
    # Given the sample push sent with another HTTP method
    event = load_event("webhook-push.json")
    event["requestContext"]["http"]["method"] = method

    # When the webhook receives it
    result = webhook.lambda_handler(event, lambda_context("bitbatch-webhook"))

    # Then it returns 405, allows POST, and records nothing
    assert result["statusCode"] == 405
    assert result["headers"]["Allow"] == "POST"
    assert stored_items(resources) == []


def test_webhook_repository_not_allowed(resources, fake_transform, monkeypatch):
    # Given a stack that accepts pushes only from another workspace
    monkeypatch.setenv("ALLOWED_REPOSITORIES", "other-workspace/*")

    # When the sample push arrives
    status, answer = call_webhook(load_event("webhook-push.json"))

    # Then it returns 403 naming the repository, and records nothing
    assert status == 403
    assert REPOSITORY in answer["error"]
    assert stored_items(resources) == []
    assert fake_transform.received() == []


def test_webhook_tag_ignored_by_default(resources, fake_transform):
    # Given a signed push that creates a tag, under the default tag policy
    base_event = load_event("webhook-push.json")
    payload = webhook_payload(base_event)
    change = payload["push"]["changes"][0]
    change["new"].update({"type": "tag", "name": "v1.0"})
    change.update({"old": None, "created": True})
    event = signed_webhook_event(base_event, json.dumps(payload).encode())

    # When the webhook receives it
    status, answer = call_webhook(event)

    # Then it returns 200 naming the tag, and records nothing
    assert status == 200
    assert "tag v1.0" in answer["ignored"]
    assert stored_items(resources) == []


def test_webhook_previous_secret_accepted(resources, fake_transform):
    # Given a webhook secret rotated a moment ago, while Bitbucket still signs with the old one
    boto3.client("secretsmanager").put_secret_value(
        SecretId=resources.webhook_secret_arn, SecretString="bitbatch-rotated-secret"
    )

    # When the sample push signed with the old secret arrives
    status, _ = call_webhook(load_event("webhook-push.json"))

    # Then it is accepted within the rotation window
    assert status == 202


def test_webhook_unreadable_secret_returns_503(resources, fake_transform):
    # Given a webhook secret that has been deleted
    boto3.client("secretsmanager").delete_secret(SecretId=resources.webhook_secret_arn, ForceDeleteWithoutRecovery=True)

    # When the sample push arrives
    status, answer = call_webhook(load_event("webhook-push.json"))

    # Then it returns 503, so Bitbucket retries, and records nothing
    assert status == 503
    assert "secret" in answer["error"]
    assert stored_items(resources) == []


# Transform


def read_object(resources, key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=resources.bucket, Key=key)["Body"].read()


def submit_queue_messages(resources) -> list[dict]:
    response = boto3.client("sqs").receive_message(
        QueueUrl=resources.submit_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    return [json.loads(message["Body"]) for message in response.get("Messages", [])]


def test_transform_stages_run(resources, served_repository):
    # Given a received run for the head commit of a repository on the git server
    event = load_event("transform.json")
    run_id = event["run_id"]
    record_run(resources, run_id, RunStatus.RECEIVED, commit=served_repository.sample.head_commit)

    # When the transform function runs for it
    result = call_transform(event)

    # Then every file of the commit became an artifact
    assert result == {"run_id": run_id, "status": "QUEUED", "files": len(served_repository.sample.head_files)}
    run = run_store(resources).get(run_id)
    assert run.status == RunStatus.QUEUED
    assert run.input_prefix == f"runs/{run_id}/input/"
    assert run.output_prefix == f"runs/{run_id}/output/"

    # and the manifest describes the commit and each artifact by its hash
    manifest = json.loads(read_object(resources, run.input_prefix + "manifest.json"))
    assert manifest["run_id"] == run_id
    assert manifest["commit"] == served_repository.sample.head_commit
    assert manifest["ref"] == "refs/heads/main"
    entries = {entry["path"]: entry for entry in manifest["files"]}
    assert sorted(entries) == sorted(served_repository.sample.head_files)
    for entry in manifest["files"]:
        stored = read_object(resources, run.input_prefix + entry["artifact"])
        assert hashlib.sha256(stored).hexdigest() == entry["sha256"], entry["path"]
        assert len(stored) == entry["size"], entry["path"]

    # and CSV and TSV became JSON Lines, YAML became JSON, the rest was copied
    assert entries["data/stations.csv"]["artifact"] == "files/data/stations.csv.jsonl"
    assert entries["data/stations.csv"]["format"] == "jsonl"
    assert entries["data/readings.tsv"]["artifact"] == "files/data/readings.tsv.jsonl"
    assert entries["config/pipeline.yaml"]["artifact"] == "files/config/pipeline.yaml.json"
    assert entries["config/pipeline.yaml"]["format"] == "json"
    assert entries["README.md"]["artifact"] == "files/README.md"
    assert entries["README.md"]["format"] == "raw"

    # and the artifacts hold the converted content
    stations = read_object(resources, run.input_prefix + "files/data/stations.csv.jsonl").decode().splitlines()
    first_station = json.loads(stations[0])
    assert first_station["id"] == "HGL001"
    assert isinstance(first_station["elevation_m"], int)
    assert isinstance(first_station["active"], bool)
    pipeline = json.loads(read_object(resources, run.input_prefix + "files/config/pipeline.yaml.json"))
    assert pipeline["pipeline"]["name"] == "highland-station-qc"

    # and one message on the submit queue names the run and its prefixes
    assert submit_queue_messages(resources) == [
        {"run_id": run_id, "input_prefix": run.input_prefix, "output_prefix": run.output_prefix}
    ]


def test_transform_repeated_event_fetches_nothing(resources, served_repository):
    # Given a run that the transform function has already staged
    event = load_event("transform.json")
    record_run(resources, event["run_id"], RunStatus.RECEIVED, commit=served_repository.sample.head_commit)
    call_transform(event)
    requests_before = len(served_repository.server.requests)
    manifest_key = f"runs/{event['run_id']}/input/manifest.json"
    manifest_before = read_object(resources, manifest_key)

    # When the same event arrives again, as an asynchronous retry can deliver it
    result = call_transform(event)

    # Then nothing is fetched or stored again and the run stays queued
    assert result["status"] == "QUEUED"
    assert result["files"] == 0
    assert len(served_repository.server.requests) == requests_before
    assert read_object(resources, manifest_key) == manifest_before
    assert run_store(resources).get(event["run_id"]).status == RunStatus.QUEUED


def test_transform_repeated_event_resends_message(resources, served_repository):
    # Given a run that the transform function has already staged and queued
    event = load_event("transform.json")
    record_run(resources, event["run_id"], RunStatus.RECEIVED, commit=served_repository.sample.head_commit)
    call_transform(event)

    # When the same event arrives again before the job is submitted
    call_transform(event)

    # Then the submit message is sent again, unchanged, in case the first send was lost
    messages = submit_queue_messages(resources)
    assert len(messages) == 2
    assert messages[0] == messages[1]


def test_transform_repeated_event_still_one_job(resources, served_repository):
    # Given a run staged twice by a repeated transform event, so its message is queued twice
    event = load_event("transform.json")
    record_run(resources, event["run_id"], RunStatus.RECEIVED, commit=served_repository.sample.head_commit)
    call_transform(event)
    call_transform(event)
    messages = submit_queue_messages(resources)
    assert len(messages) == 2

    # When the submitter receives every message the queue contains
    template = load_event("sqs-submit.json")["Records"][0]
    records = [
        {**template, "messageId": f"message-{index}", "body": json.dumps(message)}
        for index, message in enumerate(messages)
    ]
    result = call_submitter({"Records": records})

    # Then one job is submitted for the run
    assert result == {"batchItemFailures": []}
    assert [job["jobName"] for job in list_jobs(resources)] == [f"bitbatch-{event['run_id']}"]


def test_transform_wrong_token_kept_secret(resources, served_repository):
    # Given a Bitbucket token secret that the git server does not accept
    boto3.client("secretsmanager").put_secret_value(SecretId=resources.token_secret_arn, SecretString=WRONG_TOKEN)
    event = load_event("transform.json")
    record_run(resources, event["run_id"], RunStatus.RECEIVED, commit=served_repository.sample.head_commit)

    # When the transform function runs
    with pytest.raises(CheckoutError) as raised:
        call_transform(event)

    # Then the error names what to check, and neither token appears in it or its traceback
    message = str(raised.value)
    assert "rejected the access token" in message
    assert WRONG_TOKEN not in message
    assert BITBUCKET_TOKEN not in message
    full_traceback = "".join(traceback.format_exception(raised.value))
    assert WRONG_TOKEN not in full_traceback
    assert BITBUCKET_TOKEN not in full_traceback

    # and the run stays received for the retry, with nothing queued
    assert run_store(resources).get(event["run_id"]).status == RunStatus.RECEIVED
    assert submit_queue_messages(resources) == []


def test_transform_event_without_run_id_ignored(resources):
    # Given an event with no run id
    # When the transform function runs
    result = call_transform({"repository": REPOSITORY})

    # Then it drops the event without raising, since a retry cannot help
    assert result["status"] == "ignored"


# Submitter


def list_jobs(resources) -> list[dict]:
    # A name filter returns jobs in every status, where a bare list returns only RUNNING ones.
    response = boto3.client("batch").list_jobs(
        jobQueue=resources.job_queue_arn, filters=[{"name": "JOB_NAME", "values": ["bitbatch-*"]}]
    )
    return response["jobSummaryList"]


def message_run_ids(event: dict) -> list[str]:
    return [json.loads(record["body"])["run_id"] for record in event["Records"]]


def test_submitter_submits_one_job_per_run(resources):
    # Given two queued runs and the SQS event that carries them
    event = load_event("sqs-submit.json")
    run_ids = message_run_ids(event)
    for run_id in run_ids:
        record_run(resources, run_id, RunStatus.QUEUED)

    # When the submitter runs
    result = call_submitter(event)

    # Then no record failed
    assert result == {"batchItemFailures": []}

    # and AWS Batch has one job per run, named after it
    jobs = {job["jobName"]: job for job in list_jobs(resources)}
    assert sorted(jobs) == sorted(f"bitbatch-{run_id}" for run_id in run_ids)

    # and each run is submitted with its job's id and the run id as a job parameter
    batch = boto3.client("batch")
    for run_id in run_ids:
        run = run_store(resources).get(run_id)
        assert run.status == RunStatus.SUBMITTED
        assert run.job_id == jobs[f"bitbatch-{run_id}"]["jobId"]
        assert run.job_name == f"bitbatch-{run_id}"
        job = batch.describe_jobs(jobs=[run.job_id])["jobs"][0]
        assert job["parameters"] == {"run_id": run_id}


def test_submitter_passes_prefixes_to_container(resources):
    # Given one queued run
    event = load_event("sqs-submit.json")
    run_id = message_run_ids(event)[0]
    run = record_run(resources, run_id, RunStatus.QUEUED)
    event["Records"] = event["Records"][:1]

    # When the submitter runs
    call_submitter(event)

    # Then the job's container gets the run id, bucket and prefixes
    job_id = run_store(resources).get(run_id).job_id
    job = boto3.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]
    environment = {variable["name"]: variable["value"] for variable in job["container"]["environment"]}
    assert environment["RUN_ID"] == run_id
    assert environment["ARTIFACTS_BUCKET"] == resources.bucket
    assert environment["INPUT_PREFIX"] == run.input_prefix
    assert environment["OUTPUT_PREFIX"] == run.output_prefix


@pytest.mark.parametrize(
    "bad_body",
    ["not json", '{"input_prefix": "runs/x/input/"}', '["20240305T144112Z-3f9a1c0e2b7d"]', '{"run_id": ""}'],
    ids=["not-json", "no-run-id", "json-list", "empty-run-id"],
)
def test_submitter_reports_bad_records(resources, bad_body):
    # Given a batch of a good message, one for an unknown run and one unreadable message
    event = load_event("sqs-submit.json")
    good_record, unknown_record = event["Records"]
    good_run_id = json.loads(good_record["body"])["run_id"]
    record_run(resources, good_run_id, RunStatus.QUEUED)
    bad_record = {**good_record, "messageId": "0b6e2f18-93a4-4c7d-8e51-f2a09d3c6b74", "body": bad_body}
    event["Records"] = [good_record, unknown_record, bad_record]

    # When the submitter runs
    result = call_submitter(event)

    # Then exactly the unknown and the unreadable records are reported failed
    failed = sorted(item["itemIdentifier"] for item in result["batchItemFailures"])
    assert failed == sorted([unknown_record["messageId"], bad_record["messageId"]])

    # and the good one was submitted
    assert run_store(resources).get(good_run_id).status == RunStatus.SUBMITTED
    assert [job["jobName"] for job in list_jobs(resources)] == [f"bitbatch-{good_run_id}"]


def test_submitter_repeated_message_submits_once(resources):
    # Given two queued runs whose messages were already processed once
    event = load_event("sqs-submit.json")
    run_ids = message_run_ids(event)
    for run_id in run_ids:
        record_run(resources, run_id, RunStatus.QUEUED)
    call_submitter(event)
    job_ids = {run_id: run_store(resources).get(run_id).job_id for run_id in run_ids}

    # When SQS delivers the same messages again
    result = call_submitter(event)

    # Then they succeed without a second job, and each run keeps its first job
    assert result == {"batchItemFailures": []}
    assert len(list_jobs(resources)) == len(run_ids)
    for run_id in run_ids:
        assert run_store(resources).get(run_id).job_id == job_ids[run_id]


def test_submitter_claimed_run_retried_later(resources):
    # Given two queued runs, the first just claimed by another delivery of its message
    event = load_event("sqs-submit.json")
    claimed_run_id, free_run_id = message_run_ids(event)
    record_run(resources, claimed_run_id, RunStatus.QUEUED)
    record_run(resources, free_run_id, RunStatus.QUEUED)
    assert run_store(resources).claim_submission(claimed_run_id)

    # When the submitter receives both messages
    result = call_submitter(event)

    # Then the claimed run's record is reported failed for a later retry, with no job for it
    assert [item["itemIdentifier"] for item in result["batchItemFailures"]] == [event["Records"][0]["messageId"]]
    assert run_store(resources).get(claimed_run_id).status == RunStatus.QUEUED
    # and the other run is submitted as usual
    assert [job["jobName"] for job in list_jobs(resources)] == [f"bitbatch-{free_run_id}"]


def test_submitter_finds_interrupted_job(resources):
    # Given a run whose earlier delivery claimed it and submitted its job, then stopped before recording it
    event = load_event("sqs-submit.json")
    run_id = message_run_ids(event)[0]
    record_run(resources, run_id, RunStatus.QUEUED)
    assert run_store(resources).claim_submission(run_id)
    job_id = boto3.client("batch").submit_job(
        jobName=f"bitbatch-{run_id}",
        jobQueue=resources.job_queue_arn,
        jobDefinition=resources.job_definition_arn,
        parameters={"run_id": run_id},
    )["jobId"]
    event["Records"] = event["Records"][:1]

    # When the message is delivered again
    result = call_submitter(event)

    # Then the run records the existing job and no second job is submitted
    assert result == {"batchItemFailures": []}
    run = run_store(resources).get(run_id)
    assert run.status == RunStatus.SUBMITTED
    assert run.job_id == job_id
    assert len(list_jobs(resources)) == 1


# Notifier


def batch_run_id(event: dict) -> str:
    return event["detail"]["parameters"]["run_id"]


def test_notifier_success_emails_pusher(resources):
    # Given a submitted run and the event of its job's success
    event = load_event("batch-succeeded.json")
    run_id = batch_run_id(event)
    record_run(resources, run_id, RunStatus.SUBMITTED)

    # When the notifier runs
    result = call_notifier(event)

    # Then the run succeeded
    assert result == {"run_id": run_id, "status": "SUCCEEDED", "emailed": True}
    assert run_store(resources).get(run_id).status == RunStatus.SUCCEEDED

    # and exactly one email went to the pusher, with a link to the run's report
    messages = sent_messages()
    assert len(messages) == 1
    message = messages[0]
    assert message["To"] == PUSHER_EMAIL
    assert message["From"] == resources.sender_address
    assert message["Subject"].endswith(": succeeded")
    assert f"runs/{run_id}/output/report.html" in body_text(message)
    assert message.get_body(("html",)) is not None


def test_notifier_repeated_event_emails_once(resources):
    # Given a submitted run whose success event was already handled
    event = load_event("batch-succeeded.json")
    record_run(resources, batch_run_id(event), RunStatus.SUBMITTED)
    call_notifier(event)

    # When EventBridge delivers the same event again
    result = call_notifier(event)

    # Then no second email is sent
    assert result["emailed"] is False
    assert len(sent_messages()) == 1
    assert run_store(resources).get(batch_run_id(event)).status == RunStatus.SUCCEEDED


def test_notifier_failed_job_fails_run(resources):
    # Given a submitted run and the event of its job exiting with code 1
    event = load_event("batch-failed.json")
    run_id = batch_run_id(event)
    record_run(resources, run_id, RunStatus.SUBMITTED)

    # When the notifier runs
    result = call_notifier(event)

    # Then the run failed with a reason that gives the exit code and Batch's reason
    assert result["status"] == "FAILED"
    run = run_store(resources).get(run_id)
    assert run.status == RunStatus.FAILED
    assert "exited with code 1" in run.failure_reason
    assert event["detail"]["statusReason"] in run.failure_reason

    # and the pusher gets an email with the reason and no result link
    messages = sent_messages()
    assert len(messages) == 1
    assert messages[0]["Subject"].endswith(": failed")
    assert "exited with code 1" in body_text(messages[0])
    assert "report.html" not in body_text(messages[0])


def test_notifier_transform_failure_fails_run(resources):
    # Given a received run whose transform gave up, and Lambda's on-failure record for it
    record = load_event("transform-on-failure.json")
    run_id = record["requestPayload"]["run_id"]
    record_run(resources, run_id, RunStatus.RECEIVED)

    # When the notifier runs
    result = call_notifier(record)

    # Then the run failed with the transform's error message as the reason
    assert result["status"] == "FAILED"
    run = run_store(resources).get(run_id)
    assert run.status == RunStatus.FAILED
    assert record["responsePayload"]["errorMessage"] in run.failure_reason

    # and one email goes to the pusher
    messages = sent_messages()
    assert len(messages) == 1
    assert messages[0]["To"] == PUSHER_EMAIL


def test_notifier_unknown_run_ignored(resources):
    # Given a success event for a run that is not in the runs table
    event = load_event("batch-succeeded.json")

    # When the notifier runs
    result = call_notifier(event)

    # Then it ignores the event without raising and sends nothing
    assert result["status"] == "ignored"
    assert batch_run_id(event) in result["reason"]
    assert sent_messages() == []


def test_notifier_running_job_moves_run(resources):
    # Given an event for a job that started running
    event = load_event("batch-succeeded.json")
    event["detail"]["status"] = "RUNNING"
    record_run(resources, batch_run_id(event), RunStatus.SUBMITTED)

    # When the notifier runs
    result = call_notifier(event)

    # Then the run is RUNNING, with the time of that stage, and no email is sent
    run = run_store(resources).get(batch_run_id(event))
    assert result["emailed"] is False
    assert run.status == RunStatus.RUNNING
    assert RunStatus.RUNNING in run.stages
    assert sent_messages() == []


def test_notifier_late_running_event_ignored(resources):
    event = load_event("batch-succeeded.json")
    record_run(resources, batch_run_id(event), RunStatus.SUBMITTED)
    call_notifier(event)
    event["detail"]["status"] = "RUNNING"

    call_notifier(event)

    assert run_store(resources).get(batch_run_id(event)).status == RunStatus.SUCCEEDED
    assert len(sent_messages()) == 1


def test_notifier_out_of_memory_named(resources):
    # Given a job killed for using too much memory
    event = load_event("batch-failed.json")
    container = event["detail"]["attempts"][-1]["container"]
    container.update({"exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"})
    record_run(resources, batch_run_id(event), RunStatus.RUNNING)

    # When the notifier runs
    call_notifier(event)

    # Then the reason names the cause and the fix
    run = run_store(resources).get(batch_run_id(event))
    assert run.status == RunStatus.FAILED
    assert "ran out of memory (exit code 137)" in run.failure_reason
    assert "job.memory" in run.failure_reason
    assert "ran out of memory" in body_text(sent_messages()[0])


def test_notifier_job_that_never_started(resources):
    # Given a job the job queue cancelled after it waited in RUNNABLE
    event = load_event("batch-failed.json")
    event["detail"]["attempts"] = []
    event["detail"].pop("container", None)
    event["detail"]["statusReason"] = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested"
    record_run(resources, batch_run_id(event), RunStatus.SUBMITTED)

    # When the notifier runs
    call_notifier(event)

    # Then the email states the job could not start, with Batch's reason
    run = run_store(resources).get(batch_run_id(event))
    assert run.failure_reason.startswith("the job could not start: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY")
    assert len(sent_messages()) == 1


def test_notifier_dead_letter_message_fails_run(resources):
    # Given a submit message that failed on every delivery and reached the dead-letter queue
    run_id = "20261204T194832Z-0a1b2c3d4e5f"
    record_run(resources, run_id, RunStatus.QUEUED)
    event = load_event("sqs-submit.json")
    event["Records"] = event["Records"][:1]
    event["Records"][0]["body"] = json.dumps({"run_id": run_id})

    # When the notifier receives it
    result = call_notifier(event)

    # Then the run failed with the reason and one email went out
    assert result == {"batchItemFailures": []}
    run = run_store(resources).get(run_id)
    assert run.status == RunStatus.FAILED
    assert "could not be submitted to AWS Batch" in run.failure_reason
    assert len(sent_messages()) == 1


def test_notifier_ses_rejection_recorded_not_retried(resources):
    # Given a sender that SES does not know (as in the sandbox, for an unverified identity)
    event = load_event("batch-succeeded.json")
    record_run(resources, batch_run_id(event), RunStatus.RUNNING)
    boto3.client("sesv2").delete_email_identity(EmailIdentity=resources.sender_address)

    # When the notifier runs
    result = call_notifier(event)

    # Then it returns normally (no retry), and the run records why the email failed
    run = run_store(resources).get(batch_run_id(event))
    assert result["emailed"] is False
    assert run.status == RunStatus.SUCCEEDED
    assert "MessageRejected" in run.notification_error
    assert sent_messages() == []


def test_notifier_late_success_ignored(resources):
    # Given a run that already failed and was reported
    failed_event = load_event("batch-failed.json")
    run_id = batch_run_id(failed_event)
    record_run(resources, run_id, RunStatus.SUBMITTED)
    call_notifier(failed_event)

    # When a success event for the same run arrives late
    late_event = load_event("batch-succeeded.json")
    late_event["detail"]["parameters"]["run_id"] = run_id
    late_event["detail"]["jobName"] = f"bitbatch-{run_id}"
    result = call_notifier(late_event)

    # Then the run stays failed and no second email is sent
    assert result["emailed"] is False
    assert run_store(resources).get(run_id).status == RunStatus.FAILED
    assert len(sent_messages()) == 1


def test_notifier_fallback_recipient(resources):
    # Given a submitted run whose commit author had no usable address
    event = load_event("batch-succeeded.json")
    record_run(resources, batch_run_id(event), RunStatus.SUBMITTED, pusher_email=None)

    # When the notifier runs
    call_notifier(event)

    # Then the email goes to the fallback recipient
    messages = sent_messages()
    assert len(messages) == 1
    assert messages[0]["To"] == FALLBACK_RECIPIENT


def test_stored_secret_is_sample_secret(resources):
    # Given the resources the handler tests create
    # When the webhook secret is read back
    stored = boto3.client("secretsmanager").get_secret_value(SecretId=resources.webhook_secret_arn)["SecretString"]

    # Then it is the secret that signs the sample events
    assert stored == SAMPLE_SECRET
