"""Built-in transforms: CSV and TSV to JSON Lines, YAML to JSON, copy, and rule selection."""

from __future__ import annotations

import json

import pytest

from bitbatch.transforms import (
    DEFAULT_RULES,
    TRANSFORMS,
    Rule,
    TransformError,
    copy_file,
    delimited_to_jsonl,
    select_transform,
    yaml_to_json,
)


def records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


# CSV and TSV


def test_csv_becomes_typed_json_lines():
    # Given a CSV file with text, whole numbers, decimals, booleans and an empty value
    data = (
        b"id,name,latitude,elevation_m,active,note\n"
        b"HGL001,Aviemore,57.1953,228,true,\n"
        b"HGL002,Cairn Gorm Summit,57.1163,1245,FALSE,rime ice\n"
    )

    # When it is transformed
    result = delimited_to_jsonl("data/stations.csv", data)

    # Then each row is one JSON object keyed by the header
    assert result.format == "jsonl"
    assert result.suffix == ".jsonl"
    assert result.data.endswith(b"\n")
    assert records(result.data) == [
        {"id": "HGL001", "name": "Aviemore", "latitude": 57.1953, "elevation_m": 228, "active": True, "note": None},
        {
            "id": "HGL002",
            "name": "Cairn Gorm Summit",
            "latitude": 57.1163,
            "elevation_m": 1245,
            "active": False,
            "note": "rime ice",
        },
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("0", 0),
        ("-12", -12),
        ("3.5", 3.5),
        ("-0.25", -0.25),
        ("1e3", 1000.0),
        ("true", True),
        ("False", False),
        ("yes", "yes"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("-Infinity", "-Infinity"),
        ("0x1A", "0x1A"),
        ("57.1953N", "57.1953N"),
        ("Glencoe Village", "Glencoe Village"),
    ],
)
def test_csv_value_types(text, expected):
    # Given a CSV row with the value beside an id
    data = f"id,value\n1,{text}\n".encode()

    # When it is transformed
    value = records(delimited_to_jsonl("values.csv", data).data)[0]["value"]

    # Then the value has the expected JSON type, and NaN and infinity stay text
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("text", ["007", "1_000"], ids=["leading-zeros", "digit-separator"])
def test_csv_number_lookalikes_stay_text(text):
    # Given a value that reads as a number only in a form that would change it
    data = f"code\n{text}\n".encode()

    # When it is transformed
    value = records(delimited_to_jsonl("codes.csv", data).data)[0]["code"]

    # Then it is kept as written
    assert value == text


def test_tsv_split_on_tabs():
    # Given a tab-separated file whose values contain commas
    data = b"station_id\ttime\tnote\nHGL001\t2024-03-04T00:00:00Z\tcalm, clear\n"

    # When it is transformed
    result = delimited_to_jsonl("data/readings.tsv", data)

    # Then tabs separate the columns and commas stay in the values
    assert records(result.data) == [{"station_id": "HGL001", "time": "2024-03-04T00:00:00Z", "note": "calm, clear"}]


def test_tsv_extension_case_insensitive():
    # Given a TSV file with an upper-case extension
    data = b"a\tb\n1\t2\n"

    # When it is transformed
    result = delimited_to_jsonl("DATA.TSV", data)

    # Then it is still split on tabs
    assert records(result.data) == [{"a": 1, "b": 2}]


def test_tsv_missing_values_become_null():
    # Given TSV readings where a sensor sent nothing for two columns
    data = b"station_id\ttemperature_c\thumidity_pct\nHGL002\t\t\nHGL004\t2.5\t78\n"

    # When it is transformed
    result = delimited_to_jsonl("data/readings.tsv", data)

    # Then the gaps are null
    assert records(result.data) == [
        {"station_id": "HGL002", "temperature_c": None, "humidity_pct": None},
        {"station_id": "HGL004", "temperature_c": 2.5, "humidity_pct": 78},
    ]


def test_csv_quoted_values():
    # Given quoted values with commas, quotes and a line break inside
    data = b'id,note\n1,"Loch Ness, north shore"\n2,"said ""calm"""\n3,"two\nlines"\n'

    # When it is transformed
    result = delimited_to_jsonl("notes.csv", data)

    # Then the quotes are removed and the content is kept
    assert [record["note"] for record in records(result.data)] == [
        "Loch Ness, north shore",
        'said "calm"',
        "two\nlines",
    ]


def test_csv_byte_order_mark_removed():
    # Given a CSV file saved with a UTF-8 byte order mark
    data = b"\xef\xbb\xbfid,value\n1,2\n"

    # When it is transformed
    result = delimited_to_jsonl("bom.csv", data)

    # Then the first column name has no mark
    assert records(result.data) == [{"id": 1, "value": 2}]


def test_csv_non_ascii_kept():
    # Given names with letters outside ASCII
    data = "id,name\n1,Loch Glascarnoch – Dùn\n".encode()

    # When it is transformed
    result = delimited_to_jsonl("names.csv", data)

    # Then they are written as UTF-8, not escaped
    assert "Dùn".encode() in result.data
    assert records(result.data) == [{"id": 1, "name": "Loch Glascarnoch – Dùn"}]


