"""Webhook intake: check, read and record a push, then start its transforms.

Plain Python with injected collaborators; the handler maps the result to HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from bitbatch import bitbucket, signature
from bitbatch.model import Push, Run, new_run_id
from bitbatch.notifications import parse_author_email
from bitbatch.observability import bind_run, logger, metrics, unbind_run
from bitbatch.runs import RunStore

PUSH_EVENT_KEY = "repo:push"


@dataclass
class Answer:
    status_code: int
    body: dict = field(default_factory=dict)


class TransformInvoker(Protocol):
    def start(self, run_id: str) -> None: ...


class LambdaTransformInvoker:
    """Starts the transform function asynchronously; Lambda queues and retries the event."""

    def __init__(self, lambda_client, function_name: str):
        self._lambda = lambda_client
        self._function_name = function_name

    def start(self, run_id: str) -> None:
        self._lambda.invoke(
            FunctionName=self._function_name,
            InvocationType="Event",
            Payload=json.dumps({"run_id": run_id}).encode(),
        )


def _is_json_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json"


def _error(status_code: int, message: str) -> Answer:
    return Answer(status_code, {"error": message})


def receive(
    headers: dict[str, str],
    body: bytes,
    secret: str,
    store: RunStore,
    invoker: TransformInvoker,
    retention_days: int,
) -> Answer:
    """Handle one webhook delivery. headers must have lower-case names."""
    if not signature.is_valid(secret, body, headers.get("x-hub-signature")):
        logger.warning("rejected delivery: missing or invalid X-Hub-Signature")
        metrics.add_metric(name="SignatureRejected", unit="Count", value=1)
        return _error(401, "missing or invalid X-Hub-Signature; check the webhook secret in Bitbucket")

    if not _is_json_media_type(headers.get("content-type")):
        return _error(415, f"Content-Type {headers.get('content-type')!r} is not supported; send application/json")

    event_key = headers.get("x-event-key", "")
    if event_key != PUSH_EVENT_KEY:
        logger.info("ignored delivery", extra={"event_key": event_key})
        return Answer(200, {"runs": [], "ignored": f"event {event_key or '(none)'} is not a push"})

    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _error(400, f"body is not valid JSON: {error}")

    try:
        push = bitbucket.parse_cloud_push(payload)
    except bitbucket.PayloadError as error:
        logger.warning("rejected push payload", extra={"reason": str(error)})
        return _error(400, str(error))

    if not push.changes:
        reason = "; ".join(push.ignored_changes) or "the push has no ref changes"
        logger.info("ignored push", extra={"repository": push.repository, "reason": reason})
        return Answer(200, {"runs": [], "ignored": reason})

    return _start_runs(push, headers.get("x-request-uuid"), store, invoker, retention_days)


def _start_runs(push: Push, delivery_id: str | None, store: RunStore, invoker: TransformInvoker, retention_days: int) -> Answer:
    started = []
    for change in push.changes:
        run = Run(
            run_id=new_run_id(),
            product=push.product,
            repository=push.repository,
            repository_uuid=push.repository_uuid,
            ref=change.ref,
            ref_name=change.ref_name,
            ref_type=change.ref_type,
            commit=change.commit,
            previous_commit=change.previous_commit,
            commit_url=change.commit_url,
            pusher_name=push.actor_name,
            pusher_email=parse_author_email(change.author),
            delivery_id=delivery_id,
        )
        bind_run(run.log_keys)
        try:
            store.create(run, retention_days)
            invoker.start(run.run_id)
            logger.info("run received")
        except (ClientError, BotoCoreError) as error:
            # A 5xx makes Bitbucket send the push again, so the push is not lost.
            logger.exception("could not record or start run")
            return _error(503, f"could not start run for {change.ref}: {type(error).__name__}; retry the delivery")
        finally:
            unbind_run()
        metrics.add_metric(name="RunsReceived", unit="Count", value=1)
        started.append({"run_id": run.run_id, "repository": run.repository, "ref": run.ref, "commit": run.commit})

    return Answer(202, {"runs": started})
