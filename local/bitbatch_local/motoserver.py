"""Embedded AWS: moto's server on a free loopback port."""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

REGION = "us-east-1"

# moto accepts any key pair; these only keep boto3 from looking for real ones.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def aws_environment(endpoint_url: str) -> dict[str, str]:
    """Return the variables that point boto3 (in any process) at the server."""
    return {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint_url,
        # Keep boto3 from reading a developer's ~/.aws files.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def post_moto_api(endpoint_url: str, path: str, body: dict | None = None) -> None:
    request = urllib.request.Request(
        f"{endpoint_url}/moto-api/{path}",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def get_moto_data(endpoint_url: str) -> dict:
    """Return moto's whole state, as served on /moto-api/data.json."""
    with urllib.request.urlopen(f"{endpoint_url}/moto-api/data.json", timeout=30) as response:
        return json.loads(response.read())


def configure(endpoint_url: str) -> None:
    # moto would otherwise try to start each Batch job in Docker and fail it.
    # The local executor runs the container code itself.
    post_moto_api(endpoint_url, "config", {"batch": {"use_docker": False}})


@contextmanager
def running_moto_server(port: int | None = None) -> Iterator[str]:
    """Start moto's server on 127.0.0.1 and yield its endpoint URL."""
    port = port or free_port()
    # moto's server logs every request through werkzeug; keep only errors.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint_url = f"http://127.0.0.1:{port}"
    try:
        configure(endpoint_url)
        yield endpoint_url
    finally:
        server.stop()
