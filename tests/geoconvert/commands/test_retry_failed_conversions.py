import json

import pytest
from django.utils import timezone

from geoconvert.models import Conversion
from tagger.models import TreeItem
from tests.geoconvert.commands.helpers import run


@pytest.fixture(autouse=True)
def dispatches(django_capture_on_commit_callbacks):
    """Sending to the broker is captured, not done: these tests are about the command."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        yield callbacks


def test_retries_failed_conversions_and_summarises(make_conversion, dispatches):
    failed = make_conversion("FAILURE", name="one.tif", error="worker lost")
    other = make_conversion("FAILURE", name="two.tif", error="worker lost")
    cancelled = make_conversion("CANCELLED", name="three.tif")
    make_conversion("SUCCESS", name="four.tif")

    code, out, _ = run("retry_failed_conversions")

    assert code == 0
    assert out.splitlines()[-1] == "2 conversion(s) selected, 2 retried, 0 refused."
    new = {c.retry_of_id: c for c in Conversion.objects.filter(retry_of__isnull=False)}
    assert set(new) == {failed.pk, other.pk}
    assert all(c.state == "PENDING" for c in new.values())
    for conversion in (failed, other):
        assert f"retried  {new[conversion.pk].task_id}" in out
    assert str(cancelled.task_id) not in out
    # A second run finds nothing left to retry.
    code, out, _ = run("retry_failed_conversions")
    assert (code, out.splitlines()[-1]) == (0, "0 conversion(s) selected, 0 retried, 0 refused.")


def test_dry_run_changes_nothing(make_conversion):
    failed = make_conversion("FAILURE")

    code, out, _ = run("retry_failed_conversions", "--dry-run")

    assert code == 0
    assert f"{failed.task_id}" in out and "would retry" in out
    assert out.splitlines()[-1] == (
        "1 conversion(s) selected, 1 would be retried, 0 refused (dry run: nothing changed)."
    )
    assert Conversion.objects.count() == 1


def test_selection_options(make_conversion):
    old = make_conversion("FAILURE", name="old.tif")
    Conversion.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timezone.timedelta(days=3)
    )
    recent = make_conversion("FAILURE", name="recent.tif")
    cancelled = make_conversion("CANCELLED", name="cancelled.tif")

    def selected(*args):
        code, out, _ = run("retry_failed_conversions", "--dry-run", "--json", *args)
        assert code == 0
        return {c["task_id"] for c in json.loads(out)["conversions"]}

    assert selected() == {str(recent.task_id)}
    assert selected("--since", "7d") == {str(old.task_id), str(recent.task_id)}
    assert selected("--since", "0") == {str(old.task_id), str(recent.task_id)}
    assert selected("--include-cancelled") == {str(recent.task_id), str(cancelled.task_id)}
    assert selected("--item", str(recent.item_id)) == {str(recent.task_id)}
    # Naming a conversion or an item needs no --since.
    assert selected("--task", str(old.task_id)) == {str(old.task_id)}
    assert selected("--item", str(old.item_id)) == {str(old.task_id)}
    assert selected("--task", str(old.task_id), "--since", "1h") == set()
    assert selected("--since", "0", "--limit", "1") == {str(old.task_id)}  # oldest first


def test_refusals_give_the_reason_and_exit_1(make_conversion):
    failed = make_conversion("FAILURE", name="converted-since.tif")
    # Converted by other means since: the service refuses a new attempt.
    TreeItem.objects.filter(pk=failed.item_id).update(object_type="geo_raster_file")

    code, out, err = run("retry_failed_conversions", "--json")

    assert code == 1
    data = json.loads(out)
    assert data["summary"] == {
        "selected": 1,
        "retried": 0,
        "would_retry": 0,
        "refused": 1,
        "dry_run": False,
    }
    assert data["conversions"][0]["reason"] == "File is already converted to geo raster"
    assert "1 conversion(s) could not be retried." in err


def test_only_the_latest_conversion_of_an_item_is_retried(make_conversion):
    first = make_conversion("FAILURE", name="a.tif")
    second = make_conversion("FAILURE", item=first.item)

    code, out, _ = run("retry_failed_conversions", "--json")

    assert code == 0
    assert [c["task_id"] for c in json.loads(out)["conversions"]] == [str(second.task_id)]


@pytest.mark.parametrize("args", [("--since", "soon"), ("--item", "42"), ("--limit", "0")])
def test_bad_arguments_exit_2(db, args):
    code, _, err = run("retry_failed_conversions", *args)
    assert code == 2 and err


def test_batch_retries_only_that_batch_s_failed_members(user, make_conversion):
    from django.core.files.base import ContentFile

    from geoconvert.services.batches import batch_start
    from tagger.services import item_create

    outside = make_conversion("FAILURE", name="outside.tif", error="worker lost")
    folder = item_create(owner=user, name="survey")
    for name in ("a.tif", "b.tif"):
        item_create(owner=user, name=name, parent=folder, file=ContentFile(b"x"))
    batch = batch_start(folder=folder)
    first, second = batch.conversions.order_by("created_at")
    Conversion.objects.filter(pk=first.pk).update(state="FAILURE", error="not a raster")

    code, out, _ = run("retry_failed_conversions", "--batch", str(batch.pk), "--json")

    assert code == 0, out
    body = json.loads(out)
    assert [c["task_id"] for c in body["conversions"]] == [str(first.pk)]
    retry = Conversion.objects.get(retry_of=first)
    assert retry.batch_id == batch.pk and retry.priority == first.priority
    assert not Conversion.objects.filter(retry_of=outside).exists()
    code, _, err = run("retry_failed_conversions", "--batch", "nope")
    assert code == 2 and "--batch must be a UUID" in err
