"""Fetching one pushed commit with dulwich from a real git smart-HTTP server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bitbatch import checkout
from bitbatch_local.gitserver import GitServer
from bitbatch_local.samplerepo import add_commit, build_sample_repository, git_environment

TOKEN = "token-that-must-stay-secret"
REPOSITORY = "weather/stations"


@pytest.fixture
def sample(tmp_path):
    return build_sample_repository(tmp_path / "repos" / REPOSITORY)


@pytest.fixture
def server(tmp_path, sample):
    with GitServer(tmp_path / "repos", username="x-token-auth", password=TOKEN) as running:
        yield running


def credentials(token: str = TOKEN) -> checkout.Credentials:
    return checkout.Credentials("x-token-auth", token)


def test_fetch_reads_pushed_commit_not_tip(server, sample):
    # Given the branch has moved on since the push of the previous commit
    with checkout.fetched_commit(server.clone_url(REPOSITORY), "refs/heads/main", sample.previous_commit, credentials()) as repo:
        paths = sorted(source.path for source in checkout.list_files(repo, sample.previous_commit))
        folder = Path(repo.path)
        config = (folder / "config").read_text()

    # Then the files are those of the pushed commit, no credential was written, and the folder is gone
    assert paths == sorted(sample.previous_files)
    assert TOKEN not in config
    assert "x-token-auth" not in config
    assert not folder.exists()


def test_symlinks_and_submodules_skipped(server, sample, tmp_path):
    # Given a commit with a symlink to the process environment and a submodule entry
    os.symlink("/proc/self/environ", sample.path / "environ-link")
    subprocess.run(["git", "add", "environ-link"], cwd=sample.path, env=git_environment(), check=True)
    gitlink = "160000,1111111111111111111111111111111111111111,vendor/library"
    subprocess.run(["git", "update-index", "--add", "--cacheinfo", gitlink], cwd=sample.path, env=git_environment(), check=True)
    commit = add_commit(sample.path, {"data/extra.csv": "a\n1\n"}, "Add link, submodule and data")

    # When the commit is fetched
    with checkout.fetched_commit(server.clone_url(REPOSITORY), "refs/heads/main", commit, credentials()) as repo:
        paths = {source.path for source in checkout.list_files(repo, commit)}

    # Then only regular files are listed
    assert "data/extra.csv" in paths
    assert "environ-link" not in paths
    assert "vendor/library" not in paths


def test_wrong_token_raises_without_leaking(server, sample):
    with pytest.raises(checkout.CheckoutError) as raised:
        with checkout.fetched_commit(
            server.clone_url(REPOSITORY), "refs/heads/main", sample.head_commit, credentials("wrong-token")
        ):
            pass

    assert "rejected the access token" in str(raised.value)
    assert "wrong-token" not in str(raised.value)


def test_unknown_commit_raises_clear_error(server, sample):
    missing = "0123456789abcdef0123456789abcdef01234567"

    with pytest.raises(checkout.CheckoutError, match=missing):
        with checkout.fetched_commit(server.clone_url(REPOSITORY), "refs/heads/main", missing, credentials()):
            pass


def test_checkout_folder_removed_after_error(server, sample, tmp_path, monkeypatch):
    # Given temporary folders go to a folder this test watches
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    # When the body of the checkout raises
    with pytest.raises(RuntimeError):
        with checkout.fetched_commit(server.clone_url(REPOSITORY), "refs/heads/main", sample.head_commit, credentials()):
            raise RuntimeError("transform failed")

    # Then no checkout folder is left
    assert list(tmp_path.glob("bitbatch-checkout-*")) == []
