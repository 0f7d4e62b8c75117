"""Transform plugins: registration, lookup, and the checks apply_transform makes before apply."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from bitbatch.transforms import (
    SourceFile,
    TransformError,
    TransformResult,
    apply_transform,
    get_transform,
    register,
    transform_names,
    unregister,
)
from bitbatch.transforms.text import decode_utf8


class CommitFiles:
    """Files of one commit, by path, as a transform reads them."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self._files = files or {}

    def read(self, path: str) -> bytes:
        if path not in self._files:
            raise KeyError(path)
        return self._files[path]


class TextLines:
    """The example transform of docs/transforms.md: one JSON object per line of text."""

    name = "plugin-test-lines"
    accepts = ("*.log", "*.txt")
    produces = "jsonl"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "skip_blank": {
                "description": "true (leave out lines that hold only white space) or false (keep them)",
                "type": "boolean",
                "default": True,
            },
        },
    }

    def apply(self, source, options, files):
        skip_blank = options.get("skip_blank", True)
        records = []
        for number, line in enumerate(decode_utf8(source.path, source.data).splitlines(), start=1):
            if skip_blank and not line.strip():
                continue
            records.append(json.dumps({"line": number, "text": line}, ensure_ascii=False) + "\n")
        return TransformResult(data="".join(records).encode(), format="jsonl", suffix=".jsonl")


class WithHeader:
    """Reads another file of the commit: prepends header.txt from the repository root."""

    name = "with-header"
    accepts = ("*",)
    produces = "raw"
    options_schema = {}

    def apply(self, source, options, files):
        return TransformResult(data=files.read("header.txt") + source.data, format="raw", suffix="")


@pytest.fixture
def registered():
    """Register the given transforms for one test and remove them afterwards."""
    names = []

    def register_for_test(transform):
        register(transform)
        names.append(get_transform(transform.name).name)
        return transform

    yield register_for_test

    for name in names:
        unregister(name)


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


# Registration


def test_plugin_applied_by_name(registered):
    # Given a plugin class registered by this test module
    registered(TextLines)

    # When a file is transformed by the plugin's name, with an option
    result = apply_transform(
        "plugin-test-lines", SourceFile("logs/run.log", b"start\n\n  \nend\n"), {"skip_blank": False}, CommitFiles()
    )

    # Then the plugin ran with that option
    assert result.format == "jsonl"
    assert result.suffix == ".jsonl"
    assert lines(result.data) == [
        {"line": 1, "text": "start"},
        {"line": 2, "text": ""},
        {"line": 3, "text": "  "},
        {"line": 4, "text": "end"},
    ]


def test_plugin_defaults_when_no_options(registered):
    # Given the registered plugin
    registered(TextLines)

    # When a file is transformed with empty options
    result = apply_transform("plugin-test-lines", SourceFile("notes.txt", b"a\n\nb\n"), {}, CommitFiles())

    # Then the option's default applies
    assert lines(result.data) == [{"line": 1, "text": "a"}, {"line": 3, "text": "b"}]


def test_plugin_listed_and_removed(registered):
    # Given the registered plugin
    registered(TextLines)

    # When the names are listed, and again after unregistering it
    listed = transform_names()
    removed = unregister("plugin-test-lines")

    # Then it was listed, in order, and is gone afterwards
    assert listed == sorted(listed)
    assert "plugin-test-lines" in listed
    assert isinstance(removed, TextLines)
    assert "plugin-test-lines" not in transform_names()
    register(TextLines)  # so that the fixture can remove it


def test_register_as_decorator():
    # Given a class decorated with register
    try:

        @register
        class Shout:
            name = "shout"
            accepts = ("*.txt",)
            produces = "raw"
            options_schema = {"type": "object", "additionalProperties": False}

            def apply(self, source, options, files):
                return TransformResult(data=source.data.upper(), format="raw", suffix="")

        # When a file is transformed by its name
        result = apply_transform("shout", SourceFile("a.txt", b"calm"), {}, CommitFiles())

        # Then the decorator left the class in place and registered an instance
        assert isinstance(Shout, type)
        assert isinstance(get_transform("shout"), Shout)
        assert result.data == b"CALM"
    finally:
        unregister("shout")


def test_register_instance(registered):
    # Given an instance rather than a class
    instance = TextLines()

    # When it is registered
    returned = registered(instance)

    # Then register returns it and looks up that very object
    assert returned is instance
    assert get_transform("plugin-test-lines") is instance


