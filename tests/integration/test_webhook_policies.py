"""Webhook policies that need a changed stack: unsigned deliveries and missing tables."""

from __future__ import annotations

import logging

import boto3
import pytest

pytest.register_assert_rewrite("fixtures_handlers")

from fixtures_handlers import (  # noqa: E402 - after the assert rewrite above
    http_answer,
    lambda_context,
    load_event,
    stored_items,
)

from bitbatch.settings import SettingsError  # noqa: E402
from handlers import webhook  # noqa: E402

pytest_plugins = ["fixtures_handlers"]


def call_webhook(event: dict) -> tuple[int, dict]:
    return http_answer(webhook.lambda_handler(event, lambda_context("bitbatch-webhook")))


def unsigned(event: dict) -> dict:
    event["headers"].pop("x-hub-signature")
    return event


def test_disabled_policy_accepts_unsigned_push(resources, fake_transform, monkeypatch, caplog):
    # Given a stack deployed with SignaturePolicy disabled and no secret
    monkeypatch.setenv("SIGNATURE_POLICY", "disabled")
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", "")
    webhook.dependencies.cache_clear()

    # When an unsigned push arrives at a cold function
    with caplog.at_level(logging.WARNING):
        status, answer = call_webhook(unsigned(load_event("webhook-push.json")))

    # Then it starts a run, and the cold start warned that signatures are off
    assert status == 202
    assert len(answer["runs"]) == 1
    assert any("SIGNATURE_POLICY=disabled" in record.getMessage() for record in caplog.records)


def test_required_policy_needs_secret_arn(resources, monkeypatch):
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", "")
    webhook.dependencies.cache_clear()

    with pytest.raises(SettingsError, match="WEBHOOK_SECRET_ARN"):
        call_webhook(load_event("webhook-push.json"))


def test_missing_idempotency_table_returns_503(resources, fake_transform):
    # Given the duplicate-check table cannot be reached
    boto3.client("dynamodb").delete_table(TableName=resources.idempotency_table)

    # When a push arrives
    status, answer = call_webhook(load_event("webhook-push.json"))

    # Then Bitbucket is asked to retry and nothing started
    assert status == 503
    assert "retr" in answer["error"]
    assert fake_transform.received() == []


def test_missing_runs_table_returns_503_then_retry_works(resources, fake_transform):
    # Given the runs table is gone when the push first arrives
    dynamodb = boto3.client("dynamodb")
    description = dynamodb.describe_table(TableName=resources.runs_table)["Table"]
    dynamodb.delete_table(TableName=resources.runs_table)
    status, _ = call_webhook(load_event("webhook-push.json"))
    assert status == 503

    # When the table is back and Bitbucket sends the push again
    dynamodb.create_table(
        TableName=resources.runs_table,
        AttributeDefinitions=description["AttributeDefinitions"],
        KeySchema=description["KeySchema"],
        BillingMode="PAY_PER_REQUEST",
    )
    status, answer = call_webhook(load_event("webhook-push.json"))

    # Then the retry starts the run: the failed attempt left no duplicate record behind
    assert status == 202
    assert len(stored_items(resources)) == 1
    assert [event["run_id"] for event in fake_transform.received()] == [answer["runs"][0]["run_id"]]
