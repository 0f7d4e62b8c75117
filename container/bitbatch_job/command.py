"""Command mode's local steps: the command's environment, the command's process and the files it wrote.

Nothing here touches S3, so the tests run these steps on local folders and processes.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from bitbatch_job.errors import JobError
from bitbatch_job.settings import RUN_SUMMARY_NAME
from bitbatch_job.summary import OutputFile

# Names containing these words are left out of the command's environment, unless they start with AWS_,
# because the command may need the job role's credentials to reach S3.
SENSITIVE_NAME_WORDS = ("SECRET", "TOKEN", "PASSWORD")
PASSED_PREFIX = "AWS_"

# In command mode, RESULT_FILE defaults to the first of these that the command wrote.
RESULT_FILE_CANDIDATES = ("index.html", "report.html", "result.json")

# Types that Python's built-in table lacks, for files that data jobs often write.
_EXTRA_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".log": "text/plain",
}

# A compressed file gets the compression format's type, because data.csv.gz is gzip data, not CSV text.
_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
}
_UNKNOWN_TYPE = "application/octet-stream"


def _mime_types() -> mimetypes.MimeTypes:
    # MimeTypes() starts from Python's built-in table only, so a file gets the same type on every host,
    # whatever that host's /etc/mime.types contains.
    types = mimetypes.MimeTypes()
    for extension, media_type in _EXTRA_TYPES.items():
        types.add_type(media_type, extension)
    return types


_MIME_TYPES = _mime_types()


def is_sensitive_name(name: str) -> bool:
    """Return True when an environment variable is kept from the command."""
    if name.startswith(PASSED_PREFIX):
        return False
    upper = name.upper()
    return any(word in upper for word in SENSITIVE_NAME_WORDS)


def command_environment(
    environ: Mapping[str, str], input_dir: Path, output_dir: Path, manifest_path: Path
) -> tuple[dict[str, str], list[str]]:
    """Build the command's environment from the job's, returning it and the sorted names left out.

    INPUT_DIR, OUTPUT_DIR and MANIFEST_PATH are absolute paths and replace any variables of the same name.
    """
    environment = {}
    left_out = []
    for name, value in environ.items():
        if is_sensitive_name(name):
            left_out.append(name)
        else:
            environment[name] = value

    environment["INPUT_DIR"] = str(input_dir.absolute())
    environment["OUTPUT_DIR"] = str(output_dir.absolute())
    environment["MANIFEST_PATH"] = str(manifest_path.absolute())
    return environment, sorted(left_out)


def check_program(program: str, environment: Mapping[str, str]) -> None:
    """Raise JobError when a program named without a folder is not on the command's PATH.

    A program given with a folder, such as input/files/run.sh, may arrive only with the input,
    so Popen checks it when the command starts.
    """
    if "/" in program:
        return
    if shutil.which(program, path=environment.get("PATH", os.defpath)) is None:
        raise _not_found(program)


def run_command(argv: Sequence[str], cwd: Path, environment: Mapping[str, str]) -> int:
    """Run the command until it exits and return its exit status as Popen reports it (-N for signal N).

    The command inherits the job's stdout and stderr, so its lines reach the log unchanged, as soon as its own
    buffering writes them. A SIGTERM to the job is passed on to the command, so the command can stop cleanly.
    """
    # Lines the job logged so far must reach the descriptors before the command's own lines.
    sys.stdout.flush()
    sys.stderr.flush()

    with _TerminationForwarder() as forwarder:
        try:
            process = subprocess.Popen(list(argv), cwd=cwd, env=dict(environment), stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise _not_found(argv[0]) from None
        except PermissionError:
            raise JobError(
                f"command {argv[0]} cannot be run: permission denied; make it executable in the job image, "
                f'or run it through its interpreter, for example ["sh", "{argv[0]}"]'
            ) from None
        except OSError as error:
            raise JobError(f"command {argv[0]} cannot be run: {error.strerror}") from None

        forwarder.attach(process)
        return process.wait()


def exit_code(returncode: int) -> int:
    """Turn Popen's -N for signal N into 128 + N, the exit status that shells such as bash report."""
    return returncode if returncode >= 0 else 128 - returncode


def failure_message(returncode: int) -> str | None:
    """Describe a failed command for the job's `error:` line, or return None when the command succeeded."""
    if returncode == 0:
        return None
    if returncode > 0:
        return f"command exited with code {returncode}"
    try:
        signal_name = signal.Signals(-returncode).name
    except ValueError:
        signal_name = f"number {-returncode}"
    return f"command was stopped by signal {signal_name} (exit code {exit_code(returncode)})"


