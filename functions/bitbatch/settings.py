"""Function settings, read once from the environment at cold start.

Each Lambda function has its own settings class. The field metadata names the
environment variable, so template.yaml, the local stack and the tests can all
be checked against one list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Self
from urllib.parse import urlsplit


class SettingsError(RuntimeError):
    """A required environment variable is missing or has an invalid value."""


def env(name: str, default: str | None = None):
    """Declare a settings field read from the environment variable `name`."""
    return field(default=default, metadata={"env": name})


class _FromEnvironment:
    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        environ = os.environ if environ is None else environ
        values = {}
        for settings_field in fields(cls):  # type: ignore[arg-type]
            name = settings_field.metadata["env"]
            value = environ.get(name, "").strip() or settings_field.default
            if value is None:
                raise SettingsError(
                    f"environment variable {name} is missing or empty; "
                    f"set it in template.yaml (or the local stack) for {cls.__name__}"
                )
            values[settings_field.name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    @classmethod
    def variable_names(cls) -> list[str]:
        return [settings_field.metadata["env"] for settings_field in fields(cls)]  # type: ignore[arg-type]

    def validate(self) -> None:
        """Check values beyond presence; subclasses raise SettingsError."""


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SettingsError(f"environment variable {name}={value!r} must be one of {', '.join(allowed)}")


def _has_host(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("https", "http") and bool(parts.hostname)


def _optional_url(name: str, value: str) -> None:
    if value and not _has_host(value):
        raise SettingsError(
            f"environment variable {name}={value!r} must be empty or an https:// URL with a host, "
            "for example https://bitbucket.example.com"
        )


def _positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise SettingsError(f"environment variable {name}={value!r} must be a positive whole number")
    return number


@dataclass(frozen=True)
class WebhookSettings(_FromEnvironment):
    runs_table: str = env("RUNS_TABLE")
    idempotency_table: str = env("IDEMPOTENCY_TABLE")
    transform_function_name: str = env("TRANSFORM_FUNCTION_NAME")
    signature_policy: str = env("SIGNATURE_POLICY", "required")
    webhook_secret_arn: str = env("WEBHOOK_SECRET_ARN", "")
    secret_rotation_window_seconds: str = env("SECRET_ROTATION_WINDOW_SECONDS", "86400")
    allowed_repositories: str = env("ALLOWED_REPOSITORIES", "*")
    tag_policy: str = env("TAG_POLICY", "ignore")
    data_center_base_url: str = env("DATA_CENTER_BASE_URL", "")
    git_base_url: str = env("GIT_BASE_URL", "https://bitbucket.org")
    retention_days: str = env("RETENTION_DAYS", "30")
    duplicate_window_seconds: str = env("DUPLICATE_WINDOW_SECONDS", "86400")

    def validate(self) -> None:
        _positive_int("RETENTION_DAYS", self.retention_days)
        _positive_int("DUPLICATE_WINDOW_SECONDS", self.duplicate_window_seconds)
        _positive_int("SECRET_ROTATION_WINDOW_SECONDS", self.secret_rotation_window_seconds)
        _one_of("SIGNATURE_POLICY", self.signature_policy, ("required", "disabled"))
        _one_of("TAG_POLICY", self.tag_policy, ("ignore", "run"))
        if self.signature_policy == "required" and not self.webhook_secret_arn:
            raise SettingsError(
                "environment variable WEBHOOK_SECRET_ARN is empty while SIGNATURE_POLICY=required; "
                "set it to the webhook secret's ARN, or set SIGNATURE_POLICY=disabled to accept unsigned pushes"
            )
        if not self.repository_patterns:
            raise SettingsError("environment variable ALLOWED_REPOSITORIES lists no pattern; use * to allow every repository")
        _optional_url("DATA_CENTER_BASE_URL", self.data_center_base_url)
        if not _has_host(self.git_base_url):
            raise SettingsError(
                f"environment variable GIT_BASE_URL={self.git_base_url!r} must be an https:// URL with a host, "
                "for example https://bitbucket.org"
            )

    @property
    def repository_patterns(self) -> tuple[str, ...]:
        return tuple(pattern.strip() for pattern in self.allowed_repositories.split(",") if pattern.strip())


@dataclass(frozen=True)
class TransformSettings(_FromEnvironment):
    runs_table: str = env("RUNS_TABLE")
    artifacts_bucket: str = env("ARTIFACTS_BUCKET")
    submit_queue_url: str = env("SUBMIT_QUEUE_URL")
    git_base_url: str = env("GIT_BASE_URL")
    data_center_base_url: str = env("DATA_CENTER_BASE_URL", "")
    bitbucket_token_secret_arn: str = env("BITBUCKET_TOKEN_SECRET_ARN")
    notifier_function_name: str = env("NOTIFIER_FUNCTION_NAME")
    default_branches: str = env("DEFAULT_BRANCHES", "*")
    max_file_bytes: str = env("MAX_FILE_BYTES", str(100 * 1024 * 1024))
    max_files: str = env("MAX_FILES", "10000")
    max_checkout_bytes: str = env("MAX_CHECKOUT_BYTES", str(1024 * 1024 * 1024))

    def validate(self) -> None:
        if not _has_host(self.git_base_url):
            raise SettingsError(
                f"environment variable GIT_BASE_URL={self.git_base_url!r} must be an https:// URL with a host, "
                "for example https://bitbucket.org"
            )
        _optional_url("DATA_CENTER_BASE_URL", self.data_center_base_url)
        for name in ("MAX_FILE_BYTES", "MAX_FILES", "MAX_CHECKOUT_BYTES"):
            _positive_int(name, getattr(self, name.lower()))

    @property
    def branch_patterns(self) -> tuple[str, ...]:
        return tuple(pattern.strip() for pattern in self.default_branches.split(",") if pattern.strip())


@dataclass(frozen=True)
class SubmitterSettings(_FromEnvironment):
    runs_table: str = env("RUNS_TABLE")
    artifacts_bucket: str = env("ARTIFACTS_BUCKET")
    batch_job_queue: str = env("BATCH_JOB_QUEUE")
    batch_job_definition: str = env("BATCH_JOB_DEFINITION")
    # Build statuses on the pushed commit; an empty token secret turns them off.
    bitbucket_token_secret_arn: str = env("BITBUCKET_TOKEN_SECRET_ARN", "")
    bitbucket_api_url: str = env("BITBUCKET_API_URL", "https://api.bitbucket.org")
    data_center_base_url: str = env("DATA_CENTER_BASE_URL", "")
    api_base_url_parameter: str = env("API_BASE_URL_PARAMETER", "")
    run_link_key_secret_arn: str = env("RUN_LINK_KEY_SECRET_ARN", "")
    run_link_seconds: str = env("RUN_LINK_SECONDS", str(14 * 86400))

    def validate(self) -> None:
        _positive_int("RUN_LINK_SECONDS", self.run_link_seconds)
        _optional_url("BITBUCKET_API_URL", self.bitbucket_api_url)
        _optional_url("DATA_CENTER_BASE_URL", self.data_center_base_url)


@dataclass(frozen=True)
class NotifierSettings(_FromEnvironment):
    runs_table: str = env("RUNS_TABLE")
    artifacts_bucket: str = env("ARTIFACTS_BUCKET")
    sender_address: str = env("SENDER_ADDRESS")
    fallback_recipient: str = env("FALLBACK_RECIPIENT")
    link_expiry_seconds: str = env("LINK_EXPIRY_SECONDS", "604800")
    # Name of the SSM parameter that contains the HTTP API's URL. The notifier cannot reference the API
    # itself: the API's routes depend on the webhook function, which depends (through the transform)
    # on the notifier, and CloudFormation rejects that cycle.
    api_base_url_parameter: str = env("API_BASE_URL_PARAMETER")
    run_link_key_secret_arn: str = env("RUN_LINK_KEY_SECRET_ARN")
    run_link_seconds: str = env("RUN_LINK_SECONDS", str(14 * 86400))
    bitbucket_token_secret_arn: str = env("BITBUCKET_TOKEN_SECRET_ARN", "")
    bitbucket_api_url: str = env("BITBUCKET_API_URL", "https://api.bitbucket.org")
    data_center_base_url: str = env("DATA_CENTER_BASE_URL", "")

    def validate(self) -> None:
        _positive_int("RUN_LINK_SECONDS", self.run_link_seconds)
        _optional_url("BITBUCKET_API_URL", self.bitbucket_api_url)
        _optional_url("DATA_CENTER_BASE_URL", self.data_center_base_url)
        seconds = _positive_int("LINK_EXPIRY_SECONDS", self.link_expiry_seconds)
        if seconds > 604800:
            raise SettingsError(
                f"environment variable LINK_EXPIRY_SECONDS={self.link_expiry_seconds} is above "
                "604800, the longest lifetime S3 accepts for a presigned URL"
            )


@dataclass(frozen=True)
class RunPageSettings(_FromEnvironment):
    runs_table: str = env("RUNS_TABLE")
    artifacts_bucket: str = env("ARTIFACTS_BUCKET")
    run_link_key_secret_arn: str = env("RUN_LINK_KEY_SECRET_ARN")
    job_log_group: str = env("JOB_LOG_GROUP")
