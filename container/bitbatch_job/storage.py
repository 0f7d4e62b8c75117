"""S3 access for the job: the run's input objects and its output objects."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import BinaryIO

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from bitbatch_job.errors import JobError

_CHUNK_BYTES = 1024 * 1024
_NOT_FOUND_CODES = ("NoSuchKey", "404", "NotFound")


class RunStorage:
    """Access to one run's objects in the artifacts bucket."""

    def __init__(self, bucket: str, s3_client=None) -> None:
        self.bucket = bucket
        self.s3 = s3_client or boto3.client("s3")

    def read(self, key: str) -> bytes:
        """Return the whole body of a small object, such as the manifest."""
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise JobError(self._failure("download", key, error)) from None

    def download(self, key: str, destination: Path, max_bytes: int) -> None:
        """Stream an object to a local file, stopping once it passes `max_bytes`.

        The limit keeps an oversized object from filling the disk, and the caller
        then reports the size mismatch from the partial file.
        """
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
            written = 0
            with closing(response["Body"]) as body, destination.open("wb") as local_file:
                while written <= max_bytes and (chunk := body.read(_CHUNK_BYTES)):
                    local_file.write(chunk)
                    written += len(chunk)
        except (ClientError, BotoCoreError) as error:
            raise JobError(self._failure("download", key, error)) from None

    def upload(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as error:
            raise JobError(self._failure("upload", key, error)) from None

    def upload_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        """Upload a local file's content, in parts when it is large, so it is never read whole into memory."""
        try:
            self.s3.upload_fileobj(stream, self.bucket, key, ExtraArgs={"ContentType": content_type})
        except (ClientError, BotoCoreError, S3UploadFailedError) as error:
            raise JobError(self._failure("upload", key, error)) from None

    def _failure(self, action: str, key: str, error: Exception) -> str:
        location = f"s3://{self.bucket}/{key}"
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                return f"bucket {self.bucket} not found; check ARTIFACTS_BUCKET in the job definition"
            if code in _NOT_FOUND_CODES:
                return f"{location} not found; check INPUT_PREFIX and that the transform finished for this run"
            if code in ("AccessDenied", "403"):
                return f"{action} of {location} failed: access denied; grant the job role s3 access to this prefix"
        return f"{action} of {location} failed: {error}"
