"""bitbatch.yml: the pipeline configuration a repository keeps next to its files.

The file is read from the pushed commit and validated against the JSON Schema
in schema/bitbatch.schema.json, which editors can use too. Errors name the
line and key at fault and what is allowed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from bitbatch.transforms import DEFAULT_RULES, Rule, check_glob, get_transform, transform_names

CONFIG_PATH = "bitbatch.yml"
MAX_CONFIG_BYTES = 256 * 1024
MAX_REPORTED_ERRORS = 10


class ConfigError(ValueError):
    """bitbatch.yml is not valid; the message lists each problem with its line."""


@dataclass(frozen=True)
class GlobFilter:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobConfig:
    definition: str | None = None
    command: tuple[str, ...] | None = None
    vcpu: float | None = None
    memory: int | None = None
    timeout: int | None = None
    environment: dict[str, str] = field(default_factory=dict)
    result: str | None = None


@dataclass(frozen=True)
class NotifyConfig:
    recipients: tuple[str, ...] = ()
    on: frozenset[str] = frozenset({"success", "failure"})


@dataclass(frozen=True)
class PipelineConfig:
    source: str  # CONFIG_PATH, or "defaults" when the commit has no bitbatch.yml
    branches: GlobFilter = GlobFilter()
    tags: GlobFilter = GlobFilter()
    paths: GlobFilter = GlobFilter()
    input: str = "all"
    rules: tuple[Rule, ...] = DEFAULT_RULES
    job: JobConfig = JobConfig()
    notify: NotifyConfig = NotifyConfig()

    def to_summary(self) -> dict:
        """Return the parts of the configuration later stages need, for the runs table."""
        job = self.job
        summary = {"source": self.source, "input": self.input, "notify_on": sorted(self.notify.on)}
        if self.notify.recipients:
            summary["recipients"] = list(self.notify.recipients)
        for name in ("definition", "vcpu", "memory", "timeout", "result"):
            value = getattr(job, name)
            if value is not None:
                summary[f"job_{name}"] = str(value) if name == "vcpu" else value
        if job.command:
            summary["job_command"] = list(job.command)
        if job.environment:
            summary["job_environment"] = dict(job.environment)
        return summary


def default_config(default_branches: tuple[str, ...] = ()) -> PipelineConfig:
    return PipelineConfig(source="defaults", branches=GlobFilter(include=default_branches))


@cache
def published_schema() -> dict:
    """Return schema/bitbatch.schema.json as shipped."""
    text = resources.files("bitbatch").joinpath("schema/bitbatch.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def schema() -> dict:
    """Return the published schema with the names of the transforms registered now."""
    document = copy.deepcopy(published_schema())
    document["properties"]["transforms"]["items"]["properties"]["transform"]["enum"] = transform_names()
    return document


def parse_config(data: bytes) -> PipelineConfig:
    """Read and validate bitbatch.yml; raises ConfigError listing every problem found."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{CONFIG_PATH} is {len(data)} bytes; the limit is {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{CONFIG_PATH} is not valid UTF-8 (byte {error.start}); save it as UTF-8") from error

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{CONFIG_PATH}{where}: invalid YAML: {problem}") from error

    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{CONFIG_PATH} line 1: the file must be a mapping of keys such as triggers, transforms, job")

    problems = [problem for error in _schema_errors(document) for problem in _describe(error, root)]
    problems += _option_problems(document, root)
    problems += _job_problems(document, root)
    problems += _glob_problems(document, root)
    if problems:
        shown = problems[:MAX_REPORTED_ERRORS]
        more = f"\n(and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
        raise ConfigError(f"{CONFIG_PATH} is invalid:\n" + "\n".join(shown) + more)
    return _build(document)


def _schema_errors(document: dict) -> list[ValidationError]:
    validator = Draft202012Validator(schema())
    return sorted(validator.iter_errors(document), key=lambda error: list(map(str, error.absolute_path)))


def _option_problems(document: dict, root) -> list[str]:
    problems = []
    for index, item in enumerate(document.get("transforms") or []):
        if not isinstance(item, dict) or item.get("transform") not in transform_names():
            continue
        transform = get_transform(item["transform"])
        options = item.get("options") or {}
        validator = Draft202012Validator(transform.options_schema or {"type": "object"})
        for error in validator.iter_errors(options):
            path = ["transforms", index, "options", *error.absolute_path]
            problems.append(f"line {_line(root, path)}: {_dotted(path)}: {error.message} (options of {transform.name})")
    return problems


def _glob_problems(document: dict, root) -> list[str]:
    """Check path globs (rules and triggers.paths), which the schema checks only as strings."""
    places = []
    for index, item in enumerate(document.get("transforms") or []):
        if isinstance(item, dict) and isinstance(item.get("match"), str):
            places.append((["transforms", index, "match"], item["match"]))
    paths = (document.get("triggers") or {}).get("paths") if isinstance(document.get("triggers"), dict) else None
    for side in ("include", "exclude"):
        for index, pattern in enumerate((paths or {}).get(side) or [] if isinstance(paths, dict) else []):
            if isinstance(pattern, str):
                places.append((["triggers", "paths", side, index], pattern))

    problems = []
    for path, pattern in places:
        try:
            check_glob(pattern)
        except ValueError as error:
            problems.append(f"line {_line(root, path)}: {_dotted(path)}: {error}")
    return problems


