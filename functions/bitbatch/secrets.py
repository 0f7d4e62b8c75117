"""Secrets Manager values, cached across invocations of a warm function."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parameters import SecretsProvider

# Long enough to spare Secrets Manager on busy webhooks, short enough that a
# rotated secret is picked up within minutes.
SECRET_CACHE_SECONDS = 300


class SecretReader:
    def __init__(self, secretsmanager_client):
        self._provider = SecretsProvider(boto3_client=secretsmanager_client)

    def read(self, secret_id: str) -> str:
        value = self._provider.get(secret_id, max_age=SECRET_CACHE_SECONDS)
        if not isinstance(value, str) or not value:
            raise ValueError(f"secret {secret_id} has no string value; store the value as plain text")
        return value
