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

BITBUCKET_TOKEN_USERNAME = "x-token-auth"  # the user name Bitbucket expects with an access token


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


def clone_url(git_base_url: str, repository: str) -> str:
    """Build the clone URL from configuration, never from the payload, so a push cannot redirect the fetch."""
    return f"{git_base_url.rstrip('/')}/{repository}.git"


def stage_run(
    run: Run,
    git_base_url: str,
    token: str | None,
    store: RunStore,
    artifacts: ArtifactStore,
    queue: SubmitQueue,
) -> StagingResult:
    """Fetch, transform, upload and queue one run.

    Raises CheckoutError or TransformError for the caller to fail the run.
    A retried event for a run that is already queued does nothing.
    """
    if run.status not in (RunStatus.RECEIVED, RunStatus.CHECKED_OUT):
        logger.info("run already staged; ignoring repeated event", extra={"status": run.status})
        return StagingResult(status=RunStatus(run.status), files=0, reason="already staged")

    run.input_prefix = input_prefix(run.run_id)
    run.output_prefix = output_prefix(run.run_id)
    credentials = checkout.Credentials(BITBUCKET_TOKEN_USERNAME, token) if token else None

    logger.info("fetching commit")
    entries = []
    with checkout.fetched_commit(clone_url(git_base_url, run.repository), run.ref, run.commit, credentials) as repo:
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
