"""Rules that choose a transform, and its options, for each file of a commit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .globs import path_matches


@dataclass(frozen=True)
class Rule:
    match: str  # glob on the file's path; see bitbatch.transforms.globs for the syntax
    transform: str  # name of a registered transform
    options: dict = field(default_factory=dict)


# Used when a repository has no rules of its own. Files matching none are not sent.
DEFAULT_RULES = (
    Rule("*.csv", "csv-jsonl"),
    Rule("*.tsv", "csv-jsonl"),
    Rule("*.yaml", "yaml-json"),
    Rule("*.yml", "yaml-json"),
    Rule("*.json", "copy"),
    Rule("*.jsonl", "copy"),
    Rule("*.txt", "copy"),
    Rule("*.md", "copy"),
)


def select_rule(path: str, rules: Iterable[Rule]) -> Rule | None:
    """Return the first rule whose match glob matches path, or None if no rule does."""
    for rule in rules:
        if path_matches(path, rule.match):
            return rule
    return None
