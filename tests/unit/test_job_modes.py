"""Job modes without S3: settings, the command's environment and process, output files and the run summary."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bitbatch_job.command import (
    check_program,
    choose_result_file,
    collect_output_files,
    command_environment,
    content_type,
    exit_code,
    failure_message,
    is_sensitive_name,
    run_command,
)
from bitbatch_job.errors import ConfigurationError, JobError
from bitbatch_job.manifest import Manifest, ManifestFile
from bitbatch_job.run_input import artifact_local_paths
from bitbatch_job.settings import JobSettings
from bitbatch_job.summary import OutputFile, build_run_summary

COMMAND_EXAMPLE = '["python", "process.py"]'
RUN_VARIABLES = {
    "RUN_ID": "run-1",
    "ARTIFACTS_BUCKET": "artifacts",
    "INPUT_PREFIX": "runs/run-1/input/",
    "OUTPUT_PREFIX": "runs/run-1/output/",
}


def settings_from(**variables: str) -> JobSettings:
    return JobSettings.from_environ({**RUN_VARIABLES, **variables})


def manifest_with(*artifacts: str) -> Manifest:
    files = tuple(
        ManifestFile(
            path=f"source-{index}",
            artifact=artifact,
            transform="copy",
            format="raw",
            size=0,
            sha256="0" * 64,
        )
        for index, artifact in enumerate(artifacts)
    )
    return Manifest("run-1", "team/weather", "refs/heads/main", "a" * 40, "2026-12-04T19:48:32Z", files)


def write_script(path: Path, body: str, executable: bool = True) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755 if executable else 0o644)
    return path


# Settings: JOB_MODE, JOB_COMMAND and RESULT_FILE


def test_mode_defaults_to_report():
    # Given only the four run variables
    # When the settings are read
    settings = settings_from()

    # Then the job runs the report with no command and lets the mode choose the result file
    assert settings.mode == "report"
    assert settings.command == ()
    assert settings.result_file is None


def test_command_mode_reads_argv():
    # Given command mode with a JSON array that has spaces and quotes inside its items
    # When the settings are read
    settings = settings_from(JOB_MODE="command", JOB_COMMAND='["python", "-c", "print(\\"a b\\")"]')

    # Then the argv keeps each item whole
    assert settings.mode == "command"
    assert settings.command == ("python", "-c", 'print("a b")')


def test_mode_rejects_unknown_value():
    # Given a misspelled mode
    # When the settings are read
    with pytest.raises(ConfigurationError) as caught:
        settings_from(JOB_MODE="comand")

    # Then the error names the variable, the value and the valid modes, for exit code 2
    message = str(caught.value)
    assert "JOB_MODE='comand'" in message
    assert "report or command" in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is missing or empty"),
        ("   ", "is missing or empty"),
        ("python process.py", "is not valid JSON"),
        ('["python", "process.py"', "is not valid JSON"),
        ('"python process.py"', "is a JSON string, not an array"),
        ('{"argv": ["python"]}', "is a JSON object, not an array"),
        ("[]", "is an empty array"),
        ('["python", 3]', "has a JSON integer at index 1"),
        ('["python", null]', "has a JSON null at index 1"),
        ('[["python"]]', "has a JSON array at index 0"),
        ('["python", "a\\u0000b"]', "has a NUL character in the string at index 1"),
        ('["", "process.py"]', "starts with an empty string"),
    ],
)
def test_command_rejects_invalid_value(value, problem):
    # Given command mode with an invalid JOB_COMMAND
    # When the settings are read
    with pytest.raises(ConfigurationError) as caught:
        settings_from(JOB_MODE="command", JOB_COMMAND=value)

    # Then the error names the variable and the problem, shows the expected form, and means exit code 2
    message = str(caught.value)
    assert message.startswith("environment variable JOB_COMMAND ")
    assert problem in message
    assert COMMAND_EXAMPLE in message
    assert caught.value.exit_code == 2


def test_command_error_hides_value():
    # Given an invalid JOB_COMMAND that carries a credential
    value = '["curl", "--header", "Authorization: Bearer abc123secret",'

    # When the settings are read
    with pytest.raises(ConfigurationError) as caught:
        settings_from(JOB_MODE="command", JOB_COMMAND=value)

    # Then the error leaves the value out
    assert "abc123secret" not in str(caught.value)


def test_report_mode_rejects_command():
    # Given a command without JOB_MODE=command
    # When the settings are read
    with pytest.raises(ConfigurationError) as caught:
        settings_from(JOB_COMMAND=COMMAND_EXAMPLE)

    # Then the error explains that the command would not run, and how to fix it
    message = str(caught.value)
    assert "JOB_COMMAND is set, but JOB_MODE is report" in message
    assert "set JOB_MODE=command" in message


@pytest.mark.parametrize("mode", ["report", "command"])
def test_result_file_accepts_output_name(mode):
    # Given a result file that the mode can write
    name = "result.json" if mode == "report" else "charts/summary.svg"

    # When the settings are read
    settings = settings_from(JOB_MODE=mode, JOB_COMMAND=COMMAND_EXAMPLE if mode == "command" else "", RESULT_FILE=name)

    # Then the name is kept as given
    assert settings.result_file == name


@pytest.mark.parametrize(
    ("mode", "value", "problem"),
    [
        ("command", "/index.html", "without '.', '..' or empty parts"),
        ("command", "../index.html", "without '.', '..' or empty parts"),
        ("command", "site/./index.html", "without '.', '..' or empty parts"),
        ("command", "site//index.html", "without '.', '..' or empty parts"),
        ("command", "site/", "without '.', '..' or empty parts"),
        ("command", "run-summary.json", "is the job's own summary"),
        ("report", "index.html", "is invalid in report mode"),
    ],
)
def test_result_file_rejects_invalid_name(mode, value, problem):
    # Given a result file name that no output file can have in this mode
    command = COMMAND_EXAMPLE if mode == "command" else ""

    # When the settings are read
    with pytest.raises(ConfigurationError) as caught:
        settings_from(JOB_MODE=mode, JOB_COMMAND=command, RESULT_FILE=value)

    # Then the error names the variable, the value and the problem
    message = str(caught.value)
    assert f"RESULT_FILE={value!r}" in message
    assert problem in message
    assert caught.value.exit_code == 2


# The command's environment


@pytest.mark.parametrize(
    ("name", "left_out"),
    [
        ("PATH", False),
        ("AWS_SECRET_ACCESS_KEY", False),
        ("AWS_SESSION_TOKEN", False),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", False),
        ("BITBUCKET_TOKEN", True),
        ("webhook_secret", True),
        ("DbPassword", True),
        ("MY_API_TOKEN_FILE", True),
        ("aws_secret_access_key", True),
        ("TOKENIZER_MODEL", True),
    ],
)
def test_sensitive_names(name, left_out):
    # Given an environment variable name
    # When the job decides whether the command gets it
    # Then names with SECRET, TOKEN or PASSWORD in any case are left out, unless they start with AWS_
    assert is_sensitive_name(name) is left_out


def test_environment_adds_run_paths(tmp_path):
    # Given the job's environment with AWS credentials, a webhook secret and a stale INPUT_DIR
    environ = {
        "PATH": "/usr/bin",
        "AWS_SESSION_TOKEN": "session",
        "WEBHOOK_SECRET": "hidden",
        "db_password": "hidden",
        "INPUT_DIR": "/stale",
    }

    # When the command's environment is built for the run's folders
    environment, left_out = command_environment(
        environ, tmp_path / "input", tmp_path / "output", tmp_path / "input" / "manifest.json"
    )

    # Then it keeps the ordinary and AWS variables, leaves out the secrets, and sets the three paths
    assert environment["PATH"] == "/usr/bin"
    assert environment["AWS_SESSION_TOKEN"] == "session"
    assert "WEBHOOK_SECRET" not in environment
    assert "db_password" not in environment
    assert left_out == ["WEBHOOK_SECRET", "db_password"]
    assert environment["INPUT_DIR"] == str(tmp_path / "input")
    assert environment["OUTPUT_DIR"] == str(tmp_path / "output")
    assert environment["MANIFEST_PATH"] == str(tmp_path / "input" / "manifest.json")


def test_environment_paths_are_absolute(tmp_path, monkeypatch):
    # Given relative folder paths
    monkeypatch.chdir(tmp_path)

    # When the command's environment is built
    environment, _ = command_environment({}, Path("input"), Path("output"), Path("input/manifest.json"))

    # Then each path is absolute
    assert environment["INPUT_DIR"] == str(tmp_path / "input")
    assert environment["OUTPUT_DIR"] == str(tmp_path / "output")
    assert environment["MANIFEST_PATH"] == str(tmp_path / "input" / "manifest.json")


# The command's program and process


def test_check_program_finds_path_entry(tmp_path):
    # Given an executable script in a folder on the command's PATH
    write_script(tmp_path / "process-run", "exit 0")

    # When the program is checked by its bare name
    # Then no error is raised
    check_program("process-run", {"PATH": str(tmp_path)})


def test_check_program_missing(tmp_path):
    # Given a PATH without the program
    # When the program is checked
    with pytest.raises(JobError) as caught:
        check_program("process-run", {"PATH": str(tmp_path)})

    # Then the error names it, for exit code 1
    assert str(caught.value).startswith("command not found: process-run")
    assert caught.value.exit_code == 1


def test_check_program_defers_paths(tmp_path):
    # Given a program named with a folder, which may arrive only with the input
    # When it is checked before it exists
    # Then no error is raised yet
    check_program("input/files/run.sh", {"PATH": str(tmp_path)})


def test_run_command_in_folder(tmp_path):
    # Given a script that writes its working folder and one variable to a file
    script = write_script(tmp_path / "show.sh", 'pwd > where.txt; printf %s "$OUTPUT_DIR" > output.txt')

    # When it runs in tmp_path with OUTPUT_DIR set
    returncode = run_command([str(script)], tmp_path, {"PATH": os.defpath, "OUTPUT_DIR": "/run/output"})

    # Then it ran there with that environment and succeeded
    assert returncode == 0
    assert (tmp_path / "where.txt").read_text().strip() == str(tmp_path)
    assert (tmp_path / "output.txt").read_text() == "/run/output"


def test_run_command_streams_output(tmp_path, capfd):
    # Given a command that writes one line to stdout and one to stderr
    argv = [sys.executable, "-c", "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"]

    # When it runs
    returncode = run_command(argv, tmp_path, dict(os.environ))

    # Then each line reaches the job's own descriptor unchanged
    captured = capfd.readouterr()
    assert returncode == 0
    assert captured.out == "to stdout\n"
    assert captured.err == "to stderr\n"


def test_run_command_returns_code(tmp_path):
    # Given a command that exits with code 3
    # When it runs
    returncode = run_command([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, dict(os.environ))

    # Then its code is returned, not raised
    assert returncode == 3


def test_run_command_not_found(tmp_path):
    # Given a program path that does not exist
    # When the command runs
    with pytest.raises(JobError) as caught:
        run_command(["./missing.sh"], tmp_path, {"PATH": os.defpath})

    # Then the error names the program
    assert str(caught.value).startswith("command not found: ./missing.sh")


def test_run_command_not_executable(tmp_path):
    # Given a script without the executable bit
    script = write_script(tmp_path / "process.sh", "exit 0", executable=False)

    # When the command runs
    with pytest.raises(JobError) as caught:
        run_command([str(script)], tmp_path, {"PATH": os.defpath})

    # Then the error names the permission problem and how to run the script
    message = str(caught.value)
    assert f"command {script} cannot be run: permission denied" in message
    assert f'["sh", "{script}"]' in message


@pytest.mark.parametrize(
    ("returncode", "code", "message"),
    [
        (0, 0, None),
        (3, 3, "command exited with code 3"),
        (-15, 143, "command was stopped by signal SIGTERM (exit code 143)"),
        (-9, 137, "command was stopped by signal SIGKILL (exit code 137)"),
    ],
)
def test_exit_status_description(returncode, code, message):
    # Given a status as Popen reports it
    # When it is turned into the summary's exit code and the job's error line
    # Then signals count as 128 + N, as shells report them
    assert exit_code(returncode) == code
    assert failure_message(returncode) == message


# Output files


def test_collect_output_files_nested(tmp_path):
    # Given an output folder with files at the top and in nested folders
    output_dir = tmp_path / "output"
    (output_dir / "charts" / "daily").mkdir(parents=True)
    (output_dir / "index.html").write_text("<p>hi</p>")
    (output_dir / "charts" / "daily" / "temp.svg").write_text("<svg/>")
    (output_dir / "charts" / "run-summary.json").write_text("{}")
    (output_dir / "empty.txt").write_bytes(b"")

    # When the output files are collected
    files, skipped = collect_output_files(output_dir)

    # Then each regular file is listed by its name relative to the folder, with its size, sorted by name
    assert files == [
        OutputFile("charts/daily/temp.svg", 6),
        OutputFile("charts/run-summary.json", 2),
        OutputFile("empty.txt", 0),
        OutputFile("index.html", 9),
    ]
    assert skipped == []


def test_collect_output_skips_links(tmp_path):
    # Given an output folder with links to a file and a folder outside it, a dangling link and a link inside
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.txt").write_text("not for upload")
    (outside / "folder" / "inner.txt").write_text("not for upload")
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    (output_dir / "data.csv").write_text("a,b\n")
    (output_dir / "to-file.txt").symlink_to(outside / "secret.txt")
    (output_dir / "to-folder").symlink_to(outside / "folder")
    (output_dir / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (output_dir / "inside.csv").symlink_to(output_dir / "data.csv")

    # When the output files are collected
    files, skipped = collect_output_files(output_dir)

    # Then only the regular file is listed, and each link is skipped with a reason
    assert files == [OutputFile("data.csv", 4)]
    assert len(skipped) == 4
    assert "not uploading 'output/to-folder', because it is a symbolic link" in skipped
    assert "not uploading 'output/to-file.txt', because it is a symbolic link" in skipped
    assert "not uploading 'output/dangling.txt', because it is a symbolic link" in skipped
    assert "not uploading 'output/inside.csv', because it is a symbolic link" in skipped


def test_collect_output_skips_special_files(tmp_path):
    # Given an output folder with a FIFO, the job's own summary name and a name that is not UTF-8
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    os.mkfifo(output_dir / "pipe")
    (output_dir / "run-summary.json").write_text("{}")
    with open(os.fsencode(output_dir) + b"/bad-\xff.txt", "wb") as stream:
        stream.write(b"x")

    # When the output files are collected
    files, skipped = collect_output_files(output_dir)

    # Then none of them is listed, and each gets its reason
    assert files == []
    assert "not uploading 'output/pipe', because it is not a regular file" in skipped
    assert any("'output/run-summary.json', because it has the name of the job's own" in line for line in skipped)
    assert any("because it has a name that is not valid UTF-8" in line for line in skipped)


def test_collect_output_replaced_folder(tmp_path):
    # Given a command that replaced the output folder with a link to another folder
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for upload")
    output_dir = tmp_path / "output"
    output_dir.symlink_to(outside)

    # When the output files are collected
    files, skipped = collect_output_files(output_dir)

    # Then nothing is listed
    assert files == []
    assert skipped == [f"not uploading any output, because {output_dir} is no longer a folder"]


@pytest.mark.parametrize(
    ("requested", "names", "expected"),
    [
        (None, ["result.json", "report.html", "index.html"], "index.html"),
        (None, ["result.json", "report.html"], "report.html"),
        (None, ["data.csv", "result.json"], "result.json"),
        (None, ["data.csv", "site/index.html"], None),
        (None, [], None),
        ("charts/summary.svg", ["index.html", "charts/summary.svg"], "charts/summary.svg"),
        ("summary.csv", ["index.html"], None),
    ],
)
def test_choose_result_file(requested, names, expected):
    # Given RESULT_FILE (or none) and the names of the uploaded files
    # When the result file is chosen
    # Then RESULT_FILE wins when it was written, and otherwise the first top-level default found
    assert choose_result_file(requested, names) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("summary.csv", "text/csv; charset=utf-8"),
        ("result.json", "application/json"),
        ("records.jsonl", "application/x-ndjson"),
        ("chart.svg", "image/svg+xml"),
        ("summary.csv.gz", "application/gzip"),
        ("data:summary.csv", "text/csv; charset=utf-8"),
        ("model.bin", "application/octet-stream"),
        ("LICENSE", "application/octet-stream"),
    ],
)
def test_content_type(name, expected):
    # Given an output file name
    # When its content type is guessed
    # Then it follows the extension, and a compressed file keeps the archive's type
    assert content_type(name) == expected


# Input layout


def test_artifact_paths_follow_manifest(tmp_path):
    # Given artifacts in nested folders
    manifest = manifest_with("files/data/stations.csv.jsonl", "files/README.md", "files/./config.json")

    # When their local paths are laid out
    paths = artifact_local_paths(manifest, tmp_path)

    # Then each sits at its artifact path below the input folder
    assert paths == [
        tmp_path / "files" / "data" / "stations.csv.jsonl",
        tmp_path / "files" / "README.md",
        tmp_path / "files" / "config.json",
    ]


@pytest.mark.parametrize(
    ("artifacts", "clash"),
    [
        (("files/a", "files/./a"), "artifact files/./a of source-1 has the same path as artifact files/a of source-0"),
        (("files/a", "files/a/b"), "artifact files/a/b of source-1 needs a folder where artifact files/a of"),
        (("files/a/b", "files/a"), "artifact files/a/b of source-0 needs a folder where artifact files/a of"),
        (("manifest.json",), "artifact manifest.json of source-0 has the same path as the manifest"),
        (("manifest.json/x",), "needs a folder where the manifest is a file"),
        ((".",), "artifact . of source-0 names no file"),
    ],
)
def test_artifact_paths_reject_clash(tmp_path, artifacts, clash):
    # Given artifacts that cannot all be files at their paths
    manifest = manifest_with(*artifacts)

    # When their local paths are laid out
    with pytest.raises(JobError) as caught:
        artifact_local_paths(manifest, tmp_path)

    # Then the error names both owners of the path
    assert clash in str(caught.value)


# Run summary


def test_run_summary_fields():
    # Given a finished command run with two uploaded files
    settings = settings_from(JOB_MODE="command", JOB_COMMAND=COMMAND_EXAMPLE)
    started_at = datetime(2026, 12, 4, 19, 48, 32, 123456, tzinfo=UTC)
    finished_at = datetime(2026, 12, 4, 19, 50, 1, tzinfo=UTC)
    files = [OutputFile("summary.csv", 12), OutputFile("index.html", 40)]

    # When the summary is built
    summary = build_run_summary(settings, 3, started_at, finished_at, "index.html", files)

    # Then it contains the run, mode, code, times in whole seconds, result file and files by name
    assert summary == {
        "run_id": "run-1",
        "mode": "command",
        "exit_code": 3,
        "started_at": "2026-12-04T19:48:32Z",
        "finished_at": "2026-12-04T19:50:01Z",
        "result_file": "index.html",
        "files": [{"name": "index.html", "size": 40}, {"name": "summary.csv", "size": 12}],
    }
