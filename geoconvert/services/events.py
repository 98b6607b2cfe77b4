"""Conversion events: every change of a conversion's state, stage or progress is appended to
its owner's Redis stream, and the event-stream routes (geoconvert/api/events.py) read it.

- One stream per user, `tagger:events:<user id>`, trimmed to about STREAM_MAXLEN entries and
  expiring STREAM_TTL_SECONDS after its last entry. An entry's id is the SSE event id: a client
  that reconnects with `Last-Event-ID` reads on from there, so nothing is lost or repeated.
- The database is the truth and the stream only a fast path: a publish happens after the
  change is committed, a failed publish (Redis down) is logged and skipped, and readers
  compare with the database now and then (geoconvert/api/events.py), so a lost entry delays
  an event, never loses a final state.
- Publishing never holds a conversion up: short socket timeouts, and after a failure no
  publish is tried for PAUSE_SECONDS.
"""

import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from geoconvert.models import Conversion

logger = logging.getLogger(__name__)

STREAM_MAXLEN = 10_000
STREAM_TTL_SECONDS = 7 * 24 * 3600
PAUSE_SECONDS = 5.0
SOCKET_TIMEOUT = 1.0
# The fields of a conversion an event carries (what GET /tasks/{id}/status is made from).
FIELDS = (
    "task_id",
    "item_id",
    "state",
    "stage",
    "progress",
    "result",
    "error",
    "eta_at",
)


# What CLIENT LIST calls a stream's connection: one per open event stream.
READER_NAME = "tagger-event-stream"


def stream_key(owner_id) -> str:
    return f"tagger:events:{owner_id}"


# Connecting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """Where the event streams live, from a kombu-style URL (as REDIS_URL is written)."""

    kind: str  # "url", "unix" or "sentinel"
    url: str = ""
    path: str = ""
    db: int = 0
    password: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()


def _target(url: str) -> _Target:
    if url.startswith("redis+socket://"):
        parts = urlsplit(url)
        query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
        return _Target("unix", path=unquote(parts.path), db=int(query.get("virtual_host", 0)))
    if url.startswith("sentinel://"):
        sentinels, db, password = [], 0, None
        for part in url.split(";"):
            parts = urlsplit(part)
            sentinels.append((parts.hostname or "127.0.0.1", parts.port or 26379))
            db = int(parts.path.strip("/") or db)
            password = parts.password or password
        return _Target("sentinel", db=db, password=password, sentinels=tuple(sentinels))
    return _Target("url", url=url)


def _options() -> dict:
    return {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}


def redis_client(url: str | None = None) -> redis.Redis:
    """A client for publishing (short timeouts), to the event streams' Redis or to `url`
    (as kombu spells it: the broker's, for monitoring)."""
    target = _target(url or settings.TAGGER_EVENTS_REDIS_URL)
    if target.kind == "unix":
        return redis.Redis(unix_socket_path=target.path, db=target.db, **_options())
    if target.kind == "sentinel":
        sentinel = redis.sentinel.Sentinel(list(target.sentinels), **_options())
        return sentinel.master_for(
            settings.REDIS_SENTINEL_MASTER, db=target.db, password=target.password, **_options()
        )
    return redis.Redis.from_url(target.url, **_options())


def async_redis_client() -> redis.asyncio.Redis:
    """A client of the calling event loop for one reader; blocking reads set their own
    timeout (the heartbeat), so only connecting is bounded here."""
    target = _target(settings.TAGGER_EVENTS_REDIS_URL)
    options = {
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "socket_timeout": None,
        "client_name": READER_NAME,
    }
    if target.kind == "unix":
        return redis.asyncio.Redis(unix_socket_path=target.path, db=target.db, **options)
    if target.kind == "sentinel":
        sentinel = redis.asyncio.sentinel.Sentinel(list(target.sentinels), **_options())
        return sentinel.master_for(
            settings.REDIS_SENTINEL_MASTER, db=target.db, password=target.password, **options
        )
    return redis.asyncio.Redis.from_url(target.url, **options)


# Publishing --------------------------------------------------------------------------------


