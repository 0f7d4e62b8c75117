"""The run's manifest, as written by the transform Lambda, and artifact checks."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bitbatch_job.errors import JobError

FORMATS = ("jsonl", "json", "raw")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}", re.IGNORECASE)
_HASH_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ManifestFile:
    path: str
    artifact: str
    transform: str
    format: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    run_id: str
    repository: str
    ref: str
    commit: str
    created_at: str
    files: tuple[ManifestFile, ...]


def parse_manifest(data: bytes, key: str, run_id: str) -> Manifest:
    """Parse and check the manifest stored at `key` for the run `run_id`."""
    try:
        document = json.loads(data)
    except ValueError as error:
        raise JobError(
            f"manifest {key} is not valid JSON ({error}); rerun the push so the transform writes it again"
        ) from None
    if not isinstance(document, dict):
        raise JobError(f"manifest {key} must be a JSON object; rerun the push so the transform writes it again")

    manifest_run_id = _required_string(document, "run_id", key)
    if manifest_run_id != run_id:
        raise JobError(
            f"manifest {key} belongs to run {manifest_run_id!r}, not to run {run_id!r}; "
            "check that RUN_ID and INPUT_PREFIX name the same run"
        )

    commit = _required_string(document, "commit", key)
    if not _COMMIT.fullmatch(commit):
        raise JobError(f"manifest {key}: commit {commit!r} is not a 40-digit hex SHA-1")

    entries = document.get("files")
    if not isinstance(entries, list):
        raise JobError(f"manifest {key}: files is missing or not a list")
    files = tuple(_manifest_file(entry, f"files[{index}]", key) for index, entry in enumerate(entries))

    return Manifest(
        run_id=manifest_run_id,
        repository=_required_string(document, "repository", key),
        ref=_required_string(document, "ref", key),
        commit=commit,
        created_at=_required_string(document, "created_at", key),
        files=files,
    )


def verify_artifact(entry: ManifestFile, local_path: Path) -> None:
    """Compare the downloaded artifact's size and SHA-256 with the manifest, raising JobError on a mismatch."""
    size = local_path.stat().st_size
    if size != entry.size:
        raise JobError(
            f"artifact {entry.artifact} for {entry.path} has {size} bytes, but the manifest expects {entry.size}; "
            "the upload is incomplete or was changed, so rerun the push"
        )

    digest = hashlib.sha256()
    with local_path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != entry.sha256:
        raise JobError(
            f"artifact {entry.artifact} for {entry.path} has SHA-256 {digest.hexdigest()} "
            f"but the manifest expects {entry.sha256}; the artifact was changed after the transform, so rerun the push"
        )


def _manifest_file(entry: Any, label: str, key: str) -> ManifestFile:
    if not isinstance(entry, dict):
        raise JobError(f"manifest {key}: {label} must be a JSON object")
    where = f"{label} ({entry.get('path')!r})"

    artifact = _required_string(entry, "artifact", key, where)
    artifact_parts = PurePosixPath(artifact).parts
    if artifact.startswith("/") or ".." in artifact_parts:
        # The artifact key is joined to INPUT_PREFIX, so it must stay below it.
        raise JobError(f"manifest {key}: {where} artifact {artifact!r} must be a relative path without '..'")

    file_format = _required_string(entry, "format", key, where)
    if file_format not in FORMATS:
        raise JobError(f"manifest {key}: {where} format {file_format!r} is not one of {', '.join(FORMATS)}")

    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise JobError(f"manifest {key}: {where} size {size!r} must be a whole number of bytes, 0 or more")

    sha256 = _required_string(entry, "sha256", key, where).lower()
    if not _SHA256.fullmatch(sha256):
        raise JobError(f"manifest {key}: {where} sha256 {sha256!r} must be 64 hex digits")

    return ManifestFile(
        path=_required_string(entry, "path", key, label),
        artifact=artifact,
        transform=_required_string(entry, "transform", key, where),
        format=file_format,
        size=size,
        sha256=sha256,
    )


def _required_string(document: dict, name: str, key: str, where: str = "") -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        location = f"{where} " if where else ""
        raise JobError(f"manifest {key}: {location}{name} is missing or not a non-empty string")
    return value
