"""Built-in transforms: turn one repository file into one intermediate artifact.

A transform takes the file's path and bytes and returns the artifact bytes,
its format (jsonl, json or raw) and the suffix added to the artifact name.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch

import yaml


class TransformError(ValueError):
    """A file could not be transformed; the message names the file and line."""

    def __init__(self, path: str, reason: str, line: int | None = None):
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line


@dataclass(frozen=True)
class TransformResult:
    data: bytes
    format: str  # "jsonl", "json" or "raw"
    suffix: str  # appended to the source path to name the artifact


TransformFunction = Callable[[str, bytes], TransformResult]


def copy_file(path: str, data: bytes) -> TransformResult:
    return TransformResult(data=data, format="raw", suffix="")


def _decode(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TransformError(path, "is not valid UTF-8; save the file as UTF-8", line) from error


def _json_value(value):
    """Write YAML dates and timestamps in ISO 8601, anything else JSON lacks as text."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def yaml_to_json(path: str, data: bytes) -> TransformResult:
    """Convert YAML to JSON; a file with several documents becomes a JSON array."""
    text = _decode(path, data)
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        raise TransformError(path, f"invalid YAML: {problem}", line) from error

    document = documents[0] if len(documents) == 1 else documents
    try:
        encoded = json.dumps(document, ensure_ascii=False, indent=2, default=_json_value).encode()
    except (TypeError, ValueError) as error:
        raise TransformError(path, f"YAML value cannot be written as JSON: {error}") from error
    return TransformResult(data=encoded + b"\n", format="json", suffix=".json")


# Only numbers in their plain written form are converted, so codes such as
# "007", "1_000" or "+5" keep their exact text.
INTEGER_PATTERN = re.compile(r"-?(0|[1-9][0-9]*)")
DECIMAL_PATTERN = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _infer_value(text: str):
    """Return text as null, bool, int or float when it reads as one, else the text."""
    if text == "":
        return None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if INTEGER_PATTERN.fullmatch(text):
        return int(text)
    if DECIMAL_PATTERN.fullmatch(text):
        number = float(text)
        # A huge exponent reads as inf, which JSON cannot hold.
        return number if number not in (float("inf"), float("-inf")) else text
    return text


def delimited_to_jsonl(path: str, data: bytes) -> TransformResult:
    """Convert CSV (or TSV, by extension) with a header row to JSON Lines with typed values."""
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    reader = csv.reader(io.StringIO(_decode(path, data), newline=""), delimiter=delimiter, strict=True)

    try:
        header = next(reader, None)
        if not header:
            raise TransformError(path, "has no header row; the first line must name the columns", 1)
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise TransformError(path, f"repeats column names {duplicates}; make each header name unique", 1)

        lines = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise TransformError(
                    path, f"has {len(row)} values where the header has {len(header)} columns", reader.line_num
                )
            record = {name: _infer_value(value) for name, value in zip(header, row, strict=True)}
            lines.append(json.dumps(record, ensure_ascii=False))
    except csv.Error as error:
        raise TransformError(path, f"invalid {'TSV' if delimiter == chr(9) else 'CSV'}: {error}", reader.line_num) from error

    body = "\n".join(lines) + ("\n" if lines else "")
    return TransformResult(data=body.encode(), format="jsonl", suffix=".jsonl")


TRANSFORMS: dict[str, TransformFunction] = {
    "copy": copy_file,
    "yaml-json": yaml_to_json,
    "csv-jsonl": delimited_to_jsonl,
}


@dataclass(frozen=True)
class Rule:
    match: str  # glob on the whole path; "*" also matches "/"
    transform: str


# Used until a repository can choose its own rules. Files matching none are not sent.
DEFAULT_RULES = (
    Rule("*.csv", "csv-jsonl"),
    Rule("*.tsv", "csv-jsonl"),
    Rule("*.yaml", "yaml-json"),
    Rule("*.yml", "yaml-json"),
    Rule("*.json", "copy"),
    Rule("*.jsonl", "copy"),
    Rule("*.txt", "copy"),
    Rule("*.md", "copy"),
)


def select_transform(path: str, rules=DEFAULT_RULES) -> str | None:
    """Return the name of the first rule's transform matching path, or None."""
    lowered = path.lower()
    for rule in rules:
        if fnmatch(lowered, rule.match):
            return rule.transform
    return None
