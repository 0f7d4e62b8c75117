"""yaml-json: convert YAML to JSON."""

from __future__ import annotations

import json

import yaml

from .base import RepositoryFiles, SourceFile, TransformError, TransformResult, register
from .text import decode_utf8


def json_default(value):
    """Write YAML dates and timestamps in ISO 8601, and anything else JSON lacks as text."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


@register
class YamlToJson:
    name = "yaml-json"
    accepts = ("*.yaml", "*.yml")
    produces = "json"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "multi_document": {
                "description": '"array" (a file with several documents becomes an array of them) or "first" (the first document alone)',
                "enum": ["array", "first"],
                "default": "array",
            },
        },
    }

    def apply(self, source: SourceFile, options: dict, files: RepositoryFiles) -> TransformResult:
        """Convert the file. One document stays itself, and several become an array unless multi_document is "first"."""
        text = decode_utf8(source.path, source.data)

        # safe_load_all builds only plain data, so tags such as !!python/object are rejected.
        # NOTE: aliases are expanded without a size limit, so a small file whose
        # anchors refer to each other many levels deep can exhaust memory.
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(error, "problem", None) or str(error)
            raise TransformError(source.path, f"invalid YAML: {problem}", line) from error
        except RecursionError as error:
            raise TransformError(source.path, "invalid YAML: nested too deeply to convert") from error

        if options.get("multi_document", "array") == "first":
            document = documents[0] if documents else None
        else:
            document = documents[0] if len(documents) == 1 else documents

        try:
            encoded = json.dumps(document, ensure_ascii=False, indent=2, default=json_default).encode()
        except (TypeError, ValueError, RecursionError) as error:
            raise TransformError(source.path, f"YAML value cannot be written as JSON: {error}") from error
        return TransformResult(data=encoded + b"\n", format="json", suffix=".json")
