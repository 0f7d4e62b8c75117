"""The run page as a person sees it: the link in a run's email opened in headless Chromium on the local stack.

Chromium comes from Debian's chromium package (`apt-get install -y chromium`).
Without it these tests are skipped, unless BITBATCH_REQUIRE_BROWSER is set, as
.ci/run does, which makes them fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from bitbatch_local.payloads import cloud_push_payload, signed_delivery
from bitbatch_local.samplerepo import add_commit, build_sample_repository
from bitbatch_local.stack import LocalStack

pytestmark = pytest.mark.e2e

REPOSITORY = "weather/stations"
CHROMIUM = shutil.which("chromium")
# Flags for a quiet, throwaway browser. The resolver rule makes every host name unresolvable,
# so the browser reaches nothing but the loopback addresses the local stack serves on.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)
PHONE_WINDOW = (412, 915)
ROTATED_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIAROTATEDKEY000001",
    "AWS_SECRET_ACCESS_KEY": "rotated-secret-access-key-after-the-email",
    "AWS_SESSION_TOKEN": "rotated-session-token-after-the-email",
}


class Browser:
    """Headless Chromium, started with a new empty profile for each page."""

    def __init__(self, executable: str, profiles: Path):
        self._executable = executable
        self._profiles = profiles

    def _run(self, *arguments: str) -> subprocess.CompletedProcess:
        profile = tempfile.mkdtemp(prefix="chromium-", dir=self._profiles)
        command = [self._executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments]
        # The timeout only stops a hung browser; no assertion depends on timing.
        return subprocess.run(command, capture_output=True, timeout=120, check=True)

    def dom(self, url: str) -> str:
        """Return the page's DOM after Chromium loaded it."""
        return self._run("--dump-dom", url).stdout.decode("utf-8")

    def screenshot(self, url: str, path: Path, window: tuple[int, int] = PHONE_WINDOW) -> Path:
        self._run(f"--window-size={window[0]},{window[1]}", f"--screenshot={path}", url)
        return path


class VisibleText(HTMLParser):
    """The text a person sees on a page, and its links as (text, href)."""

    HIDDEN = ("head", "style", "script", "title")

    def __init__(self, page: str):
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._parts: list[str] = []
        self._hidden = 0
        self._href: str | None = None
        self._link_parts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self._hidden += 1
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._link_parts = []

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self._hidden -= 1
        if tag == "a" and self._href is not None:
            self.links.append((" ".join("".join(self._link_parts).split()), self._href))
            self._href = None

    def handle_data(self, data):
        if self._hidden:
            return
        self._parts.append(data)
        if self._href is not None:
            self._link_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._parts).split())


