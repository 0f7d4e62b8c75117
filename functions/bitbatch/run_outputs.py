"""A run's output files on S3, listed for the run page with fresh presigned links."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from bitbatch.observability import logger
from bitbatch.run_page import OutputFile, OutputListing

# Each link is signed when the page is served, so a short lifetime costs nothing:
# reloading the page signs new ones.
# NOTE: a link also stops working when the function's temporary credentials that signed it
# expire, which can be sooner than this.
OUTPUT_LINK_SECONDS = 15 * 60
# One ListObjectsV2 page. For a run with more output files the page lists the first ones and a notice.
MAX_LISTED_FILES = 1000


class OutputFiles:
    def __init__(self, s3_client, bucket: str, link_seconds: int = OUTPUT_LINK_SECONDS):
        """s3_client: a boto3 S3 client configured for SigV4 (signature_version="s3v4")."""
        self._s3 = s3_client
        self._bucket = bucket
        self._link_seconds = link_seconds

    def list(self, prefix: str) -> OutputListing:
        """List the files under prefix with their sizes and a presigned GET link for each.

        A failed listing is logged and returned as unavailable, so the page still shows the run.
        """
        try:
            response = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=prefix, MaxKeys=MAX_LISTED_FILES)
        except (BotoCoreError, ClientError) as error:
            logger.error("listing output files failed", extra={"prefix": prefix, "reason": str(error)})
            return OutputListing(files=(), truncated=False, link_seconds=self._link_seconds, unavailable=True)

        files = []
        for item in response.get("Contents", []):
            name = item["Key"][len(prefix) :]
            if not name or name.endswith("/"):
                continue  # the prefix itself, or a folder placeholder some tools create
            url = self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": item["Key"]}, ExpiresIn=self._link_seconds
            )
            files.append(OutputFile(name=name, size=int(item.get("Size", 0)), url=url))
        return OutputListing(
            files=tuple(files), truncated=bool(response.get("IsTruncated")), link_seconds=self._link_seconds
        )
