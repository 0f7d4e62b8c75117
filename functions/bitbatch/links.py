"""Clone URLs and commit links, built from configuration plus the repository name in the payload.

The host always comes from configuration, so a payload cannot send the
fetch (and the access token) anywhere else.
"""

from __future__ import annotations

from urllib.parse import quote

from bitbatch.model import CLOUD, DATA_CENTER


class LinkConfigurationError(ValueError):
    """A product's base URL is not configured."""


def _split(repository: str) -> tuple[str, str]:
    owner, _, slug = repository.partition("/")
    return quote(owner, safe=""), quote(slug, safe="")


def clone_url(product: str, repository: str, cloud_base_url: str, data_center_base_url: str | None) -> str:
    owner, slug = _split(repository)
    if product == CLOUD:
        return f"{cloud_base_url.rstrip('/')}/{owner}/{slug}.git"
    if product == DATA_CENTER:
        if not data_center_base_url:
            raise LinkConfigurationError(
                "Bitbucket Data Center pushes need DATA_CENTER_BASE_URL "
                "(stack parameter DataCenterBaseUrl), for example https://bitbucket.example.com"
            )
        return f"{data_center_base_url.rstrip('/')}/scm/{owner}/{slug}.git"
    raise ValueError(f"unknown Bitbucket product {product!r}")


def cloud_commit_url(base_url: str, repository: str, commit: str) -> str:
    workspace, slug = _split(repository)
    return f"{base_url.rstrip('/')}/{workspace}/{slug}/commits/{commit}"


def data_center_commit_url(base_url: str, repository: str, commit: str) -> str:
    project_key, slug = _split(repository)
    return f"{base_url.rstrip('/')}/projects/{project_key}/repos/{slug}/commits/{commit}"
