"""Fetch a pushed commit with dulwich and read its files from the object store.

No git binary exists in Lambda. The pushed commit (and the ref's previous
commit, for the list of changed files) is fetched by id with depth 1 into a
bare repository in a per-run temporary directory. Files are read from the
commit's tree and nothing is checked out to disk, so a symlink in the
repository is never followed, a submodule never cloned and an LFS object
never downloaded.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dulwich.client import HTTPUnauthorized, get_transport_and_path
from dulwich.diff_tree import CHANGE_ADD, CHANGE_DELETE, CHANGE_MODIFY, RenameDetector, tree_changes
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.objects import S_ISGITLINK
from dulwich.repo import Repo

from bitbatch.credentials import Credentials
from bitbatch.observability import logger

# Depth of the ref fetch used when the server will not send a commit by id.
FALLBACK_DEPTH = 50
# Git LFS replaces a file by a small text pointer that starts with this line.
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
LFS_POINTER_MAX_BYTES = 1024


class CheckoutError(RuntimeError):
    """The commit could not be fetched; the message gives the reason and what to check."""


class CheckoutTooLarge(CheckoutError):
    """The fetched data passed the configured limit; the fetch was stopped."""


@dataclass(frozen=True)
class SourceFile:
    path: str
    blob_id: bytes
    mode: int


@dataclass(frozen=True)
class SkippedEntry:
    path: str
    reason: str


@dataclass
class CommitFiles:
    """The regular files of a commit, and the entries that are not regular files."""

    files: list[SourceFile] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    change: str  # "add", "modify", "delete" or "rename"
    path: str  # the path after the change (the old path for a deletion)
    old_path: str | None = None  # set for renames


@dataclass
class FetchedCommit:
    repo: Repo
    commit: str
    previous_commit: str | None  # None when it was not given or could not be fetched


class _CountingWriter:
    """Pack data sink that stops the fetch once max_bytes have arrived."""

    def __init__(self, sink, max_bytes: int | None):
        self._sink = sink
        self._max_bytes = max_bytes
        self.received = 0

    def __call__(self, data: bytes) -> None:
        self.received += len(data)
        if self._max_bytes is not None and self.received > self._max_bytes:
            raise CheckoutTooLarge(
                f"the fetched data passed {self._max_bytes} bytes (MAX_CHECKOUT_BYTES) and the fetch was stopped; "
                "raise the stack's MaxCheckoutBytes or exclude large files from the repository"
            )
        self._sink(data)


@contextmanager
def fetched_commits(
    clone_url: str,
    ref: str,
    commit: str,
    credentials: Credentials | None,
    previous_commit: str | None = None,
    max_bytes: int | None = None,
) -> Iterator[FetchedCommit]:
    """Yield a bare repository holding commit, and previous_commit when the server still has it.

    The temporary directory is removed afterwards, whether the body raised or not.
    """
    workdir = tempfile.mkdtemp(prefix="bitbatch-checkout-")
    try:
        with Repo.init_bare(workdir) as repo:
            fetched_previous = _fetch(repo, clone_url, ref, commit, previous_commit, credentials, max_bytes)
            yield FetchedCommit(repo=repo, commit=commit, previous_commit=fetched_previous)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def fetched_commit(clone_url: str, ref: str, commit: str, credentials: Credentials | None) -> Iterator[Repo]:
    """Yield a bare repository holding commit alone; see fetched_commits."""
    with fetched_commits(clone_url, ref, commit, credentials) as fetched:
        yield fetched.repo


def _fetch(
    repo: Repo,
    clone_url: str,
    ref: str,
    commit: str,
    previous_commit: str | None,
    credentials: Credentials | None,
    max_bytes: int | None,
) -> str | None:
    auth = {"username": credentials.username, "password": credentials.password} if credentials else {}
    client, path = get_transport_and_path(clone_url, **auth)
    wanted = [commit.encode()] + ([previous_commit.encode()] if previous_commit else [])

    try:
        try:
            _fetch_limited(client, path, repo, lambda refs, depth=None: wanted, 1, max_bytes)
        except (GitProtocolError, HangupException, CheckoutTooLarge) as error:
            if not previous_commit:
                raise
            # The previous commit only serves the list of changed files. It may be gone
            # (a force push), or too large together with the pushed one: fetch without it.
            logger.warning("fetch with the previous commit failed; fetching the pushed commit only", extra={"error": str(error)})
            previous_commit = None
            _fetch_limited(client, path, repo, lambda refs, depth=None: [commit.encode()], 1, max_bytes)
    except HTTPUnauthorized as error:
        raise CheckoutError(
            f"the git server rejected the access token for {_safe_url(clone_url)}; "
            "check the token in the Bitbucket token secret and its repository read scope"
        ) from error
    except NotGitRepository as error:
        raise CheckoutError(f"no repository at {_safe_url(clone_url)}; check the base URL and the repository name") from error
    except (GitProtocolError, HangupException) as error:
        # Some servers send only advertised tips. Fetch the ref deeper instead.
        logger.warning("fetch by commit id failed; fetching the ref instead", extra={"error": str(error)})
        _fetch_ref(client, path, repo, ref, max_bytes)

    if commit.encode() not in repo.object_store:
        raise CheckoutError(
            f"commit {commit} is not reachable from {ref} within {FALLBACK_DEPTH} commits of its tip; "
            "it may have been removed by a force push"
        )
    if previous_commit and previous_commit.encode() not in repo.object_store:
        previous_commit = None
    return previous_commit


def _fetch_limited(client, path: str, repo: Repo, determine_wants, depth: int, max_bytes: int | None) -> None:
    """Fetch into repo like dulwich's client.fetch, but stop once max_bytes of pack data arrived."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, prefix="incoming-", dir=repo.path)
    try:
        writer = _CountingWriter(spool.write, max_bytes)
        result = client.fetch_pack(path, determine_wants, repo.get_graph_walker(), writer, depth=depth)
        if spool.tell():
            spool.seek(0)
            repo.object_store.add_thin_pack(spool.read, None)
        repo.update_shallow(result.new_shallow, result.new_unshallow)
    finally:
        spool.close()


