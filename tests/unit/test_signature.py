"""Bitbucket's X-Hub-Signature: HMAC-SHA256 over the raw body, sent as sha256=<hex>."""

from __future__ import annotations

import pytest

from bitbatch.signature import is_valid, sign

SECRET = "bitbatch-sample-secret"
BODY = b'{"push":{"changes":[]},"repository":{"full_name":"highland/weather-stations"}}'

# Digest from `openssl dgst -sha256 -hmac key`, an implementation apart from Python's hmac.
KNOWN_KEY = "key"
KNOWN_MESSAGE = b"The quick brown fox jumps over the lazy dog"
KNOWN_DIGEST = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"


def test_sign_matches_known_digest():
    # Given a key and message with a published HMAC-SHA256
    # When the message is signed
    header = sign(KNOWN_KEY, KNOWN_MESSAGE)

    # Then the header is the prefix and the lower-case hex digest
    assert header == "sha256=" + KNOWN_DIGEST


def test_valid_signature_accepted():
    # Given a header computed with the same secret over the same bytes
    header = sign(SECRET, BODY)

    # When it is checked
    # Then it is accepted
    assert is_valid(SECRET, BODY, header)


def test_wrong_secret_rejected():
    # Given a header signed with another secret
    header = sign("another-secret", BODY)

    # When it is checked with the configured secret
    # Then it is rejected
    assert not is_valid(SECRET, BODY, header)


@pytest.mark.parametrize("header", [None, ""], ids=["absent", "empty"])
def test_missing_signature_rejected(header):
    # Given a delivery without a signature, as Bitbucket sends when no secret is set
    # When it is checked
    # Then it is rejected
    assert not is_valid(SECRET, BODY, header)


@pytest.mark.parametrize(
    "prefix",
    ["", "sha1=", "sha512=", "sha256:", "sha256 "],
    ids=["no-prefix", "sha1", "sha512", "colon", "space"],
)
def test_wrong_prefix_rejected(prefix):
    # Given the right digest behind a prefix other than sha256=
    digest = sign(SECRET, BODY).removeprefix("sha256=")

    # When it is checked
    # Then it is rejected
    assert not is_valid(SECRET, BODY, prefix + digest)


def test_upper_case_hex_accepted():
    # Given the right digest written in upper-case hex
    digest = sign(SECRET, BODY).removeprefix("sha256=")

    # When it is checked
    # Then it is accepted, because hex digits are case-insensitive
    assert is_valid(SECRET, BODY, "sha256=" + digest.upper())


def test_trailing_whitespace_accepted():
    # Given the right header with a trailing newline, as some proxies leave it
    header = sign(SECRET, BODY) + "\n"

    # When it is checked
    # Then it is accepted
    assert is_valid(SECRET, BODY, header)


@pytest.mark.parametrize("position", [0, len(BODY) // 2, len(BODY) - 1], ids=["first", "middle", "last"])
def test_body_changed_by_one_byte_rejected(position):
    # Given a header for the original body
    header = sign(SECRET, BODY)

    # When one byte of the body is changed
    altered = bytearray(BODY)
    altered[position] ^= 0x01

    # Then the altered body is rejected
    assert not is_valid(SECRET, bytes(altered), header)


def test_body_with_extra_byte_rejected():
    # Given a header for the original body
    header = sign(SECRET, BODY)

    # When a newline is appended, as a re-serialised body might have
    # Then the longer body is rejected
    assert not is_valid(SECRET, BODY + b"\n", header)


def test_truncated_digest_rejected():
    # Given the first half of the right digest
    header = sign(SECRET, BODY)[: len("sha256=") + 32]

    # When it is checked
    # Then it is rejected
    assert not is_valid(SECRET, BODY, header)


def test_non_ascii_header_rejected():
    # Given a header with non-ASCII characters where the hex digits belong
    header = "sha256=" + "é" * 64

    # When it is checked
    # Then it is rejected without raising
    assert not is_valid(SECRET, BODY, header)
