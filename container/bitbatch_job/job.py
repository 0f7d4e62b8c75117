"""One run of the job: manifest in, verified artifacts profiled, report out."""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bitbatch_job.html_report import render_html
from bitbatch_job.manifest import Manifest, parse_manifest, verify_artifact
from bitbatch_job.report import build_report, summarize_file
from bitbatch_job.settings import JobSettings
from bitbatch_job.storage import RunStorage

log = logging.getLogger("bitbatch_job")

MANIFEST_NAME = "manifest.json"
RESULT_NAME = "result.json"
REPORT_NAME = "report.html"


def run_job(settings: JobSettings, storage: RunStorage) -> dict[str, Any]:
    """Build and upload the report of one run, returning result.json's content."""
    manifest_key = settings.input_prefix + MANIFEST_NAME
    log.info("run %s: reading manifest s3://%s/%s", settings.run_id, storage.bucket, manifest_key)
    manifest = parse_manifest(storage.read(manifest_key), manifest_key, settings.run_id)

    log.info(
        "run %s: downloading %d files of %s at %s (%s)",
        settings.run_id,
        len(manifest.files),
        manifest.repository,
        manifest.commit,
        manifest.ref,
    )
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
    return report


def _summarize_artifacts(settings: JobSettings, storage: RunStorage, manifest: Manifest) -> list[dict[str, Any]]:
    """Download, verify and profile each artifact in turn, so only one artifact is on disk at a time."""
    files = []
    with tempfile.TemporaryDirectory(prefix="bitbatch-job-") as workdir:
        for index, entry in enumerate(manifest.files):
            # Local names come from the position, never from the manifest's paths.
            local_path = Path(workdir) / f"artifact-{index:05d}"
            storage.download(settings.input_prefix + entry.artifact, local_path, max_bytes=entry.size)
            verify_artifact(entry, local_path)

            with local_path.open("rb") as stream:
                files.append(summarize_file(entry, stream))
            local_path.unlink()
    return files