def _fetch_ref(client, path: str, repo: Repo, ref: str, max_bytes: int | None) -> None:
    wanted_ref = ref.encode()

    def determine_wants(refs, depth=None):
        return [refs[wanted_ref]] if wanted_ref in refs else []

    _fetch_limited(client, path, repo, determine_wants, FALLBACK_DEPTH, max_bytes)


def _safe_url(url: str) -> str:
    """Return url without any user information, for messages."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _decode_path(raw: bytes) -> str:
    return raw.decode("utf-8", errors="surrogateescape")


def list_commit_files(repo: Repo, commit: str) -> CommitFiles:
    """List the regular files of commit's tree; symlinks and submodules go to skipped with the reason."""
    result = CommitFiles()
    tree_id = repo[commit.encode()].tree
    for entry in repo.object_store.iter_tree_contents(tree_id):
        path = _decode_path(entry.path)
        if stat.S_ISLNK(entry.mode):
            logger.warning("skipping symlink; links are never followed", extra={"path": path})
            result.skipped.append(SkippedEntry(path, "symbolic link: links are never followed"))
        elif S_ISGITLINK(entry.mode):
            logger.warning("skipping submodule; submodules are not supported", extra={"path": path})
            result.skipped.append(SkippedEntry(path, "submodule: submodules are not supported"))
        else:
            result.files.append(SourceFile(path=path, blob_id=entry.sha, mode=entry.mode))
    return result


def list_files(repo: Repo, commit: str) -> Iterator[SourceFile]:
    """Yield the regular files of commit's tree."""
    yield from list_commit_files(repo, commit).files


def read_file(repo: Repo, source: SourceFile) -> bytes:
    return repo.object_store[source.blob_id].data


def is_lfs_pointer(data: bytes) -> bool:
    return len(data) <= LFS_POINTER_MAX_BYTES and data.startswith(LFS_POINTER_PREFIX)


def changed_files(repo: Repo, previous_commit: str, commit: str) -> list[Change]:
    """List what changed between two commits' trees, with renames detected (like git diff)."""
    old_tree = repo[previous_commit.encode()].tree
    new_tree = repo[commit.encode()].tree
    detector = RenameDetector(repo.object_store)
    changes = []
    for item in tree_changes(repo.object_store, old_tree, new_tree, rename_detector=detector):
        if item.type == CHANGE_ADD:
            changes.append(Change("add", _decode_path(item.new.path)))
        elif item.type == CHANGE_DELETE:
            changes.append(Change("delete", _decode_path(item.old.path)))
        elif item.type == CHANGE_MODIFY:
            changes.append(Change("modify", _decode_path(item.new.path)))
        elif item.new.path and item.old.path:
            changes.append(Change("rename", _decode_path(item.new.path), _decode_path(item.old.path)))
    return changes
