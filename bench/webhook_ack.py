"""Benchmark of the webhook's answer time while a large repository is being transformed.

Runs on the local stack, in one process: first a baseline (pushes of a small
repository with nothing else running), then the same pushes while the
transform of a large repository is under way. Prints both latency
distributions and their ratio as a Markdown table row.

    .venv/bin/python bench/webhook_ack.py --size-mb 200 --pushes 50
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from bitbatch_local.payloads import cloud_push_payload, signed_delivery
from bitbatch_local.samplerepo import add_commit, build_sample_repository, run_git
from bitbatch_local.stack import LocalStack

SMALL = "bench/small"
LARGE = "bench/large"
FILE_MB = 5


def build_large_repository(path: Path, size_mb: int) -> str:
    """Create a repository of about size_mb MB of incompressible CSV files; returns its head commit."""
    path.mkdir(parents=True)
    run_git(path, "-c", "init.defaultBranch=main", "init", "--quiet")
    rng = random.Random(7)
    for index in range(max(1, size_mb // FILE_MB)):
        rows = ["id,token,value"]
        size = 0
        while size < FILE_MB * 1024 * 1024:
            row = f"{len(rows)},{rng.getrandbits(128):032x},{rng.random():.6f}"
            rows.append(row)
            size += len(row) + 1
        (path / f"part-{index:03d}.csv").write_text("\n".join(rows) + "\n")
    run_git(path, "add", "--all")
    run_git(path, "commit", "--quiet", "-m", "Add large data set")
    return run_git(path, "rev-parse", "HEAD")


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        status = response.status
    return status, time.perf_counter() - started


def measure(stack: LocalStack, small, pushes: int, label: str) -> list[float]:
    latencies = []
    for index in range(pushes):
        commit = add_commit(small.path, {f"notes/{label}-{index}.md": f"{label} {index}\n"}, f"{label} {index}")
        payload = cloud_push_payload(small.path, SMALL, "main", commit, None, stack.git.base_url)
        body, headers = signed_delivery(payload, stack.webhook_secret)
        status, seconds = post(stack.webhook_url, body, headers)
        if status != 202:
            raise RuntimeError(f"push {index} got {status}, expected 202")
        latencies.append(seconds)
        time.sleep(0.05)
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="size of the large repository in MB")
    parser.add_argument("--pushes", type=int, default=50, help="pushes measured in each phase")
    args = parser.parse_args()
    # Show the local stack's own warnings (git server, drivers), not the functions' JSON logs.
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")

    with tempfile.TemporaryDirectory(prefix="bench-ack-") as folder:
        root = Path(folder) / "repos"
        small = build_sample_repository(root / SMALL)
        built = time.perf_counter()
        large_commit = build_large_repository(root / LARGE, args.size_mb)
        print(f"built {args.size_mb} MB repository in {time.perf_counter() - built:.1f} s", flush=True)

        with LocalStack(root, Path(folder) / "work", function_log_path=Path(folder) / "functions.log") as stack:
            baseline = measure(stack, small, args.pushes, "baseline")
            stack.lambdas.wait_idle(120)

            payload = cloud_push_payload(root / LARGE, LARGE, "main", large_commit, None, stack.git.base_url)
            body, headers = signed_delivery(payload, stack.webhook_secret)
            large_status, _ = post(stack.webhook_url, body, headers)
            time.sleep(0.5)  # let the fetch of the large commit start
            loaded = measure(stack, small, args.pushes, "loaded")
            transform_busy = not stack.lambdas.wait_idle(0)

    rows = {"baseline": baseline, "during large transform": loaded}
    print(f"large push answered {large_status}; transform still running after the loaded phase: {transform_busy}")
    print("| phase | pushes | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        print(
            f"| {name} | {len(values)} | {statistics.median(values) * 1000:.1f} | "
            f"{percentile(values, 0.99) * 1000:.1f} | {max(values) * 1000:.1f} |"
        )
    ratio = percentile(loaded, 0.99) / percentile(baseline, 0.99)
    print(f"p99 ratio (during / baseline): {ratio:.2f}")
    print(f"machine: {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
