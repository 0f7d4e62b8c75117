"""Bitbucket webhook signatures: HMAC-SHA256 over the raw body bytes."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """Return the X-Hub-Signature value Bitbucket sends for body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def is_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Check an X-Hub-Signature header against body in constant time."""
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().lower().encode())
