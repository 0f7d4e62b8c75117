"""Fixtures and helpers for the handler tests: resources in moto, function environment,
a recording stand-in for the transform function, a git server, runs and sent email.

A test module loads the fixtures with pytest_plugins = ["fixtures_handlers"].
"""

from __future__ import annotations

import copy
import email
import email.policy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import boto3
import pytest

from bitbatch.model import Run, RunStatus, input_prefix, output_prefix
from bitbatch.runs import RunStore
from bitbatch.signature import sign
from bitbatch_local.gitserver import ACCESS_TOKEN_USERNAME, GitServer
from bitbatch_local.lambdas import ACCOUNT_ID, LocalContext, LocalFunction, LocalLambda
from bitbatch_local.motoserver import REGION
from bitbatch_local.resources import StackResources, create_resources, store_api_base_url
from bitbatch_local.samplerepo import SampleRepository, build_sample_repository
from handlers import notifier, runs, submitter, transform, webhook

EVENTS = Path(__file__).resolve().parents[2] / "events"

# The secret that signs events/webhook-push*.json, as events/README.md documents.
SAMPLE_SECRET = "bitbatch-sample-secret"
BITBUCKET_TOKEN = "bb-access-token-5d2e8f1a9c"
SENDER_ADDRESS = "bitbatch@example.com"
FALLBACK_RECIPIENT = "data-team@example.com"
PUSHER_EMAIL = "ada@example.com"

TRANSFORM_FUNCTION_NAME = "bitbatch-transform"
NOTIFIER_FUNCTION_NAME = "bitbatch-notifier"
# The base URL the notifier's run page links start with; the handler tests never request it.
API_BASE_URL = "https://bitbatch-api.example.com"
JOB_LOG_GROUP = "/aws/batch/bitbatch-job"
# Nothing listens on the discard port, so a test that does not start the git
# server fails at once instead of reaching out past 127.0.0.1.
UNUSED_GIT_BASE_URL = "http://127.0.0.1:9"

# Where the sample events point: events/webhook-push.json pushes this
# repository, and its commits are those of the sample repository.
WORKSPACE = "highland"
SLUG = "weather-stations"
REPOSITORY = f"{WORKSPACE}/{SLUG}"

HANDLER_MODULES = (webhook, transform, submitter, notifier, runs)
STATUS_PATH = (RunStatus.RECEIVED, RunStatus.CHECKED_OUT, RunStatus.QUEUED, RunStatus.SUBMITTED)


def load_event(name: str) -> dict:
    """Return a fresh copy of events/<name>, safe to change in a test."""
    return copy.deepcopy(json.loads((EVENTS / name).read_text(encoding="utf-8")))


def lambda_context(function_name: str) -> LocalContext:
    return LocalContext(function_name, timeout_seconds=30, region=REGION)


def signed_webhook_event(base_event: dict, body: bytes, secret: str = SAMPLE_SECRET, **headers: str) -> dict:
    """Return base_event with body, a signature over it, and headers (x_event_key -> x-event-key) replaced."""
    event = copy.deepcopy(base_event)
    event["body"] = body.decode()
    event["isBase64Encoded"] = False
    event["headers"]["content-length"] = str(len(body))
    event["headers"]["x-hub-signature"] = sign(secret, body)
    for name, value in headers.items():
        event["headers"][name.replace("_", "-")] = value
    return event


def webhook_payload(event: dict) -> dict:
    return json.loads(event["body"])


def http_answer(result: dict) -> tuple[int, dict]:
    """Return the status code and JSON body of an API Gateway proxy result."""
    return result["statusCode"], json.loads(result["body"])


# AWS resources and the function environment


def function_environment(resources: StackResources) -> dict[str, str]:
    """The variables template.yaml sets on the functions, pointing at moto."""
    return {
        "POWERTOOLS_METRICS_DISABLED": "true",
        "RUNS_TABLE": resources.runs_table,
        "IDEMPOTENCY_TABLE": resources.idempotency_table,
        "SIGNATURE_POLICY": "required",
        "ALLOWED_REPOSITORIES": "*",
        "TAG_POLICY": "ignore",
        "ARTIFACTS_BUCKET": resources.bucket,
        "WEBHOOK_SECRET_ARN": resources.webhook_secret_arn,
        "TRANSFORM_FUNCTION_NAME": TRANSFORM_FUNCTION_NAME,
        "RETENTION_DAYS": "30",
        "SUBMIT_QUEUE_URL": resources.submit_queue_url,
        "GIT_BASE_URL": UNUSED_GIT_BASE_URL,
        "BITBUCKET_TOKEN_SECRET_ARN": resources.token_secret_arn,
        "NOTIFIER_FUNCTION_NAME": NOTIFIER_FUNCTION_NAME,
        "BATCH_JOB_QUEUE": resources.job_queue_arn,
        "BATCH_JOB_DEFINITION": resources.job_definition_arn,
        "SENDER_ADDRESS": resources.sender_address,
        "FALLBACK_RECIPIENT": FALLBACK_RECIPIENT,
        "LINK_EXPIRY_SECONDS": "3600",
        "API_BASE_URL_PARAMETER": resources.api_base_url_parameter,
        "RUN_LINK_KEY_SECRET_ARN": resources.run_link_key_secret_arn,
        "RUN_LINK_SECONDS": "1209600",
        "JOB_LOG_GROUP": JOB_LOG_GROUP,
    }