@pytest.fixture
def browser(tmp_path) -> Browser:
    if CHROMIUM is None:
        message = "chromium is not installed; install it with: apt-get update && apt-get install -y chromium"
        if os.environ.get("BITBATCH_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    profiles = tmp_path / "chromium-profiles"
    profiles.mkdir()
    return Browser(CHROMIUM, profiles)


@pytest.fixture
def sample(tmp_path):
    return build_sample_repository(tmp_path / "repos" / REPOSITORY)


@pytest.fixture
def stack(tmp_path, sample):
    with LocalStack(
        tmp_path / "repos", tmp_path / "work", runnable_timeout_seconds=1, function_log_path=tmp_path / "functions.log"
    ) as running:
        yield running


def push_and_wait(stack: LocalStack, repository_path: Path, commit: str, previous: str | None):
    payload = cloud_push_payload(repository_path, REPOSITORY, "main", commit, previous, stack.git.base_url)
    body, headers = signed_delivery(payload, stack.webhook_secret)
    request = urllib.request.Request(stack.webhook_url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        run_id = json.loads(response.read())["runs"][0]["run_id"]
    return stack.wait_for_run(run_id)


def page_link(stack: LocalStack) -> str:
    """Return the run page link in the one email the stack sent."""
    emails = stack.sent_emails()
    assert len(emails) == 1
    return next(line for line in emails[0].text.splitlines() if line.startswith(f"{stack.api_url}/runs/"))


def read_json(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG file's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_success_page_in_browser(stack, sample, browser, tmp_path):
    # Given a push whose run succeeded and was emailed
    run = push_and_wait(stack, sample.path, sample.head_commit, sample.previous_commit)
    assert run.status == "SUCCEEDED"
    link = page_link(stack)

    # When the email's link is opened in Chromium, at a phone's width
    page = VisibleText(browser.dom(link))
    screenshot = browser.screenshot(link, tmp_path / "run-page.png")

    # Then the person sees the outcome, the push, every stage and the output files
    assert "Succeeded" in page.text
    assert "weather/stations · main" in page.text
    assert sample.head_commit[:12] in page.text
    assert run.pusher_name in page.text
    for stage in ("Received", "Checked out", "Queued", "Submitted", "Running"):
        assert stage in page.text
    files = dict(page.links)
    assert "report.html" in files
    assert "result.json" in files
    assert "Open the job's log in CloudWatch" in files
    assert png_size(screenshot) == PHONE_WINDOW

    # and the report link on the page opens the report
    assert "data/stations.csv" in fetch(files["report.html"]).decode()


def test_failure_page_in_browser(stack, sample, browser):
    # Given a push whose job failed on an invalid JSON file
    commit = add_commit(sample.path, {"data/broken.json": '{"station": "ST01",\n  "limit": }\n'}, "Add broken limits")
    run = push_and_wait(stack, sample.path, commit, sample.head_commit)
    assert run.status == "FAILED"
    link = page_link(stack)

    # When the failure email's link is opened in Chromium
    page = VisibleText(browser.dom(link))

    # Then the person sees that it failed, why, and that there is no output
    assert "Failed" in page.text
    assert "Reason:" in page.text
    assert "exited with code 1" in page.text
    assert "data/broken.json is not valid JSON" in page.text
    assert "This run has no output files." in page.text
    assert commit[:12] in page.text


@pytest.mark.parametrize(
    ("case", "files", "shown_reason"),
    [
        ("invalid bitbatch.yml", {"bitbatch.yml": "job:\n  vcpu: 3\n"}, "line 2: job.vcpu: 3 is not allowed"),
        (
            "job stuck in RUNNABLE",
            {"bitbatch.yml": "version: 1\njob:\n  vcpu: 16\n  memory: 32768\n"},
            "the job could not start: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
        ),
    ],
    ids=["invalid-config", "stuck-job"],
)
def test_run_that_never_ran_job_in_browser(stack, sample, browser, case, files, shown_reason):
    # Given a push that fails before its job runs
    commit = add_commit(sample.path, files, f"Push a {case}")
    run = push_and_wait(stack, sample.path, commit, sample.head_commit)
    assert run.status == "FAILED"
    link = page_link(stack)

    # When the one email's link is opened in Chromium
    page = VisibleText(browser.dom(link))

    # Then the page shows the failure and its reason
    assert "Failed" in page.text
    assert shown_reason in page.text
    assert "This run has no output files." in page.text


def test_tampered_link_refused_in_browser(stack, sample, browser):
    # Given the link from a successful run's email, with its expiry moved by hand
    push_and_wait(stack, sample.path, sample.head_commit, sample.previous_commit)
    link = page_link(stack)
    parts = urlsplit(link)
    token = parse_qs(parts.query)["token"][0]
    expires_at, signature = token.split(".")
    tampered = f"{parts.scheme}://{parts.netloc}{parts.path}?token={int(expires_at) + 86400}.{signature}"

    # When it is opened in Chromium
    page = VisibleText(browser.dom(tampered))

    # Then the page refuses with the reason and shows nothing of the run
    assert "This link does not open a run" in page.text
    assert "not valid for this run" in page.text
    assert "weather/stations" not in page.text
    assert "report.html" not in page.text


def test_link_outlives_rotated_credentials(stack, sample, browser, monkeypatch):
    # Given a successful run's email, sent while the functions ran with the first credentials
    push_and_wait(stack, sample.path, sample.head_commit, sample.previous_commit)
    link = page_link(stack)
    assert "X-Amz-" not in stack.sent_emails()[0].text

    # When the emulated Lambda credentials change before anyone opens the link. boto3 reads credentials
    # once per session, so the run page function starts cold, as in a new execution environment: a new
    # boto3 session reads the changed variables, and the handler builds new clients from it.
    for name, value in ROTATED_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    from handlers import runs

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    runs.dependencies.cache_clear()
    page = VisibleText(browser.dom(link))
    document = read_json(link)
    output_links = {item["name"]: item["url"] for item in document["output_files"]}

    # Then the page still opens, in the browser and as JSON
    assert "Succeeded" in page.text
    assert "report.html" in dict(page.links)
    assert document["status"] == "SUCCEEDED"

    # and its S3 links were signed just now, with the new credentials, and download the files
    query = parse_qs(urlsplit(output_links["report.html"]).query)
    assert query["X-Amz-Credential"][0].startswith(ROTATED_CREDENTIALS["AWS_ACCESS_KEY_ID"] + "/")
    assert query["X-Amz-Security-Token"] == [ROTATED_CREDENTIALS["AWS_SESSION_TOKEN"]]
    assert "data/stations.csv" in fetch(output_links["report.html"]).decode()
    assert json.loads(fetch(output_links["result.json"]))["files"]
