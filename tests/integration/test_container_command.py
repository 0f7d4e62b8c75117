"""Command mode, and run-summary.json in both modes, with the job as a real process against moto's S3 server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from test_container_job import (
    BUCKET,
    COMMIT,
    OUTPUT_PREFIX,
    README_MD,
    RUN_ID,
    STATIONS_JSONL,
    output_keys,
    run_job,
    store_run,
)

RUN_FILES = [
    ("data/stations.csv", "files/data/stations.csv.jsonl", "jsonl", STATIONS_JSONL),
    ("README.md", "files/README.md", "raw", README_MD),
]

# Reads the manifest and every artifact at its artifact path, and logs one line per file on stdout and one on
# stderr. Then it writes a CSV, a page, a nested chart, the names in its environment and a link to the manifest.
PROCESS_SCRIPT = """
import json, os, pathlib, sys
input_dir = pathlib.Path(os.environ["INPUT_DIR"])
output_dir = pathlib.Path(os.environ["OUTPUT_DIR"])
manifest = json.loads(pathlib.Path(os.environ["MANIFEST_PATH"]).read_text())
rows = ["path,bytes"]
for file in manifest["files"]:
    data = (input_dir / file["artifact"]).read_bytes()
    rows.append(f"{file['path']},{len(data)}")
    print(f"processed {file['path']}")
print("note from the command", file=sys.stderr)
(output_dir / "summary.csv").write_text("\\n".join(rows) + "\\n")
(output_dir / "index.html").write_text("<h1>" + manifest["commit"] + "</h1>")
(output_dir / "charts").mkdir()
(output_dir / "charts" / "sizes.svg").write_text("<svg/>")
seen = {"cwd": os.getcwd(), "names": sorted(os.environ), "input_dir": str(input_dir)}
(output_dir / "environment.json").write_text(json.dumps(seen))
os.symlink(input_dir / "manifest.json", output_dir / "manifest-link.json")
"""

FAILING_SCRIPT = """
import os, pathlib
pathlib.Path(os.environ["OUTPUT_DIR"], "partial.csv").write_text("path,bytes\\n")
print("wrote partial.csv")
raise SystemExit(3)
"""

WAITING_SCRIPT = """
import os, pathlib, time
pathlib.Path(os.environ["OUTPUT_DIR"], "partial.csv").write_text("path,bytes\\n")
print("waiting for SIGTERM", flush=True)
time.sleep(600)
"""


@pytest.fixture
def s3(aws):
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def python_on_path() -> str:
    """PATH with this interpreter's folder first, so the command's `python` is the test's Python."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])


def command_variables(*argv: str, **variables: str) -> dict[str, str]:
    return {"JOB_MODE": "command", "JOB_COMMAND": json.dumps(list(argv)), "PATH": python_on_path(), **variables}


def read_object(s3, name: str) -> dict:
    return s3.get_object(Bucket=BUCKET, Key=OUTPUT_PREFIX + name)


def read_summary(s3) -> dict:
    return json.loads(read_object(s3, "run-summary.json")["Body"].read())


