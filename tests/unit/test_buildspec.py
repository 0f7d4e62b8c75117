"""Check the continuous deployment against the files it runs and the templates it deploys.

CodeBuild runs buildspec.yml only after a push to AWS, so a renamed Make target, a moved script or a
parameter the template no longer reads would first fail there. These tests read buildspec.yml,
cicd/template.yaml, samconfig.toml and the rollout settings of template.yaml as data, compare them
with the Makefile and the code, and run the release script as CodeBuild does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import boto3
import pytest
import yaml
from cloudformation_yaml import load_template

ROOT = Path(__file__).resolve().parents[2]
BUILDSPEC = ROOT / "buildspec.yml"
APP_TEMPLATE = ROOT / "template.yaml"
CICD_TEMPLATE = ROOT / "cicd" / "template.yaml"
MAKEFILE = ROOT / "Makefile"
SAMCONFIG = ROOT / "samconfig.toml"
RELEASE_SCRIPT = ROOT / "cicd" / "release.py"

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PHASES = ("install", "pre_build", "build", "post_build")
# Variables that CodeBuild sets in every build.
CODEBUILD_VARIABLES = {"AWS_REGION", "AWS_DEFAULT_REGION", "CODEBUILD_RESOLVED_SOURCE_VERSION", "CODEBUILD_BUILD_ID"}
ALIAS = "live"
SHELL_OPERATORS = {"|", "||", "&&", ";"}
SHELL_KEYWORDS = {"if", "then", "else", "fi"}
SHELL_REDIRECTIONS = {">", ">>", "<", ">&", "2>"}

# The IAM services that CloudFormation calls to create each resource type of template.yaml,
# including what SAM generates for it (roles, versions, aliases, CodeDeploy groups, rules).
SERVICES_BY_RESOURCE_TYPE = {
    "AWS::Serverless::Function": {"lambda", "iam", "codedeploy"},
    "AWS::Serverless::HttpApi": {"apigateway", "logs"},
    "AWS::Logs::LogGroup": {"logs"},
    "AWS::CloudWatch::Alarm": {"cloudwatch"},
    "AWS::SecretsManager::Secret": {"secretsmanager"},
    "AWS::SQS::Queue": {"sqs"},
    "AWS::Batch::ComputeEnvironment": {"batch", "ec2", "iam"},
    "AWS::Batch::JobQueue": {"batch"},
    "AWS::Batch::JobDefinition": {"batch", "iam"},
    "AWS::IAM::Role": {"iam"},
    "AWS::S3::Bucket": {"s3"},
    "AWS::S3::BucketPolicy": {"s3"},
    "AWS::DynamoDB::Table": {"dynamodb"},
    "AWS::SSM::Parameter": {"ssm"},
}
SERVICES_BY_EVENT_TYPE = {"HttpApi": {"apigateway"}, "SQS": {"lambda"}, "EventBridgeRule": {"events"}}




FUNCTION_IDS = sorted(
    logical_id
    for logical_id, resource in load_template(APP_TEMPLATE)["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
)


@pytest.fixture(scope="module")
def buildspec() -> dict:
    return yaml.safe_load(BUILDSPEC.read_text())


@pytest.fixture(scope="module")
def app_template() -> dict:
    return load_template(APP_TEMPLATE)


@pytest.fixture(scope="module")
def cicd_template() -> dict:
    return load_template(CICD_TEMPLATE)


@pytest.fixture(scope="module")
def samconfig() -> dict:
    return tomllib.loads(SAMCONFIG.read_text())


@pytest.fixture(scope="module")
def release():
    spec = importlib.util.spec_from_file_location("cicd_release", RELEASE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commands(buildspec: dict) -> list[tuple[str, str]]:
    """(phase, command) pairs in the order CodeBuild runs them."""
    return [(phase, command) for phase in PHASES for command in buildspec["phases"].get(phase, {}).get("commands", [])]


def command_index(buildspec: dict, prefix: str) -> int:
    """Position of the one command whose first words are those of prefix."""
    prefix_words = prefix.split()
    matches = [
        index
        for index, (_, command) in enumerate(commands(buildspec))
        if shlex.split(command)[: len(prefix_words)] == prefix_words
    ]
    assert len(matches) == 1, f"buildspec.yml runs {len(matches)} commands starting with {prefix!r}, expected 1"
    return matches[0]


def simple_commands(line: str) -> list[list[str]]:
    """Split one shell line into its simple commands' words, without operators, redirections or if/then/else/fi."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    result, current, tokens = [], [], list(lexer)
    for index, token in enumerate(tokens):
        if token in SHELL_OPERATORS:
            result.append(current)
            current = []
        elif token in SHELL_KEYWORDS and not current:
            continue
        elif token in SHELL_REDIRECTIONS or (index > 0 and tokens[index - 1] in SHELL_REDIRECTIONS):
            continue
        elif token.isdigit() and index + 1 < len(tokens) and tokens[index + 1] in SHELL_REDIRECTIONS:
            continue
        else:
            current.append(token)
    result.append(current)
    return [words for words in result if words]