class _Publisher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._url: str | None = None
        self._paused_until = 0.0

    def client(self) -> redis.Redis:
        with self._lock:
            if self._client is None or self._url != settings.TAGGER_EVENTS_REDIS_URL:
                self._url = settings.TAGGER_EVENTS_REDIS_URL
                self._client = redis_client()
            return self._client

    def publish(self, owner_id, data: dict) -> str | None:
        entries = self.publish_many([(owner_id, data)])
        return entries[0] if entries else None

    def publish_many(self, events: list[tuple]) -> list[str] | None:
        """Append (owner id, data) events in one round trip; their entry ids, or None."""
        if time.monotonic() < self._paused_until or not events:
            return None
        try:
            # One round trip: the entries, and each stream's expiry pushed back.
            pipe = self.client().pipeline(transaction=False)
            for owner_id, data in events:
                pipe.xadd(
                    stream_key(owner_id),
                    {"data": json.dumps(data, cls=DjangoJSONEncoder)},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
            for owner_id in {owner_id for owner_id, _ in events}:
                pipe.expire(stream_key(owner_id), STREAM_TTL_SECONDS)
            replies = pipe.execute()
        except redis.RedisError as exc:
            self._paused_until = time.monotonic() + PAUSE_SECONDS
            logger.warning(
                "Could not publish a conversion event (readers catch up from the database; "
                "no publish for %.0f s): %s",
                PAUSE_SECONDS,
                exc,
            )
            return None
        self._paused_until = 0.0
        return [_text(entry) for entry in replies[: len(events)]]


_publisher = _Publisher()


def conversion_event_publish(task_id) -> None:
    """Once the caller's transaction commits (at once outside one), append the conversion's
    current state to its owner's stream."""
    transaction.on_commit(lambda: _publish_now(task_id), robust=True)


def conversion_events_publish(task_ids: list) -> None:
    """conversion_event_publish for many conversions (a batch's members), in pipelined
    round trips of PUBLISH_CHUNK."""
    if task_ids:
        transaction.on_commit(lambda: _publish_many_now(list(task_ids)), robust=True)


PUBLISH_CHUNK = 500


def _publish_many_now(task_ids: list) -> None:
    for start in range(0, len(task_ids), PUBLISH_CHUNK):
        rows = Conversion.objects.filter(pk__in=task_ids[start : start + PUBLISH_CHUNK]).values(
            *FIELDS, "owner_id"
        )
        events = [(row.pop("owner_id"), row) for row in rows]
        if _publisher.publish_many(events) is None and events:
            return  # Redis is down: readers catch up from the database


def _publish_now(task_id) -> None:
    row = Conversion.objects.filter(pk=task_id).values(*FIELDS, "owner_id").first()
    if row is not None:  # deleted with its item meanwhile
        owner_id = row.pop("owner_id")
        _publisher.publish(owner_id, row)


# Reading -----------------------------------------------------------------------------------

RESUME_SCAN = 1000  # entries looked back through for what a resuming client last saw


def events_seen(*, owner_id, up_to: str) -> dict[str, dict] | None:
    """For a client resuming after entry `up_to`: the fields of the last entry of each task
    it saw (within RESUME_SCAN entries back). None when it cannot resume: the stream no
    longer holds everything after `up_to` (expired or trimmed), or Redis does not answer."""
    key = stream_key(owner_id)
    try:
        client = _publisher.client()
        oldest = client.xrange(key, count=1)
        if not oldest or _entry_key(_text(oldest[0][0])) > _entry_key(up_to):
            return None
        return _latest_by_task(client.xrevrange(key, max=up_to, min="-", count=RESUME_SCAN))
    except redis.RedisError as exc:
        logger.warning("Cannot resume an event stream: %s", exc)
        return None


def _latest_by_task(entries) -> dict[str, dict]:
    """The fields of the newest entry of each task among `entries` (newest first)."""
    latest: dict[str, dict] = {}
    for _, fields in entries:
        data = json.loads(fields[b"data"])
        latest.setdefault(str(data["task_id"]), data)
    return latest


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def entry_id_valid(value: str) -> bool:
    """A stream entry id as Redis writes them: `<ms>-<seq>`."""
    ms, _, seq = value.partition("-")
    return ms.isdigit() and seq.isdigit() and len(value) <= 41


async def events_read(
    client: redis.asyncio.Redis, owner_id, after: str, *, block_ms: int
) -> AsyncIterator[tuple[str, dict]]:
    """The (entry id, conversion fields) appended to the owner's stream after `after`,
    waiting up to `block_ms` for the first; nothing when none came."""
    answer = await client.xread({stream_key(owner_id): after}, block=block_ms, count=500)
    for _, entries in answer or ():
        for entry_id, fields in entries:
            yield _text(entry_id), json.loads(fields[b"data"])


async def events_last_id(client: redis.asyncio.Redis, owner_id) -> str:
    """The id of the owner's newest entry, "0-0" for none."""
    newest, _ = await events_latest(client, owner_id, count=1)
    return newest


async def events_latest(
    client: redis.asyncio.Redis, owner_id, *, count: int = RESUME_SCAN
) -> tuple[str, dict[str, dict]]:
    """The id of the owner's newest entry ("0-0" for none) and, as of that entry, the fields
    of each task's newest entry within the last `count`: one read, so a stream that starts
    from these states and reads on after that id sees every later change, in order."""
    entries = await client.xrevrange(stream_key(owner_id), count=count)
    return (_text(entries[0][0]) if entries else "0-0"), _latest_by_task(entries)