def test_command_uploads_output(s3, tmp_path):
    # Given a run with two artifacts and a command that reads them and writes four files and a link
    store_run(s3, RUN_FILES)

    # When the job runs the command, with a Bitbucket token in its own environment
    completed = run_job(tmp_path, **command_variables("python", "-c", PROCESS_SCRIPT, BITBUCKET_TOKEN="tok-hidden"))

    # Then it succeeds and uploads the regular files and run-summary.json, but not the link
    assert completed.returncode == 0, completed.stderr
    assert output_keys(s3) == [
        OUTPUT_PREFIX + "charts/sizes.svg",
        OUTPUT_PREFIX + "environment.json",
        OUTPUT_PREFIX + "index.html",
        OUTPUT_PREFIX + "run-summary.json",
        OUTPUT_PREFIX + "summary.csv",
    ]
    assert "not uploading 'output/manifest-link.json', because it is a symbolic link" in completed.stdout

    # And the command found each artifact at its manifest path, with the verified bytes
    summary_csv = read_object(s3, "summary.csv")
    assert summary_csv["Body"].read().decode() == (
        f"path,bytes\ndata/stations.csv,{len(STATIONS_JSONL)}\nREADME.md,{len(README_MD)}\n"
    )
    assert read_object(s3, "index.html")["Body"].read().decode() == f"<h1>{COMMIT}</h1>"

    # And each file has a content type from its extension
    assert summary_csv["ContentType"] == "text/csv; charset=utf-8"
    assert read_object(s3, "index.html")["ContentType"] == "text/html; charset=utf-8"
    assert read_object(s3, "charts/sizes.svg")["ContentType"] == "image/svg+xml"
    assert read_object(s3, "run-summary.json")["ContentType"] == "application/json"

    # And run-summary.json names the mode, the code, index.html as the result file and every uploaded file
    summary = read_summary(s3)
    assert summary["run_id"] == RUN_ID
    assert summary["mode"] == "command"
    assert summary["exit_code"] == 0
    assert summary["result_file"] == "index.html"
    assert summary["started_at"].endswith("Z")
    assert summary["finished_at"] >= summary["started_at"]
    names = [file["name"] for file in summary["files"]]
    assert names == ["charts/sizes.svg", "environment.json", "index.html", "summary.csv"]
    sizes = {file["name"]: file["size"] for file in summary["files"]}
    assert sizes["index.html"] == len(f"<h1>{COMMIT}</h1>")

    # And the command ran in the folder above INPUT_DIR, with AWS credentials but without the token
    seen = json.loads(read_object(s3, "environment.json")["Body"].read())
    assert Path(seen["cwd"]) == Path(seen["input_dir"]).parent
    assert "AWS_SESSION_TOKEN" in seen["names"]
    assert "BITBUCKET_TOKEN" not in seen["names"]
    assert "OUTPUT_DIR" in seen["names"]
    assert "MANIFEST_PATH" in seen["names"]
    assert "leaving out of the command's environment: BITBUCKET_TOKEN" in completed.stdout
    assert "tok-hidden" not in completed.stdout

    # And the command's lines reach the job's stdout and stderr unchanged, between the job's own log lines
    assert "processed data/stations.csv\nprocessed README.md\n" in completed.stdout
    assert completed.stderr == "note from the command\n"
    running = completed.stdout.index('running ["python", "-c", ')
    processed = completed.stdout.index("processed data/stations.csv")
    uploaded = completed.stdout.index("uploaded 4 output files")
    assert running < processed < uploaded

    # And the working folder is gone
    assert list((tmp_path / "scratch").iterdir()) == []


@pytest.mark.parametrize(
    ("result_file", "expected"),
    [("charts/sizes.svg", "charts/sizes.svg"), ("missing.html", None)],
)
def test_command_result_file(s3, tmp_path, result_file, expected):
    # Given a run and RESULT_FILE naming a file that the command writes, or one it does not write
    store_run(s3, RUN_FILES)

    # When the job runs the command
    variables = command_variables("python", "-c", PROCESS_SCRIPT, RESULT_FILE=result_file)
    completed = run_job(tmp_path, **variables)

    # Then run-summary.json names that file only when it was uploaded
    assert completed.returncode == 0, completed.stderr
    assert read_summary(s3)["result_file"] == expected
    warned = f"RESULT_FILE {result_file} was not written by the command" in completed.stdout
    assert warned is (expected is None)


def test_command_failure_uploads_partial(s3, tmp_path):
    # Given a run and a command that writes one file and exits with code 3
    store_run(s3, RUN_FILES)

    # When the job runs the command
    completed = run_job(tmp_path, **command_variables("python", "-c", FAILING_SCRIPT))

    # Then the job fails with exit 1 and names the command's code on stderr
    assert completed.returncode == 1
    assert completed.stderr == "error: command exited with code 3\n"
    assert "wrote partial.csv" in completed.stdout

    # And the partial output and run-summary.json are uploaded, with the code and no result file
    assert output_keys(s3) == [OUTPUT_PREFIX + "partial.csv", OUTPUT_PREFIX + "run-summary.json"]
    summary = read_summary(s3)
    assert summary["exit_code"] == 3
    assert summary["result_file"] is None
    assert summary["files"] == [{"name": "partial.csv", "size": len("path,bytes\n")}]


@pytest.mark.parametrize("program", ["bitbatch-no-such-program", "./input/files/no-such-script.sh"])
def test_command_not_found(s3, tmp_path, program):
    # Given a run and a command whose program does not exist, by bare name or by path
    store_run(s3, RUN_FILES)

    # When the job runs
    completed = run_job(tmp_path, **command_variables(program, "--flag"))

    # Then it fails with exit 1 naming the program, and uploads nothing
    assert completed.returncode == 1
    assert completed.stderr.startswith(f"error: command not found: {program}")
    assert "Traceback" not in completed.stderr
    assert output_keys(s3) == []
    assert list((tmp_path / "scratch").iterdir()) == []


