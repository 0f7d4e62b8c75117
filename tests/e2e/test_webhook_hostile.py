"""Hostile deliveries to the webhook (odd payloads and headers, replays, bursts), sent over
HTTP to the local stack, or to the handler where HTTP cannot carry the input.

The promise under test: no outside input crashes the handler, loses a push, starts a
run twice, lets an unsigned or wrongly signed delivery start a run, or leaks the
secret. A bad input gets a 4xx that names the value, and a 5xx only when a retry can
help. Cases where the product breaks the promise are marked xfail(strict=True).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bitbatch import links
from bitbatch.model import CLOUD, DATA_CENTER
from bitbatch.observability import metrics
from bitbatch.signature import sign
from bitbatch_local.api import build_event
from bitbatch_local.lambdas import LocalFunction
from bitbatch_local.payloads import cloud_push_payload, data_center_push_payload
from bitbatch_local.samplerepo import build_sample_repository
from bitbatch_local.stack import FUNCTION_NAMES, LocalStack
from handlers import transform

pytestmark = pytest.mark.e2e

CLOUD_REPOSITORY = "weather/stations"
DATA_CENTER_PROJECT = "DATA"
ALLOWED_REPOSITORIES = "weather/*,DATA/*"
CLOUD_PUSH = "repo:push"
DATA_CENTER_PUSH = "repo:refs_changed"
# Limit on the wait for queued transform starts. The stand-in returns at once, so this is only a safety net.
IDLE_TIMEOUT_SECONDS = 30


class TransformStandIn:
    """Stand-in for the transform function that records the run id of every start.

    Only runs of a ref passed to real_transform_for go on to the real transform,
    so most tests check what the webhook started without cloning anything.
    """

    def __init__(self, stack: LocalStack):
        self._stack = stack
        self._lock = threading.Lock()
        self._run_ids: list[str] = []
        self._real_refs: set[str] = set()

    def __call__(self, event: dict, context) -> dict:
        run_id = event["run_id"]
        with self._lock:
            self._run_ids.append(run_id)
            real_refs = set(self._real_refs)
        # Look the run up only while a test requests the real transform, so a burst of starts stays cheap.
        if real_refs and self._stack.get_run(run_id).ref in real_refs:
            return transform.lambda_handler(event, context)
        return {"status": "recorded"}

    @contextmanager
    def real_transform_for(self, ref: str) -> Iterator[None]:
        with self._lock:
            self._real_refs.add(ref)
        try:
            yield
        finally:
            with self._lock:
                self._real_refs.discard(ref)

    def started(self) -> list[str]:
        """Return the run id of every transform start so far, once no start is queued."""
        if not self._stack.lambdas.wait_idle(IDLE_TIMEOUT_SECONDS):
            raise TimeoutError(f"transform starts were still queued after {IDLE_TIMEOUT_SECONDS} s")
        with self._lock:
            return list(self._run_ids)


@dataclass
class Webhook:
    stack: LocalStack
    transforms: TransformStandIn
    sample_path: Path
    head_commit: str
    previous_commit: str


@pytest.fixture(scope="module")
def webhook(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    sample = build_sample_repository(root / CLOUD_REPOSITORY)
    (root / DATA_CENTER_PROJECT).mkdir()
    (root / DATA_CENTER_PROJECT / "stations").symlink_to(sample.path, target_is_directory=True)
    work = tmp_path_factory.mktemp("work")

    with LocalStack(
        root, work, allowed_repositories=ALLOWED_REPOSITORIES, function_log_path=work / "functions.log"
    ) as stack:
        # Metrics reads POWERTOOLS_METRICS_NAMESPACE when bitbatch.observability is first imported. Under
        # pytest that is at collection, before LocalStack sets it, and Powertools then raises at the
        # 100th metric of one invocation. Set it as a Lambda cold start would.
        saved_namespace = metrics.namespace
        metrics.namespace = os.environ["POWERTOOLS_METRICS_NAMESPACE"]
        transforms = TransformStandIn(stack)
        # Same settings as the stack's own registration, so a let-through run retries and fails as in AWS.
        stack.lambdas.register(
            LocalFunction(
                FUNCTION_NAMES["transform"],
                transforms,
                timeout_seconds=900,
                max_retry_attempts=2,
                on_failure=FUNCTION_NAMES["notifier"],
            )
        )
        try:
            yield Webhook(stack, transforms, sample.path, sample.head_commit, sample.previous_commit)
        finally:
            metrics.namespace = saved_namespace


# Requests and payloads


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict[str, str]
    raw: bytes


def post(target: Webhook, body: bytes, headers: dict[str, str], path: str = "/webhook") -> Reply:
    """POST exactly these headers and bytes, which urllib would not do: it adds a Content-Type of its own."""
    address = urlsplit(target.stack.api_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        reply_headers = {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
    try:
        parsed = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        parsed = {}
    return Reply(response.status, parsed if isinstance(parsed, dict) else {}, reply_headers, raw)


def signed_headers(
    target: Webhook, body: bytes, event_key: str = CLOUD_PUSH, content_type: str = "application/json"
) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "X-Event-Key": event_key,
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Hub-Signature": sign(target.stack.webhook_secret, body),
    }


def deliver(target: Webhook, payload: dict, event_key: str = CLOUD_PUSH) -> Reply:
    body = json.dumps(payload).encode()
    return post(target, body, signed_headers(target, body, event_key))


def fresh_ref(label: str) -> str:
    """Return a branch name no other test pushes, so no duplicate check interferes."""
    return f"{label}-{uuid.uuid4().hex[:8]}"


def cloud_push(target: Webhook, ref_name: str, commit: str | None = None, full_name: str = CLOUD_REPOSITORY) -> dict:
    return cloud_push_payload(
        target.sample_path,
        full_name,
        ref_name,
        commit or target.head_commit,
        target.previous_commit,
        target.stack.git.base_url,
    )


def data_center_push(target: Webhook, ref_name: str) -> dict:
    payload = data_center_push_payload(DATA_CENTER_PROJECT, "stations", ref_name, target.head_commit, target.previous_commit)
    # A repository id of its own keeps the duplicate check of one case away from the others.
    payload["repository"]["id"] = uuid.uuid4().int % 10**9
    return payload


def first_change(payload: dict) -> dict:
    return payload["push"]["changes"][0]


def run_ids(reply: Reply) -> list[str]:
    return [run["run_id"] for run in reply.body.get("runs", [])]


# Payload shapes


@pytest.mark.parametrize("body", [b"[1, 2]", b'"main"', b"null", b"42", b"true"], ids=["array", "string", "null", "number", "bool"])
def test_non_object_json_gets_400(webhook, body):
    started_before = webhook.transforms.started()

    reply = post(webhook, body, signed_headers(webhook, body))

    assert reply.status == 400
    assert "JSON object" in reply.body["error"]
    assert webhook.transforms.started() == started_before


@pytest.mark.parametrize("body", [b"", b"   ", b"{not json", b'{"push": '], ids=["empty", "blank", "broken", "cut"])
def test_unparsable_body_gets_400(webhook, body):
    reply = post(webhook, body, signed_headers(webhook, body))

    assert reply.status == 400
    assert "not valid JSON" in reply.body["error"]


def set_field(path: str, value):
    """Return a change to a push payload that sets the value at a dotted path (digits index lists)."""

    def change(payload: dict) -> None:
        *parents, last = path.split(".")
        container = payload
        for key in parents:
            container = container[int(key)] if key.isdigit() else container[key]
        container[int(last) if last.isdigit() else last] = value

    return change


CLOUD_FIELD_CASES = [
    ("push-is-list", set_field("push", []), "push"),
    ("push-is-string", set_field("push", "changes"), "push"),
    ("changes-is-object", set_field("push.changes", {}), "push.changes"),
    ("changes-is-null", set_field("push.changes", None), "push.changes"),
    ("change-is-null", set_field("push.changes.0", None), "push.changes[0]"),
    ("change-is-list", set_field("push.changes.0", []), "push.changes[0]"),
    ("new-is-list", set_field("push.changes.0.new", []), "push.changes[0].new"),
    ("new-is-string", set_field("push.changes.0.new", "main"), "push.changes[0].new"),
    ("new-is-false", set_field("push.changes.0.new", False), "push.changes[0].new"),
    ("ref-type-bookmark", set_field("push.changes.0.new.type", "bookmark"), "push.changes[0].new.type"),
    ("ref-name-number", set_field("push.changes.0.new.name", 7), "push.changes[0].new.name"),
    ("ref-name-empty", set_field("push.changes.0.new.name", ""), "push.changes[0].new.name"),
    ("target-null", set_field("push.changes.0.new.target", None), "push.changes[0].new.target"),
    ("hash-upper-case", set_field("push.changes.0.new.target.hash", "7DE5C744462044A30D3F711293F80FF03ADF7D79"), "new.target.hash"),
    ("hash-short", set_field("push.changes.0.new.target.hash", "7de5c74"), "new.target.hash"),
    ("hash-number", set_field("push.changes.0.new.target.hash", 1234), "new.target.hash"),
    ("old-hash-invalid", set_field("push.changes.0.old.target.hash", "zz"), "push.changes[0].old.target.hash"),
    ("full-name-list", set_field("repository.full_name", ["weather", "stations"]), "repository.full_name"),
    ("repository-string", set_field("repository", CLOUD_REPOSITORY), "repository"),
]


@pytest.mark.parametrize(("change", "field"), [case[1:] for case in CLOUD_FIELD_CASES], ids=[case[0] for case in CLOUD_FIELD_CASES])
def test_cloud_field_of_wrong_type_gets_400(webhook, change, field):
    # Given a push with one field of the wrong type or value
    payload = cloud_push(webhook, fresh_ref("shape"))
    change(payload)
    started_before = webhook.transforms.started()

    # When it is delivered, correctly signed
    reply = deliver(webhook, payload)

    # Then the response names the field and nothing started
    assert reply.status == 400
    assert field in reply.body["error"]
    assert webhook.transforms.started() == started_before


def test_one_bad_change_rejects_whole_push(webhook):
    # Given a push whose first change is valid and whose second is not
    payload = cloud_push(webhook, fresh_ref("good"))
    bad = copy.deepcopy(first_change(payload))
    bad["new"]["type"] = "bookmark"
    payload["push"]["changes"].append(bad)
    started_before = webhook.transforms.started()

    reply = deliver(webhook, payload)

    # Then no run starts, so a corrected redelivery starts every ref
    assert reply.status == 400
    assert "push.changes[1].new.type" in reply.body["error"]
    assert webhook.transforms.started() == started_before


def test_deeply_nested_json_gets_400(webhook):
    # Given a 100 KB push carrying an extra field nested 50,000 levels deep
    payload = cloud_push(webhook, fresh_ref("nested"))
    body = json.dumps(payload).encode()[:-1] + b', "extra": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"

    # When it arrives unsigned, it is rejected before parsing
    unsigned = post(webhook, body, {"Content-Type": "application/json", "X-Event-Key": CLOUD_PUSH})
    assert unsigned.status == 401

    # When it arrives correctly signed
    reply = post(webhook, body, signed_headers(webhook, body))

    # Then the response is a 400 naming the problem
    assert reply.status == 400
    assert "JSON" in reply.body.get("error", "")


@pytest.mark.parametrize(
    ("encode", "content_type"),
    [
        (lambda text: text.encode("utf-8").replace("Developer".encode(), b"Dev\xffloper"), "application/json"),
        (lambda text: text.encode("latin-1"), "application/json; charset=latin-1"),
        (lambda text: text.encode("utf-8")[:-3] + b"\xe2\x82", "application/json"),
    ],
    ids=["invalid-byte", "latin-1", "cut-sequence"],
)
def test_non_utf8_body_gets_400(webhook, encode, content_type):
    # Given a correctly signed body that is not UTF-8
    payload = cloud_push(webhook, fresh_ref("encoding"))
    payload["actor"]["display_name"] = "Développeur Local Developer"
    body = encode(json.dumps(payload, ensure_ascii=False))
    started_before = webhook.transforms.started()

    reply = post(webhook, body, signed_headers(webhook, body, content_type=content_type))

    # Then the error states that the body must be UTF-8, and nothing started
    assert reply.status == 400
    assert "utf-8" in reply.body["error"].lower()
    assert webhook.transforms.started() == started_before


def test_byte_order_mark_is_accepted(webhook):
    # RFC 8259 section 8.1 lets a parser ignore a leading BOM. The signature still covers the exact bytes.
    payload = cloud_push(webhook, fresh_ref("bom"))
    body = b"\xef\xbb\xbf" + json.dumps(payload).encode()

    reply = post(webhook, body, signed_headers(webhook, body))

    assert reply.status == 202
    assert [run["commit"] for run in reply.body["runs"]] == [webhook.head_commit]


def test_nan_and_infinity_literals(webhook):
    # Given pushes with the non-standard NaN and Infinity literals Python's parser accepts
    ref_name = fresh_ref("nan")
    payload = cloud_push(webhook, ref_name)
    body = json.dumps(payload).encode().replace(b'"forced": false', b'"forced": NaN').replace(
        b'"truncated": false', b'"truncated": Infinity'
    )
    in_flags = post(webhook, body, signed_headers(webhook, body))

    hash_payload = cloud_push(webhook, fresh_ref("nan-hash"))
    body = json.dumps(hash_payload).encode().replace(f'"hash": "{webhook.head_commit}"'.encode(), b'"hash": NaN', 1)
    in_hash = post(webhook, body, signed_headers(webhook, body))

    # Then flags with such values still run at the pushed commit, and a hash of NaN is named
    assert in_flags.status == 202
    assert in_flags.body["runs"][0]["ref"] == f"refs/heads/{ref_name}"
    assert in_hash.status == 400
    assert "new.target.hash" in in_hash.body["error"]


def test_duplicate_keys_read_once(webhook):
    # Given bodies that name the repository twice: the parser keeps the last value
    payload = cloud_push(webhook, fresh_ref("duplicate-key"))
    body = json.dumps(payload).encode()
    allowed_last = body.replace(b'"repository": {', b'"repository": {"full_name": "other/stations"}, "repository": {', 1)
    other_last = b'{"repository": {"full_name": "weather/stations"}, ' + json.dumps(
        {**payload, "repository": {**payload["repository"], "full_name": "other/stations"}}
    ).encode()[1:]

    allowed_reply = post(webhook, allowed_last, signed_headers(webhook, allowed_last))
    other_reply = post(webhook, other_last, signed_headers(webhook, other_last))

    # Then the allow list and the run read the same value
    assert allowed_reply.status == 202
    assert allowed_reply.body["runs"][0]["repository"] == CLOUD_REPOSITORY
    assert other_reply.status == 403
    assert "other/stations" in other_reply.body["error"]


def test_many_changes_start_one_run_each(webhook):
    # Given one push of 500 new branches, all at the same commit (about 170 KB)
    payload = cloud_push(webhook, "unused")
    template = first_change(payload)
    template["old"] = None
    template["commits"] = []
    template["new"]["target"] = {"type": "commit", "hash": webhook.head_commit}
    prefix = fresh_ref("many")
    payload["push"]["changes"] = []
    for index in range(500):
        change = copy.deepcopy(template)
        change["new"]["name"] = f"{prefix}/{index}"
        payload["push"]["changes"].append(change)
    started_before = len(webhook.transforms.started())

    # When it is delivered, and then delivered again
    first = deliver(webhook, payload)
    second = deliver(webhook, payload)

    # Then each branch got one run, started once, and the redelivery started nothing
    assert first.status == 202
    assert [run["ref"] for run in first.body["runs"]] == [f"refs/heads/{prefix}/{index}" for index in range(500)]
    assert len(set(run_ids(first))) == 500
    assert sorted(webhook.transforms.started()[started_before:]) == sorted(run_ids(first))
    assert second.status == 200
    assert second.body["duplicate"] is True
    assert run_ids(second) == run_ids(first)


@pytest.mark.parametrize("field", ["new.name", "actor.display_name"])
def test_oversized_value_gets_400(webhook, field):
    # Given a push under the 1 MiB limit with one value of 450,000 characters
    payload = cloud_push(webhook, fresh_ref("long"))
    if field == "new.name":
        first_change(payload)["new"]["name"] = "x" * 450_000
    else:
        payload["actor"]["display_name"] = "x" * 450_000

    reply = deliver(webhook, payload)

    # Then a ref name gets a short 400 naming the field, and a display name is cut
    # to 255 characters: it only labels the run, so the push still runs
    if field == "new.name":
        assert reply.status == 400
        assert field in reply.body["error"]
        assert len(reply.raw) < 1000
    else:
        assert reply.status == 202
        run = webhook.stack.get_run(reply.body["runs"][0]["run_id"])
        assert run.pusher_name == "x" * 255


def test_unicode_ref_starts_run(webhook):
    ref_name = fresh_ref("fëature/ünïcode-✓")

    reply = deliver(webhook, cloud_push(webhook, ref_name))

    assert reply.status == 202
    assert reply.body["runs"][0]["ref"] == f"refs/heads/{ref_name}"


@pytest.mark.parametrize("ref_name", ["has space", "a..b", "line\nbreak"], ids=["space", "dot-dot", "newline"])
def test_invalid_git_ref_name_gets_400(webhook, ref_name):
    started_before = webhook.transforms.started()

    reply = deliver(webhook, cloud_push(webhook, f"{ref_name}-{uuid.uuid4().hex[:6]}"))

    assert reply.status == 400
    assert "push.changes[0].new.name" in reply.body.get("error", "")
    assert webhook.transforms.started() == started_before


def test_control_characters_in_ref_stay_out_of_email(webhook):
    # Given a push whose ref name carries a CR LF and a Bcc header, run by the real transform
    ref_name = fresh_ref("inject") + "\r\nBcc: intruder@example.com"

    with webhook.transforms.real_transform_for(f"refs/heads/{ref_name}"):
        reply = deliver(webhook, cloud_push(webhook, ref_name))
        run = webhook.stack.wait_for_run(run_ids(reply)[0]) if reply.status == 202 else None

    # Then either the webhook rejects the name, or the email that follows has no added header or recipient
    assert reply.status in (202, 400)
    if run is not None:
        emails = [email for email in webhook.stack.sent_emails() if run.run_id in email.text]
        assert len(emails) == 1
        assert "\n" not in emails[0].subject
        assert "\r" not in emails[0].subject
        assert "intruder@example.com" not in emails[0].recipients


# Repository names and the clone URL


@pytest.mark.parametrize(
    ("product", "name"),
    [
        (CLOUD, "weather/../DATA/stations"),
        (CLOUD, "weather/evil.example/stations"),
        (CLOUD, "weather/x@evil.example"),
        (CLOUD, "weather/%2e%2e%2fDATA"),
        (DATA_CENTER, "DATA/../weather"),
    ],
)
def test_repository_name_outside_pattern_rejected(webhook, product, name):
    # Given a push from a name that is not workspace/slug (or PROJECT/slug) but matches the allow list
    if product == CLOUD:
        payload = cloud_push(webhook, fresh_ref("name"), full_name=name)
        payload["repository"]["uuid"] = "{" + str(uuid.uuid4()) + "}"
        reply = deliver(webhook, payload)
    else:
        payload = data_center_push(webhook, fresh_ref("name"))
        payload["repository"]["project"]["key"], payload["repository"]["slug"] = name.split("/", 1)
        reply = deliver(webhook, payload, DATA_CENTER_PUSH)

    # Then it is rejected with the name
    assert reply.status in (400, 403)
    assert name in reply.body.get("error", "")


@pytest.mark.parametrize(
    "name",
    [
        "evil.example/stations",
        "//evil.example/stations",
        "@evil.example/stations",
        "user:password@evil.example/stations",
        "evil.example:443/stations",
        "http://evil.example/stations",
        "weather/../../evil.example/stations",
        "weather/%2F%2Fevil.example",
        "weather/stations?host=evil.example#x",
    ],
)
@pytest.mark.parametrize("product", [CLOUD, DATA_CENTER])
def test_clone_url_stays_on_configured_host(webhook, product, name):
    # Given the configured base URL and a repository name with a host in it
    base_url = webhook.stack.git.base_url

    # When the transform's clone URL is built for it
    clone_url = links.clone_url(product, name, base_url, base_url)

    # Then scheme, host and port are the configured ones, and the name adds exactly two path segments
    parts, base = urlsplit(clone_url), urlsplit(base_url)
    assert (parts.scheme, parts.hostname, parts.port) == (base.scheme, base.hostname, base.port)
    assert parts.username is None
    assert parts.query == ""
    assert parts.fragment == ""
    prefix = "/scm/" if product == DATA_CENTER else "/"
    assert parts.path.startswith(prefix)
    assert len(parts.path.removeprefix(prefix).split("/")) == 2


def test_host_like_slug_fetches_from_git_server(webhook):
    # Given an allowed repository whose slug looks like a host name, run by the real transform
    ref_name = fresh_ref("host-like")
    payload = cloud_push(webhook, ref_name, full_name="weather/evil.example")
    payload["repository"]["uuid"] = "{" + str(uuid.uuid4()) + "}"

    # When it is delivered
    with webhook.transforms.real_transform_for(f"refs/heads/{ref_name}"):
        reply = deliver(webhook, payload)
        run = webhook.stack.wait_for_run(run_ids(reply)[0])

    # Then the fetch went to the configured git server, which has no such repository
    assert reply.status == 202
    assert run.status == "FAILED"
    requested = [request.path for request in webhook.stack.git.requests]
    assert "/weather/evil.example.git/info/refs" in requested


@pytest.mark.parametrize("link", ["javascript:alert(document.domain)", "https://evil.example/login"], ids=["script", "foreign-host"])
def test_commit_link_from_payload_checked(webhook, link):
    payload = cloud_push(webhook, fresh_ref("link"))
    first_change(payload)["new"]["target"]["links"]["html"]["href"] = link

    reply = deliver(webhook, payload)
    run = webhook.stack.get_run(run_ids(reply)[0])

    assert reply.status == 202
    assert run.commit_url is None or urlsplit(run.commit_url).hostname == urlsplit(webhook.stack.git.base_url).hostname


# Data Center payloads


def _data_center_ref(payload: dict) -> dict:
    return payload["changes"][0]


DATA_CENTER_CASES = [
    ("missing-project", lambda p: p["repository"].pop("project"), 400, "repository.project"),
    ("project-key-number", lambda p: p["repository"]["project"].update(key=21), 400, "repository.project.key"),
    ("changes-object", lambda p: p.update(changes={}), 400, "changes"),
    ("type-merge", lambda p: _data_center_ref(p).update(type="MERGE"), 400, "changes[0].type"),
    ("type-lower-case", lambda p: _data_center_ref(p).update(type="update"), 400, "changes[0].type"),
    ("upper-case-hash", lambda p: _data_center_ref(p).update(toHash=_data_center_ref(p)["toHash"].upper()), 400, "changes[0].toHash"),
    ("ref-is-string", lambda p: _data_center_ref(p).update(ref="refs/heads/main"), 400, "changes[0].ref.id"),
    ("ref-type-lower-case", lambda p: _data_center_ref(p)["ref"].update(type="branch"), 400, "changes[0].ref.type"),
    ("tag-id-as-branch", lambda p: _data_center_ref(p)["ref"].update(id="refs/tags/v1"), 400, "changes[0].ref.id"),
    ("zero-hash-update", lambda p: _data_center_ref(p).update(type="UPDATE", toHash="0" * 40), 200, "was deleted"),
    ("delete", lambda p: _data_center_ref(p).update(type="DELETE"), 200, "was deleted"),
]


@pytest.mark.parametrize(
    ("change", "status", "named"), [case[1:] for case in DATA_CENTER_CASES], ids=[case[0] for case in DATA_CENTER_CASES]
)
def test_data_center_shapes(webhook, change, status, named):
    payload = data_center_push(webhook, fresh_ref("dc"))
    change(payload)
    started_before = webhook.transforms.started()

    reply = deliver(webhook, payload, DATA_CENTER_PUSH)

    assert reply.status == status
    assert named in (reply.body.get("error") or reply.body.get("ignored"))
    assert webhook.transforms.started() == started_before


def test_data_center_odd_actor_starts_run(webhook):
    # Given Data Center pushes whose actor is a string, or has an address with a header in it
    string_actor = data_center_push(webhook, fresh_ref("dc-actor"))
    string_actor["actor"] = "grace"
    injected = data_center_push(webhook, fresh_ref("dc-address"))
    injected["actor"]["emailAddress"] = "grace@example.com\r\nBcc: intruder@example.com"
    created = data_center_push(webhook, fresh_ref("dc-created"))
    _data_center_ref(created).update(type="ADD", fromHash=None)

    replies = [deliver(webhook, payload, DATA_CENTER_PUSH) for payload in (string_actor, injected, created)]

    # Then each starts its run, and the injected address is not kept as a recipient
    assert [reply.status for reply in replies] == [202, 202, 202]
    assert webhook.stack.get_run(run_ids(replies[0])[0]).pusher_name == "unknown"
    assert webhook.stack.get_run(run_ids(replies[1])[0]).pusher_email is None
    assert webhook.stack.get_run(run_ids(replies[2])[0]).previous_commit is None


# Headers


def _hmac_hex(secret: str, body: bytes, algorithm) -> str:
    return hmac.new(secret.encode(), body, algorithm).hexdigest()


REJECTED_SIGNATURES = {
    "missing": lambda secret, body: None,
    "empty": lambda secret, body: "",
    "prefix-only": lambda secret, body: "sha256=",
    "sha1": lambda secret, body: "sha1=" + _hmac_hex(secret, body, hashlib.sha1),
    "no-prefix": lambda secret, body: _hmac_hex(secret, body, hashlib.sha256),
    "other-secret": lambda secret, body: sign(secret + "x", body),
    "other-body": lambda secret, body: sign(secret, body + b" "),
    "truncated": lambda secret, body: sign(secret, body)[:-2],
    "extended": lambda secret, body: sign(secret, body) + "00",
    "very-long": lambda secret, body: "sha256=" + "a" * 8000,
    "repeat-bad-first": lambda secret, body: sign(secret + "x", body) + "," + sign(secret, body),
    "repeat-good-first": lambda secret, body: sign(secret, body) + "," + sign(secret + "x", body),
    "repeat-same": lambda secret, body: sign(secret, body) + "," + sign(secret, body),
}


@pytest.mark.parametrize("make_signature", REJECTED_SIGNATURES.values(), ids=REJECTED_SIGNATURES.keys())
def test_bad_signature_gets_401(webhook, make_signature):
    # Given a fresh push whose X-Hub-Signature is missing or wrong (repeats are joined with commas, as API Gateway does)
    body = json.dumps(cloud_push(webhook, fresh_ref("signature"))).encode()
    headers = {"Content-Type": "application/json", "X-Event-Key": CLOUD_PUSH}
    signature = make_signature(webhook.stack.webhook_secret, body)
    if signature is not None:
        headers["X-Hub-Signature"] = signature
    started_before = webhook.transforms.started()

    reply = post(webhook, body, headers)

    # Then it is rejected, names the header, and starts nothing
    assert reply.status == 401
    assert "X-Hub-Signature" in reply.body["error"]
    assert webhook.transforms.started() == started_before


def test_upper_case_hex_signature_accepted(webhook):
    # The digest is the right HMAC in other letters, so the push must not be lost.
    body = json.dumps(cloud_push(webhook, fresh_ref("upper-hex"))).encode()
    headers = signed_headers(webhook, body)
    headers["X-Hub-Signature"] = "sha256=" + headers["X-Hub-Signature"].removeprefix("sha256=").upper()

    reply = post(webhook, body, headers)

    assert reply.status == 202


@pytest.mark.parametrize(
    ("content_type", "expected_status"),
    [
        ("APPLICATION/JSON", 202),
        ("application/json;charset=latin-1", 202),
        ("Application/Json ; charset=UTF-8", 202),
        (None, 415),
        ("", 415),
        ("text/json", 415),
        ("application/jsonp", 415),
        ("application/json,text/plain", 415),
    ],
    ids=["upper-case", "latin-1-ascii-body", "mixed-case", "missing", "empty", "text-json", "jsonp", "repeated"],
)
def test_media_type_variants(webhook, content_type, expected_status):
    body = json.dumps(cloud_push(webhook, fresh_ref("media"))).encode()
    headers = signed_headers(webhook, body)
    del headers["Content-Type"]
    if content_type is not None:
        headers["Content-Type"] = content_type

    reply = post(webhook, body, headers)

    assert reply.status == expected_status
    if expected_status == 415:
        assert "application/json" in reply.body["error"]


@pytest.mark.parametrize(
    ("event_key", "signed", "ignored"),
    [
        ("", True, "(no X-Event-Key)"),
        ("REPO:PUSH", True, "REPO:PUSH"),
        ("repo:push,repo:push", True, "repo:push,repo:push"),
        ("pullrequest:created", True, "pullrequest:created"),
        ("diagnostics:ping", True, "diagnostics:ping"),
        ("diagnostics:ping", False, "diagnostics:ping"),
    ],
    ids=["empty", "upper-case", "repeated", "pull-request", "ping-signed", "ping-unsigned"],
)
def test_event_key_variants_start_nothing(webhook, event_key, signed, ignored):
    # Given a valid push body sent under another event key
    body = json.dumps(cloud_push(webhook, fresh_ref("event-key"))).encode()
    headers = signed_headers(webhook, body, event_key)
    if not signed:
        del headers["X-Hub-Signature"]
    started_before = webhook.transforms.started()

    reply = post(webhook, body, headers)

    # Then the response marks it ignored, with the key, and nothing starts
    assert reply.status == 200
    assert reply.body["runs"] == []
    assert ignored in reply.body["ignored"]
    assert webhook.transforms.started() == started_before


def test_ping_with_wrong_signature_gets_401(webhook):
    body = b'{"test": true}'
    headers = {"Content-Type": "application/json", "X-Event-Key": "diagnostics:ping", "X-Hub-Signature": sign("wrong", body)}

    reply = post(webhook, body, headers)

    assert reply.status == 401


def _handler_event(target: Webhook, body: bytes) -> dict:
    """Return the API Gateway event for a signed push, as the local API builds it."""
    return build_event("POST", "/webhook", signed_headers(target, body), body, "ANY /webhook", "127.0.0.1")


def _invoke_webhook(target: Webhook, event: dict) -> tuple[int, dict]:
    """Call the webhook function with event, as API Gateway does, and return its status and JSON body."""
    result = target.stack.lambdas.invoke(FUNCTION_NAMES["webhook"], event)
    return result["statusCode"], json.loads(result["body"])


def test_base64_body_is_decoded_before_check(webhook):
    # Given the event API Gateway sends for a body it passes base64-encoded
    body = json.dumps(cloud_push(webhook, fresh_ref("base64"))).encode()
    event = _handler_event(webhook, body)
    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True

    status, response_body = _invoke_webhook(webhook, event)

    assert status == 202
    assert len(response_body["runs"]) == 1


def test_invalid_base64_body_gets_400(webhook):
    body = json.dumps(cloud_push(webhook, fresh_ref("bad-base64"))).encode()
    event = _handler_event(webhook, body)
    event["body"], event["isBase64Encoded"] = "eyJwdXNoIjp7fQ", True  # 14 characters, so the padding is missing

    status, response_body = _invoke_webhook(webhook, event)

    assert status in (400, 401)
    assert response_body["error"]


# Repeated deliveries


def test_redelivery_with_new_delivery_id_is_duplicate(webhook):
    # Given a push that started a run
    body = json.dumps(cloud_push(webhook, fresh_ref("replay"))).encode()
    first_headers = signed_headers(webhook, body)
    first = post(webhook, body, first_headers)
    started_before = webhook.transforms.started()

    # When Bitbucket sends it twice more, each time with a new delivery id
    later = [post(webhook, body, signed_headers(webhook, body)) for _ in range(2)]

    # Then both get the first run back, nothing new starts, and the run keeps the first delivery id
    assert first.status == 202
    assert [reply.status for reply in later] == [200, 200]
    assert [reply.body["duplicate"] for reply in later] == [True, True]
    assert [run_ids(reply) for reply in later] == [run_ids(first), run_ids(first)]
    assert webhook.transforms.started() == started_before
    assert webhook.stack.get_run(run_ids(first)[0]).delivery_id == first_headers["X-Request-UUID"]


def test_same_commit_on_two_refs_starts_two_runs(webhook):
    # Given one push that points two new branches at the same commit
    payload = cloud_push(webhook, fresh_ref("twin-a"))
    twin = copy.deepcopy(first_change(payload))
    twin["new"]["name"] = fresh_ref("twin-b")
    payload["push"]["changes"].append(twin)

    reply = deliver(webhook, payload)

    # Then each ref gets its own run, both started
    assert reply.status == 202
    assert len(set(run_ids(reply))) == 2
    assert set(run_ids(reply)) <= set(webhook.transforms.started())


def test_partly_repeated_push_starts_only_new_ref(webhook):
    # Given a run for one ref, reported as a duplicate on redelivery
    first_payload = cloud_push(webhook, fresh_ref("partial"))
    first = deliver(webhook, first_payload)
    assert deliver(webhook, first_payload).body["duplicate"] is True
    started_before = webhook.transforms.started()

    # When a push repeats that ref and commit and adds a second ref
    payload = copy.deepcopy(first_payload)
    added = copy.deepcopy(first_change(payload))
    added["new"]["name"] = fresh_ref("partial-added")
    payload["push"]["changes"].append(added)
    reply = deliver(webhook, payload)

    # Then the first ref keeps its run, and only the new ref starts one
    assert reply.status == 202
    assert "duplicate" not in reply.body
    assert run_ids(reply)[0] == run_ids(first)[0]
    assert webhook.transforms.started()[len(started_before) :] == run_ids(reply)[1:]


def test_same_ref_new_commit_after_duplicate_starts_run(webhook):
    # Given a ref whose push was already repeated once
    ref_name = fresh_ref("moved")
    first = deliver(webhook, cloud_push(webhook, ref_name, commit=webhook.previous_commit))
    repeated = deliver(webhook, cloud_push(webhook, ref_name, commit=webhook.previous_commit))

    # When the ref moves to another commit
    moved = deliver(webhook, cloud_push(webhook, ref_name, commit=webhook.head_commit))

    # Then that is a new run at the new commit
    assert first.status == 202
    assert repeated.status == 200
    assert moved.status == 202
    assert moved.body["runs"][0]["commit"] == webhook.head_commit
    assert run_ids(moved) != run_ids(first)


# Bursts


def test_concurrent_mixed_deliveries(webhook):
    # Given six different pushes, each sent three times, all 18 deliveries at once
    deliveries = []
    for index in range(6):
        body = json.dumps(cloud_push(webhook, fresh_ref(f"burst-{index}"))).encode()
        deliveries += [(index, body) for _ in range(3)]
    started_before = len(webhook.transforms.started())
    replies: dict[int, list[Reply]] = {index: [] for index in range(6)}
    lock = threading.Lock()
    barrier = threading.Barrier(len(deliveries))

    def send(index: int, body: bytes) -> None:
        barrier.wait()
        # Bitbucket retries a 503, which a push being recorded right now gets, so this client does too.
        # The local API listens with the standard library's backlog of 5, and a burst can see a
        # connection reset before the request reaches the webhook. Such a request is sent again.
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = post(webhook, body, signed_headers(webhook, body))
            except ConnectionResetError:
                reply = None
            if (reply is not None and reply.status != 503) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        with lock:
            replies[index].append(reply)

    threads = [threading.Thread(target=send, args=delivery) for delivery in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then each push started exactly one run, and every copy's response names it
    for index, push_replies in replies.items():
        statuses = sorted(reply.status if reply else 0 for reply in push_replies)
        assert statuses == [200, 200, 202], f"push {index}"
        assert len({tuple(run_ids(reply)) for reply in push_replies}) == 1, f"push {index}"
    started = webhook.transforms.started()[started_before:]
    assert len(started) == 6
    assert set(started) == {run_ids(push_replies[0])[0] for push_replies in replies.values()}


# The secret


def test_secret_stays_out_of_responses_and_logs(webhook):
    # Given wrongly signed deliveries, whose right signature only the webhook could compute
    secret = webhook.stack.webhook_secret
    rejected_bodies = [json.dumps(cloud_push(webhook, fresh_ref("secret"))).encode(), b"{not json", b"[]"]
    wrong_headers = {"Content-Type": "application/json", "X-Event-Key": CLOUD_PUSH, "X-Hub-Signature": "sha256=00"}
    rejected = [post(webhook, body, wrong_headers) for body in rejected_bodies]

    # And correctly signed deliveries that start a run, are unparsable or have the wrong shape
    signed_bodies = [json.dumps(cloud_push(webhook, fresh_ref("secret-signed"))).encode(), b"{not json!", b"[1]"]
    signed = [post(webhook, body, signed_headers(webhook, body)) for body in signed_bodies]
    log_text = webhook.stack.function_log_path.read_text(encoding="utf-8")

    # Then neither the secret nor a right signature for a rejected body appears in any response or log line
    assert [reply.status for reply in rejected] == [401, 401, 401]
    assert [reply.status for reply in signed] == [202, 400, 400]
    texts = [reply.raw.decode("utf-8", "replace") for reply in rejected + signed] + [log_text]
    digests = [sign(secret, body).removeprefix("sha256=") for body in rejected_bodies]
    for text in texts:
        assert secret not in text
        for digest in digests:
            assert digest not in text
