"""The follow-up of a conversion, run by the real worker: the COG's statistics and thumbnail,
computed by a task of its own that the conversion's task links to."""

import time

import numpy as np
import pytest
import rasterio
from celery import current_app
from django_celery_results.models import TaskResult

from geoconvert.models import Conversion
from geoconvert.services.transitions import DESCRIBE_TASK_NAME
from tagger.models import GeoRaster
from tests import rasters
from tests.geoconvert.api.helpers import convert, upload, wait_for_task
from tests.storage import store_bytes


def _wait(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


def _follow_up(item_id) -> TaskResult | None:
    return (
        TaskResult.objects.filter(task_name=DESCRIBE_TASK_NAME, task_args__contains=str(item_id))
        .exclude(status="PENDING")
        .first()
    )


def test_statistics_and_thumbnail_follow_the_conversion(api, live_worker, tmp_path):
    source = rasters.float_dem_tiff(tmp_path / "dem.tif")
    item = upload(api, source)
    task = convert(api, item["id"]).json()
    status, _ = wait_for_task(api, task["task_id"])
    assert status["state"] == "SUCCESS"

    follow_up = _wait(lambda: _follow_up(item["id"]), what="the follow-up task")
    assert follow_up.status == "SUCCESS", follow_up.traceback
    assert follow_up.task_id != task["task_id"]  # a task of its own, in the result backend

    body = api.get(f"/api/v1/tree-items/{item['id']}").json()
    (band,) = body["geo_raster"]["statistics"]["bands"]
    with rasterio.open(source) as dataset:
        data = dataset.read(1, masked=True)
    valid = data.compressed().astype("float64")
    assert band["valid_pixels"] == valid.size
    assert band["min"] == pytest.approx(valid.min())
    assert band["max"] == pytest.approx(valid.max())
    assert band["mean"] == pytest.approx(valid.mean(), rel=1e-9)
    assert band["std"] == pytest.approx(valid.std(), rel=1e-9)
    assert sum(band["histogram"]["counts"]) == valid.size
    assert np.percentile(valid, 2) == pytest.approx(band["percentile_2"], rel=0.02)

    thumbnail = api.get(f"/api/v1/tree-items/{item['id']}/thumbnail.png")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/png"


def test_a_failed_follow_up_never_fails_the_conversion(api, live_worker, tmp_path):
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"))
    task = convert(api, item["id"]).json()
    assert wait_for_task(api, task["task_id"])[0]["state"] == "SUCCESS"
    _wait(lambda: _follow_up(item["id"]), what="the first follow-up")

    # The COG becomes unreadable; describing it again fails, as its own task.
    store_bytes(GeoRaster.objects.get(item_id=item["id"]).file.name, b"not a tiff any more")
    TaskResult.objects.filter(task_name=DESCRIBE_TASK_NAME).delete()
    current_app.send_task(DESCRIBE_TASK_NAME, args=[item["id"]])
    failed = _wait(lambda: _follow_up(item["id"]), what="the second follow-up")
    assert failed.status == "FAILURE"

    assert Conversion.objects.get(pk=task["task_id"]).state == "SUCCESS"
    status = api.get(f"/api/v1/tasks/{task['task_id']}/status").json()
    assert status["state"] == "SUCCESS"
    assert api.get(f"/api/v1/tree-items/{item['id']}").json()["object_type"] == "geo_raster_file"
