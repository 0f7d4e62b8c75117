"""copy: send the file unchanged."""

from __future__ import annotations

from .base import RepositoryFiles, SourceFile, TransformResult, register


@register
class CopyFile:
    name = "copy"
    accepts = ("*",)
    produces = "raw"
    options_schema = {"type": "object", "properties": {}, "additionalProperties": False}

    def apply(self, source: SourceFile, options: dict, files: RepositoryFiles) -> TransformResult:
        return TransformResult(data=source.data, format="raw", suffix="")
