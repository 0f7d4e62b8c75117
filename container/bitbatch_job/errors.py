"""Failures the job expects, each mapped to an exit code by __main__."""


class JobError(Exception):
    """The run's input or storage is unusable, so the job fails with exit code 1."""

    exit_code = 1


class ConfigurationError(JobError):
    """An environment variable is missing or invalid, so the job fails with exit code 2."""

    exit_code = 2
