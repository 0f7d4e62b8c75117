"""Check template.yaml against the code it deploys.

The template names handlers, sets environment variables and wires events
that the Python code relies on. These tests read the template as data and
compare it with the handler modules, the settings classes, the submitter's
container overrides and the job image, so a rename on either side fails here
and not in the first deploy.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
from cloudformation_yaml import load_template
from bitbatch_job.settings import JobSettings

from bitbatch import submission
from bitbatch.model import Run, input_prefix, output_prefix
from bitbatch.settings import (
    NotifierSettings,
    RunPageSettings,
    SubmitterSettings,
    TransformSettings,
    WebhookSettings,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DOCKERFILE = ROOT / "container" / "Dockerfile"
JOB_SETTINGS_SOURCE = ROOT / "container" / "bitbatch_job" / "settings.py"

FUNCTIONS = {
    "WebhookFunction": ("handlers.webhook.lambda_handler", WebhookSettings, "bitbatch-webhook"),
    "TransformFunction": ("handlers.transform.lambda_handler", TransformSettings, "bitbatch-transform"),
    "SubmitterFunction": ("handlers.submitter.lambda_handler", SubmitterSettings, "bitbatch-submitter"),
    "NotifierFunction": ("handlers.notifier.lambda_handler", NotifierSettings, "bitbatch-notifier"),
    "RunPageFunction": ("handlers.runs.lambda_handler", RunPageSettings, "bitbatch-run-page"),
}

# Lambda's guidance for SQS event sources: visibility timeout >= 6 x function timeout.
VISIBILITY_TIMEOUT_RATIO = 6

JOB_VARIABLES = ("RUN_ID", "ARTIFACTS_BUCKET", "INPUT_PREFIX", "OUTPUT_PREFIX")
ENVIRONMENT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")




@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


def function_property(template: dict, logical_id: str, name: str):
    """Return a property of a function, falling back to Globals as SAM does."""
    own = template["Resources"][logical_id]["Properties"]
    if name in own:
        return own[name]
    return template.get("Globals", {}).get("Function", {}).get(name)


def environment_names(template: dict, logical_id: str) -> set[str]:
    """Names of the environment variables a function gets: Globals merged with its own."""
    global_variables = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return set(global_variables) | set(own)


def sample_run(run_id: str = "20261204T194832Z-3f9a1c0e2b7d") -> Run:
    return Run(
        run_id=run_id,
        product="cloud",
        repository="team/repo",
        repository_uuid="{0b0b0b0b-1111-2222-3333-444444444444}",
        ref="refs/heads/main",
        ref_name="main",
        ref_type="branch",
        commit="a" * 40,
        previous_commit=None,
        commit_url=None,
        pusher_name="Dev",
        pusher_email=None,
        delivery_id=None,
        input_prefix=input_prefix(run_id),
        output_prefix=output_prefix(run_id),
    )


def dockerfile_instruction(text: str, instruction: str) -> list[str] | None:
    """Return the argument list of the last ENTRYPOINT or CMD, in exec or shell form."""
    arguments = None
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0].upper() == instruction:
            value = parts[1].strip()
            arguments = json.loads(value) if value.startswith("[") else shlex.split(value)
    return arguments


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_handler_is_callable(template, logical_id, monkeypatch):
    # Given the handler path the template gives the function
    handler = function_property(template, logical_id, "Handler")
    expected_handler, _, _ = FUNCTIONS[logical_id]
    module_name, attribute = handler.rsplit(".", 1)
    code_uri = function_property(template, logical_id, "CodeUri")

    # When the module is imported from the function's code folder, as Lambda does
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.syspath_prepend(str(ROOT / code_uri))
    module = importlib.import_module(module_name)

    # Then the handler is the expected one and is a callable
    assert handler == expected_handler
    assert code_uri.rstrip("/") == "functions"
    assert callable(getattr(module, attribute, None)), f"{handler} is not a callable in {module.__file__}"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_gets_every_setting(template, logical_id):
    # Given the settings class the function's handler reads at cold start
    _, settings_class, _ = FUNCTIONS[logical_id]

    # When the template's environment for the function is collected
    configured = environment_names(template, logical_id)

    # Then every variable the settings class reads is configured
    for name in settings_class.variable_names():
        assert name in configured, f"{logical_id} lacks {name}, which {settings_class.__name__} reads"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_observability_settings(template, logical_id):
    # Given the function's merged environment
    _, _, service_name = FUNCTIONS[logical_id]
    own = template["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
    global_variables = template["Globals"]["Function"]["Environment"]["Variables"]

    # Then Powertools gets its service name, namespace and log level, and traces are on
    assert own["POWERTOOLS_SERVICE_NAME"] == service_name
    assert global_variables["POWERTOOLS_METRICS_NAMESPACE"] == "bitbatch"
    assert global_variables["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert function_property(template, logical_id, "Tracing") == "Active"
    assert function_property(template, logical_id, "Runtime") == "python3.13"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_log_group_has_retention(template, logical_id):
    # Given the log group the function writes to
    log_group = function_property(template, logical_id, "LoggingConfig")["LogGroup"]
    log_group_id = log_group["Ref"]

    # Then it is a log group of this stack with a retention period
    resource = template["Resources"][log_group_id]
    assert resource["Type"] == "AWS::Logs::LogGroup"
    assert "RetentionInDays" in resource["Properties"]


def test_submit_queue_outlasts_submitter(template):
    # Given the submitter, its SQS event and the submit queue
    resources = template["Resources"]
    submitter_timeout = function_property(template, "SubmitterFunction", "Timeout")
    event = resources["SubmitterFunction"]["Properties"]["Events"]["QueuedRuns"]
    queue = resources["SubmitQueue"]["Properties"]

    # Then the event reads the submit queue, reports failed records one by one,
    # and the queue hides a message for at least 6 times the function timeout
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["SubmitQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["VisibilityTimeout"] >= VISIBILITY_TIMEOUT_RATIO * submitter_timeout


def test_submit_queue_has_dead_letter_queue(template):
    # Given the submit queue's redrive policy
    resources = template["Resources"]
    redrive = resources["SubmitQueue"]["Properties"]["RedrivePolicy"]

    # Then failed messages move to the dead-letter queue, which keeps them 14 days
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["SubmitDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == 5
    assert resources["SubmitDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 1209600


def test_transform_failure_goes_to_notifier(template):
    # Given the transform's asynchronous invocation settings
    invoke_config = template["Resources"]["TransformFunction"]["Properties"]["EventInvokeConfig"]
    on_failure = invoke_config["DestinationConfig"]["OnFailure"]

    # Then an event that failed every retry goes to the notifier function's live alias
    assert on_failure["Type"] == "Lambda"
    assert on_failure["Destination"] == {"Ref": "NotifierFunction.Alias"}
    assert invoke_config["MaximumRetryAttempts"] == 2


def test_notifier_rule_filters_our_job_queue(template):
    # Given the notifier's EventBridge rule
    resources = template["Resources"]
    events = resources["NotifierFunction"]["Properties"]["Events"]
    rules = [event for event in events.values() if event["Type"] == "EventBridgeRule"]
    assert len(rules) == 1
    pattern = rules[0]["Properties"]["Pattern"]

    # Then it matches the RUNNING and final Batch job states of our job queue only
    assert pattern["source"] == ["aws.batch"]
    assert pattern["detail-type"] == ["Batch Job State Change"]
    assert pattern["detail"]["jobQueue"] == [{"Ref": "JobQueue"}]
    assert sorted(pattern["detail"]["status"]) == ["FAILED", "RUNNING", "SUCCEEDED"]
    assert resources["JobQueue"]["Type"] == "AWS::Batch::JobQueue"


def test_submitter_may_submit_to_job_definition(template):
    # Given the job definition's name and the submitter's Batch statement
    resources = template["Resources"]
    definition_name = resources["JobDefinition"]["Properties"]["JobDefinitionName"]["Fn::Sub"]
    statements = [
        statement
        for policy in resources["SubmitterFunction"]["Properties"]["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for statement in policy["Statement"]
        if statement["Action"] == "batch:SubmitJob"
    ]
    assert len(statements) == 1
    allowed = statements[0]["Resource"]
    allowed_subs = [resource["Fn::Sub"] for resource in allowed if "Fn::Sub" in resource]

    # Then the statement covers the job queue and every revision of that job definition
    assert {"Ref": "JobQueue"} in allowed
    assert any(sub.endswith(f":job-definition/{definition_name}:*") for sub in allowed_subs)


def statement_actions(template: dict, logical_id: str) -> set[str]:
    actions = set()
    for policy in template["Resources"][logical_id]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            action = statement["Action"]
            actions.update([action] if isinstance(action, str) else action)
    return actions


@pytest.mark.parametrize(
    ("logical_id", "client_module", "service"),
    [("SubmitterFunction", "functions/bitbatch/submission.py", "batch")],
)
def test_batch_calls_are_allowed(template, logical_id, client_module, service):
    # Given every Batch API the submitter's code calls (self._batch.<operation>)
    source = (ROOT / client_module).read_text()
    operations = set(re.findall(r"self\._batch\.(?:get_paginator\(\"(\w+)\"\)|(\w+)\()", source))
    called = {first or second for first, second in operations}
    actions = statement_actions(template, logical_id)

    # Then the function's policy names each one (boto3 snake_case to the IAM action)
    assert called == {"submit_job", "list_jobs"}
    for operation in called:
        action = f"{service}:" + "".join(part.title() for part in operation.split("_"))
        assert action in actions, f"{logical_id} calls {operation} but its policy lacks {action}"


def test_dockerfile_runs_job_module():
    # Given the job image's Dockerfile
    text = DOCKERFILE.read_text()

    # When its entry point and command are joined, as Docker runs them
    command = (dockerfile_instruction(text, "ENTRYPOINT") or []) + (dockerfile_instruction(text, "CMD") or [])

    # Then the container runs `python -m bitbatch_job`, and that module has a __main__
    assert "-m" in command, f"the image runs {command}, not a module"
    assert command[command.index("-m") + 1 :][:1] == ["bitbatch_job"]
    assert (ROOT / "container" / "bitbatch_job" / "__main__.py").is_file()


def test_job_gets_every_variable(template):
    # Given the job definition's environment and the submitter's container overrides
    container = template["Resources"]["JobDefinition"]["Properties"]["ContainerProperties"]
    defaults = {variable["Name"]: "bucket-from-template" for variable in container["Environment"]}
    run = sample_run()
    overrides = {variable["name"]: variable["value"] for variable in submission.job_environment(run, "artifacts")}
    job_environment = defaults | overrides
    # A run whose bitbatch.yml sets a command and a result file gets the optional variables too.
    command_run = sample_run()
    command_run.config = {"job_command": ["python", "process.py"], "job_result": "index.html"}
    command_overrides = {
        variable["name"]: variable["value"] for variable in submission.job_environment(command_run, "artifacts")
    }

    # When the environment variable names in the job's settings source are collected
    tree = ast.parse(JOB_SETTINGS_SOURCE.read_text())
    read_names = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENVIRONMENT_NAME.match(node.value)
    }

    # Then the job reads the four run variables, gets each of them, and accepts the values
    for name in JOB_VARIABLES:
        assert name in read_names, f"container/bitbatch_job/settings.py no longer reads {name}"
    for name in read_names:
        assert name in job_environment | command_overrides, (
            f"the job reads {name}, but neither the job definition nor the submitter sets it"
        )
    assert command_overrides["JOB_MODE"] == "command"
    assert "ARTIFACTS_BUCKET" in defaults
    settings = JobSettings.from_environ(job_environment)
    assert settings.input_prefix == run.input_prefix
    assert settings.output_prefix == run.output_prefix


def test_messages_name_real_parameters(template):
    # Given every "the stack's <Parameter>" that an error message of the functions mentions
    mentioned = set()
    for source in (ROOT / "functions").rglob("*.py"):
        mentioned |= set(re.findall(r"stack's ([A-Z][A-Za-z]+)", source.read_text()))

    # Then each one is a parameter of template.yaml
    assert mentioned, "no message names a stack parameter; the pattern may be stale"
    for name in sorted(mentioned):
        assert name in template["Parameters"], f"a message tells users to change {name}, which template.yaml lacks"


def test_run_link_days_mapped_to_seconds(template):
    # Given the RunLinkDays parameter and the mapping that turns it into RUN_LINK_SECONDS
    parameter = template["Parameters"]["RunLinkDays"]
    mapping = template["Mappings"]["RunLinkLifetime"]
    variables = template["Resources"]["NotifierFunction"]["Properties"]["Environment"]["Variables"]

    # Then every allowed value, the default among them, maps to that many days in seconds
    assert parameter["Default"] in parameter["AllowedValues"]
    assert sorted(int(days) for days in mapping) == sorted(parameter["AllowedValues"])
    for days, entry in mapping.items():
        assert entry["Seconds"] == int(days) * 86400, days
    assert variables["RUN_LINK_SECONDS"] == {"Fn::FindInMap": ["RunLinkLifetime", {"Ref": "RunLinkDays"}, "Seconds"]}


def test_run_page_reads_only_what_it_shows(template):
    # Given the run page function's policy statements
    properties = template["Resources"]["RunPageFunction"]["Properties"]
    statements = {
        statement["Sid"]: statement
        for policy in properties["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for statement in policy["Statement"]
    }
    templates = [policy for policy in properties["Policies"] if "AWSSecretsManagerGetSecretValuePolicy" in policy]

    # Then it reads run items, lists and reads only output prefixes, and reads only the link key
    assert statements["ReadRuns"]["Action"] == "dynamodb:GetItem"
    assert statements["ListRunOutput"]["Action"] == "s3:ListBucket"
    assert statements["ListRunOutput"]["Condition"] == {"StringLike": {"s3:prefix": "runs/*/output/*"}}
    assert statements["SignOutputLinks"]["Action"] == "s3:GetObject"
    assert statements["SignOutputLinks"]["Resource"] == {"Fn::Sub": "${ArtifactsBucket.Arn}/runs/*/output/*"}
    assert templates == [{"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "RunLinkKeySecret"}}}]

    # and it serves GET /runs/{run_id} on the webhook's HTTP API
    event = properties["Events"]["RunPage"]
    assert event["Type"] == "HttpApi"
    assert event["Properties"] == {"ApiId": {"Ref": "HttpApi"}, "Method": "GET", "Path": "/runs/{run_id}"}


def test_notifier_finds_api_url_without_cycle(template):
    # Given the notifier's environment and the SSM parameter that contains the API's URL
    resources = template["Resources"]
    variables = resources["NotifierFunction"]["Properties"]["Environment"]["Variables"]
    parameter = resources["ApiBaseUrlParameter"]["Properties"]

    # Then the notifier gets the parameter's name as a plain string, not a reference to the API,
    # because the API's routes depend on the notifier through the webhook and transform functions
    assert variables["API_BASE_URL_PARAMETER"] == parameter["Name"]
    assert "HttpApi" not in json.dumps(variables)
    assert parameter["Value"] == {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}
