"""tagger.storage on S3 (TAGGER_STORAGE=s3), against a real local S3 server (moto's server
mode, its own process): uploads, downloads (redirects to presigned URLs, or proxied), signed
links, tiles, thumbnails and housekeeping. These run on every run of the suite, each on a
bucket of its own; the suite's S3 run then runs everything else on S3 too."""

import base64
import dataclasses
import hashlib
from datetime import timedelta

import numpy as np
import pytest
import rasterio
import requests
from django.utils import timezone
from rio_tiler.io import Reader

from geoconvert.models import Conversion
from geoconvert.services.housekeeping import orphan_files_remove
from tagger import storage
from tagger.models import TreeItem
from tests import rasters
from tests.geoconvert.api.helpers import convert_in_process, upload
from tests.storage import local_copy

pytestmark = pytest.mark.django_db


def _keys(bucket) -> list[str]:
    listed = bucket.client.list_objects_v2(Bucket=bucket.name).get("Contents", [])
    return sorted(entry["Key"] for entry in listed)


def test_an_upload_is_an_object_of_the_bucket_checked_by_sha256(
    api, s3_bucket, tmp_path, django_capture_on_commit_callbacks
):
    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
    item = upload(api, src)
    stored = TreeItem.objects.get(pk=item["id"])
    assert _keys(s3_bucket) == [stored.file.name]
    head = s3_bucket.client.head_object(
        Bucket=s3_bucket.name, Key=stored.file.name, ChecksumMode="ENABLED"
    )
    digest = hashlib.sha256(src.read_bytes()).digest()
    assert head["ChecksumSHA256"] == base64.b64encode(digest).decode()
    assert head["ContentLength"] == src.stat().st_size == item["size"]

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/tree-items/{item['id']}").status_code == 204
    assert _keys(s3_bucket) == []


def test_a_large_file_is_published_in_parts_each_checked_by_sha256(
    s3_bucket, tmp_path, monkeypatch
):
    # A COG past the part size goes up in parts; 5 MiB is S3's smallest.
    monkeypatch.setattr(storage, "MULTIPART_BYTES", 5 * 1024**2)
    content = np.random.default_rng(5).integers(0, 256, 12 * 1024**2, dtype="uint8").tobytes()
    path = tmp_path / "cog.tif"
    path.write_bytes(content)

    storage.file_publish(path, "items/1/cog.tif")

    assert not path.exists()
    head = s3_bucket.client.head_object(
        Bucket=s3_bucket.name, Key="items/1/cog.tif", ChecksumMode="ENABLED"
    )
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # three parts
    # The store checked each part's SHA-256; the object's is the digest of the parts' digests.
    parts = [content[i : i + 5 * 1024**2] for i in range(0, len(content), 5 * 1024**2)]
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    assert head["ChecksumSHA256"].split("-")[0] == base64.b64encode(composite).decode()
    assert head["ContentLength"] == len(content)
    stored = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key="items/1/cog.tif")
    assert stored["Body"].read() == content
    listed = s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name)
    assert not listed.get("Uploads"), "no unfinished upload is left"


