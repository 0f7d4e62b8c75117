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
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbatch import submission
from bitbatch.observability import logger, metrics, tracer, unbind_run
from bitbatch.runs import RunStore
from bitbatch.settings import SubmitterSettings

processor = BatchProcessor(event_type=EventType.SQS)


@dataclass(frozen=True)
class Dependencies:
    settings: SubmitterSettings
    store: RunStore
    submitter: submission.JobSubmitter


@cache
def dependencies() -> Dependencies:
    settings = SubmitterSettings.from_environ()
    return Dependencies(
        settings=settings,
        store=RunStore(boto3.resource("dynamodb").Table(settings.runs_table)),
        submitter=submission.JobSubmitter(
            boto3.client("batch"), settings.batch_job_queue, settings.batch_job_definition, settings.artifacts_bucket
        ),
    )


def submit_record(record: SQSRecord) -> None:
    deps = dependencies()
    try:
        run_id = submission.read_message(record.body)
        submission.submit_run(run_id, deps.store, deps.submitter)
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
