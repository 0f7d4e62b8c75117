"""The run page as plain logic: access checks, escaping, stages and durations, JSON, headers, links."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest

from bitbatch.model import Run, RunStatus
from bitbatch.run_links import make_token
from bitbatch.run_page import (
    LogLocation,
    OutputFile,
    OutputListing,
    PageRequest,
    format_duration,
    format_size,
    log_stream_url,
    prefers_json,
    serve_run_page,
    stages_of,
)
from bitbatch.runs import RunNotFound

KEY = b"Zq4Lm8Rt2Vx6Nc0Hb5Jd9Fg3Ks7Qe1Wu4Yi8Oa2Pl6Zx0Cv5Bn9Mm3Lk7Jh1Gf5Ds"
NOW = 1_796_000_000.0
RUN_ID = "20261204T194832Z-3f9a1c0e2b7d"
COMMIT = "7de5c744462044a30d3f711293f80ff03adf7d79"
LOGS = LogLocation(region="eu-west-1", log_group="/aws/batch/bitbatch-job")
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def sample_run(**changes) -> Run:
    run = Run(
        run_id=RUN_ID,
        product="cloud",
        repository="highland/weather-stations",
        repository_uuid="{8c1f4e2a-5b7d-4c39-9e60-1a2b3c4d5e6f}",
        ref="refs/heads/main",
        ref_name="main",
        ref_type="branch",
        commit=COMMIT,
        previous_commit=None,
        commit_url=f"https://bitbucket.org/highland/weather-stations/commits/{COMMIT}",
        pusher_name="Ada Lovelace",
        pusher_email="ada@example.com",
        delivery_id=None,
        status=RunStatus.SUCCEEDED,
        stages={
            "RECEIVED": "2026-12-04T19:48:32.000000Z",
            "CHECKED_OUT": "2026-12-04T19:48:33.250000Z",
            "QUEUED": "2026-12-04T19:48:34.000000Z",
            "SUBMITTED": "2026-12-04T19:48:34.500000Z",
            "RUNNING": "2026-12-04T19:49:10.000000Z",
            "SUCCEEDED": "2026-12-04T19:53:15.000000Z",
        },
        output_prefix=f"runs/{RUN_ID}/output/",
        job_id="c2f84a1e-6d39-4b70-9e15-8a4d27f3b6c1",
        log_stream="bitbatch/default/7f3a9c2e1d5b4068a9e4c7b2f1d03e86",
    )
    return replace(run, **changes)


class StoredRuns:
    """Runs by id, recording every lookup."""

    def __init__(self, *runs: Run):
        self.runs = {run.run_id: run for run in runs}
        self.lookups: list[str] = []

    def get(self, run_id: str) -> Run:
        self.lookups.append(run_id)
        if run_id not in self.runs:
            raise RunNotFound(f"run {run_id} is not in the runs table")
        return self.runs[run_id]


class ListedOutputs:
    """A fixed listing, recording the prefixes asked for."""

    def __init__(self, *files: OutputFile, truncated: bool = False, unavailable: bool = False):
        self.listing = OutputListing(files=files, truncated=truncated, link_seconds=900, unavailable=unavailable)
        self.prefixes: list[str] = []

    def list(self, prefix: str) -> OutputListing:
        self.prefixes.append(prefix)
        return self.listing


REPORT = OutputFile(name="report.html", size=8402, url="http://127.0.0.1:9/bucket/report.html?X-Amz-Signature=ab")
RESULT = OutputFile(name="result.json", size=512, url="http://127.0.0.1:9/bucket/result.json?X-Amz-Signature=cd")


class PageText(HTMLParser):
    """The tags, attributes and visible text of an HTML page."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.links: list[tuple[str, str]] = []
        self._text: list[str] = []
        self._hidden = 0
        self._link: str | None = None
        self._link_text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)
        if tag in ("style", "title", "script"):
            self._hidden += 1
        if tag == "a":
            self._link = dict(attrs).get("href")
            self._link_text = []

    def handle_endtag(self, tag):
        if tag in ("style", "title", "script"):
            self._hidden -= 1
        if tag == "a" and self._link is not None:
            self.links.append(("".join(self._link_text).strip(), self._link))
            self._link = None

    def handle_data(self, data):
        if not self._hidden:
            self._text.append(data)
        if self._link is not None:
            self._link_text.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._text).split())


