"""Transforms: turn one repository file into one intermediate artifact.

Each transform is registered under a name; rules choose one, with options,
for each file of a commit. docs/transforms.md describes the built-in
transforms and how to add one.
"""

from .base import (
    FORMATS,
    RepositoryFiles,
    SourceFile,
    Transform,
    TransformError,
    TransformResult,
    UnknownTransformError,
    apply_transform,
    get_transform,
    register,
    transform_names,
    unregister,
)
from .globs import check_glob, path_matches
from .rules import DEFAULT_RULES, Rule, select_rule

# Importing a module registers the transforms it defines.
from . import copy_file, delimited, json_validate, yaml_json  # noqa: F401

__all__ = [
    "DEFAULT_RULES",
    "FORMATS",
    "RepositoryFiles",
    "Rule",
    "SourceFile",
    "Transform",
    "TransformError",
    "TransformResult",
    "UnknownTransformError",
    "apply_transform",
    "check_glob",
    "get_transform",
    "path_matches",
    "register",
    "select_rule",
    "transform_names",
    "unregister",
]
