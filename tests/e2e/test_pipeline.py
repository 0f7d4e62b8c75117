"""A push carried through the whole local stack: webhook, transform, submitter,
the local Batch executor running the real container code, and the notifier."""

from __future__ import annotations

import hashlib
import tempfile
import json
import urllib.error
import urllib.request

import boto3
import pytest

from bitbatch_local.payloads import cloud_push_payload, signed_delivery
from bitbatch_local.samplerepo import add_commit, build_sample_repository
from bitbatch_local.stack import LocalStack

pytestmark = pytest.mark.e2e

REPOSITORY = "weather/stations"


@pytest.fixture
def sample(tmp_path):
    return build_sample_repository(tmp_path / "repos" / REPOSITORY)


@pytest.fixture
def stack(tmp_path, sample):
    with LocalStack(tmp_path / "repos", tmp_path / "work", function_log_path=tmp_path / "functions.log") as running:
        yield running


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def push(stack: LocalStack, repository_path, commit: str, previous: str | None) -> tuple[int, dict]:
    payload = cloud_push_payload(repository_path, REPOSITORY, "main", commit, previous, stack.git.base_url)
    body, headers = signed_delivery(payload, stack.webhook_secret)
    return post(stack.webhook_url, body, headers)


def read_object(bucket: str, key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_push_ends_in_success_email(stack, sample):
    # Given a repository with CSV, TSV, YAML, JSON and Markdown files
    # When its head commit is pushed
    status, answer = push(stack, sample.path, sample.head_commit, sample.previous_commit)
    assert status == 202
    run_id = answer["runs"][0]["run_id"]
    run = stack.wait_for_run(run_id)

    # Then the run succeeded through every stage
    assert run.status == "SUCCEEDED"
    assert {"RECEIVED", "CHECKED_OUT", "QUEUED", "SUBMITTED", "SUCCEEDED"} <= set(run.stages)
    assert run.job_id

    # and the manifest lists each transformed file with the hash of what was stored
    bucket = stack.resources.bucket
    manifest = json.loads(read_object(bucket, run.input_prefix + "manifest.json"))
    assert manifest["commit"] == sample.head_commit
    artifacts = {entry["path"]: entry for entry in manifest["files"]}
    assert artifacts["data/stations.csv"]["artifact"] == "files/data/stations.csv.jsonl"
    assert artifacts["config/pipeline.yaml"]["format"] == "json"
    for entry in manifest["files"]:
        stored = read_object(bucket, run.input_prefix + entry["artifact"])
        assert hashlib.sha256(stored).hexdigest() == entry["sha256"], entry["path"]

    # and the container's report counts the records of the CSV file
    result = json.loads(read_object(bucket, run.output_prefix + "result.json"))
    reported = {entry["path"]: entry for entry in result["files"]}
    stations = [line for line in (sample.path / "data/stations.csv").read_text().splitlines()[1:] if line]
    assert reported["data/stations.csv"]["records"] == len(stations)

    # and exactly one email went to the commit author, linking to the run page, whose report link opens the report
    emails = stack.sent_emails()
    assert len(emails) == 1
    assert emails[0].recipients == [sample.author_email]
    assert "succeeded" in emails[0].subject
    link = next(line for line in emails[0].text.splitlines() if line.startswith(f"{stack.api_url}/runs/"))
    request = urllib.request.Request(link, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        output_links = {item["name"]: item["url"] for item in json.loads(response.read())["output_files"]}
    with urllib.request.urlopen(output_links["report.html"], timeout=30) as response:
        page = response.read().decode()
    assert "data/stations.csv" in page


def test_failing_job_ends_in_failure_email(stack, sample):
    # Given a commit whose JSON file is invalid, which the job's report rejects
    commit = add_commit(sample.path, {"data/broken.json": '{"station": "ST01",\n  "limit": }\n'}, "Add broken limits")

    # When it is pushed
    status, answer = push(stack, sample.path, commit, sample.head_commit)
    assert status == 202
    run = stack.wait_for_run(answer["runs"][0]["run_id"])

    # Then the run failed with the job's reason and the author got one failure email
    assert run.status == "FAILED"
    assert "exited with code 1" in run.failure_reason
    assert "data/broken.json" in run.failure_reason
    emails = stack.sent_emails()
    assert len(emails) == 1
    assert "failed" in emails[0].subject
    assert "data/broken.json" in emails[0].text


def test_transform_error_fails_run_after_retries(stack, sample):
    # Given a commit with a CSV row that has too many values
    commit = add_commit(sample.path, {"data/ragged.csv": "id,name\n1,first\n2,second,extra\n"}, "Add ragged CSV")

    # When it is pushed
    status, answer = push(stack, sample.path, commit, sample.head_commit)
    assert status == 202
    run = stack.wait_for_run(answer["runs"][0]["run_id"])

    # Then the on-failure destination failed the run, naming the file and line, and no job ran
    assert run.status == "FAILED"
    assert "data/ragged.csv, line 3" in run.failure_reason
    assert run.job_id is None
    emails = stack.sent_emails()
    assert len(emails) == 1
    assert "data/ragged.csv, line 3" in emails[0].text


def test_unsigned_push_is_rejected(stack, sample):
    # Given a delivery signed with the wrong secret
    payload = cloud_push_payload(sample.path, REPOSITORY, "main", sample.head_commit, None, stack.git.base_url)
    body, headers = signed_delivery(payload, "not-the-secret")

    # When it reaches the webhook
    status, answer = post(stack.webhook_url, body, headers)

    # Then it is rejected and no run exists
    assert status == 401
    assert "X-Hub-Signature" in answer["error"]
    table = boto3.resource("dynamodb").Table(stack.resources.runs_table)
    assert table.scan()["Items"] == []


def test_secret_and_token_stored_nowhere(stack, sample, tmp_path):
    # Given a successful run and a failed one
    for commit, previous in ((sample.head_commit, sample.previous_commit), (sample.previous_commit, None)):
        status, answer = push(stack, sample.path, commit, previous)
        assert status == 202
        stack.wait_for_run(answer["runs"][0]["run_id"])
    broken = add_commit(sample.path, {"data/bad.csv": "a,b\n1\n"}, "Add short row")
    status, answer = push(stack, sample.path, broken, sample.head_commit)
    assert stack.wait_for_run(answer["runs"][0]["run_id"]).status == "FAILED"

    # When every log, stored object, table item and email is read
    texts = [(tmp_path / "functions.log").read_text()]
    texts += [path.read_text() for path in (tmp_path / "work" / "jobs").glob("*.log")]
    s3 = boto3.client("s3")
    for item in s3.list_objects_v2(Bucket=stack.resources.bucket)["Contents"]:
        texts.append(read_object(stack.resources.bucket, item["Key"]).decode("utf-8", errors="replace"))
    for table in (stack.resources.runs_table, stack.resources.idempotency_table):
        texts.append(json.dumps(boto3.resource("dynamodb").Table(table).scan()["Items"], default=str))
    texts += [sent.text + sent.html for sent in stack.sent_emails()]
    everything = "\n".join(texts)

    # Then neither the webhook secret nor the access token appears anywhere
    assert "run received" in everything
    assert "data/bad.csv" in everything
    assert stack.webhook_secret not in everything
    assert stack.bitbucket_token not in everything


def test_push_creating_branch_succeeds(stack, sample, tmp_path, monkeypatch):
    # Given a push that creates the branch, so Bitbucket sends no previous commit,
    # and temporary folders in a folder of this test's own
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    # When it is delivered
    status, answer = push(stack, sample.path, sample.previous_commit, None)
    assert status == 202
    run = stack.wait_for_run(answer["runs"][0]["run_id"])

    # Then the run succeeds and the transform left no checkout behind
    assert run.status == "SUCCEEDED"
    assert run.previous_commit is None
    assert list(scratch.glob("bitbatch-checkout-*")) == []
