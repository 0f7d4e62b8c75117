"""Built-in transforms, path globs and rule selection."""

from __future__ import annotations

import json
import re

import pytest

from bitbatch.transforms import (
    DEFAULT_RULES,
    Rule,
    SourceFile,
    TransformError,
    apply_transform,
    check_glob,
    path_matches,
    select_rule,
    transform_names,
)


class CommitFiles:
    """Files of one commit, by path, as a transform reads them."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self._files = files or {}

    def read(self, path: str) -> bytes:
        if path not in self._files:
            raise KeyError(path)
        return self._files[path]


def transform(name: str, path: str, data: bytes, options: dict | None = None, files: dict[str, bytes] | None = None):
    return apply_transform(name, SourceFile(path, data), options or {}, CommitFiles(files))


def delimited_to_jsonl(path: str, data: bytes, **options):
    return transform("csv-jsonl", path, data, options)


def yaml_to_json(path: str, data: bytes, **options):
    return transform("yaml-json", path, data, options)


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
        ("1e999", "1e999"),
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


@pytest.mark.parametrize("text", ["007", "1_000", "+5"], ids=["leading-zeros", "digit-separator", "plus-sign"])
def test_csv_number_lookalikes_stay_text(text):
    # Given a value that reads as a number only in a form that would change it
    data = f"code\n{text}\n".encode()

    # When it is transformed
    value = records(delimited_to_jsonl("codes.csv", data).data)[0]["code"]

    # Then it is kept as written
    assert value == text


def test_csv_infer_types_off_keeps_text():
    # Given numbers, booleans and an empty value
    data = b"id,count,active,note\n007,12,true,\n"

    # When it is transformed with infer_types false
    result = delimited_to_jsonl("codes.csv", data, infer_types=False)

    # Then every value stays text, and the empty value is still null
    assert records(result.data) == [{"id": "007", "count": "12", "active": "true", "note": None}]


def test_csv_null_values_option():
    # Given a file that writes missing values as NA and -
    data = b"station,temperature_c,note\nHGL001,NA,-\nHGL002,2.5,\n"

    # When it is transformed with those texts as null values
    result = delimited_to_jsonl("readings.csv", data, null_values=["NA", "-"])

    # Then they become null, and an empty value, no longer listed, stays an empty string
    assert records(result.data) == [
        {"station": "HGL001", "temperature_c": None, "note": None},
        {"station": "HGL002", "temperature_c": 2.5, "note": ""},
    ]


def test_csv_null_values_before_inference():
    # Given a value that would read as a number
    data = b"id,reading\n1,-9999\n2,4\n"

    # When -9999 is listed as a null value
    result = delimited_to_jsonl("readings.csv", data, null_values=["-9999"])

    # Then it is null rather than a number
    assert [record["reading"] for record in records(result.data)] == [None, 4]


def test_csv_delimiter_option():
    # Given a semicolon-separated file with decimal commas, as spreadsheets in many locales write
    data = b"station;note\nHGL001;calm, clear\n"

    # When it is transformed with delimiter ";"
    result = delimited_to_jsonl("exports/stations.csv", data, delimiter=";")

    # Then semicolons split the columns and commas stay in the values
    assert records(result.data) == [{"station": "HGL001", "note": "calm, clear"}]


def test_txt_defaults_to_comma():
    # Given a .txt file with comma-separated values
    data = b"a,b\n1,2\n"

    # When it is transformed
    result = delimited_to_jsonl("export.txt", data)

    # Then commas split the columns
    assert records(result.data) == [{"a": 1, "b": 2}]


def test_tsv_split_on_tabs():
    # Given a tab-separated file whose values contain commas
    data = b"station_id\ttime\tnote\nHGL001\t2024-03-04T00:00:00Z\tcalm, clear\n"

    # When it is transformed
    result = delimited_to_jsonl("data/readings.tsv", data)

    # Then tabs separate the columns and commas stay in the values
    assert records(result.data) == [{"station_id": "HGL001", "time": "2024-03-04T00:00:00Z", "note": "calm, clear"}]


def test_tsv_delimiter_overridden():
    # Given a .tsv file that in fact uses "|"
    data = b"a|b\n1|2\n"

    # When it is transformed with delimiter "|"
    result = delimited_to_jsonl("odd.tsv", data, delimiter="|")

    # Then the option wins over the extension
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


def test_csv_byte_order_mark_removed_explicit_utf8():
    # Given a CSV file saved with a UTF-8 byte order mark
    data = b"\xef\xbb\xbfid\n1\n"

    # When it is transformed with encoding utf-8
    result = delimited_to_jsonl("bom.csv", data, encoding="utf-8")

    # Then the first column name has no mark
    assert records(result.data) == [{"id": 1}]


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


# CSV encodings


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("name\ncafé\n", "cp1252"),
        ("name\ncafé\n", "latin-1"),
        ("id,name,note\n1,Café du Lac,crème brûlée\n2,Zürich,naïve façade – 5 €\n", "cp1252"),
        ("id,ort,notiz\n1,München,Straße gesperrt\n2,Köln,Überflutung\n3,Düsseldorf,größer\n", "cp1252"),
        ("nom,ville\nCafé de la Paix,Besançon\nCrêperie,Château-Thierry\n", "latin-1"),
        ("id,name\n1,Café\n2,Ångström\n3,Dalwhinnie été\n", "latin-1"),
        ("station,town\nHGL001,Aviemore\nHGL002,Montréal\n", "latin-1"),
    ],
    ids=["short-cp1252", "short-latin-1", "french-cp1252", "german-cp1252", "french-latin-1", "mixed-latin-1", "one-accent"],
)
def test_csv_legacy_encoding_detected(text, encoding):
    # Given a CSV file saved in a Western European legacy encoding, so not valid UTF-8
    data = text.encode(encoding)

    # When it is transformed with the default encoding "auto"
    result = delimited_to_jsonl("exports/legacy.csv", data)

    # Then every accented letter is read correctly and written as UTF-8
    assert result.data.decode("utf-8") == delimited_to_jsonl("exports/legacy.csv", text.encode()).data.decode("utf-8")


def test_csv_cafe_cp1252_values():
    # Given "café" saved as Windows-1252
    data = "id,name\n1,café\n".encode("cp1252")

    # When it is transformed
    result = delimited_to_jsonl("menu.csv", data)

    # Then the value is "café"
    assert records(result.data) == [{"id": 1, "name": "café"}]


def test_csv_cyrillic_detected():
    # Given a CSV file saved as Windows-1251
    text = "id,город\n1,Москва\n2,Новосибирск\n"

    # When it is transformed
    result = delimited_to_jsonl("cities.csv", text.encode("cp1251"))

    # Then the Cyrillic names are read correctly
    assert records(result.data) == [{"id": 1, "город": "Москва"}, {"id": 2, "город": "Новосибирск"}]


def test_csv_undetectable_encoding_rejected():
    # Given all 256 byte values, a newline among them, so the first non-UTF-8 byte 0x80 is on line 3
    data = b"id,blob\n1," + bytes(range(256)) + b"\n"

    # When it is transformed
    with pytest.raises(TransformError) as raised:
        delimited_to_jsonl("data/blob.csv", data)

    # Then the error names the file, the line of the first bad byte, and the fix
    assert str(raised.value).startswith("data/blob.csv, line 3:")
    assert "could not be detected" in str(raised.value)
    assert "option encoding" in str(raised.value)


def test_csv_explicit_encoding():
    # Given a CSV file saved as Latin-1
    data = "id,name\n1,Ångström\n".encode("latin-1")

    # When it is transformed with encoding latin-1
    result = delimited_to_jsonl("names.csv", data, encoding="latin-1")

    # Then the names are read in that encoding
    assert records(result.data) == [{"id": 1, "name": "Ångström"}]


def test_csv_explicit_utf8_names_line():
    # Given a CSV file with a Latin-1 byte on its third line
    data = b"id,name\n1,Braemar\n2,Dalwhinnie \xe9t\xe9\n"

    # When it is transformed with encoding utf-8
    with pytest.raises(TransformError) as raised:
        delimited_to_jsonl("data/latin1.csv", data, encoding="utf-8")

    # Then the error names the file, line 3 and the encoding
    assert str(raised.value).startswith("data/latin1.csv, line 3:")
    assert "not valid utf-8" in str(raised.value)
    assert raised.value.line == 3


@pytest.mark.parametrize(
    ("encoding", "message"),
    [("klingon", "unknown encoding 'klingon'"), ("base64", "'base64' is not a text encoding")],
)
def test_csv_bad_encoding_option(encoding, message):
    # Given an encoding option that names no text encoding
    # When a file is transformed with it
    with pytest.raises(TransformError) as raised:
        delimited_to_jsonl("a.csv", b"id\n1\n", encoding=encoding)

    # Then the error names the file and the option
    assert str(raised.value).startswith("a.csv: option encoding:")
    assert message in str(raised.value)


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


def test_yaml_multi_document_first():
    # Given a YAML file with three documents
    data = b"---\nstation: HGL001\n---\nstation: HGL002\n---\n- 1\n"

    # When it is transformed with multi_document "first"
    result = yaml_to_json("stations.yml", data, multi_document="first")

    # Then the JSON is the first document alone
    assert json.loads(result.data) == {"station": "HGL001"}


@pytest.mark.parametrize(("mode", "expected"), [("array", []), ("first", None)])
def test_yaml_empty_file(mode, expected):
    # Given a YAML file with no document
    # When it is transformed
    result = yaml_to_json("empty.yaml", b"", multi_document=mode)

    # Then the JSON is an empty array, or null for "first"
    assert json.loads(result.data) == expected


def test_yaml_single_document_not_wrapped():
    # Given a YAML file with one document that starts with ---
    data = b"---\nstation: HGL001\n"

    # When it is transformed
    result = yaml_to_json("station.yaml", data)

    # Then the JSON is that document, not an array
    assert json.loads(result.data) == {"station": "HGL001"}


def test_yaml_dates_written_as_text():
    # Given YAML values that PyYAML reads as a date and a timestamp
    data = b"day: 2024-03-05\nat: 2024-03-05 06:30:00\n"

    # When it is transformed
    result = yaml_to_json("dates.yaml", data)

    # Then they are written as ISO 8601 strings
    assert json.loads(result.data) == {"day": "2024-03-05", "at": "2024-03-05T06:30:00"}


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
    assert "UTF-8" in str(raised.value)


# JSON validation

THRESHOLDS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["stations"],
    "properties": {
        "stations": {"type": "array", "items": {"$ref": "#/$defs/station"}},
    },
    "$defs": {
        "station": {
            "type": "object",
            "required": ["id", "limit"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": "^HGL[0-9]{3}$"},
                "limit": {"type": "number", "minimum": 0},
                "unit": {"$ref": "units.schema.json#/$defs/unit"},
            },
        },
    },
}
UNITS_SCHEMA = {"$defs": {"unit": {"enum": ["mm", "cm"]}}}
SCHEMA_FILES = {
    "schemas/thresholds.schema.json": json.dumps(THRESHOLDS_SCHEMA).encode(),
    "schemas/units.schema.json": json.dumps(UNITS_SCHEMA).encode(),
}
SCHEMA_OPTIONS = {"schema": "schemas/thresholds.schema.json"}


def validate_json(data: bytes, options=SCHEMA_OPTIONS, files=SCHEMA_FILES):
    return transform("json-validate", "config/thresholds.json", data, options, files)


def test_json_valid_document_written_again():
    # Given a document that matches the schema, with a unit checked through a $ref to another file
    data = b'{"stations": [{"id": "HGL001", "limit": 25.5, "unit": "mm"}, {"id": "HGL002", "limit": 0}]}'

    # When it is validated
    result = validate_json(data)

    # Then the artifact is the same document as formatted JSON, under the same name
    assert result.format == "json"
    assert result.suffix == ""
    assert result.data.endswith(b"}\n")
    assert json.loads(result.data) == json.loads(data)


def test_json_non_ascii_kept():
    # Given a valid document with a name outside ASCII
    schema = {"schemas/any.json": b"{}"}
    data = '{"name": "Dùn"}'.encode()

    # When it is validated
    result = validate_json(data, {"schema": "schemas/any.json"}, schema)

    # Then the name is written as UTF-8, not escaped
    assert "Dùn".encode() in result.data


def test_json_errors_listed_by_path():
    # Given a document with four invalid values, one of them checked through a $ref to another file
    data = json.dumps(
        {
            "stations": [
                {"id": "HGL001", "limit": 10},
                {"id": 2, "limit": 3},
                {"id": "HGL003", "limit": -5, "unit": "km"},
                {"id": "HGL004"},
            ]
        }
    ).encode()

    # When it is validated
    with pytest.raises(TransformError) as raised:
        validate_json(data)

    # Then the error names the file and schema and lists each bad value by JSON path, in document order
    message = str(raised.value)
    assert message.startswith("config/thresholds.json: does not match schema schemas/thresholds.schema.json:\n")
    assert message.splitlines()[1:] == [
        "  $.stations[1].id: 2 is not of type 'string'",
        "  $.stations[2].limit: -5 is less than the minimum of 0",
        "  $.stations[2].unit: 'km' is not one of ['mm', 'cm']",
        "  $.stations[3]: 'limit' is a required property",
    ]


def test_json_errors_capped_at_twenty():
    # Given a document with 30 invalid values
    data = json.dumps({"stations": [{"id": "HGL001", "limit": -index - 1} for index in range(30)]}).encode()

    # When it is validated
    with pytest.raises(TransformError) as raised:
        validate_json(data)

    # Then 20 are listed, and the last line notes that more exist
    lines = str(raised.value).splitlines()
    assert len([line for line in lines if "less than the minimum" in line]) == 20
    assert lines[-1] == "  (only the first 20 errors are shown)"


@pytest.mark.parametrize(
    ("data", "line", "column"),
    [(b'{"stations": [\n  {"id": "HGL001",}\n]}', 2, 18), (b'{"stations": []\n', 2, 1)],
    ids=["trailing-comma", "unclosed"],
)
def test_invalid_json_names_line_and_column(data, line, column):
    # Given a file that is not valid JSON
    # When it is validated
    with pytest.raises(TransformError) as raised:
        validate_json(data)

    # Then the error names the file, line and column
    assert str(raised.value).startswith(f"config/thresholds.json, line {line}: invalid JSON at column {column}:")
    assert raised.value.line == line


@pytest.mark.parametrize(
    ("data", "problem"),
    [(b'{"stations": [], "stations": []}', "key 'stations' appears twice"), (b'{"limit": NaN}', "NaN is not a JSON number")],
    ids=["duplicate-key", "nan"],
)
def test_json_ambiguous_values_rejected(data, problem):
    # Given JSON that Python would read but that loses or bends data
    # When it is validated
    with pytest.raises(TransformError) as raised:
        validate_json(data)

    # Then it is rejected with the reason
    assert problem in str(raised.value)


def test_json_missing_schema_file_named():
    # Given an option naming a schema file that the commit does not have
    # When a document is validated
    with pytest.raises(TransformError) as raised:
        validate_json(b"{}", {"schema": "schemas/missing.schema.json"})

    # Then the error names the document and the missing schema file
    assert str(raised.value).startswith("config/thresholds.json: schema file schemas/missing.schema.json is not in this commit")


def test_json_missing_referenced_schema_named():
    # Given a schema whose $ref names a file the commit does not have
    files = {"schemas/a.schema.json": b'{"$ref": "common/limits.schema.json"}'}

    # When a document is validated
    with pytest.raises(TransformError) as raised:
        validate_json(b"{}", {"schema": "schemas/a.schema.json"}, files)

    # Then the error names the referenced file, resolved from the schema's folder
    assert "schema file schemas/common/limits.schema.json is not in this commit" in str(raised.value)


def test_json_remote_ref_rejected():
    # Given a schema whose $ref names a web address
    files = {"schemas/a.schema.json": b'{"$ref": "https://example.com/limits.schema.json"}'}

    # When a document is validated
    with pytest.raises(TransformError) as raised:
        validate_json(b"{}", {"schema": "schemas/a.schema.json"}, files)

    # Then the address is named as outside the commit, and nothing is fetched
    assert "https://example.com/limits.schema.json, outside this commit" in str(raised.value)


def test_json_invalid_schema_named():
    # Given a schema file with a misspelt type
    files = {"schemas/a.schema.json": b'{"properties": {"limit": {"type": "numbr"}}}'}

    # When a document is validated
    with pytest.raises(TransformError) as raised:
        validate_json(b"{}", {"schema": "schemas/a.schema.json"}, files)

    # Then the error names the schema file and the bad keyword's place
    assert "schema schemas/a.schema.json is not a valid JSON Schema" in str(raised.value)
    assert "$.properties.limit.type" in str(raised.value)


def test_json_schema_file_syntax_error_named():
    # Given a schema file that is not valid JSON on its second line
    files = {"schemas/a.schema.json": b'{"type": "object",\n "properties": }'}

    # When a document is validated
    with pytest.raises(TransformError) as raised:
        validate_json(b"{}", {"schema": "schemas/a.schema.json"}, files)

    # Then the error names the schema file and its line
    assert "schema file schemas/a.schema.json, line 2: invalid JSON" in str(raised.value)


def test_json_schema_draft_honoured():
    # Given a draft-07 schema, where "dependencies" is still a keyword
    files = {
        "schemas/a.schema.json": json.dumps(
            {"$schema": "http://json-schema.org/draft-07/schema#", "dependencies": {"unit": ["limit"]}}
        ).encode()
    }

    # When a document breaking that dependency is validated
    with pytest.raises(TransformError) as raised:
        validate_json(b'{"unit": "mm"}', {"schema": "schemas/a.schema.json"}, files)

    # Then the draft-07 rule applies
    assert "'limit' is a dependency of 'unit'" in str(raised.value)


# Copy


def test_copy_keeps_bytes():
    # Given bytes that are not text
    data = bytes(range(256))

    # When they are copied
    result = transform("copy", "data/blob.json", data)

    # Then the artifact is the same bytes, raw, under the same name
    assert result.data == data
    assert result.format == "raw"
    assert result.suffix == ""


# Path globs

GLOB_CASES = [
    # A glob without "/" matches the file name in any folder.
    ("*.csv", "a.csv", True),
    ("*.csv", "data/a.csv", True),
    ("*.csv", "data/deep/nested/a.csv", True),
    ("*.csv", "a.csv.gz", False),
    ("*.csv", "data/csv", False),
    ("stations.csv", "data/stations.csv", True),
    ("*", ".gitattributes", True),
    ("*.yml", ".github/workflows/ci.yml", True),
    # Case matters.
    ("*.csv", "A.CSV", False),
    ("Data/*.csv", "data/a.csv", False),
    # A glob with "/" matches from the repository root.
    ("data/*.csv", "data/a.csv", True),
    ("data/*.csv", "raw/data/a.csv", False),
    ("/data/*.csv", "data/a.csv", True),
    ("/stations.csv", "stations.csv", True),
    ("/stations.csv", "data/stations.csv", False),
    # "*" stays within one segment.
    ("data/*", "data/a.csv", True),
    ("data/*", "data/sub/a.csv", False),
    ("a/*/b", "a/x/b", True),
    ("a/*/b", "a/x/y/b", False),
    ("a*b", "a/b", False),
    ("a**b", "axyb", True),
    ("a**b", "a/x/b", False),
    # "**" matches any number of segments, including none.
    ("data/**", "data/a.csv", True),
    ("data/**", "data/sub/deep/a.csv", True),
    ("data/**", "data", False),
    ("data/**/*.csv", "data/a.csv", True),
    ("data/**/*.csv", "data/x/y/a.csv", True),
    ("data/**/*.csv", "other/a.csv", False),
    ("**/a.csv", "a.csv", True),
    ("**/a.csv", "x/y/a.csv", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("**", "any/file/at/all", True),
    ("**/.git/config", "sub/.git/config", True),
    # "?" and classes match one character, never "/".
    ("x?.csv", "x1.csv", True),
    ("x?.csv", "x12.csv", False),
    ("x?.csv", "x.csv", False),
    ("a?b", "a/b", False),
    ("?.csv", "é.csv", True),
    ("[abc].csv", "b.csv", True),
    ("[abc].csv", "d.csv", False),
    ("[!abc].csv", "d.csv", True),
    ("[!abc].csv", "a.csv", False),
    ("*.[ct]sv", "a.tsv", True),
    ("day-[0-9][0-9].csv", "day-07.csv", True),
    ("day-[0-9][0-9].csv", "day-7x.csv", False),
    # A glob does not match the files below a matched folder, unlike .gitignore.
    ("data", "data", True),
    ("data", "data/a.csv", False),
    # Backslash escapes; braces, "|" and extended globs are literal.
    ("\\*.csv", "*.csv", True),
    ("\\*.csv", "a.csv", False),
    ("\\!x.csv", "!x.csv", True),
    ("{a,b}.csv", "a.csv", False),
    ("{a,b}.csv", "{a,b}.csv", True),
    ("a|b", "a", False),
    ("+(a).csv", "a.csv", False),
    # Spaces and non-ASCII names.
    ("notes/*.txt", "notes/field log.txt", True),
    ("données/*.csv", "données/été.csv", True),
    # A path ending in "/" names a folder, which no glob matches.
    ("*.csv", "data/stations.csv/", False),
    ("**", "data/", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), GLOB_CASES, ids=[f"{p} {q}" for p, q, _ in GLOB_CASES])
def test_path_matches(pattern, path, expected):
    # Given a glob and a repository path
    # When they are matched
    # Then the result follows the gitignore-like rules
    assert path_matches(path, pattern) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "is empty"),
        ("!*.csv", "negated globs are not supported"),
        ("data/", "write data/** to match the files"),
        ("/", "matches no file"),
    ],
    ids=["empty", "negated", "folder", "root"],
)
def test_invalid_glob_rejected(pattern, message):
    # Given a glob that cannot match files as written
    # When it is checked or used
    # Then both raise ValueError naming the problem
    with pytest.raises(ValueError, match=re.escape(message)):
        check_glob(pattern)
    with pytest.raises(ValueError, match=re.escape(message)):
        path_matches("data/a.csv", pattern)


@pytest.mark.parametrize("path", ["", "/data/a.csv", "data//a.csv", "./a.csv", "data/../a.csv"])
def test_unnormalised_path_rejected(path):
    # Given a path that is not in normal form relative to the repository root
    # When it is matched
    # Then ValueError names the path
    with pytest.raises(ValueError, match="is not a file path relative to the repository root"):
        path_matches(path, "*.csv")


# Rule selection


@pytest.mark.parametrize(
    ("path", "transform_name"),
    [
        ("stations.csv", "csv-jsonl"),
        ("data/stations.csv", "csv-jsonl"),
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
def test_default_rules_select_transform(path, transform_name):
    # Given a path that a default rule matches
    # When a rule is selected
    rule = select_rule(path, DEFAULT_RULES)

    # Then it names the transform, with no options
    assert rule.transform == transform_name
    assert rule.options == {}


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
        "DATA/STATIONS.CSV",
    ],
)
def test_default_rules_skip_other_files(path):
    # Given a path that no default rule matches, matching being case-sensitive
    # When a rule is selected
    # Then there is none, so the file is not sent
    assert select_rule(path, DEFAULT_RULES) is None


def test_first_matching_rule_wins():
    # Given rules where a specific one comes before a general one
    rules = (Rule("raw/*.csv", "copy"), Rule("*.csv", "csv-jsonl", {"delimiter": ";"}))

    # When rules are selected
    raw = select_rule("raw/stations.csv", rules)
    data = select_rule("data/stations.csv", rules)

    # Then the first match decides, and its options come with it
    assert raw.transform == "copy"
    assert data.transform == "csv-jsonl"
    assert data.options == {"delimiter": ";"}


def test_no_rules_select_nothing():
    # Given no rules
    # When a rule is selected
    # Then there is none
    assert select_rule("data/a.csv", []) is None


def test_rule_options_not_shared():
    # Given two rules created without options
    first, second = Rule("*.csv", "csv-jsonl"), Rule("*.tsv", "csv-jsonl")

    # When the options of one are changed
    first.options["delimiter"] = ";"

    # Then the other keeps its own empty options
    assert second.options == {}


def test_default_rules_name_known_transforms():
    # Given the default rules
    # When their transforms are looked up
    unknown = [rule.transform for rule in DEFAULT_RULES if rule.transform not in transform_names()]

    # Then every one exists
    assert unknown == []

