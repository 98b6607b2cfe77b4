"""The event streams as clients get them: from uvicorn (config.asgi, as `make run` and the
image serve the API), fed by a real Celery worker converting a real raster, directly and
through docker/nginx.conf's event location in a real nginx."""

import json
import time
from contextlib import ExitStack
from urllib.parse import urlsplit

import pytest
import requests
from rest_framework.authtoken.models import Token

from geoconvert.services import events
from tests import rasters
from tests.conftest import require
from tests.http import NGINX, conf_block, location_in_front, running_nginx
from tests.tagger.api.test_delivery import NGINX_CONF

EVENTS_LOCATION = "location ~ ^/api/v1/(events|tasks/[^/]+/events)/?$ {"


@pytest.fixture
def token(user) -> dict:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def _upload_and_convert(base: str, headers: dict, path, body=None) -> tuple[str, str]:
    with open(path, "rb") as file:
        item = requests.post(
            f"{base}/api/v1/tree-items", headers=headers, files={"file": file}, timeout=60
        )
    assert item.status_code == 201, item.text
    item_id = item.json()["id"]
    started = requests.post(
        f"{base}/api/v1/tree-items/{item_id}/convert-to-geo-raster",
        headers=headers,
        json=body or {},
        timeout=30,
    )
    assert started.status_code == 202, started.text
    return item_id, started.json()["task_id"]


def _events(response, *, until=lambda data: False, timeout: float = 120):
    """(id, data) of each event of a streamed `requests` response, until `until(data)`, the
    stream ends or `timeout` passes."""
    deadline = time.monotonic() + timeout
    got, block = [], {}
    for line in response.iter_lines(decode_unicode=True):
        if time.monotonic() > deadline:
            raise AssertionError(f"no end within {timeout} s; got {got}")
        if line:
            field, _, value = line.partition(":")
            block[field] = value.lstrip(" ")
            continue
        if block.get("event") == "conversion":
            got.append((block["id"], json.loads(block["data"])))
            if until(got[-1][1]):
                break
        block = {}
    return got


def test_a_conversion_streams_from_queued_to_success_through_uvicorn(
    asgi_server, live_worker, token, tmp_path
):
    base = asgi_server.url
    # The user's stream, opened before the conversion exists. (`with`: a failed assertion
    # must not leave a stream open for the next test to count.)
    with requests.get(f"{base}/api/v1/events", headers=token, stream=True, timeout=30) as every:
        assert every.status_code == 200 and every.headers["X-Accel-Buffering"] == "no"
        raster = rasters.rgb_byte_tiff(tmp_path / "a.tif")
        item_id, task_id = _upload_and_convert(base, token, raster)
        with requests.get(
            f"{base}/api/v1/tasks/{task_id}/events", headers=token, stream=True, timeout=30
        ) as one:
            assert one.status_code == 200
            task_events = [data for _, data in _events(one)]  # it ends by itself
        assert task_events[-1]["state"] == "SUCCESS" and task_events[-1]["progress"] == 100
        progress = [data["progress"] for data in task_events]
        assert progress == sorted(progress)
        assert {data["item_id"] for data in task_events} == {item_id}

        seen = _events(every, until=lambda data: data["state"] == "SUCCESS")
    states = [data["state"] for _, data in seen if data["task_id"] == task_id]
    assert states[0] == "PENDING" and states[-1] == "SUCCESS"
    assert "PROGRESS" in states
    status = requests.get(f"{base}/api/v1/tasks/{task_id}/status", headers=token, timeout=30)
    assert seen[-1][1] == {**status.json(), "item_id": item_id}


def _stream_connections(client) -> int:
    return sum(1 for c in client.client_list() if c["name"] == events.READER_NAME)


def _wait_for(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_a_client_that_leaves_releases_its_redis_connection(asgi_server, live_worker, token):
    client = events.redis_client()
    assert _wait_for(lambda: _stream_connections(client) == 0)  # earlier tests' are gone
    with ExitStack() as open_streams:
        streams = [
            open_streams.enter_context(
                requests.get(
                    f"{asgi_server.url}/api/v1/events", headers=token, stream=True, timeout=30
                )
            )
            for _ in range(3)
        ]
        # Kept: a dropped line iterator closes its response.
        lines = [stream.iter_lines() for stream in streams]
        for stream, stream_lines in zip(streams, lines, strict=True):
            assert stream.status_code == 200
            next(stream_lines)
        assert _wait_for(lambda: _stream_connections(client) == 3)
        streams[0].close()
        assert _wait_for(lambda: _stream_connections(client) == 2)
    assert _wait_for(lambda: _stream_connections(client) == 0)


def test_events_pass_through_the_production_nginx_as_they_come(
    asgi_server, live_worker, token, tmp_path
):
    require(NGINX is not None, "nginx is not installed (Debian: apt-get install nginx)")
    conf = NGINX_CONF.read_text()
    upstream = urlsplit(asgi_server.url).netloc
    location = conf_block(conf, EVENTS_LOCATION)
    assert "proxy_buffering off;" in location
    server_part = location_in_front(location, upstream) + "\nclient_max_body_size 100m;"
    http_part = conf_block(conf, "map $http_x_forwarded_proto ")
    with running_nginx(tmp_path / "nginx", http_part, server_part) as port:
        base = f"http://127.0.0.1:{port}"
        # The user's stream never ends: buffered, its events would not arrive while it is open.
        with requests.get(
            f"{base}/api/v1/events", headers=token, stream=True, timeout=30
        ) as stream:
            assert stream.status_code == 200
            raster = rasters.rgb_byte_tiff(tmp_path / "a.tif")
            _, task_id = _upload_and_convert(base, token, raster)
            got = _events(stream, until=lambda data: data["state"] == "SUCCESS", timeout=60)
    mine = [data for _, data in got if data["task_id"] == task_id]
    assert mine[0]["state"] == "PENDING" and mine[-1]["state"] == "SUCCESS"
    progress = [data["progress"] for data in mine]
    assert progress == sorted(progress) and len(mine) >= 3
