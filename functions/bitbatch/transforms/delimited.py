"""csv-jsonl: convert CSV or TSV with a header row to JSON Lines."""

from __future__ import annotations

import csv
import io
import json
import re

from .base import RepositoryFiles, SourceFile, TransformError, TransformResult, register
from .text import decode_as, decode_detected

# Only numbers in their plain written form are converted, so codes such as
# "007", "1_000" or "+5" keep their exact text.
INTEGER_PATTERN = re.compile(r"-?(0|[1-9][0-9]*)")
DECIMAL_PATTERN = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def infer_value(text: str):
    """Return text as a bool, int or float when it reads as one, else the text unchanged."""
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


@register
class DelimitedToJsonl:
    name = "csv-jsonl"
    accepts = ("*.csv", "*.tsv", "*.txt")
    produces = "jsonl"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "delimiter": {
                # The default, a tab for .tsv files and "," for others, depends on the path.
                "description": "one character between values, other than a quote or line break",
                "type": "string",
                "pattern": '^[^"\\r\\n]$',
            },
            "encoding": {
                "description": '"auto" (UTF-8, else detected) or a Python codec name such as utf-8, cp1252 or latin-1',
                "type": "string",
                "minLength": 1,
                "default": "auto",
            },
            "infer_types": {
                "description": "true (plain numbers, true and false become JSON numbers and booleans) "
                "or false (every value stays text)",
                "type": "boolean",
                "default": True,
            },
            "null_values": {
                "description": "a list of texts written as null",
                "type": "array",
                "items": {"type": "string"},
                "maxItems": 100,
                "default": [""],
            },
        },
    }

    def apply(self, source: SourceFile, options: dict, files: RepositoryFiles) -> TransformResult:
        """Write each row after the header as one JSON object keyed by the column names."""
        path = source.path
        is_tsv = path.lower().endswith(".tsv")
        delimiter = options.get("delimiter", "\t" if is_tsv else ",")
        encoding = options.get("encoding", "auto")
        infer_types = options.get("infer_types", True)
        null_values = frozenset(options.get("null_values", [""]))
        kind = "TSV" if delimiter == "\t" else "CSV"

        if encoding == "auto":
            text = decode_detected(path, source.data)
        else:
            text = decode_as(path, source.data, encoding)

        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        lines = []
        try:
            header = next(reader, None)
            if not header:
                raise TransformError(path, "has no header row; the first line must name the columns", 1)
            duplicates = sorted({name for name in header if header.count(name) > 1})
            if duplicates:
                raise TransformError(path, f"repeats column names {duplicates}; make each header name unique", 1)

            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise TransformError(
                        path, f"has {len(row)} values where the header has {len(header)} columns", reader.line_num
                    )
                record = {}
                for name, value in zip(header, row, strict=True):
                    if value in null_values:
                        record[name] = None
                    elif infer_types:
                        record[name] = infer_value(value)
                    else:
                        record[name] = value
                lines.append(json.dumps(record, ensure_ascii=False))
        except csv.Error as error:
            raise TransformError(path, f"invalid {kind}: {error}", reader.line_num) from error

        body = "\n".join(lines) + ("\n" if lines else "")
        return TransformResult(data=body.encode(), format="jsonl", suffix=".jsonl")
