"""docker/nginx.conf's tile location in a real nginx in front of a live Django: it keeps the
tiles Django lets it keep, keyed by URL and credentials, and never answers anybody else's
request from them."""

from urllib.parse import urlsplit

import pytest
import requests
from rest_framework.authtoken.models import Token

from tests import rasters
from tests.conftest import require
from tests.geoconvert.api.helpers import convert_in_process
from tests.geoconvert.api.test_maps import _inside_tile
from tests.http import NGINX, conf_block, conf_directive, location_in_front, running_nginx
from tests.tagger.api.test_delivery import NGINX_CONF

TILE_LOCATION = "location ~ ^/api/v1/tree-items/[^/]+/tiles/ {"


@pytest.fixture
def tile_proxy(live_server, tmp_path, settings):
    """nginx with docker/nginx.conf's tile cache and tile location, and `/` passed on, in
    front of live_server; Django lets it keep tiles for a minute. Yields nginx's base URL."""
    require(NGINX is not None, "nginx is not installed (Debian: apt-get install nginx)")
    settings.TAGGER_TILE_PROXY_CACHE_SECONDS = 60
    conf = NGINX_CONF.read_text()
    cache = conf_directive(conf, "proxy_cache_path")
    assert cache.startswith("proxy_cache_path /var/cache/nginx/tagger-tiles ")
    http_part = "\n".join(
        [
            conf_block(conf, "map $http_x_forwarded_proto "),
            cache.replace("/var/cache/nginx/tagger-tiles", str(tmp_path / "tiles")),
        ]
    )
    upstream = urlsplit(live_server.url).netloc
    server_part = location_in_front(conf_block(conf, TILE_LOCATION), upstream)
    with running_nginx(tmp_path / "nginx", http_part, server_part) as port:
        yield f"http://127.0.0.1:{port}"


def _token(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def test_nginx_keeps_a_tile_for_the_same_url_and_credentials_only(
    tile_proxy, user, other_user, tmp_path
):
    item = convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"))
    tile = _inside_tile(item, 13)
    url = f"{tile_proxy}/api/v1/tree-items/{item.pk}/tiles/{tile.z}/{tile.x}/{tile.y}.png"
    mine = {"Authorization": f"Token {_token(user)}"}

    first = requests.get(url, headers=mine, timeout=30)
    assert first.status_code == 200 and first.headers["X-Cache-Status"] == "MISS"
    again = requests.get(url, headers=mine, timeout=30)
    assert again.status_code == 200 and again.headers["X-Cache-Status"] == "HIT"
    assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
    # What browsers see is unchanged; nginx takes its own header off.
    assert again.headers["Cache-Control"] == "private, no-cache"
    assert "X-Accel-Expires" not in again.headers
    # The cache answers a revalidation itself.
    revalidated = requests.get(url, headers={**mine, "If-None-Match": first.headers["ETag"]})
    assert revalidated.status_code == 304 and revalidated.headers["X-Cache-Status"] == "HIT"

    # The same URL with other credentials, or none, is another key: Django answers.
    theirs = {"Authorization": f"Token {_token(other_user)}"}
    for headers, status in ((theirs, 404), ({}, 401), ({"Authorization": "Token nope"}, 401)):
        for _ in range(2):
            response = requests.get(url, headers=headers, timeout=30)
            assert response.status_code == status, headers
            assert response.headers["X-Cache-Status"] == "MISS"
            assert response.content != first.content


def test_nginx_keeps_tiles_of_a_tile_token_and_never_a_sessions(
    tile_proxy, live_server, user, tmp_path
):
    item = convert_in_process(user, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"))
    tile = _inside_tile(item, 14)
    mine = {"Authorization": f"Token {_token(user)}"}
    tilejson = requests.get(
        f"{tile_proxy}/api/v1/tree-items/{item.pk}/tilejson.json", headers=mine, timeout=30
    ).json()
    signed = tilejson["tiles"][0].format(z=tile.z, x=tile.x, y=tile.y)
    assert signed.startswith(tile_proxy)  # built for the proxy's host and port
    statuses = [requests.get(signed, timeout=30).headers["X-Cache-Status"] for _ in range(2)]
    assert statuses == ["MISS", "HIT"]

    session = requests.Session()
    login = session.get(f"{tile_proxy}/admin/login/", timeout=30)
    assert login.status_code == 200
    user.is_staff = True
    user.set_password("tile-cache-test")
    user.save()
    session.post(
        f"{tile_proxy}/admin/login/",
        data={
            "username": user.username,
            "password": "tile-cache-test",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": f"{tile_proxy}/admin/login/"},
        timeout=30,
    )
    assert "sessionid" in session.cookies
    path = urlsplit(signed).path
    for _ in range(2):
        response = session.get(f"{tile_proxy}{path}", timeout=30)
        assert response.status_code == 200
        assert response.headers["X-Cache-Status"] == "MISS"