def collect_output_files(output_dir: Path) -> tuple[list[OutputFile], list[str]]:
    """List the regular files under output_dir, sorted by name relative to it, and the reasons for skipping others.

    Symbolic links are skipped and never followed, so no file outside output_dir is uploaded.
    """
    files: list[OutputFile] = []
    skipped: list[str] = []
    if output_dir.is_symlink() or not output_dir.is_dir():
        skipped.append(f"not uploading any output, because {output_dir} is no longer a folder")
        return files, skipped

    def skip_unreadable(error: OSError) -> None:
        skipped.append(f"not uploading the files in {error.filename!r}, because it cannot be read ({error.strerror})")

    for folder, folder_names, file_names in os.walk(output_dir, onerror=skip_unreadable):
        folder_path = Path(folder)

        # os.walk does not descend into linked folders when followlinks is False, but they are reported here.
        folder_names.sort()
        for name in list(folder_names):
            if (folder_path / name).is_symlink():
                folder_names.remove(name)
                skipped.append(_skip_reason(folder_path / name, output_dir, "is a symbolic link"))

        for name in sorted(file_names):
            path = folder_path / name
            reason, size = _file_check(path, output_dir)
            if reason:
                skipped.append(_skip_reason(path, output_dir, reason))
            else:
                files.append(OutputFile(path.relative_to(output_dir).as_posix(), size))

    files.sort(key=lambda file: file.name)
    return files, skipped


def choose_result_file(requested: str | None, names: Sequence[str]) -> str | None:
    """Pick the output file that the email links to: RESULT_FILE when the command wrote it, else a default.

    Returns None when RESULT_FILE names a file the command did not write, or when no default exists.
    """
    if requested is not None:
        return requested if requested in names else None
    return next((candidate for candidate in RESULT_FILE_CANDIDATES if candidate in names), None)


def content_type(name: str) -> str:
    """Guess the Content-Type of an output file from its extension. Text types get charset=utf-8."""
    media_type, encoding = _MIME_TYPES.guess_file_type(name)
    if encoding is not None:
        return _COMPRESSED_TYPES.get(encoding, _UNKNOWN_TYPE)
    if media_type is None:
        return _UNKNOWN_TYPE
    if media_type.startswith("text/"):
        # NOTE: the command's text is assumed to be UTF-8; the job does not check its bytes.
        return f"{media_type}; charset=utf-8"
    return media_type


def _file_check(path: Path, output_dir: Path) -> tuple[str | None, int]:
    """Return why a file is skipped (or None) and its size."""
    try:
        status = path.lstat()
    except OSError as error:
        return f"cannot be read ({error.strerror})", 0

    if stat.S_ISLNK(status.st_mode):
        return "is a symbolic link", 0
    if not stat.S_ISREG(status.st_mode):
        return "is not a regular file", 0
    if path.parent == output_dir and path.name == RUN_SUMMARY_NAME:
        return f"has the name of the job's own {RUN_SUMMARY_NAME}, so the command must use another name", 0
    try:
        path.relative_to(output_dir).as_posix().encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not valid UTF-8, which an S3 key needs", 0
    return None, status.st_size


def _skip_reason(path: Path, output_dir: Path, reason: str) -> str:
    # repr keeps a newline or other control character in a name from breaking the log line.
    display = f"{output_dir.name}/{path.relative_to(output_dir).as_posix()}"
    return f"not uploading {display!r}, because it {reason}"


def _not_found(program: str) -> JobError:
    return JobError(f"command not found: {program}; install it in the job image or give its path")


class _TerminationForwarder:
    """Context manager that passes SIGTERM on to the command's process while it runs.

    At the job timeout, AWS Batch sends SIGTERM to the container and SIGKILL 30 seconds later (AWS Batch
    User Guide, "Job timeouts"). Signal handlers can be set only in the main thread, so in other threads
    the job keeps its default handling.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._received = False
        self._installed = False
        self._previous: signal.Handlers | None = None

    def __enter__(self) -> _TerminationForwarder:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._forward)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            # signal.signal returns None for a handler that was not set from Python.
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)

    def attach(self, process: subprocess.Popen) -> None:
        self._process = process
        if self._received:
            # SIGTERM arrived while the process was starting.
            process.terminate()

    def _forward(self, signum: int, frame: object) -> None:
        self._received = True
        if self._process is not None:
            self._process.send_signal(signum)
