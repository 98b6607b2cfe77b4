"""Steps the API tests repeat: upload, convert, poll."""

import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from config.celery_app import app

FINAL_STATES = {"SUCCESS", "FAILURE", "CANCELLED"}


def upload(api, path: Path, name: str | None = None, parent=None) -> dict:
    data = {"name": name or path.name}
    if parent:
        data["parent"] = str(parent)
    with open(path, "rb") as fh:
        data["file"] = fh
        response = api.post("/api/v1/tree-items/", data, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()


def convert(api, item_id, body=None):
    return api.post(
        f"/api/v1/tree-items/{item_id}/convert-to-geo-raster", body or {}, format="json"
    )


def task_status(api, task_id) -> dict:
    response = api.get(f"/api/v1/tasks/{task_id}/status")
    assert response.status_code == 200, response.content
    return response.json()


def wait_for_task(api, task_id, states=FINAL_STATES, timeout: float = 90) -> tuple[dict, list]:
    """Poll the task until its state is in `states`; returns the last status and every
    distinct (state, status, progress) seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        body = task_status(api, task_id)
        snapshot = (body["state"], body["status"], body["progress"])
        if not seen or seen[-1] != snapshot:
            seen.append(snapshot)
        if body["state"] in states:
            return body, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} stuck; seen {seen}")
        time.sleep(0.05)


@contextmanager
def queue_paused(worker, queue: str | None = None):
    """Stop the worker taking tasks from `queue` (the conversions' queue by default), so a
    conversion stays queued."""
    queue = queue or settings.CONVERSION_QUEUE
    app.control.cancel_consumer(queue, destination=[worker.node_name], reply=True, timeout=5)
    try:
        yield
    finally:
        app.control.add_consumer(queue, destination=[worker.node_name], reply=True, timeout=5)


def convert_in_process(owner, path: Path, *, name: str | None = None, describe: bool = True):
    """An item converted here, without the broker: the upload stored by the service, the COG
    written by the engine and published as the worker publishes it; with `describe`, its
    statistics and thumbnail computed as the follow-up task does. Returns the item."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from geoconvert import raster
    from geoconvert.services.describe import geo_raster_describe
    from tagger.models import TreeItem
    from tagger.services import geo_raster_publish, item_create
    from tagger.storage import file_publish, item_file_path, sha256_of_path
    from tests.storage import local_copy

    upload_file = SimpleUploadedFile(name or path.name, path.read_bytes())
    item = item_create(owner=owner, name=name or path.name, file=upload_file)
    dst_name = item_file_path(item, "geo_raster-test.tif")
    scratch = Path(settings.TAGGER_SCRATCH_DIR) / item.pk.hex
    scratch.mkdir(parents=True, exist_ok=True)
    dst = scratch / "geo_raster-test.tif"
    info = raster.convert(local_copy(item.file.name), dst)
    sha256 = sha256_of_path(dst)
    file_publish(dst, dst_name)
    geo_raster_publish(item_id=item.pk, file_name=dst_name, sha256=sha256, metadata=info.as_dict())
    if describe:
        geo_raster_describe(item_id=item.pk)
    return TreeItem.objects.select_related("geo_raster").get(pk=item.pk)


def broker_dispatches(callbacks) -> list:
    """Of the on-commit callbacks captured (django_capture_on_commit_callbacks), those that
    run the dispatcher, which sends conversions to the broker (not the event publishes)."""
    from geoconvert.services import dispatch

    releases = (dispatch.conversion_submitted, dispatch.conversions_release_softly)
    return [c for c in callbacks if getattr(c, "func", c) in releases]
