"""Bitbucket credentials read from the token secret, for git fetches and the REST API."""

from __future__ import annotations

import json
from dataclasses import dataclass

# Bitbucket Cloud takes an access token as the password of this literal user name.
BITBUCKET_TOKEN_USERNAME = "x-token-auth"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # keep the token out of any log or traceback
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def read_credentials(secret_value: str) -> Credentials:
    """Read the token secret: a bare token, or JSON {"username": ..., "token": ...}.

    Bitbucket Data Center HTTP access tokens and Cloud API tokens go with a
    user name, so the JSON form lets the secret name it.
    """
    text = secret_value.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError("the Bitbucket token secret starts with { but is not valid JSON") from error
        username, token = document.get("username"), document.get("token")
        if not isinstance(username, str) or not isinstance(token, str) or not username or not token:
            raise ValueError('the Bitbucket token secret must be a bare token or {"username": "...", "token": "..."}')
        return Credentials(username, token)
    return Credentials(BITBUCKET_TOKEN_USERNAME, text)
