"""Server-Sent Events of conversions: `GET /api/v1/events` (every conversion of the caller's)
and `GET /api/v1/tasks/{id}/events` (one, which ends with the task).

Each event is `event: conversion`, an `id:` (the entry of the owner's Redis stream, see
geoconvert.services.events) and `data:` with GET /tasks/{id}/status's JSON plus `item_id`.

- On connect the current state comes first (of the task, or of each unfinished conversion),
  as the stream's newest entries give it, with the newest id: what follows is what changed
  after, so progress never goes back. The database fills in what the stream does not hold.
- `Last-Event-ID` (sent by EventSource when it reconnects) reads on after that entry instead:
  nothing lost, nothing repeated. When the stream no longer holds it (expired, trimmed), the
  current state comes first again. A one-task stream whose client saw its final event
  answers 204, which tells EventSource to stop reconnecting.
- A comment line every TAGGER_EVENTS_HEARTBEAT_SECONDS keeps proxies from closing the
  connection; at each, the database is compared with what was sent, and a change whose
  publish was lost (Redis down at the time) is sent then.
- The stream is an async iterator, served by the ASGI server (config/asgi.py) without a
  thread per connection; when the client goes, Django cancels it and its Redis connection
  is closed. Under WSGI the routes answer 501 rather than hold a worker for hours.
"""

import asyncio
import json
import logging
from collections import OrderedDict

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from redis.exceptions import RedisError
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from geoconvert import selectors
from geoconvert.api.serializers import EventLinkInput, EventLinkOutput, TaskStatusOutput
from geoconvert.models import Conversion
from geoconvert.services import events
from tagger import links
from tagger.api.auth import USER_LINK_AUTHENTICATION
from tagger.api.schema import ErrorOutput
from tagger.errors import ApplicationError

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
FINISHED = {str(state) for state in Conversion.FINISHED_STATES}
RETRY_MS = 2000  # how soon EventSource reconnects after a dropped connection


class NotImplementedHere(ApplicationError):
    status_code = 501
    default_code = "streams_need_asgi"


