"""The `bitbatch` command against the local stack: list, show, retry and dead-letter re-drive.

Most tests call main(argv) in this process, against a LocalStack that this
process runs. The last one runs the installed `bitbatch` script against
`python -m bitbatch_local serve` in a separate process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from bitbatch.model import Run
from bitbatch.submission import parse_job_name
from bitbatch_cli import retry
from bitbatch_cli.main import main
from bitbatch_cli.runs import read_item
from bitbatch_cli.targets import local_target
from bitbatch_local.payloads import cloud_push_payload, signed_delivery
from bitbatch_local.samplerepo import add_commit, build_sample_repository
from bitbatch_local.stack import FUNCTION_NAMES, LocalStack

pytestmark = pytest.mark.e2e

REPOSITORY = "weather/stations"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sample(tmp_path):
    return build_sample_repository(tmp_path / "repos" / REPOSITORY)


@pytest.fixture
def stack(tmp_path, sample):
    with LocalStack(tmp_path / "repos", tmp_path / "work", function_log_path=tmp_path / "functions.log") as running:
        yield running


@pytest.fixture
def serve_file(tmp_path, stack):
    """The file `make serve` writes, here describing the stack this process runs."""
    path = tmp_path / "serve-current.json"
    path.write_text(json.dumps(stack.describe()))
    return path


def bitbatch(capsys, serve_file: Path, *argv: str) -> tuple[int, str, str]:
    """Run the command in this process against the local stack; return its exit code, stdout and stderr."""
    code = main([*argv, "--local", "--serve-file", str(serve_file)])
    out, err = capsys.readouterr()
    return code, out, err


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def push_payload(stack: LocalStack, sample, commit: str, previous: str | None) -> dict:
    return cloud_push_payload(sample.path, REPOSITORY, "main", commit, previous, stack.git.base_url)


def deliver(stack: LocalStack, payload: dict) -> str:
    """Send a signed push and return the id of the run it started."""
    body, headers = signed_delivery(payload, stack.webhook_secret)
    status, answer = post(stack.webhook_url, body, headers)
    assert status == 202, answer
    return answer["runs"][0]["run_id"]


def failed_fetch_run(stack: LocalStack, sample, tmp_path: Path) -> Run:
    """Push while the repository is missing from the git server, so every fetch fails, then bring it back."""
    payload = push_payload(stack, sample, sample.head_commit, sample.previous_commit)
    hidden = tmp_path / "repository-away"
    sample.path.rename(hidden)
    try:
        run = stack.wait_for_run(deliver(stack, payload))
    finally:
        hidden.rename(sample.path)
    return run


def job_names(stack: LocalStack, run_id: str) -> list[str]:
    """Names of every Batch job submitted for the run, whatever their status."""
    batch = boto3.client("batch")
    pages = batch.get_paginator("list_jobs").paginate(
        jobQueue=stack.resources.job_queue_arn, filters=[{"name": "JOB_NAME", "values": [f"bitbatch-{run_id}*"]}]
    )
    return sorted(summary["jobName"] for page in pages for summary in page["jobSummaryList"])


def queue_is_empty(queue_url: str) -> bool:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return (
        attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{condition.__name__} still false after {timeout:.0f} s")
        time.sleep(0.2)


def test_retry_after_fetch_failure_succeeds(stack, sample, serve_file, capsys, tmp_path):
    # Given a run whose transform failed because the git server did not have the repository
    first = failed_fetch_run(stack, sample, tmp_path)
    assert first.status == "FAILED"
    assert "preparing the input failed" in first.failure_reason
    assert job_names(stack, first.run_id) == []

    # When the repository is back and an operator retries the run
    code, out, err = bitbatch(capsys, serve_file, "runs", "retry", first.run_id)
    run = stack.wait_for_run(first.run_id)

    # Then the same commit ran again as attempt 2 and succeeded with one job
    assert code == 0, err
    assert f"run {first.run_id}: attempt 2 started (attempt 1 ended FAILED)" in out
    assert run.status == "SUCCEEDED"
    assert run.commit == sample.head_commit
    assert run.attempt == 2
    assert run.job_name == f"bitbatch-{first.run_id}-a2"
    assert job_names(stack, first.run_id) == [f"bitbatch-{first.run_id}-a2"]

    # and attempt 1 is recorded with its status and reason
    assert len(run.previous_attempts) == 1
    previous = run.previous_attempts[0]
    assert previous["attempt"] == 1
    assert previous["status"] == "FAILED"
    assert previous["failure_reason"] == first.failure_reason
    assert previous["finished_at"] == first.stages["FAILED"]
    assert "job_id" not in previous

    # and each attempt's end sent one email
    emails = stack.sent_emails()
    assert len(emails) == 2
    assert "failed" in emails[0].subject
    assert "succeeded" in emails[1].subject


def test_one_job_per_attempt(stack, sample, serve_file, capsys):
    # Given a run whose first job failed because its input manifest was gone when the job started
    def remove_manifest_of_first_attempt(stage, spec, result):
        run_id, attempt = parse_job_name(spec.job_name)
        if stage == "RUNNING" and attempt == 1:
            boto3.client("s3").delete_object(Bucket=stack.resources.bucket, Key=f"runs/{run_id}/input/manifest.json")

    stack.job_listeners.append(remove_manifest_of_first_attempt)
    run_id = deliver(stack, push_payload(stack, sample, sample.head_commit, sample.previous_commit))
    first = stack.wait_for_run(run_id)
    assert first.status == "FAILED"
    assert "exited with code" in first.failure_reason

    # When an operator retries it
    code, _, err = bitbatch(capsys, serve_file, "runs", "retry", run_id)
    run = stack.wait_for_run(run_id)

    # Then the transform wrote the input again, and the second job succeeded
    assert code == 0, err
    assert run.status == "SUCCEEDED"
    assert run.attempt == 2

    # and each attempt ran exactly one job, under its own name
    assert job_names(stack, run_id) == [f"bitbatch-{run_id}", f"bitbatch-{run_id}-a2"]
    assert run.previous_attempts[0]["job_id"] == first.job_id
    assert run.job_id != first.job_id

    # and attempt 2's stages start again at RECEIVED
    assert set(run.stages) == {"RECEIVED", "CHECKED_OUT", "QUEUED", "SUBMITTED", "RUNNING", "SUCCEEDED"}
    assert run.stages["RECEIVED"] > first.stages["FAILED"]

    # and one email went out per attempt
    subjects = [email.subject for email in stack.sent_emails()]
    assert len(subjects) == 2
    assert "failed" in subjects[0]
    assert "succeeded" in subjects[1]


def test_concurrent_retries_start_one_attempt(stack, sample, serve_file, capsys, tmp_path):
    # Given a failed run
    run_id = failed_fetch_run(stack, sample, tmp_path).run_id

    # When two operators retry it at the same moment
    arguments = ["runs", "retry", run_id, "--local", "--serve-file", str(serve_file)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = sorted(pool.map(lambda _: main(arguments), range(2)))
    run = stack.wait_for_run(run_id)
    _, err = capsys.readouterr()

    # Then one retry started attempt 2 and the other was rejected with a reason
    assert codes == [0, 1]
    assert err.count("bitbatch: error: ") == 1
    assert run.attempt == 2
    assert run.status == "SUCCEEDED"
    assert job_names(stack, run_id) == [f"bitbatch-{run_id}-a2"]
    assert len(run.previous_attempts) == 1


def test_retry_conflict_and_late_events(stack, sample, serve_file, tmp_path):
    # Given a failed run that two operators read while it was FAILED
    run_id = failed_fetch_run(stack, sample, tmp_path).run_id
    target = local_target(serve_file)
    table = target.runs_table()
    seen = Run.from_item(read_item(target, run_id))

    # When both write their retry
    started = retry.begin_attempt(table, seen)
    with pytest.raises(retry.RetryConflict) as conflict:
        retry.begin_attempt(table, seen)

    # Then only the first one moved the run
    assert started.attempt == 2
    assert "changed while it was being retried" in str(conflict.value)
    run = stack.get_run(run_id)
    assert run.status == "RECEIVED"
    assert run.attempt == 2
    assert len(run.previous_attempts) == 1

    # When late copies of attempt 1's failure reach the notifier
    late_job_event = {
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "detail": {
            "jobName": f"bitbatch-{run_id}",
            "jobId": "job-of-attempt-1",
            "status": "FAILED",
            "statusReason": "late copy",
            "parameters": {"run_id": run_id},
            "attempts": [],
        },
    }
    late_transform_record = {
        "requestContext": {"condition": "RetriesExhausted"},
        "requestPayload": {"run_id": run_id},
        "responsePayload": {"errorMessage": "late copy"},
    }
    emails_before = len(stack.sent_emails())
    for event in (late_job_event, late_transform_record):
        stack.lambdas.invoke(FUNCTION_NAMES["notifier"], event)

    # Then attempt 2 is still waiting to start, and no email went out
    run = stack.get_run(run_id)
    assert run.status == "RECEIVED"
    assert run.failure_reason is None
    assert len(stack.sent_emails()) == emails_before


def test_runs_list_and_show(stack, sample, serve_file, capsys):
    # Given a run that succeeded and, pushed later, one whose job failed
    succeeded_id = deliver(stack, push_payload(stack, sample, sample.head_commit, sample.previous_commit))
    succeeded = stack.wait_for_run(succeeded_id)
    broken = add_commit(sample.path, {"data/broken.json": '{"station": "ST01",\n  "limit": }\n'}, "Add broken limits")
    failed_id = deliver(stack, push_payload(stack, sample, broken, sample.head_commit))
    failed = stack.wait_for_run(failed_id)
    assert failed.status == "FAILED"

    # When an operator lists the runs
    code, out, _ = bitbatch(capsys, serve_file, "runs", "list")
    lines = out.splitlines()

    # Then a header and one line per run appear, newest first, with status, ref, commit and reason
    assert code == 0
    assert lines[0].split() == ["RUN", "ID", "STATUS", "REPOSITORY", "REF", "COMMIT", "DURATION", "FAILURE", "REASON"]
    assert len(lines) == 3
    assert lines[1].startswith(failed_id)
    assert lines[2].startswith(succeeded_id)
    assert "FAILED" in lines[1]
    assert REPOSITORY in lines[1]
    assert " main " in lines[1]
    assert broken[:12] in lines[1]
    assert "the job exited with code 1" in lines[1]
    assert re.search(r"  \d+\.\d+ s$", lines[2])

    # When the list is filtered and limited
    _, by_status, _ = bitbatch(capsys, serve_file, "runs", "list", "--status", "succeeded")
    _, limited, _ = bitbatch(capsys, serve_file, "runs", "list", "--limit", "1")
    _, other_repository, _ = bitbatch(capsys, serve_file, "runs", "list", "--repository", "acme/other")

    # Then only the matching runs appear
    assert succeeded_id in by_status
    assert failed_id not in by_status
    assert failed_id in limited
    assert succeeded_id not in limited
    assert other_repository.strip() == f"no runs in local stack at {stack.aws_endpoint} with repository acme/other"

    # When one run is shown
    code, shown, _ = bitbatch(capsys, serve_file, "runs", "show", succeeded_id)

    # Then its fields, its stages with the time since the stage before, and its files appear
    assert code == 0
    assert f"job_id:             {succeeded.job_id}" in shown
    assert f"commit:             {sample.head_commit}" in shown
    assert f"output files:       s3://{stack.resources.bucket}/runs/{succeeded_id}/output/" in shown
    for stage in ("RECEIVED", "CHECKED_OUT", "QUEUED", "SUBMITTED", "SUCCEEDED"):
        assert f"  {stage} " in shown
        assert succeeded.stages[stage] in shown
    assert "SINCE PREVIOUS" in shown
    assert "expires_at:" in shown

    # When it is shown as JSON
    code, as_json, _ = bitbatch(capsys, serve_file, "runs", "show", succeeded_id, "--json")
    item = json.loads(as_json)

    # Then every stored field is there
    assert item["status"] == "SUCCEEDED"
    assert item["attempt"] == 1
    assert item["stages"] == succeeded.stages
    assert item["job_id"] == succeeded.job_id


def test_errors_are_one_line(stack, sample, serve_file, capsys, tmp_path):
    # Given a run that succeeded
    run_id = deliver(stack, push_payload(stack, sample, sample.head_commit, sample.previous_commit))
    stack.wait_for_run(run_id)
    cases = [
        (["runs", "show", "20260101T000000Z-000000000000"], "run 20260101T000000Z-000000000000 not found"),
        (["runs", "retry", run_id], f"run {run_id} is SUCCEEDED on attempt 1; only a FAILED run can be retried"),
        (["dlq", "list", "--queue", "notifier"], "has no output NotifierDeadLetterQueueUrl"),
    ]

    for argv, expected in cases:
        # When the command fails
        code, out, err = bitbatch(capsys, serve_file, *argv)

        # Then it exits 1 with one line on stderr and no traceback
        assert code == 1, argv
        assert out == "", argv
        assert err.startswith("bitbatch: error: "), argv
        assert expected in err, argv
        assert err.count("\n") == 1, argv

    # When no local stack is running
    code = main(["runs", "list", "--local", "--serve-file", str(tmp_path / "missing.json")])
    _, err = capsys.readouterr()

    # Then the error explains how to start one
    assert code == 1
    assert "no running local stack" in err
    assert "make serve" in err


def test_stack_outputs_name_the_resources(stack, sample, capsys):
    # Given a CloudFormation stack whose Outputs name the local stack's runs table, and one run
    run_id = deliver(stack, push_payload(stack, sample, sample.head_commit, sample.previous_commit))
    stack.wait_for_run(run_id)
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "cli-placeholder"}}},
        "Outputs": {"RunsTableName": {"Value": stack.resources.runs_table}},
    }
    boto3.client("cloudformation").create_stack(StackName="bitbatch-test", TemplateBody=json.dumps(template))

    # When the runs are listed by stack name, and a missing stack or output is asked for
    listed = main(["runs", "list", "--stack", "bitbatch-test", "--region", stack.region])
    out, _ = capsys.readouterr()
    missing_stack = main(["runs", "list", "--stack", "bitbatch-nope", "--region", stack.region])
    _, missing_stack_err = capsys.readouterr()
    missing_output = main(["runs", "retry", run_id, "--stack", "bitbatch-test", "--region", stack.region])
    _, missing_output_err = capsys.readouterr()

    # Then the run is listed, and each error names what is missing
    assert listed == 0
    assert run_id in out
    assert missing_stack == 1
    assert f"stack bitbatch-nope in {stack.region} not found" in missing_stack_err
    assert missing_output == 1
    assert "has no output TransformFunctionName" in missing_output_err


def test_dlq_redrive_submit_message_adds_no_job(stack, sample, serve_file, capsys):
    # Given a run that succeeded, and a copy of its submit message left in the submit
    # dead-letter queue while the notifier does not read that queue
    run_id = deliver(stack, push_payload(stack, sample, sample.head_commit, sample.previous_commit))
    run = stack.wait_for_run(run_id)
    stack.dead_letter_poller.stop()
    dead_letter_url = stack.resources.submit_dead_letter_queue_url
    boto3.client("sqs").send_message(QueueUrl=dead_letter_url, MessageBody=json.dumps({"run_id": run_id}))

    # When an operator lists the queue twice
    code, listed, _ = bitbatch(capsys, serve_file, "dlq", "list", "--queue", "submit")
    _, listed_again, _ = bitbatch(capsys, serve_file, "dlq", "list", "--queue", "submit")

    # Then the message is shown both times, because listing leaves it in the queue
    assert code == 0
    assert "submit dead-letter queue: 1 message(s)" in listed
    assert run_id in listed
    assert "submit message" in listed
    assert run_id in listed_again

    # When the operator re-drives it
    code, redriven, _ = bitbatch(capsys, serve_file, "dlq", "redrive", "--queue", "submit")
    wait_until(lambda: queue_is_empty(stack.resources.submit_queue_url))

    # Then it went back to the submit queue, left the dead-letter queue, and the submitter started no second job
    assert code == 0
    assert f"(run {run_id}): re-driven to the submit queue" in redriven
    assert queue_is_empty(dead_letter_url)
    assert job_names(stack, run_id) == [f"bitbatch-{run_id}"]
    assert stack.get_run(run_id).job_id == run.job_id


def test_dlq_redrive_notifier_record_ends_run(stack, sample, serve_file, capsys):
    # Given a notifier dead-letter queue, and the job's SUCCEEDED event captured on its way to the notifier
    sqs = boto3.client("sqs")
    notifier_dead_letter_url = sqs.create_queue(QueueName="bitbatch-notifier-dlq")["QueueUrl"]
    description = json.loads(serve_file.read_text())
    description["outputs"]["NotifierDeadLetterQueueUrl"] = notifier_dead_letter_url
    serve_file.write_text(json.dumps(description))
    events = []
    stack.job_listeners.append(
        lambda stage, spec, result: (
            events.append(stack.executor.state_change_event(result)) if stage == "SUCCEEDED" else None
        )
    )
    run_id = deliver(stack, push_payload(stack, sample, sample.head_commit, sample.previous_commit))
    stack.wait_for_run(run_id)
    assert len(events) == 1

    # and the run put back as if the notifier had failed on that event every time,
    # which left Lambda's on-failure record in the dead-letter queue
    boto3.resource("dynamodb").Table(stack.resources.runs_table).update_item(
        Key={"run_id": run_id},
        UpdateExpression="SET #status = :running REMOVE notified_status, #stages.SUCCEEDED",
        ExpressionAttributeNames={"#status": "status", "#stages": "stages"},
        ExpressionAttributeValues={":running": "RUNNING"},
    )
    record = {
        "version": "1.0",
        "timestamp": "2026-12-04T20:00:00.000Z",
        "requestContext": {"requestId": "6d0c2f8e", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": events[0],
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "Task timed out after 30.00 seconds"},
    }
    sqs.send_message(QueueUrl=notifier_dead_letter_url, MessageBody=json.dumps(record))

    # When an operator lists and re-drives the notifier dead-letter queue
    _, listed, _ = bitbatch(capsys, serve_file, "dlq", "list", "--queue", "notifier")
    code, redriven, _ = bitbatch(capsys, serve_file, "dlq", "redrive", "--queue", "notifier")
    run = stack.wait_for_run(run_id)

    # Then the listing named the run, the event and the error
    assert run_id in listed
    assert "Batch job SUCCEEDED event" in listed
    assert "RetriesExhausted: Task timed out" in listed

    # and the notifier got the event again, ended the run and sent its email
    assert code == 0
    assert f"(run {run_id}): re-driven to the notifier function" in redriven
    assert run.status == "SUCCEEDED"
    assert run.notified_status == "SUCCEEDED"
    assert len(stack.sent_emails()) == 2
    assert queue_is_empty(notifier_dead_letter_url)
    assert job_names(stack, run_id) == [f"bitbatch-{run_id}"]


def run_installed(serve_file: Path, *argv: str) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / "bitbatch"
    return subprocess.run(
        [str(command), *argv, "--local", "--serve-file", str(serve_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_installed_command_against_serve(tmp_path):
    # Given `python -m bitbatch_local serve` running in its own process
    sample = build_sample_repository(tmp_path / "repos" / REPOSITORY)
    serve_file = tmp_path / "serve-current.json"
    secret = "cli-test-webhook-secret"
    log = (tmp_path / "serve.log").open("wb")
    command = [sys.executable, "-m", "bitbatch_local", "serve", "--port", "0", "--secret", secret]
    command += ["--repos", str(tmp_path / "repos"), "--serve-file", str(serve_file)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
    try:
        wait_until(lambda: serve_file.exists() or server.poll() is not None, timeout=120)
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        description = json.loads(serve_file.read_text())

        # When a push reaches its webhook and the installed command follows the run
        payload = cloud_push_payload(
            sample.path, REPOSITORY, "main", sample.head_commit, sample.previous_commit, "https://bitbucket.example"
        )
        body, headers = signed_delivery(payload, secret)
        status, answer = post(description["outputs"]["WebhookUrl"], body, headers)
        assert status == 202, answer
        run_id = answer["runs"][0]["run_id"]

        def run_succeeded() -> bool:
            shown = run_installed(serve_file, "runs", "show", run_id, "--json")
            assert shown.returncode == 0, shown.stderr
            return json.loads(shown.stdout)["status"] == "SUCCEEDED"

        wait_until(run_succeeded, timeout=120)
        listed = run_installed(serve_file, "runs", "list")
        missing = run_installed(serve_file, "runs", "show", "20260101T000000Z-000000000000")
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()

    # Then the list shows the run, an unknown run is one line on stderr, and the file is gone after the stop
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout
    assert "SUCCEEDED" in listed.stdout
    assert missing.returncode == 1
    assert missing.stderr.startswith("bitbatch: error: run 20260101T000000Z-000000000000 not found")
    assert "Traceback" not in missing.stderr
    assert server.returncode == 0
    assert not serve_file.exists()
