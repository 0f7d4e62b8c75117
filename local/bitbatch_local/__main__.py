"""Command line for the local stack: `demo` carries one push to the email, `serve` keeps the stack up.

    python -m bitbatch_local demo [--repo PATH]
    python -m bitbatch_local serve [--port N] [--secret S] [--repos DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from bitbatch_local.payloads import cloud_push_payload, signed_delivery
from bitbatch_local.samplerepo import build_sample_repository, run_git
from bitbatch_local.stack import LocalStack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_FOLDER = PROJECT_ROOT / ".local"
# `serve` writes this file while it runs, and `bitbatch ... --local` reads it to find the stack.
SERVE_FILE = LOCAL_FOLDER / "serve-current.json"
DEMO_REPOSITORY = "demo-workspace/weather-data"


def say(line: str) -> None:
    print(line, flush=True)


def post_delivery(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _link_repository(repos_root: Path, full_name: str, repository: Path) -> None:
    """Serve an existing repository under repos_root/<workspace>/<slug> through a symlink."""
    target = repos_root / full_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(repository.resolve(), target_is_directory=True)


def _head_and_parent(repository: Path) -> tuple[str, str | None, str]:
    head = run_git(repository, "rev-parse", "HEAD")
    branch = run_git(repository, "rev-parse", "--abbrev-ref", "HEAD")
    try:
        parent = run_git(repository, "rev-parse", "HEAD~1")
    except Exception:  # a repository with a single commit: the push creates the branch
        parent = None
    return head, parent, "main" if branch == "HEAD" else branch


def demo(repo: str | None) -> int:
    LOCAL_FOLDER.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="demo-", dir=LOCAL_FOLDER))
    repos_root = workdir / "repos"
    repos_root.mkdir()
    if repo:
        repository = Path(repo).expanduser()
        if not (repository / ".git").exists() and not (repository / "HEAD").exists():
            say(f"error: REPO={repo} is not a git repository; pass the path of a repository with at least one commit")
            return 2
        full_name = f"local/{repository.resolve().name}"
        _link_repository(repos_root, full_name, repository)
        say(f"using repository {repository.resolve()} as {full_name}")
    else:
        full_name = DEMO_REPOSITORY
        sample = build_sample_repository(repos_root / full_name)
        repository = sample.path
        say(f"built sample repository {full_name} with two commits at {repository}")

    head, parent, branch = _head_and_parent(repository)
    function_log = workdir / "functions.log"
    with LocalStack(repos_root, workdir, function_log_path=function_log) as stack:
        say(f"local stack up: API {stack.webhook_url}, AWS {stack.aws_endpoint}, git {stack.git.base_url}")
        stack.job_listeners.append(
            lambda stage, spec, result: say(
                f"  job {spec.job_id[:8]} {stage.lower()}"
                + (f" (exit code {result.exit_code})" if result is not None else " (local Batch executor)")
            )
        )

        payload = cloud_push_payload(repository, full_name, branch, head, parent, stack.git.base_url)
        body, headers = signed_delivery(payload, stack.webhook_secret)
        say(f"pushing {full_name} {branch} {head[:12]} to the webhook")
        status, answer = post_delivery(stack.webhook_url, body, headers)
        say(f"  webhook answered {status}: {json.dumps(answer)}")
        if status != 202:
            say("error: the webhook did not start a run")
            return 1

        run_id = answer["runs"][0]["run_id"]
        printed: set[str] = set()

        def print_stages(run) -> None:
            started = datetime.fromisoformat(run.created_at)
            for stage, reached_at in sorted(run.stages.items(), key=lambda item: item[1]):
                if stage not in printed:
                    printed.add(stage)
                    elapsed = (datetime.fromisoformat(reached_at) - started).total_seconds()
                    say(f"  +{elapsed:5.2f} s  {stage}")

        run = stack.wait_for_run(run_id, timeout=300, on_change=print_stages)
        emails = stack.sent_emails()

        say("")
        say(f"run id:  {run.run_id}")
        say(f"status:  {run.status}")
        if run.failure_reason:
            say(f"reason:  {run.failure_reason}")
        if run.output_prefix:
            say(f"output:  s3://{stack.resources.bucket}/{run.output_prefix}")
            copied = stack.download_output(run, workdir / "output")
            if copied:
                say(f"         copied to {workdir / 'output'} ({', '.join(copied)})")
        for sent in emails:
            say("email:")
            say(f"  to:      {', '.join(sent.recipients)}")
            say(f"  subject: {sent.subject}")
            links = [line for line in sent.text.splitlines() if line.startswith("http")]
            for link in links:
                label = "page:" if link.startswith(f"{stack.api_url}/runs/") else "commit:"
                say(f"  {label:<8} {link}")
        say(f"function logs: {function_log}")
        return 0 if run.status == "SUCCEEDED" and emails else 1


def _write_serve_file(path: Path, description: dict) -> None:
    """Write the stack's endpoints and names in one step, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def _remove_serve_file(path: Path) -> None:
    """Remove the file unless another serve process has written its own since."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError):
        return
    if owner == os.getpid():
        path.unlink(missing_ok=True)


def serve(port: int, secret: str | None, repos: str | None, serve_file: Path = SERVE_FILE) -> int:
    LOCAL_FOLDER.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="serve-", dir=LOCAL_FOLDER))
    if repos:
        repos_root = Path(repos).expanduser().resolve()
        if not repos_root.is_dir():
            say(f"error: REPOS={repos} is not a folder; pass a folder holding <workspace>/<slug> git repositories")
            return 2
    else:
        repos_root = workdir / "repos"
        build_sample_repository(repos_root / DEMO_REPOSITORY)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with LocalStack(repos_root, workdir, webhook_secret=secret, api_port=port) as stack:
        say(f"webhook URL:    {stack.webhook_url}")
        say(f"webhook secret: {stack.webhook_secret}")
        say(f"AWS endpoint:   {stack.aws_endpoint}  (AWS_ENDPOINT_URL for the aws CLI and boto3,")
        say(f"                with AWS_DEFAULT_REGION={stack.region} and any key pair)")
        say(f"git server:     {stack.git.base_url}  serving {repos_root}")
        say(f"runs table:     {stack.resources.runs_table}   bucket: {stack.resources.bucket}")
        _write_serve_file(serve_file, stack.describe())
        say(f"stack details:  {serve_file}  (read by bitbatch ... --local)")
        say("press Ctrl+C to stop")
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
        finally:
            _remove_serve_file(serve_file)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitbatch_local", description="Run bitbatch on this machine.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="carry one signed push through every stage to the email")
    demo_parser.add_argument("--repo", help="git repository to push (default: a sample repository built for you)")
    serve_parser = commands.add_parser("serve", help="keep the local stack running for your own requests")
    serve_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "0") or 0), help="API port (default: a free one)")
    serve_parser.add_argument("--secret", default=os.environ.get("SECRET"), help="webhook secret (default: generated)")
    serve_parser.add_argument("--repos", help="folder of <workspace>/<slug> repositories to serve")
    serve_parser.add_argument(
        "--serve-file",
        type=Path,
        default=SERVE_FILE,
        help=f"where to write the stack's endpoints and names while it runs (default: {SERVE_FILE})",
    )
    args = parser.parse_args(argv)

    if args.command == "demo":
        return demo(args.repo)
    return serve(args.port, args.secret, args.repos, args.serve_file)


if __name__ == "__main__":
    sys.exit(main())
