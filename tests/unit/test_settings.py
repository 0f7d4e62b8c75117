"""Function settings read from the environment: missing and invalid values are named."""

from __future__ import annotations

import dataclasses

import pytest

from bitbatch.settings import (
    NotifierSettings,
    RunPageSettings,
    SettingsError,
    SubmitterSettings,
    TransformSettings,
    WebhookSettings,
)

ENVIRONMENT = {
    "RUNS_TABLE": "bitbatch-runs",
    "IDEMPOTENCY_TABLE": "bitbatch-idempotency",
    "ARTIFACTS_BUCKET": "bitbatch-artifacts-123456789012-eu-west-1",
    "WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bitbatch/webhook-secret-AbCdEf",
    "TRANSFORM_FUNCTION_NAME": "bitbatch-transform",
    "RETENTION_DAYS": "30",
    "SUBMIT_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/bitbatch-submit",
    "GIT_BASE_URL": "https://bitbucket.org",
    "BITBUCKET_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bitbatch/bitbucket-token-GhIjKl",
    "NOTIFIER_FUNCTION_NAME": "bitbatch-notifier",
    "BATCH_JOB_QUEUE": "arn:aws:batch:eu-west-1:123456789012:job-queue/bitbatch-jobs",
    "BATCH_JOB_DEFINITION": "arn:aws:batch:eu-west-1:123456789012:job-definition/bitbatch-report:3",
    "SENDER_ADDRESS": "bitbatch@example.com",
    "FALLBACK_RECIPIENT": "data-team@example.com",
    "LINK_EXPIRY_SECONDS": "604800",
    "API_BASE_URL_PARAMETER": "/bitbatch/api-base-url",
    "RUN_LINK_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bitbatch/run-link-key-MnOpQr",
    "RUN_LINK_SECONDS": "1209600",
    "JOB_LOG_GROUP": "/aws/batch/bitbatch-job",
}

SETTINGS_CLASSES = [WebhookSettings, TransformSettings, SubmitterSettings, NotifierSettings, RunPageSettings]


def required_variables() -> list[tuple[type, str]]:
    """Every (settings class, variable) pair that has no default."""
    pairs = []
    for settings_class in SETTINGS_CLASSES:
        for settings_field in dataclasses.fields(settings_class):
            if settings_field.default is None:
                pairs.append((settings_class, settings_field.metadata["env"]))
    return pairs


def environment_without(name: str) -> dict[str, str]:
    return {key: value for key, value in ENVIRONMENT.items() if key != name}


def environment_with(**values: str) -> dict[str, str]:
    return {**ENVIRONMENT, **values}


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES, ids=lambda cls: cls.__name__)
def test_complete_environment_read(settings_class):
    # Given every variable with a valid value
    # When the settings are read
    settings = settings_class.from_environ(ENVIRONMENT)

    # Then each field has the value of its variable, or its default when the variable is unset
    for settings_field in dataclasses.fields(settings_class):
        expected = ENVIRONMENT.get(settings_field.metadata["env"], settings_field.default)
        assert getattr(settings, settings_field.name) == expected, settings_field.metadata["env"]


