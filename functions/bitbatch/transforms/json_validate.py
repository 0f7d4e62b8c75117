"""json-validate: check a JSON file against a JSON Schema file of the same commit."""

from __future__ import annotations

import json
from itertools import islice
from urllib.parse import quote, unquote, urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from .base import RepositoryFiles, SourceFile, TransformError, TransformResult, register
from .text import decode_utf8

MAX_REPORTED_ERRORS = 20

# A schema without its own $id gets this base URI, so a relative $ref such as
# "common.schema.json#/$defs/limit" resolves to a file beside it in the commit.
# The scheme is needed only for URI joining: nothing is read from the disk.
BASE_URI_PREFIX = "file:///"


def parse_json(path: str, data: bytes):
    """Parse a JSON document, rejecting duplicate keys, NaN and Infinity. Syntax errors name the line and column."""
    text = decode_utf8(path, data)
    try:
        return json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise TransformError(path, f"invalid JSON at column {error.colno}: {error.msg}", error.lineno) from error
    except ValueError as error:
        # Duplicate keys, NaN and Infinity, and integers over Python's 4,300-digit limit.
        raise TransformError(path, f"invalid JSON: {error}") from error
    except RecursionError as error:
        raise TransformError(path, "invalid JSON: nested too deeply to read") from error


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    document = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"key {key!r} appears twice in one object; JSON keys must be unique")
        document[key] = value
    return document


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number; write null or a string")


@register
class JsonValidate:
    name = "json-validate"
    accepts = ("*.json",)
    produces = "json"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["schema"],
        "properties": {
            "schema": {
                "description": "the repository path of the JSON Schema file, such as schemas/thresholds.schema.json",
                "type": "string",
                "minLength": 1,
            },
        },
    }

    def apply(self, source: SourceFile, options: dict, files: RepositoryFiles) -> TransformResult:
        """Validate the document and write it out again. The error lists each invalid value by its JSON path."""
        document = parse_json(source.path, source.data)
        validator = _schema_validator(source.path, options["schema"], files)

        try:
            errors = list(islice(validator.iter_errors(document), MAX_REPORTED_ERRORS + 1))
        except Unresolvable as error:
            raise _unresolvable_error(source.path, options["schema"], error) from error

        if errors:
            shown = sorted(errors[:MAX_REPORTED_ERRORS], key=_document_order)
            lines = [f"  {error.json_path}: {error.message}" for error in shown]
            if len(errors) > MAX_REPORTED_ERRORS:
                lines.append(f"  (only the first {MAX_REPORTED_ERRORS} errors are shown)")
            raise TransformError(source.path, f"does not match schema {options['schema']}:\n" + "\n".join(lines))

        encoded = json.dumps(document, ensure_ascii=False, indent=2).encode()
        return TransformResult(data=encoded + b"\n", format="json", suffix="")


def _schema_validator(path: str, schema_path: str, files: RepositoryFiles):
    """Read the schema file, check it, and return a validator that resolves relative $refs in the commit."""
    schema = _read_schema(path, schema_path, files)

    # The schema's $schema picks the draft; without one it is read as draft 2020-12.
    validator_class = validator_for(schema, default=Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except SchemaError as error:
        raise TransformError(path, f"schema {schema_path} is not a valid JSON Schema: {error.message} at {error.json_path}") from error

    if isinstance(schema, dict) and "$id" not in schema:
        schema = {**schema, "$id": BASE_URI_PREFIX + quote(schema_path)}

    def retrieve(uri: str) -> Resource:
        parts = urlsplit(uri)
        if parts.scheme not in ("", "file") or parts.netloc:
            raise _OutsideCommitError(uri)
        referenced_path = unquote(parts.path).lstrip("/")
        referenced = _read_schema(path, referenced_path, files, root_schema_path=schema_path)
        return Resource.from_contents(referenced, default_specification=DRAFT202012)

    return validator_class(schema, registry=Registry(retrieve=retrieve))


class _OutsideCommitError(LookupError):
    """A $ref names a URI that is not a file of the commit."""


def _unresolvable_error(path: str, schema_path: str, error: Unresolvable) -> TransformError:
    """Turn a failed $ref into an error that names the reference and how to fix it."""
    cause = error
    while cause is not None:
        if isinstance(cause, TransformError):
            return cause
        if isinstance(cause, _OutsideCommitError):
            return TransformError(
                path,
                f"a $ref in schema {schema_path} names {cause}, outside this commit; "
                "bitbatch reads only schema files of the same commit, named by a relative $ref",
            )
        cause = cause.__cause__ or cause.__context__
    return TransformError(path, f"a $ref in schema {schema_path} cannot be resolved: {getattr(error, 'ref', error)!r} not found")


def _read_schema(path: str, schema_path: str, files: RepositoryFiles, root_schema_path: str | None = None):
    """Read and parse a schema file. root_schema_path is set when a $ref, not option schema, names the file."""
    try:
        data = files.read(schema_path)
    except KeyError as error:
        if root_schema_path is not None:
            raise TransformError(
                path,
                f"schema file {schema_path} is not in this commit, but a $ref in {root_schema_path} or a file it "
                "refers to names it; a relative $ref is read from the folder of the schema file that contains it",
            ) from error
        raise TransformError(
            path,
            f"schema file {schema_path} is not in this commit; "
            "set option schema to its path from the repository root, such as schemas/thresholds.schema.json",
        ) from error
    try:
        return parse_json(schema_path, data)
    except TransformError as error:
        raise TransformError(path, f"schema file {error}") from error


def _document_order(error) -> list[tuple[int, int | str]]:
    # Indexes sort before keys so that "$[2]" and "$.name" never compare an int with a str.
    return [(0, part) if isinstance(part, int) else (1, part) for part in error.absolute_path]
