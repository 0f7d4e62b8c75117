"""run-summary.json: what one run of the job did, for the notifier to read after the job stops."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bitbatch_job.settings import RUN_SUMMARY_NAME, JobSettings
from bitbatch_job.storage import RunStorage

log = logging.getLogger("bitbatch_job")


@dataclass(frozen=True)
class OutputFile:
    """One uploaded output file: its name relative to OUTPUT_PREFIX and its size in bytes."""

    name: str
    size: int


def timestamp(moment: datetime) -> str:
    """Format a UTC time as result.json does, for example 2026-12-04T19:48:32Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_run_summary(
    settings: JobSettings,
    exit_code: int,
    started_at: datetime,
    finished_at: datetime,
    result_file: str | None,
    files: list[OutputFile],
) -> dict[str, Any]:
    """Assemble run-summary.json. `files` lists the uploaded outputs, without run-summary.json itself."""
    return {
        "run_id": settings.run_id,
        "mode": settings.mode,
        "exit_code": exit_code,
        "started_at": timestamp(started_at),
        "finished_at": timestamp(finished_at),
        "result_file": result_file,
        "files": [{"name": file.name, "size": file.size} for file in sorted(files, key=lambda file: file.name)],
    }


def upload_run_summary(settings: JobSettings, storage: RunStorage, summary: dict[str, Any]) -> None:
    body = json.dumps(summary, indent=2).encode("ascii")
    storage.upload(settings.output_prefix + RUN_SUMMARY_NAME, body, "application/json")
    log.info(
        "run %s: uploaded s3://%s/%s%s (result file: %s)",
        settings.run_id,
        storage.bucket,
        settings.output_prefix,
        RUN_SUMMARY_NAME,
        summary["result_file"] or "none",
    )
