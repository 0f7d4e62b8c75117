"""Webhook function: API Gateway HTTP API POST /webhook from Bitbucket."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cache

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbatch import intake
from bitbatch.observability import logger, metrics, tracer
from bitbatch.runs import RunStore
from bitbatch.secrets import SecretReader
from bitbatch.settings import WebhookSettings

app = APIGatewayHttpResolver()


@dataclass(frozen=True)
class Dependencies:
    settings: WebhookSettings
    store: RunStore
    invoker: intake.LambdaTransformInvoker
    secrets: SecretReader


@cache
def dependencies() -> Dependencies:
    settings = WebhookSettings.from_environ()
    return Dependencies(
        settings=settings,
        store=RunStore(boto3.resource("dynamodb").Table(settings.runs_table)),
        invoker=intake.LambdaTransformInvoker(boto3.client("lambda"), settings.transform_function_name),
        secrets=SecretReader(boto3.client("secretsmanager")),
    )


def _raw_body() -> bytes:
    event = app.current_event
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


@app.post("/webhook")
def receive_webhook() -> Response:
    deps = dependencies()
    headers = {name.lower(): value for name, value in (app.current_event.headers or {}).items()}
    answer = intake.receive(
        headers=headers,
        body=_raw_body(),
        secret=deps.secrets.read(deps.settings.webhook_secret_arn),
        store=deps.store,
        invoker=deps.invoker,
        retention_days=int(deps.settings.retention_days),
    )
    return Response(status_code=answer.status_code, content_type=content_types.APPLICATION_JSON, body=answer.body)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
