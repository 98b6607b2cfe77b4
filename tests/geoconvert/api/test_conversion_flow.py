"""The conversion through its real path: API -> Redis -> a Celery worker process ->
rasterio -> database."""

import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from django.conf import settings
from django_celery_results.models import TaskResult
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from geoconvert.models import Conversion
from tagger.models import TreeItem
from tests import rasters
from tests.geoconvert.api.helpers import (
    FINAL_STATES,
    convert,
    queue_paused,
    task_status,
    upload,
    wait_for_task,
)
from tests.geoconvert.reliability.helpers import wait_until
from tests.storage import folder_names, local_copy, stored_sha256

pytestmark = pytest.mark.usefixtures("live_worker")

STAGES = [
    ("Starting conversion", 0),
    ("Loading file", 10),
    ("Analyzing file", 20),
    ("Creating georeferenced file", 40),
    ("Updating database", 80),
    ("Conversion complete", 100),
]


def _sha256(name: str) -> str:
    return stored_sha256(name)


def _stored_original(item_id) -> str:
    """The original's name in the storage."""
    return TreeItem.objects.get(pk=item_id).file.name


def _item_files(item_id) -> list[str]:
    return folder_names(str(Path(_stored_original(item_id)).parent))


@pytest.mark.parametrize(
    ("make", "same_pixels"),
    [
        (rasters.rgb_byte_tiff, True),
        (rasters.uint16_multiband_tiff, True),
        (rasters.float_dem_tiff, True),
        (rasters.palette_tiff, True),
        (rasters.gcps_only_tiff, False),
    ],
    ids=["rgb-byte", "uint16-multiband", "float-dem-nodata", "palette", "gcps-only"],
)
def test_converts_each_kind_of_raster(api, tmp_path, make, same_pixels):
    src = make(tmp_path / "input.tif")
    item = upload(api, src)
    original = _stored_original(item["id"])
    digest = _sha256(original)

    accepted = convert(api, item["id"])
    assert accepted.status_code == 202
    assert accepted.json() == {
        "task_id": accepted.json()["task_id"],
        "status": "STARTED",
        "message": "Geo-raster conversion started in background",
    }
    task_id = accepted.json()["task_id"]

    final, seen = wait_for_task(api, task_id)
    assert final["state"] == "SUCCESS", final
    assert final["status"] == "Conversion complete"
    assert final["progress"] == 100
    assert final["error"] is None
    # Every state seen while polling is a stage of the run, in order, never going back.
    expected_order = ["Waiting in queue"] + [stage for stage, _ in STAGES]
    positions = [expected_order.index(status) for _, status, _ in seen]
    assert positions == sorted(positions)
    progresses = [progress for _, _, progress in seen]
    assert progresses == sorted(progresses)

    body = api.get(f"/api/v1/tree-items/{item['id']}").json()
    assert body["object_type"] == "geo_raster_file"
    meta = body["geo_raster"]
    assert set(meta) == {
        "crs",
        "bounds",
        "bounds_wgs84",
        "width",
        "height",
        "count",
        "dtypes",
        "nodata",
        "resolution",
        "overviews",
        "compression",
        "size_bytes",
        "sha256",
        "statistics",
    }
    # The task's result is the COG's metadata; the item adds its hash and statistics.
    assert final["result"] == {k: v for k, v in meta.items() if k not in ("sha256", "statistics")}
    assert meta["crs"]
    assert len(meta["bounds"]) == 4 and len(meta["bounds_wgs84"]) == 4

    cog = local_copy(TreeItem.objects.get(pk=item["id"]).geo_raster.file.name)
    is_valid, errors, _ = cog_validate(str(cog))
    assert is_valid, errors
    assert meta["size_bytes"] == cog.stat().st_size
    if same_pixels:
        rasters.assert_same_pixels(src, cog)
        with rasterio.open(src) as a:
            assert meta["width"] == a.width and meta["height"] == a.height
            assert meta["dtypes"] == list(a.dtypes)
    assert _sha256(original) == digest, "the original upload must never change"

    download = api.get(f"/api/v1/tree-items/{item['id']}/download?variant=geo_raster")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == cog.read_bytes()
    original_download = api.get(f"/api/v1/tree-items/{item['id']}/download?variant=original")
    assert b"".join(original_download.streaming_content) == src.read_bytes()

    status = api.get(f"/api/v1/tree-items/{item['id']}/conversion-status").json()
    assert status == {
        "item_id": item["id"],
        "status": "COMPLETED",
        "object_type": "geo_raster_file",
        "message": status["message"],
        "task_id": task_id,
        "progress": 100,
    }

    # The result backend agrees with the API (the admin and Flower read it). Celery records
    # SUCCESS itself when the task returns, just after the conversion's row says so.
    wait_until(
        lambda: TaskResult.objects.get(task_id=task_id).status == "SUCCESS",
        "Celery's SUCCESS record",
        30,
        0.05,
    )
    record = TaskResult.objects.get(task_id=task_id)
    assert record.status == "SUCCESS"
    assert record.task_name == "geoconvert.tasks.convert_to_geo_raster"


