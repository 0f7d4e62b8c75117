"""Report a run's state to Bitbucket as a build status on the pushed commit, linked to its run page.

A failing report is logged and never changes the run's result.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import BotoCoreError, ClientError

from bitbatch.build_status import BuildState, BuildStatus, BuildStatusPublisher, status_for_run
from bitbatch.credentials import read_credentials
from bitbatch.model import Run
from bitbatch.observability import logger


class StatusReporter:
    def __init__(self, publisher: BuildStatusPublisher, run_page_url: Callable[[str], str]):
        self._publisher = publisher
        self._run_page_url = run_page_url

    def report_submitted(self, run: Run) -> None:
        self._report(run, lambda url: BuildStatus(BuildState.INPROGRESS, url, "Job submitted to AWS Batch"))

    def report_finished(self, run: Run) -> None:
        self._report(run, lambda url: status_for_run(run, url))

    def _report(self, run: Run, make_status: Callable[[str], BuildStatus | None]) -> None:
        if not self._publisher.enabled:
            return
        try:
            url = self._run_page_url(run.run_id)
        except (ClientError, BotoCoreError, GetParameterError, ValueError) as error:
            logger.warning("build status not sent: the run page link could not be made", extra={"error": str(error)})
            return
        status = make_status(url)
        if status is not None:
            self._publisher.publish(run, status)


def make_publisher(
    read_token_secret: Callable[[], str] | None,
    cloud_api_url: str,
    data_center_base_url: str | None,
    **limits,
) -> BuildStatusPublisher:
    """Build a publisher whose credentials come from the token secret; without a secret it stays disabled."""
    credentials = None
    if read_token_secret is not None:
        try:
            credentials = read_credentials(read_token_secret())
        except (ClientError, BotoCoreError, ValueError) as error:
            logger.warning("build statuses disabled: the Bitbucket token secret could not be read", extra={"error": str(error)})
    return BuildStatusPublisher(
        cloud_api_url=cloud_api_url, data_center_base_url=data_center_base_url, credentials=credentials, **limits
    )