def open_page(run: Run | None = None, token: str | None = "valid", accept: str = BROWSER_ACCEPT, outputs=None, now=NOW):
    runs = StoredRuns(*(run and [run] or []))
    outputs = outputs or ListedOutputs(REPORT, RESULT)
    if token == "valid":
        token = make_token(RUN_ID, KEY, int(NOW) + 3600)
    response = serve_run_page(PageRequest(RUN_ID, token, accept), KEY, now, runs, outputs, LOGS)
    return response, runs, outputs


# Access


def test_valid_link_shows_run():
    # Given a stored run and a valid token
    # When the page is opened
    response, runs, outputs = open_page(sample_run())
    page = PageText(response.body)

    # Then it is an HTML page with the run's facts and files
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    assert "highland/weather-stations" in page.text
    assert "refs/heads/main" in page.text
    assert "Ada Lovelace" in page.text
    assert "Succeeded" in page.text
    assert "report.html" in page.text
    assert runs.lookups == [RUN_ID]
    assert outputs.prefixes == [f"runs/{RUN_ID}/output/"]


@pytest.mark.parametrize("token", [None, "", "1796003600.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "garbage"])
def test_invalid_token_reads_nothing(token):
    # Given a request without a valid token, for a run that exists
    # When the page is opened
    response, runs, outputs = open_page(sample_run(), token=token)

    # Then it is 403 and neither the run nor its files were read
    assert response.status_code == 403
    assert runs.lookups == []
    assert outputs.prefixes == []


def test_invalid_token_hides_existence():
    # Given the same invalid token for a stored run and for a run id that does not exist
    token = "1796003600.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

    # When both pages are opened
    for_stored, _, _ = open_page(sample_run(), token=token)
    for_missing, _, _ = open_page(None, token=token)

    # Then the responses are identical
    assert for_stored.status_code == for_missing.status_code == 403
    assert for_stored.body == for_missing.body
    assert for_stored.headers == for_missing.headers


def test_expired_link_explained():
    # Given a token that expired an hour ago
    token = make_token(RUN_ID, KEY, int(NOW) - 3600)

    # When the page is opened
    response, runs, _ = open_page(sample_run(), token=token)

    # Then it is 403 with the expiry in plain words, and the run was not read
    assert response.status_code == 403
    assert "expired on" in PageText(response.body).text
    assert runs.lookups == []


def test_unknown_run_is_404():
    # Given a valid token for a run that is not stored (its retention ended)
    # When the page is opened
    response, runs, _ = open_page(None)

    # Then it is 404 naming the run and why runs disappear
    assert response.status_code == 404
    assert RUN_ID in PageText(response.body).text
    assert "RetentionDays" in PageText(response.body).text
    assert runs.lookups == [RUN_ID]


@pytest.mark.parametrize("status", [200, 403, 404])
def test_headers_forbid_caching_and_referrer(status):
    # Given a page of each kind
    tokens = {200: "valid", 403: None, 404: "valid"}
    run = sample_run() if status != 404 else None

    # When it is opened
    response, _, _ = open_page(run, token=tokens[status])

    # Then it is never stored, never framed, and sends no Referer with the token
    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src" not in response.headers["Content-Security-Policy"]


# Escaping


def test_hostile_values_escaped():
    # Given a run whose every free-text field contains markup
    run = sample_run(
        repository=f"team/{HOSTILE}",
        ref=f"refs/heads/{HOSTILE}",
        ref_name=HOSTILE,
        pusher_name=HOSTILE,
        failure_reason=HOSTILE,
        status=RunStatus.FAILED,
    )
    hostile_file = OutputFile(name=f"{HOSTILE}.txt", size=3, url='http://127.0.0.1:9/b/k?a=1&b="2"')

    # When the page is opened
    response, _, _ = open_page(run, outputs=ListedOutputs(hostile_file))
    page = PageText(response.body)

    # Then no markup from the values became a tag or attribute, and the text shows them as written
    assert "script" not in page.tags
    assert "img" not in page.tags
    assert "onerror" not in {name for name, _ in page.attributes}
    assert HOSTILE in page.text
    assert (f"{HOSTILE}.txt", 'http://127.0.0.1:9/b/k?a=1&b="2"') in page.links


def test_script_commit_url_not_linked():
    # Given a run whose commit URL is a javascript: URL
    run = sample_run(commit_url="javascript:alert(document.cookie)")

    # When the page is opened
    response, _, _ = open_page(run)
    page = PageText(response.body)

    # Then the commit is shown but not linked
    assert COMMIT[:12] in page.text
    assert all(not href.startswith("javascript") for _, href in page.links)


def test_commit_linked_to_bitbucket():
    # Given a run with a Bitbucket commit URL
    # When the page is opened
    response, _, _ = open_page(sample_run())

    # Then the short commit links to it
    assert (COMMIT[:12], f"https://bitbucket.org/highland/weather-stations/commits/{COMMIT}") in PageText(response.body).links


# Stages and durations


def test_stages_in_time_order_with_durations():
    # Given a run whose stages are stored in no particular order
    stored = sample_run().stages
    run = sample_run(stages=dict(reversed(list(stored.items()))))

    # When its stages are read
    stages = stages_of(run)

    # Then they are in time order, each with the seconds since the one before
    assert [stage.status for stage in stages] == [
        "RECEIVED", "CHECKED_OUT", "QUEUED", "SUBMITTED", "RUNNING", "SUCCEEDED"
    ]
    assert [stage.seconds_since_previous for stage in stages] == [None, 1.25, 0.75, 0.5, 35.5, 245.0]


def test_unreadable_stage_time_kept():
    # Given a stage whose stored time cannot be read
    run = sample_run(stages={"RECEIVED": "2026-12-04T19:48:32.000000Z", "FAILED": "yesterday"})

    # When the stages are read and the page is opened
    stages = stages_of(run)
    response, _, _ = open_page(run)

    # Then the stage is listed with its raw time and no duration
    assert stages[-1].status == "FAILED"
    assert stages[-1].seconds_since_previous is None
    assert "yesterday" in PageText(response.body).text


def test_page_shows_durations():
    # Given a run that took 4 min 43 s from push to success
    # When the page is opened
    response, _, _ = open_page(sample_run())
    text = PageText(response.body).text

    # Then the total and each step's duration are shown, with times in UTC
    assert "took 4 min 43 s" in text
    assert "35.5 s" in text
    assert "4 min 05 s" in text
    assert "2026-12-04 19:53:15 UTC" in text


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, "0.00 s"), (0.4249, "0.42 s"), (9.994, "9.99 s"), (12.34, "12.3 s"), (59.94, "59.9 s"),
     (60, "1 min 00 s"), (245, "4 min 05 s"), (3599.4, "59 min 59 s"), (3600, "1 h 00 min"), (7380, "2 h 03 min")],
)
def test_duration_formatted(seconds, expected):
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (8402, "8.2 KiB"), (13 * 1024**2, "13.0 MiB"),
     (5 * 1024**3, "5.0 GiB"), (3 * 1024**4, "3.0 TiB")],
)
def test_size_formatted(size, expected):
    assert format_size(size) == expected