class _AnyAccept(BaseContentNegotiation):
    """Errors on these routes are JSON whatever the Accept header says (EventSource asks for
    text/event-stream only); the stream itself is not rendered by DRF."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


EVENTS_SCHEMA = {
    "parameters": [
        OpenApiParameter("token", description="A token from POST /api/v1/events/link."),
        OpenApiParameter(
            "Last-Event-ID",
            location=OpenApiParameter.HEADER,
            description="Resume after this event (EventSource sends it when it reconnects).",
        ),
    ],
    "responses": {
        (200, EVENT_STREAM): OpenApiResponse(
            OpenApiTypes.STR,
            description="`event: conversion`, `id:`, `data:` (the task status JSON plus "
            "item_id); a comment line as heartbeat.",
        ),
        204: OpenApiResponse(
            description="A task stream resumed after its final event: nothing more will come."
        ),
        403: OpenApiResponse(ErrorOutput, description="A link token altered or expired."),
        501: OpenApiResponse(ErrorOutput, description="Served under WSGI: streams need ASGI."),
    },
}


class _EventStreamView(APIView):
    authentication_classes = USER_LINK_AUTHENTICATION
    content_negotiation_class = _AnyAccept

    def stream(self, request, *, task_id=None):
        if not isinstance(request._request, ASGIRequest):
            raise NotImplementedHere(
                "Event streams are served by the ASGI server (config.asgi:application, as "
                "`make run` and the production image run it), not under WSGI."
            )
        last_event_id = request.headers.get("Last-Event-ID", "").strip()
        seen = None
        if events.entry_id_valid(last_event_id):
            seen = events.events_seen(owner_id=request.user.pk, up_to=last_event_id)
        if seen is None:
            last_event_id = None  # nothing to resume from: the current state comes first
        else:
            seen = {task: _status(fields) for task, fields in seen.items()}
            if task_id and seen.get(task_id, {}).get("state") in FINISHED:
                return HttpResponse(status=204)  # it saw the end: EventSource stops here
        body = EventStream(
            owner_id=request.user.pk, task_id=task_id, resume_after=last_event_id, seen=seen
        )
        _release_database()  # the stream may last hours; it reconnects when it needs to
        return StreamingHttpResponse(
            body,
            content_type=EVENT_STREAM,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


class EventsView(_EventStreamView):
    @extend_schema(**EVENTS_SCHEMA, operation_id="events_stream")
    def get(self, request):
        """Every conversion of yours as it changes: the current state of each unfinished one
        first, then each change (new conversions included)."""
        return self.stream(request)


class TaskEventsView(_EventStreamView):
    @extend_schema(**EVENTS_SCHEMA, operation_id="tasks_events_stream")
    def get(self, request, pk):
        """One task as it changes: its current state first; the stream ends after its final
        state (and answers 204 to a reconnect after it)."""
        conversion = selectors.conversion_get(user=request.user, task_id=pk)
        return self.stream(request, task_id=str(conversion.task_id))


class EventLinkView(APIView):
    @extend_schema(request=EventLinkInput, responses={201: EventLinkOutput})
    def post(self, request):
        """A URL of your event stream that works without credentials (for EventSource,
        which cannot send headers) until it expires."""
        data = EventLinkInput(data=request.data)
        data.is_valid(raise_exception=True)
        expires_at = links.grant_expiry(data.validated_data["expires_in"])
        token = links.user_grant_token(
            user_id=request.user.pk, scope=links.Scope.EVENTS, expires_at=expires_at
        )
        url = request.build_absolute_uri(reverse("api:events"))
        output = EventLinkOutput({"url": f"{url}?token={token}", "expires_at": expires_at})
        return Response(output.data, status=status.HTTP_201_CREATED)


# The stream ----------------------------------------------------------------------------------


class EventStream:
    """The body of one event-stream response (an async iterator of bytes). `resume_after`:
    the entry to read on after, with `seen` what the client saw of each task by then; None:
    the current state first."""

    def __init__(self, *, owner_id, task_id, resume_after: str | None, seen: dict | None):
        self.owner_id = owner_id
        self.task_id = task_id
        self.resume_after = resume_after
        self.sent: dict[str, dict] = dict(seen or {})  # task id -> the data last sent for it
        # The entry read on after; None until Redis has answered.
        self.cursor: str | None = resume_after
        self.heartbeat = settings.TAGGER_EVENTS_HEARTBEAT_SECONDS

    def __aiter__(self):
        return self._events()

    async def _events(self):
        client = events.async_redis_client()
        try:
            async for chunk in self._stream(client):
                yield chunk
        finally:
            # Also when the client went away: Django cancels the iterator at its await.
            await asyncio.shield(client.aclose())

    async def _stream(self, client):
        yield f"retry: {RETRY_MS}\n\n".encode()
        if self.resume_after is None:
            for data in await self._current_states(client):
                yield self._event(data)
        while not self._ended():
            got_any = False
            try:
                if self.cursor is None:  # Redis was down at the start: read on from now
                    self.cursor = await events.events_last_id(client, self.owner_id)
                async for entry_id, fields in events.events_read(
                    client, self.owner_id, self.cursor, block_ms=int(self.heartbeat * 1000)
                ):
                    got_any = True
                    self.cursor = entry_id
                    if self.task_id and str(fields["task_id"]) != self.task_id:
                        continue
                    data, text = _rendered(self.owner_id, entry_id, fields)
                    if self.sent.get(data["task_id"]) != data:
                        yield self._event(data, text)
                    if self._ended():
                        return
            except RedisError as exc:
                # Redis is down: the database alone, at the heartbeat's pace, until it is back.
                logger.warning("Event stream reading from the database only: %s", exc)
                await asyncio.sleep(self.heartbeat)
            if not got_any:
                yield b": heartbeat\n\n"
                # What the database says that the stream did not (a publish lost to a Redis
                # outage, say).
                unfinished = [t for t, d in self.sent.items() if d["state"] not in FINISHED]
                for data in await _database_states(self.owner_id, self.task_id, unfinished):
                    if self.sent.get(data["task_id"]) != data:
                        yield self._event(data)

    async def _current_states(self, client) -> list[dict]:
        """What a new client is sent first, and the cursor to read on from.

        The state of a task is its newest stream entry as of the cursor, read in the same
        command: the entries after the cursor are what changed after it, so progress never
        goes back. The database gives the tasks to send, and the state of one the stream does
        not hold (or holds as finished when a retry has begun since)."""
        try:
            self.cursor, latest = await events.events_latest(client, self.owner_id)
        except RedisError as exc:
            logger.warning("Event stream starting from the database only: %s", exc)
            latest = {}
        states = []
        for data in await _database_states(self.owner_id, self.task_id, ()):
            fields = latest.get(data["task_id"])
            if fields is not None and not (
                fields["state"] in FINISHED and data["state"] not in FINISHED
            ):
                data = _status(fields)
            states.append(data)
        return states

    def _event(self, data: dict, text: str | None = None) -> bytes:
        self.sent[data["task_id"]] = data
        text = text or json.dumps(data)
        event_id = f"id: {self.cursor}\n" if self.cursor else ""
        return f"event: conversion\n{event_id}data: {text}\n\n".encode()

    def _ended(self) -> bool:
        data = self.sent.get(self.task_id) if self.task_id else None
        return data is not None and data["state"] in FINISHED


# Each entry's status and JSON, made once per process for all the streams that read it (a
# user's open tabs and clients): the streams run in one event loop, so no lock is needed.
_RENDERED: OrderedDict[tuple, tuple[dict, str]] = OrderedDict()
RENDERED_MAX = 4096


def _rendered(owner_id, entry_id: str, fields: dict) -> tuple[dict, str]:
    key = (owner_id, entry_id)  # entry ids are unique per user's stream only
    rendered = _RENDERED.get(key)
    if rendered is None:
        data = _status(fields)
        rendered = _RENDERED[key] = (data, json.dumps(data))
        if len(_RENDERED) > RENDERED_MAX:
            _RENDERED.popitem(last=False)
    return rendered


def _status(fields: dict) -> dict:
    """GET /tasks/{id}/status's JSON and item_id, from a conversion's published fields."""
    values = dict(fields)
    if isinstance(values.get("eta_at"), str):
        values["eta_at"] = parse_datetime(values["eta_at"])
    conversion = Conversion(**values)
    return {**TaskStatusOutput(conversion).data, "item_id": str(conversion.item_id)}


@sync_to_async
def _database_states(owner_id, task_id: str | None, tracked) -> list[dict]:
    """The status of the task, or of the owner's unfinished conversions and those in
    `tracked`; the connection is closed after."""
    try:
        rows = selectors.conversion_event_fields(
            owner_id=owner_id,
            task_ids=[task_id] if task_id else list(tracked),
            active=task_id is None,
            fields=events.FIELDS,
        )
        return [_status(row) for row in rows]
    finally:
        _release_database()


def _release_database() -> None:
    """Close this thread's database connections now rather than when the request ends: each
    open stream has a thread of its own (asgiref's per-request context), and a connection
    kept for every open stream would exhaust the database's."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
