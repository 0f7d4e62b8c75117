"""Run page function: API Gateway HTTP API route GET /runs/{run_id}, opened from the link in a run's email."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

import boto3
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bitbatch import run_page
from bitbatch.observability import logger, metrics, tracer, unbind_run
from bitbatch.run_outputs import OutputFiles
from bitbatch.runs import RunStore
from bitbatch.secrets import SecretReader
from bitbatch.settings import RunPageSettings

# Enough to tell runs apart in the log; the path is whatever the requester sent.
LOGGED_RUN_ID_LENGTH = 64


@dataclass(frozen=True)
class Dependencies:
    settings: RunPageSettings
    store: RunStore
    outputs: OutputFiles
    secrets: SecretReader
    logs: run_page.LogLocation


@cache
def dependencies() -> Dependencies:
    settings = RunPageSettings.from_environ()
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    return Dependencies(
        settings=settings,
        store=RunStore(boto3.resource("dynamodb").Table(settings.runs_table)),
        outputs=OutputFiles(s3, settings.artifacts_bucket),
        secrets=SecretReader(boto3.client("secretsmanager")),
        logs=run_page.LogLocation(region=s3.meta.region_name, log_group=settings.job_log_group),
    )


def read_request(event: dict) -> run_page.PageRequest:
    """Read the run id, the token and the Accept header from an HTTP API (payload 2.0) event."""
    path_parameters = event.get("pathParameters") or {}
    query = event.get("queryStringParameters") or {}
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    return run_page.PageRequest(
        run_id=path_parameters.get("run_id") or "",
        token=query.get("token"),
        accept=headers.get("accept", ""),
    )


def unavailable(request: run_page.PageRequest) -> run_page.PageResponse:
    reason = "The run page could not be made right now. Reload it in a minute."
    return run_page.error_response(503, "Run page unavailable", reason, run_page.prefers_json(request.accept))


# The response contains presigned links, so it must not be copied into X-Ray traces.
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    deps = dependencies()
    unbind_run()
    request = read_request(event if isinstance(event, dict) else {})

    logged_run_id = request.run_id[:LOGGED_RUN_ID_LENGTH]
    try:
        key = deps.secrets.read(deps.settings.run_link_key_secret_arn).encode()
    except (GetParameterError, ValueError) as error:
        logger.error("run link key unavailable", extra={"run_id": logged_run_id, "reason": str(error)})
        return http_response(unavailable(request))

    try:
        page = run_page.serve_run_page(request, key, time.time(), deps.store, deps.outputs, deps.logs)
    except (BotoCoreError, ClientError) as error:
        logger.error("reading the run failed", extra={"run_id": logged_run_id, "reason": str(error)})
        return http_response(unavailable(request))

    # Never log the token: it opens the page.
    logger.info("run page answered", extra={"run_id": logged_run_id, "status_code": page.status_code})
    return http_response(page)


def http_response(page: run_page.PageResponse) -> dict:
    return {
        "statusCode": page.status_code,
        "headers": {"Content-Type": page.content_type, **page.headers},
        "body": page.body,
        "isBase64Encoded": False,
    }
