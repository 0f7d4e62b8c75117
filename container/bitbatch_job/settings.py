"""Job settings, read once from the environment that AWS Batch passes in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from bitbatch_job.errors import ConfigurationError
from bitbatch_job.report import json_type

REPORT_MODE = "report"
COMMAND_MODE = "command"
JOB_MODES = (REPORT_MODE, COMMAND_MODE)

# The files report mode writes, so RESULT_FILE may name only these in that mode.
REPORT_NAME = "report.html"
RESULT_NAME = "result.json"
REPORT_FILES = (REPORT_NAME, RESULT_NAME)
RUN_SUMMARY_NAME = "run-summary.json"

_COMMAND_EXAMPLE = '["python", "process.py"]'


@dataclass(frozen=True)
class JobSettings:
    run_id: str
    artifacts_bucket: str
    input_prefix: str
    output_prefix: str
    mode: str = REPORT_MODE
    # argv of the command that command mode runs. Empty in report mode.
    command: tuple[str, ...] = ()
    # Output file name that the email links to, relative to OUTPUT_PREFIX. None lets the mode choose.
    result_file: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> JobSettings:
        """Read and check the job's variables, raising ConfigurationError on the first bad one."""
        run_id = _required(environ, "RUN_ID")
        artifacts_bucket = _required(environ, "ARTIFACTS_BUCKET")
        input_prefix = _key_prefix(environ, "INPUT_PREFIX", "runs/<run_id>/input/")
        output_prefix = _key_prefix(environ, "OUTPUT_PREFIX", "runs/<run_id>/output/")

        mode = _job_mode(environ)
        command = _job_command(environ, mode)
        result_file = _result_file(environ, mode)
        return cls(run_id, artifacts_bucket, input_prefix, output_prefix, mode, command, result_file)


def parse_command(value: str) -> tuple[str, ...]:
    """Parse JOB_COMMAND, a JSON array of strings, into an argv tuple."""
    try:
        document = json.loads(value)
    except ValueError as error:
        raise _command_error(f"is not valid JSON ({error})") from None

    if not isinstance(document, list):
        raise _command_error(f"is a JSON {json_type(document)}, not an array")
    if not document:
        raise _command_error("is an empty array, but it needs at least the program to run")
    for index, item in enumerate(document):
        if not isinstance(item, str):
            raise _command_error(f"has a JSON {json_type(item)} at index {index}, but every item must be a string")
        if "\x00" in item:
            # execve cannot pass a NUL character, so subprocess would raise ValueError.
            raise _command_error(f"has a NUL character in the string at index {index}")
    if not document[0].strip():
        raise _command_error("starts with an empty string, but the first item must name the program to run")
    return tuple(document)


def _job_mode(environ: Mapping[str, str]) -> str:
    mode = environ.get("JOB_MODE", "").strip()
    if not mode:
        return REPORT_MODE
    if mode not in JOB_MODES:
        raise ConfigurationError(
            f"environment variable JOB_MODE={mode!r} is invalid; set it to {' or '.join(JOB_MODES)}, "
            f"or leave it unset for {REPORT_MODE}"
        )
    return mode


def _job_command(environ: Mapping[str, str], mode: str) -> tuple[str, ...]:
    value = environ.get("JOB_COMMAND", "").strip()
    if mode == COMMAND_MODE and not value:
        raise ConfigurationError(
            "environment variable JOB_COMMAND is missing or empty, but JOB_MODE=command needs it; "
            f"set it to a JSON array of strings, for example {_COMMAND_EXAMPLE}"
        )
    if mode == REPORT_MODE and value:
        # A command that silently never runs would look like a finished run with the wrong results.
        raise ConfigurationError(
            "environment variable JOB_COMMAND is set, but JOB_MODE is report, so the command would not run; "
            "set JOB_MODE=command to run it, or remove JOB_COMMAND"
        )
    if not value:
        return ()
    return parse_command(value)


def _result_file(environ: Mapping[str, str], mode: str) -> str | None:
    value = environ.get("RESULT_FILE", "")
    if not value.strip():
        return None

    parts = value.split("/")
    if value.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ConfigurationError(
            f"environment variable RESULT_FILE={value!r} is invalid; set it to a file name relative to "
            "OUTPUT_PREFIX, such as index.html or charts/summary.svg, without '.', '..' or empty parts"
        )
    if value == RUN_SUMMARY_NAME:
        raise ConfigurationError(
            f"environment variable RESULT_FILE={value!r} is invalid, because {RUN_SUMMARY_NAME} is the job's "
            "own summary; set it to a file that the run writes"
        )
    if mode == REPORT_MODE and value not in REPORT_FILES:
        raise ConfigurationError(
            f"environment variable RESULT_FILE={value!r} is invalid in report mode; "
            f"set it to {' or '.join(REPORT_FILES)}, or leave it unset for {REPORT_FILES[0]}"
        )
    return value


def _command_error(problem: str) -> ConfigurationError:
    # The value is left out of the message, because a command line can carry credentials.
    return ConfigurationError(
        f"environment variable JOB_COMMAND {problem}; set it to a JSON array of strings, for example {_COMMAND_EXAMPLE}"
    )


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(
            f"environment variable {name} is missing or empty; "
            "set it in the Batch job definition or in the SubmitJob container overrides"
        )
    return value


def _key_prefix(environ: Mapping[str, str], name: str, example: str) -> str:
    prefix = _required(environ, name)
    if not prefix.endswith("/") or prefix.startswith("/"):
        raise ConfigurationError(
            f"environment variable {name}={prefix!r} is invalid; "
            f"set it to an S3 key prefix that ends with '/' and does not start with '/', "
            f"for example {example}"
        )
    return prefix
