"""Fault tests run against their own Redis and their own workers, which they kill.

Each test gets a private, persistent redis-server (so it can be stopped and restarted without
touching the session's broker) and starts its workers with fast heartbeats, so a dead run is
noticed in about a second and a test takes seconds, not minutes.

RELIABILITY_REPEAT=N runs each fault test N times (scripts/reliability-report tallies them).
"""

import os
from contextlib import contextmanager

import pytest

from config.celery_app import app
from tests.conftest import EmbeddedRedis
from tests.fixtures import WorkerProcess

REPEAT = int(os.environ.get("RELIABILITY_REPEAT", "1"))

FAST_WORKER_ENV = {
    "GEOCONVERT_HEARTBEAT_SECONDS": "0.25",
    "GEOCONVERT_HEARTBEAT_STALE_SECONDS": "1.5",
    # One GDAL thread and DEFLATE's slowest level: the noise rasters then take seconds to
    # write (5000 px: ~4 s, against ~1.7 s at the default level 1), so a test has time to
    # crash something mid-write, and two workers sharing the machine's cores stay predictable.
    "GEOCONVERT_NUM_THREADS": "1",
    "GEOCONVERT_LEVEL": "9",
}


def repeat(test):
    """Run `test` RELIABILITY_REPEAT times (default once)."""
    return pytest.mark.parametrize("run", range(REPEAT), ids=lambda n: f"run{n}")(test)


def _drop_broker_pools(close: bool) -> None:
    """Forget the app's connection and producer pools so the next use builds them for the
    current broker_url. kombu keeps pools in a global registry keyed by URL and hands the
    same one back later, so only the private broker's pools (never reused) are closed."""
    if close:
        for pool in (app._pool, app.amqp._producer_pool):
            if pool is not None:
                pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def broker(url: str):
    """Point this process's Celery app (the API's publisher, control commands) at `url`."""
    previous = app.conf.broker_url
    _drop_broker_pools(close=False)
    app.conf.broker_url = url
    try:
        yield
    finally:
        _drop_broker_pools(close=True)
        app.conf.broker_url = previous


@pytest.fixture
def private_redis():
    server = EmbeddedRedis(persistent=True)
    with broker(server.start()):
        yield server
    server.stop()


@pytest.fixture
def start_worker(private_redis, transactional_db, tmp_path):
    """Start a real worker on the private Redis: start_worker(concurrency=1, **env)."""
    started: list[WorkerProcess] = []

    def start(concurrency: int = 1, **env) -> WorkerProcess:
        worker = WorkerProcess(
            tmp_path / f"worker-{len(started)}.log",
            extra_env={**FAST_WORKER_ENV, **env},
            concurrency=concurrency,
            broker_url=private_redis.url,
        )
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.kill()
        worker.stop()
        # Shown by pytest when the test failed.
        print(f"--- {worker.log_path.name} ---\n{worker.log_tail(80)}")


@pytest.fixture(autouse=True)
def record_outcome(transactional_db, record_property):
    """Each conversion's end state, attempts and message, in the JUnit report that
    scripts/reliability-report tallies into docs/reliability.md."""
    yield
    from geoconvert.models import Conversion

    for conversion in Conversion.objects.order_by("created_at"):
        outcome = f"{conversion.state} after {conversion.attempts} attempt(s)"
        record_property(
            "conversion", f"{outcome}: {conversion.error}" if conversion.error else outcome
        )
