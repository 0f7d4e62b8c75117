"""The local git server and the sample repository, with dulwich and the git binary as clients."""

from __future__ import annotations

import base64
import csv
import gzip
import http.client
import io
import json
import os
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from dulwich import porcelain
from dulwich.client import HTTPUnauthorized, get_transport_and_path
from dulwich.errors import NotGitRepository
from dulwich.object_store import tree_lookup_path
from dulwich.repo import Repo

from bitbatch_local.gitserver import ACCESS_TOKEN_USERNAME, GitServer
from bitbatch_local.samplerepo import (
    AUTHOR_EMAIL,
    BRANCH,
    FIRST_README,
    SampleRepository,
    add_commit,
    build_sample_repository,
    git_environment,
    run_git,
)

WORKSPACE = "highland"
SLUG = "weather-stations"
FULL_NAME = f"{WORKSPACE}/{SLUG}"
TOKEN = "bb-access-token-7f3c9a1e"
WRONG_TOKEN = "bb-access-token-00000000"


@pytest.fixture
def repository_root(tmp_path: Path) -> Path:
    root = tmp_path / "repositories"
    root.mkdir()
    return root


@pytest.fixture
def sample(repository_root: Path) -> SampleRepository:
    return build_sample_repository(repository_root / WORKSPACE / SLUG)


@pytest.fixture
def server(repository_root: Path, sample: SampleRepository):
    with GitServer(repository_root, ACCESS_TOKEN_USERNAME, TOKEN) as running_server:
        yield running_server


@pytest.fixture
def push_server(repository_root: Path, sample: SampleRepository):
    with GitServer(repository_root, ACCESS_TOKEN_USERNAME, TOKEN, allow_push=True) as running_server:
        yield running_server


def clone_with_dulwich(url: str, target: Path, **credentials: str) -> str:
    """Clone with dulwich and return the head commit of the clone."""
    with porcelain.clone(url, str(target), errstream=io.BytesIO(), **credentials) as repo:
        return repo.head().decode()


def git_client_environment(token: str | None = TOKEN, **config: str) -> dict[str, str]:
    """Environment for the git binary that sends the token as Basic auth."""
    settings = dict(config)
    if token is not None:
        credentials = base64.b64encode(f"{ACCESS_TOKEN_USERNAME}:{token}".encode()).decode()
        settings["http.extraHeader"] = f"Authorization: Basic {credentials}"

    environment = git_environment()
    for index, (key, value) in enumerate(settings.items()):
        environment[f"GIT_CONFIG_KEY_{index}"] = key
        environment[f"GIT_CONFIG_VALUE_{index}"] = value
    environment["GIT_CONFIG_COUNT"] = str(len(settings))
    return environment


def run_git_client(*args: str, cwd: Path | None = None, environment: dict[str, str] | None = None):
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=environment or git_client_environment(),
        capture_output=True,
        text=True,
        check=False,
    )


