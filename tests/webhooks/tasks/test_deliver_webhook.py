"""Webhooks through their real path: a conversion in a real Celery worker process writes
its events in its own transactions, the worker's delivery task sends them to a real
receiver, signed; a receiver that fails for a while still gets every event."""

import pytest

from tests import rasters
from tests.geoconvert.api.helpers import convert, queue_paused, upload, wait_for_task
from tests.webhooks.receiver import Reply, wait_until
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.usefixtures("live_worker")

STAGES = ["Loading file", "Analyzing file", "Creating georeferenced file", "Updating database"]


def _delivered(receiver, secret, event_type, count=1) -> list[dict]:
    """The payloads of `event_type` the receiver got, once it has `count`, each verified."""
    wait_until(lambda: len(receiver.of_type(event_type)) >= count, f"{count} {event_type}")
    return [r.verified(secret) for r in receiver.of_type(event_type)]


def _payloads(receiver, secret, event_type) -> list[dict]:
    return [r.verified(secret) for r in receiver.of_type(event_type)]


def _all_succeeded():
    return not WebhookDelivery.objects.exclude(state="SUCCEEDED").exists()


def test_a_conversion_sends_started_progress_and_succeeded(api, register, receiver, tmp_path):
    hook = register(
        receiver.url, ["conversion.started", "conversion.progress", "conversion.succeeded"]
    )
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "a.tif"))
    task_id = convert(api, item["id"]).json()["task_id"]
    assert wait_for_task(api, task_id)[0]["state"] == "SUCCESS"

    (succeeded,) = _delivered(receiver, hook["secret"], "conversion.succeeded")
    (started,) = _delivered(receiver, hook["secret"], "conversion.started")
    wait_until(_all_succeeded, "every delivery recorded as succeeded")
    assert succeeded["data"]["task_id"] == started["data"]["task_id"] == task_id
    assert succeeded["data"]["item_id"] == item["id"]
    assert succeeded["data"]["state"] == "SUCCESS" and succeeded["data"]["progress"] == 100
    assert succeeded["data"]["result"]["crs"] and succeeded["data"]["error"] is None
    assert succeeded["data"]["finished_at"] and "batch_id" in succeeded["data"]
    assert started["data"]["state"] == "PROGRESS" and started["data"]["started_at"]
    progress = [
        p["data"]["status"] for p in _payloads(receiver, hook["secret"], "conversion.progress")
    ]
    assert sorted(progress, key=STAGES.index) == STAGES  # each stage, once
    assert len({r.webhook_id for r in receiver.received}) == len(receiver.received)


def test_without_the_opt_in_no_progress_is_sent(api, register, receiver, tmp_path):
    hook = register(receiver.url)  # the default events
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "a.tif"))
    task_id = convert(api, item["id"]).json()["task_id"]
    assert wait_for_task(api, task_id)[0]["state"] == "SUCCESS"
    _delivered(receiver, hook["secret"], "conversion.succeeded")
    _delivered(receiver, hook["secret"], "conversion.started")
    assert receiver.of_type("conversion.progress") == []


def test_a_failed_conversion_sends_failed_with_its_error(api, register, receiver, tmp_path):
    hook = register(receiver.url, ["conversion.failed"])
    item = upload(api, rasters.truncated_tiff(tmp_path / "broken.tif"))
    task_id = convert(api, item["id"]).json()["task_id"]
    assert wait_for_task(api, task_id)[0]["state"] == "FAILURE"

    (failed,) = _delivered(receiver, hook["secret"], "conversion.failed")
    assert failed["data"]["task_id"] == task_id and failed["data"]["state"] == "FAILURE"
    assert failed["data"]["error"] and failed["data"]["result"] is None


def test_a_cancelled_conversion_sends_cancelled(api, register, receiver, tmp_path, live_worker):
    hook = register(receiver.url, ["conversion.cancelled", "conversion.started"])
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "a.tif"))
    with queue_paused(live_worker):
        task_id = convert(api, item["id"]).json()["task_id"]
        assert api.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 200

    (cancelled,) = _delivered(receiver, hook["secret"], "conversion.cancelled")
    assert cancelled["data"]["task_id"] == task_id and cancelled["data"]["state"] == "CANCELLED"
    assert receiver.of_type("conversion.started") == []


def test_a_folder_batch_sends_its_members_events_and_batch_completed_once(
    api, register, receiver, tmp_path
):
    hook = register(receiver.url, ["batch.completed", "conversion.succeeded", "conversion.failed"])
    folder = api.post("/api/v1/tree-items/", {"name": "survey"}, format="json").json()["id"]
    upload(api, rasters.rgb_byte_tiff(tmp_path / "a.tif"), parent=folder)
    upload(api, rasters.palette_tiff(tmp_path / "b.tif"), parent=folder)
    upload(api, rasters.text_file(tmp_path / "notes.txt"), parent=folder)

    batch_id = convert(api, folder).json()["batch_id"]

    (completed,) = _delivered(receiver, hook["secret"], "batch.completed")
    assert completed["data"]["batch_id"] == batch_id
    assert completed["data"]["state"] == "COMPLETED"
    assert completed["data"]["counts"] == {
        "PENDING": 0,
        "PROGRESS": 0,
        "SUCCESS": 2,
        "FAILURE": 1,
        "CANCELLED": 0,
    }
    succeeded = _delivered(receiver, hook["secret"], "conversion.succeeded", count=2)
    (failed,) = _delivered(receiver, hook["secret"], "conversion.failed")
    assert {p["data"]["batch_id"] for p in [*succeeded, failed]} == {batch_id}
    # The batch's completion is told after its last member's end, and only once.
    assert api.get(f"/api/v1/batches/{batch_id}").json()["state"] == "COMPLETED"
    wait_until(_all_succeeded, "every delivery succeeded")
    assert len(receiver.of_type("batch.completed")) == 1


def test_a_receiver_failing_for_a_while_gets_every_event_with_one_webhook_id_each(
    api, register, receiver, tmp_path
):
    # The test settings retry four times, half a second apart.
    receiver.replies = [Reply(500), Reply(500), Reply(503)]
    hook = register(receiver.url, ["conversion.started", "conversion.succeeded"])
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "a.tif"))
    task_id = convert(api, item["id"]).json()["task_id"]
    assert wait_for_task(api, task_id)[0]["state"] == "SUCCESS"

    wait_until(_all_succeeded, "both deliveries to succeed")
    assert WebhookDelivery.objects.count() == 2
    by_id = {}
    for request in receiver.received:
        by_id.setdefault(request.webhook_id, []).append(request.verified(hook["secret"]))
    assert len(by_id) == 2
    assert sum(len(tries) for tries in by_id.values()) == 5  # three failures, two successes
    for tries in by_id.values():
        assert all(payload == tries[0] for payload in tries)  # the same event each time
    assert {tries[0]["type"] for tries in by_id.values()} == {
        "conversion.started",
        "conversion.succeeded",
    }
    for delivery in WebhookDelivery.objects.all():
        log = list(delivery.log.all())
        assert log[-1].status_code == 200
        assert [a.number for a in log] == list(range(1, len(log) + 1))