@pytest.mark.parametrize(
    ("settings_class", "name"),
    required_variables(),
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_missing_variable_named(settings_class, name):
    # Given an environment without one required variable
    environ = environment_without(name)

    # When the settings are read
    with pytest.raises(SettingsError) as raised:
        settings_class.from_environ(environ)

    # Then the error names the variable and where to set it
    assert f"environment variable {name} is missing" in str(raised.value)
    assert "template.yaml" in str(raised.value)


@pytest.mark.parametrize("value", ["", "   ", "\t\n"], ids=["empty", "spaces", "whitespace"])
def test_blank_variable_counts_as_missing(value):
    # Given a required variable that is set but blank
    environ = environment_with(RUNS_TABLE=value)

    # When the settings are read
    # Then the error names it as missing
    with pytest.raises(SettingsError, match="RUNS_TABLE is missing or empty"):
        SubmitterSettings.from_environ(environ)


def test_values_stripped():
    # Given values with surrounding whitespace, as a template edit can leave
    environ = environment_with(GIT_BASE_URL="  https://bitbucket.org \n", RUNS_TABLE=" bitbatch-runs")

    # When the settings are read
    settings = TransformSettings.from_environ(environ)

    # Then the whitespace is gone
    assert settings.git_base_url == "https://bitbucket.org"
    assert settings.runs_table == "bitbatch-runs"


def test_defaults_used_when_unset():
    # Given an environment without the variables that have defaults
    environ = environment_without("RETENTION_DAYS")
    del environ["LINK_EXPIRY_SECONDS"]

    # When the settings are read
    webhook = WebhookSettings.from_environ(environ)
    notifier = NotifierSettings.from_environ(environ)

    # Then the defaults apply: 30 days of runs, links for the 7 days S3 allows
    assert webhook.retention_days == "30"
    assert notifier.link_expiry_seconds == "604800"


def test_process_environment_by_default(monkeypatch):
    # Given the variables in the process environment
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUNS_TABLE", "from-process")

    # When the settings are read without a mapping
    settings = SubmitterSettings.from_environ()

    # Then the process environment is used
    assert settings.runs_table == "from-process"


def test_variable_names_listed():
    # Given the transform settings
    # When their variable names are listed
    names = TransformSettings.variable_names()

    # Then every variable the function needs is there, once
    assert {"RUNS_TABLE", "ARTIFACTS_BUCKET", "SUBMIT_QUEUE_URL", "GIT_BASE_URL", "BITBUCKET_TOKEN_SECRET_ARN"} <= set(
        names
    )
    assert len(names) == len(set(names))


# GIT_BASE_URL


@pytest.mark.parametrize(
    "value",
    ["bitbucket.org", "git@bitbucket.org:highland", "ftp://bitbucket.org", "file:///srv/git", "//bitbucket.org"],
    ids=["no-scheme", "ssh", "ftp", "file", "scheme-relative"],
)
def test_invalid_git_base_url_rejected(value):
    # Given a GIT_BASE_URL that is not an http(s) URL
    environ = environment_with(GIT_BASE_URL=value)

    # When the settings are read
    with pytest.raises(SettingsError) as raised:
        TransformSettings.from_environ(environ)

    # Then the error names the variable, shows the value and gives an example
    assert "GIT_BASE_URL" in str(raised.value)
    assert repr(value) in str(raised.value)
    assert "https://bitbucket.org" in str(raised.value)


@pytest.mark.parametrize("value", ["https://bitbucket.org", "https://bitbucket.org/", "http://127.0.0.1:8418"])
def test_valid_git_base_url_accepted(value):
    # Given an https URL, or an http one as the local git server uses
    environ = environment_with(GIT_BASE_URL=value)

    # When the settings are read
    settings = TransformSettings.from_environ(environ)

    # Then the value is kept
    assert settings.git_base_url == value


def test_git_base_url_without_host_rejected():
    # Given a GIT_BASE_URL with a scheme and no host
    environ = environment_with(GIT_BASE_URL="https://")

    # When the settings are read
    # Then the error names the variable
    with pytest.raises(SettingsError, match="GIT_BASE_URL"):
        TransformSettings.from_environ(environ)


# LINK_EXPIRY_SECONDS and RETENTION_DAYS


@pytest.mark.parametrize(
    "value",
    ["0", "-60", "3600.5", "one week", "7d", "604801", "31536000"],
    ids=["zero", "negative", "decimal", "words", "unit", "one-over-maximum", "one-year"],
)
def test_invalid_link_expiry_rejected(value):
    # Given a LINK_EXPIRY_SECONDS that is not a whole number of seconds within S3's 7 days
    environ = environment_with(LINK_EXPIRY_SECONDS=value)

    # When the settings are read
    with pytest.raises(SettingsError) as raised:
        NotifierSettings.from_environ(environ)

    # Then the error names the variable and shows the value
    assert "LINK_EXPIRY_SECONDS" in str(raised.value)
    assert value in str(raised.value)


def test_link_expiry_above_maximum_gives_limit():
    # Given a link lifetime one second over S3's maximum
    environ = environment_with(LINK_EXPIRY_SECONDS="604801")

    # When the settings are read
    # Then the error gives the maximum
    with pytest.raises(SettingsError, match="604800"):
        NotifierSettings.from_environ(environ)


@pytest.mark.parametrize("value", ["1", "3600", "604800"])
def test_valid_link_expiry_accepted(value):
    # Given a link lifetime from one second to seven days
    environ = environment_with(LINK_EXPIRY_SECONDS=value)

    # When the settings are read
    settings = NotifierSettings.from_environ(environ)

    # Then it is kept
    assert settings.link_expiry_seconds == value


@pytest.mark.parametrize("value", ["0", "-1", "thirty", "1.5"])
def test_invalid_retention_days_rejected(value):
    # Given a RETENTION_DAYS that is not a positive whole number
    environ = environment_with(RETENTION_DAYS=value)

    # When the settings are read
    with pytest.raises(SettingsError) as raised:
        WebhookSettings.from_environ(environ)

    # Then the error names the variable and what it must be
    assert "RETENTION_DAYS" in str(raised.value)
    assert "positive whole number" in str(raised.value)


# Webhook policy variables


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIGNATURE_POLICY", "optional"),
        ("TAG_POLICY", "always"),
        ("DUPLICATE_WINDOW_SECONDS", "0"),
        ("SECRET_ROTATION_WINDOW_SECONDS", "one day"),
        ("ALLOWED_REPOSITORIES", " , "),
        ("DATA_CENTER_BASE_URL", "bitbucket.example.com"),
    ],
)
def test_invalid_webhook_policy_named(name, value):
    # Given a webhook policy variable with a value the function cannot use
    environ = environment_with(**{name: value})

    # When the settings are read
    # Then the error names the variable
    with pytest.raises(SettingsError, match=name):
        WebhookSettings.from_environ(environ)


def test_required_signature_needs_secret():
    # Given signatures required and no secret ARN
    environ = environment_with(SIGNATURE_POLICY="required", WEBHOOK_SECRET_ARN="")

    # When the settings are read
    with pytest.raises(SettingsError) as raised:
        WebhookSettings.from_environ(environ)

    # Then the error names both variables
    assert "WEBHOOK_SECRET_ARN" in str(raised.value)
    assert "SIGNATURE_POLICY" in str(raised.value)


def test_disabled_signature_needs_no_secret():
    # Given signature checks switched off and no secret ARN
    environ = environment_with(SIGNATURE_POLICY="disabled", WEBHOOK_SECRET_ARN="")

    # When the settings are read
    settings = WebhookSettings.from_environ(environ)

    # Then they are accepted
    assert settings.signature_policy == "disabled"


def test_allowed_repositories_split_on_commas():
    # Given a list of repository patterns with spaces and an empty entry
    environ = environment_with(ALLOWED_REPOSITORIES=" highland/* , ,WX/weather-stations ")

    # When the settings are read
    settings = WebhookSettings.from_environ(environ)

    # Then each pattern is kept without spaces
    assert settings.repository_patterns == ("highland/*", "WX/weather-stations")
