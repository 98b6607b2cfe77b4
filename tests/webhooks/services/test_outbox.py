"""The outbox: events are written in the transaction of the conversion's change (so a
change rolled back tells nothing), for the endpoints that subscribe to them, once."""

import uuid

import pytest
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from geoconvert.models import Conversion, Stage
from geoconvert.services.conversions import conversion_start
from geoconvert.services.transitions import conversion_transition
from geoconvert.signals import batch_completed, conversion_stage_changed
from tagger.services import item_create
from webhooks.models import WebhookDelivery, WebhookEvent
from webhooks.services.endpoints import webhook_endpoint_create


@pytest.fixture
def conversion(user, django_capture_on_commit_callbacks):
    item = item_create(owner=user, name="a.tif", file=ContentFile(b"x" * 10))
    with django_capture_on_commit_callbacks(execute=False):
        conversion, _ = conversion_start(item=item)
    return conversion


def _subscribe(owner, *events, url="https://hooks.example.org/"):
    return webhook_endpoint_create(owner=owner, url=url, events=list(events))


def test_a_transition_rolled_back_writes_no_event(user, conversion):
    _subscribe(user, "conversion.cancelled")
    with pytest.raises(RuntimeError), transaction.atomic():
        assert conversion_transition(conversion.task_id, "cancel") == 1
        assert WebhookEvent.objects.count() == 1  # written inside the transaction...
        raise RuntimeError("the change fails after the transition")
    # ...and gone with it.
    assert WebhookEvent.objects.count() == 0
    assert WebhookDelivery.objects.count() == 0
    conversion.refresh_from_db()
    assert conversion.state == "PENDING"


def test_a_committed_transition_writes_the_event_and_sends_after_commit(
    user, conversion, django_capture_on_commit_callbacks
):
    one = _subscribe(user, "conversion.cancelled")
    two = _subscribe(user, "conversion.cancelled", "conversion.failed")
    _subscribe(user, "conversion.succeeded")  # not this event
    with django_capture_on_commit_callbacks() as callbacks:
        with transaction.atomic():
            conversion_transition(conversion.task_id, "cancel", error="")
    # The deliveries' tasks are sent once committed.
    assert [c for c in callbacks if "webhook_event_record" in c.__qualname__]

    event = WebhookEvent.objects.get()
    assert event.type == "conversion.cancelled"
    assert {d.endpoint_id for d in event.deliveries.all()} == {one.pk, two.pk}
    data = event.payload["data"]
    assert data["task_id"] == str(conversion.task_id)
    assert data["item_id"] == str(conversion.item_id)
    assert data["state"] == "CANCELLED" and data["batch_id"] is None
    assert data["result"] is None and data["error"] is None
    assert data["finished_at"] is None or isinstance(data["finished_at"], str)


def test_other_users_endpoints_get_nothing(user, other_user, conversion):
    _subscribe(other_user, "conversion.cancelled")
    conversion_transition(conversion.task_id, "cancel")
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize("name", ["requeue", "reclaim"])
def test_transitions_a_user_does_not_see_are_not_told(user, conversion, name):
    _subscribe(user, "conversion.started", "conversion.progress")
    conversion_transition(conversion.task_id, "claim", claim=uuid.uuid4())
    assert conversion_transition(conversion.task_id, name) == 1
    assert list(WebhookEvent.objects.values_list("type", flat=True)) == ["conversion.started"]


def test_progress_is_opt_in_and_told_once_per_stage(user, conversion):
    opted_in = _subscribe(user, "conversion.progress")
    _subscribe(user, "conversion.started")
    for stage, progress in [(Stage.LOADING, 10), (Stage.LOADING, 10), (Stage.ANALYZING, 20)]:
        conversion_stage_changed.send(
            sender=Conversion, task_id=conversion.task_id, stage=stage, progress=progress
        )
    events = WebhookEvent.objects.order_by("created_at")
    assert [e.type for e in events] == ["conversion.progress"] * 2
    assert [(e.payload["data"]["status"], e.payload["data"]["progress"]) for e in events] == [
        ("Loading file", 10),
        ("Analyzing file", 20),
    ]
    assert {d.endpoint_id for d in WebhookDelivery.objects.all()} == {opted_in.pk}


def test_batch_completed_carries_the_summary(user):
    _subscribe(user, "batch.completed")
    summary = {"id": str(uuid.uuid4()), "state": "COMPLETED", "total": 2, "counts": {}}
    batch_completed.send(sender=None, batch_id=summary["id"], owner_id=user.pk, summary=summary)
    batch_completed.send(sender=None, batch_id=summary["id"], owner_id=user.pk, summary=summary)
    event = WebhookEvent.objects.get()
    assert event.type == "batch.completed" and event.payload["data"] == summary


def test_a_batch_that_completes_again_after_a_retry_is_told_again(user):
    from geoconvert.services.batches import batch_complete_if_done, batch_retry, batch_start

    _subscribe(user, "batch.completed")
    folder = item_create(owner=user, name="survey")
    item_create(owner=user, name="notes.txt", parent=folder, file=ContentFile(b"not a raster"))
    batch = batch_start(folder=folder)
    member = batch.conversions.get()
    Conversion.objects.filter(pk=member.pk).update(
        state=Conversion.State.FAILURE, finished_at=timezone.now()
    )
    assert batch_complete_if_done(batch.pk)

    batch, retried = batch_retry(batch=batch)
    assert retried == 1 and batch.state == "PROGRESS"
    Conversion.objects.filter(batch=batch, state__in=Conversion.ACTIVE_STATES).update(
        state=Conversion.State.FAILURE, finished_at=timezone.now()
    )
    assert batch_complete_if_done(batch.pk)

    events = WebhookEvent.objects.filter(type="batch.completed").order_by("created_at")
    assert [e.payload["data"]["counts"]["FAILURE"] for e in events] == [1, 1]  # latest attempts
    assert len({e.payload["data"]["finished_at"] for e in events}) == 2


def test_cancelling_a_batch_tells_each_member_s_cancel_once(
    user, other_user, django_capture_on_commit_callbacks
):
    from geoconvert.services.batches import batch_cancel, batch_start

    folder = item_create(owner=user, name="survey")
    for name in ("a.tif", "b.tif", "c.tif"):
        item_create(owner=user, name=name, parent=folder, file=ContentFile(b"x"))
    with django_capture_on_commit_callbacks(execute=False):
        batch = batch_start(folder=folder)
    endpoint = _subscribe(user, "conversion.cancelled")
    _subscribe(other_user, "conversion.cancelled")

    with django_capture_on_commit_callbacks(execute=False):
        batch_cancel(batch=batch)

    events = WebhookEvent.objects.filter(type="conversion.cancelled")
    assert sorted(e.payload["data"]["task_id"] for e in events) == sorted(
        str(pk) for pk in batch.conversions.values_list("pk", flat=True)
    )
    assert {e.payload["data"]["batch_id"] for e in events} == {str(batch.pk)}
    assert set(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == {endpoint.pk}
