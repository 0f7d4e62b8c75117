"""report.html: the run's report as one self-contained page (inline CSS, no scripts)."""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1f2328; }
h1 { font-size: 1.5rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; word-break: break-all; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.25rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; margin-top: 0.5rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.note { color: #59636e; }
"""

_FIELD_COLUMNS = ("Field", "Types", "Values", "Nulls", "Missing", "Min", "Max", "Mean", "Distinct strings")


def render_html(report: dict[str, Any]) -> str:
    """Render result.json as HTML, escaping every value taken from the report."""
    totals = report["totals"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>bitbatch report: {_escaped(report['repository'])} {_escaped(report['commit'][:12])}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>Report for {_escaped(report['repository'])}</h1>",
        "<dl>",
        _term("Run", report["run_id"]),
        _term("Ref", report["ref"]),
        _term("Commit", report["commit"]),
        _term("Input created", report["created_at"]),
        _term("Report generated", report["generated_at"]),
        _term("Files", totals["files"]),
        _term("Records", totals["records"]),
        _term("Bytes", totals["bytes"]),
        "</dl>",
    ]

    if not report["files"]:
        parts.append('<p class="note">The manifest lists no files.</p>')
    for file in report["files"]:
        parts.extend(_file_section(file))

    parts.extend(["</body>", "</html>", ""])
    return "\n".join(parts)


def _file_section(file: dict[str, Any]) -> list[str]:
    parts = [
        f"<h2><code>{_escaped(file['path'])}</code></h2>",
        "<dl>",
        _term("Format", file["format"]),
        _term("Transform", file["transform"]),
        _term("Artifact", file["artifact"]),
        _term("Bytes", file["bytes"]),
        _term("SHA-256", file["sha256"]),
    ]
    if file["parsed_as"] == "text":
        parts.append(_term("Lines", file["lines"]))
    else:
        parts.append(_term("Records", file["records"]))
    if file["document"] is not None:
        parts.append(_term("JSON document", file["document"]))
    parts.append("</dl>")

    if file["parsed_as"] == "text":
        parts.append('<p class="note">Not JSON, so only lines and bytes are counted.</p>')
        return parts
    if not file["fields"]:
        parts.append('<p class="note">No fields to show, because no record is a JSON object with keys.</p>')
        return parts

    parts.append("<table>")
    parts.append("<thead><tr>" + "".join(f"<th>{_escaped(column)}</th>" for column in _FIELD_COLUMNS) + "</tr></thead>")
    parts.append("<tbody>")
    for field in file["fields"]:
        parts.append(_field_row(field))
    parts.append("</tbody>")
    parts.append("</table>")
    if file["fields_capped"]:
        parts.append(f'<p class="note">Only the first {len(file["fields"])} field names are profiled.</p>')
    return parts


def _field_row(field: dict[str, Any]) -> str:
    distinct = field.get("distinct")
    if distinct is not None and field.get("distinct_capped"):
        distinct = f"more than {distinct}"

    cells = [
        f"<td><code>{_escaped(field['name'])}</code></td>",
        f"<td>{_escaped(', '.join(field['types']))}</td>",
        _number_cell(field["count"]),
        _number_cell(field["nulls"]),
        _number_cell(field["missing"]),
        _number_cell(field.get("min")),
        _number_cell(field.get("max")),
        _number_cell(field.get("mean")),
        _number_cell(distinct),
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _term(name: str, value: Any) -> str:
    return f"<dt>{_escaped(name)}</dt><dd>{_escaped(value)}</dd>"


def _number_cell(value: Any) -> str:
    if value is None:
        return '<td class="number"></td>'
    if isinstance(value, float):
        value = format(value, ".10g")
    return f'<td class="number">{_escaped(value)}</td>'


def _escaped(value: Any) -> str:
    return escape(str(value), quote=True)
