"""Turn the files of a pushed commit into artifacts and a manifest on S3."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from bitbatch.model import Run, utc_now
from bitbatch.transforms import TRANSFORMS, TransformResult

MANIFEST_NAME = "manifest.json"
FILES_FOLDER = "files/"


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # path in the repository
    artifact: str  # key relative to the run's input prefix
    transform: str
    format: str
    size: int
    sha256: str


def build_artifact(path: str, data: bytes, transform: str) -> tuple[ManifestEntry, bytes]:
    """Apply transform to one file; raises TransformError naming the file."""
    result: TransformResult = TRANSFORMS[transform](path, data)
    entry = ManifestEntry(
        path=path,
        artifact=FILES_FOLDER + path + result.suffix,
        transform=transform,
        format=result.format,
        size=len(result.data),
        sha256=hashlib.sha256(result.data).hexdigest(),
    )
    return entry, result.data


def build_manifest(run: Run, entries: Iterable[ManifestEntry]) -> bytes:
    manifest = {
        "run_id": run.run_id,
        "repository": run.repository,
        "ref": run.ref,
        "commit": run.commit,
        "created_at": utc_now(),
        "files": [asdict(entry) for entry in entries],
    }
    return json.dumps(manifest, ensure_ascii=False, indent=2).encode()


class ArtifactStore:
    """Writes a run's artifacts under its input prefix in the artifacts bucket."""

    def __init__(self, s3_client, bucket: str):
        self._s3 = s3_client
        self._bucket = bucket

    def put(self, input_prefix: str, relative_key: str, data: bytes, content_type: str) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=input_prefix + relative_key, Body=data, ContentType=content_type)


CONTENT_TYPES = {"jsonl": "application/x-ndjson", "json": "application/json", "raw": "application/octet-stream"}
