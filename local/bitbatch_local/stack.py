"""The whole pipeline on one machine: moto, a git server, the local API and drivers.

Every handler runs unchanged in this process. Environment variables carry
the same names as in template.yaml, and point boto3 at the embedded moto
server and the local Lambda service.
"""

from __future__ import annotations

import email
import logging
import os
import secrets
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import boto3

from bitbatch.model import TERMINAL_STATUSES, Run
from bitbatch.runs import RunStore
from bitbatch_local import motoserver
from bitbatch_local.api import LocalHttpApi
from bitbatch_local.bitbucket_api import BuildStatusRecorder
from bitbatch_local.drivers import BatchExecutor, JobResult, JobSpec, SqsPoller
from bitbatch_local.gitserver import GitServer
from bitbatch_local.lambdas import ACCOUNT_ID, LocalFunction, LocalLambda
from bitbatch_local.resources import StackResources, create_resources, store_api_base_url

FUNCTION_NAMES = {
    "webhook": "bitbatch-webhook",
    "transform": "bitbatch-transform",
    "submitter": "bitbatch-submitter",
    "notifier": "bitbatch-notifier",
    "run_page": "bitbatch-run-page",
}
TOKEN_USERNAME = "x-token-auth"


@dataclass(frozen=True)
class SentEmail:
    sender: str
    recipients: list[str]
    subject: str
    text: str
    html: str


def _parts(message: Message) -> tuple[str, str]:
    text = html = ""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            text = part.get_content()
        elif part.get_content_type() == "text/html":
            html = part.get_content()
    return text, html