# Output files and logs


def test_output_links_listed_with_sizes():
    # Given a run with two output files
    # When the page is opened
    response, _, _ = open_page(sample_run())
    page = PageText(response.body)

    # Then each file links to its presigned URL, with its size and how long the links work
    assert ("report.html", REPORT.url) in page.links
    assert ("result.json", RESULT.url) in page.links
    assert "8.2 KiB" in page.text
    assert "512 B" in page.text
    assert "15 minutes" in page.text


def test_run_without_output_prefix():
    # Given a run that failed before it had an output prefix
    run = sample_run(status=RunStatus.FAILED, output_prefix=None, failure_reason="bitbatch.yml is invalid")
    outputs = ListedOutputs(REPORT)

    # When the page is opened
    response, _, _ = open_page(run, outputs=outputs)

    # Then no listing was requested and the page states there are no files
    assert outputs.prefixes == []
    assert "no output files" in PageText(response.body).text


def test_listing_problems_told():
    # Given a listing that failed, and one with more files than were listed
    failed, _, _ = open_page(sample_run(), outputs=ListedOutputs(unavailable=True))
    truncated, _, _ = open_page(sample_run(), outputs=ListedOutputs(REPORT, truncated=True))

    # Then each page says so
    assert failed.status_code == 200
    assert "could not be listed" in PageText(failed.body).text
    assert "Only the first 1 files are listed" in PageText(truncated.body).text


