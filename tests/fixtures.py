"""Fixtures shared by the Django tests: users, API clients, and a real Celery worker.

The worker is a separate `celery worker` process consuming the test broker and writing to
the test database, exactly as in production; tests that use it run with `transactional_db`
so the worker sees what they commit.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory

REPO = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db.get("USER") or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def _process_env(broker_url: str | None = None) -> dict:
    """The environment of a process a test starts (a worker, a web server): the test
    database, broker and media, with the test settings."""
    broker_url = broker_url or settings.CELERY_BROKER_URL
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": broker_url,
        "CELERY_BROKER_URL": broker_url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    # The browser tests set it in their own process (Playwright's sync API runs an event
    # loop there); a server keeps Django's async-safety checks.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


class CeleryProcess:
    """A `celery` command (worker, beat, flower) running against the test database and a
    broker, with its output in `log_path`."""

    def __init__(self, args: list[str], log_path: Path, *, broker_url=None, extra_env=None):
        self.args = args
        self.log_path = log_path
        self.broker_url = broker_url
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        env = {**_process_env(self.broker_url), **self.extra_env}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "config.celery_app", *self.args]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (a worker's pool children too): no shutdown code."""
        if self.alive:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()

    def stop(self, timeout: float = 30) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


class WorkerProcess(CeleryProcess):
    """A running `celery worker` and what a test needs to reason about it."""

    def __init__(
        self,
        log_path: Path,
        extra_env: dict | None = None,
        concurrency: int = 2,
        broker_url: str | None = None,
        gossip: bool = False,
    ):
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.concurrency = concurrency
        # Gossip and mingle (off by default: they slow every start) talk over Redis pub/sub,
        # as a worker started by `make run` or compose does.
        args = ["worker", "-c", str(concurrency), "-E", "--hostname", self.hostname]
        args += ["--loglevel", "INFO"]
        if not gossip:
            args += ["--without-gossip", "--without-mingle"]
        super().__init__(args, log_path, broker_url=broker_url, extra_env=extra_env)

    @property
    def node_name(self) -> str:
        import socket

        return self.hostname.replace("%h", socket.gethostname())

    def start(self, timeout: float = 60) -> "WorkerProcess":
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Celery worker exited early:\n{self.log_tail()}")
            if self.ping(timeout=0.5):
                return
        raise RuntimeError(f"Celery worker did not answer a ping:\n{self.log_tail()}")

    def ping(self, timeout: float = 2) -> bool:
        from config.celery_app import app

        # A fresh connection: a pooled one may predate a broker restart.
        with app.connection_for_write() as connection:
            return bool(
                app.control.ping(
                    destination=[self.node_name], timeout=timeout, connection=connection
                )
            )

    def busy(self, timeout: float = 2) -> bool:
        """Whether the worker holds a task: running, prefetched or waiting for its ETA. An
        unanswered inspection counts as busy; a broker that cannot be reached, as idle (there
        is nothing to wait for then)."""
        from kombu.exceptions import OperationalError

        from config.celery_app import app

        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1)
                inspect = app.control.inspect(
                    destination=[self.node_name], timeout=timeout, connection=connection
                )
                replies = [inspect.active(), inspect.reserved(), inspect.scheduled()]
        except (OperationalError, OSError):
            return False
        return any(reply is None or any(reply.values()) for reply in replies)

    def pool_pids(self) -> list[int]:
        """The pids of the prefork pool's children (the processes that run tasks)."""
        import psutil

        try:
            return [child.pid for child in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []


class AsgiServerProcess(CeleryProcess):
    """The API under uvicorn (config.asgi, as `make run` and the image serve it), on a free
    loopback port, against the test database and broker: what the event streams need (the
    live_server fixture is WSGI)."""

    def __init__(
        self,
        log_path: Path,
        *,
        extra_env: dict | None = None,
        app: str = "config.asgi:application",
    ):
        from tests.conftest import free_port

        self.port = free_port()
        # tests.asgi:application serves the static files too, for a browser (asgi_live_server).
        self.app = app
        super().__init__([], log_path, extra_env={"DJANGO_ALLOWED_HOSTS": "*", **(extra_env or {})})

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", self.app,
                "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "AsgiServerProcess":
        import socket

        self.spawn()
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if not self.alive or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not start:\n{self.log_tail()}") from None
                time.sleep(0.1)


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """One uvicorn for the session, heartbeats every second; tests using it need
    `transactional_db` so that it sees what they commit."""
    server = AsgiServerProcess(
        tmp_path_factory.mktemp("asgi") / "uvicorn.log",
        extra_env={"TAGGER_EVENTS_HEARTBEAT_SECONDS": "1"},
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """One real worker for the session, consuming both queues."""
    worker = WorkerProcess(tmp_path_factory.mktemp("celery") / "worker.log").start()
    yield worker
    worker.stop()


@pytest.fixture
def live_worker(celery_worker, transactional_db):
    """The session's worker, with the test's data committed where it can see it.

    At teardown, waits until no conversion is running and the worker holds no task (a
    conversion's description, a webhook delivery), so that the flush that ends the test
    cannot race, or deadlock with, a task of this one.
    """
    yield celery_worker
    from geoconvert.models import Conversion

    deadline = time.monotonic() + 60
    while Conversion.objects.filter(state__in=Conversion.ACTIVE_STATES).exists():
        if time.monotonic() > deadline:
            break
        Conversion.objects.filter(state=Conversion.State.PENDING).update(
            state=Conversion.State.CANCELLED, cancel_requested=True
        )
        Conversion.objects.filter(state=Conversion.State.PROGRESS).update(cancel_requested=True)
        time.sleep(0.2)
    while celery_worker.alive and celery_worker.busy() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(scope="session")
def asgi_live_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """Like `asgi_server`, for a browser: another uvicorn process, running tests/asgi.py,
    which serves the static files beside the application (the test settings have no
    WhiteNoise). `.url` is its base URL; tests using it need `transactional_db` (or
    `live_worker`) so that it sees what they commit."""
    server = AsgiServerProcess(
        tmp_path_factory.mktemp("asgi-static") / "uvicorn.log", app="tests.asgi:application"
    ).start()
    yield server
    server.stop()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


def _client_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    """An API client authenticated by token as `user`."""
    return _client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return _client_for(other_user)


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()
