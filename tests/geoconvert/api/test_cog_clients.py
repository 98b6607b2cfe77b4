"""Real COG clients against a real stack: a large raster uploaded and converted by the Celery
worker, then opened over HTTP the way QGIS, rasterio and TiTiler open remote rasters (GDAL's
/vsicurl/), through a proxy that counts what the server sent."""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import rasterio
import requests
from rasterio.transform import from_origin
from rasterio.windows import Window
from rest_framework.authtoken.models import Token

from tests import rasters
from tests.geoconvert.api.helpers import convert, convert_in_process, upload, wait_for_task
from tests.http import CountingProxy
from tests.storage import local_copy

SIZE = 8192
WINDOW = Window(SIZE // 2, SIZE // 2, 512, 512)


def _large_tiff(path: Path) -> Path:
    """SIZE x SIZE uint8, written in strips (never whole in memory): a pattern with noise,
    so it compresses like imagery and a wrong window shows."""
    rng = np.random.default_rng(8)
    profile = dict(
        driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500000, 4100000, 10, 10), tiled=True, compress="deflate",
        zlevel=1,
    )  # fmt: skip
    cols = np.arange(SIZE)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, SIZE, 512):
            rows = np.arange(top, top + 512)[:, None]
            strip = (rows // 7 + cols // 11) % 200 + rng.integers(0, 50, (512, SIZE))
            dst.write(strip.astype("uint8")[None], window=Window(0, top, SIZE, 512))
    return path


@pytest.fixture
def large_cog(api, live_worker, tmp_path):
    item = upload(api, _large_tiff(tmp_path / "large.tif"))
    task = convert(api, item["id"]).json()
    status, _ = wait_for_task(api, task["task_id"], timeout=300)
    assert status["state"] == "SUCCESS", status
    return api.get(f"/api/v1/tree-items/{item['id']}").json()


@pytest.fixture
def proxy(live_server):
    parts = urlsplit(live_server.url)
    counting = CountingProxy((parts.hostname, parts.port))
    yield counting
    counting.close()


def _token(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def _local_window(item: dict) -> np.ndarray:

    from tagger.models import GeoRaster

    cog = local_copy(GeoRaster.objects.get(item_id=item["id"]).file.name)
    with rasterio.open(cog) as dataset:
        return dataset.read(1, window=WINDOW)


def _gdal_options(**extra) -> dict:
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_MAX_RETRY": "0",
        "VSI_CACHE": "FALSE",
        **extra,
    }


def _read_remote_window(url: str, **options) -> tuple[np.ndarray, dict]:
    with rasterio.Env(**_gdal_options(**options)):
        with rasterio.open(f"/vsicurl/{url}") as dataset:
            profile = {
                "width": dataset.width,
                "height": dataset.height,
                "overviews": dataset.overviews(1),
            }
            return dataset.read(1, window=WINDOW), profile


def test_gdal_clients_read_one_window_of_a_large_cog(api, large_cog, proxy, live_server, user):
    size = large_cog["geo_raster"]["size_bytes"]
    expected = _local_window(large_cog)

    # With the token as an HTTP header (QGIS: the connection's HTTP header settings).
    url = f"{proxy.url}/api/v1/tree-items/{large_cog['id']}/download?variant=geo_raster"
    proxy.reset()
    window, profile = _read_remote_window(
        url, GDAL_HTTP_HEADERS=f"Authorization: Token {_token(user)}"
    )
    sent = proxy.sent_to_client
    assert profile["width"] == profile["height"] == SIZE and profile["overviews"]
    np.testing.assert_array_equal(window, expected)
    assert sent < 0.05 * size, f"the server sent {sent} of {size} bytes"

    # Through a signed link, with no credentials at all.
    link = api.post(
        f"/api/v1/tree-items/{large_cog['id']}/download-link",
        {"variant": "geo_raster", "expires_in": 600},
        format="json",
    ).json()
    parts = urlsplit(link["url"])
    proxy.reset()
    window, _ = _read_remote_window(f"{proxy.url}{parts.path}?{parts.query}")
    sent = proxy.sent_to_client
    np.testing.assert_array_equal(window, expected)
    assert sent < 0.05 * size, f"the server sent {sent} of {size} bytes"

    # `rio info` (what `gdalinfo` prints) on the same URL.
    env = {**os.environ, **_gdal_options(GDAL_HTTP_HEADERS=f"Authorization: Token {_token(user)}")}
    rio = Path(sys.executable).with_name("rio")
    done = subprocess.run(
        [str(rio), "info", f"/vsicurl/{url}"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert (info["width"], info["height"]) == (SIZE, SIZE)
    assert info["crs"] == "EPSG:32633"
    assert info["blockxsize"] == info["blockysize"] == 512


def test_every_range_form_over_a_real_connection(transactional_db, live_server, user, tmp_path):
    item = convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"), describe=False)
    url = f"{live_server.url}/api/v1/tree-items/{item.pk}/download?variant=geo_raster"
    session = requests.Session()
    session.headers["Authorization"] = f"Token {_token(user)}"
    size = item.geo_raster.size_bytes
    whole = session.get(url).content
    assert len(whole) == size

    forms = {
        "bytes=0-99": whole[:100],
        "bytes=-64": whole[-64:],
        f"bytes={size - 10}-": whole[-10:],
    }
    for header, expected in forms.items():
        response = session.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == expected, header

    multi = session.get(url, headers={"Range": "bytes=0-9, 1000-1009"})
    assert multi.status_code == 206
    assert multi.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert whole[:10] in multi.content and whole[1000:1010] in multi.content

    refused = session.get(url, headers={"Range": f"bytes={size}-"})
    assert refused.status_code == 416
    assert refused.headers["Content-Range"] == f"bytes */{size}"
    assert refused.json()["code"] == "range_not_satisfiable"

    head = session.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == size
    etag = head.headers["ETag"]
    assert session.get(url, headers={"If-None-Match": etag}).status_code == 304
    fresh = session.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206
    stale = session.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status_code == 200 and len(stale.content) == size
