"""Webhook secrets from Secrets Manager, with caching and a rotation window.

During a rotation Bitbucket may still sign with the old secret. The version
labelled AWSPREVIOUS is accepted while the current version is younger than
the rotation window; after that only AWSCURRENT is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from bitbatch import signature

# Long enough to spare Secrets Manager on busy webhooks, short enough that a
# rotated secret is picked up within minutes even without a mismatch.
CACHE_SECONDS = 300
# A signature mismatch re-reads the secret at most this often, so a flood of
# badly signed requests cannot flood Secrets Manager too. A delivery signed
# with a secret changed within this interval can get a 401.
REFRESH_INTERVAL_SECONDS = 2


class SecretUnavailable(RuntimeError):
    """The webhook secret could not be read; a later retry may succeed."""


@dataclass(frozen=True)
class SecretVersion:
    value: str
    created_at: datetime


class WebhookSecrets:
    def __init__(self, secretsmanager_client, secret_id: str, rotation_window_seconds: int, clock=time.monotonic):
        self._client = secretsmanager_client
        self._secret_id = secret_id
        self._rotation_window_seconds = rotation_window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._current: SecretVersion | None = None
        self._previous: SecretVersion | None = None
        self._loaded_at = float("-inf")

    def verify(self, body: bytes, header: str | None) -> bool:
        """Check the X-Hub-Signature header against the current secret, then the previous one."""
        if not header:
            return False
        self._load(force=False)
        if self._matches(body, header):
            return True
        if self._load(force=True):
            return self._matches(body, header)
        # Not re-read: the cached versions are at most REFRESH_INTERVAL_SECONDS old.
        return False

    def _matches(self, body: bytes, header: str) -> bool:
        for version in self._accepted_versions():
            if signature.is_valid(version.value, body, header):
                return True
        return False

    def _accepted_versions(self) -> list[SecretVersion]:
        with self._lock:
            current, previous = self._current, self._previous
        versions = [current] if current else []
        if current and previous:
            age = (datetime.now(UTC) - current.created_at).total_seconds()
            if age <= self._rotation_window_seconds:
                versions.append(previous)
        return versions

    def _load(self, force: bool) -> bool:
        """Read both versions when the cache is stale; returns whether it read them."""
        now = self._clock()
        with self._lock:
            age = now - self._loaded_at
            if age < (REFRESH_INTERVAL_SECONDS if force else CACHE_SECONDS):
                return False
            self._loaded_at = now
        current = self._read("AWSCURRENT")
        if current is None:
            raise SecretUnavailable(f"secret {self._secret_id} has no current version; store the webhook secret in it")
        previous = self._read("AWSPREVIOUS")
        with self._lock:
            self._current, self._previous = current, previous
        return True

    def _read(self, stage: str) -> SecretVersion | None:
        try:
            response = self._client.get_secret_value(SecretId=self._secret_id, VersionStage=stage)
        except (ClientError, BotoCoreError) as error:
            code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
            if code == "ResourceNotFoundException" and stage != "AWSCURRENT":
                return None
            with self._lock:
                self._loaded_at = float("-inf")  # read again on the next request
            raise SecretUnavailable(f"reading secret {self._secret_id} ({stage}) failed: {type(error).__name__}") from error
        value = response.get("SecretString")
        if not value:
            raise SecretUnavailable(f"secret {self._secret_id} ({stage}) has no string value; store the secret as plain text")
        created_at = response.get("CreatedDate") or datetime.now(UTC)
        return SecretVersion(value=value, created_at=created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC))
