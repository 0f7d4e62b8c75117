"""Benchmark getting one pushed commit's files: bitbatch's dulwich fetch against `git clone --depth 1`.

For each repository size, builds a data repository of CSV and JSON files with
a few commits of history, serves it from the local git server with Basic auth,
and runs both cases 3 times, alternating:

- baseline: `git clone --depth 1 --branch main <url>`, with checkout, in a
  subprocess;
- bitbatch: `checkout.fetched_commit` and then `read_file` on every file that
  `list_files` yields, as the transform does, in a Python subprocess.

Reports median wall time, peak memory of the subprocess and its descendants,
and the bytes the server sent, with ratios bitbatch / baseline, as Markdown.

    .venv/bin/python bench/checkout_cost.py --sizes 10,100,500
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bitbatch_local.gitserver import ACCESS_TOKEN_USERNAME, GitServer
from bitbatch_local.samplerepo import BRANCH, git_environment, run_git

MB = 1024 * 1024
RUNS = 3
COMMITS = 5
# Share of the files that each commit after the first changes.
CHANGED_FRACTION = 0.10
MIN_FILE_BYTES = 50 * 1024
MAX_FILE_BYTES = 200 * 1024
# Every JSON_EVERY-th file is JSON, the others CSV.
JSON_EVERY = 4
FILES_PER_FOLDER = 50
FIRST_COMMIT_DAY = 2
# Seconds after which a clone or fetch subprocess is killed.
RUN_TIMEOUT = 1800

# Variables that pass the git server's credentials to the bitbatch subprocess.
USERNAME_VARIABLE = "BENCH_GIT_USERNAME"
PASSWORD_VARIABLE = "BENCH_GIT_PASSWORD"

SENSORS = ("temperature", "humidity", "pressure", "wind_speed", "wind_direction", "rain", "radiation", "soil_moisture")
QUALITY_FLAGS = ("good",) * 17 + ("suspect", "suspect", "missing")
STATUSES = ("ok", "ok", "ok", "calibrating", "offline")


@dataclass(frozen=True)
class DataRepository:
    full_name: str
    commit: str
    file_count: int
    tree_bytes: int
    pack_bytes: int


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_bytes: int
    server_bytes: int
    # Phases timed inside the bitbatch subprocess, or empty for the baseline.
    phases: dict[str, float]
    # Peak RSS of the bitbatch subprocess once bitbatch is imported, or 0 for the baseline.
    imported_rss_bytes: int
    # Git-Protocol header values of the requests, such as "version=2", or "none" when a request sent none.
    protocols: str


# Repository content


def file_path(index: int) -> str:
    folder = index // FILES_PER_FOLDER
    if index % JSON_EVERY == 0:
        return f"events/batch-{folder:03d}/events-{index:05d}.json"
    return f"readings/station-{folder:03d}/readings-{index:05d}.csv"


def file_size(index: int) -> int:
    return random.Random(f"size:{index}").randint(MIN_FILE_BYTES, MAX_FILE_BYTES)


def csv_rows(rng: random.Random, station: int, first_row: int, target_bytes: int) -> tuple[list[str], int]:
    """Generate readings rows from first_row on until they contain target_bytes, and return them and the next row number."""
    rows = []
    size = 0
    row = first_row
    while size < target_bytes:
        day, minute = divmod(row, 24 * 60)
        hour, minute = divmod(minute, 60)
        quality = rng.choice(QUALITY_FLAGS)
        note = f"{rng.getrandbits(48):012x}" if quality != "good" else ""
        line = (
            f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T{hour:02d}:{minute:02d}:00Z,st-{station:03d},"
            f"{rng.choice(SENSORS)},{rng.uniform(-20, 45):.3f},{quality},{note}"
        )
        rows.append(line)
        size += len(line) + 1
        row += 1
    return rows, row


def json_records(rng: random.Random, batch: int, first_id: int, target_bytes: int) -> tuple[list[str], int]:
    """Generate event records from first_id on until they contain target_bytes, and return them and the next id."""
    records = []
    size = 0
    record_id = first_id
    while size < target_bytes:
        record = (
            f'  {{"id": {record_id}, "station": "st-{batch:03d}-{rng.randrange(40):02d}", '
            f'"observed_at": "2026-03-{1 + record_id % 28:02d}T{record_id % 24:02d}:{rng.randrange(60):02d}:00Z", '
            f'"temperature": {rng.uniform(-20, 45):.2f}, "humidity": {rng.uniform(0, 100):.1f}, '
            f'"status": "{rng.choice(STATUSES)}", "trace": "{rng.getrandbits(64):016x}"}}'
        )
        records.append(record)
        size += len(record) + 2
        record_id += 1
    return records, record_id


def file_content(index: int, version: int) -> bytes:
    """Return the content of file index at version. A new version keeps the first half and rewrites the rest."""
    target = file_size(index)
    folder = index // FILES_PER_FOLDER
    head_rng = random.Random(f"head:{index}")
    tail_rng = random.Random(f"tail:{index}:{version}")

    if index % JSON_EVERY == 0:
        head, next_id = json_records(head_rng, folder, 0, target // 2)
        tail, _ = json_records(tail_rng, folder, next_id, target - target // 2)
        return ("[\n" + ",\n".join(head + tail) + "\n]\n").encode()

    head, next_row = csv_rows(head_rng, folder, 0, target // 2)
    tail, _ = csv_rows(tail_rng, folder, next_row, target - target // 2)
    return ("time,station,sensor,value,quality,note\n" + "\n".join(head + tail) + "\n").encode()


def write_file(work_tree: Path, index: int, version: int) -> int:
    target = work_tree / file_path(index)
    target.parent.mkdir(parents=True, exist_ok=True)
    content = file_content(index, version)
    target.write_bytes(content)
    return len(content)


def build_data_repository(root: Path, full_name: str, size_mb: int) -> DataRepository:
    """Create a repository of about size_mb MB at its tip, with COMMITS commits, and pack it."""
    work_tree = root / full_name
    work_tree.mkdir(parents=True)
    run_git(work_tree, "-c", f"init.defaultBranch={BRANCH}", "init", "--quiet")

    file_count = 0
    tree_bytes = 0
    while tree_bytes < size_mb * MB:
        tree_bytes += write_file(work_tree, file_count, 0)
        file_count += 1
    commit_files(work_tree, f"Add {file_count} data files", version=0)

    for version in range(1, COMMITS):
        changed = random.Random(f"changes:{version}").sample(
            range(file_count), max(1, int(file_count * CHANGED_FRACTION))
        )
        for index in changed:
            tree_bytes -= (work_tree / file_path(index)).stat().st_size
            tree_bytes += write_file(work_tree, index, version)
        commit_files(work_tree, f"Update {len(changed)} data files", version=version)

    # Pack the repository so that the server sends objects from a pack, not from loose files.
    run_git(work_tree, "gc", "--quiet")
    pack_bytes = sum(pack.stat().st_size for pack in (work_tree / ".git" / "objects" / "pack").glob("*.pack"))
    commit = run_git(work_tree, "rev-parse", "HEAD")
    return DataRepository(full_name, commit, file_count, tree_bytes, pack_bytes)


def commit_files(work_tree: Path, message: str, version: int) -> None:
    run_git(work_tree, "add", "--all")
    date = f"2026-01-{FIRST_COMMIT_DAY + version:02d}T12:00:00+00:00"
    run_git(work_tree, "commit", "--quiet", "--no-verify", "-m", message, date=date)


# Measured subprocesses


def run_measured(command: list[str], environment: dict[str, str], output: Path) -> tuple[float, int]:
    """Run command to its end, and return its wall seconds and the peak RSS in bytes of it and its descendants.

    os.wait4 returns the resource usage of this one child, whose ru_maxrss is
    the largest of it and every descendant it waited for. The maxrss from
    getrusage(RUSAGE_CHILDREN) is a running maximum over all children so far,
    so a difference of two readings is not the peak of one run.
    """
    timed_out = threading.Event()
    with output.open("wb") as output_file:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=environment, stdout=output_file, stderr=subprocess.STDOUT)

        def kill_on_timeout() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(RUN_TIMEOUT, kill_on_timeout)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started

    process.returncode = os.waitstatus_to_exitcode(status)
    if timed_out.is_set():
        raise RuntimeError(f"{command[0]} timed out after {RUN_TIMEOUT} s and was killed, output in {output}")
    if process.returncode != 0:
        text = output.read_text(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{command[0]} failed with exit code {process.returncode}: {text}")
    # Linux reports ru_maxrss in KiB.
    return seconds, usage.ru_maxrss * 1024


def clone_with_git(server: GitServer, repository: DataRepository, password: str, scratch: Path) -> Measurement:
    destination = scratch / "git-clone"
    token = base64.b64encode(f"{ACCESS_TOKEN_USERNAME}:{password}".encode()).decode()
    environment = git_environment()
    # GIT_CONFIG_* is the environment form of `git -c`: the header goes with
    # every request, as dulwich sends its credentials, and is neither written
    # to the clone's config nor shown in the process list.
    environment.update(
        {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
        }
    )
    command = [
        "git",
        "clone",
        "--quiet",
        "--depth",
        "1",
        "--branch",
        BRANCH,
        server.clone_url(repository.full_name),
        str(destination),
    ]

    server.reset_statistics()
    seconds, peak_rss = run_measured(command, environment, scratch / "git-clone.log")
    server_bytes = server.bytes_sent
    protocols = request_protocols(server)

    check_clone(destination, repository, password)
    shutil.rmtree(destination)
    return Measurement(seconds, peak_rss, server_bytes, {}, 0, protocols)


def request_protocols(server: GitServer) -> str:
    return ",".join(sorted({request.git_protocol or "none" for request in server.requests}))


def check_clone(destination: Path, repository: DataRepository, password: str) -> None:
    head = run_git(destination, "rev-parse", "HEAD")
    if head != repository.commit:
        raise RuntimeError(f"git clone checked out {head}, expected {repository.commit}")
    config_path = destination / ".git" / "config"
    config = config_path.read_text()
    if password in config or "authorization" in config.lower():
        raise RuntimeError(f"git clone wrote the credentials to {config_path}")
    file_count, tree_bytes = 0, 0
    for path in destination.rglob("*"):
        if path.is_file() and ".git" not in path.relative_to(destination).parts:
            file_count += 1
            tree_bytes += path.stat().st_size
    check_totals("git clone", file_count, tree_bytes, repository)


def check_totals(case: str, file_count: int, tree_bytes: int, repository: DataRepository) -> None:
    if (file_count, tree_bytes) != (repository.file_count, repository.tree_bytes):
        raise RuntimeError(
            f"{case} produced {file_count} files of {tree_bytes} bytes, "
            f"expected {repository.file_count} files of {repository.tree_bytes} bytes"
        )


def read_with_bitbatch(server: GitServer, repository: DataRepository, password: str, scratch: Path) -> Measurement:
    environment = dict(os.environ)
    environment.update(
        {
            USERNAME_VARIABLE: ACCESS_TOKEN_USERNAME,
            PASSWORD_VARIABLE: password,
            "POWERTOOLS_SERVICE_NAME": "bench-checkout",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--read-commit",
        server.clone_url(repository.full_name),
        f"refs/heads/{BRANCH}",
        repository.commit,
    ]

    server.reset_statistics()
    log = scratch / "bitbatch.log"
    seconds, peak_rss = run_measured(command, environment, log)
    server_bytes = server.bytes_sent
    protocols = request_protocols(server)

    # The subprocess prints its result as the last line of its output.
    result = json.loads(log.read_text().strip().splitlines()[-1])
    check_totals("bitbatch", result["files"], result["bytes"], repository)
    return Measurement(seconds, peak_rss, server_bytes, result["phases"], result["imported_rss"], protocols)


def read_commit(clone_url: str, ref: str, commit: str) -> int:
    """Fetch commit and read every file's bytes, as the transform does, then print the totals as JSON.

    Runs in the bitbatch subprocess. bitbatch is imported here, not at the
    top of the file, so its import time is measured on its own.
    """
    started = time.perf_counter()
    from bitbatch import checkout

    imported = time.perf_counter()
    # Linux reports ru_maxrss in KiB.
    imported_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    credentials = checkout.Credentials(os.environ[USERNAME_VARIABLE], os.environ[PASSWORD_VARIABLE])
    file_count, total_bytes = 0, 0
    with checkout.fetched_commit(clone_url, ref, commit, credentials) as repo:
        fetched = time.perf_counter()
        for source in checkout.list_files(repo, commit):
            total_bytes += len(checkout.read_file(repo, source))
            file_count += 1
        read = time.perf_counter()

    phases = {"import": imported - started, "fetch": fetched - imported, "read": read - fetched}
    print(json.dumps({"files": file_count, "bytes": total_bytes, "phases": phases, "imported_rss": imported_rss}))
    return 0


# Report


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_report(results: list[tuple[int, DataRepository, list[Measurement], list[Measurement]]]) -> None:
    print()
    print(f"Medians of {RUNS} runs. MB = 2^20 bytes.")
    print()
    print("| size | files | tree MB | all-history pack MB | case | wall s | peak RSS MB | server sent MB |")
    print("|---|---|---|---|---|---|---|---|")
    for size_mb, repository, baseline, bitbatch in results:
        for case, runs in (("git clone --depth 1", baseline), ("bitbatch fetch + read", bitbatch)):
            print(
                f"| {size_mb} MB | {repository.file_count} | {repository.tree_bytes / MB:.1f} | "
                f"{repository.pack_bytes / MB:.1f} | {case} | {median([run.seconds for run in runs]):.2f} | "
                f"{median([run.peak_rss_bytes for run in runs]) / MB:.1f} | "
                f"{median([run.server_bytes for run in runs]) / MB:.1f} |"
            )

    print()
    print(
        "| size | time ratio | memory ratio | bytes ratio "
        "| bitbatch import s | fetch s | read s | RSS after import MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size_mb, _, baseline, bitbatch in results:
        time_ratio = median([run.seconds for run in bitbatch]) / median([run.seconds for run in baseline])
        memory_ratio = median([run.peak_rss_bytes for run in bitbatch]) / median(
            [run.peak_rss_bytes for run in baseline]
        )
        bytes_ratio = median([run.server_bytes for run in bitbatch]) / median([run.server_bytes for run in baseline])
        phases = {name: median([run.phases[name] for run in bitbatch]) for name in ("import", "fetch", "read")}
        imported_rss = median([run.imported_rss_bytes for run in bitbatch])
        print(
            f"| {size_mb} MB | {time_ratio:.2f} | {memory_ratio:.2f} | {bytes_ratio:.3f} | "
            f"{phases['import']:.2f} | {phases['fetch']:.2f} | {phases['read']:.2f} | {imported_rss / MB:.1f} |"
        )

    print()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(run_git(Path.cwd(), "--version"))
    from dulwich import __version__ as dulwich_version

    print("dulwich " + ".".join(str(part) for part in dulwich_version))


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid sizes {text!r}: expected whole MB separated by commas") from None
    if not sizes or any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"invalid sizes {text!r}: expected one or more sizes above 0 MB")
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("10,100,500"),
        help="repository sizes at the tip commit, in MB (2^20 bytes), separated by commas (default: 10,100,500)",
    )
    parser.add_argument("--read-commit", nargs=3, metavar=("URL", "REF", "COMMIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.read_commit:
        return read_commit(*args.read_commit)

    password = secrets.token_urlsafe(24)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-checkout-") as folder:
        root = Path(folder) / "repos"
        scratch = Path(folder) / "scratch"
        scratch.mkdir()
        root.mkdir()
        with GitServer(root, ACCESS_TOKEN_USERNAME, password) as server:
            for size_mb in args.sizes:
                started = time.perf_counter()
                repository = build_data_repository(root, f"bench/data-{size_mb}mb", size_mb)
                print(
                    f"built {size_mb} MB repository: {repository.file_count} files, "
                    f"{repository.tree_bytes / MB:.1f} MB at the tip, {COMMITS} commits, "
                    f"pack {repository.pack_bytes / MB:.1f} MB, in {time.perf_counter() - started:.1f} s",
                    flush=True,
                )

                baseline, bitbatch = [], []
                for run in range(1, RUNS + 1):
                    for case, measure, runs in (
                        ("git clone", clone_with_git, baseline),
                        ("bitbatch", read_with_bitbatch, bitbatch),
                    ):
                        measurement = measure(server, repository, password, scratch)
                        runs.append(measurement)
                        print(
                            f"{size_mb} MB run {run}/{RUNS} {case}: {measurement.seconds:.2f} s, "
                            f"peak RSS {measurement.peak_rss_bytes / MB:.1f} MB, "
                            f"server sent {measurement.server_bytes / MB:.1f} MB, "
                            f"Git-Protocol {measurement.protocols}",
                            flush=True,
                        )
                results.append((size_mb, repository, baseline, bitbatch))

                # Free the disk before the next, larger repository.
                shutil.rmtree(root / repository.full_name)

    print_report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