def command_words(buildspec: dict) -> list[list[str]]:
    """Every simple command of the buildspec as words, also those in if blocks and in $(...)."""
    words = []
    for _, command in commands(buildspec):
        for line in command.splitlines():
            for substitution in re.findall(r"\$\(([^()]*)\)", line):
                words.extend(simple_commands(substitution))
            words.extend(simple_commands(line))
    return words


def sam_deploy_arguments(buildspec: dict) -> list[str]:
    _, command = commands(buildspec)[command_index(buildspec, ".venv-sam/bin/sam deploy")]
    return shlex.split(command)


def option_values(arguments: list[str], option: str) -> list[str]:
    """The words that follow an option, up to the next option."""
    start = arguments.index(option) + 1
    values = []
    for word in arguments[start:]:
        if word.startswith("--"):
            break
        values.append(word)
    return values


def makefile_variables() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z0-9_]+) := (\S+)$", MAKEFILE.read_text(), flags=re.MULTILINE))


def make_dry_run(arguments: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--dry-run", "--makefile", str(MAKEFILE), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def run_release(arguments: list[str], cwd: Path, environment: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RELEASE_SCRIPT), *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def policy_statements(template: dict, role_id: str) -> list[dict]:
    statements = []
    for policy in template["Resources"][role_id]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                statement = statement["Fn::If"][1]
            statements.append(statement)
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def sub_text(value) -> str:
    """The text of a !Sub, in its short or list form."""
    sub = value["Fn::Sub"]
    return sub if isinstance(sub, str) else sub[0]


# ---------------------------------------------------------------- buildspec


def test_buildspec_make_targets_exist(buildspec):
    # Given every make invocation of the buildspec
    invocations = [words[1:] for words in command_words(buildspec) if words[0] == "make"]
    assert invocations

    for arguments in invocations:
        # When make plans it without running anything
        result = make_dry_run(arguments)

        # Then the Makefile has each target it names
        assert result.returncode == 0, f"make {' '.join(arguments)} failed: {result.stderr}"
        assert "No rule to make target" not in result.stderr


def test_buildspec_paths_exist(buildspec):
    # Given the repository paths that the buildspec's commands name
    venv_directories = set(makefile_variables().values())
    tools_prerequisites = re.search(r"^tools: (.+)$", MAKEFILE.read_text(), flags=re.MULTILINE).group(1)
    paths = [
        word
        for words in command_words(buildspec)
        for word in words
        if "/" in word and not word.startswith(("$", "-", "/", "http")) and "=" not in word and ":" not in word
    ]
    assert "cicd/release.py" in paths

    for path in paths:
        venv = path.split("/", 1)[0]
        if venv.startswith(".venv"):
            # Then a program from a virtual environment comes from one that `make tools` installs
            variable = next(name for name, value in makefile_variables().items() if value == venv)
            assert venv in venv_directories
            assert f"$({variable})/.installed" in tools_prerequisites, f"make tools does not install {venv}"
        else:
            # Then every other path is a file of the repository
            assert (ROOT / path).exists(), f"buildspec.yml names {path}, which does not exist"


def test_buildspec_release_subcommands_exist(buildspec, release):
    # Given the release script's subcommands that the buildspec runs
    used = {words[2] for words in command_words(buildspec) if words[1:2] == ["cicd/release.py"]}

    # When the script prints the help of each of them
    for subcommand in sorted(used):
        result = run_release([subcommand, "--help"], ROOT, dict(os.environ))

        # Then the script accepts it
        assert result.returncode == 0, f"cicd/release.py {subcommand}: {result.stderr}"
    assert used == {"source-commit", "wait-for-stack"}


def test_buildspec_checks_before_sam_build(buildspec):
    # Given the positions of lint, tests and sam build among the buildspec's commands
    lint = command_index(buildspec, "make lint")
    tests = command_index(buildspec, "make test")
    build = command_index(buildspec, "make build")
    phases = dict(enumerate(phase for phase, _ in commands(buildspec)))

    # Then lint and tests run first, in pre_build, whose failure makes CodeBuild skip the build phase
    assert lint < build
    assert tests < build
    assert phases[lint] == "pre_build"
    assert phases[tests] == "pre_build"
    assert phases[build] == "build"
    assert "sam build" in make_dry_run(["build"]).stdout


def test_buildspec_image_tag_is_source_commit(buildspec):
    # Given how the buildspec names, builds and pushes the job image
    words = command_words(buildspec)
    all_commands = [command for _, command in commands(buildspec)]

    # Then the tag is the commit that the release script reads from CodeBuild, and that image is pushed
    assert 'SOURCE_COMMIT="$(.venv/bin/python cicd/release.py source-commit)"' in all_commands
    assert 'IMAGE_URI="${IMAGE_REPOSITORY_URI}:${SOURCE_COMMIT}"' in all_commands
    assert ["make", "build-image", "IMAGE=$IMAGE_URI"] in words
    assert ["docker", "push", "$IMAGE_URI"] in words


def test_release_script_reads_codebuild_commit(tmp_path):
    # Given a build of a Bitbucket source, for which CodeBuild resolves the commit
    environment = dict(os.environ, CODEBUILD_RESOLVED_SOURCE_VERSION=COMMIT)

    # When the buildspec's command requests the source commit
    result = run_release(["source-commit"], tmp_path, environment)

    # Then the image tag is that commit
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == COMMIT


def test_release_script_reads_s3_commit_file(tmp_path):
    # Given an S3 source zip, with no resolved commit but a SOURCE_COMMIT file at its root
    (tmp_path / "SOURCE_COMMIT").write_text(COMMIT + "\n")
    environment = dict(os.environ, CODEBUILD_RESOLVED_SOURCE_VERSION="")

    # When the buildspec's command requests the source commit
    result = run_release(["source-commit"], tmp_path, environment)

    # Then the commit comes from the file
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == COMMIT


@pytest.mark.parametrize("commit_file", [None, "main\n"])
def test_release_script_rejects_unknown_commit(tmp_path, commit_file):
    # Given a source with no resolved commit and no usable SOURCE_COMMIT file
    if commit_file is not None:
        (tmp_path / "SOURCE_COMMIT").write_text(commit_file)
    environment = dict(os.environ, CODEBUILD_RESOLVED_SOURCE_VERSION="")

    # When the buildspec's command requests the source commit
    result = run_release(["source-commit"], tmp_path, environment)

    # Then the build stops with a message that explains how to record the commit
    assert result.returncode == 1
    assert result.stdout == ""
    assert "git rev-parse HEAD > SOURCE_COMMIT" in result.stderr


def test_buildspec_image_uri_fits_template(buildspec, app_template, cicd_template):
    # Given the parameters that sam deploy sets, and an image URI built as the buildspec builds it
    overrides = dict(
        value.split("=", 1) for value in option_values(sam_deploy_arguments(buildspec), "--parameter-overrides")
    )
    repository_uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/bitbatch-cicd-prod-imagerepository-0a1b2c3d4e5f"
    image_uri = f"{repository_uri}:{COMMIT}"
    parameters = app_template["Parameters"]
    job_container = app_template["Resources"]["JobDefinition"]["Properties"]["ContainerProperties"]

    # Then template.yaml reads each parameter, and the job definition runs the image it passes
    assert overrides["ImageUri"] == "$IMAGE_URI"
    assert overrides["Stage"] == "$STAGE"
    assert set(overrides) <= set(parameters)
    assert re.fullmatch(parameters["ImageUri"]["AllowedPattern"], image_uri)
    assert job_container["Image"] == {"Ref": "ImageUri"}
    assert cicd_template["Parameters"]["Stage"]["AllowedValues"] == parameters["Stage"]["AllowedValues"]


def test_buildspec_deploys_without_prompts(buildspec):
    # Given the sam deploy command of the buildspec
    arguments = sam_deploy_arguments(buildspec)

    # Then it neither waits for a confirmation nor fails when nothing changed, and uses the stage's settings
    assert "--no-confirm-changeset" in arguments
    assert "--no-fail-on-empty-changeset" in arguments
    assert option_values(arguments, "--config-env") == ["$STAGE"]
    assert option_values(arguments, "--stack-name") == ["$APP_STACK_NAME"]
    assert option_values(arguments, "--role-arn") == ["$CLOUDFORMATION_ROLE_ARN"]


def test_buildspec_waits_before_deploy(buildspec):
    # Given the position of the wait for the application stack and of sam deploy
    wait = command_index(buildspec, ".venv/bin/python cicd/release.py wait-for-stack")
    deploy = command_index(buildspec, ".venv-sam/bin/sam deploy")

    # Then the build waits for an earlier deploy of the same stack to end before it deploys
    assert wait < deploy
    assert commands(buildspec)[wait][1].endswith('"$APP_STACK_NAME"')


def test_buildspec_variables_are_set(buildspec, cicd_template):
    # Given the variables that the buildspec's commands read
    text = "\n".join(command for _, command in commands(buildspec))
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    environment = cicd_template["Resources"]["BuildProject"]["Properties"]["Environment"]
    project_variables = {variable["Name"] for variable in environment["EnvironmentVariables"]}
    assigned = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))

    # Then the project, CodeBuild or the buildspec itself sets each one
    for name in sorted(read):
        assert name in project_variables | CODEBUILD_VARIABLES | assigned, (
            f"buildspec.yml reads {name}, which nothing sets"
        )


