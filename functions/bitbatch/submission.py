"""Submit a queued run as an AWS Batch job."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from bitbatch.model import Run, RunStatus
from bitbatch.observability import bind_run, logger, metrics
from bitbatch.runs import RunStore, TransitionRejected

JOB_NAME_PREFIX = "bitbatch-"
# bitbatch-<run_id> for a run's first attempt, bitbatch-<run_id>-a<N> for retries. A run id ends in
# 12 hex digits, so a suffix of "-a" and at most 4 digits cannot be part of it.
JOB_NAME_PATTERN = re.compile(r"^bitbatch-(?P<run_id>[A-Za-z0-9_-]+?)(?:-a(?P<attempt>[1-9][0-9]{0,3}))?$")


class MessageError(ValueError):
    """An SQS message that no retry can make valid."""


def job_name(run_id: str, attempt: int = 1) -> str:
    """Batch job name for one attempt of a run: letters, digits, hyphens and underscores, at most 128 characters.

    Each attempt gets its own name, because the submitter looks a run's job up
    by name before it submits one.
    """
    if attempt == 1:
        return JOB_NAME_PREFIX + run_id
    return f"{JOB_NAME_PREFIX}{run_id}-a{attempt}"


def parse_job_name(name: str | None) -> tuple[str, int] | None:
    """Return the run id and attempt a job name carries, or None for a name bitbatch did not make."""
    match = JOB_NAME_PATTERN.match(name or "")
    if not match:
        return None
    return match.group("run_id"), int(match.group("attempt") or 1)


def run_id_from_job_name(name: str | None) -> str | None:
    parsed = parse_job_name(name)
    return parsed[0] if parsed else None


def job_environment(run: Run, bucket: str) -> list[dict[str, str]]:
    """Variables the container reads (see container/bitbatch_job), then bitbatch.yml's job.environment."""
    config = run.config or {}
    variables = {
        "RUN_ID": run.run_id,
        "ARTIFACTS_BUCKET": bucket,
        "INPUT_PREFIX": run.input_prefix or "",
        "OUTPUT_PREFIX": run.output_prefix or "",
    }
    if config.get("job_command"):
        variables["JOB_MODE"] = "command"
        variables["JOB_COMMAND"] = json.dumps(config["job_command"])
    if config.get("job_result"):
        variables["RESULT_FILE"] = config["job_result"]
    # The schema keeps these names away from the ones above.
    extra = {name: value for name, value in (config.get("job_environment") or {}).items() if name not in variables}
    return [{"name": name, "value": value} for name, value in {**variables, **extra}.items()]


def container_overrides(run: Run, bucket: str) -> dict:
    config = run.config or {}
    overrides: dict = {"environment": job_environment(run, bucket)}
    requirements = []
    if config.get("job_vcpu"):
        requirements.append({"type": "VCPU", "value": str(config["job_vcpu"])})
    if config.get("job_memory"):
        requirements.append({"type": "MEMORY", "value": str(int(config["job_memory"]))})
    if requirements:
        overrides["resourceRequirements"] = requirements
    return overrides


class JobSubmitter:
    def __init__(self, batch_client, job_queue: str, job_definition: str, bucket: str):
        self._batch = batch_client
        self._job_queue = job_queue
        self._job_definition = job_definition
        self._bucket = bucket

    def submit(self, run: Run) -> str:
        config = run.config or {}
        request = {
            "jobName": job_name(run.run_id, run.attempt),
            "jobQueue": self._job_queue,
            "jobDefinition": config.get("job_definition") or self._job_definition,
            "parameters": {"run_id": run.run_id},
            "containerOverrides": container_overrides(run, self._bucket),
        }
        if config.get("job_timeout"):
            request["timeout"] = {"attemptDurationSeconds": int(config["job_timeout"])}
        return self._batch.submit_job(**request)["jobId"]

    def find(self, run_id: str, attempt: int = 1) -> str | None:
        """Return the id of a job already submitted for this attempt of the run, if the queue has one."""
        name = job_name(run_id, attempt)
        paginator = self._batch.get_paginator("list_jobs")
        pages = paginator.paginate(jobQueue=self._job_queue, filters=[{"name": "JOB_NAME", "values": [name]}])
        for page in pages:
            for summary in page.get("jobSummaryList", []):
                if summary.get("jobName") == name:
                    return summary["jobId"]
        return None


class SubmissionInProgress(RuntimeError):
    """Another delivery of the same message is submitting this run's job; retry later."""


def read_message(body: str) -> str:
    """Return the run id in a submit-queue message body."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as error:
        raise MessageError(f"message body is not JSON: {error}") from error
    run_id = message.get("run_id") if isinstance(message, dict) else None
    if not isinstance(run_id, str) or not run_id:
        raise MessageError("message has no run_id")
    return run_id


def submit_run(
    run_id: str, store: RunStore, submitter: JobSubmitter, on_submitted: Callable[[Run], None] | None = None
) -> str | None:
    """Submit the run's job once per attempt; returns the job id, or None when it was already submitted.

    A conditional claim on the run lets one delivery of a repeated message
    submit. A claim left by a delivery that died before recording its job is
    resolved by looking the job up by its deterministic name.
    NOTE: that lookup relies on ListJobs listing a job submitted moments ago.
    Only a delivery that died between SubmitJob and the record, followed by a
    redelivery after the 300 s claim expired, depends on it.
    """
    run = store.get(run_id)
    bind_run(run.log_keys)
    if run.job_id or run.status != RunStatus.QUEUED:
        logger.info("job already submitted; ignoring repeated message", extra={"job_id": run.job_id, "status": run.status})
        return None

    if not store.claim_submission(run_id):
        existing = submitter.find(run_id, run.attempt)
        if existing is None:
            raise SubmissionInProgress(f"run {run_id} is being submitted by another delivery")
        _record_job(store, run, existing)
        logger.info("found the job an earlier delivery submitted", extra={"job_id": existing})
        return None

    job_id = submitter.find(run_id, run.attempt) or submitter.submit(run)
    _record_job(store, run, job_id)
    logger.info("job submitted", extra={"job_id": job_id})
    if on_submitted is not None:
        on_submitted(run)
    metrics.add_metric(name="JobsSubmitted", unit="Count", value=1)
    return job_id


def _record_job(store: RunStore, run: Run, job_id: str) -> None:
    try:
        store.advance(
            run.run_id,
            RunStatus.SUBMITTED,
            (RunStatus.QUEUED,),
            job_id=job_id,
            job_name=job_name(run.run_id, run.attempt),
        )
    except TransitionRejected:
        logger.warning("run moved on while its job was submitted", extra={"job_id": job_id})
