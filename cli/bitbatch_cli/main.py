"""Entry point of the `bitbatch` command.

bitbatch runs list [--limit N] [--status S] [--repository R]  (--stack NAME [--region R] | --local)
bitbatch runs show RUN_ID [--json]                             (...)
bitbatch runs retry RUN_ID [--force]                           (...)
bitbatch dlq list|redrive [--queue submit|notifier]            (...)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from bitbatch.model import RunStatus
from bitbatch_cli import dead_letters, retry, runs
from bitbatch_cli.errors import CliError
from bitbatch_cli.targets import DEFAULT_SERVE_FILE, Target, local_target, stack_target

PROGRAM = "bitbatch"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def run_status(text: str) -> str:
    status = text.upper()
    if status not in RunStatus.__members__:
        raise argparse.ArgumentTypeError(f"{text} is not a run status; use one of {', '.join(RunStatus)}")
    return status


def target_options() -> argparse.ArgumentParser:
    """Options every command takes to choose the stack it works on."""
    options = argparse.ArgumentParser(add_help=False)
    choice = options.add_mutually_exclusive_group()
    choice.add_argument(
        "--stack",
        default=os.environ.get("BITBATCH_STACK"),
        help="name of the deployed CloudFormation stack (default: $BITBATCH_STACK)",
    )
    choice.add_argument("--local", action="store_true", help="the local stack that `make serve` runs")
    options.add_argument("--region", help="AWS Region of the stack (default: the AWS CLI's configuration)")
    options.add_argument(
        "--serve-file",
        type=Path,
        help=f"with --local: the file `make serve` writes (default: {DEFAULT_SERVE_FILE} in this folder)",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Look at bitbatch runs, retry them, re-drive dead letters."
    )
    options = target_options()
    groups = parser.add_subparsers(dest="group", required=True, metavar="{runs,dlq}")

    runs_parser = groups.add_parser("runs", help="list, show and retry runs")
    run_commands = runs_parser.add_subparsers(dest="command", required=True, metavar="{list,show,retry}")
    list_parser = run_commands.add_parser("list", parents=[options], help="recent runs, newest first")
    list_parser.add_argument("--limit", type=positive_int, default=20, help="how many runs to print (default: 20)")
    list_parser.add_argument("--status", type=run_status, help="only runs in this status, e.g. FAILED")
    list_parser.add_argument("--repository", help="only runs of this repository, e.g. acme/weather-data")
    show_parser = run_commands.add_parser("show", parents=[options], help="every field and stage of one run")
    show_parser.add_argument("run_id", metavar="RUN_ID")
    show_parser.add_argument("--json", action="store_true", help="print the run's item as JSON")
    retry_parser = run_commands.add_parser(
        "retry", parents=[options], help="run a FAILED run again as a new attempt of the same commit"
    )
    retry_parser.add_argument("run_id", metavar="RUN_ID")
    retry_parser.add_argument("--force", action="store_true", help="retry a SKIPPED run too")

    dlq_parser = groups.add_parser("dlq", help="messages in the dead-letter queues")
    dlq_commands = dlq_parser.add_subparsers(dest="command", required=True, metavar="{list,redrive}")
    for name, help_text in (
        ("list", "show the messages without removing them"),
        ("redrive", "send each message back to where it failed, then delete it"),
    ):
        command = dlq_commands.add_parser(name, parents=[options], help=help_text)
        command.add_argument(
            "--queue", choices=sorted(dead_letters.QUEUE_OUTPUTS), help="one dead-letter queue (default: both)"
        )
        command.add_argument(
            "--max", type=positive_int, default=100, help="at most this many messages per queue (default: 100)"
        )
    return parser


def resolve_target(args: argparse.Namespace) -> Target:
    if args.local:
        return local_target(args.serve_file)
    if args.serve_file:
        raise CliError("--serve-file only applies with --local")
    if not args.stack:
        raise CliError("no stack chosen; pass --stack NAME (or set BITBATCH_STACK) or --local")
    return stack_target(args.stack, args.region)


def execute(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    if args.group == "runs" and args.command == "list":
        print(runs.list_runs(target, args.limit, args.status, args.repository))
    elif args.group == "runs" and args.command == "show":
        print(runs.show_run_json(target, args.run_id) if args.json else runs.show_run(target, args.run_id))
    elif args.group == "runs" and args.command == "retry":
        started = retry.retry_run(target, args.run_id, args.force)
        previous = started.previous
        print(
            f"run {started.run_id}: attempt {started.attempt} started "
            f"(attempt {previous['attempt']} ended {previous['status']}). "
            f"Follow it with `bitbatch runs show {started.run_id}`"
        )
    elif args.group == "dlq" and args.command == "list":
        print(dead_letters.list_dead_letters(target, args.queue, args.max))
    else:
        report = dead_letters.redrive(target, args.queue, args.max)
        print("\n".join(report.lines))
        if report.failed:
            raise CliError(f"{report.failed} message(s) could not be re-driven and stay in their queue")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return execute(args)
    except CliError as error:
        message = str(error)
    except NoCredentialsError:
        message = "no AWS credentials found; set AWS_PROFILE or the AWS_ACCESS_KEY_ID variables, or use --local"
    except NoRegionError:
        message = "no AWS Region is set; pass --region or set AWS_REGION"
    except EndpointConnectionError as error:
        endpoint = error.kwargs.get("endpoint_url", "the endpoint")
        message = f"could not connect to {endpoint}; check the network, or for --local that `make serve` still runs"
    except ClientError as error:
        details = error.response.get("Error", {})
        message = f"AWS rejected {error.operation_name}: {details.get('Code', '?')}: {details.get('Message', '')}"
    except BotoCoreError as error:
        message = f"AWS call failed: {error}"
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
