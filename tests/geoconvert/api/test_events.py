"""The event streams, in process through Django's ASGI path (AsyncClient): what comes first,
what follows, resuming with Last-Event-ID, heartbeats, lost publishes, and access as on every
route. The same streams through a real uvicorn and a real worker: test_events_server.py."""

import asyncio
import json
import time
from contextlib import suppress
from datetime import timedelta

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from django.core.files.base import ContentFile
from django.test import AsyncClient
from django.utils import timezone
from rest_framework.authtoken.models import Token

from geoconvert.models import Conversion, Stage
from geoconvert.services import events
from geoconvert.services.transitions import conversion_create, conversion_transition
from tagger import links
from tagger.services import item_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_heartbeat(settings):
    settings.TAGGER_EVENTS_HEARTBEAT_SECONDS = 0.3
    events._publisher._paused_until = 0.0
    yield
    events._publisher._paused_until = 0.0  # a test's failed publish pauses the next ones


def _pending(owner, name="a.tif") -> Conversion:
    item = item_create(owner=owner, name=name, file=ContentFile(b"not read", name=name))
    return conversion_create(item=item, owner=owner)


def _progress(conversion, progress: int, stage=Stage.CREATING) -> None:
    name = "claim" if conversion.state == Conversion.State.PENDING else "reclaim"
    conversion_transition(conversion.task_id, name, stage=stage, progress=progress)
    conversion.refresh_from_db()


def _succeed(conversion) -> None:
    conversion_transition(
        conversion.task_id,
        "succeed",
        stage=Stage.COMPLETE,
        progress=100,
        result={"crs": "EPSG:32633"},
        finished_at=timezone.now(),
    )


def _auth(user) -> dict:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def _parse(block: bytes) -> dict | None:
    event = {}
    for line in block.decode().splitlines():
        if line.startswith(":"):
            event.setdefault("comments", []).append(line[1:].strip())
            continue
        field, _, value = line.partition(":")
        event[field] = value.lstrip(" ")
    if "data" in event:
        event["data"] = json.loads(event["data"])
    return event


class Reader:
    """One stream read through AsyncClient: `events` until `count` came (running
    `after[n]()` once the n-th has), the stream ended, or `timeout` passed."""

    def __init__(self, path: str, headers: dict | None = None):
        self.path, self.headers = path, headers or {}
        self.events: list[dict] = []
        self.comments: list[str] = []
        self.ended = False
        self.response = None

    def read(self, count: int, *, after: dict | None = None, timeout: float = 10):
        async_to_sync(self._read)(count, after or {}, timeout)
        return self

    async def _read(self, count, after, timeout):
        self.response = await AsyncClient().get(self.path, headers=self.headers)
        if not self.response.streaming:
            return
        content = aiter(self.response.streaming_content)
        buffer = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while len(self.events) < count:
                try:
                    chunk = await asyncio.wait_for(anext(content), deadline - loop.time())
                except StopAsyncIteration:
                    self.ended = True
                    return
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    parsed = _parse(block)
                    self.comments += parsed.pop("comments", [])
                    if parsed.get("event") == "conversion":
                        self.events.append(parsed)
                        if len(self.events) in after:
                            await sync_to_async(after[len(self.events)])()
        finally:
            with suppress(Exception):
                await content.aclose()

    @property
    def data(self) -> list[dict]:
        return [event["data"] for event in self.events]


def test_a_task_stream_sends_the_current_state_then_each_change_and_ends(user):
    conversion = _pending(user)
    reader = Reader(f"/api/v1/tasks/{conversion.task_id}/events", _auth(user)).read(
        10,
        after={
            1: lambda: (_progress(conversion, 40), _progress(conversion, 55), _succeed(conversion))
        },
    )

    assert reader.response.status_code == 200
    assert reader.response["Content-Type"] == "text/event-stream"
    assert reader.response["X-Accel-Buffering"] == "no"
    assert reader.response["Cache-Control"] == "no-cache"
    assert [(d["state"], d["progress"]) for d in reader.data] == [
        ("PENDING", 0), ("PROGRESS", 40), ("PROGRESS", 55), ("SUCCESS", 100)
    ]  # fmt: skip
    assert reader.ended  # after the final state
    first = reader.data[0]
    assert first["task_id"] == str(conversion.task_id)
    assert first["item_id"] == str(conversion.item_id)
    assert first["status"] == Stage.QUEUED
    assert set(first) == {"task_id", "state", "status", "progress", "eta_seconds", "result",
                          "error", "item_id"}  # fmt: skip
    assert reader.data[-1]["result"] == {"crs": "EPSG:32633"}
    ids = [event["id"] for event in reader.events]
    assert all(events.entry_id_valid(i) for i in ids) and len(set(ids[1:])) == 3


