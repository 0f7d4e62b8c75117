"""Fetch one pushed commit with dulwich and read its files from the object store.

No git binary exists in Lambda. The commit is fetched by id with depth 1 into
a bare repository in a per-run temporary directory, and files are read from
the commit's tree. Nothing is checked out to disk, so a symlink in the
repository is never followed and a submodule never cloned.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dulwich.client import HTTPUnauthorized, get_transport_and_path
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.objects import S_ISGITLINK
from dulwich.repo import Repo

from bitbatch.observability import logger


class CheckoutError(RuntimeError):
    """The commit could not be fetched; the message says why and what to check."""


@dataclass(frozen=True)
class SourceFile:
    path: str
    blob_id: bytes
    mode: int


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # keep the token out of any log or traceback
        return f"Credentials(username={self.username!r}, password=<hidden>)"


# How deep to fetch the ref when the server will not send a commit by id.
FALLBACK_DEPTH = 50


@contextmanager
def fetched_commit(clone_url: str, ref: str, commit: str, credentials: Credentials | None) -> Iterator[Repo]:
    """Yield a bare repository holding commit; the directory is removed afterwards."""
    workdir = tempfile.mkdtemp(prefix="bitbatch-checkout-")
    try:
        with Repo.init_bare(workdir) as repo:
            _fetch(repo, clone_url, ref, commit, credentials)
            yield repo
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _fetch(repo: Repo, clone_url: str, ref: str, commit: str, credentials: Credentials | None) -> None:
    auth = {"username": credentials.username, "password": credentials.password} if credentials else {}
    client, path = get_transport_and_path(clone_url, **auth)
    wanted = commit.encode()

    try:
        client.fetch(path, repo, determine_wants=lambda refs, depth=None: [wanted], depth=1, protocol_version=2)
    except HTTPUnauthorized as error:
        raise CheckoutError(
            f"the git server rejected the access token for {_safe_url(clone_url)}; "
            "check the token in the Bitbucket token secret and its repository read scope"
        ) from error
    except NotGitRepository as error:
        raise CheckoutError(f"no repository at {_safe_url(clone_url)}; check GIT_BASE_URL and the repository name") from error
    except (GitProtocolError, HangupException) as error:
        # Some servers send only advertised tips. Fetch the ref deeper instead.
        logger.warning("fetch by commit id failed; fetching the ref instead", extra={"error": str(error)})
        _fetch_ref(client, path, repo, ref)

    if wanted not in repo.object_store:
        raise CheckoutError(
            f"commit {commit} is not reachable from {ref} within {FALLBACK_DEPTH} commits of its tip; "
            "it may have been removed by a force push"
        )


def _fetch_ref(client, path: str, repo: Repo, ref: str) -> None:
    wanted_ref = ref.encode()

    def determine_wants(refs, depth=None):
        return [refs[wanted_ref]] if wanted_ref in refs else []

    client.fetch(path, repo, determine_wants=determine_wants, depth=FALLBACK_DEPTH)


def _safe_url(url: str) -> str:
    """Return url without any user information, for messages."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def list_files(repo: Repo, commit: str) -> Iterator[SourceFile]:
    """Yield the regular files of commit's tree; symlinks and submodules are logged and skipped."""
    tree_id = repo[commit.encode()].tree
    for entry in repo.object_store.iter_tree_contents(tree_id):
        path = entry.path.decode("utf-8", errors="surrogateescape")
        if stat.S_ISLNK(entry.mode):
            logger.warning("skipping symlink; links are never followed", extra={"path": path})
            continue
        if S_ISGITLINK(entry.mode):
            logger.warning("skipping submodule; submodules are not supported", extra={"path": path})
            continue
        yield SourceFile(path=path, blob_id=entry.sha, mode=entry.mode)


def read_file(repo: Repo, source: SourceFile) -> bytes:
    return repo.object_store[source.blob_id].data
