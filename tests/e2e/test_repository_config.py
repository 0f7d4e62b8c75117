"""bitbatch.yml, changed files and hostile repository content, through the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import boto3
import pytest

from bitbatch_local.payloads import cloud_push_payload, signed_delivery
from bitbatch_local.samplerepo import add_commit, build_sample_repository, git_environment
from bitbatch_local.stack import LocalStack

pytestmark = pytest.mark.e2e

REPOSITORY = "weather/stations"
LIMITS = {"max_file_bytes": 200_000, "max_files": 60, "max_checkout_bytes": 5_000_000}

PIPELINE = """\
version: 1
triggers:
  branches:
    include: ["main", "release/*"]
  paths:
    include: ["data/**", "config/*.yaml"]
    exclude: ["data/scratch/**"]
transforms:
  - match: "data/**/*.csv"
    transform: csv-jsonl
  - match: "data/**/*.tsv"
    transform: csv-jsonl
  - match: "config/*.yaml"
    transform: yaml-json
notify:
  recipients: ["data-team@example.com"]
"""


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    sample = build_sample_repository(root / REPOSITORY)
    return root, sample


@pytest.fixture(scope="module")
def stack(repos, tmp_path_factory):
    root, _ = repos
    work = tmp_path_factory.mktemp("work")
    # The transform runs in this process: give its temporary folders a folder of their
    # own, so a check for leftovers finds no other test's or process's checkouts.
    scratch = work / "tmp"
    scratch.mkdir()
    saved_tempdir = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        with LocalStack(
            root, work, limits=LIMITS, runnable_timeout_seconds=1, function_log_path=work / "functions.log"
        ) as running:
            running.scratch = scratch
            yield running
    finally:
        tempfile.tempdir = saved_tempdir


@pytest.fixture
def sample(repos):
    return repos[1]


def deliver(stack, sample, commit: str, previous: str | None, ref_name: str = "main") -> dict:
    payload = cloud_push_payload(sample.path, REPOSITORY, ref_name, commit, previous, stack.git.base_url)
    body, headers = signed_delivery(payload, stack.webhook_secret)
    request = urllib.request.Request(stack.webhook_url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        answer = json.loads(response.read())
    return stack.wait_for_run(answer["runs"][0]["run_id"])


def head(sample) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=sample.path, env=git_environment(), check=True, capture_output=True, text=True
    ).stdout.strip()


def manifest_of(stack, run) -> dict:
    s3 = boto3.client("s3")
    body = s3.get_object(Bucket=stack.resources.bucket, Key=run.input_prefix + "manifest.json")["Body"].read()
    return json.loads(body)


def stored_keys(stack, prefix: str) -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=stack.resources.bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def emails_about(stack, run_id: str):
    return [sent for sent in stack.sent_emails() if run_id in sent.text]


def checkouts_left(stack) -> set[Path]:
    return set(stack.scratch.glob("bitbatch-checkout-*"))


def test_config_selects_paths_and_files(stack, sample):
    # Given a repository that adds bitbatch.yml with path triggers and its own rules
    before = head(sample)
    with_config = add_commit(sample.path, {"bitbatch.yml": PIPELINE}, "Add pipeline configuration")
    first = deliver(stack, sample, with_config, before)
    # The push adds only bitbatch.yml, which the path triggers do not include
    assert first.status == "SKIPPED"
    assert "triggers.paths" in first.failure_reason
    assert first.job_id is None

    # When a push changes only files outside the included paths
    docs_only = add_commit(sample.path, {"README.md": "# Stations\n\nNew text.\n", "data/scratch/tmp.csv": "a\n1\n"}, "Docs")
    skipped = deliver(stack, sample, docs_only, with_config)

    # Then the run is SKIPPED with the reason and starts no job
    assert skipped.status == "SKIPPED"
    assert "none of the 2 changed files matches triggers.paths" in skipped.failure_reason
    assert skipped.job_id is None

    # When a push changes an included data file
    data_change = add_commit(sample.path, {"data/stations.csv": (sample.path / "data/stations.csv").read_text() + "ST99,Test Hill,57.1,-4.2,310,true\n"}, "Add station")
    run = deliver(stack, sample, data_change, docs_only)

    # Then the manifest contains exactly the files the rules transform, and the change list
    assert run.status == "SUCCEEDED"
    manifest = manifest_of(stack, run)
    assert manifest["config"] == "bitbatch.yml"
    assert sorted((entry["path"], entry["transform"]) for entry in manifest["files"]) == [
        ("config/pipeline.yaml", "yaml-json"),
        ("data/readings.tsv", "csv-jsonl"),
        ("data/scratch/tmp.csv", "csv-jsonl"),
        ("data/stations.csv", "csv-jsonl"),
    ]
    assert manifest["base_commit"] == docs_only
    assert manifest["changes"] == [{"change": "modify", "path": "data/stations.csv"}]

    # and the email went to the pusher and the configured recipient
    emails = emails_about(stack, run.run_id)
    assert len(emails) == 1
    assert emails[0].recipients == [sample.author_email, "data-team@example.com"]


def test_branch_outside_triggers_skipped(stack, sample):
    commit = add_commit(sample.path, {"data/extra.csv": "id\n1\n"}, "Extra data")

    run = deliver(stack, sample, commit, None, ref_name="feature/x")

    assert run.status == "SKIPPED"
    assert "branch feature/x is not selected" in run.failure_reason


def test_renames_and_deletions_in_manifest(stack, sample):
    before = head(sample)
    readings = (sample.path / "data/readings.tsv").read_bytes()
    commit = add_commit(
        sample.path,
        {"data/readings-2024.tsv": readings, "data/readings.tsv": None, "data/extra.csv": None},
        "Rename readings and drop extra data",
    )

    run = deliver(stack, sample, commit, before)

    assert run.status == "SUCCEEDED"
    changes = manifest_of(stack, run)["changes"]
    assert {"change": "rename", "path": "data/readings-2024.tsv", "old_path": "data/readings.tsv"} in changes
    assert {"change": "delete", "path": "data/extra.csv"} in changes


def test_invalid_config_fails_before_job(stack, sample):
    # Given a bitbatch.yml with a misspelt key on line 4 and a wrong vCPU value on line 6
    before = head(sample)
    broken = "version: 1\ntriggers:\n  branches:\n    includes: [main]\njob:\n  vcpu: 3\n"
    commit = add_commit(sample.path, {"bitbatch.yml": broken}, "Break the configuration")

    # When it is pushed
    run = deliver(stack, sample, commit, before)

    # Then the run fails without a job, and the email names the lines, keys and allowed values
    assert run.status == "FAILED"
    assert run.job_id is None
    assert "line 4: triggers.branches.includes: unknown key; allowed keys are exclude, include" in run.failure_reason
    assert "line 6: job.vcpu: 3 is not allowed" in run.failure_reason
    emails = emails_about(stack, run.run_id)
    assert len(emails) == 1
    assert "line 4: triggers.branches.includes" in emails[0].text

    # Restore a valid configuration for the tests that follow
    fixed = add_commit(sample.path, {"bitbatch.yml": PIPELINE}, "Fix the configuration")
    assert deliver(stack, sample, fixed, commit).status in ("SUCCEEDED", "SKIPPED")


def test_hostile_entries_skipped_and_reported(stack, sample):
    # Given a commit with a symlink to the process environment (and one to a data file),
    # a submodule entry and file names with spaces, colons and non-ASCII letters
    before = head(sample)
    os.symlink("/proc/self/environ", sample.path / "data" / "environ.csv")
    os.symlink("stations.csv", sample.path / "data" / "alias.csv")
    environment = git_environment()
    subprocess.run(["git", "add", "data/environ.csv", "data/alias.csv"], cwd=sample.path, env=environment, check=True)
    gitlink = "160000,1111111111111111111111111111111111111111,data/vendor"
    subprocess.run(["git", "update-index", "--add", "--cacheinfo", gitlink], cwd=sample.path, env=environment, check=True)
    odd_names = {
        "data/Météo stations.csv": "station,temperature\nÉcosse,4.5\n",
        "data/2024-03-05T14:40:00 readings.csv": "station,value\nST01,1\n",
    }
    commit = add_commit(sample.path, odd_names, "Add links, a submodule and odd names")
    leftovers = checkouts_left(stack)

    # When it is pushed
    run = deliver(stack, sample, commit, before)

    # Then the links and the submodule are skipped with reasons, never read
    assert run.status == "SUCCEEDED"
    manifest = manifest_of(stack, run)
    skipped = {item["path"]: item["reason"] for item in manifest["skipped"]}
    assert "symbolic link" in skipped["data/environ.csv"]
    assert "symbolic link" in skipped["data/alias.csv"]
    assert "submodule" in skipped["data/vendor"]
    paths = {entry["path"]: entry for entry in manifest["files"]}
    assert "data/environ.csv" not in paths
    for key in stored_keys(stack, run.input_prefix):
        body = boto3.client("s3").get_object(Bucket=stack.resources.bucket, Key=key)["Body"].read()
        assert b"AWS_SECRET_ACCESS_KEY" not in body

    # and odd names reach S3 under percent-encoded keys, with the real path in the manifest
    meteo = paths["data/Météo stations.csv"]
    assert meteo["artifact"] == "files/data/M%C3%A9t%C3%A9o%20stations.csv.jsonl"
    stored = boto3.client("s3").get_object(Bucket=stack.resources.bucket, Key=run.input_prefix + meteo["artifact"])
    assert json.loads(stored["Body"].read().decode().splitlines()[0]) == {"station": "Écosse", "temperature": 4.5}
    assert paths["data/2024-03-05T14:40:00 readings.csv"]["artifact"].startswith("files/data/2024-03-05T14%3A40%3A00%20")
    assert checkouts_left(stack) == leftovers == set()


def test_lfs_pointer_fails_run(stack, sample):
    # Given a data file that Git LFS replaced with a pointer
    before = head(sample)
    pointer = (
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        "size 12345\n"
    )
    commit = add_commit(
        sample.path,
        {".gitattributes": "data/large.csv filter=lfs diff=lfs merge=lfs -text\n", "data/large.csv": pointer},
        "Track large data with LFS",
    )
    leftovers = checkouts_left(stack)

    # When it is pushed
    run = deliver(stack, sample, commit, before)

    # Then the run fails naming the file instead of transforming the pointer text, and no checkout is left
    assert run.status == "FAILED"
    assert "data/large.csv is a Git LFS pointer" in run.failure_reason
    assert run.job_id is None
    assert checkouts_left(stack) == leftovers == set()
    remove = add_commit(sample.path, {".gitattributes": None, "data/large.csv": None}, "Drop LFS file")
    assert deliver(stack, sample, remove, commit).status == "SUCCEEDED"


def test_file_size_limit_fails_run(stack, sample):
    before = head(sample)
    rows = "id,value\n" + "".join(f"{index},{index * 7}\n" for index in range(30_000))
    commit = add_commit(sample.path, {"data/big.csv": rows}, "Add a big file")

    run = deliver(stack, sample, commit, before)

    assert run.status == "FAILED"
    assert "data/big.csv is" in run.failure_reason
    assert "MAX_FILE_BYTES" in run.failure_reason
    removed = add_commit(sample.path, {"data/big.csv": None}, "Drop big file")
    assert deliver(stack, sample, removed, commit).status == "SUCCEEDED"


def test_file_count_limit_fails_run(stack, sample):
    before = head(sample)
    many = {f"data/many/part-{index:03d}.csv": f"id\n{index}\n" for index in range(LIMITS["max_files"])}
    commit = add_commit(sample.path, many, "Add many files")

    run = deliver(stack, sample, commit, before)

    assert run.status == "FAILED"
    assert "MAX_FILES" in run.failure_reason
    removed = add_commit(sample.path, dict.fromkeys(many), "Drop many files")
    assert deliver(stack, sample, removed, commit).status == "SUCCEEDED"


def test_checkout_size_limit_stops_fetch(stack, sample):
    # Given a commit whose incompressible content is larger than the fetch limit
    before = head(sample)
    blobs = {f"data/noise/part-{index}.bin": os.urandom(150_000) for index in range(40)}
    commit = add_commit(sample.path, blobs, "Add incompressible data")

    # When it is pushed
    run = deliver(stack, sample, commit, before)

    # Then the fetch is stopped and the run fails naming the limit
    assert run.status == "FAILED"
    assert "MAX_CHECKOUT_BYTES" in run.failure_reason
    removed = add_commit(sample.path, dict.fromkeys(blobs), "Drop noise")
    assert deliver(stack, sample, removed, commit).status == "SUCCEEDED"


COMMAND_PIPELINE = """\
version: 1
transforms:
  - match: "data/*.csv"
    transform: csv-jsonl
