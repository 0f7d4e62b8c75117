"""The run page function and the notifier's run page links, against moto's server over HTTP.

The page reads the run from DynamoDB, lists and presigns the output files on
S3 and reads the link key from Secrets Manager. The notifier reads the same
key and the API's URL from SSM to sign the link in each email.
"""

from __future__ import annotations

import copy
import json
import logging
import time
import urllib.request
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

pytest.register_assert_rewrite("fixtures_handlers")

from fixtures_handlers import (
    API_BASE_URL,
    JOB_LOG_GROUP,
    body_text,
    lambda_context,
    load_event,
    record_run,
    run_store,
    sent_messages,
)

from bitbatch.model import RunStatus, output_prefix
from bitbatch.run_links import check_token, make_token
from handlers import notifier, runs

pytest_plugins = ["fixtures_handlers"]

SAMPLE_EVENT = "run-page.json"
# The key that signs the token in events/run-page.json, as events/README.md documents.
SAMPLE_RUN_LINK_KEY = "bitbatch-sample-run-link-key"
SAMPLE_RUN_ID = "20240305T144112Z-3f9a1c0e2b7d"
OUTPUT_FILES = {
    "report.html": b"<!doctype html><title>report</title><p>data/stations.csv: 24 records</p>",
    "result.json": b'{"files": [{"path": "data/stations.csv", "records": 24}]}',
    "charts/daily temperature.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
}


def page_event(run_id: str, token: str | None, accept: str | None = None) -> dict:
    """Return events/run-page.json changed to request run_id with token."""
    event = copy.deepcopy(load_event(SAMPLE_EVENT))
    event["pathParameters"] = {"run_id": run_id}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/runs/{quote(run_id, safe='')}"
    if token is None:
        event.pop("queryStringParameters", None)
        event["rawQueryString"] = ""
    else:
        event["queryStringParameters"] = {"token": token}
        event["rawQueryString"] = f"token={token}"
    if accept is not None:
        event["headers"]["accept"] = accept
    return event


def call_run_page(event: dict) -> dict:
    return runs.lambda_handler(event, lambda_context("bitbatch-run-page"))


def call_notifier(event: dict) -> dict:
    return notifier.lambda_handler(event, lambda_context("bitbatch-notifier"))


def run_link_key(resources) -> bytes:
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=resources.run_link_key_secret_arn)
    return secret["SecretString"].encode()


def valid_token(resources, run_id: str, lifetime_seconds: int = 3600) -> str:
    return make_token(run_id, run_link_key(resources), int(time.time()) + lifetime_seconds)


def store_outputs(resources, run_id: str) -> None:
    s3 = boto3.client("s3")
    for name, body in OUTPUT_FILES.items():
        s3.put_object(Bucket=resources.bucket, Key=output_prefix(run_id) + name, Body=body)


def succeeded_run(resources, run_id: str = SAMPLE_RUN_ID) -> None:
    """Store a run that ended SUCCEEDED through the notifier, with its output files."""
    event = load_event("batch-succeeded.json")
    event["detail"]["parameters"]["run_id"] = run_id
    event["detail"]["jobName"] = f"bitbatch-{run_id}"
    record_run(resources, run_id, RunStatus.SUBMITTED)
    store_outputs(resources, run_id)
    assert call_notifier(event)["status"] == "SUCCEEDED"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def email_link(message) -> str:
    return next(line for line in body_text(message).splitlines() if line.startswith(f"{API_BASE_URL}/runs/"))


# The page


def test_sample_event_opens_page(resources):
    # Given the sample key in the link key secret and the sample event's run, ended by the notifier
    boto3.client("secretsmanager").put_secret_value(
        SecretId=resources.run_link_key_secret_arn, SecretString=SAMPLE_RUN_LINK_KEY
    )
    succeeded_run(resources)

    # When the sample event reaches the function
    result = call_run_page(load_event(SAMPLE_EVENT))

    # Then it answers with the run's HTML page, never cached
    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert result["headers"]["Cache-Control"] == "no-store"
    assert result["headers"]["Referrer-Policy"] == "no-referrer"
    assert "highland/weather-stations" in result["body"]
    assert "Succeeded" in result["body"]
    for name in OUTPUT_FILES:
        assert name in result["body"]