class LocalStack:
    def __init__(
        self,
        repos_root: Path,
        workdir: Path,
        webhook_secret: str | None = None,
        bitbucket_token: str | None = None,
        api_port: int = 0,
        sender_address: str = "bitbatch@example.com",
        fallback_recipient: str = "data-team@example.com",
        function_log_path: Path | None = None,
        allowed_repositories: str = "*",
        tag_policy: str = "ignore",
        limits: dict[str, int] | None = None,
        runnable_timeout_seconds: float = 30,
    ):
        self.repos_root = Path(repos_root)
        self.workdir = Path(workdir)
        self.webhook_secret = webhook_secret or secrets.token_urlsafe(30)
        self.bitbucket_token = bitbucket_token or secrets.token_urlsafe(30)
        self.api_port = api_port
        self.sender_address = sender_address
        self.fallback_recipient = fallback_recipient
        self.function_log_path = function_log_path
        self.allowed_repositories = allowed_repositories
        self.tag_policy = tag_policy
        # The template's defaults: 100 MiB per file, 10,000 files, 1 GiB per run.
        self.limits = {"max_file_bytes": 100 * 1024**2, "max_files": 10_000, "max_checkout_bytes": 1024**3}
        self.limits.update(limits or {})
        # A job that needs more vCPUs than the local compute environment (4) waits this long in RUNNABLE.
        self.runnable_timeout_seconds = runnable_timeout_seconds
        self.region = motoserver.REGION
        self.job_listeners: list[Callable[[str, JobSpec, JobResult | None], None]] = []
        self._exit_stack = ExitStack()
        self._saved_environment: dict[str, str | None] = {}

    # Starting and stopping

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.aws_endpoint = self._exit_stack.enter_context(motoserver.running_moto_server())
        # moto keeps its state per process, so start from nothing even if an
        # earlier stack ran in this process.
        motoserver.post_moto_api(self.aws_endpoint, "reset")
        motoserver.configure(self.aws_endpoint)
        self.aws_environment = motoserver.aws_environment(self.aws_endpoint)
        self._set_environment(self.aws_environment)

        self.build_statuses = BuildStatusRecorder(self.bitbucket_token)
        self.git = self._exit_stack.enter_context(
            GitServer(
                self.repos_root, username=TOKEN_USERNAME, password=self.bitbucket_token, api_recorder=self.build_statuses
            )
        )
        self.resources: StackResources = create_resources(
            self.webhook_secret, self.bitbucket_token, self.sender_address
        )

        self.lambdas = LocalLambda(self.region)
        self._exit_stack.callback(self.lambdas.stop)
        self.lambda_endpoint = self.lambdas.serve()
        self._set_environment(self._function_environment(self.lambda_endpoint))
        self._register_functions()

        self.api = LocalHttpApi(
            self.lambdas,
            {"ANY /webhook": FUNCTION_NAMES["webhook"], "GET /runs/{run_id}": FUNCTION_NAMES["run_page"]},
        )
        self._exit_stack.callback(self.api.stop)
        self.api_url = self.api.serve(self.api_port)
        store_api_base_url(self.resources.api_base_url_parameter, self.api_url)

        self.poller = SqsPoller(self.lambdas, FUNCTION_NAMES["submitter"], self.resources.submit_queue_url, self.region)
        self.poller.start()
        self._exit_stack.callback(self.poller.stop)
        self.dead_letter_poller = SqsPoller(
            self.lambdas, FUNCTION_NAMES["notifier"], self.resources.submit_dead_letter_queue_url, self.region
        )
        self.dead_letter_poller.start()
        self._exit_stack.callback(self.dead_letter_poller.stop)

        self.executor = BatchExecutor(
            self.lambdas,
            FUNCTION_NAMES["notifier"],
            self.resources.job_queue_arn,
            self.region,
            self.aws_environment,
            self.workdir / "jobs",
            on_job_event=self._job_event,
            runnable_timeout_seconds=self.runnable_timeout_seconds,
        )
        self.executor.start()
        self._exit_stack.callback(self.executor.stop)

    def stop(self) -> None:
        self._exit_stack.close()
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment.clear()

    @property
    def webhook_url(self) -> str:
        return f"{self.api_url}/webhook"

    def describe(self) -> dict:
        """Return the endpoints and resource names a client such as the `bitbatch` command needs.

        The names are keyed like template.yaml's Outputs. The local stack has no notifier
        dead-letter queue, so NotifierDeadLetterQueueUrl is missing. No secret is included.
        """
        resources = self.resources
        return {
            "pid": os.getpid(),
            "region": self.region,
            "aws_endpoint": self.aws_endpoint,
            "lambda_endpoint": self.lambda_endpoint,
            "outputs": {
                "WebhookUrl": self.webhook_url,
                "ArtifactsBucketName": resources.bucket,
                "RunsTableName": resources.runs_table,
                "IdempotencyTableName": resources.idempotency_table,
                "SubmitQueueUrl": resources.submit_queue_url,
                "SubmitDeadLetterQueueUrl": resources.submit_dead_letter_queue_url,
                "JobQueueArn": resources.job_queue_arn,
                "JobDefinitionArn": resources.job_definition_arn,
                "TransformFunctionName": FUNCTION_NAMES["transform"],
                "NotifierFunctionName": FUNCTION_NAMES["notifier"],
            },
        }

    def _set_environment(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _function_environment(self, lambda_endpoint: str) -> dict[str, str]:
        """Return the variables template.yaml sets on the functions, with local values."""
        resources = self.resources
        return {
            "AWS_ENDPOINT_URL_LAMBDA": lambda_endpoint,
            "POWERTOOLS_SERVICE_NAME": "bitbatch-local",
            "POWERTOOLS_METRICS_NAMESPACE": "bitbatch",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "RUNS_TABLE": resources.runs_table,
            "IDEMPOTENCY_TABLE": resources.idempotency_table,
            "SIGNATURE_POLICY": "required",
            "ALLOWED_REPOSITORIES": self.allowed_repositories,
            "TAG_POLICY": self.tag_policy,
            "DATA_CENTER_BASE_URL": self.git.base_url,
            # Build statuses for both products go to the recorder on the git server.
            "BITBUCKET_API_URL": self.git.base_url,
            "ARTIFACTS_BUCKET": resources.bucket,
            "WEBHOOK_SECRET_ARN": resources.webhook_secret_arn,
            "TRANSFORM_FUNCTION_NAME": FUNCTION_NAMES["transform"],
            "RETENTION_DAYS": "30",
            "SUBMIT_QUEUE_URL": resources.submit_queue_url,
            "GIT_BASE_URL": self.git.base_url,
            "BITBUCKET_TOKEN_SECRET_ARN": resources.token_secret_arn,
            "NOTIFIER_FUNCTION_NAME": FUNCTION_NAMES["notifier"],
            "DEFAULT_BRANCHES": "*",
            "MAX_FILE_BYTES": str(self.limits["max_file_bytes"]),
            "MAX_FILES": str(self.limits["max_files"]),
            "MAX_CHECKOUT_BYTES": str(self.limits["max_checkout_bytes"]),
            "BATCH_JOB_QUEUE": resources.job_queue_arn,
            "BATCH_JOB_DEFINITION": resources.job_definition_arn,
            "SENDER_ADDRESS": resources.sender_address,
            "FALLBACK_RECIPIENT": self.fallback_recipient,
            "LINK_EXPIRY_SECONDS": "604800",
            "API_BASE_URL_PARAMETER": resources.api_base_url_parameter,
            "RUN_LINK_KEY_SECRET_ARN": resources.run_link_key_secret_arn,
            "RUN_LINK_SECONDS": str(14 * 86400),
            "JOB_LOG_GROUP": "/aws/batch/bitbatch-job",
        }

    def _register_functions(self) -> None:
        # Imported here, after the environment is set, as Lambda imports them at cold start.
        from handlers import notifier, runs, submitter, transform, webhook

        from bitbatch.observability import logger, metrics

        for module in (webhook, transform, submitter, notifier, runs):
            module.dependencies.cache_clear()
        if self.function_log_path is not None:
            self.function_log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = self.function_log_path.open("a", encoding="utf-8")
            self._exit_stack.callback(log_file.close)
            logger.registered_handler.setStream(log_file)
            self._exit_stack.callback(logger.registered_handler.setStream, _stdout())

        def without_metrics(handler):
            # POWERTOOLS_METRICS_DISABLED stops the output but keeps every metric in
            # memory, and all functions share one Metrics object in this process.
            def invoke(event, context):
                try:
                    return handler(event, context)
                finally:
                    metrics.clear_metrics()

            return invoke

        self.lambdas.register(
            LocalFunction(FUNCTION_NAMES["webhook"], without_metrics(webhook.lambda_handler), timeout_seconds=10)
        )
        self.lambdas.register(
            LocalFunction(
                FUNCTION_NAMES["transform"],
                without_metrics(transform.lambda_handler),
                timeout_seconds=900,
                max_retry_attempts=2,
                on_failure=FUNCTION_NAMES["notifier"],
            )
        )
        self.lambdas.register(
            LocalFunction(FUNCTION_NAMES["submitter"], without_metrics(submitter.lambda_handler), timeout_seconds=30)
        )
        self.lambdas.register(
            LocalFunction(FUNCTION_NAMES["notifier"], without_metrics(notifier.lambda_handler), timeout_seconds=30)
        )
        self.lambdas.register(
            LocalFunction(FUNCTION_NAMES["run_page"], without_metrics(runs.lambda_handler), timeout_seconds=10)
        )

    def _job_event(self, stage: str, spec: JobSpec, result: JobResult | None) -> None:
        for listener in self.job_listeners:
            listener(stage, spec, result)

    # Reading what happened

    def run_store(self) -> RunStore:
        return RunStore(boto3.resource("dynamodb").Table(self.resources.runs_table))

    def get_run(self, run_id: str) -> Run:
        return self.run_store().get(run_id)

    def wait_for_run(self, run_id: str, timeout: float = 120, on_change: Callable[[Run], None] | None = None) -> Run:
        """Poll the run until it reaches a terminal status and its email, if any, is out."""
        deadline = time.monotonic() + timeout
        seen_stages: set[str] = set()
        while True:
            run = self.get_run(run_id)
            if on_change and set(run.stages) - seen_stages:
                seen_stages |= set(run.stages)
                on_change(run)
            if run.status in TERMINAL_STATUSES and self.lambdas.wait_idle(0) and not self.executor.busy:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {run.status} after {timeout:.0f} s")
            time.sleep(0.1)

    def download_output(self, run: Run, folder: Path) -> list[str]:
        """Copy the run's output files to folder, since presigned links die with the stack."""
        s3 = boto3.client("s3")
        names = []
        listing = s3.list_objects_v2(Bucket=self.resources.bucket, Prefix=run.output_prefix or "-")
        for item in listing.get("Contents", []):
            name = item["Key"][len(run.output_prefix) :]
            if not name or "/" in name:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            s3.download_file(self.resources.bucket, item["Key"], str(folder / name))
            names.append(name)
        return names

    def sent_emails(self) -> list[SentEmail]:
        """Email sent through the emulated SES, oldest first."""
        from moto.ses.models import ses_backends

        sent = []
        for raw_message in ses_backends[ACCOUNT_ID][self.region].sent_messages:
            raw_data = getattr(raw_message, "raw_data", None)
            if raw_data is None:
                continue
            parsed = email.message_from_string(raw_data, policy=email.policy.default)
            text, html = _parts(parsed)
            sent.append(
                SentEmail(
                    sender=raw_message.source,
                    recipients=list(dict.fromkeys(raw_message.destinations)),  # moto repeats the To header
                    subject=str(parsed["Subject"]),
                    text=text,
                    html=html,
                )
            )
        return sent


def _stdout():
    import sys

    return sys.stdout


logging.getLogger("bitbatch_local").addHandler(logging.NullHandler())
# Powertools warns on every invocation that recorded no metric (a RUNNING event, a
# repeated message); on the local stack that would fill the terminal.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
