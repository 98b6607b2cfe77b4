"""Tiles, TileJSON and the thumbnail through the API: access as on every route, validators,
and a TileJSON template a browser map can use as it is."""

import warnings
from urllib.parse import urlsplit

import morecantile
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from geoconvert.services.describe import geo_raster_describe
from tagger.models import GeoRaster
from tagger.services import item_create
from tests import rasters
from tests.geoconvert.api.helpers import convert_in_process

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture
def converted(user, tmp_path):
    return convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"))


def _png(content: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeference
        with MemoryFile(content) as memory, memory.open() as png:
            return png.read()


def _inside_tile(item, zoom: int):
    west, south, east, north = item.geo_raster.bounds_wgs84
    return WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, zoom)


def _tilejson(api, item, **params) -> dict:
    response = api.get(f"/api/v1/tree-items/{item.pk}/tilejson.json", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_tilejson_describes_the_cog_for_a_browser_map(api, converted):
    body = _tilejson(api, converted)
    assert body["tilejson"] == "3.0.0" and body["scheme"] == "xyz"
    assert body["bounds"] == pytest.approx(converted.geo_raster.bounds_wgs84, abs=1e-6)
    assert 0 <= body["minzoom"] <= body["maxzoom"] <= 24
    lon, lat, zoom = body["center"]
    west, south, east, north = body["bounds"]
    assert west <= lon <= east and south <= lat <= north
    assert body["minzoom"] <= zoom <= body["maxzoom"]
    (template,) = body["tiles"]
    assert template.startswith(f"http://testserver/api/v1/tree-items/{converted.pk}/tiles/")
    assert "/{z}/{x}/{y}.png?token=" in template
    assert "/{z}/{x}/{y}@2x.png?token=" in _tilejson(api, converted, scale=2)["tiles"][0]


def test_the_template_opens_tiles_with_no_credentials(api, anon_api, converted):
    body = _tilejson(api, converted)
    tile = _inside_tile(converted, body["maxzoom"])
    url = body["tiles"][0].format(z=tile.z, x=tile.x, y=tile.y)
    parts = urlsplit(url)
    response = anon_api.get(f"{parts.path}?{parts.query}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    pixels = _png(response.content)
    assert pixels.shape == (4, 256, 256)  # RGB + alpha
    assert pixels[3].max() == 255  # some of the tile is covered
    # The tile token opens tiles only: not the download of the same item.
    download = anon_api.get(f"/api/v1/tree-items/{converted.pk}/download?{parts.query}")
    assert download.status_code == 403 and download.json()["code"] == "link_invalid"


def test_retina_tiles_are_512_pixels(api, converted):
    tile = _inside_tile(converted, 14)
    response = api.get(f"/api/v1/tree-items/{converted.pk}/tiles/{tile.z}/{tile.x}/{tile.y}@2x.png")
    assert response.status_code == 200
    assert _png(response.content).shape[1:] == (512, 512)


def test_tiles_carry_validators_and_answer_304(api, converted):
    tile = _inside_tile(converted, 13)
    url = f"/api/v1/tree-items/{converted.pk}/tiles/{tile.z}/{tile.x}/{tile.y}.png"
    first = api.get(url)
    assert first.status_code == 200
    assert first["Cache-Control"] == "private, no-cache"
    again = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again.content == b""
    # Another COG (a reconversion): every tile's validator changes.
    GeoRaster.objects.filter(pk=converted.pk).update(sha256="e" * 64)
    assert api.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200


def test_a_tile_outside_the_raster_is_204_and_a_tile_off_the_grid_is_404(api, converted):
    outside = api.get(f"/api/v1/tree-items/{converted.pk}/tiles/10/0/0.png")
    assert outside.status_code == 204 and outside.content == b""
    off_grid = api.get(f"/api/v1/tree-items/{converted.pk}/tiles/2/4/0.png")
    assert off_grid.status_code == 404
    assert "at zoom 2, x and y are below 4" in off_grid.json()["message"]


def test_tiles_of_an_item_not_converted_are_404(api, user, tmp_path):
    item = item_create(owner=user, name="a.tif", file=SimpleUploadedFile("a.tif", b"x"))
    for path in ("tiles/1/0/0.png", "tilejson.json", "thumbnail.png"):
        response = api.get(f"/api/v1/tree-items/{item.pk}/{path}")
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"


def test_the_thumbnail_is_404_until_ready_then_a_png(api, user, tmp_path):
    item = convert_in_process(user, rasters.float_dem_tiff(tmp_path / "dem.tif"), describe=False)
    url = f"/api/v1/tree-items/{item.pk}/thumbnail.png"
    waiting = api.get(url)
    assert waiting.status_code == 404
    assert waiting.json()["code"] == "thumbnail_not_ready"
    assert api.get(f"/api/v1/tree-items/{item.pk}").json()["geo_raster"]["statistics"] is None

    assert geo_raster_describe(item_id=item.pk).described
    ready = api.get(url)
    assert ready.status_code == 200 and ready["Content-Type"] == "image/png"
    pixels = _png(ready.content)
    assert max(pixels.shape[1:]) <= 512
    assert pixels[-1].min() == 0  # the lake (nodata) is transparent
    assert api.get(url, HTTP_IF_NONE_MATCH=ready["ETag"]).status_code == 304
    statistics = api.get(f"/api/v1/tree-items/{item.pk}").json()["geo_raster"]["statistics"]
    assert statistics["bands"][0]["valid_pixels"] > 0


def test_tiles_answer_cors_for_configured_origins(api, converted, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://maps.example.org"]
    tile = _inside_tile(converted, 13)
    xyz = f"{tile.z}/{tile.x}/{tile.y}"
    for path in (f"tiles/{xyz}.png", f"tiles/{xyz}@2x.png", "tilejson.json", "thumbnail.png"):
        preflight = api.options(
            f"/api/v1/tree-items/{converted.pk}/{path}",
            HTTP_ORIGIN="https://maps.example.org",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="if-none-match",
        )
        assert preflight["Access-Control-Allow-Origin"] == "https://maps.example.org", path


def test_only_credentials_in_the_url_or_header_let_nginx_cache_a_tile(
    api, anon_api, user, converted, settings, client
):
    tile = _inside_tile(converted, 13)
    path = f"/api/v1/tree-items/{converted.pk}/tiles/{tile.z}/{tile.x}/{tile.y}.png"
    assert "X-Accel-Expires" not in api.get(path)  # 0, the default: nothing cached

    settings.TAGGER_TILE_PROXY_CACHE_SECONDS = 60
    assert api.get(path)["X-Accel-Expires"] == "60"
    assert api.get(f"/api/v1/tree-items/{converted.pk}/tiles/10/0/0.png")["X-Accel-Expires"] == "60"
    # A session cookie is not in nginx's cache key: never cached.
    client.force_login(user)
    by_session = client.get(path)
    assert by_session.status_code == 200 and "X-Accel-Expires" not in by_session
    # Nor is a 304, an error or a refusal.
    etag = api.get(path)["ETag"]
    assert "X-Accel-Expires" not in api.get(path, HTTP_IF_NONE_MATCH=etag)
    assert "X-Accel-Expires" not in anon_api.get(path)
    # A tile token: no longer than the token is valid.
    settings.TAGGER_TILE_LINK_SECONDS = 20
    parts = urlsplit(_tilejson(api, converted)["tiles"][0].format(z=tile.z, x=tile.x, y=tile.y))
    by_token = anon_api.get(f"{parts.path}?{parts.query}")
    assert by_token.status_code == 200
    assert 0 < int(by_token["X-Accel-Expires"]) <= 20