def test_output_links_fetch_files(resources):
    # Given a succeeded run with three output files, one in a folder and with a space
    succeeded_run(resources)

    # When its page is asked for as JSON
    result = call_run_page(page_event(SAMPLE_RUN_ID, valid_token(resources, SAMPLE_RUN_ID), "application/json"))
    document = json.loads(result["body"])
    files = {item["name"]: item for item in document["output_files"]}

    # Then every file is listed with its size and a 15-minute SigV4 link that downloads it
    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert sorted(files) == sorted(OUTPUT_FILES)
    for name, body in OUTPUT_FILES.items():
        query = parse_qs(urlsplit(files[name]["url"]).query)
        assert files[name]["size"] == len(body)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Expires"] == ["900"]
        assert fetch(files[name]["url"]) == body


def test_log_stream_recorded_and_linked(resources):
    # Given a run ended by the sample success event, whose job logged to a stream
    succeeded_run(resources)
    stream = load_event("batch-succeeded.json")["detail"]["attempts"][-1]["container"]["logStreamName"]

    # When its page is asked for as JSON
    result = call_run_page(page_event(SAMPLE_RUN_ID, valid_token(resources, SAMPLE_RUN_ID), "application/json"))
    log_url = json.loads(result["body"])["log_url"]

    # Then the run holds the stream, and the page links to it in the job log group
    assert run_store(resources).get(SAMPLE_RUN_ID).log_stream == stream
    assert log_url.startswith("https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:")
    assert quote(quote(JOB_LOG_GROUP, safe=""), safe="").replace("%", "$") in log_url
    assert log_url.endswith(quote(quote(stream, safe=""), safe="").replace("%", "$"))


def test_invalid_token_hides_run(resources):
    # Given a stored run and a token signed with another key
    succeeded_run(resources)
    forged = make_token(SAMPLE_RUN_ID, b"not-the-stack-key", int(time.time()) + 3600)

    # When the token is used for the stored run and for a run id that does not exist
    for_stored = call_run_page(page_event(SAMPLE_RUN_ID, forged))
    for_missing = call_run_page(page_event("20240305T144112Z-000000000000", forged))

    # Then both get the same 403 page
    assert for_stored["statusCode"] == 403
    assert for_missing["statusCode"] == 403
    assert for_stored["body"] == for_missing["body"]
    assert "highland/weather-stations" not in for_stored["body"]


def test_unknown_run_is_404(resources):
    # Given a valid token for a run that is not in the runs table
    run_id = "20240305T144112Z-000000000000"

    # When the page is opened
    result = call_run_page(page_event(run_id, valid_token(resources, run_id)))

    # Then it is 404 naming the run
    assert result["statusCode"] == 404
    assert run_id in result["body"]


def test_missing_token_is_403(resources):
    # Given a stored run
    succeeded_run(resources)

    # When its page is opened without a token
    result = call_run_page(page_event(SAMPLE_RUN_ID, None))

    # Then it is 403 with the reason
    assert result["statusCode"] == 403
    assert "no access token" in result["body"]


def test_replaced_key_ends_links(resources):
    # Given a link signed with the current key, which opens the page
    succeeded_run(resources)
    token = valid_token(resources, SAMPLE_RUN_ID)
    assert call_run_page(page_event(SAMPLE_RUN_ID, token))["statusCode"] == 200

    # When the key is replaced and the function starts again
    boto3.client("secretsmanager").put_secret_value(
        SecretId=resources.run_link_key_secret_arn, SecretString="a-new-run-link-key-0123456789"
    )
    runs.dependencies.cache_clear()
    result = call_run_page(page_event(SAMPLE_RUN_ID, token))

    # Then the old link no longer opens the page
    assert result["statusCode"] == 403
    assert "key is replaced" in result["body"]


