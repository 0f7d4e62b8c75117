from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from bitbatch.signature import sign
from bitbatch.webhook_secrets import CACHE_SECONDS, SecretUnavailable, WebhookSecrets

BODY = b'{"push": {}}'


class FakeSecretsManager:
    """Secrets Manager's GetSecretValue for one secret, with AWSCURRENT and AWSPREVIOUS."""

    def __init__(self):
        self.versions = {}
        self.calls = 0
        self.failure = None

    def rotate(self, value: str, age: timedelta = timedelta(0)) -> None:
        if "AWSCURRENT" in self.versions:
            self.versions["AWSPREVIOUS"] = self.versions["AWSCURRENT"]
        self.versions["AWSCURRENT"] = (value, datetime.now(UTC) - age)

    def get_secret_value(self, SecretId, VersionStage):  # noqa: N803 - boto3's parameter names
        self.calls += 1
        if self.failure:
            raise self.failure
        if VersionStage not in self.versions:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "GetSecretValue")
        value, created = self.versions[VersionStage]
        return {"SecretString": value, "CreatedDate": created}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client():
    fake = FakeSecretsManager()
    fake.rotate("first-secret", age=timedelta(days=30))
    return fake


def test_current_secret_accepted(client):
    secrets = WebhookSecrets(client, "arn:secret", rotation_window_seconds=3600)

    assert secrets.verify(BODY, sign("first-secret", BODY))
    assert not secrets.verify(BODY, sign("other-secret", BODY))
    assert not secrets.verify(BODY, None)


def test_previous_secret_accepted_within_window(client):
    # Given the secret was rotated ten minutes ago
    client.rotate("second-secret", age=timedelta(minutes=10))
    secrets = WebhookSecrets(client, "arn:secret", rotation_window_seconds=3600)

    # Then deliveries signed with either secret are accepted
    assert secrets.verify(BODY, sign("second-secret", BODY))
    assert secrets.verify(BODY, sign("first-secret", BODY))


def test_previous_secret_rejected_after_window(client):
    client.rotate("second-secret", age=timedelta(hours=2))
    secrets = WebhookSecrets(client, "arn:secret", rotation_window_seconds=3600)

    assert secrets.verify(BODY, sign("second-secret", BODY))
    assert not secrets.verify(BODY, sign("first-secret", BODY))


def test_mismatch_rereads_changed_secret(client):
    # Given a warm cache holding the first secret
    clock = Clock()
    secrets = WebhookSecrets(client, "arn:secret", rotation_window_seconds=3600, clock=clock)
    assert secrets.verify(BODY, sign("first-secret", BODY))

    # When the secret changes and a delivery signed with the new one arrives a minute later
    client.rotate("second-secret")
    clock.now += 60

    # Then the mismatch re-reads the secret and accepts the delivery
    assert secrets.verify(BODY, sign("second-secret", BODY))


def test_cache_spares_secrets_manager(client):
    clock = Clock()
    secrets = WebhookSecrets(client, "arn:secret", rotation_window_seconds=3600, clock=clock)

    for _ in range(20):
        assert secrets.verify(BODY, sign("first-secret", BODY))
    calls_while_cached = client.calls
    for _ in range(20):
        secrets.verify(BODY, sign("forged", BODY))

    # One read of both stages, then at most one re-read for the burst of forged signatures
    assert calls_while_cached == 2
    assert client.calls <= calls_while_cached + 2
    clock.now += CACHE_SECONDS + 1
    secrets.verify(BODY, sign("first-secret", BODY))
    assert client.calls > calls_while_cached


def test_unreadable_secret_raises_unavailable(client):
    client.failure = ClientError({"Error": {"Code": "InternalServiceError"}}, "GetSecretValue")
    secrets = WebhookSecrets(client, "arn:secret", rotation_window_seconds=3600)

    with pytest.raises(SecretUnavailable, match="InternalServiceError|ClientError"):
        secrets.verify(BODY, sign("first-secret", BODY))