def test_buildspec_python_matches_lambda_runtime(buildspec, app_template):
    # Given the buildspec's Python runtime and the functions' runtime
    runtime = buildspec["phases"]["install"]["runtime-versions"]["python"]

    # Then both are Python 3.13
    assert str(runtime) == "3.13"
    assert app_template["Globals"]["Function"]["Runtime"] == "python3.13"


def test_buildspec_reports_are_junit(buildspec):
    # Given the reports section and the pytest command
    reports = buildspec["reports"]
    _, test_command = commands(buildspec)[command_index(buildspec, "make test")]
    junit_path = re.search(r"--junitxml=(\S+?)\"?$", test_command).group(1)

    # Then every report is JUnit XML, and the report files are the ones pytest writes
    assert reports
    for report in reports.values():
        assert report["file-format"] == "JUNITXML"
        for name in report["files"]:
            assert f"{report['base-directory']}/{name}" == junit_path


def test_buildspec_caches_pip_downloads(buildspec):
    # Given pip's cache folder and CodeBuild's cache paths
    pip_cache = buildspec["env"]["variables"]["PIP_CACHE_DIR"]

    # Then the cache keeps everything under pip's cache folder
    assert f"{pip_cache}/**/*" in buildspec["cache"]["paths"]


def test_image_built_for_job_architecture(app_template):
    # Given the build-image recipe and the job definition's platform
    recipe = make_dry_run(["build-image", "IMAGE=bitbatch-job:test"]).stdout
    platform = app_template["Resources"]["JobDefinition"]["Properties"]["ContainerProperties"]["RuntimePlatform"]

    # Then the image is built for linux/amd64, the platform of X86_64 Fargate jobs
    assert "docker build --platform linux/amd64" in recipe
    assert "container/" in recipe
    assert platform["CpuArchitecture"] == "X86_64"