def test_unreadable_key_is_503(resources, monkeypatch):
    # Given a function whose link key secret does not exist
    succeeded_run(resources)
    token = valid_token(resources, SAMPLE_RUN_ID)
    monkeypatch.setenv(
        "RUN_LINK_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:bitbatch/missing-AbCdEf"
    )
    runs.dependencies.cache_clear()

    # When the page is opened
    result = call_run_page(page_event(SAMPLE_RUN_ID, token))

    # Then it is 503 and the run's details stay hidden
    assert result["statusCode"] == 503
    assert "Reload it in a minute" in result["body"]
    assert "highland/weather-stations" not in result["body"]


def test_token_never_logged(resources, caplog):
    # Given a stored run and a valid link
    succeeded_run(resources)
    token = valid_token(resources, SAMPLE_RUN_ID)
    caplog.clear()

    # When the page is opened with the token and with a wrong one
    with caplog.at_level(logging.DEBUG):
        call_run_page(page_event(SAMPLE_RUN_ID, token))
        call_run_page(page_event(SAMPLE_RUN_ID, token[:-4] + "AAAA"))
    answers = [record for record in caplog.records if record.getMessage() == "run page answered"]
    logged = json.dumps([record.__dict__ for record in caplog.records], default=str)

    # Then each answer is logged with the run id and status, and no part of the token appears anywhere
    assert [(record.run_id, record.status_code) for record in answers] == [(SAMPLE_RUN_ID, 200), (SAMPLE_RUN_ID, 403)]
    assert token.split(".")[1] not in logged
    assert token[:-4] not in logged


# The notifier's links


def test_success_email_links_run_page(resources):
    # Given a submitted run with output files
    before = int(time.time())
    succeeded_run(resources)
    after = int(time.time())

    # When the notifier's email is read
    messages = sent_messages()
    link = email_link(messages[0])
    token = parse_qs(urlsplit(link).query)["token"][0]
    expires_at = int(token.split(".")[0])

    # Then it links to the run page with a token valid for 14 days, signed with the stack's key
    assert len(messages) == 1
    assert urlsplit(link).path == f"/runs/{SAMPLE_RUN_ID}"
    assert check_token(SAMPLE_RUN_ID, token, run_link_key(resources), time.time())
    assert before + 14 * 86400 <= expires_at <= after + 14 * 86400
    assert link in messages[0].get_body(("html",)).get_content()

    # and it still names the report's S3 location, but carries no AWS signature
    assert f"s3://{resources.bucket}/runs/{SAMPLE_RUN_ID}/output/report.html" in body_text(messages[0])
    assert "X-Amz-" not in body_text(messages[0])


def test_failure_email_links_run_page(resources):
    # Given a submitted run and the event of its job failing
    event = load_event("batch-failed.json")
    run_id = event["detail"]["parameters"]["run_id"]
    record_run(resources, run_id, RunStatus.SUBMITTED)

    # When the notifier runs
    call_notifier(event)

    # Then the failure email links to the run's page, which shows the reason
    link = email_link(sent_messages()[0])
    token = parse_qs(urlsplit(link).query)["token"][0]
    result = call_run_page(page_event(run_id, token))
    assert result["statusCode"] == 200
    assert "Failed" in result["body"]
    assert "exited with code 1" in result["body"]


def test_unreadable_link_key_retries_email(resources, monkeypatch):
    # Given a notifier whose link key secret does not exist
    event = load_event("batch-succeeded.json")
    run_id = event["detail"]["parameters"]["run_id"]
    record_run(resources, run_id, RunStatus.SUBMITTED)
    monkeypatch.setenv(
        "RUN_LINK_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:bitbatch/missing-AbCdEf"
    )
    notifier.dependencies.cache_clear()

    # When the notifier runs, fails, and runs again after the secret is back
    with pytest.raises(GetParameterError):
        call_notifier(event)
    monkeypatch.setenv("RUN_LINK_KEY_SECRET_ARN", resources.run_link_key_secret_arn)
    notifier.dependencies.cache_clear()
    result = call_notifier(event)

    # Then the retry sends the one email, because the failed attempt did not mark it sent
    assert result["emailed"] is True
    assert len(sent_messages()) == 1
