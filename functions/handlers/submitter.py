"""Submitter function: reads the submit queue and starts one AWS Batch job per run.

Failed records are reported one by one (ReportBatchItemFailures), so SQS
retries only those and moves them to the dead-letter queue in the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parameters import SSMProvider
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbatch import submission
from bitbatch.observability import logger, metrics, tracer, unbind_run
from bitbatch.runs import RunStore
from bitbatch.run_links import run_page_links_from_aws
from bitbatch.secrets import SecretReader
from bitbatch.settings import SubmitterSettings
from bitbatch.status_reporting import StatusReporter, make_publisher

processor = BatchProcessor(event_type=EventType.SQS)


@dataclass(frozen=True)
class Dependencies:
    settings: SubmitterSettings
    store: RunStore
    submitter: submission.JobSubmitter
    reporter: StatusReporter


@cache
def dependencies() -> Dependencies:
    settings = SubmitterSettings.from_environ()
    secrets = SecretReader(boto3.client("secretsmanager"))
    parameters = SSMProvider(boto3_client=boto3.client("ssm"))
    run_page = run_page_links_from_aws(
        secrets,
        parameters,
        settings.run_link_key_secret_arn,
        settings.api_base_url_parameter,
        int(settings.run_link_seconds),
    )
    # Build statuses need the token and the run page link; without either they stay off.
    enabled = settings.bitbucket_token_secret_arn and settings.run_link_key_secret_arn and settings.api_base_url_parameter
    publisher = make_publisher(
        (lambda: secrets.read(settings.bitbucket_token_secret_arn)) if enabled else None,
        settings.bitbucket_api_url,
        settings.data_center_base_url or None,
        # Up to 10 records share the function's 30 s, so each status gets little time.
        attempts=2,
        max_total_seconds=2,
    )
    return Dependencies(
        settings=settings,
        store=RunStore(boto3.resource("dynamodb").Table(settings.runs_table)),
        submitter=submission.JobSubmitter(
            boto3.client("batch"), settings.batch_job_queue, settings.batch_job_definition, settings.artifacts_bucket
        ),
        reporter=StatusReporter(publisher, run_page.url),
    )


def submit_record(record: SQSRecord) -> None:
    deps = dependencies()
    try:
        run_id = submission.read_message(record.body)
        submission.submit_run(run_id, deps.store, deps.submitter, deps.reporter.report_submitted)
    except submission.MessageError as error:
        # Retrying cannot fix the message: report it failed so it ends in the dead-letter queue.
        logger.error("invalid submit message", extra={"message_id": record.message_id, "reason": str(error)})
        raise
    finally:
        unbind_run()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=submit_record, processor=processor, context=context)
