"""The Batch job as a real process against moto's S3 server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

BUCKET = "bitbatch-artifacts-test"
RUN_ID = "run-20261204-0001"
INPUT_PREFIX = f"runs/{RUN_ID}/input/"
OUTPUT_PREFIX = f"runs/{RUN_ID}/output/"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"

STATIONS_JSONL = (
    b'{"station": "Oslo", "temp": 3.5, "active": true}\n'
    b'{"station": "Bergen", "temp": 7, "active": false}\n'
    b'{"station": "Oslo", "temp": null, "active": true}\n'
)
ITEMS_JSON = b'[{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}]'
CONFIG_JSON = b'{\n  "retries": 3,\n  "name": "<nightly>"\n}\n'
README_MD = b"# Weather\n\nStations & readings.\n"


def artifact_entry(path: str, artifact: str, file_format: str, data: bytes) -> dict:
    return {
        "path": path,
        "artifact": artifact,
        "transform": {"jsonl": "csv-jsonl", "json": "yaml-json", "raw": "copy"}[file_format],
        "format": file_format,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def store_run(s3, files: list[tuple[str, str, str, bytes]], uploads: dict[str, bytes] | None = None) -> None:
    """Write a manifest for `files` (path, artifact, format, data) and upload the artifacts.

    `uploads` replaces the uploaded bytes of chosen artifacts, so the manifest can disagree with S3.
    """
    uploads = uploads or {}
    manifest = {
        "run_id": RUN_ID,
        "repository": "team/weather",
        "ref": "refs/heads/main",
        "commit": COMMIT,
        "created_at": "2026-12-04T19:48:32Z",
        "files": [artifact_entry(*file) for file in files],
    }
    s3.put_object(Bucket=BUCKET, Key=INPUT_PREFIX + "manifest.json", Body=json.dumps(manifest).encode())
    for _, artifact, _, data in files:
        s3.put_object(Bucket=BUCKET, Key=INPUT_PREFIX + artifact, Body=uploads.get(artifact, data))


def run_job(tmp_path: Path, **overrides: str | None) -> subprocess.CompletedProcess:
    """Run `python -m bitbatch_job` with the run's variables; an override of None removes a variable."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "RUN_ID": RUN_ID,
        "ARTIFACTS_BUCKET": BUCKET,
        "INPUT_PREFIX": INPUT_PREFIX,
        "OUTPUT_PREFIX": OUTPUT_PREFIX,
        "TMPDIR": str(scratch),
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-m", "bitbatch_job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def output_keys(s3) -> list[str]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=OUTPUT_PREFIX)
    return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture
def s3(aws):
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def test_job_uploads_report(s3, tmp_path):
    # Given a run with a jsonl artifact, a json artifact, a raw .json file and a raw Markdown file
    store_run(
        s3,
        [
            ("data/stations.csv", "files/data/stations.csv.jsonl", "jsonl", STATIONS_JSONL),
            ("data/items.yaml", "files/data/items.yaml.json", "json", ITEMS_JSON),
            ("config.json", "files/config.json", "raw", CONFIG_JSON),
            ("README.md", "files/README.md", "raw", README_MD),
        ],
    )

    # When the job runs
    completed = run_job(tmp_path)

    # Then it succeeds and uploads result.json, report.html and run-summary.json with their content types
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    assert output_keys(s3) == [
        OUTPUT_PREFIX + "report.html",
        OUTPUT_PREFIX + "result.json",
        OUTPUT_PREFIX + "run-summary.json",
    ]

    result_object = s3.get_object(Bucket=BUCKET, Key=OUTPUT_PREFIX + "result.json")
    assert result_object["ContentType"] == "application/json"
    result = json.loads(result_object["Body"].read())
    assert result["run_id"] == RUN_ID
    assert result["repository"] == "team/weather"
    assert result["ref"] == "refs/heads/main"
    assert result["commit"] == COMMIT
    assert result["generated_at"].endswith("Z")

    # And the numbers match the inputs
    total_bytes = len(STATIONS_JSONL) + len(ITEMS_JSON) + len(CONFIG_JSON) + len(README_MD)
    assert result["totals"] == {"files": 4, "records": 6, "bytes": total_bytes}

    files = {file["path"]: file for file in result["files"]}
    stations = files["data/stations.csv"]
    assert stations["records"] == 3
    temp = next(field for field in stations["fields"] if field["name"] == "temp")
    assert temp["types"] == ["integer", "number"]
    assert temp["nulls"] == 1
    assert temp["min"] == 3.5
    assert temp["max"] == 7
    assert temp["mean"] == pytest.approx(5.25)
    station = next(field for field in stations["fields"] if field["name"] == "station")
    assert station["distinct"] == 2

    assert files["data/items.yaml"]["records"] == 2
    assert files["config.json"]["parsed_as"] == "json"
    assert files["config.json"]["records"] == 1
    assert files["README.md"]["parsed_as"] == "text"
    assert files["README.md"]["lines"] == 3

    html_object = s3.get_object(Bucket=BUCKET, Key=OUTPUT_PREFIX + "report.html")
    assert html_object["ContentType"] == "text/html; charset=utf-8"
    page = html_object["Body"].read().decode("utf-8")
    assert page.count("<table>") == 3
    assert "<code>data/stations.csv</code>" in page

    # And it logged each step on stdout and left no temporary files
    assert "downloading 4 files" in completed.stdout
    assert "report built: 4 files, 6 records" in completed.stdout
    assert "uploaded" in completed.stdout
    assert list((tmp_path / "scratch").iterdir()) == []


