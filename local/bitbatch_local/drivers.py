"""Local drivers for the event sources Lambda and AWS Batch provide on AWS.

SqsPoller plays the SQS event source mapping of the submitter function.
BatchExecutor plays AWS Batch with Fargate: it runs each submitted job's real
container code as a subprocess against the emulated AWS, then delivers the
"Batch Job State Change" event that EventBridge would send to the notifier.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3

from bitbatch_local.lambdas import ACCOUNT_ID, FunctionError, LocalLambda

log = logging.getLogger("bitbatch_local.drivers")

CONTAINER_COMMAND = [sys.executable, "-m", "bitbatch_job"]


class SqsPoller:
    def __init__(self, lambdas: LocalLambda, function_name: str, queue_url: str, region: str, batch_size: int = 10):
        self._lambdas = lambdas
        self._function_name = function_name
        self._queue_url = queue_url
        self._region = region
        self._batch_size = batch_size
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqs-poller", daemon=True)
        self._sqs = boto3.client("sqs")
        self._queue_arn = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(wait_seconds=1)
            except Exception:  # keep polling, as the event source mapping does
                log.exception("polling %s failed", self._queue_url)
                self._stop.wait(1)

    def poll_once(self, wait_seconds: int = 0) -> int:
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0

        event = {"Records": [self._record(message) for message in messages]}
        try:
            result = self._lambdas.invoke(self._function_name, event) or {}
            failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
        except FunctionError as error:
            log.warning("%s failed on a batch of %d messages: %s", self._function_name, len(messages), error)
            failed = {message["MessageId"] for message in messages}

        # Failed messages stay on the queue and return after the visibility timeout.
        for message in messages:
            if message["MessageId"] not in failed:
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def _record(self, message: dict) -> dict:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
            "eventSource": "aws:sqs",
            "eventSourceARN": self._queue_arn,
            "awsRegion": self._region,
        }


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    job_name: str
    job_queue: str
    job_definition: str
    environment: dict[str, str]
    parameters: dict[str, str]
    timeout_seconds: int
    vcpus: float = 1.0


@dataclass(frozen=True)
class JobResult:
    spec: JobSpec
    status: str  # SUCCEEDED or FAILED
    exit_code: int | None
    reason: str | None
    log_path: Path
    started_at: int
    stopped_at: int


def _epoch_millis() -> int:
    return int(time.time() * 1000)


def read_job_spec(job_id: str, region: str) -> JobSpec:
    """Read a submitted job's environment and parameters.

    NOTE: moto 5.2.5's server drops `container` and `parameters` from its
    DescribeJobs response, so this reads moto's in-process Batch backend (the
    server runs in this process). It only works with the embedded server.
    """
    from moto.batch.models import batch_backends

    job = batch_backends[ACCOUNT_ID][region]._jobs[job_id]
    definition = job.job_definition
    environment = {item["name"]: item["value"] for item in definition.container_properties.get("environment", [])}
    environment.update({item["name"]: item["value"] for item in job.container_overrides.get("environment", [])})
    timeout = (job.timeout or definition.timeout or {}).get("attemptDurationSeconds", 3600)
    requirements = {item["type"]: item["value"] for item in definition.container_properties.get("resourceRequirements", [])}
    requirements.update({item["type"]: item["value"] for item in job.container_overrides.get("resourceRequirements", [])})
    return JobSpec(
        job_id=job.job_id,
        job_name=job.job_name,
        job_queue=job.job_queue.arn,
        job_definition=definition.arn,
        environment=environment,
        parameters=dict(job.parameters),
        timeout_seconds=int(timeout),
        vcpus=float(requirements.get("VCPU", 1)),
    )


class BatchExecutor:
    def __init__(
        self,
        lambdas: LocalLambda,
        notifier_name: str,
        job_queue_arn: str,
        region: str,
        aws_environment: dict[str, str],
        log_folder: Path,
        on_job_event: Callable[[str, JobSpec, JobResult | None], None] | None = None,
        max_vcpus: float = 4,
        runnable_timeout_seconds: float = 1800,
    ):
        self._lambdas = lambdas
        self._notifier_name = notifier_name
        self._job_queue_arn = job_queue_arn
        self._region = region
        self._aws_environment = aws_environment
        self._log_folder = log_folder
        self._on_job_event = on_job_event or (lambda stage, spec, result: None)
        # Like the compute environment's maxvCpus and the job queue's RUNNABLE time limit.
        self._max_vcpus = max_vcpus
        self._runnable_timeout_seconds = runnable_timeout_seconds
        self._seen: set[str] = set()
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="batch-executor", daemon=True)
        self._batch = boto3.client("batch")

    def start(self) -> None:
        self._log_folder.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._running)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_once()
            except Exception:  # keep polling, as AWS Batch keeps scheduling
                log.exception("polling job queue %s failed", self._job_queue_arn)
            self._stop.wait(0.3)

    def _poll_once(self) -> None:
        paginator = self._batch.get_paginator("list_jobs")
        for page in paginator.paginate(jobQueue=self._job_queue_arn):
            for summary in page.get("jobSummaryList", []):
                job_id = summary["jobId"]
                with self._lock:
                    if job_id in self._seen:
                        continue
                    self._seen.add(job_id)
                    self._running.add(job_id)
                threading.Thread(target=self._execute, args=(job_id,), name=f"job-{job_id[:8]}", daemon=True).start()

    def _execute(self, job_id: str) -> None:
        try:
            spec = read_job_spec(job_id, self._region)
            if spec.vcpus > self._max_vcpus:
                self._cancel_stuck(spec)
                return
            self._on_job_event("RUNNING", spec, None)
            self._lambdas.invoke_async(self._notifier_name, self.running_event(spec))
            result = self.run_container(spec)
            self._on_job_event(result.status, spec, result)
            self._lambdas.invoke_async(self._notifier_name, self.state_change_event(result))
        except Exception:
            log.exception("running job %s failed", job_id)
        finally:
            with self._lock:
                self._running.discard(job_id)

    def _cancel_stuck(self, spec: JobSpec) -> None:
        """Hold a job no compute environment can place in RUNNABLE, then cancel it as the queue's time limit does."""
        self._on_job_event("RUNNABLE", spec, None)
        self._stop.wait(self._runnable_timeout_seconds)
        now = _epoch_millis()
        result = JobResult(spec, "FAILED", None, None, self._log_folder, now, now)
        event = self.state_change_event(result)
        event["detail"]["attempts"] = []
        event["detail"]["container"].pop("exitCode", None)
        event["detail"]["statusReason"] = (
            f"MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job asks for {spec.vcpus:g} vCPUs, more than the "
            f"{self._max_vcpus:g} of the compute environment; cancelled after {self._runnable_timeout_seconds:g} s in RUNNABLE"
        )
        self._on_job_event("FAILED", spec, result)
        self._lambdas.invoke_async(self._notifier_name, event)

    def run_container(self, spec: JobSpec) -> JobResult:
        """Run the container's entry point as a subprocess with the job's environment."""
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONUNBUFFERED": "1",
            **self._aws_environment,
            **spec.environment,
            "AWS_BATCH_JOB_ID": spec.job_id,
        }
        log_path = self._log_folder / f"{spec.job_name}-{spec.job_id[:8]}.log"
        started_at = _epoch_millis()
        with log_path.open("wb") as log_file:
            try:
                completed = subprocess.run(
                    CONTAINER_COMMAND,
                    env=environment,
                    stdout=log_file,
                    stderr=subprocess.PIPE,
                    timeout=spec.timeout_seconds,
                    check=False,
                )
            except subprocess.TimeoutExpired as error:
                log_file.write(error.stderr or b"")
                return JobResult(spec, "FAILED", None, "Job attempt duration exceeded timeout", log_path, started_at, _epoch_millis())
            log_file.write(completed.stderr)

        stderr_lines = completed.stderr.decode("utf-8", errors="replace").strip().splitlines()
        status = "SUCCEEDED" if completed.returncode == 0 else "FAILED"
        reason = None
        if status == "FAILED":
            reason = stderr_lines[-1] if stderr_lines else f"exit code {completed.returncode}"
        return JobResult(spec, status, completed.returncode, reason, log_path, started_at, _epoch_millis())

    def running_event(self, spec: JobSpec) -> dict:
        """Build the EventBridge event AWS Batch sends when a job starts running."""
        started_at = _epoch_millis()
        result = JobResult(spec, "RUNNING", None, None, self._log_folder, started_at, started_at)
        event = self.state_change_event(result)
        event["detail"]["attempts"] = []
        event["detail"].pop("stoppedAt", None)
        event["detail"].pop("statusReason", None)
        return event

    def state_change_event(self, result: JobResult) -> dict:
        """Build the EventBridge event AWS Batch sends when a job ends."""
        spec = result.spec
        job_arn = f"arn:aws:batch:{self._region}:{ACCOUNT_ID}:job/{spec.job_id}"
        log_stream = f"bitbatch/default/{spec.job_id}"
        container = {
            "image": "bitbatch-job:local",
            "command": CONTAINER_COMMAND[1:],
            "environment": [{"name": name, "value": value} for name, value in spec.environment.items()],
            "logStreamName": log_stream,
        }
        if result.exit_code is not None:
            container["exitCode"] = result.exit_code
        attempt_container = {"exitCode": result.exit_code, "logStreamName": log_stream}
        if result.reason:
            attempt_container["reason"] = result.reason
        detail = {
            "jobArn": job_arn,
            "jobName": spec.job_name,
            "jobId": spec.job_id,
            "jobQueue": spec.job_queue,
            "status": result.status,
            "statusReason": "Essential container in task exited",
            "attempts": [
                {
                    "container": attempt_container,
                    "startedAt": result.started_at,
                    "stoppedAt": result.stopped_at,
                    "statusReason": "Essential container in task exited",
                }
            ],
            "createdAt": result.started_at,
            "startedAt": result.started_at,
            "stoppedAt": result.stopped_at,
            "retryStrategy": {"attempts": 1},
            "dependsOn": [],
            "jobDefinition": spec.job_definition,
            "parameters": spec.parameters,
            "container": container,
            "platformCapabilities": ["FARGATE"],
            "tags": {},
        }
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Batch Job State Change",
            "source": "aws.batch",
            "account": ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self._region,
            "resources": [job_arn],
            "detail": detail,
        }
