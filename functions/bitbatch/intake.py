"""Webhook intake: check, read and record a push, then start its transforms.

Plain Python with injected collaborators. The webhook handler maps HTTP
events to a Delivery and the returned Answer to a response.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from botocore.exceptions import BotoCoreError, ClientError

from bitbatch import bitbucket, links
from bitbatch.model import DATA_CENTER, Push, RefChange, Run, new_run_id
from bitbatch.notifications import parse_author_email
from bitbatch.observability import bind_run, logger, metrics, unbind_run
from bitbatch.runs import RunStore

# Bitbucket Cloud sends at most 256 KB; Data Center payloads are of the same order.
MAX_BODY_BYTES = 1024 * 1024
DELIVERY_ID_HEADERS = ("x-request-uuid", "x-request-id")  # Cloud, Data Center


@dataclass(frozen=True)
class Delivery:
    method: str
    headers: dict[str, str]  # names in lower case, as API Gateway passes them
    body: bytes

    @property
    def delivery_id(self) -> str | None:
        return next((self.headers[name] for name in DELIVERY_ID_HEADERS if self.headers.get(name)), None)


@dataclass
class Answer:
    status_code: int
    body: dict = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookPolicy:
    signature_required: bool
    allowed_repositories: tuple[str, ...]  # globs on workspace/slug (Cloud) or PROJECT/slug (Data Center)
    run_tags: bool
    data_center_base_url: str | None
    cloud_base_url: str = "https://bitbucket.org"


class SignatureChecker(Protocol):
    def verify(self, body: bytes, header: str | None) -> bool: ...


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


class DependencyUnavailable(RuntimeError):
    """A store or service the webhook needs failed; Bitbucket should retry."""


def _error(status_code: int, message: str, **headers: str) -> Answer:
    return Answer(status_code, {"error": message}, headers)


def _ignored(reason: str) -> Answer:
    logger.info("delivery ignored", extra={"reason": reason})
    return Answer(200, {"runs": [], "ignored": reason})


def _is_json_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json"


def is_allowed(repository: str, patterns: tuple[str, ...]) -> bool:
    """Match workspace/slug against globs; `*` does not cross the `/` between them."""
    owner, _, slug = repository.lower().partition("/")
    for pattern in patterns:
        pattern_owner, separator, pattern_slug = pattern.lower().partition("/")
        if not separator and pattern_owner == "*":
            return True
        if separator and fnmatchcase(owner, pattern_owner) and fnmatchcase(slug, pattern_slug):
            return True
    return False


def receive(delivery: Delivery, policy: WebhookPolicy, signatures: SignatureChecker | None, starter: RunStarter) -> Answer:
    """Handle one webhook delivery; signatures is None only when the policy turns checks off."""
    if delivery.method != "POST":
        return _error(405, f"method {delivery.method} is not allowed; Bitbucket sends POST", Allow="POST")
    if len(delivery.body) > MAX_BODY_BYTES:
        return _error(413, f"body of {len(delivery.body)} bytes is above the limit of {MAX_BODY_BYTES} bytes")

    event_key = delivery.headers.get("x-event-key", "")
    signature_header = delivery.headers.get("x-hub-signature")
    if policy.signature_required:
        # Some Data Center versions send the connection test unsigned even with a
        # secret set. It starts nothing and its body is not read, so it gets a 200.
        if event_key == bitbucket.DATA_CENTER_PING and not signature_header:
            return _ignored("connection test (diagnostics:ping)")
        if not signatures.verify(delivery.body, signature_header):
            logger.warning("delivery rejected: missing or invalid X-Hub-Signature", extra={"event_key": event_key})
            metrics.add_metric(name="SignatureRejected", unit="Count", value=1)
            return _error(401, "missing or invalid X-Hub-Signature; check that the webhook's secret matches bitbatch's")

    if not _is_json_media_type(delivery.headers.get("content-type")):
        content_type = delivery.headers.get("content-type")
        return _error(415, f"Content-Type {content_type!r} is not supported; send application/json")

    if event_key == bitbucket.DATA_CENTER_PING:
        return _ignored("connection test (diagnostics:ping)")
    if event_key not in bitbucket.PUSH_EVENT_KEYS:
        return _ignored(f"event {event_key or '(no X-Event-Key)'} is not a push")

    try:
        payload = json.loads(delivery.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _error(400, f"body is not valid JSON: {error}")
    except RecursionError:
        return _error(400, "body is not valid JSON for a Bitbucket payload: it is nested too deeply")
    try:
        push = bitbucket.parse_push(event_key, payload)
    except bitbucket.PayloadError as error:
        logger.warning("push payload rejected", extra={"reason": str(error)})
        return _error(400, str(error))

    if not is_allowed(push.repository, policy.allowed_repositories):
        logger.warning("push rejected: repository not allowed", extra={"repository": push.repository})
        metrics.add_metric(name="RepositoryRejected", unit="Count", value=1)
        return _error(403, f"repository {push.repository} is not in bitbatch's allowed repositories")
    if push.product == DATA_CENTER and not policy.data_center_base_url:
        logger.error("Data Center push received but DATA_CENTER_BASE_URL is not set", extra={"repository": push.repository})
        return _error(400, "this bitbatch stack does not accept Bitbucket Data Center pushes: set its DataCenterBaseUrl parameter")

    changes, ignored = _changes_in_scope(push, policy)
    if not changes:
        return _ignored("; ".join(ignored) or "the push has no ref changes")

    try:
        started = [starter.start(push, change, delivery.delivery_id) for change in changes]
    except DependencyUnavailable as error:
        return _error(503, f"{error}; Bitbucket retries this delivery", **{"Retry-After": "10"})

    body = {"runs": [run for run, _ in started]}
    if all(duplicate for _, duplicate in started):
        body["duplicate"] = True
        return Answer(200, body)
    if ignored:
        body["ignored"] = "; ".join(ignored)
    return Answer(202, body)


def _changes_in_scope(push: Push, policy: WebhookPolicy) -> tuple[list[RefChange], list[str]]:
    changes = []
    ignored = list(push.ignored_changes)
    for change in push.changes:
        if change.ref_type == "tag" and not policy.run_tags:
            ignored.append(f"tag {change.ref_name} ignored: the stack's TagPolicy is ignore")
            continue
        changes.append(change)
    return changes, ignored


class RunStarter:
    """Creates one run per ref change and starts its transform, once per repository, ref and commit.

    A repeated delivery of the same change within the duplicate window returns
    the run it started the first time (Powertools idempotency on DynamoDB).
    """

    def __init__(
        self,
        store: RunStore,
        invoker: TransformInvoker,
        retention_days: int,
        persistence_store,
        duplicate_window_seconds: int,
        data_center_base_url: str | None,
        cloud_base_url: str = "https://bitbucket.org",
    ):
        self._store = store
        self._invoker = invoker
        self._retention_days = retention_days
        self._data_center_base_url = data_center_base_url
        self._cloud_base_url = cloud_base_url
        self._config = IdempotencyConfig(expires_after_seconds=duplicate_window_seconds)
        self._start_once: Callable[..., dict] = idempotent_function(
            self._create_and_start,
            data_keyword_argument="change_key",
            persistence_store=persistence_store,
            config=self._config,
            key_prefix="push",
        )

    def register_lambda_context(self, context) -> None:
        """Let an interrupted invocation's in-progress record expire with the invocation."""
        self._config.register_lambda_context(context)

    def start(self, push: Push, change: RefChange, delivery_id: str | None) -> tuple[dict, bool]:
        """Return the run summary and whether the change had already started a run."""
        change_key = {"repository": push.repository_uuid, "ref": change.ref, "commit": change.commit}
        created: list[str] = []
        try:
            summary = self._start_once(change_key=change_key, push=push, change=change, delivery_id=delivery_id, created=created)
        except IdempotencyAlreadyInProgressError as error:
            raise DependencyUnavailable(f"the same push of {change.ref} is being recorded right now") from error
        except IdempotencyPersistenceLayerError as error:
            logger.exception("duplicate check failed", extra={"repository": push.repository, "ref": change.ref})
            raise DependencyUnavailable("the duplicate check could not reach its table") from error

        duplicate = summary["run_id"] not in created
        if duplicate:
            logger.info("duplicate push; no new run", extra={**summary, "delivery_id": delivery_id})
            metrics.add_metric(name="DuplicatePushes", unit="Count", value=1)
        return summary, duplicate

    def _create_and_start(
        self, change_key: dict, push: Push, change: RefChange, delivery_id: str | None, created: list[str]
    ) -> dict:
        run = self._new_run(push, change, delivery_id)
        bind_run(run.log_keys)
        try:
            self._store.create(run, self._retention_days)
            logger.info("run received", extra={"delivery_id": delivery_id})
            metrics.add_metric(name="RunsReceived", unit="Count", value=1)
            # Nothing that can raise follows the start: an exception here removes the
            # idempotency record, and Bitbucket's retry would start the run a second time.
            self._invoker.start(run.run_id)
        except (ClientError, BotoCoreError) as error:
            # Raising removes the idempotency record, so Bitbucket's retry starts the run.
            logger.exception("could not record or start run")
            raise DependencyUnavailable(f"could not start a run for {change.ref}: {type(error).__name__}") from error
        finally:
            unbind_run()
        created.append(run.run_id)
        return {"run_id": run.run_id, "repository": run.repository, "ref": run.ref, "commit": run.commit}

    def _new_run(self, push: Push, change: RefChange, delivery_id: str | None) -> Run:
        if push.product == DATA_CENTER:
            commit_url = links.data_center_commit_url(self._data_center_base_url, push.repository, change.commit)
        else:
            commit_url = links.cloud_commit_url(self._cloud_base_url, push.repository, change.commit)
        pusher_email = parse_author_email(push.actor_email) or parse_author_email(change.author)
        return Run(
            run_id=new_run_id(),
            product=push.product,
            repository=push.repository,
            repository_uuid=push.repository_uuid,
            ref=change.ref,
            ref_name=change.ref_name,
            ref_type=change.ref_type,
            commit=change.commit,
            previous_commit=change.previous_commit,
            commit_url=commit_url,
            pusher_name=push.actor_name,
            pusher_email=pusher_email,
            delivery_id=delivery_id,
        )
