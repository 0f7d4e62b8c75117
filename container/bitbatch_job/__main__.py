"""Entry point of the Batch job container: `python -m bitbatch_job`.

JOB_MODE selects what the job does with the run's verified input. `report` (the default) uploads
result.json and report.html, and `command` runs JOB_COMMAND and uploads what it writes to OUTPUT_DIR.
Both modes upload run-summary.json last.

Exit codes: 0 when the run's output is uploaded, 1 when the run's input or S3 access fails or the command
fails or is not found, 2 when an environment variable is missing or invalid. Expected failures print one
`error: ...` line on stderr, and unexpected exceptions keep their traceback.
"""

from __future__ import annotations

import logging
import os
import sys

from bitbatch_job.errors import JobError
from bitbatch_job.job import run_job
from bitbatch_job.settings import JobSettings
from bitbatch_job.storage import RunStorage


def main() -> int:
    # botocore logs credential and endpoint lookups at INFO, so only the job's own logger is at INFO.
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
    logging.getLogger("bitbatch_job").setLevel(logging.INFO)

    try:
        settings = JobSettings.from_environ(os.environ)
        run_job(settings, RunStorage(settings.artifacts_bucket), os.environ)
    except JobError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