def clear_dependencies() -> None:
    for module in HANDLER_MODULES:
        module.dependencies.cache_clear()


@pytest.fixture
def resources(aws, monkeypatch) -> Iterator[StackResources]:
    """Every resource of the stack in a fresh moto, and the functions' environment set for it."""
    created = create_resources(SAMPLE_SECRET, BITBUCKET_TOKEN, SENDER_ADDRESS)
    store_api_base_url(created.api_base_url_parameter, API_BASE_URL)
    for name, value in function_environment(created).items():
        monkeypatch.setenv(name, value)
    clear_dependencies()
    yield created
    # The cached clients belong to this test's moto state, so the next test builds its own.
    clear_dependencies()


# A recording stand-in for the transform function


@dataclass
class RecordingFunction:
    """A Lambda handler that keeps every event it receives."""

    events: list[dict] = field(default_factory=list)

    def __call__(self, event: dict, context: LocalContext) -> dict:
        self.events.append(event)
        return {"status": "recorded"}


@dataclass
class FakeTransform:
    lambdas: LocalLambda
    function: RecordingFunction

    def received(self, timeout: float = 30) -> list[dict]:
        """Return the events received once every queued asynchronous invocation has run."""
        if not self.lambdas.wait_idle(timeout):
            raise TimeoutError(f"the fake transform function was still busy after {timeout} s")
        return list(self.function.events)


@pytest.fixture
def fake_transform(resources, monkeypatch) -> Iterator[FakeTransform]:
    """Serve the Lambda Invoke API with a recording function under TRANSFORM_FUNCTION_NAME."""
    lambdas = LocalLambda(REGION)
    function = RecordingFunction()
    lambdas.register(LocalFunction(TRANSFORM_FUNCTION_NAME, function))
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambdas.serve())
    try:
        yield FakeTransform(lambdas, function)
    finally:
        lambdas.stop()


# A git server with the sample repository


@dataclass(frozen=True)
class ServedRepository:
    server: GitServer
    sample: SampleRepository


@pytest.fixture
def served_repository(resources, tmp_path, monkeypatch) -> Iterator[ServedRepository]:
    """The sample repository behind a git server that requires the Bitbucket token, set as GIT_BASE_URL."""
    root = tmp_path / "repositories"
    sample = build_sample_repository(root / WORKSPACE / SLUG)
    with GitServer(root, ACCESS_TOKEN_USERNAME, BITBUCKET_TOKEN) as server:
        monkeypatch.setenv("GIT_BASE_URL", server.base_url)
        yield ServedRepository(server, sample)


# Runs


def run_store(resources: StackResources) -> RunStore:
    return RunStore(boto3.resource("dynamodb").Table(resources.runs_table))


def stored_items(resources: StackResources) -> list[dict]:
    return boto3.resource("dynamodb").Table(resources.runs_table).scan(ConsistentRead=True)["Items"]


def record_run(
    resources: StackResources,
    run_id: str,
    status: RunStatus,
    commit: str = "7de5c744462044a30d3f711293f80ff03adf7d79",
    pusher_email: str | None = PUSHER_EMAIL,
) -> Run:
    """Store a run and move it along the pipeline's path up to status, as the functions would."""
    store = run_store(resources)
    run = Run(
        run_id=run_id,
        product="cloud",
        repository=REPOSITORY,
        repository_uuid="{8c1f4e2a-5b7d-4c39-9e60-1a2b3c4d5e6f}",
        ref="refs/heads/main",
        ref_name="main",
        ref_type="branch",
        commit=commit,
        previous_commit=None,
        commit_url=f"https://bitbucket.org/{REPOSITORY}/commits/{commit}",
        pusher_name="Ada Lovelace",
        pusher_email=pusher_email,
        delivery_id="e3b9c1a7-54d2-4f08-9c6e-1b7a2d85f390",
    )
    store.create(run, retention_days=30)

    attributes_by_status = {
        RunStatus.QUEUED: {"input_prefix": input_prefix(run_id), "output_prefix": output_prefix(run_id)},
        RunStatus.SUBMITTED: {"job_id": f"job-of-{run_id}", "job_name": f"bitbatch-{run_id}"},
    }
    for previous, following in zip(STATUS_PATH, STATUS_PATH[1:], strict=False):
        if previous == status:
            break
        store.advance(run_id, following, (previous,), **attributes_by_status.get(following, {}))
    return store.get(run_id)


# Email sent through moto's SES


def sent_messages() -> list[EmailMessage]:
    """Every raw email moto's SES accepted in this process, parsed, oldest first."""
    # moto's server runs in this process, so its SES backend is readable here.
    from moto.ses.models import ses_backends

    messages = []
    for sent in ses_backends[ACCOUNT_ID][REGION].sent_messages:
        raw_data = getattr(sent, "raw_data", None)
        if raw_data is not None:
            messages.append(email.message_from_string(raw_data, policy=email.policy.default))
    return messages


def body_text(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()
