"""The order in which a real worker starts conversions: priority lanes, fair sharing across
users, and scheduled conversions sent by a real beat. Each order test stops the session's
worker from taking conversions and starts a worker of one process once everything is
submitted, so "starts next" has one meaning."""

import datetime

import pytest
from django.utils import timezone

from geoconvert.models import Conversion
from tests import rasters
from tests.fixtures import CeleryProcess, WorkerProcess
from tests.geoconvert.api.helpers import convert, queue_paused, task_status, upload, wait_for_task
from tests.geoconvert.reliability.helpers import wait_until

pytestmark = pytest.mark.usefixtures("live_worker")


@pytest.fixture
def files(tmp_path):
    source = rasters.rgb_byte_tiff(tmp_path / "source.tif")

    def make(api, n, *, folder_name=None):
        parent = None
        if folder_name:
            parent = api.post("/api/v1/tree-items/", {"name": folder_name}, format="json")
            parent = parent.json()["id"]
        items = [upload(api, source, name=f"{i}.tif", parent=parent) for i in range(n)]
        return parent, items

    return make


@pytest.fixture
def one_process_worker(tmp_path):
    started = []

    def start():
        worker = WorkerProcess(tmp_path / "one-process-worker.log", concurrency=1).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _started_order(task_ids) -> list[str]:
    rows = Conversion.objects.filter(pk__in=task_ids, started_at__isnull=False)
    return [str(pk) for pk in rows.order_by("started_at").values_list("pk", flat=True)]


def test_a_high_conversion_submitted_last_starts_next(api, files, live_worker, one_process_worker):
    folder, _ = files(api, 50, folder_name="survey")
    urgent_item = files(api, 1)[1][0]
    with queue_paused(live_worker):
        batch = convert(api, folder).json()
        urgent = convert(api, urgent_item["id"], {"priority": "high"}).json()
        assert batch["total"] == 50
        one_process_worker()
        wait_for_task(api, urgent["task_id"])
        members = list(
            Conversion.objects.filter(batch_id=batch["batch_id"]).values_list("pk", flat=True)
        )
        order = _started_order([urgent["task_id"], *members])
        api.post(f"/api/v1/batches/{batch['batch_id']}/cancel")
    # Submitted after 50 low ones, it is the first the worker started.
    assert order[0] == urgent["task_id"], order


def test_another_user_s_conversion_is_not_stuck_behind_a_big_batch(
    api, other_api, files, live_worker, one_process_worker, settings
):
    share = settings.GEOCONVERT["USER_MAX_QUEUED"]
    folder, _ = files(api, 20, folder_name="big")
    _, (theirs_normal, theirs_low) = files(other_api, 2)
    with queue_paused(live_worker):
        batch = convert(api, folder).json()
        normal = convert(other_api, theirs_normal["id"]).json()
        low = convert(other_api, theirs_low["id"], {"priority": "low"}).json()
        one_process_worker()
        wait_for_task(other_api, normal["task_id"])
        wait_for_task(other_api, low["task_id"])
        members = list(
            Conversion.objects.filter(batch_id=batch["batch_id"]).values_list("pk", flat=True)
        )
        order = _started_order([normal["task_id"], low["task_id"], *members])
        api.post(f"/api/v1/batches/{batch['batch_id']}/cancel")
    # The other user's normal conversion starts first; even one in the batch's own (low)
    # lane starts after at most the batch's share of the broker, not after 20 files.
    assert order[0] == normal["task_id"], order
    assert order.index(low["task_id"]) <= share + 1, order


@pytest.fixture
def beat(tmp_path):
    process = CeleryProcess(
        [
            "beat",
            "--scheduler",
            "geoconvert.beat:DatabaseScheduler",
            "--max-interval",
            "1",
            "--loglevel",
            "INFO",
            "--pidfile=",
            "-s",
            str(tmp_path / "beat-schedule"),
        ],
        tmp_path / "beat.log",
    )
    process.spawn()
    yield process
    process.stop()


def test_a_scheduled_conversion_waits_then_beat_sends_it(api, files, beat):
    _, (item,) = files(api, 1)
    run_at = timezone.now() + datetime.timedelta(seconds=4)

    response = convert(api, item["id"], {"run_at": run_at.isoformat()})

    assert response.status_code == 202, response.content
    task_id = response.json()["task_id"]
    waiting = task_status(api, task_id)
    assert (waiting["state"], waiting["status"], waiting["progress"]) == ("PENDING", "Scheduled", 0)
    assert datetime.datetime.fromisoformat(waiting["run_at"]) == run_at.replace(
        microsecond=run_at.microsecond
    )
    final, _ = wait_for_task(api, task_id, timeout=60)
    assert final["state"] == "SUCCESS", beat.log_tail()
    conversion = Conversion.objects.get(pk=task_id)
    assert conversion.started_at >= run_at
    # Beat's pass runs every 5 s.
    assert (conversion.started_at - run_at).total_seconds() <= 10, beat.log_tail()


def test_beat_sends_a_due_scheduled_conversion_while_no_worker_takes_any_task(
    api, files, beat, live_worker, settings
):
    # As when every worker process is busy converting: none takes the housekeeping queue.
    _, (item,) = files(api, 1)
    with (
        queue_paused(live_worker),
        queue_paused(live_worker, settings.CELERY_TASK_DEFAULT_QUEUE),
    ):
        run_at = timezone.now() + datetime.timedelta(seconds=3)
        task_id = convert(api, item["id"], {"run_at": run_at.isoformat()}).json()["task_id"]

        sent = wait_until(
            lambda: Conversion.objects.get(pk=task_id).queued_at,
            "beat to send the scheduled conversion",
            timeout=30,
        )
        assert sent >= run_at
        assert (sent - run_at).total_seconds() <= 10, beat.log_tail()
        assert Conversion.objects.get(pk=task_id).started_at is None
    final, _ = wait_for_task(api, task_id, timeout=60)
    assert final["state"] == "SUCCESS"


def test_a_scheduled_conversion_can_be_cancelled_and_never_runs(api, files, beat):
    _, (item,) = files(api, 1)
    run_at = timezone.now() + datetime.timedelta(seconds=2)
    task_id = convert(api, item["id"], {"run_at": run_at.isoformat()}).json()["task_id"]

    assert api.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 200

    wait_until(lambda: timezone.now() > run_at + datetime.timedelta(seconds=7), "beat's pass")
    conversion = Conversion.objects.get(pk=task_id)
    assert conversion.state == "CANCELLED" and conversion.started_at is None
    assert conversion.queued_at is None
