"""The run's input on S3: its manifest and the verified artifacts it lists, as both modes read them."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from bitbatch_job.errors import JobError
from bitbatch_job.manifest import Manifest, ManifestFile, parse_manifest, verify_artifact
from bitbatch_job.settings import JobSettings
from bitbatch_job.storage import RunStorage

log = logging.getLogger("bitbatch_job")

MANIFEST_NAME = "manifest.json"


def read_manifest(settings: JobSettings, storage: RunStorage) -> tuple[bytes, Manifest]:
    """Download and check the run's manifest, returning its bytes and its parsed form."""
    manifest_key = settings.input_prefix + MANIFEST_NAME
    log.info("run %s: reading manifest s3://%s/%s", settings.run_id, storage.bucket, manifest_key)
    data = storage.read(manifest_key)
    manifest = parse_manifest(data, manifest_key, settings.run_id)

    log.info(
        "run %s: downloading %d files of %s at %s (%s)",
        settings.run_id,
        len(manifest.files),
        manifest.repository,
        manifest.commit,
        manifest.ref,
    )
    return data, manifest


def fetch_artifact(settings: JobSettings, storage: RunStorage, entry: ManifestFile, local_path: Path) -> None:
    """Download one artifact to `local_path` and check its size and SHA-256 against the manifest."""
    storage.download(settings.input_prefix + entry.artifact, local_path, max_bytes=entry.size)
    verify_artifact(entry, local_path)


def download_run_input(settings: JobSettings, storage: RunStorage, input_dir: Path) -> Manifest:
    """Download every artifact to its manifest `artifact` path under `input_dir`, then write manifest.json there.

    All artifacts are on disk at the same time, so the job's storage must hold the whole input.
    """
    data, manifest = read_manifest(settings, storage)
    local_paths = artifact_local_paths(manifest, input_dir)

    for entry, local_path in zip(manifest.files, local_paths, strict=True):
        local_path.parent.mkdir(parents=True, exist_ok=True)
        fetch_artifact(settings, storage, entry, local_path)

    (input_dir / MANIFEST_NAME).write_bytes(data)
    log.info("run %s: input verified in %s", settings.run_id, input_dir)
    return manifest


def artifact_local_paths(manifest: Manifest, input_dir: Path) -> list[Path]:
    """Map each manifest file to input_dir/<artifact>, raising JobError when two of them need the same path.

    parse_manifest already rejects absolute artifact paths and '..', so every path stays under input_dir.
    """
    file_owners = {PurePosixPath(MANIFEST_NAME): "the manifest"}
    folder_owners: dict[PurePosixPath, str] = {}
    paths = []

    for entry in manifest.files:
        relative = PurePosixPath(entry.artifact)
        owner = f"artifact {entry.artifact} of {entry.path}"
        if not relative.parts:
            raise JobError(
                f"manifest: {owner} names no file; rerun the push so the transform writes the manifest again"
            )
        if relative in file_owners:
            raise _conflict(f"{owner} has the same path as {file_owners[relative]}")
        if relative in folder_owners:
            raise _conflict(f"{folder_owners[relative]} needs a folder where {owner} is a file")
        for parent in relative.parents:
            if parent in file_owners:
                raise _conflict(f"{owner} needs a folder where {file_owners[parent]} is a file")
            folder_owners.setdefault(parent, owner)

        file_owners[relative] = owner
        paths.append(input_dir.joinpath(*relative.parts))
    return paths


def _conflict(clash: str) -> JobError:
    return JobError(
        f"manifest: {clash}, so the input cannot be laid out as files; "
        "rerun the push so the transform writes the manifest again"
    )