def test_csv_windows_line_endings():
    # Given a CSV file with CRLF line endings
    data = b"id,name\r\n1,Ullapool\r\n"

    # When it is transformed
    result = delimited_to_jsonl("crlf.csv", data)

    # Then no carriage return is left in the values
    assert records(result.data) == [{"id": 1, "name": "Ullapool"}]


def test_csv_blank_lines_skipped():
    # Given blank lines between and after the rows
    data = b"id\n1\n\n2\n\n"

    # When it is transformed
    result = delimited_to_jsonl("gaps.csv", data)

    # Then only the rows are written
    assert records(result.data) == [{"id": 1}, {"id": 2}]


def test_csv_header_only():
    # Given a CSV file with a header and no rows
    data = b"id,name\n"

    # When it is transformed
    result = delimited_to_jsonl("empty.csv", data)

    # Then the artifact is empty
    assert result.data == b""
    assert result.format == "jsonl"


@pytest.mark.parametrize("data", [b"", b"\n\n"], ids=["empty", "blank-lines"])
def test_csv_without_header_rejected(data):
    # Given a CSV file with no header row
    # When it is transformed
    with pytest.raises(TransformError) as raised:
        delimited_to_jsonl("data/empty.csv", data)

    # Then the error names the file and line 1
    assert str(raised.value).startswith("data/empty.csv, line 1:")
    assert raised.value.line == 1


def test_csv_duplicate_column_rejected():
    # Given a header that names one column twice
    data = b"id,value,value\n1,2,3\n"

    # When it is transformed
    with pytest.raises(TransformError) as raised:
        delimited_to_jsonl("twice.csv", data)

    # Then the error names the file, the line and the column
    assert str(raised.value).startswith("twice.csv, line 1:")
    assert "'value'" in str(raised.value)


@pytest.mark.parametrize(
    ("data", "line", "counts"),
    [
        (b"id,name\n1,Braemar\n2\n", 3, "has 1 values where the header has 2"),
        (b"id,name\n1,Braemar\n2,Ullapool,extra\n", 3, "has 3 values where the header has 2"),
        (b'id,name\n1,"two\nlines"\n2,x,y\n', 4, "has 3 values where the header has 2"),
    ],
    ids=["short", "long", "after-multi-line-value"],
)
def test_ragged_row_names_line(data, line, counts):
    # Given a row with more or fewer values than the header has columns
    # When it is transformed
    with pytest.raises(TransformError) as raised:
        delimited_to_jsonl("data/stations.csv", data)

    # Then the error names the file, the line in the file and both counts
    assert str(raised.value).startswith(f"data/stations.csv, line {line}:")
    assert counts in str(raised.value)
    assert raised.value.path == "data/stations.csv"
    assert raised.value.line == line


@pytest.mark.parametrize(
    "data",
    [b'id,name\n1,"Braemar"x\n', b'id,name\n1,"never closed\n'],
    ids=["text-after-quote", "unclosed-quote"],
)
def test_csv_bad_quoting_names_line(data):
    # Given a CSV value with broken quoting
    # When it is transformed
    with pytest.raises(TransformError) as raised:
        delimited_to_jsonl("quotes.csv", data)

    # Then the error names the file, the line and calls the CSV invalid
    assert str(raised.value).startswith("quotes.csv, line 2:")
    assert "invalid CSV" in str(raised.value)


def test_tsv_error_names_tsv():
    # Given a TSV file with broken quoting
    data = b'id\tname\n1\t"Braemar"x\n'

    # When it is transformed
    # Then the error calls it TSV
    with pytest.raises(TransformError, match="invalid TSV"):
        delimited_to_jsonl("readings.tsv", data)


def test_csv_invalid_utf8_names_line():
    # Given a CSV file with a Latin-1 byte on its third line
    data = b"id,name\n1,Braemar\n2,Dalwhinnie \xe9t\xe9\n"

    # When it is transformed
    with pytest.raises(TransformError) as raised:
        delimited_to_jsonl("data/latin1.csv", data)

    # Then the error names the file and line 3 and asks for UTF-8
    assert str(raised.value).startswith("data/latin1.csv, line 3:")
    assert "UTF-8" in str(raised.value)
    assert raised.value.line == 3


# YAML


def test_yaml_becomes_json():
    # Given a YAML mapping with nested lists, numbers, booleans and null
    data = b"pipeline:\n  name: highland-station-qc\n  enabled: true\nchecks:\n  - name: range\n    max: 30.5\n  - name: gaps\n    limit: ~\n"

    # When it is transformed
    result = yaml_to_json("config/pipeline.yaml", data)

    # Then the JSON has the same structure and types
    assert result.format == "json"
    assert result.suffix == ".json"
    assert json.loads(result.data) == {
        "pipeline": {"name": "highland-station-qc", "enabled": True},
        "checks": [{"name": "range", "max": 30.5}, {"name": "gaps", "limit": None}],
    }


