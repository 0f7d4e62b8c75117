"""Batch job names carry the run id and, from the second attempt on, the attempt."""

import pytest

from bitbatch.model import new_run_id
from bitbatch.submission import job_name, parse_job_name, run_id_from_job_name


def test_first_attempt_keeps_plain_name():
    run_id = new_run_id()

    assert job_name(run_id) == f"bitbatch-{run_id}"
    assert job_name(run_id, 1) == f"bitbatch-{run_id}"


def test_later_attempt_adds_suffix():
    run_id = new_run_id()

    assert job_name(run_id, 2) == f"bitbatch-{run_id}-a2"
    assert job_name(run_id, 9999) == f"bitbatch-{run_id}-a9999"


@pytest.mark.parametrize("attempt", [1, 2, 10, 9999])
def test_job_name_round_trip(attempt):
    run_id = new_run_id()

    assert parse_job_name(job_name(run_id, attempt)) == (run_id, attempt)
    assert run_id_from_job_name(job_name(run_id, attempt)) == run_id


@pytest.mark.parametrize(
    "run_id",
    [
        "20261204T194832Z-a12345678901",  # hex part that starts with "a" and digits
        "20261204T194832Z-a1a2a3a4a5a6",
        "20261204T194832Z-000000000a12",
    ],
)
def test_run_id_ending_like_suffix_stays_whole(run_id):
    assert parse_job_name(job_name(run_id)) == (run_id, 1)
    assert parse_job_name(job_name(run_id, 3)) == (run_id, 3)


@pytest.mark.parametrize("name", [None, "", "other-job", "bitbatch-", "bitbatch-run id with spaces"])
def test_foreign_job_name_is_none(name):
    assert parse_job_name(name) is None
    assert run_id_from_job_name(name) is None
