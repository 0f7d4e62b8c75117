"""The run page: what a person sees when they open the link in a run's email.

Plain Python: the handler passes in the link key, the runs table and the output
lister. The token is checked before the run is read, so a request without a
valid token gets the same 403 whether or not the run exists. Every value from
the run is escaped, and the page needs no JavaScript.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, urlsplit

from bitbatch.model import Run, RunStatus
from bitbatch.run_links import TokenRejected, verify_token

STATUS_LABELS = {
    RunStatus.RECEIVED: "Received",
    RunStatus.CHECKED_OUT: "Checked out",
    RunStatus.QUEUED: "Queued",
    RunStatus.SUBMITTED: "Submitted",
    RunStatus.RUNNING: "Running",
    RunStatus.SUCCEEDED: "Succeeded",
    RunStatus.FAILED: "Failed",
    RunStatus.SKIPPED: "Skipped",
}
STAGE_ORDER = list(RunStatus)


@dataclass(frozen=True)
class PageRequest:
    run_id: str
    token: str | None
    accept: str = ""


@dataclass(frozen=True)
class PageResponse:
    status_code: int
    content_type: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputFile:
    name: str  # path below the run's output prefix
    size: int  # bytes
    url: str  # presigned GET link, signed when the page was served


@dataclass(frozen=True)
class OutputListing:
    files: tuple[OutputFile, ...]
    truncated: bool  # more files exist than were listed
    link_seconds: int  # lifetime of each file's link
    unavailable: bool = False  # the listing failed, and the page shows a notice instead of files


class RunReader(Protocol):
    def get(self, run_id: str) -> Run:
        """Return the run; raise a LookupError (RunNotFound) when it is not stored."""


class OutputLister(Protocol):
    def list(self, prefix: str) -> OutputListing: ...


@dataclass(frozen=True)
class Stage:
    status: str
    reached_at: str  # as stored: ISO 8601 in UTC
    seconds_since_previous: float | None  # None for the first stage or an unreadable time


@dataclass(frozen=True)
class LogLocation:
    region: str
    log_group: str


# Responses


def serve_run_page(
    request: PageRequest, key: bytes, now: float, runs: RunReader, outputs: OutputLister, logs: LogLocation
) -> PageResponse:
    """Check the token, read the run and its output files, and render the page as HTML or JSON."""
    as_json = prefers_json(request.accept)
    try:
        verify_token(request.run_id, request.token, key, now)
    except TokenRejected as rejection:
        return error_response(403, "This link does not open a run", str(rejection), as_json)

    try:
        run = runs.get(request.run_id)
    except LookupError:
        reason = (
            f"Run {request.run_id} was not found. Runs are deleted after the number of days set by the "
            "stack's RetentionDays."
        )
        return error_response(404, "Run not found", reason, as_json)

    if run.output_prefix:
        listing = outputs.list(run.output_prefix)
    else:
        listing = OutputListing(files=(), truncated=False, link_seconds=0)
    log_url = log_stream_url(logs.region, logs.log_group, run.log_stream) if run.log_stream else None
    served_at = datetime.fromtimestamp(now, UTC)

    if as_json:
        body = json.dumps(run_document(run, listing, log_url, served_at), indent=2)
        return PageResponse(200, "application/json; charset=utf-8", body, response_headers())
    body = render_run_html(run, listing, log_url, served_at)
    return PageResponse(200, "text/html; charset=utf-8", body, response_headers())


def error_response(status_code: int, title: str, reason: str, as_json: bool) -> PageResponse:
    if as_json:
        body = json.dumps({"error": reason})
        return PageResponse(status_code, "application/json; charset=utf-8", body, response_headers())
    body = _document(title, f"<h1>{_text(title)}</h1>\n<p class=\"reason\">{_text(reason)}</p>")
    return PageResponse(status_code, "text/html; charset=utf-8", body, response_headers())


def response_headers() -> dict[str, str]:
    """Return the headers of every response: never cached, never framed, no Referer that would carry the token."""
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def prefers_json(accept: str | None) -> bool:
    """Return whether an Accept header requests application/json over text/html.

    An explicit text/html wins ties, as browsers list it first. Against a
    wildcard (*/* or text/*) an explicit application/json wins.
    """
    qualities: dict[str, float] = {}
    for part in (accept or "").split(","):
        media_type, *parameters = [piece.strip() for piece in part.split(";")]
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media_type = media_type.lower()
        qualities[media_type] = max(qualities.get(media_type, 0.0), quality)

    json_quality = qualities.get("application/json", 0.0)
    if json_quality <= 0:
        return False
    if "text/html" in qualities:
        return json_quality > qualities["text/html"]
    return json_quality >= max(qualities.get("text/*", 0.0), qualities.get("*/*", 0.0))


# What the page shows


def stages_of(run: Run) -> list[Stage]:
    """Return the stages the run reached, in time order, each with the time since the one before."""
    order = {str(status): index for index, status in enumerate(STAGE_ORDER)}
    reached = sorted(run.stages.items(), key=lambda item: (str(item[1]), order.get(item[0], len(order))))

    stages = []
    previous_time = None
    for status, reached_at in reached:
        reached_time = _parse_time(reached_at)
        seconds = None
        if reached_time is not None and previous_time is not None:
            seconds = (reached_time - previous_time).total_seconds()
        stages.append(Stage(status=status, reached_at=reached_at, seconds_since_previous=seconds))
        previous_time = reached_time
    return stages


def run_duration_seconds(stages: Iterable[Stage]) -> float | None:
    """Seconds from the first stage to the last, or None with fewer than two readable times."""
    times = [time for time in (_parse_time(stage.reached_at) for stage in stages) if time is not None]
    if len(times) < 2:
        return None
    return (max(times) - min(times)).total_seconds()


def format_duration(seconds: float) -> str:
    """Format seconds for people: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def format_size(size: int) -> str:
    """Format a byte count with binary units: 512 B, 2.4 KiB, 13.0 MiB."""
    if size < 1024:
        return f"{size} B"
    units = ("KiB", "MiB", "GiB", "TiB")
    value = size / 1024
    index = 0
    while value >= 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    return f"{value:.1f} {units[index]}"


def log_stream_url(region: str, log_group: str, log_stream: str) -> str:
    """Return the CloudWatch console link to one log stream.

    Each name in the fragment is URL-encoded twice with % written as $, so a / becomes $252F.
    NOTE: AWS does not document this format. It is the one the console itself produces, and it may change.
    """

    def console_escape(name: str) -> str:
        return quote(quote(name, safe=""), safe="").replace("%", "$")

    if region.startswith("cn-"):
        host = f"https://{region}.console.amazonaws.cn"
    elif region.startswith("us-gov-"):
        host = "https://console.amazonaws-us-gov.com"
    else:
        host = f"https://{region}.console.aws.amazon.com"
    return (
        f"{host}/cloudwatch/home?region={quote(region, safe='')}#logsV2:log-groups/log-group/"
        f"{console_escape(log_group)}/log-events/{console_escape(log_stream)}"
    )


def safe_link(url: str | None) -> str | None:
    """Return url if it is an http(s) link with a host, else None, so a javascript: link never becomes an href."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    return url


def status_label(status: str) -> str:
    try:
        return STATUS_LABELS[RunStatus(status)]
    except ValueError:
        return status


def run_document(run: Run, listing: OutputListing, log_url: str | None, served_at: datetime) -> dict:
    """Return the page's facts as a dict for json.dumps."""
    stages = stages_of(run)
    return {
        "run_id": run.run_id,
        "status": run.status,
        "failure_reason": run.failure_reason,
        "repository": run.repository,
        "ref": run.ref,
        "ref_name": run.ref_name,
        "commit": run.commit,
        "commit_url": safe_link(run.commit_url),
        "pusher": run.pusher_name,
        "job_id": run.job_id,
        "stages": [
            {"status": stage.status, "reached_at": stage.reached_at, "seconds_since_previous": stage.seconds_since_previous}
            for stage in stages
        ],
        "duration_seconds": run_duration_seconds(stages),
        "output_files": [{"name": item.name, "size": item.size, "url": item.url} for item in listing.files],
        "output_files_truncated": listing.truncated,
        "output_files_unavailable": listing.unavailable,
        "output_links_expire_in_seconds": listing.link_seconds if listing.files else None,
        "log_url": log_url,
        "served_at": served_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# HTML

STYLE = """
:root { color-scheme: light dark; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { margin: 0; padding: 1rem; line-height: 1.45; }
main { max-width: 46rem; margin: 0 auto; }
h1 { font-size: 1.35rem; margin: 0.2rem 0 0.6rem; overflow-wrap: anywhere; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 0.5rem; }
.kicker { margin: 0; font-size: 0.85rem; opacity: 0.75; }
.status { display: inline-block; padding: 0.2rem 0.7rem; border-radius: 1rem; font-weight: 600; background: #e8e8e8; color: #222; }
.status-succeeded { background: #d3f4dc; color: #0b5d24; }
.status-failed { background: #fde0df; color: #8a1611; }
.took { margin-left: 0.5rem; opacity: 0.8; }
.reason { padding: 0.7rem 0.9rem; border-left: 4px solid #c62828; background: rgba(198, 40, 40, 0.08);
  white-space: pre-wrap; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1rem; margin: 1rem 0; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.35rem 0.5rem 0.35rem 0; border-bottom: 1px solid rgba(128, 128, 128, 0.3);
  vertical-align: top; }
td.number, th.number { text-align: right; white-space: nowrap; padding-right: 0; }
td.stage { white-space: nowrap; }
td.file { overflow-wrap: anywhere; }
code { font-size: 0.95rem; overflow-wrap: anywhere; }
.note { font-size: 0.85rem; opacity: 0.75; }
a { color: #1a5fb4; }
@media (prefers-color-scheme: dark) { a { color: #78aeed; } }
@media (max-width: 30rem) { dl { grid-template-columns: 1fr; } dd { margin-bottom: 0.4rem; } }
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# Nothing loads but the inline style above, the page cannot be framed, and forms post nowhere.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _link(url: str, label: str) -> str:
    return f'<a href="{_text(url)}" rel="noopener noreferrer">{label}</a>'


def _document(title: str, content: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_text(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{content}\n</main>\n</body>\n</html>\n"
    )


def _format_time(reached_at: str) -> str:
    parsed = _parse_time(reached_at)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC") if parsed else reached_at


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def render_run_html(run: Run, listing: OutputListing, log_url: str | None, served_at: datetime) -> str:
    stages = stages_of(run)
    label = status_label(run.status)
    sections = [_header_html(run, label, run_duration_seconds(stages))]
    if run.failure_reason:
        sections.append(f'<p class="reason"><strong>Reason:</strong> {_text(run.failure_reason)}</p>')
    sections.append(_facts_html(run))
    sections.append(_stages_html(stages))
    sections.append(_outputs_html(run, listing))
    if log_url:
        sections.append(
            "<h2>Job log</h2>\n<p>"
            + _link(log_url, _text("Open the job's log in CloudWatch"))
            + '</p>\n<p class="note">Needs a sign-in to the AWS account that runs bitbatch.</p>'
        )
    sections.append(f'<p class="note">Page made at {_text(served_at.strftime("%Y-%m-%d %H:%M:%S UTC"))}.</p>')
    title = f"{label}: {run.repository} {run.ref_name} {run.short_commit}"
    return _document(title, "\n".join(sections))


def _header_html(run: Run, label: str, duration: float | None) -> str:
    css_class = f"status status-{str(run.status).lower().replace('_', '-')}"
    took = f'<span class="took">took {_text(format_duration(duration))}</span>' if duration is not None else ""
    return (
        '<p class="kicker">bitbatch run</p>\n'
        f"<h1>{_text(run.repository)} · {_text(run.ref_name)}</h1>\n"
        f'<p><span class="{_text(css_class)}">{_text(label)}</span>{took}</p>'
    )


def _facts_html(run: Run) -> str:
    commit_url = safe_link(run.commit_url)
    commit = f"<code>{_text(run.short_commit)}</code>"
    if commit_url:
        commit = _link(commit_url, commit)
    facts = [
        ("Repository", _text(run.repository)),
        ("Ref", _text(run.ref)),
        ("Commit", commit),
        ("Pushed by", _text(run.pusher_name)),
        ("Run", f"<code>{_text(run.run_id)}</code>"),
    ]
    if run.job_id:
        facts.append(("Batch job", f"<code>{_text(run.job_id)}</code>"))
    rows = "\n".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    return f"<dl>\n{rows}\n</dl>"


def _stages_html(stages: list[Stage]) -> str:
    if not stages:
        return "<h2>Stages</h2>\n<p>No stage recorded yet.</p>"
    rows = []
    for stage in stages:
        since = "" if stage.seconds_since_previous is None else format_duration(stage.seconds_since_previous)
        rows.append(
            f'<tr><td class="stage">{_text(status_label(stage.status))}</td>'
            f'<td><time datetime="{_text(stage.reached_at)}">{_text(_format_time(stage.reached_at))}</time></td>'
            f'<td class="number">{_text(since)}</td></tr>'
        )
    return (
        "<h2>Stages</h2>\n<table>\n"
        '<thead><tr><th>Stage</th><th>Reached</th><th class="number">After previous</th></tr></thead>\n'
        "<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
    )


def _outputs_html(run: Run, listing: OutputListing) -> str:
    heading = "<h2>Output files</h2>"
    if listing.unavailable:
        return f"{heading}\n<p>The output files could not be listed right now. Reload the page to try again.</p>"
    if not listing.files:
        return f"{heading}\n<p>This run has no output files.</p>"

    rows = "\n".join(
        f'<tr><td class="file">{_link(item.url, _text(item.name))}</td>'
        f'<td class="number" title="{item.size} bytes">{_text(format_size(item.size))}</td></tr>'
        for item in listing.files
    )
    lifetime = format_duration(listing.link_seconds) if listing.link_seconds % 60 else f"{listing.link_seconds // 60} minutes"
    notes = [f"Each link works for {lifetime} after the page was made; reload the page for new links."]
    if listing.truncated:
        notes.insert(0, f"Only the first {len(listing.files)} files are listed.")
    return (
        f"{heading}\n<table>\n"
        '<thead><tr><th>File</th><th class="number">Size</th></tr></thead>\n'
        f"<tbody>\n{rows}\n</tbody>\n</table>\n" + "\n".join(f'<p class="note">{_text(note)}</p>' for note in notes)
    )
