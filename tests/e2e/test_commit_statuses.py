"""Bitbucket build statuses posted for runs of both products, recorded by the local stand-in."""

from __future__ import annotations

import json
import urllib.request

import pytest

from bitbatch_local.payloads import (
    cloud_push_payload,
    data_center_push_payload,
    signed_data_center_delivery,
    signed_delivery,
)
from bitbatch_local.samplerepo import add_commit, build_sample_repository
from bitbatch_local.stack import LocalStack

pytestmark = pytest.mark.e2e

REPOSITORY = "weather/stations"


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    sample = build_sample_repository(root / REPOSITORY)
    (root / "DATA").mkdir()
    (root / "DATA" / "stations").symlink_to(sample.path, target_is_directory=True)
    return root, sample


@pytest.fixture(scope="module")
def stack(repos, tmp_path_factory):
    root, _ = repos
    work = tmp_path_factory.mktemp("work")
    with LocalStack(root, work, function_log_path=work / "functions.log") as running:
        yield running


def post(stack, body: bytes, headers: dict) -> dict:
    request = urllib.request.Request(stack.webhook_url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return json.loads(response.read())["runs"][0]


def calls_for(stack, commit: str):
    return [call for call in stack.build_statuses.calls if call.commit == commit]


def test_cloud_statuses_follow_successful_run(stack, repos):
    # Given a Bitbucket Cloud push of a commit whose job succeeds
    _, sample = repos
    payload = cloud_push_payload(sample.path, REPOSITORY, "main", sample.head_commit, None, stack.git.base_url)
    started = post(stack, *signed_delivery(payload, stack.webhook_secret))

    # When the run ends
    run = stack.wait_for_run(started["run_id"])

    # Then the commit got INPROGRESS, then SUCCESSFUL, under one key, linking to the run page
    assert run.status == "SUCCEEDED"
    calls = calls_for(stack, sample.head_commit)
    assert [call.product for call in calls] == ["cloud", "cloud"]
    assert [call.repository for call in calls] == [REPOSITORY, REPOSITORY]
    assert [call.body["state"] for call in calls] == ["INPROGRESS", "SUCCESSFUL"]
    assert {call.body["key"] for call in calls} == {"bitbatch"}
    assert all(len(call.body["key"]) <= 40 for call in calls)
    assert all(f"/runs/{run.run_id}?token=" in call.body["url"] for call in calls)
    assert calls[0].body["refname"] == "main"


def test_data_center_statuses_follow_failed_run(stack, repos):
    # Given a Data Center push of a commit whose JSON file the job rejects
    _, sample = repos
    commit = add_commit(sample.path, {"data/limits.json": '{"limit": }\n'}, "Add broken limits")
    payload = data_center_push_payload("DATA", "stations", "main", commit, sample.head_commit)
    started = post(stack, *signed_data_center_delivery(payload, stack.webhook_secret))

    # When the run ends
    run = stack.wait_for_run(started["run_id"])

    # Then the commit got INPROGRESS, then FAILED with the reason, on the Data Center path
    assert run.status == "FAILED"
    calls = calls_for(stack, commit)
    assert [call.product for call in calls] == ["data-center", "data-center"]
    assert [call.repository for call in calls] == ["DATA/stations", "DATA/stations"]
    assert [call.body["state"] for call in calls] == ["INPROGRESS", "FAILED"]
    assert "data/limits.json" in calls[1].body["description"]
    assert calls[1].body["ref"] == "refs/heads/main"


def test_content_failure_posts_failed_only(stack, repos):
    # Given a push whose bitbatch.yml is invalid, so no job ever starts
    _, sample = repos
    commit = add_commit(sample.path, {"bitbatch.yml": "job:\n  vcpu: 3\n"}, "Break the configuration")
    payload = cloud_push_payload(sample.path, REPOSITORY, "main", commit, None, stack.git.base_url)
    started = post(stack, *signed_delivery(payload, stack.webhook_secret))

    # When the run ends
    run = stack.wait_for_run(started["run_id"])

    # Then Bitbucket shows the commit FAILED and never received an INPROGRESS status
    assert run.status == "FAILED"
    assert [call.body["state"] for call in calls_for(stack, commit)] == ["FAILED"]