def test_reprojects_to_target_crs(api, tmp_path):
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "utm.tif"))
    task_id = convert(api, item["id"], {"target_crs": "EPSG:3857"}).json()["task_id"]
    final, _ = wait_for_task(api, task_id)
    assert final["state"] == "SUCCESS", final
    assert final["result"]["crs"] == "EPSG:3857"


def test_georeferences_from_request_body(api, tmp_path):
    item = upload(api, rasters.ungeoreferenced_png(tmp_path / "scan.png"))
    body = {"crs": "EPSG:4326", "bounds": [10.0, 45.0, 11.0, 46.0]}
    task_id = convert(api, item["id"], body).json()["task_id"]
    final, _ = wait_for_task(api, task_id)
    assert final["state"] == "SUCCESS", final
    assert final["result"]["crs"] == "EPSG:4326"
    assert final["result"]["bounds"] == pytest.approx([10.0, 45.0, 11.0, 46.0])


def test_ungeoreferenced_raster_without_body_fails_with_advice(api, tmp_path):
    item = upload(api, rasters.ungeoreferenced_png(tmp_path / "scan.png"))
    task_id = convert(api, item["id"]).json()["task_id"]
    final, _ = wait_for_task(api, task_id)
    assert final["state"] == "FAILURE"
    assert "crs" in final["error"] and "bounds" in final["error"]


@pytest.mark.parametrize(
    "make",
    [rasters.text_file, rasters.empty_file, rasters.truncated_tiff, rasters.random_bytes],
    ids=["non-raster", "empty", "truncated-tiff", "random-bytes"],
)
def test_bad_input_fails_with_a_clear_error(api, tmp_path, make):
    src = make(tmp_path / "bad.tif")
    item = upload(api, src)
    original = _stored_original(item["id"])
    digest = _sha256(original)
    task_id = convert(api, item["id"]).json()["task_id"]

    final, _ = wait_for_task(api, task_id)
    assert final["state"] == "FAILURE"
    assert final["result"] is None
    assert final["error"] and len(final["error"]) > 10
    assert str(settings.MEDIA_ROOT) not in final["error"]
    assert final["progress"] < 100

    status = api.get(f"/api/v1/tree-items/{item['id']}/conversion-status").json()
    assert status["status"] == "FAILED"
    assert status["message"] == final["error"]
    assert status["object_type"] == "file"
    assert _sha256(original) == digest
    assert _item_files(item["id"]) == ["original"]
    assert TaskResult.objects.get(task_id=task_id).status == "FAILURE"


def test_failed_conversion_can_be_started_again(api, tmp_path):
    item = upload(api, rasters.text_file(tmp_path / "notes.txt"))
    first = convert(api, item["id"]).json()["task_id"]
    assert wait_for_task(api, first)[0]["state"] == "FAILURE"
    second = convert(api, item["id"])
    assert second.status_code == 202
    assert second.json()["task_id"] != first
    assert wait_for_task(api, second.json()["task_id"])[0]["state"] == "FAILURE"
    listed = api.get("/api/v1/tasks/?state=FAILURE").json()["results"]
    assert {t["task_id"] for t in listed} == {first, second.json()["task_id"]}


def test_a_queued_conversion_is_reused_and_can_be_cancelled(api, tmp_path, live_worker):
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"))
    with queue_paused(live_worker):
        first = convert(api, item["id"])
        second = convert(api, item["id"])
        assert first.status_code == second.status_code == 202
        task_id = first.json()["task_id"]
        assert second.json()["task_id"] == task_id, "no second task for a queued conversion"
        assert Conversion.objects.filter(item_id=item["id"]).count() == 1

        queued = task_status(api, task_id)
        assert queued == {
            "task_id": task_id,
            "state": "PENDING",
            "status": "Waiting in queue",
            "progress": 0,
            "eta_seconds": None,
            "result": None,
            "error": None,
        }
        status = api.get(f"/api/v1/tree-items/{item['id']}/conversion-status").json()
        assert status["status"] == "PENDING" and status["task_id"] == task_id

        cancelled = api.post(f"/api/v1/tasks/{task_id}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json() == {
            "task_id": task_id,
            "status": "CANCELLED",
            "message": "Task cancellation requested",
        }
        assert task_status(api, task_id)["state"] == "CANCELLED"
    # The worker now receives the message and must leave the cancelled conversion alone.
    time.sleep(1.5)
    assert task_status(api, task_id)["state"] == "CANCELLED"
    assert TreeItem.objects.get(pk=item["id"]).object_type == "file"
    assert TaskResult.objects.get(task_id=task_id).status == "CANCELLED"

    again = api.post(f"/api/v1/tasks/{task_id}/cancel")
    assert again.status_code == 409
    assert again.json()["state"] == "CANCELLED"

    retried = convert(api, item["id"])
    assert retried.status_code == 202 and retried.json()["task_id"] != task_id
    assert wait_for_task(api, retried.json()["task_id"])[0]["state"] == "SUCCESS"


