"""Read Bitbucket webhook payloads into the shared push model."""

from __future__ import annotations

import re
from typing import Any

from bitbatch.model import Push, RefChange

COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")
REF_PREFIXES = {"branch": "refs/heads/", "tag": "refs/tags/"}


class PayloadError(ValueError):
    """The payload is valid JSON but misses a field or has a value of the wrong kind."""


def _field(container: Any, path: str) -> Any:
    """Return container[a][b]... for path "a.b", raising PayloadError that names the path."""
    value = container
    walked = []
    for key in path.split("."):
        walked.append(key)
        if not isinstance(value, dict) or key not in value:
            raise PayloadError(f"missing field {'.'.join(walked)} in the push payload")
        value = value[key]
    return value


def _text(container: Any, path: str) -> str:
    value = _field(container, path)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"field {path} must be a non-empty string, got {value!r:.60}")
    return value


def _optional(container: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(container, dict):
            return None
        container = container.get(key)
    return container


def parse_cloud_push(payload: Any) -> Push:
    """Read a Bitbucket Cloud repo:push payload.

    Deleted refs (new is null) are listed in ignored_changes with the reason.
    """
    if not isinstance(payload, dict):
        raise PayloadError("the push payload must be a JSON object")

    repository = _text(payload, "repository.full_name")
    repository_uuid = _optional(payload, "repository", "uuid") or repository
    actor_name = _optional(payload, "actor", "display_name") or _optional(payload, "actor", "nickname") or "unknown"
    raw_changes = _field(payload, "push.changes")
    if not isinstance(raw_changes, list):
        raise PayloadError("field push.changes must be a list")

    changes = []
    ignored = []
    for index, raw_change in enumerate(raw_changes):
        where = f"push.changes[{index}]"
        if not isinstance(raw_change, dict):
            raise PayloadError(f"field {where} must be an object")

        new = raw_change.get("new")
        if new is None:
            old_name = _optional(raw_change, "old", "name") or "?"
            ignored.append(f"{where}: ref {old_name} was deleted")
            continue

        change = _read_cloud_change(raw_change, new, where)
        changes.append(change)

    return Push(
        product="cloud",
        repository=repository,
        repository_uuid=repository_uuid,
        actor_name=actor_name,
        changes=changes,
        ignored_changes=ignored,
    )


def _read_cloud_change(raw_change: dict, new: Any, where: str) -> RefChange:
    ref_type = _text(new, "type") if isinstance(new, dict) else None
    if ref_type not in REF_PREFIXES:
        raise PayloadError(f"field {where}.new.type must be 'branch' or 'tag', got {ref_type!r:.40}")
    ref_name = _text(new, "name")
    commit = _text(new, "target.hash")
    if not COMMIT_PATTERN.match(commit):
        raise PayloadError(f"field {where}.new.target.hash must be a 40-character hex commit id, got {commit!r:.60}")

    old = raw_change.get("old")
    previous_commit = _optional(old, "target", "hash")
    if previous_commit is not None and not (isinstance(previous_commit, str) and COMMIT_PATTERN.match(previous_commit)):
        raise PayloadError(f"field {where}.old.target.hash must be a 40-character hex commit id")

    author = _optional(new, "target", "author", "raw")
    return RefChange(
        ref=REF_PREFIXES[ref_type] + ref_name,
        ref_name=ref_name,
        ref_type=ref_type,
        commit=commit,
        previous_commit=previous_commit,
        commit_url=_optional(new, "target", "links", "html", "href"),
        author=author if isinstance(author, str) else None,
        forced=bool(raw_change.get("forced")),
        truncated=bool(raw_change.get("truncated")),
    )