job:
  command:
    - python3
    - -c
    - |
      import json, os, pathlib
      manifest = json.loads(pathlib.Path(os.environ["MANIFEST_PATH"]).read_text())
      rows = sum(1 for entry in manifest["files"]
                 for _ in open(os.path.join(os.environ["INPUT_DIR"], entry["artifact"])))
      print("counted", rows, "rows", flush=True)
      out = pathlib.Path(os.environ["OUTPUT_DIR"])
      (out / "index.html").write_text(f"<p>{rows} rows from {os.environ['STATION_GROUP']}</p>")
  environment:
    STATION_GROUP: highlands
  result: index.html
notify:
  when: [success]
"""


def test_command_job_runs_and_links_result(stack, sample):
    # Given a bitbatch.yml that runs its own command on the CSV artifacts
    before = head(sample)
    commit = add_commit(sample.path, {"bitbatch.yml": COMMAND_PIPELINE}, "Run a custom command")

    # When it is pushed
    run = deliver(stack, sample, commit, before)

    # Then the command's output is stored, and the email names the configured result file and links
    # to the run page, whose link to that file opens it
    assert run.status == "SUCCEEDED"
    keys = stored_keys(stack, run.output_prefix)
    assert run.output_prefix + "index.html" in keys
    assert run.output_prefix + "run-summary.json" in keys
    page = boto3.client("s3").get_object(Bucket=stack.resources.bucket, Key=run.output_prefix + "index.html")
    assert "rows from highlands" in page["Body"].read().decode()
    emails = emails_about(stack, run.run_id)
    assert len(emails) == 1
    assert f"s3://{stack.resources.bucket}/{run.output_prefix}index.html" in emails[0].text
    link = next(line for line in emails[0].text.splitlines() if line.startswith(f"{stack.api_url}/runs/"))
    request = urllib.request.Request(link, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        output_links = {item["name"]: item["url"] for item in json.loads(response.read())["output_files"]}
    with urllib.request.urlopen(output_links["index.html"], timeout=30) as response:
        assert b"rows from highlands" in response.read()
    job_logs = "".join(path.read_text() for path in (stack.workdir / "jobs").glob(f"bitbatch-{run.run_id}-*.log"))
    assert "counted" in job_logs


def test_failure_only_notification_sends_nothing_on_success(stack, sample):
    before = head(sample)
    quiet = COMMAND_PIPELINE.replace("when: [success]", "when: [failure]")
    commit = add_commit(sample.path, {"bitbatch.yml": quiet}, "Email only failures")

    run = deliver(stack, sample, commit, before)

    assert run.status == "SUCCEEDED"
    assert emails_about(stack, run.run_id) == []


def test_job_stuck_in_runnable_fails_with_reason(stack, sample):
    # Given a job that requests more vCPUs than the compute environment has
    before = head(sample)
    greedy = "version: 1\njob:\n  vcpu: 16\n  memory: 32768\n"
    commit = add_commit(sample.path, {"bitbatch.yml": greedy}, "Ask for a big machine")

    # When it is pushed
    run = deliver(stack, sample, commit, before)

    # Then the queue's time limit cancels it, and one email states it could not start
    assert run.status == "FAILED"
    assert run.failure_reason.startswith("the job could not start: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")
    emails = emails_about(stack, run.run_id)
    assert len(emails) == 1
    assert "could not start" in emails[0].text
