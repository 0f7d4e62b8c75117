"""Record how a run ended and email the person who pushed.

Four kinds of event end a run. AWS Batch sends a "Job State Change" through
EventBridge. Lambda sends an on-failure destination record when the
transform function gave up on an event. The transform sends its own "Run
Failed" event for content that cannot run. The submit queue's dead-letter
queue holds messages the submitter could not submit. A RUNNING job state
change moves the run forward and sends nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import ClientError

from bitbatch.model import Run, RunStatus
from bitbatch.notifications import Email, Mailer, render_email
from bitbatch.observability import bind_run, logger, metrics
from bitbatch.runs import RunStore, TransitionRejected
from bitbatch.submission import parse_job_name, run_id_from_job_name

REPORT_FILE = "report.html"
RUN_SUMMARY_FILE = "run-summary.json"  # written by the container, names the file to link to
# The event the transform function sends when the pushed content cannot run.
RUN_FAILED_SOURCE = "bitbatch.transform"
RUN_FAILED_DETAIL_TYPE = "Run Failed"
BATCH_STATES = {"RUNNING": RunStatus.RUNNING, "SUCCEEDED": RunStatus.SUCCEEDED, "FAILED": RunStatus.FAILED}
# SES errors that no retry fixes: the email is recorded as failed instead.
PERMANENT_SES_ERRORS = frozenset(
    {"MessageRejected", "MailFromDomainNotVerifiedException", "AccountSuspendedException", "SendingPausedException", "BadRequestException"}
)
NOT_TERMINAL = (RunStatus.RECEIVED, RunStatus.CHECKED_OUT, RunStatus.QUEUED, RunStatus.SUBMITTED, RunStatus.RUNNING)


class EventError(ValueError):
    """An event this function cannot use; retrying will not help."""


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: RunStatus
    reason: str | None
    log_stream: str | None = None  # the job container's CloudWatch Logs stream, from a Batch event
    # The run attempt the event belongs to, when the event names it (see finish_run).
    attempt: int | None = None


def read_batch_event(event: dict) -> Outcome:
    detail = event.get("detail") or {}
    status = BATCH_STATES.get(detail.get("status"))
    if status is None:
        raise EventError(f"job status {detail.get('status')!r} is not RUNNING, SUCCEEDED or FAILED")

    parameters = detail.get("parameters") or {}
    run_id = parameters.get("run_id") or run_id_from_job_name(detail.get("jobName"))
    parsed_name = parse_job_name(detail.get("jobName"))
    attempt = parsed_name[1] if parsed_name else None
    if not run_id:
        raise EventError(f"job {detail.get('jobName')!r} carries no bitbatch run id")

    reason = None
    if status is RunStatus.FAILED:
        reason = _batch_failure_reason(detail)
    return Outcome(run_id=run_id, status=status, reason=reason, log_stream=_log_stream(detail), attempt=attempt)


def _log_stream(detail: dict) -> str | None:
    """Return the last attempt's log stream, else the job's; a job that never started has none."""
    attempts = detail.get("attempts") or []
    for container in ((attempts[-1].get("container") if attempts else None), detail.get("container")):
        stream = (container or {}).get("logStreamName")
        if isinstance(stream, str) and stream:
            return stream
    return None


# Exit code of a process killed by SIGKILL, which is how a container out of memory ends.
KILLED_EXIT_CODE = 137


def _batch_failure_reason(detail: dict) -> str:
    """Explain a FAILED job in plain words: out of memory, never started, or its exit code and reason."""
    attempts = detail.get("attempts") or []
    container = (attempts[-1].get("container") if attempts else None) or detail.get("container") or {}
    exit_code = container.get("exitCode")
    container_reason = str(container.get("reason") or "")
    status_reason = str(detail.get("statusReason") or "")

    if "OutOfMemory" in container_reason or (exit_code == KILLED_EXIT_CODE and "memory" in container_reason.lower()):
        return (
            f"the job ran out of memory (exit code {exit_code}): {container_reason}. "
            "Give it more with job.memory in bitbatch.yml"
        )
    if not attempts and exit_code is None:
        # The job never ran: AWS Batch cancelled it in RUNNABLE (the job queue's
        # time limit) or it could not be placed.
        return f"the job could not start: {status_reason or 'AWS Batch gave no reason'}"

    parts = []
    if exit_code is not None:
        parts.append(f"the job exited with code {exit_code}")
    if container_reason:
        parts.append(container_reason)
    if status_reason:
        parts.append(status_reason)
    return "; ".join(parts) or "the job failed without a reason from AWS Batch"


def read_destination_record(event: dict) -> Outcome:
    """Read Lambda's on-failure record for an asynchronous transform invocation."""
    payload = event.get("requestPayload") or {}
    run_id = payload.get("run_id") if isinstance(payload, dict) else None
    if not run_id:
        raise EventError("on-failure record has no requestPayload.run_id")

    response = event.get("responsePayload") or {}
    condition = (event.get("requestContext") or {}).get("condition", "RetriesExhausted")
    if isinstance(response, dict) and response.get("errorMessage"):
        reason = f"preparing the input failed: {response['errorMessage']}"
    else:
        reason = f"preparing the input failed ({condition})"
    # The webhook starts attempt 1 with {"run_id"} only, and `bitbatch runs retry` adds the attempt.
    attempt = payload.get("attempt", 1)
    return Outcome(
        run_id=run_id, status=RunStatus.FAILED, reason=reason, attempt=attempt if isinstance(attempt, int) else None
    )