def test_log_link_points_at_stream():
    # Given a run with a job log stream
    # When the page is opened
    response, _, _ = open_page(sample_run())
    links = dict(PageText(response.body).links)

    # Then the log link opens that stream of the job log group in the CloudWatch console
    url = links["Open the job's log in CloudWatch"]
    assert url.startswith("https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:")
    assert "log-group/$252Faws$252Fbatch$252Fbitbatch-job/" in url
    assert url.endswith("/log-events/bitbatch$252Fdefault$252F7f3a9c2e1d5b4068a9e4c7b2f1d03e86")


def test_no_log_link_without_stream():
    # Given a run that never started a job
    run = sample_run(status=RunStatus.FAILED, log_stream=None, failure_reason="the commit could not be fetched")

    # When the page is opened
    response, _, _ = open_page(run)

    # Then there is no log link
    assert "CloudWatch" not in PageText(response.body).text


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("us-east-1", "https://us-east-1.console.aws.amazon.com/"),
        ("cn-north-1", "https://cn-north-1.console.amazonaws.cn/"),
        ("us-gov-west-1", "https://console.amazonaws-us-gov.com/"),
    ],
)
def test_log_url_per_partition(region, host):
    # Given a stream name with characters the console encodes
    url = log_stream_url(region, "/aws/batch/job", "prefix/[$LATEST]a b")

    # Then the host fits the partition and the names decode back to themselves
    assert url.startswith(host)
    fragment = url.split("#logsV2:log-groups/log-group/", 1)[1]
    group, stream = fragment.split("/log-events/")
    assert unquote(unquote(group.replace("$", "%"))) == "/aws/batch/job"
    assert unquote(unquote(stream.replace("$", "%"))) == "prefix/[$LATEST]a b"


# JSON


def test_json_form():
    # Given a request that asks for JSON
    # When the page is opened
    response, _, _ = open_page(sample_run(), accept="application/json")
    document = json.loads(response.body)

    # Then it is the run's facts as JSON
    assert response.status_code == 200
    assert response.content_type == "application/json; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert document["run_id"] == RUN_ID
    assert document["status"] == "SUCCEEDED"
    assert document["commit"] == COMMIT
    assert document["commit_url"].endswith(COMMIT)
    assert document["pusher"] == "Ada Lovelace"
    assert document["duration_seconds"] == 283.0
    assert document["stages"][1] == {
        "status": "CHECKED_OUT", "reached_at": "2026-12-04T19:48:33.250000Z", "seconds_since_previous": 1.25
    }
    assert document["output_files"] == [
        {"name": "report.html", "size": 8402, "url": REPORT.url},
        {"name": "result.json", "size": 512, "url": RESULT.url},
    ]
    assert document["output_links_expire_in_seconds"] == 900
    assert document["log_url"].startswith("https://eu-west-1.console.aws.amazon.com/")
    assert document["served_at"] == datetime.fromtimestamp(NOW, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_json_errors():
    # Given JSON requests with no token and for an unknown run
    forbidden, _, _ = open_page(sample_run(), token=None, accept="application/json")
    missing, _, _ = open_page(None, accept="application/json")

    # Then both are JSON objects with the reason
    assert forbidden.status_code == 403
    assert "no access token" in json.loads(forbidden.body)["error"]
    assert missing.status_code == 404
    assert "was not found" in json.loads(missing.body)["error"]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", True),
        ("application/json, text/plain, */*", True),
        ("text/html, application/json", False),
        ("application/json;q=0.9, text/html", False),
        ("text/html;q=0.5, application/json", True),
        (BROWSER_ACCEPT, False),
        ("*/*", False),
        ("", False),
        ("application/json;q=0", False),
        ("APPLICATION/JSON", True),
        ("application/json;q=oops", False),
    ],
)
def test_accept_header_read(accept, expected):
    assert prefers_json(accept) is expected