def test_job_rejects_changed_artifact(s3, tmp_path):
    # Given an artifact whose bytes changed after the manifest was written, at the same size
    changed = STATIONS_JSONL.replace(b"Oslo", b"Rome")
    store_run(
        s3,
        [("data/stations.csv", "files/data/stations.csv.jsonl", "jsonl", STATIONS_JSONL)],
        uploads={"files/data/stations.csv.jsonl": changed},
    )

    # When the job runs
    completed = run_job(tmp_path)

    # Then it fails with exit 1, names the artifact and the checksum, and uploads nothing
    assert completed.returncode == 1
    assert completed.stderr.startswith("error: ")
    assert "files/data/stations.csv.jsonl" in completed.stderr
    assert "SHA-256" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert output_keys(s3) == []
    assert list((tmp_path / "scratch").iterdir()) == []


def test_job_rejects_longer_artifact(s3, tmp_path):
    # Given an artifact larger than its size in the manifest
    store_run(
        s3,
        [("README.md", "files/README.md", "raw", README_MD)],
        uploads={"files/README.md": README_MD * 3},
    )

    # When the job runs
    completed = run_job(tmp_path)

    # Then it fails with exit 1 and names the expected size
    assert completed.returncode == 1
    assert f"the manifest expects {len(README_MD)}" in completed.stderr


def test_job_rejects_invalid_json(s3, tmp_path):
    # Given a raw .json file with a missing comma on line 3
    broken = b'{\n  "retries": 3\n  "name": "x"\n}\n'
    store_run(s3, [("config/app.json", "files/config/app.json", "raw", broken)])

    # When the job runs
    completed = run_job(tmp_path)

    # Then it fails with exit 1 naming the file, line and column
    assert completed.returncode == 1
    assert "error: config/app.json is not valid JSON" in completed.stderr
    assert "line 3, column 3" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert output_keys(s3) == []


def test_job_missing_manifest(s3, tmp_path):
    # Given an empty input prefix
    # When the job runs
    completed = run_job(tmp_path)

    # Then it fails with exit 1 naming the manifest key
    assert completed.returncode == 1
    assert f"s3://{BUCKET}/{INPUT_PREFIX}manifest.json not found" in completed.stderr


@pytest.mark.parametrize("name", ["RUN_ID", "ARTIFACTS_BUCKET", "INPUT_PREFIX", "OUTPUT_PREFIX"])
def test_job_missing_variable(aws, tmp_path, name):
    # Given the job's environment without one variable
    # When the job runs
    completed = run_job(tmp_path, **{name: None})

    # Then it fails with exit 2 naming the variable
    assert completed.returncode == 2
    assert completed.stderr.startswith(f"error: environment variable {name} is missing")
    assert "Traceback" not in completed.stderr


def test_job_prefix_without_slash(aws, tmp_path):
    # Given an input prefix without its trailing slash
    # When the job runs
    completed = run_job(tmp_path, INPUT_PREFIX=INPUT_PREFIX.rstrip("/"))

    # Then it fails with exit 2 naming the variable and the expected form
    assert completed.returncode == 2
    assert "INPUT_PREFIX" in completed.stderr
    assert "ends with '/'" in completed.stderr