def read_dead_letter_message(body: str) -> Outcome:
    """Read a submit-queue message that the submitter failed on every delivery."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as error:
        raise EventError(f"dead-letter message is not JSON: {error}") from error
    run_id = message.get("run_id") if isinstance(message, dict) else None
    if not isinstance(run_id, str) or not run_id:
        raise EventError("dead-letter message has no run_id")
    reason = "the job could not be submitted to AWS Batch after 5 attempts; the submitter's log has each error"
    return Outcome(run_id=run_id, status=RunStatus.FAILED, reason=reason)


def read_event(event: dict) -> Outcome:
    if event.get("detail-type") == "Batch Job State Change":
        return read_batch_event(event)
    if event.get("source") == RUN_FAILED_SOURCE and event.get("detail-type") == RUN_FAILED_DETAIL_TYPE:
        run_id = (event.get("detail") or {}).get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise EventError("Run Failed event has no detail.run_id")
        return Outcome(run_id=run_id, status=RunStatus.FAILED, reason=None)
    if "requestPayload" in event and "requestContext" in event:
        return read_destination_record(event)
    raise EventError("event is neither a Batch Job State Change nor a Lambda on-failure record")


class OutputLinks:
    """Presigned links to a run's output files."""

    def __init__(self, s3_client, bucket: str, expiry_seconds: int):
        self._s3 = s3_client
        self._bucket = bucket
        self._expiry_seconds = expiry_seconds

    def result_file(self, run: Run) -> str | None:
        """Return the output file the email links to: bitbatch.yml's job.result, else the job's choice."""
        configured = (run.config or {}).get("job_result")
        if configured:
            return configured
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=(run.output_prefix or "") + RUN_SUMMARY_FILE)["Body"]
            summary = json.loads(body.read())
        except (ClientError, ValueError):
            # An older job image writes no summary; its output is the built-in report.
            return REPORT_FILE
        result = summary.get("result_file") if isinstance(summary, dict) else None
        return result if isinstance(result, str) and result else None

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"

    def link(self, key: str) -> str:
        # NOTE: a URL signed with the function's temporary role credentials stops
        # working when those credentials expire (hours), whatever expiry it requests.
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._expiry_seconds
        )


