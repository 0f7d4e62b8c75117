"""Release steps of buildspec.yml that need more than a shell line.

    python cicd/release.py source-commit
        Print the commit that CodeBuild checked out, the tag of the job image.
    python cicd/release.py wait-for-stack STACK_NAME
        Wait until CloudFormation can take an update of STACK_NAME, so a build
        never starts a deploy while an earlier build's deploy is still running.

Errors go to stderr as one line that names the value and the fix; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

COMMIT = re.compile(r"^[0-9a-f]{40}$")

# An S3 source zip carries its commit in this file, because CodeBuild resolves no commit for S3.
COMMIT_FILE = "SOURCE_COMMIT"

# States in which CloudFormation accepts a new change set for an existing stack.
SETTLED_STATES = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
)

# A stack in REVIEW_IN_PROGRESS was made by a change set that never ran, so it contains no resources yet.
NEVER_DEPLOYED_STATES = frozenset({"REVIEW_IN_PROGRESS"})


class ReleaseError(Exception):
    """A release step cannot go on. The message gives the reason and the fix."""


def source_commit(environ: Mapping[str, str], source_dir: Path) -> str:
    """Return the commit of the checked-out source.

    CodeBuild sets CODEBUILD_RESOLVED_SOURCE_VERSION to the commit for Bitbucket sources. For an S3
    source it sets no commit, so the zip must carry one in SOURCE_COMMIT at its root.
    """
    resolved = environ.get("CODEBUILD_RESOLVED_SOURCE_VERSION", "").strip()
    if COMMIT.match(resolved):
        return resolved

    commit_file = source_dir / COMMIT_FILE
    if not commit_file.is_file():
        raise ReleaseError(
            f"the source commit is unknown: CODEBUILD_RESOLVED_SOURCE_VERSION is {resolved!r}, not a commit id, "
            f"and the source has no {COMMIT_FILE} file. Add one to the root of the S3 source zip: "
            f"git rev-parse HEAD > {COMMIT_FILE}"
        )

    recorded = commit_file.read_text().strip()
    if not COMMIT.match(recorded):
        raise ReleaseError(
            f"{COMMIT_FILE} contains {recorded[:80]!r}, not a 40-character lowercase commit id. "
            f"Write it with: git rev-parse HEAD > {COMMIT_FILE}"
        )
    return recorded


def stack_status(cloudformation, stack_name: str) -> str | None:
    """Return the stack's status, or None when no stack of that name exists."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except cloudformation.exceptions.ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    return stacks[0]["StackStatus"] if stacks else None


def wait_for_stack(
    read_status: Callable[[], str | None],
    stack_name: str,
    timeout_seconds: float,
    poll_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll the stack until it can take an update, and return that settled status.

    Raises ReleaseError when the stack was never deployed, when it is in a state that needs a fix
    by hand, or when it is still busy after timeout_seconds.
    """
    deadline = clock() + timeout_seconds
    while True:
        status = read_status()

        if status is None or status in NEVER_DEPLOYED_STATES:
            raise ReleaseError(
                f"stack {stack_name} has not been deployed yet. Deploy it once by hand, which also sets the "
                f"parameters without defaults: sam deploy --guided --config-env <stage>"
            )
        if status in SETTLED_STATES:
            return status
        if not status.endswith("_IN_PROGRESS"):
            raise ReleaseError(
                f"stack {stack_name} is {status}, which CloudFormation does not update. Read the stack's events, "
                "fix the cause, and continue the rollback or delete the stack before the next build"
            )
        if clock() >= deadline:
            raise ReleaseError(
                f"stack {stack_name} is still {status} after {timeout_seconds:.0f} s. "
                "Wait for the deploy in progress to end, then retry this build"
            )

        print(f"stack {stack_name} is {status}; checking again in {poll_seconds:.0f} s", flush=True)
        sleep(poll_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("source-commit", help="print the commit of the checked-out source")
    wait = commands.add_parser("wait-for-stack", help="wait until the stack can take an update")
    wait.add_argument("stack_name")
    # A prod deploy shifts traffic for 10 minutes after CloudFormation's own work, so allow an hour.
    wait.add_argument("--timeout-seconds", type=float, default=3600, help="maximum wait, in seconds (default 3600)")
    wait.add_argument("--poll-seconds", type=float, default=30, help="time between two checks, in seconds (default 30)")
    arguments = parser.parse_args(argv)

    try:
        if arguments.command == "source-commit":
            print(source_commit(os.environ, Path.cwd()))
            return 0

        import boto3

        cloudformation = boto3.client("cloudformation")
        status = wait_for_stack(
            lambda: stack_status(cloudformation, arguments.stack_name),
            arguments.stack_name,
            arguments.timeout_seconds,
            arguments.poll_seconds,
        )
        print(f"stack {arguments.stack_name} is {status} and can take an update")
        return 0
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