def test_duplicate_name_rejected(registered):
    # Given a registered plugin
    registered(TextLines)
    first = get_transform("plugin-test-lines")

    # When another transform with the same name is registered
    with pytest.raises(ValueError, match="'plugin-test-lines' is already registered") as raised:
        register(TextLines)

    # Then it is rejected and the first stays
    assert "choose another name" in str(raised.value)
    assert get_transform("plugin-test-lines") is first


@pytest.mark.parametrize("name", ["copy", "csv-jsonl", "yaml-json", "json-validate"])
def test_builtin_name_cannot_be_taken(name):
    # Given a plugin that reuses a built-in name
    class Impostor(TextLines):
        pass

    Impostor.name = name

    # When it is registered
    # Then it is rejected
    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("name", "Text Lines", "transform name 'Text Lines' is invalid"),
        ("name", "", "transform name '' is invalid"),
        ("accepts", "*.txt", "accepts must be a non-empty tuple of globs"),
        ("accepts", (), "accepts must be a non-empty tuple of globs"),
        ("accepts", ("logs/",), "would match only folders"),
        ("produces", "xml", "produces is 'xml'; use one of jsonl, json, raw"),
        ("options_schema", None, "options_schema must be a dict"),
        ("options_schema", {"type": "objekt"}, "options_schema is not a valid JSON Schema"),
        ("apply", None, "has no apply method"),
    ],
)
def test_invalid_plugin_rejected(attribute, value, message):
    # Given a plugin with one invalid attribute
    class Broken(TextLines):
        pass

    setattr(Broken, attribute, value)

    # When it is registered
    # Then ValueError names the problem and nothing is registered
    with pytest.raises(ValueError, match=message):
        register(Broken)
    assert "plugin-test-lines" not in transform_names()


def test_plugin_reads_other_files(registered):
    # Given a plugin that reads another file of the commit
    registered(WithHeader)
    files = CommitFiles({"header.txt": b"# station data\n"})

    # When a file is transformed
    result = apply_transform("with-header", SourceFile("data/a.dat", b"1 2 3\n"), {}, files)

    # Then the other file's bytes came through RepositoryFiles
    assert result.data == b"# station data\n1 2 3\n"


def test_empty_options_schema_accepts_any_options(registered):
    # Given a plugin whose options schema is {}
    registered(WithHeader)

    # When it is given arbitrary options
    result = apply_transform("with-header", SourceFile("a", b"x"), {"anything": [1, 2]}, CommitFiles({"header.txt": b""}))

    # Then they pass the check
    assert result.data == b"x"


def test_wrong_result_format_rejected(registered):
    # Given a plugin that declares jsonl but returns raw
    class Liar(TextLines):
        name = "liar"

        def apply(self, source, options, files):
            return TransformResult(data=source.data, format="raw", suffix="")

    registered(Liar)

    # When it is applied
    # Then TypeError names the transform and both formats
    with pytest.raises(TypeError, match="returned format 'raw' but declares produces='jsonl'"):
        apply_transform("liar", SourceFile("a.txt", b"x"), {}, CommitFiles())


def test_wrong_result_type_rejected(registered):
    # Given a plugin that returns bytes instead of a TransformResult
    class Sloppy(TextLines):
        name = "sloppy"

        def apply(self, source, options, files):
            return source.data

    registered(Sloppy)

    # When it is applied
    # Then TypeError names the transform and what apply must return
    with pytest.raises(TypeError, match="sloppy returned bytes; apply must return a TransformResult"):
        apply_transform("sloppy", SourceFile("a.txt", b"x"), {}, CommitFiles())


# Lookup


def test_unknown_transform_lists_known_names():
    # Given a name that no transform has
    # When it is looked up or applied
    with pytest.raises(KeyError) as looked_up:
        get_transform("csv-json")
    with pytest.raises(KeyError) as applied:
        apply_transform("csv-json", SourceFile("a.csv", b"a\n"), {}, CommitFiles())

    # Then both errors name it and list the known transforms
    for raised in (looked_up, applied):
        assert str(raised.value).startswith("unknown transform 'csv-json'; known transforms are ")
        assert "copy, csv-jsonl, json-validate, yaml-json" in str(raised.value)


def test_builtin_transforms_described():
    # Given the built-in transforms
    # When their attributes are read
    described = {
        name: (get_transform(name).accepts, get_transform(name).produces)
        for name in ("copy", "yaml-json", "csv-jsonl", "json-validate")
    }

    # Then they accept and produce what the docs say
    assert described == {
        "copy": (("*",), "raw"),
        "yaml-json": (("*.yaml", "*.yml"), "json"),
        "csv-jsonl": (("*.csv", "*.tsv", "*.txt"), "jsonl"),
        "json-validate": (("*.json",), "json"),
    }