def test_yaml_multi_document_becomes_array():
    # Given a YAML file with three documents
    data = b"---\nstation: HGL001\n---\nstation: HGL002\n---\n- 1\n- 2\n"

    # When it is transformed
    result = yaml_to_json("stations.yml", data)

    # Then the JSON is an array with one element per document
    assert json.loads(result.data) == [{"station": "HGL001"}, {"station": "HGL002"}, [1, 2]]


def test_yaml_single_document_not_wrapped():
    # Given a YAML file with one document that starts with ---
    data = b"---\nstation: HGL001\n"

    # When it is transformed
    result = yaml_to_json("station.yaml", data)

    # Then the JSON is that document, not an array
    assert json.loads(result.data) == {"station": "HGL001"}


def test_yaml_dates_written_as_text():
    # Given a YAML value that PyYAML reads as a date
    data = b"day: 2024-03-05\n"

    # When it is transformed
    result = yaml_to_json("dates.yaml", data)

    # Then it is written as a string
    assert json.loads(result.data) == {"day": "2024-03-05"}


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"name: qc\nchecks: [range, gaps\nnotify: true\n", 3),
        (b"checks:\n  - range\n - gaps\n", 3),
        (b"name: qc\n\tschedule: hourly\n", 2),
    ],
    ids=["unclosed-list", "bad-indent", "tab"],
)
def test_invalid_yaml_names_line(data, line):
    # Given YAML that does not parse
    # When it is transformed
    with pytest.raises(TransformError) as raised:
        yaml_to_json("config/pipeline.yaml", data)

    # Then the error names the file and the line where the parser stopped
    assert str(raised.value).startswith(f"config/pipeline.yaml, line {line}: invalid YAML")
    assert raised.value.line == line


def test_yaml_python_tags_rejected():
    # Given YAML with a tag that would run code under yaml.load
    data = b"ok: 1\nrun: !!python/object/apply:os.system ['true']\n"

    # When it is transformed
    with pytest.raises(TransformError) as raised:
        yaml_to_json("evil.yaml", data)

    # Then it is rejected as invalid YAML at the tag's line
    assert str(raised.value).startswith("evil.yaml, line 2: invalid YAML")


def test_yaml_invalid_utf8_names_line():
    # Given YAML with a Latin-1 byte on its second line
    data = b"name: qc\nowner: J\xe9r\xf4me\n"

    # When it is transformed
    with pytest.raises(TransformError) as raised:
        yaml_to_json("config/owner.yaml", data)

    # Then the error names the file and line 2
    assert str(raised.value).startswith("config/owner.yaml, line 2:")


# Copy


def test_copy_keeps_bytes():
    # Given bytes that are not text
    data = bytes(range(256))

    # When they are copied
    result = copy_file("data/blob.json", data)

    # Then the artifact is the same bytes, raw, under the same name
    assert result.data == data
    assert result.format == "raw"
    assert result.suffix == ""


# Rule selection


@pytest.mark.parametrize(
    ("path", "transform"),
    [
        ("stations.csv", "csv-jsonl"),
        ("data/stations.csv", "csv-jsonl"),
        ("DATA/STATIONS.CSV", "csv-jsonl"),
        ("data/readings.tsv", "csv-jsonl"),
        ("config/pipeline.yaml", "yaml-json"),
        ("config/pipeline.yml", "yaml-json"),
        ("data/thresholds.json", "copy"),
        ("data/events.jsonl", "copy"),
        ("notes/field log.txt", "copy"),
        ("README.md", "copy"),
        ("docs/deep/nested/guide.md", "copy"),
    ],
)
def test_default_rules_select_transform(path, transform):
    # Given a path that a default rule matches
    # When a transform is selected
    # Then it is the rule's transform
    assert select_transform(path) == transform


@pytest.mark.parametrize(
    "path",
    [
        "Makefile",
        "image.png",
        "data/stations.csv.gz",
        "data/csv",
        "archive.tar",
        ".gitattributes",
        "data/stations.csv/",
    ],
)
def test_default_rules_skip_other_files(path):
    # Given a path that no default rule matches
    # When a transform is selected
    # Then there is none, so the file is not sent
    assert select_transform(path) is None


def test_first_matching_rule_wins():
    # Given rules where a specific one comes before a general one
    rules = (Rule("raw/*.csv", "copy"), Rule("*.csv", "csv-jsonl"))

    # When transforms are selected
    # Then the first match decides
    assert select_transform("raw/stations.csv", rules) == "copy"
    assert select_transform("data/stations.csv", rules) == "csv-jsonl"


def test_default_rules_name_known_transforms():
    # Given the default rules
    # When their transforms are looked up
    unknown = [rule.transform for rule in DEFAULT_RULES if rule.transform not in TRANSFORMS]

    # Then every one exists
    assert unknown == []
