"""Stage a run's input: fetch the pushed commit, transform its files, store artifacts, queue the job."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bitbatch import checkout
from bitbatch.artifacts import CONTENT_TYPES, MANIFEST_NAME, ArtifactStore, build_artifact, build_manifest
from bitbatch.model import Run, RunStatus, input_prefix, output_prefix
from bitbatch.observability import logger, metrics
from bitbatch.runs import RunStore, TransitionRejected
from bitbatch.transforms import select_transform

# Bitbucket Cloud takes an access token as the password of this literal user name.
BITBUCKET_TOKEN_USERNAME = "x-token-auth"


@dataclass(frozen=True)
class StagingResult:
    status: RunStatus
    files: int
    reason: str | None = None


class SubmitQueue:
    """The SQS queue the submitter function reads."""

    def __init__(self, sqs_client, queue_url: str):
        self._sqs = sqs_client
        self._queue_url = queue_url

    def send(self, run: Run) -> None:
        message = {"run_id": run.run_id, "input_prefix": run.input_prefix, "output_prefix": run.output_prefix}
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))


def read_credentials(secret_value: str) -> checkout.Credentials:
    """Read the token secret: a bare token, or JSON {"username": ..., "token": ...}.

    Bitbucket Data Center HTTP access tokens go with the user name of their
    owner, so the JSON form lets the secret name it.
    """
    text = secret_value.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError("the Bitbucket token secret starts with { but is not valid JSON") from error
        username, token = document.get("username"), document.get("token")
        if not isinstance(username, str) or not isinstance(token, str) or not username or not token:
            raise ValueError('the Bitbucket token secret must be a bare token or {"username": "...", "token": "..."}')
        return checkout.Credentials(username, token)
    return checkout.Credentials(BITBUCKET_TOKEN_USERNAME, text)


def stage_run(
    run: Run,
    clone_url: str,
    credentials: checkout.Credentials | None,
    store: RunStore,
    artifacts: ArtifactStore,
    queue: SubmitQueue,
) -> StagingResult:
    """Fetch, transform, upload and queue one run.

    Raises CheckoutError or TransformError for the caller to fail the run.
    A retried event for a queued run sends its message again (the submitter
    starts one job per run whatever it receives) and does nothing else.
    """
    if run.status == RunStatus.QUEUED and not run.job_id:
        queue.send(run)
        logger.info("run already staged; submit message sent again")
        return StagingResult(status=RunStatus.QUEUED, files=0, reason="already staged")
    if run.status not in (RunStatus.RECEIVED, RunStatus.CHECKED_OUT):
        logger.info("run already past staging; ignoring repeated event", extra={"status": run.status})
        return StagingResult(status=RunStatus(run.status), files=0, reason="already staged")

    run.input_prefix = input_prefix(run.run_id)
    run.output_prefix = output_prefix(run.run_id)

    logger.info("fetching commit")
    entries = []
    with checkout.fetched_commit(clone_url, run.ref, run.commit, credentials) as repo:
        _advance(store, run, RunStatus.CHECKED_OUT, (RunStatus.RECEIVED, RunStatus.CHECKED_OUT))
        for source in checkout.list_files(repo, run.commit):
            transform = select_transform(source.path)
            if transform is None:
                continue
            entry, data = build_artifact(source.path, checkout.read_file(repo, source), transform)
            artifacts.put(run.input_prefix, entry.artifact, data, CONTENT_TYPES[entry.format])
            entries.append(entry)

    if not entries:
        reason = "no file in the commit matches a transform rule"
        _advance(store, run, RunStatus.SKIPPED, (RunStatus.CHECKED_OUT,), failure_reason=reason)
        logger.info("run skipped", extra={"reason": reason})
        return StagingResult(status=RunStatus.SKIPPED, files=0, reason=reason)

    artifacts.put(run.input_prefix, MANIFEST_NAME, build_manifest(run, entries), "application/json")
    logger.info("artifacts stored", extra={"files": len(entries), "input_prefix": run.input_prefix})
    metrics.add_metric(name="ArtifactsStored", unit="Count", value=len(entries))

    _advance(
        store,
        run,
        RunStatus.QUEUED,
        (RunStatus.CHECKED_OUT,),
        input_prefix=run.input_prefix,
        output_prefix=run.output_prefix,
    )
    queue.send(run)
    logger.info("run queued for submission")
    return StagingResult(status=RunStatus.QUEUED, files=len(entries))


def _advance(store: RunStore, run: Run, status: RunStatus, allowed_from, **attributes) -> None:
    try:
        store.advance(run.run_id, status, allowed_from, **attributes)
    except TransitionRejected:
        logger.warning("run status changed elsewhere; not moving it", extra={"to": str(status)})
        raise
    run.status = status
