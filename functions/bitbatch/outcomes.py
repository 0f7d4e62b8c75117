"""Record how a run ended and email the person who pushed.

Two kinds of event end a run: an AWS Batch "Job State Change" from
EventBridge, and the on-failure destination record Lambda sends when the
transform function gave up on an event.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitbatch.model import Run, RunStatus
from bitbatch.notifications import Email, Mailer, render_email
from bitbatch.observability import bind_run, logger, metrics
from bitbatch.runs import RunStore, TransitionRejected
from bitbatch.submission import run_id_from_job_name

REPORT_FILE = "report.html"
BATCH_TERMINAL = {"SUCCEEDED": RunStatus.SUCCEEDED, "FAILED": RunStatus.FAILED}
NOT_TERMINAL = (RunStatus.RECEIVED, RunStatus.CHECKED_OUT, RunStatus.QUEUED, RunStatus.SUBMITTED, RunStatus.RUNNING)


class EventError(ValueError):
    """An event this function cannot use; retrying will not help."""


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: RunStatus
    reason: str | None


def read_batch_event(event: dict) -> Outcome:
    detail = event.get("detail") or {}
    status = BATCH_TERMINAL.get(detail.get("status"))
    if status is None:
        raise EventError(f"job status {detail.get('status')!r} is not SUCCEEDED or FAILED")

    parameters = detail.get("parameters") or {}
    run_id = parameters.get("run_id") or run_id_from_job_name(detail.get("jobName"))
    if not run_id:
        raise EventError(f"job {detail.get('jobName')!r} carries no bitbatch run id")

    reason = None
    if status is RunStatus.FAILED:
        reason = _batch_failure_reason(detail)
    return Outcome(run_id=run_id, status=status, reason=reason)


def _batch_failure_reason(detail: dict) -> str:
    attempts = detail.get("attempts") or []
    container = (attempts[-1].get("container") if attempts else None) or detail.get("container") or {}
    parts = []
    if container.get("exitCode") is not None:
        parts.append(f"the job exited with code {container['exitCode']}")
    if container.get("reason"):
        parts.append(str(container["reason"]))
    if detail.get("statusReason"):
        parts.append(str(detail["statusReason"]))
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
    return Outcome(run_id=run_id, status=RunStatus.FAILED, reason=reason)


def read_event(event: dict) -> Outcome:
    if event.get("detail-type") == "Batch Job State Change":
        return read_batch_event(event)
    if "requestPayload" in event and "requestContext" in event:
        return read_destination_record(event)
    raise EventError("event is neither a Batch Job State Change nor a Lambda on-failure record")


class OutputLinks:
    """Presigned links to a run's output files."""

    def __init__(self, s3_client, bucket: str, expiry_seconds: int):
        self._s3 = s3_client
        self._bucket = bucket
        self._expiry_seconds = expiry_seconds

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"

    def link(self, key: str) -> str:
        # NOTE: a URL signed with the function's temporary role credentials stops
        # working when those credentials expire (hours), whatever expiry it requests.
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._expiry_seconds
        )


def finish_run(outcome: Outcome, store: RunStore, mailer: Mailer, links: OutputLinks, fallback_recipient: str) -> Email | None:
    """Move the run to its terminal status and send one email for it; None if already sent."""
    run = store.get(outcome.run_id)
    bind_run(run.log_keys)

    attributes = {"failure_reason": outcome.reason} if outcome.reason else {}
    try:
        store.advance(run.run_id, outcome.status, NOT_TERMINAL, **attributes)
    except TransitionRejected:
        if run.status != outcome.status:
            logger.warning("run already ended differently; event ignored", extra={"status": run.status, "event_status": str(outcome.status)})
            return None
    run = store.get(outcome.run_id)
    logger.info("run finished", extra={"status": run.status, "reason": run.failure_reason})
    metrics.add_metric(name=f"Runs{run.status.title()}", unit="Count", value=1)

    if not store.mark_notified(run.run_id, outcome.status):
        logger.info("email for this status already sent; repeated event ignored")
        return None

    email = _compose(run, links, fallback_recipient)
    try:
        message_id = mailer.send(email)
    except Exception:
        store.clear_notified(run.run_id)
        raise
    logger.info("email sent", extra={"message_id": message_id, "used_fallback": email.recipient != run.pusher_email})
    return email


def _compose(run: Run, links: OutputLinks, fallback_recipient: str) -> Email:
    recipient = run.pusher_email or fallback_recipient
    link = uri = None
    if run.status == RunStatus.SUCCEEDED and run.output_prefix:
        key = run.output_prefix + REPORT_FILE
        link, uri = links.link(key), links.uri(key)
    return render_email(run, recipient, link, uri)
