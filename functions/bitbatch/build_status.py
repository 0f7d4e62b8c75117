"""Bitbucket build status on the pushed commit, linking to the run page.

Bitbucket Cloud and Data Center both keep one status per key and commit, so
INPROGRESS, then SUCCESSFUL or FAILED, posted with the same key show as one
entry that changes state. Publishing is best effort. publish() retries what a
retry can fix, logs the rest and returns False instead of raising for an HTTP
or network problem, so the caller carries on with the run whatever Bitbucket
does.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from bitbatch.model import CLOUD, DATA_CENTER, Run, RunStatus
from bitbatch.observability import logger

if TYPE_CHECKING:
    from bitbatch.checkout import Credentials

DEFAULT_CLOUD_API_URL = "https://api.bitbucket.org"

# credentials.read_credentials gives a bare token this user name. Such a token is a
# Cloud access token or a Data Center HTTP access token, and both go as Bearer.
ACCESS_TOKEN_USERNAME = "x-token-auth"

KEY_PREFIX = "bitbatch"
# Bitbucket Cloud rejects a longer key with 400 "Ensure this value has at most 40 characters".
MAX_KEY_LENGTH = 40
KEY_SUFFIX_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

DEFAULT_NAME = "bitbatch"
# Limits that Bitbucket Cloud and Server enforce with a 400, as reported in
# jenkinsci/bitbucket-branch-source-plugin pull request 928: name below 255
# characters, url below 450.
# NOTE: no limit for description is documented. It is cut like name, so that a
# long failure reason cannot make Bitbucket reject the whole status.
MAX_TEXT_LENGTH = 254
MAX_URL_LENGTH = 449

# A full SHA-1 commit id has 40 hex digits and a SHA-256 one 64. Short ids have at least 7.
COMMIT_PATTERN = re.compile(r"[0-9a-fA-F]{7,64}")

# Maximum wait taken for a Retry-After header. The submitter and notifier
# functions time out after 30 s, so a longer wait would cost the run more than
# a missing status.
MAX_RETRY_AFTER_SECONDS = 5.0
RESPONSE_READ_BYTES = 4096
RESPONSE_EXCERPT_CHARACTERS = 200
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")


class BuildState(StrEnum):
    """State of a build status, in Bitbucket Cloud's words."""

    INPROGRESS = "INPROGRESS"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    STOPPED = "STOPPED"  # a cancelled run, which Data Center calls CANCELLED

    def for_product(self, product: str) -> str:
        if self is BuildState.STOPPED and product == DATA_CENTER:
            return "CANCELLED"
        return self.value


@dataclass(frozen=True)
class BuildStatus:
    """The state, run page link, description and name that Bitbucket shows on the commit."""

    state: BuildState
    run_url: str
    description: str
    name: str = DEFAULT_NAME

    def __post_init__(self) -> None:
        # A plain string such as "FAILED" is accepted too. An unknown state raises ValueError here.
        object.__setattr__(self, "state", BuildState(self.state))


def status_for_run(run: Run, run_url: str) -> BuildStatus | None:
    """Return the build status for the run's current status, or None for a skipped run, which never had a job."""
    if run.status == RunStatus.SKIPPED:
        return None
    if run.status == RunStatus.SUCCEEDED:
        return BuildStatus(BuildState.SUCCESSFUL, run_url, "Job succeeded")
    if run.status == RunStatus.FAILED:
        reason = run.failure_reason or "no reason recorded"
        return BuildStatus(BuildState.FAILED, run_url, f"Failed: {reason}")
    descriptions = {RunStatus.SUBMITTED: "Job submitted to AWS Batch", RunStatus.RUNNING: "Job running"}
    return BuildStatus(BuildState.INPROGRESS, run_url, descriptions.get(run.status, "Preparing the job"))


