"""`bitbatch dlq list` and `bitbatch dlq redrive`: messages left in the stack's dead-letter queues.

The submit dead-letter queue contains submit messages the submitter failed on
five times. The notifier reads that queue too, so a message stays there only
while the notifier fails on it. Re-driving sends it back to the submit queue:
the submitter skips a run that is no longer QUEUED or already has a job, and
its claim and job look-up by name keep it from submitting a second job.

The notifier dead-letter queue contains Lambda's on-failure records of events
the notifier failed on three times. Re-driving invokes the notifier again,
asynchronously, with the original event (the record's requestPayload); the
notifier sends no second email for a status it already emailed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from bitbatch_cli.runs import format_table, truncate
from bitbatch_cli.targets import Target

QUEUE_OUTPUTS = {"submit": "SubmitDeadLetterQueueUrl", "notifier": "NotifierDeadLetterQueueUrl"}
# Long enough to re-drive a message before it shows again to the notifier or another operator.
REDRIVE_VISIBILITY_SECONDS = 60
# Listing hides each message it receives, so one pass returns each message once. It then makes them visible again.
LIST_VISIBILITY_SECONDS = 30
ERROR_WIDTH = 60


@dataclass(frozen=True)
class DeadLetter:
    queue: str  # "submit" or "notifier"
    message_id: str
    receipt_handle: str
    body: str
    sent_at: str
    receive_count: str


@dataclass(frozen=True)
class Description:
    run_id: str
    kind: str
    error: str


def queue_names(choice: str | None) -> list[str]:
    return [choice] if choice else list(QUEUE_OUTPUTS)


def receive_all(sqs, queue: str, queue_url: str, visibility_seconds: int, max_messages: int) -> list[DeadLetter]:
    """Receive up to max_messages messages, each hidden for visibility_seconds."""
    messages: dict[str, DeadLetter] = {}
    while len(messages) < max_messages:
        # A long poll (1 s) queries every SQS server, but a short poll samples some and can miss messages.
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, max_messages - len(messages)),
            VisibilityTimeout=visibility_seconds,
            WaitTimeSeconds=1,
            AttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        ).get("Messages", [])
        new = [message for message in batch if message["MessageId"] not in messages]
        if not new:
            break
        for message in new:
            attributes = message.get("Attributes", {})
            sent_at = datetime.fromtimestamp(int(attributes.get("SentTimestamp", "0")) / 1000, UTC)
            messages[message["MessageId"]] = DeadLetter(
                queue=queue,
                message_id=message["MessageId"],
                receipt_handle=message["ReceiptHandle"],
                body=message["Body"],
                sent_at=sent_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                receive_count=attributes.get("ApproximateReceiveCount", "?"),
            )
    return list(messages.values())


def release(sqs, queue_url: str, letters: list[DeadLetter]) -> None:
    """Make messages visible again at once."""
    for start in range(0, len(letters), 10):
        entries = [
            {"Id": str(index), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
            for index, letter in enumerate(letters[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def describe(letter: DeadLetter) -> Description:
    """Name the run a message is about, what it carries and the error recorded with it."""
    try:
        body = json.loads(letter.body)
    except ValueError:
        return Description("?", "not JSON", "")
    if not isinstance(body, dict):
        return Description("?", "not a JSON object", "")
    if letter.queue == "submit":
        return Description(str(body.get("run_id") or "?"), "submit message", "")

    event = body.get("requestPayload")
    condition = (body.get("requestContext") or {}).get("condition") or ""
    response = body.get("responsePayload")
    error = response.get("errorMessage", "") if isinstance(response, dict) else ""
    error = f"{condition}: {error}" if condition and error else condition or error
    if not isinstance(event, dict):
        return Description("?", "not a Lambda on-failure record", error)

    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    if event.get("detail-type") == "Batch Job State Change":
        run_id = (detail.get("parameters") or {}).get("run_id") or detail.get("jobName") or "?"
        return Description(str(run_id), f"Batch job {detail.get('status', '?')} event", error)
    if isinstance(event.get("requestPayload"), dict):
        return Description(str(event["requestPayload"].get("run_id") or "?"), "transform failure record", error)
    if detail.get("run_id"):
        return Description(str(detail["run_id"]), f"{event.get('detail-type', 'event')} event", error)
    return Description("?", "unknown event", error)


def list_dead_letters(target: Target, choice: str | None, max_messages: int) -> str:
    sqs = target.client("sqs")
    sections = []
    for queue in queue_names(choice):
        output = QUEUE_OUTPUTS[queue]
        if not target.has_output(output):
            if choice:
                target.output(output)  # raises, naming the missing output
            sections.append(f"{queue} dead-letter queue: none in {target.label}")
            continue
        queue_url = target.output(output)
        letters = receive_all(sqs, queue, queue_url, LIST_VISIBILITY_SECONDS, max_messages)
        release(sqs, queue_url, letters)
        if not letters:
            sections.append(f"{queue} dead-letter queue: empty")
            continue
        rows = []
        for letter in letters:
            description = describe(letter)
            rows.append(
                [
                    letter.message_id,
                    letter.sent_at,
                    letter.receive_count,
                    description.run_id,
                    description.kind,
                    truncate(description.error, ERROR_WIDTH),
                ]
            )
        table = format_table(["MESSAGE ID", "SENT AT", "RECEIVES", "RUN ID", "CONTENT", "ERROR"], rows)
        sections.append(f"{queue} dead-letter queue: {len(letters)} message(s)\n{table}")
    return "\n\n".join(sections)


@dataclass
class RedriveReport:
    lines: list[str]
    failed: int = 0


def redrive(target: Target, choice: str | None, max_messages: int) -> RedriveReport:
    """Re-drive every message of the chosen queues; delete each one only after it was re-driven."""
    sqs = target.client("sqs")
    report = RedriveReport(lines=[])
    for queue in queue_names(choice):
        output = QUEUE_OUTPUTS[queue]
        if not target.has_output(output):
            if choice:
                target.output(output)  # raises, naming the missing output
            report.lines.append(f"{queue} dead-letter queue: none in {target.label}")
            continue
        queue_url = target.output(output)
        destination = target.output("SubmitQueueUrl" if queue == "submit" else "NotifierFunctionName")
        letters = receive_all(sqs, queue, queue_url, REDRIVE_VISIBILITY_SECONDS, max_messages)
        if not letters:
            report.lines.append(f"{queue} dead-letter queue: empty")
            continue

        for letter in letters:
            description = describe(letter)
            try:
                _redrive_one(target, letter, destination)
            except (ValueError, ClientError, BotoCoreError) as error:
                release(sqs, queue_url, [letter])
                report.failed += 1
                report.lines.append(
                    f"{queue} {letter.message_id} (run {description.run_id}): not re-driven, left in the queue: {error}"
                )
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=letter.receipt_handle)
            where = "to the submit queue" if queue == "submit" else "to the notifier function"
            report.lines.append(f"{queue} {letter.message_id} (run {description.run_id}): re-driven {where}")
    return report


def _redrive_one(target: Target, letter: DeadLetter, destination: str) -> None:
    if letter.queue == "submit":
        target.client("sqs").send_message(QueueUrl=destination, MessageBody=letter.body)
        return

    record = json.loads(letter.body)
    event = record.get("requestPayload") if isinstance(record, dict) else None
    if not isinstance(event, dict):
        raise ValueError("the message is not a Lambda on-failure record with a requestPayload object")
    target.client("lambda").invoke(FunctionName=destination, InvocationType="Event", Payload=json.dumps(event).encode())
