"""Workers die mid-conversion (SIGKILL: no cleanup code runs) and messages arrive twice.

Every conversion must still end exactly once: SUCCESS with one COG and one metadata row and
nothing else on disk, or FAILURE with a clear message once the attempt cap is reached.
"""

import json
import os
import signal

import redis

from config.celery_app import app
from geoconvert.models import Conversion
from geoconvert.services.housekeeping import conversion_reap_stale
from geoconvert.tasks import convert_to_geo_raster
from tagger.models import TreeItem
from tests import rasters
from tests.conftest import redis_py_url
from tests.geoconvert.api.helpers import convert, upload
from tests.geoconvert.reliability.conftest import repeat
from tests.geoconvert.reliability.helpers import (
    assert_converted_once,
    folder_files,
    logs,
    start_large_conversion,
    wait_finished,
    wait_mid_write,
    wait_until,
    working_files,
)
from tests.storage import stored_sha256

# The replacement worker restores messages unacknowledged for longer than this when it
# starts (production: the visibility timeout, about an hour, or the reaper).
RESTORE_AFTER = {"CELERY_VISIBILITY_TIMEOUT": "1"}


@repeat
def test_pool_child_killed_mid_write_is_rerun_once(api, tmp_path, start_worker, run):
    worker = start_worker()
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)

    wait_mid_write(task_id, item_id, attempt=1)
    (child,) = worker.pool_pids()
    os.kill(child, signal.SIGKILL)

    conversion = wait_finished(task_id)
    assert conversion.attempts == 2
    assert_converted_once(item_id, task_id, src, digest, lambda: logs(worker))
    assert worker.ping()


@repeat
def test_whole_worker_killed_mid_write_is_rerun_by_a_new_worker(api, tmp_path, start_worker, run):
    first = start_worker()
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)

    wait_mid_write(task_id, item_id, attempt=1)
    first.kill()
    assert any(name.endswith(".partial") for name in working_files(item_id))

    second = start_worker(**RESTORE_AFTER)
    conversion = wait_finished(task_id)
    assert conversion.attempts == 2
    assert conversion.worker == second.node_name
    assert_converted_once(item_id, task_id, src, digest, lambda: logs(first, second))


@repeat
def test_file_that_kills_its_worker_every_time_fails_after_max_attempts(
    api, tmp_path, start_worker, settings, run
):
    worker = start_worker()
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)
    max_attempts = settings.GEOCONVERT["MAX_ATTEMPTS"]

    for attempt in range(1, max_attempts + 1):
        wait_mid_write(task_id, item_id, attempt=attempt)
        (child,) = worker.pool_pids()
        os.kill(child, signal.SIGKILL)

    conversion = wait_finished(task_id)
    assert conversion.state == Conversion.State.FAILURE
    assert conversion.attempts == max_attempts
    assert f"started {max_attempts} times" in conversion.error
    assert "worker stopped each time" in conversion.error
    status = api.get(f"/api/v1/tasks/{task_id}/status").json()
    assert status["state"] == "FAILURE" and status["error"] == conversion.error
    assert TreeItem.objects.get(pk=item_id).object_type == TreeItem.ObjectType.FILE
    assert folder_files(item_id) == ["original"]
    assert stored_sha256(TreeItem.objects.get(pk=item_id).file.name) == digest
    # No loop: the message is gone and the worker is idle and alive.
    assert worker.ping()
    assert not app.control.inspect([worker.node_name], timeout=2).active()[worker.node_name]
    assert logs(worker).count(f"Conversion {task_id} claimed") == max_attempts


@repeat
def test_duplicate_deliveries_do_nothing_harmful(api, tmp_path, start_worker, private_redis, run):
    worker = start_worker(concurrency=2)
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)
    wait_mid_write(task_id, item_id, attempt=1)

    # The same message published again, and a copy of the in-flight message marked
    # redelivered, as Redis does after a visibility timeout or a lost connection.
    convert_to_geo_raster.apply_async(args=[task_id], task_id=task_id)
    client = redis.Redis.from_url(redis_py_url(private_redis.url))
    in_flight = [
        json.loads(v)
        for v in client.hvals("unacked")
        if json.loads(v)[0]["headers"]["id"] == task_id
    ]
    message, _, routing_key = in_flight[0]
    message["headers"]["redelivered"] = True
    message["properties"]["delivery_info"]["redelivered"] = True
    client.lpush(routing_key, json.dumps(message))

    wait_finished(task_id)
    # Once more after it finished.
    convert_to_geo_raster.apply_async(args=[task_id], task_id=task_id)
    wait_until(
        lambda: logs(worker).count(f"Conversion {task_id}: this run stops") == 3,
        "the three duplicates to stop",
    )
    wait_until(lambda: not client.hlen("unacked"), "every message to be acknowledged")

    conversion = Conversion.objects.get(pk=task_id)
    assert conversion.attempts == 1
    assert_converted_once(item_id, task_id, src, digest, lambda: logs(worker))
    assert api.get(f"/api/v1/tasks/{task_id}/status").json()["state"] == "SUCCESS"
    client.close()


@repeat
def test_cancel_while_no_worker_runs_is_honoured_for_a_queued_conversion(
    api, tmp_path, start_worker, run
):
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "a.tif"))
    task_id = convert(api, item["id"]).json()["task_id"]
    assert api.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 200

    worker = start_worker()
    wait_until(
        lambda: f"Conversion {task_id}: this run stops" in logs(worker),
        "the worker to receive the cancelled conversion",
    )
    conversion = Conversion.objects.get(pk=task_id)
    assert conversion.state == Conversion.State.CANCELLED
    assert conversion.attempts == 0
    assert folder_files(item["id"]) == ["original"]


@repeat
def test_cancel_while_no_worker_runs_is_honoured_for_a_running_conversion(
    api, tmp_path, start_worker, run
):
    first = start_worker()
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)
    wait_mid_write(task_id, item_id, attempt=1)
    first.kill()

    assert api.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 200
    assert Conversion.objects.get(pk=task_id).state == Conversion.State.PROGRESS

    start_worker(**RESTORE_AFTER)
    conversion = wait_finished(task_id)
    assert conversion.state == Conversion.State.CANCELLED
    assert conversion.attempts == 1
    assert folder_files(item_id) == ["original"], "the killed run's partial file is removed"
    assert TreeItem.objects.get(pk=item_id).object_type == TreeItem.ObjectType.FILE
    assert stored_sha256(TreeItem.objects.get(pk=item_id).file.name) == digest


@repeat
def test_conversion_of_a_silent_worker_is_recovered_by_the_reaper(
    api, tmp_path, start_worker, settings, run
):
    """Production path for a worker that died whole: its message stays unacknowledged for
    the visibility timeout (about an hour), so the reaper re-queues the conversion."""
    settings.GEOCONVERT = {**settings.GEOCONVERT, "HEARTBEAT_STALE_SECONDS": 1.5}
    first = start_worker()
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)
    wait_mid_write(task_id, item_id, attempt=1)
    first.kill()
    second = start_worker()  # default visibility timeout: it will not see the old message

    wait_until(
        lambda: task_id in conversion_reap_stale().requeued,
        "the reaper to re-queue the silent conversion",
        interval=0.25,
    )
    conversion = wait_finished(task_id)
    assert conversion.attempts == 2
    assert conversion.worker == second.node_name
    assert_converted_once(item_id, task_id, src, digest, lambda: logs(first, second))