def _large_raster(path: Path) -> Path:
    """Large enough that writing the COG takes a few seconds."""
    height = width = 6000
    rng = np.random.default_rng(7)
    data = rng.integers(0, 255, size=(3, height, width), dtype="uint8")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 1, 1),
    ) as dst:
        dst.write(data)
    return path


def test_a_running_conversion_can_be_cancelled(api, tmp_path):
    item = upload(api, _large_raster(tmp_path / "large.tif"))
    original = _stored_original(item["id"])
    digest = _sha256(original)
    task_id = convert(api, item["id"]).json()["task_id"]

    running, _ = wait_for_task(api, task_id, states={"PROGRESS", *FINAL_STATES})
    assert running["state"] == "PROGRESS", running
    response = api.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"

    final, _ = wait_for_task(api, task_id)
    assert final["state"] == "CANCELLED", final
    assert 0 <= final["progress"] < 100
    item_now = api.get(f"/api/v1/tree-items/{item['id']}").json()
    assert item_now["object_type"] == "file" and item_now["geo_raster"] is None
    assert _item_files(item["id"]) == ["original"]
    assert _sha256(original) == digest
    assert TaskResult.objects.get(task_id=task_id).status == "CANCELLED"
    assert api.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 409


def test_converting_a_converted_item_is_a_conflict(api, tmp_path):
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"))
    task_id = convert(api, item["id"]).json()["task_id"]
    assert wait_for_task(api, task_id)[0]["state"] == "SUCCESS"
    response = convert(api, item["id"])
    assert response.status_code == 409
    body = response.json()
    assert {k: body[k] for k in ("item_id", "status", "object_type", "message")} == {
        "item_id": item["id"],
        "status": "COMPLETED",
        "object_type": "geo_raster_file",
        "message": "File is already converted to geo raster",
    }
    finished = api.post(f"/api/v1/tasks/{task_id}/cancel")
    assert finished.status_code == 409
    assert finished.json()["state"] == "SUCCESS"


def test_a_complex_raster_converts_and_its_previews_say_why_there_are_none(api, tmp_path):
    """SAR single-look complex data (CInt16, which numpy has no type for) is a COG like any
    other; statistics and pictures of complex numbers are refused, in the error shape."""
    item = upload(api, rasters.complex_tiff(tmp_path / "slc.tif", "CInt16"))

    final, _ = wait_for_task(api, convert(api, item["id"]).json()["task_id"])

    assert final["state"] == "SUCCESS", final
    assert final["result"]["dtypes"] == ["complex_int16"]
    cog = local_copy(TreeItem.objects.get(pk=item["id"]).geo_raster.file.name)
    assert rasters.gdal_band_type(cog) == "CInt16"
    tile = api.get(f"/api/v1/tree-items/{item['id']}/tiles/0/0/0.png")
    assert tile.status_code == 422, tile.content
    assert tile.json()["code"] == "cannot_draw" and "complex numbers" in tile.json()["message"]
    # The follow-up task fails on its own; the conversion stands.
    wait_until(
        lambda: TaskResult.objects.filter(
            task_name="geoconvert.tasks.describe_geo_raster", status="FAILURE"
        ).exists(),
        "the description's failure",
        30,
        0.05,
    )
    assert api.get(f"/api/v1/tree-items/{item['id']}").json()["geo_raster"]["statistics"] is None
    thumbnail = api.get(f"/api/v1/tree-items/{item['id']}/thumbnail.png")
    assert thumbnail.status_code == 404, thumbnail.content
    assert thumbnail.json()["code"] == "thumbnail_not_drawable"
    assert "complex numbers" in thumbnail.json()["message"]
    assert task_status(api, final["task_id"])["state"] == "SUCCESS"
