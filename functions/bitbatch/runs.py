"""The runs table: one item per run, moved forward by conditional writes."""

from __future__ import annotations

import time
from collections.abc import Iterable

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from bitbatch.model import Run, RunStatus, utc_now


class RunNotFound(LookupError):
    pass


class TransitionRejected(RuntimeError):
    """The run is not in a status that may move to the requested one."""


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class RunStore:
    def __init__(self, table):
        """table: a boto3 DynamoDB Table resource for the runs table."""
        self._table = table

    def create(self, run: Run, retention_days: int) -> None:
        run.stages = {RunStatus.RECEIVED: run.created_at}
        run.expires_at = int(time.time()) + retention_days * 86400
        self._table.put_item(Item=run.to_item(), ConditionExpression=Attr("run_id").not_exists())

    def get(self, run_id: str) -> Run:
        item = self._table.get_item(Key={"run_id": run_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise RunNotFound(f"run {run_id} is not in the runs table")
        return Run.from_item(item)

    def advance(
        self,
        run_id: str,
        status: RunStatus,
        allowed_from: Iterable[RunStatus],
        **attributes,
    ) -> None:
        """Move a run to status and set attributes, only from one of allowed_from.

        Raises TransitionRejected when the run has already moved elsewhere, so a
        late or repeated event never moves a run backwards.
        """
        now = utc_now()
        names = {"#status": "status", "#stages": "stages", "#stage": str(status), "#updated_at": "updated_at"}
        values = {":status": str(status), ":now": now}
        assignments = ["#status = :status", "#stages.#stage = :now", "#updated_at = :now"]
        for index, (name, value) in enumerate(attributes.items()):
            names[f"#a{index}"] = name
            values[f":a{index}"] = value
            assignments.append(f"#a{index} = :a{index}")

        allowed = [str(previous) for previous in allowed_from]
        condition = Attr("run_id").exists() & Attr("status").is_in(allowed)
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET " + ", ".join(assignments),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ConditionExpression=condition,
            )
        except ClientError as error:
            if _is_condition_failure(error):
                raise TransitionRejected(
                    f"run {run_id} cannot move to {status}: it is not in any of {', '.join(allowed)}"
                ) from error
            raise

    def claim_submission(self, run_id: str, stale_after_seconds: int = 300) -> bool:
        """Claim the right to submit the run's job; False while another claim is fresh."""
        now = int(time.time())
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET submission_claimed_at = :now",
                ExpressionAttributeValues={":now": now},
                ConditionExpression=Attr("run_id").exists()
                & (Attr("submission_claimed_at").not_exists() | Attr("submission_claimed_at").lt(now - stale_after_seconds)),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def mark_notified(self, run_id: str, status: RunStatus) -> bool:
        """Record that the email for status was sent; False if it already was."""
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET notified_status = :status",
                ExpressionAttributeValues={":status": str(status)},
                ConditionExpression=Attr("notified_status").not_exists() | Attr("notified_status").ne(str(status)),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def record_notification_error(self, run_id: str, reason: str) -> None:
        self._table.update_item(
            Key={"run_id": run_id},
            UpdateExpression="SET notification_error = :reason",
            ExpressionAttributeValues={":reason": reason},
        )

    def clear_notified(self, run_id: str) -> None:
        """Undo mark_notified after a failed send, so a retry sends the email."""
        self._table.update_item(Key={"run_id": run_id}, UpdateExpression="REMOVE notified_status")
