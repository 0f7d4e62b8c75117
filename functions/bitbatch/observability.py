"""Logger, Tracer and Metrics shared by every handler.

Service name, metrics namespace and log level come from the POWERTOOLS_*
variables that template.yaml sets per function.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()

RUN_LOG_KEYS = ("run_id", "repository", "ref", "commit")


def bind_run(keys: dict[str, str]) -> None:
    """Add run id, repository, ref and commit to every later log line of this thread.

    Thread-local keys keep runs apart when the local stack invokes handlers
    from several threads of one process.
    """
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(**{key: keys[key] for key in RUN_LOG_KEYS if keys.get(key)})


def unbind_run() -> None:
    logger.thread_safe_clear_keys()