def build_key(suffix: str | None = None) -> str:
    """Return the status key "bitbatch", or "bitbatch-<suffix>" so that two stacks on one repository keep apart."""
    if not suffix:
        return KEY_PREFIX
    if not KEY_SUFFIX_PATTERN.fullmatch(suffix):
        raise ValueError(
            f"build status key suffix {suffix!r} is invalid; use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    key = f"{KEY_PREFIX}-{suffix}"
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(
            f"build status key {key!r} has {len(key)} characters and Bitbucket Cloud accepts at most "
            f"{MAX_KEY_LENGTH}; shorten the suffix to {MAX_KEY_LENGTH - len(KEY_PREFIX) - 1} characters or fewer"
        )
    return key


def authorization_header(credentials: Credentials) -> str:
    """Return Bearer for an access token (user name x-token-auth), else Basic with the user name and token."""
    if credentials.username == ACCESS_TOKEN_USERNAME:
        return f"Bearer {credentials.password}"
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _clean_text(text: str) -> str:
    """Replace control characters (CR, LF, tab ...) with one space and cut the text to the length Bitbucket takes."""
    flat = CONTROL_CHARACTERS.sub(" ", text).strip()
    if len(flat) <= MAX_TEXT_LENGTH:
        return flat
    return flat[: MAX_TEXT_LENGTH - 1] + "…"


class _RejectRedirects(urllib.request.HTTPRedirectHandler):
    """Turn a redirect into an HTTPError.

    urllib would follow a redirect of the POST as a GET without the body,
    carrying the Authorization header to whatever host the Location names.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} not followed", headers, fp)


@dataclass(frozen=True)
class _Attempt:
    published: bool
    retryable: bool
    http_status: int | None = None
    response_body: str | None = None
    error: str | None = None
    retry_after_seconds: float | None = None


class BuildStatusPublisher:
    """Post build statuses to Bitbucket Cloud or Data Center, with retries; disabled without credentials.

    The constructor raises ValueError for an invalid base URL, key suffix or
    retry setting, because those are deployment mistakes. publish() returns
    False instead of raising for an HTTP or network problem.
    """

    def __init__(
        self,
        cloud_api_url: str = DEFAULT_CLOUD_API_URL,
        data_center_base_url: str | None = None,
        credentials: Credentials | None = None,
        timeout_seconds: float = 5,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        *,
        key_suffix: str | None = None,
        max_total_seconds: float = 10,
        opener: urllib.request.OpenerDirector | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not _is_http_url(cloud_api_url):
            raise ValueError(f"Bitbucket Cloud API URL {cloud_api_url!r} must be an http(s) URL with a host")
        if data_center_base_url and not _is_http_url(data_center_base_url):
            raise ValueError(
                f"Bitbucket Data Center base URL {data_center_base_url!r} must be empty or an http(s) URL "
                "with a host, for example https://bitbucket.example.com"
            )
        if attempts < 1:
            raise ValueError(f"attempts={attempts} must be 1 or more")
        if timeout_seconds <= 0 or max_total_seconds <= 0 or backoff_seconds < 0:
            raise ValueError(
                f"timeout_seconds={timeout_seconds} and max_total_seconds={max_total_seconds} must be above 0, "
                f"backoff_seconds={backoff_seconds} 0 or more"
            )

        self.key = build_key(key_suffix)
        self._cloud_api_url = cloud_api_url.rstrip("/")
        self._data_center_base_url = data_center_base_url.rstrip("/") if data_center_base_url else None
        self._credentials = credentials
        self._timeout_seconds = timeout_seconds
        self._attempts = attempts
        self._backoff_seconds = backoff_seconds
        self._max_total_seconds = max_total_seconds
        self._opener = opener or urllib.request.build_opener(_RejectRedirects)
        self._clock = clock
        self._sleep = sleep

    @property
    def enabled(self) -> bool:
        return self._credentials is not None

    def publish(self, run: Run, status: BuildStatus) -> bool:
        """Post the status for the run's commit; True when Bitbucket accepted it.

        Returns False, after logging why, when no credentials are configured,
        the run or status cannot make a valid request, or every attempt failed.
        """
        log_keys = {**run.log_keys, "product": run.product, "build_state": str(status.state), "key": self.key}
        if self._credentials is None:
            logger.debug("build status not published: no Bitbucket token is configured", extra=log_keys)
            return False

        endpoint, reason = self.endpoint(run)
        if endpoint is None:
            logger.warning("build status not published", extra={**log_keys, "reason": reason})
            return False
        reason = _url_problem(status.run_url)
        if reason:
            logger.warning("build status not published", extra={**log_keys, "reason": reason})
            return False

        request = urllib.request.Request(
            endpoint,
            data=json.dumps(self.body(run, status)).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "bitbatch"},
        )
        # Unredirected, so even an opener that follows redirects does not send it on.
        request.add_unredirected_header("Authorization", authorization_header(self._credentials))
        return self._send(request, {**log_keys, "endpoint": endpoint})

    def endpoint(self, run: Run) -> tuple[str | None, str | None]:
        """Return the build status URL for the run's commit, or None and the reason it cannot be built."""
        owner, _, slug = run.repository.partition("/")
        if not owner or not slug or "/" in slug or {owner, slug} & {".", ".."}:
            expected = "PROJECT_KEY/slug" if run.product == DATA_CENTER else "workspace/slug"
            return None, f"repository {run.repository!r} is not {expected}"
        if not COMMIT_PATTERN.fullmatch(run.commit or ""):
            return None, f"commit {run.commit!r} is not a hex commit id"
        owner, slug, commit = quote(owner, safe=""), quote(slug, safe=""), quote(run.commit, safe="")

        if run.product == CLOUD:
            return f"{self._cloud_api_url}/2.0/repositories/{owner}/{slug}/commit/{commit}/statuses/build", None
        if run.product == DATA_CENTER:
            if not self._data_center_base_url:
                return None, (
                    "no Bitbucket Data Center base URL is configured; set DATA_CENTER_BASE_URL "
                    "(stack parameter DataCenterBaseUrl), for example https://bitbucket.example.com"
                )
            path = f"/rest/api/latest/projects/{owner}/repos/{slug}/commits/{commit}/builds"
            return self._data_center_base_url + path, None
        return None, f"unknown Bitbucket product {run.product!r}; expected {CLOUD} or {DATA_CENTER}"

    def body(self, run: Run, status: BuildStatus) -> dict[str, str]:
        """Return the JSON body.

    Cloud takes the branch or tag as refname (short name), Data Center as ref (full name).
    """
        body = {
            "key": self.key,
            "state": status.state.for_product(run.product),
            "url": status.run_url,
            "name": _clean_text(status.name),
            "description": _clean_text(status.description),
        }
        if run.product == CLOUD and run.ref_name:
            body["refname"] = run.ref_name
        if run.product == DATA_CENTER and run.ref:
            body["ref"] = run.ref
        return body

    def _send(self, request: urllib.request.Request, log_keys: dict) -> bool:
        """Post the request until it succeeds, fails for good, or attempts or time run out."""
        deadline = self._clock() + self._max_total_seconds
        attempt = 0
        result = None
        while attempt < self._attempts:
            attempt += 1
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            result = self._attempt(request, min(self._timeout_seconds, remaining))
            if result.published:
                logger.info("build status published", extra={**log_keys, "http_status": result.http_status})
                return True
            if not result.retryable or attempt == self._attempts:
                break

            delay = self._backoff_seconds * 2 ** (attempt - 1)
            if result.retry_after_seconds is not None:
                delay = max(delay, min(result.retry_after_seconds, MAX_RETRY_AFTER_SECONDS))
            if self._clock() + delay >= deadline:
                break
            logger.info(
                "build status call failed; retrying",
                extra={
                    **log_keys,
                    "attempt": attempt,
                    "http_status": result.http_status,
                    "error": result.error,
                    "delay_seconds": delay,
                },
            )
            self._sleep(delay)

        logger.warning(
            "build status not published",
            extra={
                **log_keys,
                "attempts": attempt,
                "attempts_left": self._attempts - attempt,
                "http_status": result.http_status if result else None,
                "response_body": result.response_body if result else None,
                "error": result.error if result else f"no time left within {self._max_total_seconds} s",
            },
        )
        return False

    def _attempt(self, request: urllib.request.Request, timeout: float) -> _Attempt:
        try:
            with self._opener.open(request, timeout=timeout) as response:
                http_status = response.status
                body = response.read(RESPONSE_READ_BYTES)
        except urllib.error.HTTPError as error:
            try:
                body = error.read(RESPONSE_READ_BYTES) if error.fp else b""
            except (OSError, ValueError, http.client.HTTPException):  # ValueError: body already closed
                body = b""
            finally:
                error.close()
            return _Attempt(
                published=False,
                retryable=error.code == 429 or error.code >= 500,
                http_status=error.code,
                response_body=self._excerpt(body),
                error=f"HTTP {error.code}",
                retry_after_seconds=self._retry_after(error.headers.get("Retry-After") if error.headers else None),
            )
        except (OSError, http.client.HTTPException) as error:
            # URLError (connection refused, DNS), TimeoutError and a dropped connection all land here.
            return _Attempt(published=False, retryable=True, error=_describe(error))

        if 200 <= http_status < 300:
            return _Attempt(published=True, retryable=False, http_status=http_status)
        return _Attempt(
            published=False,
            retryable=False,
            http_status=http_status,
            response_body=self._excerpt(body),
            error=f"HTTP {http_status}",
        )

    def _excerpt(self, body: bytes) -> str:
        """Return the first characters of a response body for the log, on one line and without the token."""
        text = CONTROL_CHARACTERS.sub(" ", body.decode("utf-8", errors="replace"))
        if self._credentials and self._credentials.password:
            text = text.replace(self._credentials.password, "<token>")
        return text[:RESPONSE_EXCERPT_CHARACTERS]

    def _retry_after(self, value: str | None) -> float | None:
        """Return the seconds of wait a Retry-After header requests, as delta-seconds or an HTTP date.

        Returns None when the header is absent or invalid.
        """
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        return max(0.0, moment.timestamp() - self._clock())


def _url_problem(url: str) -> str | None:
    """Return why Bitbucket would reject the run URL, or None.

    The reason leaves out the query, which may contain the run page's token.
    """
    if not isinstance(url, str) or not _is_http_url(url):
        return f"run URL {_without_query(url)!r} is not an absolute http(s) URL, which Bitbucket requires"
    if CONTROL_CHARACTERS.search(url) or " " in url:
        return f"run URL {_without_query(url)!r} contains spaces or control characters"
    if len(url) > MAX_URL_LENGTH:
        return f"run URL has {len(url)} characters and Bitbucket accepts at most {MAX_URL_LENGTH}"
    return None


def _without_query(url) -> str:
    if not isinstance(url, str):
        return repr(url)
    return urlsplit(url)._replace(query="", fragment="").geturl()[:100]


def _describe(error: BaseException) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
