"""`bitbatch runs retry`: run a FAILED run again, as a new attempt of the same run.

A conditional write moves the run back to RECEIVED and counts the attempt
up, so of two retries at the same moment exactly one wins. The submitter
names each attempt's job differently (bitbatch-<run_id>-a<N>), so its
look-up by name finds no job for the new attempt and submits exactly one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import BotoCoreError, ClientError

from bitbatch.model import Run, RunStatus, utc_now
from bitbatch_cli.errors import CliError
from bitbatch_cli.runs import plain, read_raw_item
from bitbatch_cli.targets import Target

# Attributes that belong to one attempt and are removed when the next one starts.
ATTEMPT_ATTRIBUTES = (
    "job_id",
    "job_name",
    "log_stream",
    "submission_claimed_at",
    "failure_reason",
    "notified_status",
    "notification_error",
)


@dataclass(frozen=True)
class RetryStarted:
    run_id: str
    attempt: int
    previous: dict  # the entry appended to previous_attempts


class RetryConflict(CliError):
    """Another retry or a pipeline event changed the run between reading and writing it."""


def check_retryable(run: Run, force: bool) -> None:
    if run.status == RunStatus.FAILED:
        return
    if run.status == RunStatus.SKIPPED and force:
        return
    if run.status == RunStatus.SKIPPED:
        raise CliError(
            f"run {run.run_id} is SKIPPED ({run.failure_reason or 'no reason recorded'}); "
            "pass --force to run it again anyway"
        )
    raise CliError(
        f"run {run.run_id} is {run.status} on attempt {run.attempt}; only a FAILED run can be retried "
        "(a SKIPPED one with --force)"
    )


def previous_attempt_entry(run: Run) -> dict:
    entry = {
        "attempt": run.attempt,
        "status": run.status,
        "failure_reason": run.failure_reason,
        "job_id": run.job_id,
        "log_stream": run.log_stream,
        "started_at": run.stages.get(RunStatus.RECEIVED) or run.created_at,
        "finished_at": run.stages.get(run.status) or run.updated_at,
    }
    return {key: value for key, value in entry.items() if value is not None}


def begin_attempt(table, run: Run) -> RetryStarted:
    """Move the run from its current terminal status back to RECEIVED as attempt + 1.

    Raises RetryConflict when the run's status or attempt changed since it was read.
    """
    entry = previous_attempt_entry(run)
    next_attempt = run.attempt + 1
    now = utc_now()

    # Runs recorded before attempts were counted have no attempt attribute, which means attempt 1.
    same_attempt = Attr("attempt").eq(run.attempt)
    if run.attempt == 1:
        same_attempt = same_attempt | Attr("attempt").not_exists()
    condition = Attr("status").eq(str(run.status)) & same_attempt

    removed = ", ".join(f"#r{index}" for index in range(len(ATTEMPT_ATTRIBUTES)))
    names = {f"#r{index}": name for index, name in enumerate(ATTEMPT_ATTRIBUTES)}
    names.update(
        {
            "#status": "status",
            "#attempt": "attempt",
            "#previous": "previous_attempts",
            "#stages": "stages",
            "#updated_at": "updated_at",
        }
    )
    try:
        table.update_item(
            Key={"run_id": run.run_id},
            UpdateExpression=(
                "SET #status = :received, #attempt = :attempt, #stages = :stages, #updated_at = :now, "
                "#previous = list_append(if_not_exists(#previous, :empty), :entry) "
                f"REMOVE {removed}"
            ),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                ":received": str(RunStatus.RECEIVED),
                ":attempt": next_attempt,
                ":stages": {str(RunStatus.RECEIVED): now},
                ":now": now,
                ":empty": [],
                ":entry": [entry],
            },
            ConditionExpression=condition,
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise RetryConflict(
                f"run {run.run_id} changed while it was being retried; another retry or a pipeline event "
                "got there first. Nothing was started: check it with `bitbatch runs show`"
            ) from error
        raise
    return RetryStarted(run_id=run.run_id, attempt=next_attempt, previous=entry)


def restore(table, item: dict, attempt: int) -> bool:
    """Put the run back as it was before begin_attempt; False when it has moved on since."""
    try:
        table.put_item(
            Item=item, ConditionExpression=Attr("status").eq(str(RunStatus.RECEIVED)) & Attr("attempt").eq(attempt)
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def retry_run(target: Target, run_id: str, force: bool) -> RetryStarted:
    """Start a new attempt of a FAILED (or, with force, SKIPPED) run and invoke its transform."""
    transform_function = target.output("TransformFunctionName")
    item = read_raw_item(target, run_id)
    run = Run.from_item(plain(item))
    check_retryable(run, force)

    table = target.runs_table()
    # NOTE: every attempt writes to the same input and output prefixes, so output files
    # of the failed attempt that the new job does not write again stay there.
    started = begin_attempt(table, run)

    # The transform ignores "attempt". Lambda's on-failure record carries it to the
    # notifier, so a late failure record of an older attempt cannot end this one.
    payload = {"run_id": run_id, "attempt": started.attempt}
    try:
        target.client("lambda").invoke(
            FunctionName=transform_function, InvocationType="Event", Payload=json.dumps(payload).encode()
        )
    except (ClientError, BotoCoreError) as error:
        if restore(table, item, started.attempt):
            raise CliError(
                f"starting the transform function failed ({error}); run {run_id} is back to {run.status} "
                f"on attempt {run.attempt}. Fix the cause and retry again"
            ) from error
        raise CliError(
            f"starting the transform function failed ({error}), and run {run_id} has moved on since; "
            "check it with `bitbatch runs show`"
        ) from error
    return started
