"""`bitbatch runs list` and `bitbatch runs show`: read runs from the runs table and print them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from boto3.dynamodb.conditions import Attr

from bitbatch.model import Run, RunStatus
from bitbatch_cli.errors import CliError
from bitbatch_cli.targets import Target

REASON_WIDTH = 60
# Attributes stored as seconds since the epoch: the TTL, and when the submitter claimed the run.
EPOCH_FIELDS = ("expires_at", "submission_claimed_at")
# The order `runs show` prints a run's fields in; any other attribute of the item follows.
SHOWN_FIELDS = (
    "run_id",
    "status",
    "attempt",
    "repository",
    "product",
    "repository_uuid",
    "ref",
    "ref_name",
    "ref_type",
    "commit",
    "previous_commit",
    "commit_url",
    "pusher_name",
    "pusher_email",
    "delivery_id",
    "created_at",
    "updated_at",
    "job_id",
    "job_name",
    "input_prefix",
    "output_prefix",
    "failure_reason",
    "notified_status",
    "notification_error",
)


def plain(value):
    """Turn DynamoDB's Decimal numbers into int or float, in nested values too."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def read_raw_item(target: Target, run_id: str) -> dict:
    """Return the run's item as DynamoDB stores it, numbers as Decimal."""
    item = target.runs_table().get_item(Key={"run_id": run_id}, ConsistentRead=True).get("Item")
    if item is None:
        raise CliError(f"run {run_id} not found in {target.label}; `bitbatch runs list` shows recent run ids")
    return item


def read_item(target: Target, run_id: str) -> dict:
    return plain(read_raw_item(target, run_id))


def scan_runs(target: Target, status: str | None, repository: str | None) -> list[Run]:
    """Read every run that matches the filters, newest first.

    NOTE: this is a Scan, so every call reads the whole runs table, and its cost
    grows with the runs kept (for RetentionDays). A much busier stack would need
    an index on creation time.
    """
    condition = None
    if status:
        condition = Attr("status").eq(status)
    if repository:
        by_repository = Attr("repository").eq(repository)
        condition = by_repository if condition is None else condition & by_repository

    table = target.runs_table()
    request = {"FilterExpression": condition} if condition is not None else {}
    items = []
    while True:
        page = table.scan(**request)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    runs = [Run.from_item(plain(item)) for item in items]
    # Run ids start with their creation time, so the reverse order puts the newest first.
    return sorted(runs, key=lambda run: run.run_id, reverse=True)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"


def attempt_duration(run: Run) -> float | None:
    """Seconds from the start of the run's latest attempt (its RECEIVED stage) to its latest stage."""
    start = parse_time(run.stages.get(RunStatus.RECEIVED) or run.created_at)
    reached = [time for time in (parse_time(value) for value in run.stages.values()) if time]
    if start is None or not reached:
        return None
    return (max(reached) - start).total_seconds()


def truncate(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())  # one line
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(len(header))]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def list_runs(target: Target, limit: int, status: str | None, repository: str | None) -> str:
    runs = scan_runs(target, status, repository)[:limit]
    if not runs:
        filters = [f"status {status}" if status else "", f"repository {repository}" if repository else ""]
        named = " and ".join(part for part in filters if part)
        return f"no runs in {target.label}" + (f" with {named}" if named else "")

    header = ["RUN ID", "STATUS", "REPOSITORY", "REF", "COMMIT", "DURATION", "FAILURE REASON"]
    rows = []
    for run in runs:
        duration = attempt_duration(run)
        status_cell = run.status if run.attempt == 1 else f"{run.status} (attempt {run.attempt})"
        rows.append(
            [
                run.run_id,
                status_cell,
                run.repository,
                run.ref_name,
                run.short_commit,
                format_duration(duration) if duration is not None else "-",
                truncate(run.failure_reason, REASON_WIDTH),
            ]
        )
    return format_table(header, rows)


def stage_lines(stages: dict[str, str]) -> list[str]:
    """Format one line per stage, in the order reached, with the time since the stage before."""
    ordered = sorted(stages.items(), key=lambda item: item[1])
    rows = []
    previous = None
    for stage, reached_at in ordered:
        reached = parse_time(reached_at)
        since = (
            "" if previous is None or reached is None else "+" + format_duration((reached - previous).total_seconds())
        )
        rows.append([stage, reached_at, since])
        previous = reached or previous
    return format_table(["STAGE", "REACHED AT", "SINCE PREVIOUS"], rows).splitlines()


def show_run(target: Target, run_id: str) -> str:
    item = read_item(target, run_id)
    run = Run.from_item(item)
    lines = []
    for name in SHOWN_FIELDS:
        if item.get(name) not in (None, ""):
            lines.append(f"{name + ':':<20}{item[name]}")

    bucket = target.outputs.get("ArtifactsBucketName")
    if bucket:
        for label, name in (("input files:", "input_prefix"), ("output files:", "output_prefix")):
            if item.get(name):
                lines.append(f"{label:<20}s3://{bucket}/{item[name]}")
    duration = attempt_duration(run)
    if duration is not None:
        lines.append(f"{'duration:':<20}{format_duration(duration)} (attempt {run.attempt}, RECEIVED to latest stage)")

    lines.append("")
    lines.append(f"stages of attempt {run.attempt}:")
    lines.extend("  " + line for line in stage_lines(run.stages))

    for entry in run.previous_attempts:
        lines.append("")
        lines.append(f"attempt {entry.get('attempt', '?')}: {entry.get('status', '?')}")
        for name in ("started_at", "finished_at", "job_id", "log_stream", "failure_reason"):
            if entry.get(name):
                lines.append(f"  {name + ':':<18}{entry[name]}")

    other = sorted(set(item) - set(SHOWN_FIELDS) - {"stages", "previous_attempts"})
    if other:
        lines.append("")
        lines.append("other fields:")
        for name in other:
            lines.append(f"  {name}: {_describe_value(name, item[name])}")
    return "\n".join(lines)


def _describe_value(name: str, value) -> str:
    if name in EPOCH_FIELDS and isinstance(value, int):
        return f"{value} ({datetime.fromtimestamp(value, UTC):%Y-%m-%dT%H:%M:%SZ})"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def show_run_json(target: Target, run_id: str) -> str:
    return json.dumps(read_item(target, run_id), indent=2, sort_keys=True)
