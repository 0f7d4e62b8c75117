"""The run's report: what each file contains, built from local files only (no AWS calls)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any, BinaryIO

from bitbatch_job.errors import JobError
from bitbatch_job.manifest import Manifest, ManifestFile

# Memory caps per file. A field stops counting distinct strings at DISTINCT_LIMIT,
# and a file profiles only its first FIELD_LIMIT field names. The report marks both cases.
DISTINCT_LIMIT = 1000
FIELD_LIMIT = 1000

_TEXT_CHUNK_BYTES = 1024 * 1024


class FieldProfile:
    """Running statistics of one top-level field across a file's records."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.nulls = 0
        self.types: set[str] = set()
        self.numbers = 0
        self.minimum: int | float | None = None
        self.maximum: int | float | None = None
        self.total: int | float = 0
        # Digests of the distinct strings, so a few long strings cannot fill memory.
        self.distinct: set[bytes] = set()
        self.distinct_capped = False

    def add(self, value: Any) -> None:
        if value is None:
            self.nulls += 1
            return
        self.count += 1

        value_type = json_type(value)
        self.types.add(value_type)

        if value_type in ("integer", "number"):
            self._add_number(value)
        elif value_type == "string":
            self._add_string(value)

    def to_dict(self, records: int) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "name": self.name,
            "count": self.count,
            "nulls": self.nulls,
            "missing": records - self.count - self.nulls,
            "types": sorted(self.types),
        }
        if self.numbers:
            profile["min"] = self.minimum
            profile["max"] = self.maximum
            profile["mean"] = self._mean()
        if "string" in self.types:
            profile["distinct"] = len(self.distinct)
            profile["distinct_capped"] = self.distinct_capped
        return profile

    def _add_number(self, value: int | float) -> None:
        self.numbers += 1
        self.total += value
        if self.minimum is None or value < self.minimum:
            self.minimum = value
        if self.maximum is None or value > self.maximum:
            self.maximum = value

    def _add_string(self, value: str) -> None:
        digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in self.distinct:
            return
        if len(self.distinct) >= DISTINCT_LIMIT:
            self.distinct_capped = True
            return
        self.distinct.add(digest)

    def _mean(self) -> float | None:
        # Sums of huge integers or floats can leave the float range, and JSON has no Infinity.
        try:
            mean = self.total / self.numbers
        except OverflowError:
            return None
        return mean if math.isfinite(mean) else None


class RecordProfile:
    """Record count and field statistics of one file."""

    def __init__(self) -> None:
        self.records = 0
        self.fields: dict[str, FieldProfile] = {}
        self.fields_capped = False

    def add(self, record: dict[str, Any]) -> None:
        self.records += 1
        for name, value in record.items():
            field = self.fields.get(name)
            if field is None:
                if len(self.fields) >= FIELD_LIMIT:
                    self.fields_capped = True
                    continue
                field = self.fields[name] = FieldProfile(name)
            field.add(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "fields": [field.to_dict(self.records) for field in self.fields.values()],
            "fields_capped": self.fields_capped,
        }


def json_type(value: Any) -> str:
    """Return the JSON type name of a parsed value ("integer" and "number" kept apart)."""
    # bool is a subclass of int in Python, so it is checked first.
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    raise TypeError(f"{type(value).__name__} is not a JSON type")


