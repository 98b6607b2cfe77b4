"""Downloads through the API (validators, ranges, HEAD) and signed links: made by the owner,
used with no credentials, refused once altered, expired, stale or pointed elsewhere."""

import hashlib
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from tagger import links
from tagger.services import item_create
from tests import rasters
from tests.geoconvert.api.helpers import convert_in_process

CONTENT = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def item(user):
    return item_create(owner=user, name="scan.bin", file=SimpleUploadedFile("scan.bin", CONTENT))


@pytest.fixture
def converted(user, tmp_path):
    return convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"), describe=False)


def _link(api, item_id, **body) -> dict:
    response = api.post(f"/api/v1/tree-items/{item_id}/download-link", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_the_hash_is_computed_once_when_stored_and_is_the_etag(api, item):
    assert item.file_sha256 == hashlib.sha256(CONTENT).hexdigest()
    response = api.get(f"/api/v1/tree-items/{item.pk}/download")
    assert response.status_code == 200
    assert response["ETag"] == f'"{item.file_sha256}"'
    assert response["Accept-Ranges"] == "bytes"
    assert response["Last-Modified"]
    assert _body(response) == CONTENT


def test_download_answers_ranges_head_and_conditionals(api, item):
    url = f"/api/v1/tree-items/{item.pk}/download"
    partial = api.get(url, HTTP_RANGE="bytes=100-199")
    assert partial.status_code == 206
    assert partial["Content-Range"] == f"bytes 100-199/{len(CONTENT)}"
    assert _body(partial) == CONTENT[100:200]

    head = api.head(url, HTTP_RANGE="bytes=-10")
    assert head.status_code == 206 and head["Content-Length"] == "10"
    assert _body(head) == b""

    etag = partial["ETag"]
    assert api.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    stale = api.get(url, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"another-version"')
    assert stale.status_code == 200 and _body(stale) == CONTENT

    unsatisfiable = api.get(url, HTTP_RANGE=f"bytes={len(CONTENT)}-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable["Content-Range"] == f"bytes */{len(CONTENT)}"


def test_a_cog_download_is_typed_and_validated_by_the_cogs_own_hash(api, converted):
    response = api.get(f"/api/v1/tree-items/{converted.pk}/download?variant=geo_raster")
    body = _body(response)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/tiff; application=geotiff")
    assert response["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert converted.geo_raster.sha256 == hashlib.sha256(body).hexdigest()


def test_a_signed_link_works_without_credentials_for_get_head_and_ranges(api, anon_api, item):
    link = _link(api, item.pk, variant="original", expires_in=600)
    assert link["url"].startswith("http://testserver/api/v1/tree-items/")
    expires_at = timezone.datetime.fromisoformat(link["expires_at"])
    assert timedelta(seconds=590) < expires_at - timezone.now() <= timedelta(seconds=600)

    url = _path(link["url"])
    assert _body(anon_api.get(url)) == CONTENT
    assert anon_api.head(url).status_code == 200
    ranged = anon_api.get(url, HTTP_RANGE="bytes=0-15")
    assert ranged.status_code == 206 and _body(ranged) == CONTENT[:16]


def test_link_defaults_and_limits(api, item):
    link = _link(api, item.pk)
    assert parse_qs(urlsplit(link["url"]).query)["variant"] == ["original"]
    expires_at = timezone.datetime.fromisoformat(link["expires_at"])
    assert timedelta(seconds=3590) < expires_at - timezone.now() <= timedelta(seconds=3600)
    url = f"/api/v1/tree-items/{item.pk}/download-link"
    too_long = api.post(url, {"expires_in": 7 * 24 * 3600 + 1}, format="json")
    assert too_long.status_code == 400 and "expires_in" in too_long.json()["message"]
    assert api.post(url, {"expires_in": 0}, format="json").status_code == 400
    assert api.post(url, {"variant": "thumbnail"}, format="json").status_code == 400


def test_a_link_to_a_cog_that_does_not_exist_yet_is_404(api, item):
    response = api.post(
        f"/api/v1/tree-items/{item.pk}/download-link", {"variant": "geo_raster"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_a_tampered_link_is_403_and_says_so(api, anon_api, item):
    url = _path(_link(api, item.pk)["url"])
    tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    response = anon_api.get(tampered)
    assert response.status_code == 403
    assert response.json() == {
        "code": "link_invalid",
        "message": "This link is not valid: it was altered or is incomplete.",
    }


def test_an_expired_link_is_403_and_says_when_it_expired(anon_api, item):
    expired_at = (timezone.now() - timedelta(seconds=5)).replace(microsecond=0)
    token = links.grant_token(
        item_id=item.pk, scope=links.Scope.ORIGINAL, sha256=item.file_sha256, expires_at=expired_at
    )
    response = anon_api.get(f"/api/v1/tree-items/{item.pk}/download?token={token}")
    assert response.status_code == 403
    assert response.json()["code"] == "link_expired"
    assert expired_at.isoformat() in response.json()["message"]


def test_a_link_opens_only_its_item_and_variant(api, anon_api, item, converted, user):
    token = parse_qs(urlsplit(_link(api, item.pk)["url"]).query)["token"][0]
    # Another item of the same owner.
    other = anon_api.get(f"/api/v1/tree-items/{converted.pk}/download?token={token}")
    assert other.status_code == 403 and other.json()["code"] == "link_invalid"
    # The same item's other variant.
    cog_token = parse_qs(urlsplit(_link(api, converted.pk)["url"]).query)["token"][0]
    variant = anon_api.get(
        f"/api/v1/tree-items/{converted.pk}/download?variant=geo_raster&token={cog_token}"
    )
    assert variant.status_code == 403 and variant.json()["code"] == "link_invalid"
    # Any other route: the token is not a credential there.
    for path in ("/api/v1/tree-items/", f"/api/v1/tree-items/{item.pk}", "/api/v1/tasks/"):
        response = anon_api.get(f"{path}?token={token}")
        assert response.status_code == 401, path


def test_a_link_stops_working_when_the_cog_changes(api, anon_api, converted):
    url = _path(_link(api, converted.pk, variant="geo_raster")["url"])
    assert anon_api.get(url).status_code == 200
    converted.geo_raster.sha256 = "f" * 64  # what a reconversion does: a new file, a new hash
    converted.geo_raster.save()
    response = anon_api.get(url)
    assert response.status_code == 403
    assert response.json()["code"] == "link_stale"


def test_a_link_stops_working_when_the_item_is_deleted(api, anon_api, item):
    url = _path(_link(api, item.pk)["url"])
    assert api.delete(f"/api/v1/tree-items/{item.pk}").status_code == 204
    response = anon_api.get(url)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_a_link_of_a_disabled_account_stops_working(api, anon_api, item, user):
    url = _path(_link(api, item.pk)["url"])
    user.is_active = False
    user.save()
    assert anon_api.get(url).status_code == 403


def test_another_users_item_gets_404_not_a_link(other_api, item):
    response = other_api.post(f"/api/v1/tree-items/{item.pk}/download-link", {}, format="json")
    assert response.status_code == 404


def test_downloads_and_links_answer_cors_for_configured_origins(api, item, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://maps.example.org"]
    url = _path(_link(api, item.pk)["url"])
    client = APIClient()
    preflight = client.options(
        url,
        HTTP_ORIGIN="https://maps.example.org",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="range, if-none-match, authorization",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "https://maps.example.org"
    allowed = preflight["Access-Control-Allow-Headers"].lower()
    assert {"range", "if-none-match", "authorization"} <= set(allowed.replace(" ", "").split(","))
    response = client.get(url, HTTP_ORIGIN="https://maps.example.org", HTTP_RANGE="bytes=0-1")
    assert response["Access-Control-Allow-Origin"] == "https://maps.example.org"
    exposed = set(response["Access-Control-Expose-Headers"].lower().replace(" ", "").split(","))
    assert {"content-range", "content-length", "etag", "accept-ranges"} <= exposed
    foreign = client.get(url, HTTP_ORIGIN="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in foreign
    # Not a delivery route: no CORS at all.
    listing = client.options("/api/v1/tree-items/", HTTP_ORIGIN="https://maps.example.org")
    assert "Access-Control-Allow-Origin" not in listing