def test_the_data_is_the_status_routes_json_plus_item_id(user, api):
    conversion = _pending(user)
    _progress(conversion, 50)
    reader = Reader(f"/api/v1/tasks/{conversion.task_id}/events", _auth(user)).read(1)
    status = api.get(f"/api/v1/tasks/{conversion.task_id}/status").json()
    assert reader.data[0] == {**status, "item_id": str(conversion.item_id)}


def test_the_users_stream_has_every_unfinished_conversion_then_new_ones_only_its_own(
    user, other_user
):
    running = _pending(user, "running.tif")
    _progress(running, 45)
    done = _pending(user, "done.tif")
    _progress(done, 40)
    _succeed(done)

    def start_more():
        _pending(other_user, "theirs.tif")  # on their stream, not this one
        _pending(user, "new.tif")

    reader = Reader("/api/v1/events", _auth(user)).read(2, after={1: start_more})

    assert [(d["task_id"], d["state"]) for d in reader.data] == [
        (str(running.task_id), "PROGRESS"),
        (str(Conversion.objects.get(item__name="new.tif").task_id), "PENDING"),
    ]


def test_a_new_stream_starts_where_the_redis_stream_is_so_progress_never_goes_back(user):
    conversion = _pending(user)
    _progress(conversion, 20)
    # Committed, its entry not appended yet (the worker publishes just after the commit):
    # had the stream started from the database's 40, the 40 would be followed by nothing
    # or, for a change published in between, by an older one.
    Conversion.objects.filter(pk=conversion.pk).update(progress=40)
    reader = Reader(f"/api/v1/tasks/{conversion.task_id}/events", _auth(user)).read(
        2, after={1: lambda: events._publish_now(conversion.task_id)}
    )
    assert [d["progress"] for d in reader.data] == [20, 40]


def test_last_event_id_resumes_with_nothing_lost_or_repeated(user):
    conversion = _pending(user)
    path = f"/api/v1/tasks/{conversion.task_id}/events"
    first = Reader(path, _auth(user)).read(2, after={1: lambda: _progress(conversion, 41)})
    assert [d["progress"] for d in first.data] == [0, 41]

    # Missed while disconnected: two changes and the final state.
    _progress(conversion, 60)
    _progress(conversion, 75)
    _succeed(conversion)
    resumed = Reader(path, {**_auth(user), "Last-Event-ID": first.events[-1]["id"]}).read(10)
    assert [(d["state"], d["progress"]) for d in resumed.data] == [
        ("PROGRESS", 60), ("PROGRESS", 75), ("SUCCESS", 100)
    ]  # fmt: skip
    assert resumed.ended

    # A reconnect after the final event: 204 tells EventSource to stop.
    after_end = Reader(path, {**_auth(user), "Last-Event-ID": resumed.events[-1]["id"]}).read(1)
    assert after_end.response.status_code == 204


def test_an_id_the_stream_no_longer_holds_starts_from_the_current_state(user):
    conversion = _pending(user)
    _progress(conversion, 50)
    client = events.redis_client()
    client.delete(events.stream_key(user.pk))  # expired
    reader = Reader(
        f"/api/v1/tasks/{conversion.task_id}/events", {**_auth(user), "Last-Event-ID": "1-0"}
    ).read(1)
    assert [(d["state"], d["progress"]) for d in reader.data] == [("PROGRESS", 50)]


def test_heartbeats_keep_the_stream_open_and_a_lost_publish_arrives_from_the_database(
    user, monkeypatch
):
    conversion = _pending(user)
    _progress(conversion, 40)

    def succeed_unpublished():
        # Redis missed the final state (it was down): the stream learns it at a heartbeat.
        with monkeypatch.context() as patched:
            patched.setattr(events._publisher, "publish", lambda owner_id, data: None)
            _succeed(conversion)

    reader = Reader(f"/api/v1/tasks/{conversion.task_id}/events", _auth(user)).read(
        5, after={1: succeed_unpublished}
    )
    assert [d["state"] for d in reader.data] == ["PROGRESS", "SUCCESS"]
    assert "heartbeat" in reader.comments
    assert reader.ended


def test_a_stream_while_redis_is_down_reads_the_database(user, settings):
    conversion = _pending(user)
    _progress(conversion, 40)
    settings.TAGGER_EVENTS_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    reader = Reader(f"/api/v1/tasks/{conversion.task_id}/events", _auth(user)).read(
        2, after={1: lambda: _succeed(conversion)}, timeout=20
    )
    assert [d["state"] for d in reader.data] == ["PROGRESS", "SUCCESS"]


def _redis_clients(client) -> int:
    return sum(1 for c in client.client_list() if c["name"] == events.READER_NAME)


