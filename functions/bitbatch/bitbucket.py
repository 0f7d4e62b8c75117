"""Read Bitbucket Cloud and Data Center webhook payloads into the shared push model."""

from __future__ import annotations

import re
from typing import Any

from bitbatch.model import CLOUD, DATA_CENTER, Push, RefChange

COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")
# Bitbucket Cloud workspace and repository slugs; "." and ".." are refused separately.
CLOUD_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# Data Center project keys (a personal project is ~user) and repository slugs.
PROJECT_KEY_PATTERN = re.compile(r"^~?[A-Za-z0-9_-]{1,128}$")
SLUG_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# What `git check-ref-format` refuses in a ref name: control characters, space,
# ~ ^ : ? * [ \, "..", "@{", "//", a leading or trailing "/" or ".", and ".lock" at the end.
REF_NAME_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[/.]|[/.]$|\.lock$|/\.")
MAX_REF_NAME_LENGTH = 255
MAX_DISPLAY_NAME_LENGTH = 255
ZERO_COMMIT = "0" * 40
REF_PREFIXES = {"branch": "refs/heads/", "tag": "refs/tags/"}

CLOUD_PUSH = "repo:push"
DATA_CENTER_PUSH = "repo:refs_changed"
DATA_CENTER_PING = "diagnostics:ping"
PUSH_EVENT_KEYS = (CLOUD_PUSH, DATA_CENTER_PUSH)


class PayloadError(ValueError):
    """The payload is valid JSON but misses a field or has a value of the wrong kind."""


def _field(container: Any, path: str, where: str = "") -> Any:
    """Return container[a][b]... for path "a.b", raising PayloadError that names where.path."""
    value = container
    walked = [where] if where else []
    for key in path.split("."):
        walked.append(key)
        if not isinstance(value, dict) or key not in value:
            raise PayloadError(f"missing field {'.'.join(walked)} in the push payload")
        value = value[key]
    return value


def _text(container: Any, path: str, where: str = "") -> str:
    value = _field(container, path, where)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"field {_join(where, path)} must be a non-empty string, got {value!r:.60}")
    return value


def _commit(container: Any, path: str, where: str = "") -> str:
    commit = _text(container, path, where)
    if not COMMIT_PATTERN.match(commit):
        raise PayloadError(
            f"field {_join(where, path)} must be a 40-character lower-case hex commit id, got {commit!r:.60}"
        )
    return commit


def _join(where: str, path: str) -> str:
    return f"{where}.{path}" if where else path


def _check_ref_name(name: str, field_path: str) -> str:
    if len(name) > MAX_REF_NAME_LENGTH or REF_NAME_FORBIDDEN.search(name):
        raise PayloadError(
            f"field {field_path} is not a valid git ref name ({name!r:.80}); "
            "git refuses spaces, control characters, '..', '~^:?*[\\' and names over 255 characters"
        )
    return name


def _cloud_repository(payload: dict) -> str:
    full_name = _text(payload, "repository.full_name")
    owner, _, slug = full_name.partition("/")
    for part in (owner, slug):
        if not CLOUD_NAME_PATTERN.match(part) or part in (".", ".."):
            raise PayloadError(
                f"field repository.full_name must be workspace/slug of letters, digits, '.', '_' and '-', "
                f"got {full_name!r:.80}"
            )
    return full_name


def _display_name(value: Any) -> str:
    """Return a person's display name, as one line of at most MAX_DISPLAY_NAME_LENGTH characters."""
    text = value if isinstance(value, str) and value.strip() else "unknown"
    return " ".join(text.split())[:MAX_DISPLAY_NAME_LENGTH]