def finish_run(
    outcome: Outcome,
    store: RunStore,
    mailer: Mailer,
    links: OutputLinks,
    fallback_recipient: str,
    run_page_url: Callable[[str], str] | None = None,
    on_finished: Callable[[Run], None] | None = None,
) -> Email | None:
    """Move the run to its terminal status and send one email for it; None if already sent.

    on_finished(run) runs once the run is terminal, before the email, also for a
    repeated event; the notifier uses it to post the Bitbucket build status.

    run_page_url(run_id) returns the signed run page link the email carries; without it
    the email links to the result file with a presigned S3 URL.
    """
    run = store.get(outcome.run_id)
    bind_run(run.log_keys)
    # A retried run starts again from RECEIVED, so a late copy of an earlier attempt's
    # event must not move it. NOTE: submit-queue messages and the transform's Run Failed
    # events carry no attempt, so a late copy of one of those can still end a retried run.
    if outcome.attempt is not None and outcome.attempt != run.attempt:
        logger.warning(
            "event of an earlier attempt ignored", extra={"event_attempt": outcome.attempt, "attempt": run.attempt}
        )
        return None

    attributes = {"failure_reason": outcome.reason} if outcome.reason else {}
    if outcome.log_stream:
        attributes["log_stream"] = outcome.log_stream
    if outcome.status == RunStatus.RUNNING:
        try:
            store.advance(run.run_id, RunStatus.RUNNING, (RunStatus.SUBMITTED,))
            logger.info("job running")
        except TransitionRejected:
            logger.info("late RUNNING event ignored", extra={"status": run.status})
        return None
    try:
        store.advance(run.run_id, outcome.status, NOT_TERMINAL, **attributes)
    except TransitionRejected:
        if run.status != outcome.status:
            logger.warning("run already ended differently; event ignored", extra={"status": run.status, "event_status": str(outcome.status)})
            return None
    run = store.get(outcome.run_id)
    logger.info("run finished", extra={"status": run.status, "reason": run.failure_reason})
    metrics.add_metric(name=f"Runs{run.status.title()}", unit="Count", value=1)
    if on_finished is not None:
        on_finished(run)

    notify_outcomes = set((run.config or {}).get("notify_on") or ("success", "failure"))
    if OUTCOME_NAMES[outcome.status] not in notify_outcomes:
        logger.info("bitbatch.yml asks for no email on this outcome", extra={"notify_on": sorted(notify_outcomes)})
        return None
    if not store.mark_notified(run.run_id, outcome.status):
        logger.info("email for this status already sent; repeated event ignored")
        return None

    try:
        # Making the run page link reads the link key and the API's URL, which can fail.
        email = _compose(run, links, fallback_recipient, run_page_url)
    except Exception:
        store.clear_notified(run.run_id)
        raise
    try:
        message_id = mailer.send(email)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in PERMANENT_SES_ERRORS:
            # Retrying cannot fix a rejected address or an unverified sender, so
            # record the failure on the run and stop.
            reason = f"SES rejected the email ({code}): {error.response.get('Error', {}).get('Message', '')}"
            store.record_notification_error(run.run_id, reason)
            logger.error("email rejected by SES; not retrying", extra={"reason": reason})
            metrics.add_metric(name="EmailsRejected", unit="Count", value=1)
            return None
        store.clear_notified(run.run_id)
        raise
    except Exception:
        store.clear_notified(run.run_id)
        raise
    logger.info(
        "email sent",
        extra={"message_id": message_id, "recipients": len(email.recipients), "used_fallback": run.pusher_email is None},
    )
    return email


OUTCOME_NAMES = {RunStatus.SUCCEEDED: "success", RunStatus.FAILED: "failure"}


def _compose(run: Run, links: OutputLinks, fallback_recipient: str, run_page_url: Callable[[str], str] | None) -> Email:
    recipients = [run.pusher_email or fallback_recipient]
    for extra in (run.config or {}).get("recipients") or ():
        if extra not in recipients:
            recipients.append(extra)
    link = uri = None
    if run.status == RunStatus.SUCCEEDED and run.output_prefix:
        result_file = links.result_file(run)
        if result_file:
            key = run.output_prefix + result_file
            uri = links.uri(key)
            link = None if run_page_url else links.link(key)
    # The run page signs fresh S3 links when it is opened, so its link outlives the notifier's credentials.
    if run_page_url:
        link = run_page_url(run.run_id)
    return render_email(run, recipients, link, uri)