def pkt_line(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


# Protocol v2 `ls-refs` command that lists the branches.
LS_REFS_REQUEST = pkt_line(b"command=ls-refs\n") + b"0001" + pkt_line(b"ref-prefix refs/heads/\n") + b"0000"


def post_upload_pack(server: GitServer, body, headers: dict[str, str]) -> tuple[int, bytes]:
    credentials = base64.b64encode(f"{ACCESS_TOKEN_USERNAME}:{TOKEN}".encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST",
            f"/{FULL_NAME}.git/git-upload-pack",
            body=body,
            headers={
                "Authorization": f"Basic {credentials}",
                "Content-Type": "application/x-git-upload-pack-request",
                "Git-Protocol": "version=2",
                **headers,
            },
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def get_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


# Clone and fetch with dulwich


def test_dulwich_clone_matches_head(server, sample, tmp_path):
    # Given a running server with token auth
    url = server.clone_url(FULL_NAME)

    # When dulwich clones with the token
    head = clone_with_dulwich(url, tmp_path / "clone", username=ACCESS_TOKEN_USERNAME, password=TOKEN)

    # Then the clone's head is the sample's head commit
    assert head == sample.head_commit
    assert (tmp_path / "clone" / "data" / "readings.tsv").is_file()


def test_dulwich_clone_wrong_token(server, tmp_path):
    # Given a running server with token auth
    url = server.clone_url(FULL_NAME)

    # When dulwich clones with a wrong token, then it raises HTTPUnauthorized
    with pytest.raises(HTTPUnauthorized):
        clone_with_dulwich(url, tmp_path / "clone", username=ACCESS_TOKEN_USERNAME, password=WRONG_TOKEN)

    assert [record.status for record in server.requests] == [401]


def test_dulwich_clone_without_credentials(server, tmp_path):
    # Given a running server with token auth
    url = server.clone_url(FULL_NAME)

    # When dulwich clones without credentials, then it raises HTTPUnauthorized
    with pytest.raises(HTTPUnauthorized):
        clone_with_dulwich(url, tmp_path / "clone")


def test_unauthorized_asks_for_basic(server):
    # Given a running server with token auth
    url = f"{server.clone_url(FULL_NAME)}/info/refs?service=git-upload-pack"

    # When a client sends no credentials
    status, headers = get_status(url)

    # Then the response requests Basic auth in the bitbatch realm
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="bitbatch"'


def test_fetch_previous_commit_by_sha(server, sample, tmp_path):
    # Given an empty repository and the commit before the branch tip
    commit_id = sample.previous_commit.encode()
    client, path = get_transport_and_path(server.clone_url(FULL_NAME), username=ACCESS_TOKEN_USERNAME, password=TOKEN)

    with Repo.init(str(tmp_path / "fetched"), mkdir=True) as target:
        # When dulwich fetches only that commit, one level deep
        client.fetch(path, target, determine_wants=lambda refs, depth=None: [commit_id], depth=1)

        # Then the commit and its tree arrived over protocol v2, without history
        commit = target[commit_id]
        files = sorted(entry.path.decode() for entry in target.object_store.iter_tree_contents(commit.tree))
        _, readme = tree_lookup_path(target.object_store.__getitem__, commit.tree, b"README.md")
        readme_text = target[readme].data.decode()

        assert client.protocol_version == 2
        assert files == list(sample.previous_files)
        assert "data/readings.tsv" not in files
        assert readme_text == FIRST_README
        assert target.get_shallow() == {commit_id}
        assert sample.head_commit.encode() not in target.object_store

    assert {record.git_protocol for record in server.requests} == {"version=2"}


def test_missing_repository_not_found(server, tmp_path):
    # Given a running server
    url = server.clone_url(f"{WORKSPACE}/no-such-repository")

    # When dulwich clones a repository that does not exist, then it raises NotGitRepository
    with pytest.raises(NotGitRepository):
        clone_with_dulwich(url, tmp_path / "clone", username=ACCESS_TOKEN_USERNAME, password=TOKEN)

    assert [record.status for record in server.requests] == [404]


def test_path_outside_root_not_found(server):
    # Given a path that climbs out of the repository root
    credentials = base64.b64encode(f"{ACCESS_TOKEN_USERNAME}:{TOKEN}".encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

    # When a client requests it
    try:
        connection.request(
            "GET",
            f"/{WORKSPACE}/{SLUG}.git/../../../etc/info/refs?service=git-upload-pack",
            headers={"Authorization": f"Basic {credentials}"},
        )
        status = connection.getresponse().status
    finally:
        connection.close()

    # Then the server returns 404
    assert status == 404


def test_bare_repository_served(repository_root, sample, tmp_path):
    # Given a bare copy of the sample at <root>/<workspace>/<slug>.git
    bare_path = repository_root / WORKSPACE / "archive.git"
    run_git(repository_root, "clone", "--quiet", "--bare", str(sample.path), str(bare_path))

    # When dulwich clones it through the server
    with GitServer(repository_root, ACCESS_TOKEN_USERNAME, TOKEN) as server:
        head = clone_with_dulwich(
            server.clone_url(f"{WORKSPACE}/archive"),
            tmp_path / "clone",
            username=ACCESS_TOKEN_USERNAME,
            password=TOKEN,
        )

    # Then the head is the sample's head commit
    assert head == sample.head_commit


def test_auth_off_allows_anonymous(repository_root, sample, tmp_path):
    # Given a server with auth switched off
    with GitServer(repository_root) as server:
        # When dulwich clones without credentials
        head = clone_with_dulwich(server.clone_url(FULL_NAME), tmp_path / "clone")

    # Then the clone succeeds
    assert head == sample.head_commit
    assert {record.user for record in server.requests} == {None}


def test_concurrent_clones(server, sample, tmp_path):
    # Given four clients that clone at the same time
    url = server.clone_url(FULL_NAME)
    targets = [tmp_path / f"clone-{index}" for index in range(4)]

    # When they all clone
    with ThreadPoolExecutor(max_workers=4) as pool:
        heads = list(
            pool.map(
                lambda target: clone_with_dulwich(url, target, username=ACCESS_TOKEN_USERNAME, password=TOKEN),
                targets,
            )
        )

    # Then every clone has the head commit and every request succeeded
    assert heads == [sample.head_commit] * 4
    assert {record.status for record in server.requests} == {200}


# Clone, fetch and push with the git binary


def test_git_clone_binary(server, sample, tmp_path):
    # Given a running server with token auth
    target = tmp_path / "clone"

    # When the git binary clones with the token in an Authorization header
    result = run_git_client("clone", "--quiet", server.clone_url(FULL_NAME), str(target))

    # Then the clone has the head commit and the files of the sample
    assert result.returncode == 0, result.stderr
    assert run_git(target, "rev-parse", "HEAD") == sample.head_commit
    assert run_git(target, "ls-files").splitlines() == list(sample.head_files)
    assert {record.git_protocol for record in server.requests} == {"version=2"}


def test_git_clone_wrong_token(server, tmp_path):
    # Given a running server with token auth
    environment = git_client_environment(WRONG_TOKEN)

    # When the git binary clones with a wrong token
    result = run_git_client(
        "clone", "--quiet", server.clone_url(FULL_NAME), str(tmp_path / "clone"), environment=environment
    )

    # Then the clone fails with 401
    assert result.returncode != 0
    assert [record.status for record in server.requests] == [401]


def test_git_fetch_sends_gzip(server, sample, tmp_path):
    # Given a clone with 40 local commits and a new commit on the server
    clone = tmp_path / "clone"
    assert run_git_client("clone", "--quiet", server.clone_url(FULL_NAME), str(clone)).returncode == 0
    for index in range(40):
        add_commit(clone, {f"notes/{index:02d}.txt": f"local note {index}\n"}, f"Add local note {index}")
    server_head = add_commit(sample.path, {"data/calibration.txt": "HGL003 recalibrated\n"}, "Record calibration")
    server.reset_statistics()

    # When git fetches, it negotiates with enough `have` lines to gzip a request body
    result = run_git_client("fetch", "--quiet", "origin", cwd=clone)

    # Then the server inflated the gzip body and the fetch got the new commit
    assert result.returncode == 0, result.stderr
    assert run_git(clone, "rev-parse", "origin/main") == server_head
    assert "gzip" in {record.content_encoding for record in server.requests}


def test_push_rejected_by_default(server, sample, tmp_path):
    # Given a clone with a new commit and a server that does not allow pushes
    clone = tmp_path / "clone"
    assert run_git_client("clone", "--quiet", server.clone_url(FULL_NAME), str(clone)).returncode == 0
    add_commit(clone, {"data/notes.md": "Local note\n"}, "Add notes")

    # When git pushes
    result = run_git_client("push", "--quiet", "origin", BRANCH, cwd=clone)

    # Then the push fails with 403 and the branch stays where it was
    assert result.returncode != 0
    assert 403 in {record.status for record in server.requests}
    assert run_git(sample.path, "rev-parse", BRANCH) == sample.head_commit


def test_push_allowed_chunked(push_server, sample, tmp_path):
    # Given a clone with a commit larger than git's smallest post buffer
    clone = tmp_path / "clone"
    assert run_git_client("clone", "--quiet", push_server.clone_url(FULL_NAME), str(clone)).returncode == 0
    pushed = add_commit(clone, {"data/radar.bin": os.urandom(200_000)}, "Add radar snapshot")

    # When git pushes with a 64 KiB post buffer, it sends the pack chunked
    environment = git_client_environment(**{"http.postBuffer": "65520"})
    result = run_git_client("push", "--quiet", "origin", BRANCH, cwd=clone, environment=environment)

    # Then the server's branch and work tree have the new commit
    assert result.returncode == 0, result.stderr
    assert run_git(sample.path, "rev-parse", BRANCH) == pushed
    assert (sample.path / "data" / "radar.bin").is_file()
    assert any(record.chunked for record in push_server.requests if record.path.endswith("git-receive-pack"))


# Request bodies sent by hand


def test_ls_refs_chunked_body(server, sample):
    # Given an ls-refs request split into two chunks
    parts = iter([LS_REFS_REQUEST[:10], LS_REFS_REQUEST[10:]])

    # When it is posted with chunked transfer encoding
    status, body = post_upload_pack(server, parts, {})

    # Then the backend read the whole body and listed the branch
    assert status == 200
    assert f"{sample.head_commit} refs/heads/main".encode() in body
    assert server.requests[-1].chunked


def test_ls_refs_gzip_body(server, sample):
    # Given a gzip-compressed ls-refs request
    body = gzip.compress(LS_REFS_REQUEST)

    # When it is posted with Content-Encoding gzip
    status, response = post_upload_pack(server, body, {"Content-Encoding": "gzip"})

    # Then the backend inflated it and listed the branch
    assert status == 200
    assert f"{sample.head_commit} refs/heads/main".encode() in response


def test_unknown_encoding_rejected(server):
    # Given a request body in an encoding the backend cannot read
    body = LS_REFS_REQUEST

    # When it is posted with Content-Encoding br
    status, _ = post_upload_pack(server, body, {"Content-Encoding": "br"})

    # Then the server returns 415
    assert status == 415


def test_bad_chunk_size_rejected(server):
    # Given a chunked body whose size line is not hexadecimal
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    credentials = base64.b64encode(f"{ACCESS_TOKEN_USERNAME}:{TOKEN}".encode()).decode()
    request = (
        f"POST /{FULL_NAME}.git/git-upload-pack HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Basic {credentials}\r\n"
        "Content-Type: application/x-git-upload-pack-request\r\n"
        "Transfer-Encoding: chunked\r\n"
        "\r\n"
        "zz\r\nhello\r\n0\r\n\r\n"
    )

    # When it is posted
    try:
        connection.connect()
        connection.sock.sendall(request.encode())
        response = http.client.HTTPResponse(connection.sock)
        response.begin()
        status = response.status
    finally:
        connection.close()

    # Then the server returns 400
    assert status == 400


# Request records


def test_requests_hold_no_secrets(server, tmp_path):
    # Given one clone with the token and one with a wrong token
    url = server.clone_url(FULL_NAME)
    clone_with_dulwich(url, tmp_path / "good", username=ACCESS_TOKEN_USERNAME, password=TOKEN)
    with pytest.raises(HTTPUnauthorized):
        clone_with_dulwich(url, tmp_path / "bad", username=ACCESS_TOKEN_USERNAME, password=WRONG_TOKEN)

    # When the request records are written out
    records = repr(server.requests)

    # Then neither token nor any Authorization value is in them
    encoded = base64.b64encode(f"{ACCESS_TOKEN_USERNAME}:{TOKEN}".encode()).decode()
    assert TOKEN not in records
    assert WRONG_TOKEN not in records
    assert encoded not in records
    assert "Basic" not in records
    assert "uthorization" not in records


def test_bytes_sent_adds_up(server, tmp_path):
    # Given a running server
    url = server.clone_url(FULL_NAME)

    # When dulwich clones
    clone_with_dulwich(url, tmp_path / "clone", username=ACCESS_TOKEN_USERNAME, password=TOKEN)

    # Then the total is the sum of the records and more than the packed objects
    records = server.requests
    pack_size = sum(path.stat().st_size for path in (tmp_path / "clone" / ".git" / "objects" / "pack").glob("*.pack"))
    assert server.bytes_sent == sum(record.bytes_sent for record in records)
    assert server.bytes_sent > pack_size > 0


def test_server_quiet_on_stderr(server, tmp_path, capfd):
    # Given a running server
    url = server.clone_url(FULL_NAME)

    # When dulwich clones, once with a wrong token and once with the right one
    with pytest.raises(HTTPUnauthorized):
        clone_with_dulwich(url, tmp_path / "bad", username=ACCESS_TOKEN_USERNAME, password=WRONG_TOKEN)
    clone_with_dulwich(url, tmp_path / "good", username=ACCESS_TOKEN_USERNAME, password=TOKEN)

    # Then nothing was printed to stderr
    assert capfd.readouterr().err == ""


def test_clone_url_rejects_bad_name(server):
    # Given a full name without a slug, then clone_url raises ValueError naming it
    with pytest.raises(ValueError, match="highland"):
        server.clone_url("highland")


# Sample repository


def test_sample_hashes_stable(tmp_path):
    # Given two sample repositories built in different folders
    first = build_sample_repository(tmp_path / "first")
    second = build_sample_repository(tmp_path / "second")

    # Then both have the same commits
    assert first.head_commit == second.head_commit
    assert first.previous_commit == second.previous_commit


def test_sample_history(sample):
    # Given the sample repository, then main has two commits by the fixed author
    history = run_git(sample.path, "log", "--format=%H %P %ae", BRANCH).splitlines()

    assert history == [
        f"{sample.head_commit} {sample.previous_commit} {AUTHOR_EMAIL}",
        f"{sample.previous_commit}  {AUTHOR_EMAIL}",
    ]
    assert run_git(sample.path, "symbolic-ref", "HEAD") == f"refs/heads/{BRANCH}"
    assert run_git(sample.path, "status", "--porcelain") == ""


def test_sample_files_per_commit(sample):
    # Given the sample repository, then each commit has its files and the second edits the README
    assert sample.previous_files == ("README.md", "config/pipeline.yaml", "data/stations.csv")
    assert sample.head_files == (
        "README.md",
        "config/pipeline.yaml",
        "data/readings.tsv",
        "data/stations.csv",
        "data/thresholds.json",
    )
    assert "README.md" in run_git(sample.path, "diff", "--name-only", sample.previous_commit, sample.head_commit)


def test_sample_data_parses(sample):
    # Given the sample's data files
    data = sample.path / "data"

    # When each is parsed with its format's standard reader
    stations = list(csv.DictReader((data / "stations.csv").open(newline="")))
    readings = list(csv.DictReader((data / "readings.tsv").open(newline=""), delimiter="\t"))
    thresholds = json.loads((data / "thresholds.json").read_text())
    pipeline = yaml.safe_load((sample.path / "config" / "pipeline.yaml").read_text())

    # Then each contains what the README describes
    station_ids = {station["id"] for station in stations}
    assert len(stations) == 12
    assert list(stations[0]) == ["id", "name", "latitude", "longitude", "elevation_m", "active"]
    assert {station["active"] for station in stations} == {"true", "false"}
    assert list(readings[0]) == ["station_id", "time", "temperature_c", "humidity_pct"]
    assert {reading["station_id"] for reading in readings} <= station_ids
    assert any(reading["temperature_c"] == "" for reading in readings)
    assert any(reading["humidity_pct"] == "" for reading in readings)
    assert all(-40 < float(reading["temperature_c"]) < 40 for reading in readings if reading["temperature_c"])
    assert set(thresholds["stations"]) <= station_ids
    assert pipeline["inputs"]["readings"] == "data/readings.tsv"


def test_add_commit_extends_branch(sample):
    # Given the sample repository, when a commit writes one file and deletes another
    commit = add_commit(
        sample.path,
        {"data/readings.tsv": "station_id\ttime\ttemperature_c\thumidity_pct\n", "data/thresholds.json": None},
        "Reset readings and drop thresholds",
    )

    # Then it is the new head, its parent is the old head and the tree changed
    assert run_git(sample.path, "rev-parse", BRANCH) == commit
    assert run_git(sample.path, "rev-parse", f"{commit}^") == sample.head_commit
    assert "data/thresholds.json" not in run_git(sample.path, "ls-files").splitlines()


def test_add_commit_rejects_escape(sample):
    # Given a path outside the work tree, then add_commit raises ValueError naming it
    with pytest.raises(ValueError, match=r"\.\./outside"):
        add_commit(sample.path, {"../outside.txt": "x"}, "Escape")
