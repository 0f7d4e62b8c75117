"""The webhook's answer contract and its duplicate, signature and repository policies,
checked over HTTP against the local stack."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import boto3
import pytest

from bitbatch import webhook_secrets
from bitbatch.signature import sign
from bitbatch_local.payloads import (
    cloud_push_payload,
    data_center_push_payload,
    signed_data_center_delivery,
    signed_delivery,
)
from bitbatch_local.samplerepo import add_commit, build_sample_repository
from bitbatch_local.stack import LocalStack

pytestmark = pytest.mark.e2e

CLOUD_REPOSITORY = "weather/stations"
DATA_CENTER_PROJECT = "DATA"


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    sample = build_sample_repository(root / CLOUD_REPOSITORY)
    # The same repository, served as Data Center project DATA, slug stations.
    (root / DATA_CENTER_PROJECT).mkdir()
    (root / DATA_CENTER_PROJECT / "stations").symlink_to(sample.path, target_is_directory=True)
    return root, sample


@pytest.fixture(scope="module")
def stack(repos, tmp_path_factory):
    root, _ = repos
    work = tmp_path_factory.mktemp("work")
    with LocalStack(
        root, work, allowed_repositories="weather/*,DATA/*", function_log_path=work / "functions.log"
    ) as running:
        yield running


@pytest.fixture
def sample(repos):
    return repos[1]


def request(url: str, body: bytes | None, headers: dict[str, str], method: str = "POST") -> tuple[int, dict, dict]:
    prepared = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(prepared, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def cloud_delivery(stack, sample, commit, previous, full_name=CLOUD_REPOSITORY, ref_type="branch", ref_name="main"):
    payload = cloud_push_payload(sample.path, full_name, ref_name, commit, previous, stack.git.base_url, ref_type=ref_type)
    return signed_delivery(payload, stack.webhook_secret)


def jobs_for(stack, run_id: str) -> list[dict]:
    batch = boto3.client("batch")
    summaries = batch.list_jobs(
        jobQueue=stack.resources.job_queue_arn, filters=[{"name": "JOB_NAME", "values": [f"bitbatch-{run_id}"]}]
    )["jobSummaryList"]
    return summaries


def emails_about(stack, run_id: str):
    return [sent for sent in stack.sent_emails() if run_id in sent.text]


def test_data_center_push_runs_to_success(stack, sample):
    # Given a Data Center repo:refs_changed push of the sample's head, signed with the secret
    payload = data_center_push_payload(DATA_CENTER_PROJECT, "stations", "main", sample.head_commit, sample.previous_commit)
    body, headers = signed_data_center_delivery(payload, stack.webhook_secret)

    # When it is delivered
    status, answer, _ = request(stack.webhook_url, body, headers)

    # Then a run starts for DATA/stations and succeeds, and the pusher's address gets the email
    assert status == 202
    assert answer["runs"][0]["repository"] == "DATA/stations"
    run = stack.wait_for_run(answer["runs"][0]["run_id"])
    assert run.status == "SUCCEEDED"
    assert run.product == "data-center"
    assert run.commit_url == f"{stack.git.base_url}/projects/DATA/repos/stations/commits/{sample.head_commit}"
    emails = emails_about(stack, run.run_id)
    assert [email.recipients for email in emails] == [["grace@example.com"]]


def test_data_center_ping_answered_without_signature(stack):
    payload = {"test": True}
    body, headers = signed_data_center_delivery(payload, None, event_key="diagnostics:ping")

    status, answer, _ = request(stack.webhook_url, json.dumps(payload).encode(), headers)

    assert status == 200
    assert answer["runs"] == []
    assert "diagnostics:ping" in answer["ignored"]


def test_repeated_delivery_returns_first_run(stack, sample):
    # Given a push of a new commit
    commit = add_commit(sample.path, {"notes/repeat.md": "first\n"}, "Add repeat notes")
    body, headers = cloud_delivery(stack, sample, commit, sample.head_commit)
    status, first, _ = request(stack.webhook_url, body, headers)
    assert status == 202
    run_id = first["runs"][0]["run_id"]
    stack.wait_for_run(run_id)

    # When Bitbucket delivers the same push again
    status, second, _ = request(stack.webhook_url, body, headers)

    # Then the response names the first run, and only one job and one email exist
    assert status == 200
    assert second["duplicate"] is True
    assert second["runs"] == first["runs"]
    assert len(jobs_for(stack, run_id)) == 1
    assert len(emails_about(stack, run_id)) == 1


def test_concurrent_duplicates_start_one_run(stack, sample):
    # Given one push delivered by six clients at the same moment
    commit = add_commit(sample.path, {"notes/concurrent.md": "together\n"}, "Add concurrent notes")
    body, headers = cloud_delivery(stack, sample, commit, sample.head_commit)
    answers = []

    def deliver():
        answers.append(request(stack.webhook_url, body, headers)[:2])

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly one delivery started a run, and the others got a duplicate answer or a request to retry
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(202) == 1
    assert set(statuses) <= {200, 202, 503}
    run_ids = {answer["runs"][0]["run_id"] for status, answer in answers if status in (200, 202)}
    assert len(run_ids) == 1
    stack.wait_for_run(run_ids.pop())


def test_push_with_several_refs_starts_run_per_ref(stack, sample):
    # Given one push that moves main and creates a release branch
    payload = cloud_push_payload(sample.path, CLOUD_REPOSITORY, "release", sample.previous_commit, None, stack.git.base_url)
    other = cloud_push_payload(
        sample.path, CLOUD_REPOSITORY, "hotfix", sample.head_commit, sample.previous_commit, stack.git.base_url
    )
    payload["push"]["changes"] += other["push"]["changes"]
    body, headers = signed_delivery(payload, stack.webhook_secret)

    # When it is delivered
    status, answer, _ = request(stack.webhook_url, body, headers)

    # Then each ref gets its own run at its own commit
    assert status == 202
    assert [(run["ref"], run["commit"]) for run in answer["runs"]] == [
        ("refs/heads/release", sample.previous_commit),
        ("refs/heads/hotfix", sample.head_commit),
    ]
    for run in answer["runs"]:
        assert stack.wait_for_run(run["run_id"]).status == "SUCCEEDED"


def test_deletion_and_empty_pushes_are_ignored(stack, sample):
    deletion = cloud_push_payload(sample.path, CLOUD_REPOSITORY, "old", sample.head_commit, None, stack.git.base_url)
    change = deletion["push"]["changes"][0]
    change["old"], change["new"], change["closed"] = change["new"], None, True
    empty = {**deletion, "push": {"changes": []}}

    for payload, reason in ((deletion, "ref old was deleted"), (empty, "no ref changes")):
        body, headers = signed_delivery(payload, stack.webhook_secret)
        status, answer, _ = request(stack.webhook_url, body, headers)
        assert status == 200
        assert answer["runs"] == []
        assert reason in answer["ignored"]


def test_tag_push_ignored_by_default_policy(stack, sample):
    body, headers = cloud_delivery(stack, sample, sample.head_commit, None, ref_type="tag", ref_name="v1.0")

    status, answer, _ = request(stack.webhook_url, body, headers)

    assert status == 200
    assert "tag v1.0 ignored" in answer["ignored"]


def test_repository_outside_allowlist_gets_403(stack, sample):
    body, headers = cloud_delivery(stack, sample, sample.head_commit, None, full_name="other/stations")

    status, answer, _ = request(stack.webhook_url, body, headers)

    assert status == 403
    assert "other/stations" in answer["error"]


def test_forced_truncated_push_runs_at_pushed_commit(stack, sample):
    # Given a forced push whose commit list Bitbucket truncated, moving main back to the first commit
    payload = cloud_push_payload(
        sample.path, CLOUD_REPOSITORY, "rewritten", sample.previous_commit, sample.head_commit, stack.git.base_url
    )
    payload["push"]["changes"][0].update({"forced": True, "truncated": True, "commits": []})
    body, headers = signed_delivery(payload, stack.webhook_secret)

    # When it is delivered
    status, answer, _ = request(stack.webhook_url, body, headers)

    # Then the run builds exactly the pushed commit
    assert status == 202
    run = stack.wait_for_run(answer["runs"][0]["run_id"])
    assert run.status == "SUCCEEDED"
    manifest = json.loads(
        boto3.client("s3").get_object(Bucket=stack.resources.bucket, Key=run.input_prefix + "manifest.json")["Body"].read()
    )
    assert manifest["commit"] == sample.previous_commit
    assert "data/readings.tsv" not in {entry["path"] for entry in manifest["files"]}


@pytest.mark.parametrize(
    ("content_type", "expected_status"),
    [("application/json; charset=utf-8", 202), ("text/plain", 415), ("application/x-www-form-urlencoded", 415)],
)
def test_media_types(stack, sample, content_type, expected_status):
    commit = add_commit(sample.path, {f"notes/{expected_status}-{len(content_type)}.md": "media\n"}, "Add media notes")
    body, headers = cloud_delivery(stack, sample, commit, sample.head_commit)
    headers["Content-Type"] = content_type

    status, _, _ = request(stack.webhook_url, body, headers)

    assert status == expected_status


def test_invalid_requests_answered_with_reason(stack, sample):
    # A body that is not JSON, correctly signed
    body = b"{not json"
    status, answer, _ = request(
        stack.webhook_url, body, {"Content-Type": "application/json", "X-Event-Key": "repo:push", "X-Hub-Signature": sign(stack.webhook_secret, body)}
    )
    assert status == 400
    assert "not valid JSON" in answer["error"]

    # A push without its repository, correctly signed
    body = json.dumps({"push": {"changes": []}}).encode()
    status, answer, _ = request(
        stack.webhook_url, body, {"Content-Type": "application/json", "X-Event-Key": "repo:push", "X-Hub-Signature": sign(stack.webhook_secret, body)}
    )
    assert status == 400
    assert "repository" in answer["error"]

    # A body above the size limit
    body = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    status, answer, _ = request(stack.webhook_url, body, {"Content-Type": "application/json", "X-Event-Key": "repo:push"})
    assert status == 413

    # The wrong method and the wrong path
    status, _, headers = request(stack.webhook_url, None, {}, method="GET")
    assert status == 405
    assert headers.get("allow") == "POST" or headers.get("Allow") == "POST"
    status, _, _ = request(stack.api_url + "/hooks", b"{}", {"Content-Type": "application/json"})
    assert status == 404


def test_unknown_event_key_ignored(stack, sample):
    body, headers = cloud_delivery(stack, sample, sample.head_commit, None)
    headers["X-Event-Key"] = "pullrequest:created"
    headers["X-Hub-Signature"] = sign(stack.webhook_secret, body)

    status, answer, _ = request(stack.webhook_url, body, headers)

    assert status == 200
    assert "pullrequest:created" in answer["ignored"]


def test_rotated_secret_accepts_old_and_new(stack, sample):
    # Given the webhook secret was rotated in Secrets Manager
    old_secret = stack.webhook_secret
    new_secret = "rotated-" + old_secret[:20]
    boto3.client("secretsmanager").put_secret_value(SecretId=stack.resources.webhook_secret_arn, SecretString=new_secret)
    # The webhook re-reads the secret on a mismatch, at most once per refresh interval.
    time.sleep(webhook_secrets.REFRESH_INTERVAL_SECONDS)

    # When pushes arrive signed with the old and with the new secret
    statuses = []
    for secret in (old_secret, new_secret):
        commit = add_commit(sample.path, {f"notes/rotation-{secret[:8]}.md": secret[:4] + "\n"}, "Add rotation notes")
        payload = cloud_push_payload(sample.path, CLOUD_REPOSITORY, "main", commit, sample.head_commit, stack.git.base_url)
        body, headers = signed_delivery(payload, secret)
        statuses.append(request(stack.webhook_url, body, headers)[0])

    # Then both are accepted, and a third secret is not
    body, headers = signed_delivery(payload, "neither-" + new_secret)
    assert statuses == [202, 202]
    assert request(stack.webhook_url, body, headers)[0] == 401


def test_redelivered_messages_and_events_change_nothing(stack, sample):
    # Given a finished run
    commit = add_commit(sample.path, {"notes/redelivery.md": "again\n"}, "Add redelivery notes")
    body, headers = cloud_delivery(stack, sample, commit, sample.head_commit)
    run_id = request(stack.webhook_url, body, headers)[1]["runs"][0]["run_id"]
    run = stack.wait_for_run(run_id)
    assert run.status == "SUCCEEDED"

    # When the transform event, the submit message and the job's state change arrive again
    stack.lambdas.invoke("bitbatch-transform", {"run_id": run_id})
    boto3.client("sqs").send_message(
        QueueUrl=stack.resources.submit_queue_url,
        MessageBody=json.dumps({"run_id": run_id, "input_prefix": run.input_prefix, "output_prefix": run.output_prefix}),
    )
    stack.poller.poll_once()
    event = {
        "version": "0",
        "id": "repeat",
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "detail": {"jobName": f"bitbatch-{run_id}", "jobId": run.job_id, "status": "SUCCEEDED", "parameters": {"run_id": run_id}},
    }
    stack.lambdas.invoke("bitbatch-notifier", event)

    # Then there is still one job and one email, and the run is unchanged
    assert len(jobs_for(stack, run_id)) == 1
    assert len(emails_about(stack, run_id)) == 1
    assert stack.get_run(run_id).status == "SUCCEEDED"


def test_concurrent_pushes_all_accepted(stack, sample):
    # Given eight different pushes sent at once
    deliveries = []
    for index in range(8):
        commit = add_commit(sample.path, {f"notes/parallel-{index}.md": f"{index}\n"}, f"Add parallel note {index}")
        deliveries.append(cloud_delivery(stack, sample, commit, sample.head_commit, ref_name=f"parallel-{index}"))
    statuses = []

    run_ids = []

    def deliver(body, headers):
        status, answer, _ = request(stack.webhook_url, body, headers)
        statuses.append(status)
        run_ids.extend(run["run_id"] for run in answer.get("runs", []))

    threads = [threading.Thread(target=deliver, args=delivery) for delivery in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the local API served every one of them, and every run finishes
    assert statuses == [202] * 8
    for run_id in run_ids:
        assert stack.wait_for_run(run_id).status == "SUCCEEDED"
