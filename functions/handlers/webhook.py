"""Webhook function: API Gateway HTTP API route ANY /webhook, called by Bitbucket."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import cache

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbatch import intake
from bitbatch.observability import logger, metrics, tracer
from bitbatch.runs import RunStore
from bitbatch.settings import WebhookSettings
from bitbatch.webhook_secrets import SecretUnavailable, WebhookSecrets

app = APIGatewayHttpResolver()


@dataclass(frozen=True)
class Dependencies:
    policy: intake.WebhookPolicy
    signatures: WebhookSecrets | None
    starter: intake.RunStarter


@cache
def dependencies() -> Dependencies:
    settings = WebhookSettings.from_environ()
    signature_required = settings.signature_policy == "required"
    if not signature_required:
        logger.warning("SIGNATURE_POLICY=disabled: unsigned deliveries are accepted from anyone who knows the URL")

    signatures = None
    if signature_required:
        signatures = WebhookSecrets(
            boto3.client("secretsmanager"),
            settings.webhook_secret_arn,
            int(settings.secret_rotation_window_seconds),
        )
    return Dependencies(
        policy=intake.WebhookPolicy(
            signature_required=signature_required,
            allowed_repositories=settings.repository_patterns,
            run_tags=settings.tag_policy == "run",
            data_center_base_url=settings.data_center_base_url or None,
            cloud_base_url=settings.git_base_url,
        ),
        signatures=signatures,
        starter=intake.RunStarter(
            store=RunStore(boto3.resource("dynamodb").Table(settings.runs_table)),
            invoker=intake.LambdaTransformInvoker(boto3.client("lambda"), settings.transform_function_name),
            retention_days=int(settings.retention_days),
            persistence_store=DynamoDBPersistenceLayer(
                table_name=settings.idempotency_table, boto3_client=boto3.client("dynamodb")
            ),
            duplicate_window_seconds=int(settings.duplicate_window_seconds),
            data_center_base_url=settings.data_center_base_url or None,
            cloud_base_url=settings.git_base_url,
        ),
    )


def _delivery() -> intake.Delivery:
    event = app.current_event
    body = event.get("body") or ""
    raw_body = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
    headers = {name.lower(): value for name, value in (event.headers or {}).items()}
    return intake.Delivery(method=event.request_context.http.method.upper(), headers=headers, body=raw_body)


@app.route("/webhook", method=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def receive_webhook() -> Response:
    deps = dependencies()
    try:
        delivery = _delivery()
    except binascii.Error:
        # API Gateway encodes bodies correctly; only a hand-made event gets here.
        answer = intake.Answer(400, {"error": "body is marked base64-encoded but is not valid base64"})
        return Response(status_code=400, content_type=content_types.APPLICATION_JSON, body=answer.body)
    try:
        answer = intake.receive(delivery, deps.policy, deps.signatures, deps.starter)
    except SecretUnavailable as error:
        # Bitbucket retries a 5xx response, so the push is not lost.
        logger.error("webhook secret unavailable", extra={"reason": str(error)})
        answer = intake.Answer(503, {"error": "the webhook secret could not be read; retry later"}, {"Retry-After": "10"})
    return Response(
        status_code=answer.status_code,
        content_type=content_types.APPLICATION_JSON,
        body=answer.body,
        headers=answer.headers,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    dependencies().starter.register_lambda_context(context)
    return app.resolve(event, context)
