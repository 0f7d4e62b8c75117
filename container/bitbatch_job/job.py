"""One run of the job, in the mode that JOB_MODE selects, and report mode itself."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bitbatch_job.command_job import run_command_job
from bitbatch_job.html_report import render_html
from bitbatch_job.manifest import Manifest
from bitbatch_job.report import build_report, summarize_file
from bitbatch_job.run_input import fetch_artifact, read_manifest
from bitbatch_job.settings import COMMAND_MODE, REPORT_NAME, RESULT_NAME, JobSettings
from bitbatch_job.storage import RunStorage
from bitbatch_job.summary import OutputFile, build_run_summary, upload_run_summary

log = logging.getLogger("bitbatch_job")


def run_job(settings: JobSettings, storage: RunStorage, environ: Mapping[str, str]) -> dict[str, Any]:
    """Run the job in its mode and return run-summary.json's content. `environ` is passed on to a command."""
    if settings.mode == COMMAND_MODE:
        return run_command_job(settings, storage, environ)
    return run_report_job(settings, storage)


def run_report_job(settings: JobSettings, storage: RunStorage) -> dict[str, Any]:
    """Build and upload the report of one run, then run-summary.json, returning the summary's content."""
    started_at = datetime.now(UTC)
    _, manifest = read_manifest(settings, storage)
    files = _summarize_artifacts(settings, storage, manifest)

    report = build_report(manifest, files, datetime.now(UTC))
    totals = report["totals"]
    log.info(
        "run %s: report built: %d files, %d records, %d bytes",
        settings.run_id,
        totals["files"],
        totals["records"],
        totals["bytes"],
    )

    # ensure_ascii keeps lone surrogates from JSON input encodable.
    result_body = json.dumps(report, indent=2, ensure_ascii=True, allow_nan=False).encode("ascii")
    html_body = render_html(report).encode("utf-8", "backslashreplace")
    storage.upload(settings.output_prefix + RESULT_NAME, result_body, "application/json")
    storage.upload(settings.output_prefix + REPORT_NAME, html_body, "text/html; charset=utf-8")
    log.info(
        "run %s: uploaded s3://%s/%s%s and %s",
        settings.run_id,
        storage.bucket,
        settings.output_prefix,
        RESULT_NAME,
        REPORT_NAME,
    )

    outputs = [OutputFile(RESULT_NAME, len(result_body)), OutputFile(REPORT_NAME, len(html_body))]
    result_file = settings.result_file or REPORT_NAME
    summary = build_run_summary(settings, 0, started_at, datetime.now(UTC), result_file, outputs)
    upload_run_summary(settings, storage, summary)
    return summary


def _summarize_artifacts(settings: JobSettings, storage: RunStorage, manifest: Manifest) -> list[dict[str, Any]]:
    """Download, verify and profile each artifact in turn, so only one artifact is on disk at a time."""
    files = []
    with tempfile.TemporaryDirectory(prefix="bitbatch-job-") as workdir:
        for index, entry in enumerate(manifest.files):
            # Local names come from the position, never from the manifest's paths.
            local_path = Path(workdir) / f"artifact-{index:05d}"
            fetch_artifact(settings, storage, entry, local_path)

            with local_path.open("rb") as stream:
                files.append(summarize_file(entry, stream))
            local_path.unlink()
    return files
