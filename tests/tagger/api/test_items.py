import pytest

from tests.factories import PASSWORD
from tests.storage import stored_exists


def _upload(api, name, content=b"data", parent=None):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"name": name, "file": SimpleUploadedFile("ignored.bin", content)}
    if parent:
        data["parent"] = parent
    return api.post("/api/v1/tree-items/", data, format="multipart")


def test_token_for_valid_credentials(anon_api, user):
    response = anon_api.post(
        "/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200
    token = response.json()["token"]
    anon_api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert anon_api.get("/api/v1/tree-items/").status_code == 200


def test_token_refused_for_wrong_password(anon_api, user):
    response = anon_api.post("/api/v1/auth/token", {"username": user.username, "password": "no"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_folder_and_file_lifecycle(api):
    folder = api.post("/api/v1/tree-items/", {"name": "Maps"}, format="json")
    assert folder.status_code == 201
    folder = folder.json()
    assert folder["object_type"] == "folder" and folder["parent"] is None
    assert folder["size"] is None and folder["geo_raster"] is None
    assert set(folder) == {
        "id",
        "name",
        "parent",
        "object_type",
        "size",
        "created_at",
        "updated_at",
        "geo_raster",
    }

    created = _upload(api, "scan.tif", b"12345", parent=folder["id"])
    assert created.status_code == 201
    item = created.json()
    assert item["object_type"] == "file" and item["size"] == 5 and item["parent"] == folder["id"]

    children = api.get(f"/api/v1/tree-items/?parent={folder['id']}").json()
    assert [c["id"] for c in children["results"]] == [item["id"]]
    files = api.get("/api/v1/tree-items/?object_type=folder").json()
    assert [c["id"] for c in files["results"]] == [folder["id"]]

    renamed = api.patch(f"/api/v1/tree-items/{item['id']}", {"name": "renamed.tif"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "renamed.tif"
    moved = api.patch(f"/api/v1/tree-items/{item['id']}/", {"parent": None}, format="json")
    assert moved.json()["parent"] is None

    download = api.get(f"/api/v1/tree-items/{item['id']}/download")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"12345"
    assert "renamed.tif" in download["Content-Disposition"]
    assert (
        api.get(f"/api/v1/tree-items/{item['id']}/download?variant=geo_raster").status_code == 404
    )

    assert api.delete(f"/api/v1/tree-items/{folder['id']}").status_code == 204
    assert api.get(f"/api/v1/tree-items/{folder['id']}").status_code == 404
    assert api.get(f"/api/v1/tree-items/{item['id']}").status_code == 200


def test_top_level_lists_only_the_items_without_a_parent(api, other_api):
    folder = api.post("/api/v1/tree-items/", {"name": "root"}, format="json").json()
    _upload(api, "inside.tif", parent=folder["id"])
    top = _upload(api, "top.tif").json()
    other_api.post("/api/v1/tree-items/", {"name": "theirs"}, format="json")

    listed = api.get("/api/v1/tree-items/?top_level=true").json()["results"]
    assert [item["id"] for item in listed] == [folder["id"], top["id"]]
    nested = api.get("/api/v1/tree-items/?top_level=false").json()["results"]
    assert [item["name"] for item in nested] == ["inside.tif"]


def test_delete_removes_subtree_and_files(api, django_capture_on_commit_callbacks):
    from tagger.models import TreeItem

    folder = api.post("/api/v1/tree-items/", {"name": "root"}, format="json").json()
    item = _upload(api, "a.tif", parent=folder["id"]).json()
    name = TreeItem.objects.get(pk=item["id"]).file.name
    assert stored_exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/tree-items/{folder['id']}/").status_code == 204
    assert not TreeItem.objects.filter(pk=item["id"]).exists()
    assert not stored_exists(name)


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "a/b\\c.tif",
        "x" * 1000,
        "caf\u00e9 \u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9 \ufffd.tif",
        "..",
        "name with\nnewline",
    ],
)
def test_names_are_data(api, name):
    from tagger.models import TreeItem

    response = _upload(api, name)
    assert response.status_code == 201, response.content
    assert response.json()["name"] == name
    stored = TreeItem.objects.get(pk=response.json()["id"]).file.name
    assert name not in stored and stored.endswith("/original") and ".." not in stored


def test_cannot_move_a_folder_into_itself(api):
    parent = api.post("/api/v1/tree-items/", {"name": "p"}, format="json").json()
    child = api.post("/api/v1/tree-items/", {"name": "c", "parent": parent["id"]}, format="json")
    response = api.patch(
        f"/api/v1/tree-items/{parent['id']}", {"parent": child.json()["id"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parent"


def test_parent_must_be_a_folder(api):
    item = _upload(api, "f.tif").json()
    response = _upload(api, "g.tif", parent=item["id"])
    assert response.status_code == 400


def test_folder_without_name_is_invalid(api):
    response = api.post("/api/v1/tree-items/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["name"]


def test_list_is_paginated(api):
    for i in range(3):
        api.post("/api/v1/tree-items/", {"name": f"f{i}"}, format="json")
    body = api.get("/api/v1/tree-items/").json()
    assert body["count"] == 3 and len(body["results"]) == 3 and "next" in body


def test_oversized_upload_is_refused_with_413(api, settings):
    settings.TAGGER_MAX_UPLOAD_BYTES = 10
    response = _upload(api, "big.tif", b"x" * 100)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_unknown_api_path_answers_in_the_error_shape(api):
    response = api.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No such API endpoint."}


def test_malformed_json_is_a_clear_400(api):
    response = api.post("/api/v1/tree-items/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
