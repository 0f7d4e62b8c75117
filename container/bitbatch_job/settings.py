"""Job settings, read once from the environment that AWS Batch passes in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bitbatch_job.errors import ConfigurationError


@dataclass(frozen=True)
class JobSettings:
    run_id: str
    artifacts_bucket: str
    input_prefix: str
    output_prefix: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> JobSettings:
        """Read and check the job's variables, raising ConfigurationError on the first bad one."""
        run_id = _required(environ, "RUN_ID")
        artifacts_bucket = _required(environ, "ARTIFACTS_BUCKET")
        input_prefix = _key_prefix(environ, "INPUT_PREFIX", "runs/<run_id>/input/")
        output_prefix = _key_prefix(environ, "OUTPUT_PREFIX", "runs/<run_id>/output/")
        return cls(run_id, artifacts_bucket, input_prefix, output_prefix)


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(
            f"environment variable {name} is missing or empty; "
            "set it in the Batch job definition or in the SubmitJob container overrides"
        )
    return value


def _key_prefix(environ: Mapping[str, str], name: str, example: str) -> str:
    prefix = _required(environ, name)
    if not prefix.endswith("/") or prefix.startswith("/"):
        raise ConfigurationError(
            f"environment variable {name}={prefix!r} is invalid; "
            f"set it to an S3 key prefix that ends with '/' and does not start with '/', "
            f"for example {example}"
        )
    return prefix
