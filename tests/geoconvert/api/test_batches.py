"""Folder batches through the API and a real worker: POST convert on a folder, follow the
batch, its members in /tasks/, cancel and retry."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from geoconvert.models import Conversion, ConversionBatch
from geoconvert.services import batches as batches_module
from geoconvert.services.batches import batch_start
from tagger.models import TreeItem
from tests import rasters
from tests.geoconvert.api.helpers import convert, queue_paused, upload
from tests.geoconvert.reliability.helpers import wait_until


def _days_ahead(days: float) -> str:
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)).isoformat()


def _folder(api, name="maps", parent=None) -> dict:
    data = {"name": name, **({"parent": str(parent)} if parent else {})}
    response = api.post("/api/v1/tree-items/", data, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _batch(api, batch_id) -> dict:
    response = api.get(f"/api/v1/batches/{batch_id}")
    assert response.status_code == 200, response.content
    return response.json()


def _wait_batch(api, batch_id, states=("COMPLETED", "CANCELLED"), timeout=120) -> dict:
    return wait_until(
        lambda: (body := _batch(api, batch_id))["state"] in states and body,
        f"batch {batch_id} to reach {states}",
        timeout=timeout,
    )


def _folder_of_files(user, n: int) -> TreeItem:
    """A folder of n file rows (no content: batches only look at the rows)."""
    folder = TreeItem.objects.create(owner=user, name=f"f{n}", object_type="folder")
    TreeItem.objects.bulk_create(
        TreeItem(owner=user, name=f"{i}.tif", parent=folder, object_type="file") for i in range(n)
    )
    return folder


@pytest.fixture
def tree(api, tmp_path):
    """maps/ with two rasters and a text file, and maps/nested/ with one more raster."""
    maps = _folder(api)
    nested = _folder(api, "nested", parent=maps["id"])
    files = {
        "a": upload(api, rasters.rgb_byte_tiff(tmp_path / "a.tif"), parent=maps["id"]),
        "b": upload(api, rasters.palette_tiff(tmp_path / "b.tif"), parent=maps["id"]),
        "notes": upload(api, rasters.text_file(tmp_path / "notes.txt"), parent=maps["id"]),
        "c": upload(api, rasters.float_dem_tiff(tmp_path / "c.tif"), parent=nested["id"]),
    }
    return maps, nested, files


@pytest.mark.usefixtures("live_worker")
def test_a_folder_converts_as_a_batch_of_ordinary_conversions(api, tree):
    maps, _, files = tree

    response = convert(api, maps["id"])

    assert response.status_code == 202, response.content
    accepted = response.json()
    assert accepted == {
        "batch_id": accepted["batch_id"],
        "status": "STARTED",
        "message": "Conversion of 4 files started in background",
        "total": 4,
        "skipped": 0,
    }
    batch = _wait_batch(api, accepted["batch_id"])
    assert batch["state"] == "COMPLETED"
    # A file that is not a raster fails as its own member; the batch still completes.
    assert batch["counts"] == {
        "PENDING": 0,
        "PROGRESS": 0,
        "SUCCESS": 3,
        "FAILURE": 1,
        "CANCELLED": 0,
    }
    assert batch["progress"] == 100
    assert batch["folder_id"] == maps["id"] and batch["priority"] == "low"
    assert batch["created_at"] <= batch["started_at"] <= batch["finished_at"]

    members = api.get(f"/api/v1/tasks/?batch_id={accepted['batch_id']}").json()["results"]
    assert len(members) == 4
    assert {m["batch_id"] for m in members} == {accepted["batch_id"]}
    assert {m["priority"] for m in members} == {"low"}
    failed = next(m for m in members if m["state"] == "FAILURE")
    assert failed["item_id"] == files["notes"]["id"]
    assert "raster" in failed["error"].lower()
    for key in ("a", "b", "c"):
        item = api.get(f"/api/v1/tree-items/{files[key]['id']}").json()
        assert item["object_type"] == "geo_raster_file"

    # Converting the folder again skips what is converted: only the text file is left.
    again = convert(api, maps["id"]).json()
    assert (again["total"], again["skipped"]) == (1, 3)

    listed = api.get("/api/v1/batches/").json()["results"]
    assert [b["batch_id"] for b in listed] == [again["batch_id"], accepted["batch_id"]]


@pytest.mark.usefixtures("live_worker")
def test_a_batch_larger_than_the_share_is_fed_to_the_broker_as_members_end(
    api, tmp_path, settings, live_worker
):
    # No beat runs here: only the dispatcher's pass at each member's end can send the rest.
    share = settings.GEOCONVERT["USER_MAX_QUEUED"]
    folder = _folder(api, "big")
    source = rasters.rgb_byte_tiff(tmp_path / "source.tif")
    for n in range(2 * share + 1):
        upload(api, source, name=f"{n}.tif", parent=folder["id"])
    with queue_paused(live_worker):
        batch_id = convert(api, folder["id"]).json()["batch_id"]
        members = Conversion.objects.filter(batch_id=batch_id)
        assert members.filter(queued_at__isnull=False).count() == share
        assert members.filter(queued_at__isnull=True).count() == share + 1

    batch = _wait_batch(api, batch_id)

    assert batch["state"] == "COMPLETED" and batch["counts"]["SUCCESS"] == 2 * share + 1


@pytest.mark.usefixtures("live_worker")
def test_retry_starts_the_failed_members_again_and_counts_each_file_once(api, tree):
    maps, _, files = tree
    batch_id = convert(api, maps["id"]).json()["batch_id"]
    _wait_batch(api, batch_id)

    response = api.post(f"/api/v1/batches/{batch_id}/retry")

    assert response.status_code == 200, response.content
    assert response.json()["retried"] == 1
    batch = _wait_batch(api, batch_id)
    # The retried file counts once, as its latest attempt.
    assert batch["counts"]["FAILURE"] == 1 and batch["counts"]["SUCCESS"] == 3
    attempts = Conversion.objects.filter(batch_id=batch_id, item_id=files["notes"]["id"])
    assert attempts.count() == 2
    assert api.post(f"/api/v1/batches/{batch_id}/retry").json()["retried"] == 1


@pytest.mark.usefixtures("live_worker")
def test_cancel_stops_every_member_that_has_not_finished(api, tree, live_worker):
    maps, _, _ = tree
    with queue_paused(live_worker):
        batch_id = convert(api, maps["id"]).json()["batch_id"]
        assert _batch(api, batch_id)["state"] == "PENDING"

        response = api.post(f"/api/v1/batches/{batch_id}/cancel")

        assert response.status_code == 200, response.content
        body = response.json()
        assert body["state"] == "CANCELLED"
        assert body["counts"]["CANCELLED"] == 4 and body["progress"] == 100
    # A member cancelled while its message was in the broker never runs.
    wait_until(
        lambda: not Conversion.objects.filter(batch_id=batch_id, state="PROGRESS").exists(),
        "no member running",
        timeout=10,
    )
    assert set(Conversion.objects.filter(batch_id=batch_id).values_list("state", flat=True)) == {
        "CANCELLED"
    }
    again = api.post(f"/api/v1/batches/{batch_id}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "batch_finished"
    retry = api.post(f"/api/v1/batches/{batch_id}/retry")
    assert retry.status_code == 409 and retry.json()["code"] == "batch_cancelled"


@pytest.mark.django_db
def test_a_member_is_cancelled_as_any_conversion(api, tree):
    maps, _, files = tree
    batch_id = convert(api, maps["id"]).json()["batch_id"]
    member = Conversion.objects.get(batch_id=batch_id, item_id=files["a"]["id"])

    assert api.post(f"/api/v1/tasks/{member.task_id}/cancel").status_code == 200

    assert _batch(api, batch_id)["counts"]["CANCELLED"] == 1


@pytest.mark.django_db
def test_recursive_false_converts_the_folder_s_own_files(api, tree):
    maps, _, _ = tree
    accepted = convert(api, maps["id"], {"recursive": False}).json()
    assert accepted["total"] == 3


@pytest.mark.django_db
def test_files_converting_already_are_skipped(api, tree):
    maps, _, files = tree
    single = convert(api, files["a"]["id"]).json()

    accepted = convert(api, maps["id"]).json()

    assert (accepted["total"], accepted["skipped"]) == (3, 1)
    assert Conversion.objects.filter(item_id=files["a"]["id"]).get().task_id.hex == (
        single["task_id"].replace("-", "")
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"priority": "urgent"}, "invalid"),
        ({"run_at": "tomorrow"}, "invalid"),
        ({"run_at": _days_ahead(31)}, "invalid_run_at"),
        ({"recursive": "maybe"}, "invalid"),
        ({"target_crs": "EPSG:0"}, "invalid_crs"),
    ],
)
def test_a_bad_batch_request_is_refused_and_creates_nothing(api, tree, body, code):
    maps, _, _ = tree
    response = convert(api, maps["id"], body)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code, response.json()
    assert not ConversionBatch.objects.exists() and not Conversion.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("days", "status"), [(29, 202), (31, 400)])
def test_a_single_conversion_may_be_scheduled_up_to_30_days_ahead(api, tree, days, status):
    _, _, files = tree
    response = convert(api, files["a"]["id"], {"run_at": _days_ahead(days)})

    assert response.status_code == status, response.content
    if status == 202:
        task = api.get(f"/api/v1/tasks/{response.json()['task_id']}").json()
        assert task["state"] == "PENDING" and task["status"] == "Scheduled" and task["run_at"]
    else:
        assert response.json()["code"] == "invalid_run_at"
        assert not Conversion.objects.exists()


@pytest.mark.django_db
def test_batch_status_costs_the_same_few_queries_whatever_its_size(api, user):
    def make(n):
        return batch_start(folder=_folder_of_files(user, n))

    def queries(batch):
        with CaptureQueriesContext(connection) as captured:
            assert api.get(f"/api/v1/batches/{batch.pk}").status_code == 200
        return len(captured)

    small, large = make(3), make(600)
    done = list(Conversion.objects.filter(batch=large).values_list("pk", flat=True)[:100])
    Conversion.objects.filter(pk__in=done).update(state="SUCCESS", progress=100)
    assert queries(small) == queries(large) <= 6
    body = _batch(api, large.pk)
    assert body["counts"]["SUCCESS"] == 100 and body["counts"]["PENDING"] == 500
    assert body["progress"] == 16  # 100 of 600 done


@pytest.mark.django_db
def test_submitting_a_folder_costs_queries_by_the_chunk_not_by_the_file(api, user):
    def submit(folder):
        with CaptureQueriesContext(connection) as captured:
            response = convert(api, folder.pk)
        assert response.status_code == 202, response.content
        return response.json(), len(captured)

    (small, small_queries), (large, large_queries) = (
        submit(_folder_of_files(user, 3)),
        submit(_folder_of_files(user, 2000)),
    )

    assert (small["total"], large["total"]) == (3, 2000)
    # Bulk inserts, a query for many members (SQLite caps one at its 999 parameters, ~60
    # rows; PostgreSQL takes a chunk of CHUNK), never one per file.
    per_query = 50 if connection.vendor == "sqlite" else batches_module.CHUNK
    assert large_queries - small_queries <= 3 * 2000 / per_query, (small_queries, large_queries)
    # Nothing is sent yet: the dispatcher sends a share of them once the rows are committed.
    assert not Conversion.objects.filter(queued_at__isnull=False).exists()


@pytest.mark.django_db
def test_listing_batches_costs_the_same_queries_however_many_are_on_the_page(api, user):
    def batches(n):
        for i in range(n):
            folder = TreeItem.objects.create(owner=user, name=f"f{i}", object_type="folder")
            TreeItem.objects.create(owner=user, name="a.tif", parent=folder, object_type="file")
            batch_start(folder=folder)

    def listing():
        with CaptureQueriesContext(connection) as captured:
            response = api.get("/api/v1/batches/")
        assert response.status_code == 200
        return response.json(), len(captured)

    batches(2)
    few, few_queries = listing()
    batches(10)
    many, many_queries = listing()

    assert (few["count"], many["count"]) == (2, 12)
    assert few_queries == many_queries
    assert {b["counts"]["PENDING"] for b in many["results"]} == {1}
