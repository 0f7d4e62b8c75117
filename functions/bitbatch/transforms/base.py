"""Types, registry and checks shared by every transform, built-in or plugin.

A transform turns one repository file into one intermediate artifact. It is
an object with a name, the globs of the paths it accepts, the format it
produces, a JSON Schema for its options and an apply method, registered
with `register`. `apply_transform` checks the path and options before it
calls apply, so apply may trust both.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from inspect import isclass
from typing import Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from .globs import check_glob, path_matches

FORMATS = ("jsonl", "json", "raw")
NAME_PATTERN = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


class TransformError(ValueError):
    """A file could not be transformed. The message names the file and, where known, the line."""

    def __init__(self, path: str, reason: str, line: int | None = None):
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line


class UnknownTransformError(KeyError):
    """No transform is registered under the name. The message lists the known names."""

    def __str__(self) -> str:
        # KeyError would otherwise print the message in quotes.
        return str(self.args[0])


@dataclass(frozen=True)
class TransformResult:
    data: bytes
    format: str  # "jsonl", "json" or "raw"
    suffix: str  # appended to the source path to name the artifact


@dataclass(frozen=True)
class SourceFile:
    path: str  # POSIX path relative to the repository root
    data: bytes


class RepositoryFiles(Protocol):
    """Read-only access to the other files of the commit being transformed."""

    def read(self, path: str) -> bytes:
        """Return the bytes of the file at path, or raise KeyError(path) if the commit has no such file."""
        ...


class Transform(Protocol):
    """A transform as register and apply_transform expect it, built-in or plugin."""

    name: str  # lower-case words joined by hyphens, such as csv-jsonl
    accepts: tuple[str, ...]  # globs of the paths it accepts, ("*",) for any file
    produces: str  # one of FORMATS
    options_schema: dict  # JSON Schema (draft 2020-12) of the options object, where {} accepts any options

    def apply(self, source: SourceFile, options: dict, files: RepositoryFiles) -> TransformResult: ...


@dataclass(frozen=True)
class _Registered:
    transform: Transform
    options_validator: Draft202012Validator


_registry: dict[str, _Registered] = {}


def register(transform):
    """Register a transform instance, or instantiate and register a transform class.

    Returns its argument, so it works as a class decorator. Raises ValueError
    if the name is taken or an attribute is invalid.
    """
    instance = transform() if isclass(transform) else transform
    validator = _checked_options_validator(instance)
    if instance.name in _registry:
        raise ValueError(f"a transform named {instance.name!r} is already registered; choose another name")
    _registry[instance.name] = _Registered(instance, validator)
    return transform


def unregister(name: str) -> Transform:
    """Remove a transform from the registry and return it, so that tests of a plugin can clean up."""
    if name not in _registry:
        raise _unknown(name)
    return _registry.pop(name).transform


def get_transform(name: str) -> Transform:
    """Return the transform registered under name, or raise UnknownTransformError (a KeyError) if there is none."""
    if name not in _registry:
        raise _unknown(name)
    return _registry[name].transform


def transform_names() -> list[str]:
    """Return the names of the registered transforms in alphabetical order."""
    return sorted(_registry)


def apply_transform(name: str, source: SourceFile, options: dict, files: RepositoryFiles) -> TransformResult:
    """Check source's path against the transform's accepts globs and options against its schema, then apply it.

    Raises UnknownTransformError for an unknown name and TransformError naming
    the file for a path it does not accept, invalid options, or a file it
    cannot transform. Raises ValueError for a path that is not relative to the
    repository root in normal form, and TypeError if the transform returns
    something other than a TransformResult in the format it declares.
    """
    if name not in _registry:
        raise _unknown(name)
    registered = _registry[name]
    transform = registered.transform

    if not any(path_matches(source.path, accepted) for accepted in transform.accepts):
        raise TransformError(
            source.path,
            f"transform {name} accepts only files matching {', '.join(transform.accepts)}; "
            "change the rule's match or choose another transform",
        )

    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TransformError(source.path, f"options of transform {name} must be a mapping of option names to values")
    problems = {_describe_option_error(error) for error in registered.options_validator.iter_errors(options)}
    if problems:
        raise TransformError(source.path, f"invalid options for transform {name}: " + "; ".join(sorted(problems)))

    # A deep copy keeps a transform that edits its options from changing the caller's rule.
    result = transform.apply(source, copy.deepcopy(dict(options)), files)

    if not isinstance(result, TransformResult):
        raise TypeError(f"transform {name} returned {type(result).__name__}; apply must return a TransformResult")
    if result.format != transform.produces:
        raise TypeError(f"transform {name} returned format {result.format!r} but declares produces={transform.produces!r}")
    return result


def _unknown(name: str) -> UnknownTransformError:
    known = ", ".join(transform_names()) or "none"
    return UnknownTransformError(f"unknown transform {name!r}; known transforms are {known}")


def _checked_options_validator(transform) -> Draft202012Validator:
    """Check a transform's attributes and return the validator of its options."""
    name = getattr(transform, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"transform name {name!r} is invalid; use lower-case letters and digits joined by hyphens, like csv-jsonl")

    accepts = getattr(transform, "accepts", None)
    if isinstance(accepts, str) or not isinstance(accepts, tuple | list) or not accepts:
        raise ValueError(f"transform {name}: accepts must be a non-empty tuple of globs, such as ('*.csv',), not {accepts!r}")
    for accepted in accepts:
        try:
            check_glob(accepted)
        except ValueError as error:
            raise ValueError(f"transform {name}: accepts: {error}") from error

    produces = getattr(transform, "produces", None)
    if produces not in FORMATS:
        raise ValueError(f"transform {name}: produces is {produces!r}; use one of {', '.join(FORMATS)}")

    if not callable(getattr(transform, "apply", None)):
        raise ValueError(f"transform {name} has no apply method")

    schema = getattr(transform, "options_schema", None)
    if not isinstance(schema, dict):
        raise ValueError(f"transform {name}: options_schema must be a dict holding a JSON Schema, not {schema!r}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise ValueError(f"transform {name}: options_schema is not a valid JSON Schema: {error.message}") from error
    return Draft202012Validator(schema)


def _describe_option_error(error: ValidationError) -> str:
    """Describe one invalid option in words that name the option and what it allows."""
    option = error.json_path.removeprefix("$").removeprefix(".")
    label = f"option {option}" if option else "options"
    subschema = error.schema if isinstance(error.schema, dict) else {}
    properties = subschema.get("properties") or {}

    if error.validator == "additionalProperties":
        unknown = sorted(key for key in error.instance if key not in properties)
        where = f" in {label}" if option else ""
        allowed = f"allowed options are {', '.join(sorted(properties))}" if properties else "it takes no options"
        return f"unknown option {', '.join(unknown)}{where}; {allowed}"

    if error.validator == "required":
        missing = []
        for key in error.validator_value:
            if key in error.instance:
                continue
            description = properties.get(key, {}).get("description")
            missing.append(f"{key} ({description})" if description else key)
        where = f" in {label}" if option else ""
        return f"missing required option {', '.join(missing)}{where}"

    if error.validator == "enum":
        allowed = ", ".join(repr(value) for value in error.validator_value)
        return f"{label}: {error.instance!r} is not allowed; use one of {allowed}"

    description = subschema.get("description")
    if error.validator == "pattern" and description:
        # The regular expression would mean little to the author of a rule.
        return f"{label}: {error.instance!r} is not allowed (expected {description})"
    return f"{label}: {error.message}" + (f" (expected {description})" if description else "")