REPORT_OUTPUTS = ("report.html", "result.json")


# Memory (MiB) that Fargate accepts for each vCPU count: (lowest, highest, step).
# Source: the AWS Batch and ECS documentation of Fargate task sizes.
FARGATE_MEMORY = {
    0.25: (512, 2048, 512),
    0.5: (1024, 4096, 1024),
    1: (2048, 8192, 1024),
    2: (4096, 16384, 1024),
    4: (8192, 30720, 1024),
    8: (16384, 61440, 4096),
    16: (32768, 122880, 8192),
}


def _job_problems(document: dict, root) -> list[str]:
    job = document.get("job")
    if not isinstance(job, dict):
        return []
    problems = []
    if not job.get("command") and job.get("result") not in (None, *REPORT_OUTPUTS):
        problems.append(
            f"line {_line(root, ['job', 'result'])}: job.result: the built-in report writes only "
            f"{' and '.join(REPORT_OUTPUTS)}; set job.command to link another file"
        )
    vcpu, memory = job.get("vcpu"), job.get("memory")
    if vcpu in FARGATE_MEMORY and isinstance(memory, int) and not isinstance(memory, bool):
        lowest, highest, step = FARGATE_MEMORY[vcpu]
        if not (lowest <= memory <= highest and memory % step == 0):
            problems.append(
                f"line {_line(root, ['job', 'memory'])}: job.memory: Fargate runs {vcpu:g} vCPU with "
                f"{lowest} to {highest} MiB in steps of {step}, not {memory}"
            )
    return problems


def _describe(error: ValidationError, root) -> list[str]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        extra = [key for key in (error.instance or {}) if key not in allowed]
        return [_unknown_key(root, path, key, allowed) for key in extra]
    if error.validator == "enum":
        allowed = ", ".join(json.dumps(value) for value in error.validator_value)
        return [f"line {_line(root, path)}: {_dotted(path)}: {json.dumps(error.instance)} is not allowed; use one of {allowed}"]
    return [f"line {_line(root, path)}: {_dotted(path) or '(top level)'}: {error.message}"]


def _unknown_key(root, path: list, key, allowed: list[str]) -> str:
    line = _line(root, [*path, key], key=True)
    if isinstance(key, bool):
        # YAML 1.1 reads an unquoted on, off, yes or no as a boolean.
        hint = "use when: for notify outcomes" if "when" in allowed else "quote it if it is meant as text"
        return (
            f"line {line}: {_dotted(path) or '(top level)'}: a key YAML reads as {str(key).lower()} "
            f"(on, off, yes or no); {hint}; allowed keys are {', '.join(allowed)}"
        )
    return f"line {line}: {_dotted([*path, str(key)])}: unknown key; allowed keys are {', '.join(allowed)}"


def _dotted(path: list) -> str:
    """Write a JSON path as transforms[0].options.delimiter."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text


def _line(root, path: list, key: bool = False) -> int:
    """Return the 1-based line of the YAML node at path (of its key when key is true)."""
    node = root
    key_node = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if _same_key(k, part)), None)
            if match is None:
                break
            key_node, node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            key_node, node = None, node.value[part]
        else:
            break
    target = key_node if key and key_node is not None else node
    return (target.start_mark.line + 1) if target is not None else 1


YAML_BOOLEANS = {"on": True, "yes": True, "true": True, "y": True, "off": False, "no": False, "false": False, "n": False}


def _same_key(node, part) -> bool:
    if isinstance(part, bool):
        return YAML_BOOLEANS.get(str(node.value).lower()) is part
    return node.value == part


def _globs(section: dict | None) -> GlobFilter:
    section = section or {}
    return GlobFilter(include=tuple(section.get("include") or ()), exclude=tuple(section.get("exclude") or ()))


def _build(document: dict) -> PipelineConfig:
    triggers = document.get("triggers") or {}
    job = document.get("job") or {}
    notify = document.get("notify") or {}
    rules = DEFAULT_RULES
    if "transforms" in document:
        rules = tuple(
            Rule(match=item["match"], transform=item["transform"], options=dict(item.get("options") or {}))
            for item in document["transforms"]
        )
    return PipelineConfig(
        source=CONFIG_PATH,
        branches=_globs(triggers.get("branches")),
        tags=_globs(triggers.get("tags")),
        paths=_globs(triggers.get("paths")),
        input=document.get("input", "all"),
        rules=rules,
        job=JobConfig(
            definition=job.get("definition"),
            command=tuple(job["command"]) if job.get("command") else None,
            vcpu=job.get("vcpu"),
            memory=job.get("memory"),
            timeout=job.get("timeout"),
            environment=dict(job.get("environment") or {}),
            result=job.get("result"),
        ),
        notify=NotifyConfig(
            recipients=tuple(notify.get("recipients") or ()),
            on=frozenset(notify.get("when") or ("success", "failure")),
        ),
    )


def ref_matches(name: str, globs: GlobFilter) -> bool:
    """Check a branch or tag name against include and exclude globs (`*` also matches `/`)."""
    included = not globs.include or any(fnmatchcase(name, pattern) for pattern in globs.include)
    return included and not any(fnmatchcase(name, pattern) for pattern in globs.exclude)