@pytest.mark.parametrize("name", ["copy", "yaml-json", "csv-jsonl", "json-validate"])
def test_builtin_options_schema_valid(name):
    # Given a built-in transform
    schema = get_transform(name).options_schema

    # When its options schema is checked against draft 2020-12
    # Then it is a valid schema for an object of options
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False


# Checks before apply


@pytest.mark.parametrize(
    ("name", "path", "globs"),
    [
        ("csv-jsonl", "data/stations.xlsx", "*.csv, *.tsv, *.txt"),
        ("csv-jsonl", "DATA.CSV", "*.csv, *.tsv, *.txt"),
        ("yaml-json", "config/pipeline.json", "*.yaml, *.yml"),
        ("json-validate", "data/events.jsonl", "*.json"),
    ],
)
def test_accepts_mismatch_rejected(name, path, globs):
    # Given a file whose path the transform does not accept
    # When it is applied
    with pytest.raises(TransformError) as raised:
        apply_transform(name, SourceFile(path, b"{}"), {"schema": "s.json"} if name == "json-validate" else {}, CommitFiles())

    # Then the error names the file, the transform and the globs it accepts
    assert str(raised.value).startswith(f"{path}: transform {name} accepts only files matching {globs};")
    assert raised.value.path == path


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("copy", {"mode": "fast"}, "unknown option mode; it takes no options"),
        (
            "csv-jsonl",
            {"delimeter": ";"},
            "unknown option delimeter; allowed options are delimiter, encoding, infer_types, null_values",
        ),
        ("csv-jsonl", {"delimiter": ";;"}, "option delimiter: ';;' is not allowed (expected one character between values"),
        ("csv-jsonl", {"delimiter": "\n"}, "option delimiter: '\\n' is not allowed"),
        ("csv-jsonl", {"infer_types": "yes"}, "option infer_types: 'yes' is not of type 'boolean' (expected true"),
        ("csv-jsonl", {"null_values": "NA"}, "option null_values: 'NA' is not of type 'array'"),
        ("csv-jsonl", {"null_values": ["NA", 0]}, "option null_values[1]: 0 is not of type 'string'"),
        ("csv-jsonl", {"encoding": ""}, "option encoding: '' should be non-empty"),
        ("yaml-json", {"multi_document": "all"}, "option multi_document: 'all' is not allowed; use one of 'array', 'first'"),
        ("json-validate", {}, "missing required option schema (the repository path of the JSON Schema file"),
        ("json-validate", {"schema": ["a.json"]}, "option schema: ['a.json'] is not of type 'string'"),
    ],
)
def test_invalid_options_rejected(name, options, problem):
    # Given options that break the transform's options schema
    path = {"copy": "a.bin", "csv-jsonl": "a.csv", "yaml-json": "a.yaml", "json-validate": "a.json"}[name]

    # When the transform is applied
    with pytest.raises(TransformError) as raised:
        apply_transform(name, SourceFile(path, b"a\n"), options, CommitFiles())

    # Then the error names the file, the transform, the option and what is allowed
    assert str(raised.value).startswith(f"{path}: invalid options for transform {name}: ")
    assert problem in str(raised.value)


def test_every_invalid_option_reported():
    # Given two invalid options at once
    options = {"delimiter": ";;", "infer_types": 1}

    # When csv-jsonl is applied
    with pytest.raises(TransformError) as raised:
        apply_transform("csv-jsonl", SourceFile("a.csv", b"a\n"), options, CommitFiles())

    # Then both are named
    assert "option delimiter:" in str(raised.value)
    assert "option infer_types:" in str(raised.value)


def test_options_must_be_mapping():
    # Given options that are a list, as a YAML slip can make them
    # When a transform is applied
    with pytest.raises(TransformError, match="options of transform csv-jsonl must be a mapping"):
        apply_transform("csv-jsonl", SourceFile("a.csv", b"a\n"), ["delimiter", ";"], CommitFiles())


def test_options_not_changed_by_apply(registered):
    # Given a plugin that changes the options it receives, nested values too
    class Greedy(WithHeader):
        name = "greedy"

        def apply(self, source, options, files):
            options["skip_blank"] = False
            options["tags"].append("changed")
            return super().apply(source, options, files)

    registered(Greedy)
    options = {"skip_blank": True, "tags": ["a"]}

    # When it is applied
    apply_transform("greedy", SourceFile("a.txt", b"a\n"), options, CommitFiles({"header.txt": b""}))

    # Then the caller's options are unchanged
    assert options == {"skip_blank": True, "tags": ["a"]}