def _optional(container: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(container, dict):
            return None
        container = container.get(key)
    return container


def _changes_list(payload: dict, path: str) -> list:
    changes = _field(payload, path)
    if not isinstance(changes, list):
        raise PayloadError(f"field {path} must be a list")
    return changes


def parse_push(event_key: str, payload: Any) -> Push:
    """Read a push from either product; event_key must be one of PUSH_EVENT_KEYS."""
    if not isinstance(payload, dict):
        raise PayloadError("the push payload must be a JSON object")
    if event_key == CLOUD_PUSH:
        return parse_cloud_push(payload)
    if event_key == DATA_CENTER_PUSH:
        return parse_data_center_push(payload)
    raise ValueError(f"event {event_key!r} is not a push")


def parse_cloud_push(payload: Any) -> Push:
    """Read a Bitbucket Cloud repo:push payload.

    Deleted refs (new is null) are listed in ignored_changes with the reason.
    """
    if not isinstance(payload, dict):
        raise PayloadError("the push payload must be a JSON object")

    repository = _cloud_repository(payload)
    repository_uuid = _optional(payload, "repository", "uuid")
    if not isinstance(repository_uuid, str) or not 0 < len(repository_uuid) <= 64:
        repository_uuid = repository
    actor_name = _display_name(_optional(payload, "actor", "display_name") or _optional(payload, "actor", "nickname"))
    raw_changes = _changes_list(payload, "push.changes")

    changes = []
    ignored = []
    for index, raw_change in enumerate(raw_changes):
        where = f"push.changes[{index}]"
        if not isinstance(raw_change, dict):
            raise PayloadError(f"field {where} must be an object")

        new = raw_change.get("new")
        if new is None:
            old_name = _optional(raw_change, "old", "name") or "?"
            ignored.append(f"ref {old_name} was deleted")
            continue

        changes.append(_read_cloud_change(raw_change, new, where))

    return Push(
        product=CLOUD,
        repository=repository,
        repository_uuid=repository_uuid,
        actor_name=actor_name,
        changes=changes,
        ignored_changes=ignored,
    )


def _read_cloud_change(raw_change: dict, new: Any, where: str) -> RefChange:
    if not isinstance(new, dict):
        raise PayloadError(f"field {where}.new must be an object or null")
    ref_type = _text(new, "type", f"{where}.new")
    if ref_type not in REF_PREFIXES:
        raise PayloadError(f"field {where}.new.type must be 'branch' or 'tag', got {ref_type!r:.40}")
    ref_name = _check_ref_name(_text(new, "name", f"{where}.new"), f"{where}.new.name")
    commit = _commit(new, "target.hash", f"{where}.new")

    old = raw_change.get("old")
    previous_commit = _commit(old, "target.hash", f"{where}.old") if isinstance(old, dict) else None

    author = _optional(new, "target", "author", "raw")
    return RefChange(
        ref=REF_PREFIXES[ref_type] + ref_name,
        ref_name=ref_name,
        ref_type=ref_type,
        commit=commit,
        previous_commit=previous_commit,
        commit_url=None,  # built from configuration by the webhook, never taken from the payload
        author=author if isinstance(author, str) else None,
        forced=bool(raw_change.get("forced")),
        truncated=bool(raw_change.get("truncated")),
    )


DATA_CENTER_REF_TYPES = {"BRANCH": "branch", "TAG": "tag"}


def parse_data_center_push(payload: Any) -> Push:
    """Read a Bitbucket Data Center repo:refs_changed payload.

    Deletions (type DELETE, or a toHash of 40 zeros) are listed in ignored_changes.
    The repository is named PROJECT_KEY/slug, the form of its clone URL path.
    """
    if not isinstance(payload, dict):
        raise PayloadError("the push payload must be a JSON object")

    project_key = _text(payload, "repository.project.key")
    slug = _text(payload, "repository.slug")
    if not PROJECT_KEY_PATTERN.match(project_key):
        raise PayloadError(
            f"field repository.project.key must be letters, digits, '_' and '-', got {project_key!r:.80} "
            f"(repository {project_key:.80}/{slug:.80})"
        )
    if not SLUG_PATTERN.match(slug) or slug in (".", ".."):
        raise PayloadError(
            f"field repository.slug must be letters, digits, '.', '_' and '-', got {slug!r:.80} "
            f"(repository {project_key:.80}/{slug:.80})"
        )
    repository = f"{project_key}/{slug}"
    repository_id = _optional(payload, "repository", "id")
    actor = payload.get("actor") if isinstance(payload.get("actor"), dict) else {}
    actor_name = _display_name(actor.get("displayName") or actor.get("name"))
    actor_email = actor.get("emailAddress") if isinstance(actor.get("emailAddress"), str) else None

    changes = []
    ignored = []
    for index, raw_change in enumerate(_changes_list(payload, "changes")):
        where = f"changes[{index}]"
        if not isinstance(raw_change, dict):
            raise PayloadError(f"field {where} must be an object")

        change_type = _text(raw_change, "type", where)
        ref_id = _text(raw_change, "ref.id", where)
        if change_type == "DELETE" or raw_change.get("toHash") == ZERO_COMMIT:
            ignored.append(f"ref {ref_id} was deleted")
            continue
        if change_type not in ("ADD", "UPDATE"):
            raise PayloadError(f"field {where}.type must be ADD, UPDATE or DELETE, got {change_type!r:.40}")

        changes.append(_read_data_center_change(raw_change, where))

    return Push(
        product=DATA_CENTER,
        repository=repository,
        repository_uuid=f"data-center:{repository_id}" if repository_id is not None else repository,
        actor_name=actor_name,
        changes=changes,
        ignored_changes=ignored,
        actor_email=actor_email,
    )


def _read_data_center_change(raw_change: dict, where: str) -> RefChange:
    ref_id = _text(raw_change, "ref.id", where)
    raw_type = _text(raw_change, "ref.type", where)
    ref_name = _check_ref_name(ref_id.split("/", 2)[-1], f"{where}.ref.id")
    ref_type = DATA_CENTER_REF_TYPES.get(raw_type)
    if ref_type is None:
        raise PayloadError(f"field {where}.ref.type must be BRANCH or TAG, got {raw_type!r:.40}")
    if not ref_id.startswith(REF_PREFIXES[ref_type]):
        raise PayloadError(f"field {where}.ref.id must start with {REF_PREFIXES[ref_type]}, got {ref_id!r:.80}")

    commit = _commit(raw_change, "toHash", where)
    from_hash = raw_change.get("fromHash")
    previous_commit = None
    if from_hash and from_hash != ZERO_COMMIT:
        previous_commit = _commit(raw_change, "fromHash", where)

    return RefChange(
        ref=ref_id,
        ref_name=ref_name,
        ref_type=ref_type,
        commit=commit,
        previous_commit=previous_commit,
        commit_url=None,  # built from configuration, see links.commit_url
        author=None,
    )
