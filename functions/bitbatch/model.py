"""The push and run model shared by every function."""

from __future__ import annotations

import secrets
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum


class RunStatus(StrEnum):
    RECEIVED = "RECEIVED"
    CHECKED_OUT = "CHECKED_OUT"
    QUEUED = "QUEUED"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED})


@dataclass(frozen=True)
class RefChange:
    """One ref updated or created by a push."""

    ref: str  # full name, e.g. refs/heads/main or refs/tags/v1.0
    ref_name: str  # short name as Bitbucket shows it, e.g. main
    ref_type: str  # "branch" or "tag"
    commit: str  # the pushed commit: build from this, never from the branch tip
    previous_commit: str | None  # None when the push created the ref
    commit_url: str | None
    author: str | None  # raw "Name <email>" of the pushed commit, as Bitbucket sends it
    forced: bool = False
    truncated: bool = False


CLOUD = "cloud"
DATA_CENTER = "data-center"


@dataclass(frozen=True)
class Push:
    """A push, whichever Bitbucket product sent it."""

    product: str  # CLOUD or DATA_CENTER
    repository: str  # Cloud: workspace/slug; Data Center: PROJECT_KEY/slug
    repository_uuid: str  # stable id of the repository, used to detect duplicate pushes
    actor_name: str
    changes: list[RefChange]
    ignored_changes: list[str] = field(default_factory=list)  # reasons, one per skipped change
    actor_email: str | None = None  # Data Center sends it; Cloud does not


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id() -> str:
    """Return a run id that sorts by creation time: 20261204T194832Z-3f9a1c0e2b7d."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


@dataclass
class Run:
    """One ref change on its way through the pipeline, as stored in the runs table."""

    run_id: str
    product: str
    repository: str
    repository_uuid: str
    ref: str
    ref_name: str
    ref_type: str
    commit: str
    previous_commit: str | None
    commit_url: str | None
    pusher_name: str
    pusher_email: str | None
    delivery_id: str | None
    status: str = RunStatus.RECEIVED
    created_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)
    stages: dict[str, str] = field(default_factory=dict)  # status -> time it was reached
    input_prefix: str | None = None
    output_prefix: str | None = None
    job_id: str | None = None
    job_name: str | None = None
    log_stream: str | None = None  # CloudWatch Logs stream of the job's container, from the Batch event
    failure_reason: str | None = None
    config: dict | None = None  # what later stages need from bitbatch.yml, see PipelineConfig.to_summary
    notified_status: str | None = None
    notification_error: str | None = None  # why SES refused the email, when it did
    expires_at: int | None = None  # DynamoDB TTL, seconds since the epoch
    attempt: int = 1  # 1 for the push, one more for each `bitbatch runs retry`
    # Earlier attempts, oldest first: {attempt, status, failure_reason, job_id, log_stream, started_at, finished_at},
    # each without the keys that had no value.
    previous_attempts: list[dict] = field(default_factory=list)

    @property
    def short_commit(self) -> str:
        return self.commit[:12]

    @property
    def log_keys(self) -> dict[str, str]:
        return {"run_id": self.run_id, "repository": self.repository, "ref": self.ref, "commit": self.commit}

    def to_item(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_item(cls, item: dict) -> Run:
        """Build a run from a table item; to_item leaves out None values, so missing fields are None."""
        values = {}
        for run_field in fields(cls):
            if run_field.name in item:
                values[run_field.name] = item[run_field.name]
            elif run_field.default is MISSING and run_field.default_factory is MISSING:
                values[run_field.name] = None
        if "expires_at" in values:
            values["expires_at"] = int(values["expires_at"])
        # DynamoDB returns numbers as Decimal.
        if "attempt" in values:
            values["attempt"] = int(values["attempt"])
        if "previous_attempts" in values:
            values["previous_attempts"] = [
                {**entry, "attempt": int(entry["attempt"])} for entry in values["previous_attempts"]
            ]
        return cls(**values)


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def input_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}input/"


def output_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}output/"