# ------------------------------------------------------------------ stages


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_samconfig_stage_settings(samconfig, stage):
    # Given the stage's deploy settings
    deploy = samconfig[stage]["deploy"]["parameters"]

    # Then stack name, upload prefix, Stage parameter and tags belong to that stage
    assert deploy["stack_name"] == f"bitbatch-{stage}"
    assert deploy["s3_prefix"] == deploy["stack_name"]
    assert deploy["parameter_overrides"] == f"Stage={stage}"
    assert f'stage="{stage}"' in deploy["tags"]
    assert deploy["resolve_s3"] is True


def test_samconfig_default_is_dev(samconfig):
    # Given the settings of plain `sam deploy` and of `sam deploy --config-env dev`
    default = samconfig["default"]["deploy"]["parameters"]
    dev = samconfig["dev"]["deploy"]["parameters"]

    # Then both deploy the same dev stack the same way
    assert default == dev


def test_cicd_targets_samconfig_stacks(cicd_template, samconfig):
    # Given the stack the CI/CD project deploys and the roles' scope, for each stage
    environment = cicd_template["Resources"]["BuildProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    app_stack = next(variable["Value"] for variable in environment if variable["Name"] == "APP_STACK_NAME")
    build_statements = policy_statements(cicd_template, "BuildRole")
    deploy_stack = next(statement for statement in build_statements if statement["Sid"] == "DeployAppStack")

    for stage in cicd_template["Parameters"]["Stage"]["AllowedValues"]:
        # Then the project deploys the stack and S3 prefix that samconfig.toml names for the stage
        deploy = samconfig[stage]["deploy"]["parameters"]
        assert sub_text(app_stack).replace("${Stage}", stage) == deploy["stack_name"]
        assert f":stack/{deploy['stack_name']}/*" in sub_text(deploy_stack["Resource"]).replace("${Stage}", stage)


# ----------------------------------------------------------- CI/CD template


def test_cicd_repository_scans_and_expires(cicd_template):
    # Given the job image repository
    repository = cicd_template["Resources"]["ImageRepository"]["Properties"]
    keep = cicd_template["Parameters"]["ImagesToKeep"]["Default"]
    lifecycle = json.loads(
        sub_text(repository["LifecyclePolicy"]["LifecyclePolicyText"]).replace("${ImagesToKeep}", str(keep))
    )
    rules = lifecycle["rules"]

    # Then images are scanned on push, and only the newest ImagesToKeep images are kept
    assert repository["ImageScanningConfiguration"]["ScanOnPush"] is True
    assert len(rules) == 1
    assert rules[0]["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep}
    assert rules[0]["action"] == {"type": "expire"}


def test_cicd_commit_tags_are_immutable(cicd_template):
    # Given the repository's tag mutability
    repository = cicd_template["Resources"]["ImageRepository"]["Properties"]
    excluded = [
        rule["ImageTagMutabilityExclusionFilterValue"] for rule in repository["ImageTagMutabilityExclusionFilters"]
    ]

    # Then every tag but latest is immutable, so a commit's image cannot be replaced
    assert repository["ImageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert excluded == ["latest"]


@pytest.mark.parametrize("role_id", ["BuildRole", "DeployRole", "StartBuildRole"])
def test_cicd_roles_name_their_actions(cicd_template, role_id):
    # Given every statement of the role
    statements = policy_statements(cicd_template, role_id)

    # Then each names its actions; none allows every action of AWS or of a service
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert action != "*", f"{role_id} {statement.get('Sid')} allows every action"
            assert not action.endswith(":*"), f"{role_id} {statement.get('Sid')} allows every action of a service"


def test_cicd_build_role_scopes_resources(cicd_template):
    # Given the build role's statements that apply to every resource
    statements = policy_statements(cicd_template, "BuildRole")
    unscoped = [statement for statement in statements if "*" in as_list(statement["Resource"])]

    # Then only the ECR login, which supports no resource-level permissions, is one of them
    assert [statement["Action"] for statement in unscoped] == ["ecr:GetAuthorizationToken"]


def test_cicd_build_role_passes_only_deploy_role(cicd_template):
    # Given the build role's statement on iam:PassRole
    statements = policy_statements(cicd_template, "BuildRole")
    passes = [statement for statement in statements if "iam:PassRole" in as_list(statement["Action"])]

    # Then it may pass only the deploy role, and only to CloudFormation
    assert len(passes) == 1
    assert passes[0]["Resource"] == {"Fn::GetAtt": ["DeployRole", "Arn"]}
    assert passes[0]["Condition"]["StringEquals"]["iam:PassedToService"] == "cloudformation.amazonaws.com"


def test_cicd_deploy_role_covers_app_services(cicd_template, app_template):
    # Given the IAM services that the application template's resources need
    needed = set()
    for logical_id, resource in app_template["Resources"].items():
        assert resource["Type"] in SERVICES_BY_RESOURCE_TYPE, (
            f"{logical_id} is a {resource['Type']}: add the permissions CloudFormation needs for it to "
            "DeployRole in cicd/template.yaml, then its services to SERVICES_BY_RESOURCE_TYPE"
        )
        needed |= SERVICES_BY_RESOURCE_TYPE[resource["Type"]]
        for event in resource.get("Properties", {}).get("Events", {}).values():
            needed |= SERVICES_BY_EVENT_TYPE[event["Type"]]
    granted = {
        action.split(":", 1)[0]
        for statement in policy_statements(cicd_template, "DeployRole")
        for action in as_list(statement["Action"])
    }

    # Then the deploy role grants actions of each of them
    for service in sorted(needed):
        assert service in granted, f"DeployRole grants no {service} action, which template.yaml needs"


def test_cicd_deploy_role_covers_app_secrets(cicd_template, app_template):
    # Given the secrets of the application template, which CloudFormation names <logical ID>-<random>
    secret_ids = [
        logical_id
        for logical_id, resource in app_template["Resources"].items()
        if resource["Type"] == "AWS::SecretsManager::Secret"
    ]
    statement = next(item for item in policy_statements(cicd_template, "DeployRole") if item["Sid"] == "ManageSecrets")
    allowed = [sub_text(resource) for resource in as_list(statement["Resource"])]

    # Then the deploy role may manage each of them, and only those
    assert secret_ids
    for logical_id in secret_ids:
        assert "Name" not in app_template["Resources"][logical_id]["Properties"], f"{logical_id} has its own name"
    assert sorted(resource.rsplit(":secret:", 1)[1] for resource in allowed) == sorted(
        f"{logical_id}-*" for logical_id in secret_ids
    )


def test_cicd_bitbucket_push_trigger(cicd_template):
    # Given the project's Bitbucket source and webhook, chosen when ConnectionArn is set
    project = cicd_template["Resources"]["BuildProject"]["Properties"]
    condition, bitbucket_source, s3_source = project["Source"]["Fn::If"]
    condition_name, triggers, _ = project["Triggers"]["Fn::If"]
    filters = {item["Type"]: item["Pattern"] for item in triggers["FilterGroups"][0]}

    # Then the connection clones the repository, and only pushes to the release branch start builds
    assert condition == condition_name == "UseConnection"
    assert bitbucket_source["Type"] == "BITBUCKET"
    assert bitbucket_source["Auth"] == {"Type": "CODECONNECTIONS", "Resource": {"Ref": "ConnectionArn"}}
    assert triggers["Webhook"] is True
    assert filters["EVENT"] == "PUSH"
    assert filters["HEAD_REF"] == {"Fn::Sub": "^refs/heads/${BranchName}$"}
    assert bitbucket_source["BuildSpec"] == s3_source["BuildSpec"] == BUILDSPEC.name


def test_cicd_s3_upload_starts_build(cicd_template):
    # Given the S3 source and the EventBridge rule, used when ConnectionArn is empty
    resources = cicd_template["Resources"]
    _, _, s3_source = resources["BuildProject"]["Properties"]["Source"]["Fn::If"]
    rule = resources["SourceRule"]
    pattern = rule["Properties"]["EventPattern"]

    # Then an upload of the source zip starts the project, which builds that zip
    assert s3_source["Type"] == "S3"
    assert s3_source["Location"] == {"Fn::Sub": "${BuildBucket}/${SourceObjectKey}"}
    assert rule["Condition"] == "UseS3Source"
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"Ref": "SourceObjectKey"}]
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["BuildProject", "Arn"]}


