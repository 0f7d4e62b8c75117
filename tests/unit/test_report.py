"""Report logic on in-memory data: profiles, JSON errors, raw files and HTML escaping."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime

import pytest

from bitbatch_job import report as report_module
from bitbatch_job.errors import JobError
from bitbatch_job.html_report import render_html
from bitbatch_job.manifest import Manifest, ManifestFile, parse_manifest
from bitbatch_job.report import (
    build_report,
    json_type,
    profile_records,
    summarize_file,
    summarize_json,
    summarize_jsonl,
    summarize_text,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def manifest_file(path: str, data: bytes, file_format: str, artifact: str | None = None) -> ManifestFile:
    return ManifestFile(
        path=path,
        artifact=artifact or f"files/{path}",
        transform="copy" if file_format == "raw" else "csv-jsonl",
        format=file_format,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def fields_by_name(summary: dict) -> dict[str, dict]:
    return {field["name"]: field for field in summary["fields"]}


def jsonl(*records: object) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(record).encode() + b"\n" for record in records))


# Type inference


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "boolean"),
        (0, "integer"),
        (1.5, "number"),
        ("x", "string"),
        ({}, "object"),
        ([], "array"),
        (None, "null"),
    ],
)
def test_json_type_names(value, expected):
    # Given a parsed JSON value
    # When its type is named
    name = json_type(value)

    # Then the name is the JSON Schema name, with booleans apart from integers
    assert name == expected


def test_profile_mixed_types():
    # Given records whose "value" field is sometimes an integer, a float, a string or null
    records = [{"value": 1}, {"value": 2.5}, {"value": "n/a"}, {"value": None}, {"other": True}]

    # When they are profiled
    summary = profile_records(records)
    value = fields_by_name(summary)["value"]

    # Then every type seen is listed and nulls and absences are counted apart
    assert summary["records"] == 5
    assert value["types"] == ["integer", "number", "string"]
    assert value["count"] == 3
    assert value["nulls"] == 1
    assert value["missing"] == 1


def test_profile_boolean_not_numeric():
    # Given a field that contains only booleans
    summary = profile_records([{"flag": True}, {"flag": False}])

    # When its profile is read
    flag = fields_by_name(summary)["flag"]

    # Then it has no numeric statistics, although bool is an int in Python
    assert flag["types"] == ["boolean"]
    assert "min" not in flag
    assert "mean" not in flag


# Statistics


def test_numeric_stats():
    # Given integer and float values of one field
    summary = profile_records([{"t": 4}, {"t": -2}, {"t": 1.0}, {"t": None}])

    # When the field is profiled
    t = fields_by_name(summary)["t"]

    # Then min, max and mean cover the non-null numbers only
    assert t["min"] == -2
    assert t["max"] == 4
    assert t["mean"] == pytest.approx(1.0)


def test_mean_overflow_is_null():
    # Given two floats whose sum leaves the float range
    summary = profile_records([{"big": 1.5e308}, {"big": 1.5e308}])

    # When the field is profiled
    big = fields_by_name(summary)["big"]

    # Then the mean is null rather than Infinity, which JSON cannot hold
    assert big["max"] == 1.5e308
    assert big["mean"] is None


def test_distinct_strings():
    # Given a string field with repeats
    summary = profile_records([{"s": "a"}, {"s": "b"}, {"s": "a"}])

    # When it is profiled
    s = fields_by_name(summary)["s"]

    # Then distinct values are counted exactly
    assert s["distinct"] == 2
    assert s["distinct_capped"] is False


def test_distinct_strings_capped(monkeypatch):
    # Given a cap of 3 distinct strings and 5 different values
    monkeypatch.setattr(report_module, "DISTINCT_LIMIT", 3)
    records = [{"s": str(number)} for number in range(5)]

    # When the field is profiled
    s = fields_by_name(profile_records(records))["s"]

    # Then counting stops at the cap and the profile marks it
    assert s["distinct"] == 3
    assert s["distinct_capped"] is True


def test_field_names_capped(monkeypatch):
    # Given a cap of 2 field names and records with 3 names
    monkeypatch.setattr(report_module, "FIELD_LIMIT", 2)

    # When the records are profiled
    summary = profile_records([{"a": 1, "b": 2}, {"c": 3}])

    # Then only the first 2 names are profiled and the summary marks it
    assert [field["name"] for field in summary["fields"]] == ["a", "b"]
    assert summary["fields_capped"] is True


# JSON Lines


def test_jsonl_counts_objects():
    # Given JSON Lines with a blank line and a byte order mark
    stream = io.BytesIO(b'\xef\xbb\xbf{"a": 1}\n\n{"a": 2}\r\n{"b": "x"}')

    # When it is summarized
    summary = summarize_jsonl("stations.csv", stream)

    # Then each object line is one record and blank lines are skipped
    assert summary["records"] == 3
    assert fields_by_name(summary)["a"]["missing"] == 1


def test_jsonl_invalid_line():
    # Given JSON Lines whose second line is cut off
    stream = io.BytesIO(b'{"a": 1}\n{"a": \n')

    # When it is summarized
    with pytest.raises(JobError) as raised:
        summarize_jsonl("data/stations.csv", stream)

    # Then the error names the file and the line
    assert "data/stations.csv" in str(raised.value)
    assert "line 2" in str(raised.value)


def test_jsonl_rejects_non_object():
    # Given JSON Lines with an array on line 1
    stream = jsonl([1, 2])

    # When it is summarized
    with pytest.raises(JobError) as raised:
        summarize_jsonl("data/x.csv", stream)

    # Then the error names the line that is not an object
    assert "line 1 is a JSON array" in str(raised.value)


# JSON documents


def test_json_array_of_objects():
    # Given a top-level array of objects
    data = json.dumps([{"id": 1}, {"id": 2}, {"id": 3}]).encode()

    # When it is summarized
    summary = summarize_json("items.json", data)

    # Then each item is a record
    assert summary["records"] == 3
    assert summary["document"] == "array"
    assert fields_by_name(summary)["id"]["max"] == 3


def test_json_object_is_one_record():
    # Given a single JSON object
    summary = summarize_json("config.json", b'{"name": "x", "retries": 3}')

    # When it is read
    fields = fields_by_name(summary)

    # Then it is one record with its keys as fields
    assert summary["records"] == 1
    assert summary["document"] == "object"
    assert fields["retries"]["types"] == ["integer"]


def test_json_scalar_has_no_fields():
    # Given an array of numbers, which is not an array of objects
    summary = summarize_json("list.json", b"[1, 2, 3]")

    # When it is read
    records = summary["records"]

    # Then the document is one record without fields
    assert records == 1
    assert summary["fields"] == []


def test_json_invalid_names_line_column():
    # Given JSON with a missing comma on line 3
    data = b'{\n  "a": 1,\n  "b": 2\n  "c": 3\n}\n'

    # When it is summarized
    with pytest.raises(JobError) as raised:
        summarize_json("config/settings.json", data)

    # Then the error names the file, line and column
    message = str(raised.value)
    assert "config/settings.json" in message
    assert "line 4, column 3" in message


@pytest.mark.parametrize("document", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e400}'])
def test_json_rejects_non_finite(document):
    # Given JSON with a number that has no finite float value
    # When it is summarized
    with pytest.raises(JobError) as raised:
        summarize_json("numbers.json", document)

    # Then it is rejected as invalid JSON naming the file
    assert "numbers.json is not valid JSON" in str(raised.value)


def test_json_invalid_utf8():
    # Given a .json file in Latin-1
    # When it is summarized
    with pytest.raises(JobError) as raised:
        summarize_json("latin.json", '{"name": "Zürich"}'.encode("latin-1"))

    # Then the error names the file and the byte
    assert "latin.json is not valid UTF-8 at byte 12" in str(raised.value)


# Raw files


def test_text_counts_lines():
    # Given text whose last line has no newline
    # When it is counted
    summary = summarize_text(io.BytesIO(b"one\ntwo\nthree"))

    # Then the last line counts too
    assert summary == {"lines": 3, "bytes": 13}


def test_text_empty_file():
    # Given an empty file
    # When it is counted
    summary = summarize_text(io.BytesIO(b""))

    # Then it has no lines
    assert summary == {"lines": 0, "bytes": 0}


def test_raw_markdown_counts_lines():
    # Given a raw Markdown file
    data = b"# Title\n\nText\n"
    entry = manifest_file("README.md", data, "raw")

    # When it is summarized
    summary = summarize_file(entry, io.BytesIO(data))

    # Then only lines and bytes are reported
    assert summary["parsed_as"] == "text"
    assert summary["lines"] == 3
    assert summary["bytes"] == len(data)
    assert summary["records"] is None


def test_raw_json_parsed():
    # Given a raw .json file holding an array of objects
    data = b'[{"id": 1}, {"id": 2}]'
    entry = manifest_file("data/items.JSON", data, "raw")

    # When it is summarized
    summary = summarize_file(entry, io.BytesIO(data))

    # Then it is profiled like the json format
    assert summary["parsed_as"] == "json"
    assert summary["records"] == 2


def test_raw_json_invalid_fails():
    # Given a raw .json file with a trailing comma on line 2
    data = b'{"a": 1,\n}\n'
    entry = manifest_file("conf/app.json", data, "raw")

    # When it is summarized
    with pytest.raises(JobError) as raised:
        summarize_file(entry, io.BytesIO(data))

    # Then the error names the repository file, the position and the fix
    message = str(raised.value)
    assert "conf/app.json" in message
    assert "line 1, column 8" in message
    assert "fix conf/app.json in the repository" in message


def test_jsonl_artifact_invalid_names_transform():
    # Given a broken jsonl artifact
    data = b'{"a": 1}\nnot json\n'
    entry = manifest_file("data/stations.csv", data, "jsonl", "files/data/stations.csv.jsonl")

    # When it is summarized
    with pytest.raises(JobError) as raised:
        summarize_file(entry, io.BytesIO(data))

    # Then the error names the repository file, the artifact and the transform
    message = str(raised.value)
    assert "data/stations.csv" in message
    assert "files/data/stations.csv.jsonl" in message
    assert "transform csv-jsonl" in message


# Whole report and HTML


def sample_report(path: str = "data/stations.csv", repository: str = "team/weather") -> dict:
    data = b'{"name": "<b>Oslo</b>", "temp": 3.5}\n{"name": "Bergen & co", "temp": 7}\n'
    entry = manifest_file(path, data, "jsonl")
    manifest = Manifest(
        run_id="run-1",
        repository=repository,
        ref="refs/heads/main",
        commit=COMMIT,
        created_at="2026-12-04T19:48:32Z",
        files=(entry,),
    )
    files = [summarize_file(entry, io.BytesIO(data))]
    return build_report(manifest, files, datetime(2026, 12, 4, 20, 0, 0, tzinfo=UTC))


def test_report_totals():
    # Given one jsonl file with two records
    # When the report is built
    report = sample_report()

    # Then the totals and run details are filled in
    assert report["totals"]["files"] == 1
    assert report["totals"]["records"] == 2
    assert report["totals"]["bytes"] == report["files"][0]["bytes"]
    assert report["generated_at"] == "2026-12-04T20:00:00Z"
    assert report["commit"] == COMMIT


def test_report_is_strict_json():
    # Given a built report
    report = sample_report()

    # When it is serialized without NaN support
    text = json.dumps(report, allow_nan=False)

    # Then it round-trips
    assert json.loads(text) == report


def test_html_escapes_values():
    # Given values with markup in a path, a repository name and a field value
    report = sample_report(path='<script>alert("x")</script>.csv', repository="team/<i>weather</i>")
    report["files"][0]["fields"][0]["name"] = "<img src=x>"

    # When the page is rendered
    page = render_html(report)

    # Then no value reaches the page as markup
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.csv" in page
    assert "<i>weather</i>" not in page
    assert "&lt;img src=x&gt;" in page


def test_html_has_file_table():
    # Given a report with one profiled file
    report = sample_report()

    # When the page is rendered
    page = render_html(report)

    # Then it is a standalone page with a table row per field
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert page.count("<table>") == 1
    assert "<td><code>temp</code></td>" in page


def test_html_marks_distinct_cap():
    # Given a field whose distinct count hit the cap
    report = sample_report()
    report["files"][0]["fields"][0]["distinct"] = 1000
    report["files"][0]["fields"][0]["distinct_capped"] = True

    # When the page is rendered
    page = render_html(report)

    # Then the cell shows the count as a lower bound
    assert "more than 1000" in page


# Manifest


def test_manifest_rejects_other_run():
    # Given a manifest written for another run
    data = json.dumps({"run_id": "other", "repository": "a/b", "ref": "refs/heads/main", "commit": COMMIT,
                       "created_at": "2026-12-04T19:48:32Z", "files": []}).encode()

    # When it is parsed for run-1
    with pytest.raises(JobError) as raised:
        parse_manifest(data, "runs/run-1/input/manifest.json", "run-1")

    # Then both run ids are named
    assert "'other'" in str(raised.value)
    assert "'run-1'" in str(raised.value)


def test_manifest_rejects_parent_path():
    # Given a manifest whose artifact climbs out of the input prefix
    entry = {"path": "a.txt", "artifact": "../../secret.txt", "transform": "copy", "format": "raw",
             "size": 1, "sha256": "0" * 64}
    data = json.dumps({"run_id": "run-1", "repository": "a/b", "ref": "refs/heads/main", "commit": COMMIT,
                       "created_at": "2026-12-04T19:48:32Z", "files": [entry]}).encode()

    # When it is parsed
    with pytest.raises(JobError) as raised:
        parse_manifest(data, "runs/run-1/input/manifest.json", "run-1")

    # Then the artifact is rejected by name
    assert "'../../secret.txt'" in str(raised.value)



def test_raw_jsonl_profiled_by_record():
    # Given a JSON Lines file copied from the repository byte for byte
    data = b'{"station": "ST01", "value": 4}\n{"station": "ST02", "value": 6}\n'
    entry = manifest_file("events/readings.jsonl", data, "raw")

    # When it is summarized
    summary = summarize_file(entry, io.BytesIO(data))

    # Then each line is a record with its fields profiled
    assert summary["parsed_as"] == "jsonl"
    assert summary["records"] == 2
    assert {field["name"] for field in summary["fields"]} == {"station", "value"}


def test_raw_jsonl_bad_line_names_file():
    data = b'{"station": "ST01"}\nnot json\n'
    entry = manifest_file("events/readings.jsonl", data, "raw")

    with pytest.raises(JobError, match=r"events/readings.jsonl.*line 2"):
        summarize_file(entry, io.BytesIO(data))
