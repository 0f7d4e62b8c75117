"""Transform function: invoked asynchronously by the webhook function with {"run_id": ...}.

Content that cannot run (an invalid bitbatch.yml, a file a transform rejects,
a limit passed) fails the run at once and the notifier emails the reason.
Any other exception makes Lambda retry the event; after the last retry the
event goes to the on-failure destination (the notifier), which fails the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbatch import links, staging
from bitbatch.artifacts import ArtifactStore
from bitbatch.credentials import read_credentials
from bitbatch.model import RunStatus
from bitbatch.observability import bind_run, logger, metrics, tracer
from bitbatch.outcomes import RUN_FAILED_DETAIL_TYPE, RUN_FAILED_SOURCE
from bitbatch.runs import RunStore, TransitionRejected
from bitbatch.secrets import SecretReader
from bitbatch.settings import TransformSettings


@dataclass(frozen=True)
class Dependencies:
    settings: TransformSettings
    store: RunStore
    artifacts: ArtifactStore
    queue: staging.SubmitQueue
    secrets: SecretReader
    lambda_client: object
    limits: staging.Limits


@cache
def dependencies() -> Dependencies:
    settings = TransformSettings.from_environ()
    return Dependencies(
        settings=settings,
        store=RunStore(boto3.resource("dynamodb").Table(settings.runs_table)),
        artifacts=ArtifactStore(boto3.client("s3"), settings.artifacts_bucket),
        queue=staging.SubmitQueue(boto3.client("sqs"), settings.submit_queue_url),
        secrets=SecretReader(boto3.client("secretsmanager")),
        lambda_client=boto3.client("lambda"),
        limits=staging.Limits(
            max_file_bytes=int(settings.max_file_bytes),
            max_files=int(settings.max_files),
            max_checkout_bytes=int(settings.max_checkout_bytes),
        ),
    )


def fail_run(deps: Dependencies, run_id: str, reason: str) -> None:
    """Fail the run for content that cannot run, and have the notifier email the reason."""
    try:
        deps.store.advance(
            run_id,
            RunStatus.FAILED,
            (RunStatus.RECEIVED, RunStatus.CHECKED_OUT),
            failure_reason=reason,
        )
    except TransitionRejected:
        logger.warning("run already moved on; not failing it")
        return
    event = {"source": RUN_FAILED_SOURCE, "detail-type": RUN_FAILED_DETAIL_TYPE, "detail": {"run_id": run_id}}
    deps.lambda_client.invoke(
        FunctionName=deps.settings.notifier_function_name, InvocationType="Event", Payload=json.dumps(event).encode()
    )
    metrics.add_metric(name="RunsFailedInput", unit="Count", value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    deps = dependencies()
    run_id = event.get("run_id") if isinstance(event, dict) else None
    if not isinstance(run_id, str) or not run_id:
        # Retrying cannot help an event without a run id; log it and drop it.
        logger.error("transform event has no run_id; dropping it", extra={"event_keys": sorted(event or {})})
        return {"status": "ignored", "reason": "event has no run_id"}

    run = deps.store.get(run_id)
    bind_run(run.log_keys)
    logger.info("transform started")
    clone_url = links.clone_url(
        run.product, run.repository, deps.settings.git_base_url, deps.settings.data_center_base_url or None
    )
    credentials = read_credentials(deps.secrets.read(deps.settings.bitbucket_token_secret_arn))
    try:
        result = staging.stage_run(
            run,
            clone_url=clone_url,
            credentials=credentials,
            store=deps.store,
            artifacts=deps.artifacts,
            queue=deps.queue,
            limits=deps.limits,
            default_branches=deps.settings.branch_patterns,
        )
    except staging.RunInputError as error:
        logger.warning("run input rejected", extra={"reason": str(error)})
        fail_run(deps, run_id, str(error))
        return {"run_id": run_id, "status": str(RunStatus.FAILED), "reason": str(error)}

    logger.info("transform finished", extra={"status": str(result.status), "files": result.files})
    return {"run_id": run_id, "status": str(result.status), "files": result.files}
