"""Targets of the `bitbatch` command: a deployed CloudFormation stack, or a running local stack.

Both are described by the same names, the Outputs of template.yaml
(RunsTableName, TransformFunctionName, ...). A deployed stack reads them
with DescribeStacks; `python -m bitbatch_local serve` writes them to
.local/serve-current.json together with its endpoints.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from bitbatch_cli.errors import CliError

DEFAULT_SERVE_FILE = Path(".local") / "serve-current.json"
# moto, behind the local stack, accepts any key pair.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# A local stack that stopped should fail the command at once, not after botocore's retries.
LOCAL_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2})


@dataclass(frozen=True)
class Target:
    """One stack's resource names and the boto3 session that reaches them."""

    label: str  # names the stack in messages: "stack bitbatch-prod in eu-west-1"
    outputs: dict[str, str]
    session: boto3.Session
    endpoint_url: str | None = None  # the local stack's moto server; None for AWS
    lambda_endpoint_url: str | None = None  # the local stack's Lambda service
    client_config: Config | None = None
    _clients: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def region(self) -> str:
        return self.session.region_name

    def output(self, name: str) -> str:
        """Return one of the stack's Outputs; raise CliError naming it when the stack lacks it."""
        value = self.outputs.get(name)
        if not value:
            raise CliError(f"{self.label} has no output {name}; deploy the current template.yaml, which declares it")
        return value

    def has_output(self, name: str) -> bool:
        return bool(self.outputs.get(name))

    def client(self, service: str):
        if service not in self._clients:
            endpoint = self.lambda_endpoint_url if service == "lambda" else self.endpoint_url
            self._clients[service] = self.session.client(service, endpoint_url=endpoint, config=self.client_config)
        return self._clients[service]

    def runs_table(self):
        resource = self.session.resource("dynamodb", endpoint_url=self.endpoint_url, config=self.client_config)
        return resource.Table(self.output("RunsTableName"))


def stack_target(stack_name: str, region: str | None) -> Target:
    """Read a deployed stack's Outputs with CloudFormation DescribeStacks."""
    session = boto3.Session(region_name=region)
    if not session.region_name:
        raise CliError("no AWS Region is set; pass --region or set AWS_REGION")
    label = f"stack {stack_name} in {session.region_name}"
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", "")
        if "does not exist" in message:
            raise CliError(f"{label} not found; check --stack and --region") from error
        raise
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}
    return Target(label=label, outputs=outputs, session=session)


def local_target(serve_file: Path | None) -> Target:
    """Read the file `python -m bitbatch_local serve` writes while it runs."""
    path = serve_file or DEFAULT_SERVE_FILE
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(
            f"no running local stack: {path.resolve()} does not exist; start one with `make serve` "
            "in the project folder, or pass --serve-file"
        ) from None
    except ValueError as error:
        raise CliError(f"{path} is not valid JSON ({error}); restart `make serve` to write it again") from error

    pid = description.get("pid")
    if isinstance(pid, int) and not _process_exists(pid):
        raise CliError(
            f"the local stack that wrote {path} (process {pid}) is no longer running; start `make serve` again"
        )

    session = boto3.Session(region_name=description["region"], **LOCAL_CREDENTIALS)
    return Target(
        label=f"local stack at {description['aws_endpoint']}",
        outputs=description.get("outputs") or {},
        session=session,
        endpoint_url=description["aws_endpoint"],
        lambda_endpoint_url=description["lambda_endpoint"],
        client_config=LOCAL_CLIENT_CONFIG,
    )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists but belongs to another user
        return True
    return True
