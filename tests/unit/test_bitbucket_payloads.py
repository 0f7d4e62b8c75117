"""Bitbucket Cloud repo:push payloads read into the push model."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from bitbatch.bitbucket import PayloadError, parse_cloud_push, parse_data_center_push, parse_push

EVENTS = Path(__file__).resolve().parents[2] / "events"

REPOSITORY = "highland/weather-stations"
REPOSITORY_UUID = "{8c1f4e2a-5b7d-4c39-9e60-1a2b3c4d5e6f}"
HEAD = "7de5c744462044a30d3f711293f80ff03adf7d79"
PREVIOUS = "4b313c918495d4789e1b460229ea8e1e8c1d6e6a"
OTHER = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
AUTHOR = "Ada Lovelace <ada@example.com>"


def ref_state(name: str, commit: str, ref_type: str = "branch", author: str = AUTHOR) -> dict:
    return {
        "type": ref_type,
        "name": name,
        "target": {
            "type": "commit",
            "hash": commit,
            "author": {"type": "author", "raw": author},
            "links": {"html": {"href": f"https://bitbucket.org/{REPOSITORY}/commits/{commit}"}},
        },
    }


def change(new: dict | None, old: dict | None, **flags) -> dict:
    return {
        "new": new,
        "old": old,
        "created": old is None,
        "closed": new is None,
        "forced": flags.get("forced", False),
        "truncated": flags.get("truncated", False),
    }


def push_payload(*changes: dict) -> dict:
    return {
        "actor": {"type": "user", "display_name": "Ada Lovelace", "nickname": "ada"},
        "repository": {"type": "repository", "full_name": REPOSITORY, "uuid": REPOSITORY_UUID},
        "push": {"changes": list(changes)},
    }


def branch_update() -> dict:
    return change(ref_state("main", HEAD), ref_state("main", PREVIOUS))


# Accepted payloads


def test_updated_branch():
    # Given a push that moves main from one commit to the next
    payload = push_payload(branch_update())

    # When it is read
    push = parse_cloud_push(payload)

    # Then one change describes the branch, its commits and the author
    assert push.product == "cloud"
    assert push.repository == REPOSITORY
    assert push.repository_uuid == REPOSITORY_UUID
    assert push.actor_name == "Ada Lovelace"
    assert len(push.changes) == 1
    ref_change = push.changes[0]
    assert ref_change.ref == "refs/heads/main"
    assert ref_change.ref_name == "main"
    assert ref_change.ref_type == "branch"
    assert ref_change.commit == HEAD
    assert ref_change.previous_commit == PREVIOUS
    # The payload's own link is not trusted: the webhook builds it from GIT_BASE_URL.
    assert ref_change.commit_url is None
    assert ref_change.author == AUTHOR
    assert ref_change.forced is False
    assert ref_change.truncated is False
    assert push.ignored_changes == []


def test_sample_event_body():
    # Given the body of the sample webhook event
    event = json.loads((EVENTS / "webhook-push.json").read_text())
    payload = json.loads(event["body"])

    # When it is read
    push = parse_cloud_push(payload)

    # Then it is one update of main by Ada Lovelace
    assert [change.ref for change in push.changes] == ["refs/heads/main"]
    assert push.changes[0].commit == HEAD
    assert push.changes[0].previous_commit == PREVIOUS
    assert push.changes[0].author == AUTHOR


def test_created_branch_without_previous():
    # Given a push that creates a branch (old is null)
    payload = push_payload(change(ref_state("feature/readings", HEAD), None))

    # When it is read
    push = parse_cloud_push(payload)

    # Then the change has the new commit and no previous one
    assert push.changes[0].ref == "refs/heads/feature/readings"
    assert push.changes[0].commit == HEAD
    assert push.changes[0].previous_commit is None


def test_deleted_branch_ignored():
    # Given a push that deletes a branch (new is null)
    payload = push_payload(change(None, ref_state("feature/old", PREVIOUS)))

    # When it is read
    push = parse_cloud_push(payload)

    # Then nothing is built and the reason names the deleted ref
    assert push.changes == []
    assert len(push.ignored_changes) == 1
    assert "feature/old" in push.ignored_changes[0]
    assert "deleted" in push.ignored_changes[0]


def test_tag():
    # Given a push that creates a tag
    payload = push_payload(change(ref_state("v1.0", HEAD, ref_type="tag"), None))

    # When it is read
    push = parse_cloud_push(payload)

    # Then the change is a tag under refs/tags/
    assert push.changes[0].ref == "refs/tags/v1.0"
    assert push.changes[0].ref_name == "v1.0"
    assert push.changes[0].ref_type == "tag"


def test_several_changes_kept_in_order():
    # Given one push that updates main, creates a tag and deletes a branch
    payload = push_payload(
        branch_update(),
        change(ref_state("v1.0", HEAD, ref_type="tag"), None),
        change(None, ref_state("feature/old", OTHER)),
        change(ref_state("release", OTHER), ref_state("release", PREVIOUS), forced=True),
    )

    # When it is read
    push = parse_cloud_push(payload)

    # Then every change that moved a ref to a commit is kept, in payload order
    assert [change.ref for change in push.changes] == ["refs/heads/main", "refs/tags/v1.0", "refs/heads/release"]
    assert [change.commit for change in push.changes] == [HEAD, HEAD, OTHER]
    assert push.changes[2].forced is True
    # and the deletion is listed with the ref it removed
    assert push.ignored_changes == ["ref feature/old was deleted"]


def test_empty_changes_list():
    # Given a push with an empty changes list, as a tag made in the Bitbucket UI has sent
    payload = push_payload()

    # When it is read
    push = parse_cloud_push(payload)

    # Then there is nothing to build and nothing ignored
    assert push.changes == []
    assert push.ignored_changes == []


def test_truncated_flag_kept():
    # Given a push of more than five commits, which Bitbucket marks truncated
    payload = push_payload(change(ref_state("main", HEAD), ref_state("main", PREVIOUS), truncated=True))

    # When it is read
    push = parse_cloud_push(payload)

    # Then the change is marked truncated
    assert push.changes[0].truncated is True


def test_author_without_email_kept_raw():
    # Given a commit whose author string has no address
    payload = push_payload(change(ref_state("main", HEAD, author="build bot"), ref_state("main", PREVIOUS)))

    # When it is read
    push = parse_cloud_push(payload)

    # Then the raw author is kept as it is, for the notifier to judge
    assert push.changes[0].author == "build bot"


def test_missing_author_and_links_allowed():
    # Given a change whose commit has neither author nor links
    new = ref_state("main", HEAD)
    del new["target"]["author"]
    del new["target"]["links"]
    payload = push_payload(change(new, ref_state("main", PREVIOUS)))

    # When it is read
    push = parse_cloud_push(payload)

    # Then author and commit URL are None
    assert push.changes[0].author is None
    assert push.changes[0].commit_url is None


def test_missing_uuid_uses_full_name():
    # Given a payload without repository.uuid
    payload = push_payload(branch_update())
    del payload["repository"]["uuid"]

    # When it is read
    push = parse_cloud_push(payload)

    # Then the full name is used as the uuid
    assert push.repository_uuid == REPOSITORY


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ({"display_name": "Ada Lovelace", "nickname": "ada"}, "Ada Lovelace"),
        ({"nickname": "ada"}, "ada"),
        ({}, "unknown"),
    ],
    ids=["display-name", "nickname", "neither"],
)
def test_actor_name(actor, expected):
    # Given an actor with or without its names
    payload = push_payload(branch_update())
    payload["actor"] = actor

    # When it is read
    push = parse_cloud_push(payload)

    # Then the best available name is used
    assert push.actor_name == expected


# Rejected payloads


@pytest.mark.parametrize("payload", [[], "push", None, 42], ids=["list", "string", "null", "number"])
def test_payload_not_an_object(payload):
    # Given JSON that is not an object
    # When it is read
    # Then PayloadError names the expected JSON type
    with pytest.raises(PayloadError, match="JSON object"):
        parse_cloud_push(payload)


@pytest.mark.parametrize(
    ("remove", "field"),
    [
        (("repository",), "repository"),
        (("repository", "full_name"), "repository.full_name"),
        (("push",), "push"),
        (("push", "changes"), "push.changes"),
    ],
)
def test_missing_top_level_field_named(remove, field):
    # Given a payload without one required field
    payload = push_payload(branch_update())
    container = payload
    for key in remove[:-1]:
        container = container[key]
    del container[remove[-1]]

    # When it is read
    with pytest.raises(PayloadError) as raised:
        parse_cloud_push(payload)

    # Then the error names the missing field
    assert f"missing field {field} " in str(raised.value)


def test_empty_repository_name_rejected():
    # Given a payload whose repository.full_name is empty
    payload = push_payload(branch_update())
    payload["repository"]["full_name"] = ""

    # When it is read
    # Then the error names the field
    with pytest.raises(PayloadError, match=r"repository\.full_name"):
        parse_cloud_push(payload)


@pytest.mark.parametrize("changes", [{}, "main", None], ids=["object", "string", "null"])
def test_changes_not_a_list(changes):
    # Given push.changes of the wrong kind
    payload = push_payload()
    payload["push"]["changes"] = changes

    # When it is read
    # Then the error names the field
    with pytest.raises(PayloadError, match=r"push\.changes must be a list"):
        parse_cloud_push(payload)


def test_change_not_an_object():
    # Given a change that is a string
    payload = push_payload(branch_update(), "refs/heads/main")

    # When it is read
    # Then the error names the change by position
    with pytest.raises(PayloadError, match=r"push\.changes\[1\] must be an object"):
        parse_cloud_push(payload)


@pytest.mark.parametrize(
    "ref_type", ["named_branch", "bookmark", "BRANCH"], ids=["hg-branch", "bookmark", "upper-case"]
)
def test_unknown_ref_type_rejected(ref_type):
    # Given a ref type other than branch or tag
    change_data = branch_update()
    change_data["new"]["type"] = ref_type
    payload = push_payload(change_data)

    # When it is read
    # Then PayloadError names the change that carries it
    with pytest.raises(PayloadError, match=r"push\.changes\[0\]\.new\.type"):
        parse_cloud_push(payload)


def test_new_not_an_object_rejected():
    # Given a change whose new state is a string
    payload = push_payload(change("main", ref_state("main", PREVIOUS)))

    # When it is read
    # Then PayloadError names the new state of that change
    with pytest.raises(PayloadError, match=r"push\.changes\[0\]\.new must be an object"):
        parse_cloud_push(payload)


@pytest.mark.parametrize(
    "commit",
    [HEAD.upper(), HEAD[:12], HEAD + "0", "g" * 40, "refs/heads/main"],
    ids=["upper-case", "short", "too-long", "not-hex", "ref-name"],
)
def test_invalid_new_commit_rejected(commit):
    # Given a new commit id that is not 40 lower-case hex digits
    payload = push_payload(change(ref_state("main", commit), ref_state("main", PREVIOUS)))

    # When it is read
    with pytest.raises(PayloadError) as raised:
        parse_cloud_push(payload)

    # Then the error names the field and shows the value
    assert "target.hash" in str(raised.value)
    assert commit[:20] in str(raised.value)


def test_invalid_old_commit_rejected():
    # Given a previous commit id that is not a commit id
    payload = push_payload(change(ref_state("main", HEAD), ref_state("main", "not-a-commit")))

    # When it is read
    # Then the error names the field and shows the value
    with pytest.raises(PayloadError, match=r"target\.hash .*'not-a-commit'"):
        parse_cloud_push(payload)


def test_commit_id_of_wrong_type_rejected():
    # Given a new commit id that is a number
    change_data = branch_update()
    change_data["new"]["target"]["hash"] = 1234
    payload = push_payload(change_data)

    # When it is read
    # Then PayloadError is raised, not TypeError
    with pytest.raises(PayloadError, match="hash"):
        parse_cloud_push(payload)


def without(change_data: dict, *path: str) -> dict:
    """Return change_data with new.<path> removed."""
    container = change_data["new"]
    for key in path[:-1]:
        container = container[key]
    del container[path[-1]]
    return change_data


def with_ref_type(change_data: dict, ref_type) -> dict:
    change_data["new"]["type"] = ref_type
    return change_data


def with_commit(change_data: dict, state: str, commit: str) -> dict:
    change_data[state]["target"]["hash"] = commit
    return change_data


# Each case: how the change is broken, and the full path of the field at fault.
BROKEN_CHANGES = {
    "no-name": (lambda data: without(data, "name"), "push.changes[0].new.name"),
    "no-type": (lambda data: without(data, "type"), "push.changes[0].new.type"),
    "empty-type": (lambda data: with_ref_type(data, ""), "push.changes[0].new.type"),
    "null-type": (lambda data: with_ref_type(data, None), "push.changes[0].new.type"),
    "no-target": (lambda data: without(data, "target"), "push.changes[0].new.target"),
    "no-hash": (lambda data: without(data, "target", "hash"), "push.changes[0].new.target.hash"),
    "bad-new-hash": (lambda data: with_commit(data, "new", HEAD.upper()), "push.changes[0].new.target.hash"),
    "bad-old-hash": (lambda data: with_commit(data, "old", "not-a-commit"), "push.changes[0].old.target.hash"),
}


@pytest.mark.parametrize("case", BROKEN_CHANGES.values(), ids=BROKEN_CHANGES.keys())
def test_broken_change_raises(case):
    # Given a change that lacks a required field or has an invalid one
    break_change, field = case
    payload = push_payload(break_change(branch_update()))

    # When it is read
    with pytest.raises(PayloadError) as raised:
        parse_cloud_push(payload)

    # Then the error mentions the field's own name
    assert field.rsplit(".", 1)[-1] in str(raised.value)


@pytest.mark.parametrize("case", BROKEN_CHANGES.values(), ids=BROKEN_CHANGES.keys())
def test_broken_change_named_with_path(case):
    # Given a change that lacks a required field or has an invalid one
    break_change, field = case
    payload = push_payload(break_change(branch_update()))

    # When it is read
    with pytest.raises(PayloadError) as raised:
        parse_cloud_push(payload)

    # Then the error names the field with its place in the payload
    assert field in str(raised.value)


def test_parsing_does_not_change_payload():
    # Given a payload with several changes
    payload = push_payload(branch_update(), change(None, ref_state("feature/old", OTHER)))
    original = copy.deepcopy(payload)

    # When it is read
    parse_cloud_push(payload)

    # Then the payload is left as it was
    assert payload == original


# Bitbucket Data Center repo:refs_changed

ZERO = "0" * 40


def data_center_change(ref_id: str, from_hash: str, to_hash: str, change_type: str, ref_type: str = "BRANCH") -> dict:
    return {
        "ref": {"id": ref_id, "displayId": ref_id.split("/", 2)[-1], "type": ref_type},
        "refId": ref_id,
        "fromHash": from_hash,
        "toHash": to_hash,
        "type": change_type,
    }


def data_center_payload(*changes: dict) -> dict:
    return {
        "eventKey": "repo:refs_changed",
        "date": "2024-03-05T14:41:12+0000",
        "actor": {"name": "grace", "emailAddress": "grace@example.com", "displayName": "Grace Hopper", "slug": "grace"},
        "repository": {"slug": "weather-stations", "id": 84, "project": {"key": "WX", "id": 21}},
        "changes": list(changes),
    }


def test_data_center_update():
    # Given a Data Center push that updates a branch
    payload = data_center_payload(data_center_change("refs/heads/main", PREVIOUS, HEAD, "UPDATE"))

    # When it is read
    push = parse_push("repo:refs_changed", payload)

    # Then the repository is PROJECT/slug and the actor's address is kept
    assert push.product == "data-center"
    assert push.repository == "WX/weather-stations"
    assert push.repository_uuid == "data-center:84"
    assert push.actor_name == "Grace Hopper"
    assert push.actor_email == "grace@example.com"
    assert push.changes[0].ref == "refs/heads/main"
    assert push.changes[0].ref_name == "main"
    assert push.changes[0].commit == HEAD
    assert push.changes[0].previous_commit == PREVIOUS


def test_data_center_added_branch():
    # Given a Data Center push that adds a branch, with 40 zeros as fromHash
    payload = data_center_payload(data_center_change("refs/heads/feature/readings", ZERO, HEAD, "ADD"))

    # When it is read
    push = parse_data_center_push(payload)

    # Then the change has no previous commit
    assert push.changes[0].previous_commit is None
    assert push.changes[0].ref_name == "feature/readings"


@pytest.mark.parametrize(
    ("change_type", "to_hash"),
    [("DELETE", ZERO), ("DELETE", HEAD), ("UPDATE", ZERO)],
    ids=["delete", "delete-with-hash", "zero-to-hash"],
)
def test_data_center_deletion_ignored(change_type, to_hash):
    # Given a Data Center push that deletes a branch
    payload = data_center_payload(data_center_change("refs/heads/feature/old", PREVIOUS, to_hash, change_type))

    # When it is read
    push = parse_data_center_push(payload)

    # Then nothing is built and the reason names the ref
    assert push.changes == []
    assert push.ignored_changes == ["ref refs/heads/feature/old was deleted"]


def test_data_center_tag():
    # Given a Data Center push that adds a tag
    payload = data_center_payload(data_center_change("refs/tags/v1.0", ZERO, HEAD, "ADD", ref_type="TAG"))

    # When it is read
    push = parse_data_center_push(payload)

    # Then the change is a tag
    assert push.changes[0].ref == "refs/tags/v1.0"
    assert push.changes[0].ref_type == "tag"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (data_center_change("refs/heads/main", PREVIOUS, HEAD, "MERGE"), "changes[0].type"),
        (data_center_change("refs/heads/main", PREVIOUS, HEAD, "UPDATE", ref_type="BOOKMARK"), "changes[0].ref.type"),
        (data_center_change("refs/tags/v1.0", PREVIOUS, HEAD, "UPDATE", ref_type="BRANCH"), "changes[0].ref.id"),
        (data_center_change("refs/heads/main", PREVIOUS, "HEAD", "UPDATE"), "toHash"),
    ],
    ids=["change-type", "ref-type", "ref-id-prefix", "to-hash"],
)
def test_data_center_invalid_change_named(change, field):
    # Given a Data Center change with an invalid field
    payload = data_center_payload(change)

    # When it is read
    # Then the error names the field
    with pytest.raises(PayloadError, match=re.escape(field)):
        parse_data_center_push(payload)


def test_data_center_missing_project_named():
    # Given a Data Center payload without repository.project.key
    payload = data_center_payload(data_center_change("refs/heads/main", PREVIOUS, HEAD, "UPDATE"))
    del payload["repository"]["project"]["key"]

    # When it is read
    # Then the error names the field
    with pytest.raises(PayloadError, match=r"missing field repository\.project\.key"):
        parse_data_center_push(payload)


def test_parse_push_rejects_other_event_key():
    # Given a payload and an event key that is not a push
    payload = push_payload(branch_update())

    # When it is read as that event
    # Then it is rejected with the key in the message
    with pytest.raises(ValueError, match="pullrequest:created"):
        parse_push("pullrequest:created", payload)
