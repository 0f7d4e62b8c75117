"""Read CloudFormation and SAM templates in tests, short-form intrinsics included."""

from __future__ import annotations

from pathlib import Path

import yaml


class CloudFormationLoader(yaml.SafeLoader):
    """YAML loader that turns short-form intrinsics (!Ref, !Sub, !GetAtt, !If ...) into their long form."""


def _construct_intrinsic(loader: CloudFormationLoader, tag_suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)

    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=CloudFormationLoader)
