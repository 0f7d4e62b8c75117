from decimal import Decimal

from bitbatch.model import Run, RunStatus, new_run_id


def make_run(**overrides) -> Run:
    values = dict(
        run_id=new_run_id(),
        product="cloud",
        repository="weather/stations",
        repository_uuid="{7c1f0d2e-0000-4000-8000-000000000000}",
        ref="refs/heads/main",
        ref_name="main",
        ref_type="branch",
        commit="a" * 40,
        previous_commit=None,
        commit_url=None,
        pusher_name="Ada Lovelace",
        pusher_email=None,
        delivery_id=None,
    )
    values.update(overrides)
    return Run(**values)


def test_run_item_round_trip_keeps_none_fields():
    # Given a run created by a push that created its branch, with no author email
    run = make_run(expires_at=1_800_000_000)

    # When it is stored as an item (DynamoDB returns numbers as Decimal) and read back
    item = run.to_item()
    item["expires_at"] = Decimal(item["expires_at"])
    restored = Run.from_item(item)

    # Then the missing fields come back as None and nothing else changes
    assert "previous_commit" not in item
    assert restored.previous_commit is None
    assert restored.pusher_email is None
    assert restored.expires_at == 1_800_000_000
    assert restored == run


def test_run_item_ignores_unknown_attributes():
    item = make_run().to_item()
    item["added_by_a_later_version"] = "x"

    restored = Run.from_item(item)

    assert restored.status == RunStatus.RECEIVED


def test_run_ids_sort_by_creation_time():
    first = new_run_id()
    second = new_run_id()

    assert first[:16] <= second[:16]
    assert first != second