def profile_records(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Count records and profile their fields."""
    profile = RecordProfile()
    for record in records:
        profile.add(record)
    return profile.to_dict()


def summarize_jsonl(label: str, stream: BinaryIO) -> dict[str, Any]:
    """Profile a JSON Lines stream with one object per line. Blank lines are skipped."""
    profile = RecordProfile()
    for line_number, raw_line in enumerate(stream, start=1):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise JobError(
                f"{label} is not valid UTF-8 at line {line_number}, byte {error.start + 1} of the line"
            ) from None
        if line_number == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue

        try:
            record = parse_json(line)
        except json.JSONDecodeError as error:
            raise JobError(
                f"{label} is not valid JSON Lines: line {line_number}, column {error.colno}: {error.msg}"
            ) from None
        except ValueError as error:
            raise JobError(f"{label} is not valid JSON Lines: line {line_number}: {error}") from None

        if not isinstance(record, dict):
            raise JobError(
                f"{label} is not valid JSON Lines: line {line_number} is a JSON {json_type(record)}, "
                "but every line must be an object"
            )
        profile.add(record)
    return profile.to_dict()


def summarize_json(label: str, data: bytes) -> dict[str, Any]:
    """Profile one JSON document: an array of objects gives one record per item, anything else one record."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise JobError(f"{label} is not valid UTF-8 at byte {error.start + 1}") from None

    try:
        document = parse_json(text)
    except json.JSONDecodeError as error:
        raise JobError(f"{label} is not valid JSON: line {error.lineno}, column {error.colno}: {error.msg}") from None
    except ValueError as error:
        raise JobError(f"{label} is not valid JSON: {error}") from None

    if isinstance(document, list) and all(isinstance(item, dict) for item in document):
        summary = profile_records(document)
    elif isinstance(document, dict):
        summary = profile_records([document])
    else:
        # A scalar or an array of other values has no fields to profile.
        summary = profile_records([])
        summary["records"] = 1
    summary["document"] = json_type(document)
    return summary


def summarize_text(stream: BinaryIO) -> dict[str, Any]:
    """Count the lines and bytes of any file. A last line without a newline still counts."""
    lines = 0
    size = 0
    last_byte = b"\n"
    while chunk := stream.read(_TEXT_CHUNK_BYTES):
        lines += chunk.count(b"\n")
        size += len(chunk)
        last_byte = chunk[-1:]
    if last_byte != b"\n":
        lines += 1
    return {"lines": lines, "bytes": size}


def parse_json(text: str) -> Any:
    """Parse strict JSON, raising ValueError on NaN, Infinity and numbers beyond the float range."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nesting is too deep to parse") from None


def summarize_file(entry: ManifestFile, stream: BinaryIO) -> dict[str, Any]:
    """Build the report entry of one manifest file from its verified artifact."""
    summary: dict[str, Any] = {
        "path": entry.path,
        "artifact": entry.artifact,
        "transform": entry.transform,
        "format": entry.format,
        "bytes": entry.size,
        "sha256": entry.sha256,
        "parsed_as": None,
        "records": None,
        "lines": None,
        "document": None,
        "fields": [],
        "fields_capped": False,
    }
    artifact_label = f"{entry.path} (artifact {entry.artifact} from transform {entry.transform})"
    artifact_advice = f"the transform {entry.transform} wrote an invalid artifact, so check it and rerun the push"

    # NOTE: json artifacts and raw .json files are parsed whole in memory, so the job
    # needs more memory than the largest of them. JSON Lines are read one line at a time.
    try:
        if entry.format == "jsonl":
            profile = {"parsed_as": "jsonl", **summarize_jsonl(artifact_label, stream)}
        elif entry.format == "json":
            profile = {"parsed_as": "json", **summarize_json(artifact_label, stream.read())}
        elif entry.path.lower().endswith(".json"):
            profile = {"parsed_as": "json", **summarize_json(entry.path, stream.read())}
        elif entry.path.lower().endswith((".jsonl", ".ndjson")):
            profile = {"parsed_as": "jsonl", **summarize_jsonl(entry.path, stream)}
        else:
            text = summarize_text(stream)
            profile = {"parsed_as": "text", "lines": text["lines"]}
    except JobError as error:
        if entry.format == "raw":
            # A raw artifact is the repository's file byte for byte, so line and column point into that file.
            raise JobError(f"{error}; fix {entry.path} in the repository and push again") from None
        raise JobError(f"{error}; {artifact_advice}") from None

    summary.update(profile)
    return summary


def build_report(manifest: Manifest, files: list[dict[str, Any]], generated_at: datetime) -> dict[str, Any]:
    """Assemble result.json from the manifest and the per-file summaries."""
    return {
        "run_id": manifest.run_id,
        "repository": manifest.repository,
        "ref": manifest.ref,
        "commit": manifest.commit,
        "created_at": manifest.created_at,
        "generated_at": generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": files,
        "totals": {
            "files": len(files),
            "records": sum(file["records"] or 0 for file in files),
            "bytes": sum(file["bytes"] for file in files),
        },
    }


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is beyond the range of a 64-bit float")
    return number
