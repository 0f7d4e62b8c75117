"""Signed links to a run's page.

A link carries a token made of an expiry time and an HMAC-SHA256 over the run
id and that expiry, keyed with the stack's run link key (a Secrets Manager
secret). The page checks the token before it reads the run, so a request
without a valid token learns nothing about which runs exist. The link contains
no AWS credentials, so it keeps working when the signing function's role
credentials change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from bitbatch.secrets import SECRET_CACHE_SECONDS

# Binds the HMAC to this use of the key, so a token cannot be replayed as any other signature.
TOKEN_CONTEXT = b"bitbatch run page v1"
# "<expires_at>.<signature>": seconds since the epoch, then 32 bytes of HMAC-SHA256 in
# URL-safe base64 without padding (43 characters).
TOKEN_PATTERN = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


class TokenRejected(ValueError):
    """The run page token is missing, malformed, signed for another run or key, or expired.

    The message is written for the person who opened the link.
    """


def _signature(run_id: str, key: bytes, expires_at: int) -> bytes:
    message = b"\n".join((TOKEN_CONTEXT, run_id.encode("utf-8"), str(expires_at).encode("ascii")))
    return hmac.new(key, message, hashlib.sha256).digest()


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(run_id: str, key: bytes, expires_at: int) -> str:
    """Sign run_id until expires_at (seconds since the epoch) as "<expires_at>.<signature>"."""
    if not key:
        raise ValueError("the run link key is empty; store a long random value in the run link key secret")
    return f"{int(expires_at)}.{_encode(_signature(run_id, key, int(expires_at)))}"


def verify_token(run_id: str, token: str | None, key: bytes, now: float) -> None:
    """Raise TokenRejected with a reason unless token is a valid, unexpired token for run_id.

    The signature is checked before the expiry, so only a token this stack
    signed is ever called expired.
    """
    if not token:
        raise TokenRejected("This link has no access token. Open the run page from the link in the email.")

    match = TOKEN_PATTERN.fullmatch(token)
    if match is None:
        raise TokenRejected("The access token in this link is malformed. Copy the whole link from the email.")
    expiry_text, signature_text = match.groups()
    signature = _decode(signature_text)

    expires_at = int(expiry_text)
    expected = _signature(run_id, key, expires_at)
    if not hmac.compare_digest(signature, expected):
        raise TokenRejected(
            "The access token in this link is not valid for this run. Open the run page from the link in "
            "the email; links stop working when the stack's run link key is replaced."
        )

    if now >= expires_at:
        expired_on = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise TokenRejected(f"This link expired on {expired_on}. Ask the stack's operator for a new link.")


def check_token(run_id: str, token: str | None, key: bytes, now: float) -> bool:
    """Return whether token is a valid, unexpired token for run_id."""
    try:
        verify_token(run_id, token, key, now)
    except TokenRejected:
        return False
    return True


def run_page_url(api_base_url: str, run_id: str, key: bytes, expires_at: int) -> str:
    """Return the signed link to GET /runs/{run_id} on the HTTP API at api_base_url."""
    token = make_token(run_id, key, expires_at)
    return f"{api_base_url.rstrip('/')}/runs/{quote(run_id, safe='')}?{urlencode({'token': token})}"


class RunPageLinks:
    """Makes run page links for the notifier, reading the key and base URL only when a link is needed.

    read_key and read_api_base_url are expected to cache, as SecretReader and
    the Powertools parameter providers do.
    """

    def __init__(
        self,
        read_key: Callable[[], bytes],
        read_api_base_url: Callable[[], str],
        lifetime_seconds: int,
        clock: Callable[[], float] = time.time,
    ):
        self._read_key = read_key
        self._read_api_base_url = read_api_base_url
        self._lifetime_seconds = lifetime_seconds
        self._clock = clock

    def url(self, run_id: str) -> str:
        expires_at = int(self._clock()) + self._lifetime_seconds
        return run_page_url(self._read_api_base_url(), run_id, self._read_key(), expires_at)


def run_page_links_from_aws(secrets, parameters, key_secret_arn: str, base_url_parameter: str, lifetime_seconds: int) -> RunPageLinks:
    """Build RunPageLinks that read the key from Secrets Manager and the API's URL from SSM, both cached.

    secrets is a SecretReader; parameters a Powertools SSMProvider.
    """
    return RunPageLinks(
        read_key=lambda: secrets.read(key_secret_arn).encode(),
        read_api_base_url=lambda: parameters.get(base_url_parameter, max_age=SECRET_CACHE_SECONDS),
        lifetime_seconds=lifetime_seconds,
    )
