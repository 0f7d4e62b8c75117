"""Signed run page links: tokens made and checked, expiry, tampering, malformed input, URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

import pytest

from bitbatch import run_links
from bitbatch.run_links import RunPageLinks, TokenRejected, check_token, make_token, run_page_url, verify_token
from bitbatch.settings import NotifierSettings, SettingsError

KEY = b"k3Yq9wL2mZp7Rt5Vx8Nc4Hb6Jd1Fg0Ks3Qe9Wu2Yi7Oa5Pl8Zx4Cv6Bn1Mm0Lk9Jh"
RUN_ID = "20261204T194832Z-3f9a1c0e2b7d"
NOW = 1_796_000_000  # 2026-11-30 00:53:20 UTC
FOURTEEN_DAYS = 14 * 86400


def rejection(token: str | None, run_id: str = RUN_ID, key: bytes = KEY, now: float = NOW) -> str:
    with pytest.raises(TokenRejected) as raised:
        verify_token(run_id, token, key, now)
    return str(raised.value)


def test_token_opens_its_run():
    # Given a token for a run that expires in 14 days
    token = make_token(RUN_ID, KEY, NOW + FOURTEEN_DAYS)

    # When it is checked for that run before it expires
    # Then it is valid
    assert check_token(RUN_ID, token, KEY, NOW)
    assert check_token(RUN_ID, token, KEY, NOW + FOURTEEN_DAYS - 1)


def test_token_is_url_safe():
    # Given tokens for many expiry times, so every base64 character has a chance to appear
    tokens = [make_token(RUN_ID, KEY, NOW + offset) for offset in range(200)]

    # Then none holds a character that needs escaping in a query string
    for token in tokens:
        assert set(token) <= set("0123456789.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"), token


def test_token_is_hmac_of_run_and_expiry():
    # Given a token
    expires_at = NOW + 60
    token = make_token(RUN_ID, KEY, expires_at)

    # When its signature is computed independently
    message = b"bitbatch run page v1\n" + RUN_ID.encode() + b"\n" + str(expires_at).encode()
    expected = base64.urlsafe_b64encode(hmac.new(KEY, message, hashlib.sha256).digest()).rstrip(b"=").decode()

    # Then the token is the expiry and that signature
    assert token == f"{expires_at}.{expected}"


def test_other_run_rejected():
    # Given a token made for one run
    token = make_token(RUN_ID, KEY, NOW + FOURTEEN_DAYS)

    # When it is used for another run
    reason = rejection(token, run_id="20261204T194832Z-000000000000")

    # Then it is not valid, and the reason says so without naming any run
    assert "not valid for this run" in reason
    assert RUN_ID not in reason


def test_other_key_rejected():
    # Given a token signed with a key that was replaced since
    token = make_token(RUN_ID, b"the-previous-key", NOW + FOURTEEN_DAYS)

    # When it is checked with the current key
    reason = rejection(token)

    # Then it is not valid, and the reason mentions key replacement
    assert "not valid" in reason
    assert "key is replaced" in reason


def test_extended_expiry_rejected():
    # Given a token whose expiry was changed to a later time by hand
    token = make_token(RUN_ID, KEY, NOW - 10)
    _, signature = token.split(".")
    forged = f"{NOW + FOURTEEN_DAYS}.{signature}"

    # When it is checked
    reason = rejection(forged)

    # Then the signature no longer matches
    assert "not valid" in reason


def test_expired_token_rejected():
    # Given a token that expired at NOW
    token = make_token(RUN_ID, KEY, NOW)

    # When it is checked at NOW and later
    at_expiry = rejection(token, now=NOW)
    later = rejection(token, now=NOW + 3600)

    # Then it is rejected as expired, with the date
    assert "expired on 2026-11-30 00:53 UTC" in at_expiry
    assert "expired" in later


def test_missing_token_rejected():
    # Given no token at all, or an empty one
    # When it is checked
    # Then the reason says the link has no token
    assert "no access token" in rejection(None)
    assert "no access token" in rejection("")


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "1796000000.",
        ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "17x6000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "١٧٩٦٠٠٠٠٠٠.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "1796000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "1796000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "1796000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "1796000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+/AA",
        "1796000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.extra",
        "1" * 13 + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x" * 10_000,
    ],
    ids=[
        "no-dot",
        "no-signature",
        "no-expiry",
        "letter-in-expiry",
        "arabic-digits",
        "short-signature",
        "long-signature",
        "padding",
        "standard-base64",
        "third-part",
        "expiry-too-long",
        "huge",
    ],
)
def test_malformed_token_rejected(token):
    # Given a token that is not "<digits>.<43 URL-safe base64 characters>"
    # When it is checked
    # Then it is rejected as malformed
    assert "malformed" in rejection(token)


def test_signature_compared_in_constant_time(monkeypatch):
    # Given a spy on hmac.compare_digest
    calls = []
    real_compare = hmac.compare_digest

    def spy(first, second):
        calls.append((first, second))
        return real_compare(first, second)

    monkeypatch.setattr(run_links.hmac, "compare_digest", spy)
    token = make_token(RUN_ID, KEY, NOW + 60)

    # When a valid and a wrong token are checked
    valid = check_token(RUN_ID, token, KEY, NOW)
    wrong = check_token("20261204T194832Z-000000000000", token, KEY, NOW)

    # Then both comparisons went through compare_digest
    assert valid is True
    assert wrong is False
    assert len(calls) == 2


def test_empty_key_refused():
    # Given an empty key, as an unset secret would give
    # When a token is made
    # Then it fails and names the secret
    with pytest.raises(ValueError, match="run link key is empty"):
        make_token(RUN_ID, b"", NOW)


def test_page_url_carries_token():
    # Given the API's base URL with a trailing slash
    url = run_page_url("https://k7x2m9q4ab.execute-api.eu-west-1.amazonaws.com/", RUN_ID, KEY, NOW + 60)

    # When the URL is split
    parts = urlsplit(url)
    token = parse_qs(parts.query)["token"][0]

    # Then it is GET /runs/{run_id} with a token valid for that run
    assert parts.scheme == "https"
    assert parts.netloc == "k7x2m9q4ab.execute-api.eu-west-1.amazonaws.com"
    assert parts.path == f"/runs/{RUN_ID}"
    assert check_token(RUN_ID, token, KEY, NOW)


def test_page_url_escapes_run_id():
    # Given a run id with characters that mean something in a URL
    run_id = "a/b?c#d"

    # When its page URL is made
    url = run_page_url("http://127.0.0.1:8080", run_id, KEY, NOW + 60)

    # Then the run id is one escaped path segment
    assert url.startswith("http://127.0.0.1:8080/runs/a%2Fb%3Fc%23d?token=")


def test_links_expire_after_lifetime():
    # Given links made at NOW with a 14-day lifetime
    reads = []

    def read_key() -> bytes:
        reads.append("key")
        return KEY

    links = RunPageLinks(read_key, lambda: "http://127.0.0.1:8080", FOURTEEN_DAYS, clock=lambda: NOW)

    # When a link is made
    token = parse_qs(urlsplit(links.url(RUN_ID)).query)["token"][0]

    # Then it works until the lifetime ends, and the key was read for it
    assert check_token(RUN_ID, token, KEY, NOW + FOURTEEN_DAYS - 1)
    assert not check_token(RUN_ID, token, KEY, NOW + FOURTEEN_DAYS)
    assert reads == ["key"]


@pytest.mark.parametrize("value", ["0", "-5", "fourteen days"])
def test_invalid_link_lifetime_named(value):
    # Given the notifier's environment with an unusable RUN_LINK_SECONDS
    environ = {
        "RUNS_TABLE": "bitbatch-runs",
        "ARTIFACTS_BUCKET": "bitbatch-artifacts",
        "SENDER_ADDRESS": "bitbatch@example.com",
        "FALLBACK_RECIPIENT": "data-team@example.com",
        "API_BASE_URL_PARAMETER": "/bitbatch/api-base-url",
        "RUN_LINK_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bitbatch/run-link-key-MnOpQr",
        "RUN_LINK_SECONDS": value,
    }

    # When the settings are read
    # Then the error names the variable
    with pytest.raises(SettingsError, match="RUN_LINK_SECONDS"):
        NotifierSettings.from_environ(environ)
