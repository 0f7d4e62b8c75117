"""Build Bitbucket Cloud webhook deliveries from real git repositories."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from dulwich.repo import Repo

from bitbatch.signature import sign


def _commit_object(repo: Repo, commit: str, full_name: str, web_base_url: str) -> dict:
    data = repo[commit.encode()]
    offset = timezone(timedelta(seconds=data.commit_timezone))
    message = data.message.decode("utf-8", errors="replace")
    commit_url = f"{web_base_url}/{full_name}/commits/{commit}"
    return {
        "type": "commit",
        "hash": commit,
        "date": datetime.fromtimestamp(data.commit_time, offset).isoformat(),
        "message": message,
        "summary": {"raw": message, "markup": "markdown", "html": f"<p>{message.strip()}</p>"},
        "author": {"type": "author", "raw": data.author.decode("utf-8", errors="replace")},
        "parents": [{"type": "commit", "hash": parent.decode()} for parent in data.parents],
        "links": {"html": {"href": commit_url}, "self": {"href": commit_url}},
    }


def _ref_state(repo: Repo, name: str, ref_type: str, commit: str, full_name: str, web_base_url: str) -> dict:
    return {
        "type": ref_type,
        "name": name,
        "target": _commit_object(repo, commit, full_name, web_base_url),
        "links": {"html": {"href": f"{web_base_url}/{full_name}/branch/{name}"}},
    }


def cloud_push_payload(
    repository_path: Path,
    full_name: str,
    ref_name: str,
    commit: str,
    previous_commit: str | None,
    web_base_url: str,
    actor_name: str = "Local Developer",
    ref_type: str = "branch",
) -> dict:
    """Return a repo:push payload for one ref moved from previous_commit (None: created) to commit."""
    workspace, slug = full_name.split("/", 1)
    with Repo(str(repository_path)) as repo:
        new = _ref_state(repo, ref_name, ref_type, commit, full_name, web_base_url)
        old = _ref_state(repo, ref_name, ref_type, previous_commit, full_name, web_base_url) if previous_commit else None
        commits = [new["target"]]

    repository_uuid = "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{web_base_url}/{full_name}")) + "}"
    return {
        "actor": {"type": "user", "display_name": actor_name, "uuid": "{00000000-0000-4000-8000-000000000001}"},
        "repository": {
            "type": "repository",
            "full_name": full_name,
            "name": slug,
            "uuid": repository_uuid,
            "scm": "git",
            "is_private": True,
            "workspace": {"type": "workspace", "slug": workspace},
            "links": {"html": {"href": f"{web_base_url}/{full_name}"}},
        },
        "push": {
            "changes": [
                {
                    "new": new,
                    "old": old,
                    "created": old is None,
                    "closed": False,
                    "forced": False,
                    "truncated": False,
                    "commits": commits,
                }
            ]
        },
    }


def signed_delivery(payload: dict, secret: str, event_key: str = "repo:push") -> tuple[bytes, dict[str, str]]:
    """Return the body and headers Bitbucket Cloud sends for payload."""
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Bitbucket-Webhooks/2.0",
        "X-Event-Key": event_key,
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Hook-UUID": "{local-hook}",
        "X-Attempt-Number": "1",
        "X-Event-Time": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "X-Hub-Signature": sign(secret, body),
    }
    return body, headers


ZERO_COMMIT = "0" * 40


def data_center_push_payload(
    project_key: str,
    slug: str,
    ref_name: str,
    commit: str,
    previous_commit: str | None,
    actor_email: str = "grace@example.com",
    actor_name: str = "Grace Hopper",
    ref_type: str = "BRANCH",
    change_type: str | None = None,
) -> dict:
    """Return a Bitbucket Data Center repo:refs_changed payload for one ref change."""
    prefix = "refs/heads/" if ref_type == "BRANCH" else "refs/tags/"
    if change_type is None:
        change_type = "ADD" if previous_commit is None else "UPDATE"
    return {
        "eventKey": "repo:refs_changed",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z"),
        "actor": {
            "name": actor_email.split("@", 1)[0],
            "emailAddress": actor_email,
            "id": 101,
            "displayName": actor_name,
            "active": True,
            "slug": actor_email.split("@", 1)[0],
            "type": "NORMAL",
        },
        "repository": {
            "slug": slug,
            "id": 84,
            "name": slug,
            "scmId": "git",
            "state": "AVAILABLE",
            "forkable": True,
            "project": {"key": project_key, "id": 21, "name": project_key.title(), "public": False, "type": "NORMAL"},
            "public": False,
            "archived": False,
        },
        "changes": [
            {
                "ref": {"id": prefix + ref_name, "displayId": ref_name, "type": ref_type},
                "refId": prefix + ref_name,
                "fromHash": previous_commit or ZERO_COMMIT,
                "toHash": commit,
                "type": change_type,
            }
        ],
    }


def signed_data_center_delivery(payload: dict, secret: str | None, event_key: str = "repo:refs_changed") -> tuple[bytes, dict[str, str]]:
    """Return the body and headers Bitbucket Data Center sends; no signature when secret is None."""
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Event-Key": event_key,
        "X-Request-Id": str(uuid.uuid4()),
    }
    if secret is not None:
        headers["X-Hub-Signature"] = sign(secret, body)
    return body, headers
