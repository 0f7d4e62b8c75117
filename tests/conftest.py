"""Fixtures shared by every test: moto's server over HTTP and its environment."""

from __future__ import annotations


import pytest

from bitbatch_local import motoserver


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """Endpoint URL of one moto server for the whole test session."""
    with motoserver.running_moto_server() as endpoint_url:
        yield endpoint_url


@pytest.fixture
def aws(moto_endpoint, monkeypatch) -> str:
    """Point boto3 at a freshly reset moto server and return its endpoint URL."""
    motoserver.post_moto_api(moto_endpoint, "reset")
    motoserver.configure(moto_endpoint)
    for name, value in motoserver.aws_environment(moto_endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "bitbatch")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "bitbatch-test")
    return moto_endpoint