def test_cicd_build_environment(cicd_template):
    # Given the project's build environment
    environment = cicd_template["Resources"]["BuildProject"]["Properties"]["Environment"]

    # Then it is the x86_64 Amazon Linux standard image that offers python 3.13, with Docker
    assert environment["Image"] == "aws/codebuild/amazonlinux-x86_64-standard:5.0"
    assert environment["PrivilegedMode"] is True
    assert environment["Type"] == "LINUX_CONTAINER"


# ------------------------------------------------------------ safe rollouts


def test_functions_publish_live_alias(app_template):
    # Given the functions' shared settings and the stage condition
    function_globals = app_template["Globals"]["Function"]
    deployment_type = function_globals["DeploymentPreference"]["Type"]

    # Then every deploy moves the alias through CodeDeploy: a canary in prod, all at once in dev
    assert function_globals["AutoPublishAlias"] == ALIAS
    assert deployment_type == {"Fn::If": ["IsProd", "Canary10Percent10Minutes", "AllAtOnce"]}
    assert app_template["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert app_template["Parameters"]["Stage"]["AllowedValues"] == ["dev", "prod"]


@pytest.mark.parametrize("logical_id", FUNCTION_IDS)
def test_function_rollback_alarms(app_template, logical_id):
    # Given the alarms of the function's deployment preference
    resources = app_template["Resources"]
    properties = resources[logical_id]["Properties"]
    alarm_ids = [alarm["Ref"] for alarm in properties["DeploymentPreference"]["Alarms"]]
    alarms = [resources[alarm_id]["Properties"] for alarm_id in alarm_ids]

    # Then they watch the errors and throttles of the function's live alias
    assert "AutoPublishAlias" not in properties
    assert sorted(alarm["MetricName"] for alarm in alarms) == ["Errors", "Throttles"]
    for alarm_id, alarm in zip(alarm_ids, alarms, strict=True):
        dimensions = {dimension["Name"]: dimension["Value"] for dimension in alarm["Dimensions"]}
        assert resources[alarm_id]["Type"] == "AWS::CloudWatch::Alarm"
        assert alarm["Namespace"] == "AWS/Lambda"
        assert dimensions["FunctionName"] == {"Ref": logical_id}
        assert dimensions["Resource"] == {"Fn::Sub": f"${{{logical_id}}}:{ALIAS}"}


def test_function_calls_use_alias(app_template):
    # Given the function names that the webhook and the transform invoke
    resources = app_template["Resources"]
    webhook = resources["WebhookFunction"]["Properties"]["Environment"]["Variables"]
    transform = resources["TransformFunction"]["Properties"]["Environment"]["Variables"]

    # Then they invoke the live aliases, whose versions CodeDeploy checked, never $LATEST
    assert webhook["TRANSFORM_FUNCTION_NAME"] == {"Ref": "TransformFunction.Alias"}
    assert transform["NOTIFIER_FUNCTION_NAME"] == {"Ref": "NotifierFunction.Alias"}


# ------------------------------------------------------------ stack waiting


def test_wait_for_deployed_stack(aws, tmp_path):
    # Given an application stack that CloudFormation finished creating
    cloudformation = boto3.client("cloudformation")
    template = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    cloudformation.create_stack(StackName="bitbatch-dev", TemplateBody=json.dumps(template))

    # When the build waits for the stack before deploying
    result = run_release(["wait-for-stack", "bitbatch-dev"], tmp_path, dict(os.environ))

    # Then it goes on at once
    assert result.returncode == 0, result.stderr
    assert "bitbatch-dev is CREATE_COMPLETE" in result.stdout


def test_wait_for_missing_stack(aws, tmp_path):
    # Given no application stack yet

    # When the build waits for the stack before deploying
    result = run_release(["wait-for-stack", "bitbatch-prod"], tmp_path, dict(os.environ))

    # Then it stops and says to deploy the stage once by hand
    assert result.returncode == 1
    assert "bitbatch-prod has not been deployed yet" in result.stderr
    assert "sam deploy --guided --config-env" in result.stderr


def test_wait_polls_until_settled(release):
    # Given a stack whose update ends after two checks
    statuses = iter(["UPDATE_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE"])
    pauses = []

    # When the build waits for it
    status = release.wait_for_stack(lambda: next(statuses), "bitbatch-prod", 3600, 30, sleep=pauses.append)

    # Then it returns the settled status after pausing between the checks
    assert status == "UPDATE_COMPLETE"
    assert pauses == [30, 30]


def test_wait_rejects_failed_stack(release):
    # Given a stack whose first creation rolled back, which CloudFormation does not update

    # When the build waits for it, then it stops with the state and what to do
    with pytest.raises(release.ReleaseError, match="is ROLLBACK_COMPLETE, which CloudFormation does not update"):
        release.wait_for_stack(lambda: "ROLLBACK_COMPLETE", "bitbatch-prod", 3600, 30, sleep=pytest.fail)


def test_wait_gives_up_after_timeout(release):
    # Given a stack that stays busy, and a clock that passes the deadline after the first check
    times = iter([0.0, 10.0, 4000.0])

    # When the build waits for it, then it stops and names the state
    with pytest.raises(release.ReleaseError, match="still UPDATE_IN_PROGRESS after 3600 s"):
        release.wait_for_stack(
            lambda: "UPDATE_IN_PROGRESS",
            "bitbatch-prod",
            3600,
            30,
            sleep=lambda seconds: None,
            clock=lambda: next(times),
        )
