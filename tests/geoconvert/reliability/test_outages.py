"""Redis and the database go away and come back, with conversions in flight."""

from geoconvert.models import Conversion
from geoconvert.services.dispatch import conversions_release
from tests import rasters
from tests.geoconvert.api.helpers import convert, upload, wait_for_task
from tests.geoconvert.reliability.conftest import repeat
from tests.geoconvert.reliability.helpers import (
    assert_converted_once,
    database_outage,
    logs,
    start_large_conversion,
    wait_finished,
    wait_mid_write,
    wait_until,
    worker_database_env,
)

# Redis ---------------------------------------------------------------------------------


@repeat
def test_convert_while_redis_is_down_answers_503_and_leaves_nothing_pending(
    api, tmp_path, private_redis, start_worker, run
):
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "a.tif"))
    private_redis.stop(keep_data=True)

    response = convert(api, item["id"])
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "queue_unavailable"
    assert "task queue is unavailable" in body["message"]
    # Chosen behaviour: the request is refused and its conversion recorded FAILURE with the
    # same message, so nothing waits PENDING for a message no worker will ever receive.
    (conversion,) = Conversion.objects.filter(item_id=item["id"])
    assert conversion.state == Conversion.State.FAILURE
    assert conversion.error == body["message"]
    status = api.get(f"/api/v1/tree-items/{item['id']}/conversion-status").json()
    assert status["status"] == "FAILED"

    # Once Redis is back, the same request works.
    private_redis.start()
    start_worker()
    retried = convert(api, item["id"])
    assert retried.status_code == 202
    final, _ = wait_for_task(api, retried.json()["task_id"])
    assert final["state"] == "SUCCESS"


@repeat
def test_a_batch_submitted_while_redis_is_down_waits_and_runs_once_it_is_back(
    api, tmp_path, private_redis, start_worker, run
):
    folder = api.post("/api/v1/tree-items/", {"name": "survey"}, format="json").json()["id"]
    for name in ("a.tif", "b.tif", "c.tif"):
        upload(api, rasters.rgb_byte_tiff(tmp_path / name), parent=folder)
    private_redis.stop(keep_data=True)

    # The members wait in the database: nothing is lost, and the request is not refused.
    response = convert(api, folder)
    assert response.status_code == 202, response.content
    batch_id = response.json()["batch_id"]
    members = Conversion.objects.filter(batch_id=batch_id)
    assert [(m.state, m.queued_at) for m in members] == [("PENDING", None)] * 3

    private_redis.start()
    start_worker()
    # Beat's pass (geoconvert.tasks.release_conversions) once the broker answers again.
    assert len(conversions_release().sent) == 3
    batch = wait_until(
        lambda: (b := api.get(f"/api/v1/batches/{batch_id}").json())["state"] == "COMPLETED" and b,
        "the batch to complete",
    )
    assert batch["counts"]["SUCCESS"] == 3
    # Each sent once and run once.
    assert [(m.state, m.attempts) for m in members.all()] == [("SUCCESS", 1)] * 3
    assert conversions_release().sent == []


@repeat
def test_worker_reconnects_after_redis_restarts_while_idle(
    api, tmp_path, private_redis, start_worker, run
):
    worker = start_worker()
    private_redis.restart()

    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "a.tif"))
    response = convert(api, item["id"])
    assert response.status_code == 202
    final, _ = wait_for_task(api, response.json()["task_id"])
    assert final["state"] == "SUCCESS"
    assert worker.ping()


@repeat
def test_conversion_survives_redis_restart_while_worker_is_busy(
    api, tmp_path, private_redis, start_worker, run
):
    worker = start_worker()
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)
    wait_mid_write(task_id, item_id, attempt=1)
    private_redis.restart()

    wait_finished(task_id)
    assert_converted_once(item_id, task_id, src, digest, lambda: logs(worker))
    # And the worker takes new work over its new connection.
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "b.tif"))
    final, _ = wait_for_task(api, convert(api, item["id"]).json()["task_id"])
    assert final["state"] == "SUCCESS"


# Database ------------------------------------------------------------------------------


@repeat
def test_database_outage_during_a_write_is_retried_in_place(api, tmp_path, start_worker, run):
    worker = start_worker(**worker_database_env())
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)
    wait_mid_write(task_id, item_id, attempt=1)

    with database_outage():
        # The next stage write ("Updating database", when the COG is written) fails...
        wait_until(
            lambda: "Database write failed (attempt 1 of 3)" in logs(worker),
            "the worker's first failed write",
        )
    # ...and its retry, after a backoff, succeeds.
    conversion = wait_finished(task_id)
    assert conversion.attempts == 1
    assert "Retry in" not in logs(worker), "no Celery retry was needed"
    assert_converted_once(item_id, task_id, src, digest, lambda: logs(worker))
    assert worker.ping()


@repeat
def test_database_outage_longer_than_the_retries_reruns_the_conversion(
    api, tmp_path, start_worker, run
):
    worker = start_worker(**worker_database_env())
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)
    wait_mid_write(task_id, item_id, attempt=1)

    with database_outage():
        # Three failed attempts: the task gives up on this run and Celery retries it later.
        wait_until(
            lambda: "Database write failed (attempt 2 of 3)" in logs(worker),
            "the worker's second failed write",
        )
        wait_until(lambda: "Retry in" in logs(worker), "the task to be retried")
    conversion = wait_finished(task_id)
    assert conversion.attempts == 2
    assert_converted_once(item_id, task_id, src, digest, lambda: logs(worker))
    assert worker.ping()
