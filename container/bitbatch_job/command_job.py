"""Command mode: the run's verified input on disk, JOB_COMMAND run on it, and every file it wrote uploaded."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bitbatch_job.command import (
    check_program,
    choose_result_file,
    collect_output_files,
    command_environment,
    content_type,
    exit_code,
    failure_message,
    run_command,
)
from bitbatch_job.errors import JobError
from bitbatch_job.run_input import MANIFEST_NAME, download_run_input
from bitbatch_job.settings import JobSettings
from bitbatch_job.storage import RunStorage
from bitbatch_job.summary import OutputFile, build_run_summary, upload_run_summary

log = logging.getLogger("bitbatch_job")


def run_command_job(settings: JobSettings, storage: RunStorage, environ: Mapping[str, str]) -> dict[str, Any]:
    """Run JOB_COMMAND on the run's input and upload its output, returning run-summary.json's content.

    The working folder contains input/ (manifest.json and the artifacts) and an empty output/. When the command
    fails, its output and the summary are still uploaded before JobError is raised.
    """
    started_at = datetime.now(UTC)
    program = settings.command[0]

    with tempfile.TemporaryDirectory(prefix="bitbatch-job-") as workdir_name:
        workdir = Path(workdir_name).absolute()
        input_dir = workdir / "input"
        output_dir = workdir / "output"
        input_dir.mkdir()
        output_dir.mkdir()

        environment, left_out = command_environment(environ, input_dir, output_dir, input_dir / MANIFEST_NAME)
        if left_out:
            log.info("run %s: leaving out of the command's environment: %s", settings.run_id, ", ".join(left_out))
        # Checked before the download, so a missing program fails the job in seconds.
        check_program(program, environment)

        download_run_input(settings, storage, input_dir)

        # JSON keeps a multi-line argument, such as a `python -c` script, on one log line.
        log.info("run %s: running %s in %s", settings.run_id, json.dumps(list(settings.command)), workdir)
        # NOTE: after a SIGTERM the uploads below must finish before Batch's SIGKILL 30 seconds later,
        # or the output and the summary are lost.
        returncode = run_command(settings.command, workdir, environment)
        log.info("run %s: command exited with code %d", settings.run_id, exit_code(returncode))

        files = _upload_output(settings, storage, output_dir)

    result_file = choose_result_file(settings.result_file, [file.name for file in files])
    if settings.result_file is not None and result_file is None:
        log.warning(
            "run %s: RESULT_FILE %s was not written by the command, so the summary names no result file",
            settings.run_id,
            settings.result_file,
        )

    summary = build_run_summary(settings, exit_code(returncode), started_at, datetime.now(UTC), result_file, files)
    upload_run_summary(settings, storage, summary)

    failure = failure_message(returncode)
    if failure is not None:
        raise JobError(failure)
    return summary


def _upload_output(settings: JobSettings, storage: RunStorage, output_dir: Path) -> list[OutputFile]:
    """Upload the regular files under output_dir to OUTPUT_PREFIX, logging a warning for each skipped entry."""
    files, skipped = collect_output_files(output_dir)
    for reason in skipped:
        log.warning("run %s: %s", settings.run_id, reason)

    for file in files:
        path = output_dir.joinpath(*file.name.split("/"))
        # O_NOFOLLOW refuses a file that became a symbolic link after it was listed.
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as error:
            raise JobError(f"output file {file.name!r} cannot be read: {error.strerror}") from None
        with os.fdopen(descriptor, "rb") as stream:
            storage.upload_stream(settings.output_prefix + file.name, stream, content_type(file.name))

    log.info(
        "run %s: uploaded %d output files (%d bytes) to s3://%s/%s",
        settings.run_id,
        len(files),
        sum(file.size for file in files),
        storage.bucket,
        settings.output_prefix,
    )
    return files
