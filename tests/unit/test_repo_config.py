import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from bitbatch import repo_config
from bitbatch.repo_config import ConfigError, GlobFilter, parse_config, ref_matches
from bitbatch.transforms import DEFAULT_RULES

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "functions" / "bitbatch" / "schema" / "bitbatch.schema.json"

FULL = b"""\
version: 1
triggers:
  branches:
    include: [main, "release/*"]
    exclude: ["release/old-*"]
  paths:
    include: ["data/**"]
input: changed
transforms:
  - match: "data/**/*.csv"
    transform: csv-jsonl
    options:
      delimiter: ";"
job:
  command: [python, process.py]
  vcpu: 2
  memory: 4096
  timeout: 900
  environment:
    REGION_NAME: highlands
  result: index.html
notify:
  recipients: [team@example.com]
  when: [failure]
"""


def test_full_file_read():
    config = parse_config(FULL)

    assert config.source == "bitbatch.yml"
    assert config.branches == GlobFilter(include=("main", "release/*"), exclude=("release/old-*",))
    assert config.paths.include == ("data/**",)
    assert config.input == "changed"
    assert config.rules[0].options == {"delimiter": ";"}
    assert config.job.command == ("python", "process.py")
    assert config.notify.on == frozenset({"failure"})


def test_summary_keeps_what_later_stages_need():
    summary = parse_config(FULL).to_summary()

    assert summary["job_command"] == ["python", "process.py"]
    assert summary["job_vcpu"] == "2"
    assert summary["job_memory"] == 4096
    assert summary["job_environment"] == {"REGION_NAME": "highlands"}
    assert summary["job_result"] == "index.html"
    assert summary["recipients"] == ["team@example.com"]
    assert summary["notify_on"] == ["failure"]
    json.dumps(summary)


def test_empty_file_means_defaults():
    config = parse_config(b"# nothing yet\n")

    assert config.rules == DEFAULT_RULES
    assert config.input == "all"
    assert config.notify.on == frozenset({"success", "failure"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"version: 1\ntrigger:\n  branches: {}\n", "line 2: trigger: unknown key; allowed keys are"),
        (b"triggers:\n  branches:\n    includes: [main]\n", "line 3: triggers.branches.includes: unknown key"),
        (b"job:\n  vcpu: 3\n", 'line 2: job.vcpu: 3 is not allowed; use one of 0.25, 0.5, 1, 2, 4, 8, 16'),
        (b"job:\n  memory: 100\n", "line 2: job.memory: 100 is less than the minimum of 512"),
        (b"version: 2\n", "line 1: version: 1 was expected"),
        (b"transforms:\n  - match: '*.csv'\n    transform: csv\n", 'line 3: transforms[0].transform: "csv" is not allowed'),
        (b"transforms:\n  - match: '*.csv'\n", "line 2: transforms[0]: 'transform' is a required property"),
        (b"job:\n  environment:\n    AWS_REGION: x\n", "job.environment"),
        (b"notify:\n  recipients: ['Ada <ada@example.com>']\n", "line 2: notify.recipients[0]"),
        (
            b"transforms:\n  - match: '*.csv'\n    transform: csv-jsonl\n    options:\n      delimiter: ';;'\n",
            "line 5: transforms[0].options.delimiter",
        ),
        (b"transforms:\n  - match: 'data/'\n    transform: copy\n", "line 2: transforms[0].match: glob 'data/' ends with '/'"),
        (b"job:\n  result: index.html\n", "job.result: the built-in report writes only report.html and result.json"),
    ],
)
def test_invalid_file_names_line_and_key(text, expected):
    with pytest.raises(ConfigError) as raised:
        parse_config(text)

    assert expected in str(raised.value)


def test_invalid_yaml_names_line():
    with pytest.raises(ConfigError, match=r"line \d: invalid YAML: expected ',' or ']'"):
        parse_config(b"job:\n  vcpu: 1\n  command: [python\n")


def test_not_a_mapping_rejected():
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config(b"- a\n- b\n")


def test_many_errors_reported_together():
    text = b"".join(f"key{index}: 1\n".encode() for index in range(15))

    with pytest.raises(ConfigError) as raised:
        parse_config(text)

    assert "(and " in str(raised.value)


def test_oversized_file_rejected():
    with pytest.raises(ConfigError, match="limit"):
        parse_config(b"#" * (repo_config.MAX_CONFIG_BYTES + 1))


@pytest.mark.parametrize(
    ("name", "include", "exclude", "expected"),
    [
        ("main", (), (), True),
        ("release/1.0", ("release/*",), (), True),
        ("release/old-1", ("release/*",), ("release/old-*",), False),
        ("feature/x", ("main",), (), False),
        ("Main", ("main",), (), False),
    ],
)
def test_ref_matches(name, include, exclude, expected):
    assert ref_matches(name, GlobFilter(include=include, exclude=exclude)) is expected


def test_published_schema_is_valid_draft_2020_12():
    document = json.loads(SCHEMA_FILE.read_text())

    Draft202012Validator.check_schema(document)
    assert document == repo_config.published_schema()


def test_on_key_read_as_boolean_explained():
    # Given notify written with on:, which YAML 1.1 reads as the boolean true
    with pytest.raises(ConfigError) as raised:
        parse_config(b"version: 1\nnotify:\n  on: [failure]\n")

    # Then the message points at its line and tells the user to write when:
    assert "line 3: notify: a key YAML reads as true (on, off, yes or no); use when:" in str(raised.value)


@pytest.mark.parametrize(
    ("vcpu", "memory", "valid"),
    [(0.25, 512, True), (0.25, 8192, False), (1, 2048, True), (1, 2500, False), (16, 32768, True), (8, 8192, False)],
)
def test_fargate_memory_for_vcpu(vcpu, memory, valid):
    text = f"job:\n  vcpu: {vcpu}\n  memory: {memory}\n".encode()

    if valid:
        assert parse_config(text).job.memory == memory
    else:
        with pytest.raises(ConfigError, match=r"line 3: job.memory: Fargate runs"):
            parse_config(text)