def test_a_disconnected_client_releases_its_redis_connection(user):
    conversion = _pending(user)
    client = events.redis_client()
    before = _redis_clients(client)
    headers = _auth(user)

    async def open_then_leave():
        response = await AsyncClient().get(
            f"/api/v1/tasks/{conversion.task_id}/events", headers=headers
        )
        content = aiter(response.streaming_content)
        while b"event: conversion" not in await anext(content):
            pass
        during = await sync_to_async(_redis_clients)(client)
        await content.aclose()  # what Django does when the client goes
        return during

    during = async_to_sync(open_then_leave)()
    assert during == before + 1
    # Redis drops a closed connection from its list a moment later.
    deadline = time.monotonic() + 5
    while _redis_clients(client) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _redis_clients(client) == before


# Access ---------------------------------------------------------------------------------------


def test_streams_need_credentials_and_hide_other_users_tasks(user, other_user):
    conversion = _pending(user)
    path = f"/api/v1/tasks/{conversion.task_id}/events"
    accept = {"Accept": "text/event-stream"}
    anonymous = Reader(path, accept).read(1).response
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    theirs = Reader(path, {**accept, **_auth(other_user)}).read(1).response
    assert theirs.status_code == 404 and theirs.json()["code"] == "not_found"
    assert Reader("/api/v1/events", accept).read(1).response.status_code == 401


def test_an_event_link_opens_the_users_streams_only(user, other_user, api):
    conversion = _pending(user)
    made = api.post("/api/v1/events/link", {"expires_in": 60}, format="json")
    assert made.status_code == 201, made.content
    url = made.json()["url"]
    assert url.startswith("http://testserver/api/v1/events?token=")
    token = url.split("token=", 1)[1]
    assert Reader(f"/api/v1/events?token={token}").read(1).data[0]["task_id"] == str(
        conversion.task_id
    )
    task_path = f"/api/v1/tasks/{conversion.task_id}/events?token={token}"
    assert Reader(task_path).read(1).response.status_code == 200
    # Not another user's task, not a download, and not altered.
    theirs = _pending(other_user, "theirs.tif")
    assert (
        Reader(f"/api/v1/tasks/{theirs.task_id}/events?token={token}").read(1).response.status_code
        == 404
    )
    download = api.get(f"/api/v1/tree-items/{conversion.item_id}/download?token={token}")
    assert download.status_code == 403 and download.json()["code"] == "link_invalid"
    altered = Reader(f"/api/v1/events?token={token[:-2]}xx").read(1).response
    assert altered.status_code == 403 and altered.json()["code"] == "link_invalid"
    expired = links.user_grant_token(
        user_id=user.pk, scope=links.Scope.EVENTS, expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = Reader(f"/api/v1/events?token={expired}").read(1).response
    assert response.status_code == 403 and response.json()["code"] == "link_expired"


def test_an_item_link_does_not_open_a_stream(user, api):
    item = item_create(owner=user, name="a.tif", file=ContentFile(b"abc", name="a.tif"))
    link = api.post(f"/api/v1/tree-items/{item.pk}/download-link", {}, format="json").json()
    token = link["url"].split("token=", 1)[1]
    response = Reader(f"/api/v1/events?token={token}").read(1).response
    assert response.status_code == 403 and response.json()["code"] == "link_invalid"


def test_under_wsgi_the_streams_answer_501(user, api):
    conversion = _pending(user)
    for path in ("/api/v1/events", f"/api/v1/tasks/{conversion.task_id}/events"):
        response = api.get(path, HTTP_ACCEPT="text/event-stream")
        assert response.status_code == 501, path
        assert response.json()["code"] == "streams_need_asgi"


def test_publishing_survives_redis_being_down(user, settings, caplog):
    settings.TAGGER_EVENTS_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    conversion = _pending(user)  # the publish fails, and publishing pauses
    _progress(conversion, 40)
    assert Conversion.objects.get(pk=conversion.task_id).progress == 40
    assert "Could not publish a conversion event" in caplog.text
    with pytest.raises(redis.RedisError):
        events.redis_client().ping()


def test_streams_and_their_links_answer_cors_for_configured_origins(user, api, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://maps.example.org"]
    conversion = _pending(user)
    for path in (
        "/api/v1/events",
        "/api/v1/events/link",
        f"/api/v1/tasks/{conversion.task_id}/events",
    ):
        preflight = api.options(
            path,
            HTTP_ORIGIN="https://maps.example.org",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="last-event-id",
        )
        assert preflight["Access-Control-Allow-Origin"] == "https://maps.example.org", path
    other = api.options(
        "/api/v1/tree-items",
        HTTP_ORIGIN="https://maps.example.org",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )
    assert "Access-Control-Allow-Origin" not in other
