"""Intermediate artifacts and the manifest the Batch job reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from bitbatch.model import Run, utc_now

MANIFEST_NAME = "manifest.json"
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "json": "application/json", "raw": "application/octet-stream"}


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # path in the repository, exactly as committed
    artifact: str  # key relative to the run's input prefix
    transform: str
    format: str
    size: int
    sha256: str


def describe_artifact(path: str, artifact: str, transform: str, result) -> ManifestEntry:
    """Describe a transform result; result has data and format."""
    return ManifestEntry(
        path=path,
        artifact=artifact,
        transform=transform,
        format=result.format,
        size=len(result.data),
        sha256=hashlib.sha256(result.data).hexdigest(),
    )


def build_manifest(
    run: Run,
    entries: Iterable[ManifestEntry],
    base_commit: str | None = None,
    changes: Iterable | None = None,
    skipped: Iterable[dict] = (),
    config_source: str = "defaults",
) -> bytes:
    manifest = {
        "run_id": run.run_id,
        "repository": run.repository,
        "ref": run.ref,
        "commit": run.commit,
        "base_commit": base_commit,
        "config": config_source,
        "created_at": utc_now(),
        "files": [asdict(entry) for entry in entries],
        # None when the push has no previous commit to compare with (a new ref).
        "changes": None if changes is None else [_change(change) for change in changes],
        "skipped": list(skipped),
    }
    return json.dumps(manifest, ensure_ascii=False, indent=2).encode()


def _change(change) -> dict:
    item = {"change": change.change, "path": change.path}
    if change.old_path:
        item["old_path"] = change.old_path
    return item


class ArtifactStore:
    """Writes a run's artifacts under its input prefix in the artifacts bucket."""

    def __init__(self, s3_client, bucket: str):
        self._s3 = s3_client
        self._bucket = bucket

    def put(self, input_prefix: str, relative_key: str, data: bytes, content_type: str) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=input_prefix + relative_key, Body=data, ContentType=content_type)
