"""Which Celery workers are up, without asking them: each worker writes its name and the
time into a sorted set in the broker's Redis every PRESENCE_SECONDS, and `/metrics` counts
the names written within PRESENCE_STALE_SECONDS. (A `celery inspect ping` waits its whole
timeout for replies: too slow for a scrape.)

Started in each worker's main process by the `worker_ready` signal (config/celery_app.py),
removed at `worker_shutdown`; a worker killed outright drops out after the stale period.
"""

import functools
import logging
import threading
import time

import redis
from celery import current_app
from django.conf import settings

from geoconvert.services.events import redis_client

logger = logging.getLogger(__name__)

PRESENCE_KEY = "tagger:workers"
PRESENCE_SECONDS = 10.0
PRESENCE_STALE_SECONDS = 3 * PRESENCE_SECONDS
# Names not seen for this long are removed from the set.
FORGET_SECONDS = 24 * 3600


def broker_redis() -> redis.Redis:
    """A redis-py client of the broker's Redis, kept for the process (short timeouts). Not
    kombu's pooled connections: their channels may hold a blocking read of their own."""
    return _client_for(settings.CELERY_BROKER_URL)


@functools.cache
def _client_for(url: str) -> redis.Redis:
    return redis_client(url)


def worker_presence_record(nodename: str) -> None:
    now = time.time()
    pipe = broker_redis().pipeline()
    pipe.zadd(PRESENCE_KEY, {nodename: now})
    pipe.zremrangebyscore(PRESENCE_KEY, "-inf", now - FORGET_SECONDS)
    pipe.execute()


def worker_presence_remove(nodename: str) -> None:
    broker_redis().zrem(PRESENCE_KEY, nodename)


def workers_online() -> int | None:
    """Workers that reported within PRESENCE_STALE_SECONDS; None when Redis does not answer."""
    try:
        since = time.time() - PRESENCE_STALE_SECONDS
        return int(broker_redis().zcount(PRESENCE_KEY, since, "+inf"))
    except (redis.RedisError, OSError) as exc:
        logger.warning("Workers online unavailable: %s", exc)
        return None


class PresenceThread(threading.Thread):
    """Records a worker's presence until stopped; a Redis that does not answer is skipped
    (the worker itself waits for its broker to come back)."""

    def __init__(self, nodename: str, interval: float = PRESENCE_SECONDS) -> None:
        super().__init__(name="tagger-worker-presence", daemon=True)
        self.nodename = nodename
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                worker_presence_record(self.nodename)
            except (redis.RedisError, OSError) as exc:
                logger.debug("Worker presence not recorded: %s", exc)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        try:
            worker_presence_remove(self.nodename)
        except (redis.RedisError, OSError):
            pass


_presence: PresenceThread | None = None


def presence_start(sender=None, **kwargs) -> None:
    """`worker_ready` receiver: `sender` is the worker's consumer."""
    global _presence
    nodename = getattr(sender, "hostname", None) or current_app.conf.get("worker_name") or ""
    if _presence is None and nodename:
        _presence = PresenceThread(nodename)
        _presence.start()


def presence_stop(**kwargs) -> None:
    """`worker_shutdown` receiver."""
    global _presence
    if _presence is not None:
        _presence.stop()
        _presence = None
