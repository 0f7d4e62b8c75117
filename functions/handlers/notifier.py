"""Notifier function: ends runs and emails the pusher.

It receives AWS Batch job state changes (EventBridge), the transform
function's on-failure records and Run Failed events, and batches of
messages from the submit queue's dead-letter queue (SQS).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import boto3
from botocore.config import Config
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parameters import SSMProvider
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbatch import outcomes
from bitbatch.notifications import Mailer
from bitbatch.observability import logger, metrics, tracer, unbind_run
from bitbatch.run_links import RunPageLinks, run_page_links_from_aws
from bitbatch.status_reporting import StatusReporter, make_publisher
from bitbatch.runs import RunNotFound, RunStore
from bitbatch.secrets import SecretReader
from bitbatch.settings import NotifierSettings

processor = BatchProcessor(event_type=EventType.SQS)


@dataclass(frozen=True)
class Dependencies:
    settings: NotifierSettings
    store: RunStore
    mailer: Mailer
    links: outcomes.OutputLinks
    run_page: RunPageLinks
    reporter: StatusReporter


@cache
def dependencies() -> Dependencies:
    settings = NotifierSettings.from_environ()
    secrets = SecretReader(boto3.client("secretsmanager"))
    parameters = SSMProvider(boto3_client=boto3.client("ssm"))
    run_page = run_page_links_from_aws(
        secrets,
        parameters,
        settings.run_link_key_secret_arn,
        settings.api_base_url_parameter,
        int(settings.run_link_seconds),
    )
    token_arn = settings.bitbucket_token_secret_arn
    publisher = make_publisher(
        (lambda: secrets.read(token_arn)) if token_arn else None,
        settings.bitbucket_api_url,
        settings.data_center_base_url or None,
    )
    return Dependencies(
        settings=settings,
        store=RunStore(boto3.resource("dynamodb").Table(settings.runs_table)),
        mailer=Mailer(boto3.client("sesv2"), settings.sender_address),
        links=outcomes.OutputLinks(
            boto3.client("s3", config=Config(signature_version="s3v4")),
            settings.artifacts_bucket,
            int(settings.link_expiry_seconds),
        ),
        run_page=run_page,
        reporter=StatusReporter(publisher, run_page.url),
    )


def finish_dead_letter(record: SQSRecord) -> None:
    deps = dependencies()
    try:
        outcome = outcomes.read_dead_letter_message(record.body)
        outcomes.finish_run(
            outcome, deps.store, deps.mailer, deps.links, deps.settings.fallback_recipient, deps.run_page.url,
            deps.reporter.report_finished,
        )
    except (outcomes.EventError, RunNotFound) as error:
        # Retrying cannot help; the message stays visible in this log line.
        logger.error("dead-letter message ignored", extra={"message_id": record.message_id, "reason": str(error)})
    finally:
        unbind_run()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    deps = dependencies()
    unbind_run()
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return process_partial_response(event=event, record_handler=finish_dead_letter, processor=processor, context=context)

    try:
        outcome = outcomes.read_event(event if isinstance(event, dict) else {})
    except outcomes.EventError as error:
        # Retrying cannot make this event usable; log why and drop it.
        logger.error("notifier event ignored", extra={"reason": str(error), "detail_type": event.get("detail-type")})
        return {"status": "ignored", "reason": str(error)}

    try:
        email = outcomes.finish_run(
            outcome, deps.store, deps.mailer, deps.links, deps.settings.fallback_recipient, deps.run_page.url,
            deps.reporter.report_finished,
        )
    except RunNotFound as error:
        logger.error("notifier event for an unknown run ignored", extra={"run_id": outcome.run_id, "reason": str(error)})
        return {"status": "ignored", "reason": str(error)}
    finally:
        unbind_run()
    return {"run_id": outcome.run_id, "status": str(outcome.status), "emailed": email is not None}
