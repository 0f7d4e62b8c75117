"""Transform function: invoked asynchronously by the webhook function with {"run_id": ...}.

An exception makes Lambda retry the event; after the last retry the event
goes to the on-failure destination (the notifier), which fails the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbatch import links, staging
from bitbatch.artifacts import ArtifactStore
from bitbatch.observability import bind_run, logger, metrics, tracer
from bitbatch.runs import RunStore
from bitbatch.secrets import SecretReader
from bitbatch.settings import TransformSettings


@dataclass(frozen=True)
class Dependencies:
    settings: TransformSettings
    store: RunStore
    artifacts: ArtifactStore
    queue: staging.SubmitQueue
    secrets: SecretReader


@cache
def dependencies() -> Dependencies:
    settings = TransformSettings.from_environ()
    return Dependencies(
        settings=settings,
        store=RunStore(boto3.resource("dynamodb").Table(settings.runs_table)),
        artifacts=ArtifactStore(boto3.client("s3"), settings.artifacts_bucket),
        queue=staging.SubmitQueue(boto3.client("sqs"), settings.submit_queue_url),
        secrets=SecretReader(boto3.client("secretsmanager")),
    )


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
    credentials = staging.read_credentials(deps.secrets.read(deps.settings.bitbucket_token_secret_arn))
    result = staging.stage_run(
        run,
        clone_url=clone_url,
        credentials=credentials,
        store=deps.store,
        artifacts=deps.artifacts,
        queue=deps.queue,
    )
    logger.info("transform finished", extra={"status": str(result.status), "files": result.files})
    return {"run_id": run_id, "status": str(result.status), "files": result.files}