def test_a_download_redirects_to_a_presigned_url_that_serves_ranges(
    api, s3_bucket, settings, tmp_path
):
    settings.TAGGER_S3_DELIVERY = "redirect"
    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
    item = upload(api, src, name="field.tif")
    content = src.read_bytes()
    url = f"/api/v1/tree-items/{item['id']}/download?variant=original"

    response = api.get(url)
    assert response.status_code == 302
    assert response["ETag"] == f'"{TreeItem.objects.get(pk=item["id"]).file_sha256}"'
    location = response["Location"]
    assert location.startswith(s3_bucket.endpoint) and "X-Amz-Signature=" in location
    ranged = requests.get(location, headers={"Range": "bytes=100-1099"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == content[100:1100]
    whole = requests.get(location, timeout=10)
    assert whole.content == content
    assert 'filename="field.tif"' in whole.headers["Content-Disposition"]

    head = api.head(url)
    assert head.status_code == 302
    assert requests.head(head["Location"], timeout=10).headers["Content-Length"] == str(
        len(content)
    )
    # The validators are ours: a client holding the ETag is answered here, not redirected.
    etag = response["ETag"]
    assert api.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304


def test_a_signed_link_redirects_without_credentials(api, s3_bucket, settings, tmp_path, client):
    settings.TAGGER_S3_DELIVERY = "redirect"
    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
    item = upload(api, src)
    link = api.post(
        f"/api/v1/tree-items/{item['id']}/download-link", {"variant": "original"}, format="json"
    ).json()["url"]
    response = client.get(link)
    assert response.status_code == 302
    fetched = requests.get(response["Location"], headers={"Range": "bytes=0-15"}, timeout=10)
    assert fetched.status_code == 206 and fetched.content == src.read_bytes()[:16]
    tampered = client.get(link.replace("token=", "token=x"))
    assert tampered.status_code == 403


def test_proxied_downloads_answer_ranges_from_the_bucket(api, s3_bucket, settings, tmp_path):
    settings.TAGGER_S3_DELIVERY = "proxy"
    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
    content = src.read_bytes()
    item = upload(api, src)
    url = f"/api/v1/tree-items/{item['id']}/download?variant=original"

    single = api.get(url, HTTP_RANGE="bytes=-300")
    assert single.status_code == 206
    assert b"".join(single.streaming_content) == content[-300:]
    size = len(content)
    assert single["Content-Range"] == f"bytes {size - 300}-{size - 1}/{size}"
    several = api.get(url, HTTP_RANGE="bytes=0-9,500-509")
    body = b"".join(several.streaming_content)
    assert several.status_code == 206 and several["Content-Type"].startswith("multipart/byteranges")
    assert content[:10] in body and content[500:510] in body
    whole = api.get(url)
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == content
    assert api.get(url, HTTP_RANGE=f"bytes={len(content)}-").status_code == 416


def test_tiles_tilejson_and_thumbnail_read_the_cog_from_the_bucket(api, s3_bucket, user, tmp_path):
    item = convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"), describe=True)
    assert item.geo_raster.statistics and item.geo_raster.thumbnail.name
    assert sorted(_keys(s3_bucket)) == sorted(
        [item.file.name, item.geo_raster.file.name, item.geo_raster.thumbnail.name]
    )
    tilejson = api.get(f"/api/v1/tree-items/{item.pk}/tilejson.json").json()
    z = tilejson["maxzoom"]
    lon, lat = tilejson["center"][:2]
    with Reader(str(local_copy(item.geo_raster.file.name))) as reader:
        x, y = reader.tms.tile(lon, lat, z)[:2]
    tile = api.get(f"/api/v1/tree-items/{item.pk}/tiles/{z}/{x}/{y}.png")
    assert tile.status_code == 200 and tile["Content-Type"] == "image/png"
    with rasterio.MemoryFile(tile.content) as memory, memory.open() as png:
        assert png.width == 256 and np.any(png.read(png.count) > 0)
    thumbnail = api.get(f"/api/v1/tree-items/{item.pk}/thumbnail.png")
    assert thumbnail.status_code == 200
    assert thumbnail.content == storage.file_read(item.geo_raster.thumbnail.name)


def test_housekeeping_removes_unreferenced_objects_and_unfinished_uploads(
    s3_bucket, user, tmp_path
):
    item = convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"), describe=False)
    folder = storage.item_dir(item)
    client, bucket = s3_bucket.client, s3_bucket.name
    client.put_object(Bucket=bucket, Key=f"{folder}/geo_raster-deadrun.tif", Body=b"killed run")
    gone = "items/1/0123456789abcdef0123456789abcdef/original"  # an item that no longer exists
    client.put_object(Bucket=bucket, Key=gone, Body=b"x")

    # Nothing young enough is touched.
    assert orphan_files_remove(min_age_seconds=3600, now=timezone.now()).objects == []
    # (Made after that check: moto dates every multipart upload in 2010.)
    stale = client.create_multipart_upload(Bucket=bucket, Key=f"{folder}/geo_raster-killed.tif")

    # While the item converts, its objects and uploads wait (one may be its COG, arriving).
    running = Conversion.objects.create(item=item, owner=user, state=Conversion.State.PROGRESS)
    summary = orphan_files_remove(min_age_seconds=0, now=timezone.now() + timedelta(seconds=5))
    assert summary.objects == [gone]
    assert summary.multipart_uploads == []
    running.delete()

    summary = orphan_files_remove(min_age_seconds=0, now=timezone.now() + timedelta(seconds=5))
    assert summary.objects == [f"{folder}/geo_raster-deadrun.tif"]
    assert summary.multipart_uploads == [f"{folder}/geo_raster-killed.tif"]
    assert sorted(_keys(s3_bucket)) == sorted([item.file.name, item.geo_raster.file.name])
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert stale["UploadId"] not in [u["UploadId"] for u in uploads]


def test_the_engine_reads_only_its_source_object(s3_bucket, tmp_path):
    from geoconvert import raster
    from geoconvert.services.engine import storage_env

    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
    client, bucket = s3_bucket.client, s3_bucket.name
    client.upload_file(str(src), bucket, "items/1/aa/original")
    client.upload_file(str(src), bucket, "items/1/bb/original")
    name = storage.gdal_name("items/1/aa/original")
    with storage_env():
        info = raster.convert(name, tmp_path / "out.tif")
        with raster.gdal_env(source=name):
            with pytest.raises(rasterio.errors.RasterioIOError):
                rasterio.open(storage.gdal_name("items/1/bb/original"))
    assert info.width > 0 and (tmp_path / "out.tif").is_file()
    rasters.assert_same_pixels(src, tmp_path / "out.tif")


def test_temporary_credentials_reach_gdal_with_their_session_token(s3_bucket, settings):
    from geoconvert import raster
    from geoconvert.raster import source

    settings.AWS_SESSION_TOKEN = "a-session-token"  # django-storages reads it, as boto3 does
    settings.STORAGES = {**settings.STORAGES}  # a new storage, built with it

    found = storage.s3_settings()

    assert found.session_token == "a-session-token"
    access = raster.S3Access(**dataclasses.asdict(found))
    options = source._aws_session(access).get_credential_options()
    assert options["AWS_SESSION_TOKEN"] == "a-session-token"
    assert options["AWS_ACCESS_KEY_ID"] == found.access_key
