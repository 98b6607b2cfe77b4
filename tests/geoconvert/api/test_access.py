"""Every route refuses anonymous callers (401) and hides other users' data (404)."""

import uuid

import pytest
from django.core.files.base import ContentFile

from geoconvert.services.conversions import conversion_start
from tagger.services import item_create


@pytest.fixture
def owned(user):
    """A folder, a file in it and a queued conversion of the file, all owned by `user`."""
    folder = item_create(owner=user, name="maps")
    item = item_create(owner=user, name="a.tif", parent=folder, file=ContentFile(b"x" * 10))
    conversion, _ = conversion_start(item=item)
    return {"folder": folder, "item": item, "task_id": conversion.task_id}


def routes(owned):
    item, folder, task = owned["item"].pk, owned["folder"].pk, owned["task_id"]
    return [
        ("get", "/api/v1/tree-items/"),
        ("post", "/api/v1/tree-items/"),
        ("get", f"/api/v1/tree-items/{item}/"),
        ("patch", f"/api/v1/tree-items/{item}/"),
        ("delete", f"/api/v1/tree-items/{folder}/"),
        ("get", f"/api/v1/tree-items/{item}/download?variant=original"),
        ("post", f"/api/v1/tree-items/{item}/convert-to-geo-raster"),
        ("get", f"/api/v1/tree-items/{item}/conversion-status"),
        ("get", "/api/v1/tasks/"),
        ("get", f"/api/v1/tasks/{task}/status"),
        ("post", f"/api/v1/tasks/{task}/cancel"),
    ]


def test_every_route_needs_credentials(anon_api, owned):
    for method, url in routes(owned):
        response = getattr(anon_api, method)(url)
        assert response.status_code == 401, (method, url)
        assert response.json()["code"] == "not_authenticated"
        assert response.json()["message"]


def test_another_users_items_and_tasks_are_not_found(other_api, owned):
    for method, url in routes(owned):
        if url in ("/api/v1/tree-items/", "/api/v1/tasks/"):
            continue
        response = getattr(other_api, method)(url, {"name": "stolen"}, format="json")
        assert response.status_code == 404, (method, url, response.content)
        assert response.json()["code"] == "not_found"
    assert other_api.get("/api/v1/tree-items/").json()["results"] == []
    assert other_api.get("/api/v1/tasks/").json()["results"] == []
    # Nothing changed for the owner.
    owned["item"].refresh_from_db()
    assert owned["item"].name == "a.tif"
    assert owned["item"].conversions.get().state == "PENDING"


def test_another_user_cannot_file_into_a_foreign_folder(other_api, owned):
    response = other_api.post(
        "/api/v1/tree-items/", {"name": "x", "parent": str(owned["folder"].pk)}, format="json"
    )
    assert response.status_code == 404


def test_unknown_ids_are_not_found(api, db):
    for url in (
        f"/api/v1/tasks/{uuid.uuid4()}/status",
        "/api/v1/tasks/not-a-uuid/status",
        f"/api/v1/tree-items/{uuid.uuid4()}/conversion-status",
        f"/api/v1/tree-items/{uuid.uuid4()}/",
    ):
        assert api.get(url).status_code == 404, url
    assert api.post(f"/api/v1/tasks/{uuid.uuid4()}/cancel").status_code == 404
    assert api.post(f"/api/v1/tree-items/{uuid.uuid4()}/convert-to-geo-raster").status_code == 404


def test_a_folder_without_files_is_refused(api, user):
    folder = item_create(owner=user, name="maps")
    item_create(owner=user, name="empty", parent=folder)
    response = api.post(f"/api/v1/tree-items/{folder.pk}/convert-to-geo-raster")
    assert response.status_code == 400
    assert response.json()["code"] == "empty_folder"