def test_bare_program_checked_first(s3, tmp_path):
    # Given a command whose program is not on PATH and a run whose input is missing
    # When the job runs
    completed = run_job(tmp_path, **command_variables("bitbatch-no-such-program"))

    # Then it names the program before it reads the input
    assert completed.returncode == 1
    assert completed.stderr.startswith("error: command not found: bitbatch-no-such-program")
    assert "reading manifest" not in completed.stdout


def test_command_stops_on_bad_input(s3, tmp_path):
    # Given an artifact changed after the manifest was written, and a command that would write output
    changed = STATIONS_JSONL.replace(b"Oslo", b"Rome")
    store_run(s3, RUN_FILES, uploads={"files/data/stations.csv.jsonl": changed})

    # When the job runs the command
    completed = run_job(tmp_path, **command_variables("python", "-c", PROCESS_SCRIPT))

    # Then it fails on the checksum as report mode does, without running the command
    assert completed.returncode == 1
    assert "SHA-256" in completed.stderr
    assert "running [" not in completed.stdout
    assert output_keys(s3) == []


def test_command_invalid_json(aws, tmp_path):
    # Given command mode with a JOB_COMMAND that is a shell line, not JSON
    # When the job runs
    completed = run_job(tmp_path, JOB_MODE="command", JOB_COMMAND="python process.py")

    # Then it fails with exit 2 naming the variable and the expected form
    assert completed.returncode == 2
    assert completed.stderr.startswith("error: environment variable JOB_COMMAND is not valid JSON")
    assert '["python", "process.py"]' in completed.stderr


def test_command_gets_sigterm(s3, tmp_path):
    # Given a run and a command that writes one file and then waits
    store_run(s3, RUN_FILES)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    environment = {
        **os.environ,
        "RUN_ID": RUN_ID,
        "ARTIFACTS_BUCKET": BUCKET,
        "INPUT_PREFIX": f"runs/{RUN_ID}/input/",
        "OUTPUT_PREFIX": OUTPUT_PREFIX,
        "TMPDIR": str(scratch),
        **command_variables("python", "-c", WAITING_SCRIPT),
    }
    # A session of its own lets the test stop the job and the command together if the job fails to.
    job = subprocess.Popen(
        [sys.executable, "-m", "bitbatch_job"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    # When the job gets SIGTERM, as Batch sends it to stop a job, once the command is waiting
    lines = []
    try:
        for line in job.stdout:
            lines.append(line)
            if line == "waiting for SIGTERM\n":
                job.send_signal(signal.SIGTERM)
                break
        stdout, stderr = job.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)

    # Then the command stops, the job uploads what it wrote, and fails with exit 1 naming the signal
    assert "waiting for SIGTERM\n" in lines, "".join(lines) + stdout + stderr
    assert job.returncode == 1
    assert stderr == "error: command was stopped by signal SIGTERM (exit code 143)\n"
    assert output_keys(s3) == [OUTPUT_PREFIX + "partial.csv", OUTPUT_PREFIX + "run-summary.json"]
    assert read_summary(s3)["exit_code"] == 143
    assert list(scratch.iterdir()) == []


def test_report_writes_summary(s3, tmp_path):
    # Given a run and no JOB_MODE
    store_run(s3, RUN_FILES)

    # When the job runs
    completed = run_job(tmp_path)

    # Then run-summary.json names report mode, exit code 0, report.html and the two uploaded files
    assert completed.returncode == 0, completed.stderr
    summary = read_summary(s3)
    assert summary["run_id"] == RUN_ID
    assert summary["mode"] == "report"
    assert summary["exit_code"] == 0
    assert summary["result_file"] == "report.html"
    assert summary["started_at"].endswith("Z")
    assert summary["finished_at"].endswith("Z")

    # And each listed size is the uploaded object's size
    sizes = {file["name"]: file["size"] for file in summary["files"]}
    assert sorted(sizes) == ["report.html", "result.json"]
    for name, size in sizes.items():
        assert read_object(s3, name)["ContentLength"] == size, name


def test_report_result_file(s3, tmp_path):
    # Given a run and RESULT_FILE=result.json in report mode
    store_run(s3, RUN_FILES)

    # When the job runs
    completed = run_job(tmp_path, RESULT_FILE="result.json")

    # Then run-summary.json names result.json
    assert completed.returncode == 0, completed.stderr
    assert read_summary(s3)["result_file"] == "result.json"
