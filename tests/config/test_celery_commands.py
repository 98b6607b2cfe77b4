"""The `celery` commands operators use beside the worker: they load Django first."""

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
from django.core.files.base import ContentFile
from django.db import transaction
from django_celery_results.models import TaskResult

from geoconvert.models import Conversion
from geoconvert.services.transitions import TASK_NAME, conversion_create
from tagger.services import item_create
from tests import rasters
from tests.fixtures import REPO, WorkerProcess, _database_url
from tests.geoconvert.reliability.conftest import FAST_WORKER_ENV
from tests.geoconvert.reliability.helpers import wait_until


def _celery_env() -> dict:
    from django.conf import settings

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }


def _celery(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config.celery_app", *args],
        cwd=REPO, env=_celery_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_celery_result_prints_a_tasks_result_and_traceback(transactional_db):
    done, failed = str(uuid.uuid4()), str(uuid.uuid4())
    TaskResult.objects.create(
        task_id=done, status="SUCCESS", result=json.dumps({"crs": "EPSG:32633"}),
        content_type="application/json", content_encoding="utf-8",
    )  # fmt: skip
    TaskResult.objects.create(
        task_id=failed, status="FAILURE", traceback="Traceback: the file is empty",
        result=json.dumps({"exc_type": "RuntimeError", "exc_message": ["empty"]}),
        content_type="application/json", content_encoding="utf-8",
    )  # fmt: skip

    shown = _celery("result", done)
    assert shown.returncode == 0, shown.stderr
    assert "EPSG:32633" in shown.stdout
    assert "AppRegistryNotReady" not in shown.stderr

    traceback = _celery("result", "--traceback", failed)
    assert traceback.returncode == 0, traceback.stderr
    assert "the file is empty" in traceback.stdout


# The commands of the README's troubleshooting, against a real worker. ----------------------


@pytest.fixture
def private_worker(transactional_db, tmp_path):
    """A worker of its own on a queue of its own (so no other worker takes its tasks), one
    process that reserves up to four tasks, and conversions slowed to seconds: while one
    runs, the next ones wait reserved."""
    queue = f"commands-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(
        tmp_path / "worker.log",
        concurrency=1,
        extra_env={**FAST_WORKER_ENV, "CELERY_WORKER_PREFETCH_MULTIPLIER": "4"},
    )
    worker.args += ["-Q", queue]
    worker.start()
    yield worker, queue
    worker.stop()
    Conversion.objects.filter(state__in=Conversion.ACTIVE_STATES).update(
        state=Conversion.State.CANCELLED
    )


def _queued_conversion(user, src, queue: str) -> str:
    """A conversion of `src`, sent to `queue` (the services would send it to geo_processing)."""
    from config.celery_app import app

    item = item_create(owner=user, name=src.name, file=ContentFile(src.read_bytes()))
    with transaction.atomic():
        conversion = conversion_create(item=item, owner_id=user.pk, params={})
    task_id = str(conversion.task_id)
    app.send_task(TASK_NAME, args=[task_id], task_id=task_id, queue=queue)
    return task_id


def _json_reply(result: subprocess.CompletedProcess, node: str):
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)[node]


def test_status_inspect_events_and_result_against_a_running_worker(private_worker, user, tmp_path):
    worker, queue = private_worker
    node = worker.node_name
    src = rasters.large_noise_tiff(tmp_path / "large.tif", size=5000)
    dump = tmp_path / "events.txt"
    with open(dump, "wb") as out:
        events = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config.celery_app", "events", "--dump"],
            cwd=REPO, env=_celery_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: "Connected to" in dump.read_text(), "celery events to listen")
        tasks = [_queued_conversion(user, src, queue) for _ in range(4)]
        first = tasks[0]
        wait_until(lambda: Conversion.objects.filter(pk=first, state="PROGRESS").exists(), "a run")

        # One runs (the worker has one process), the ones not yet run wait reserved.
        active = _json_reply(_celery("inspect", "active", "-d", node, "--json", "-t", "5"), node)
        (running,) = [task["id"] for task in active]
        assert running in tasks and active[0]["name"] == TASK_NAME
        reserved = _celery("inspect", "reserved", "-d", node, "--json", "-t", "5")
        waiting = {task["id"] for task in _json_reply(reserved, node)}
        # (Not checked against the database: by the time the command has exited, the worker
        # may have started the next of them; CI on SQLite saw that once.)
        assert waiting and waiting <= set(tasks) - {running}

        stats = _json_reply(_celery("inspect", "stats", "-d", node, "--json", "-t", "5"), node)
        assert stats["pool"]["max-concurrency"] == 1
        assert stats["prefetch_count"] == 4

        status = _celery("status", "--timeout", "5")
        assert status.returncode == 0, status.stderr
        assert f"{node}: OK" in status.stdout

        wait_until(
            lambda: Conversion.objects.filter(pk=first, state="SUCCESS").exists(),
            "the first conversion to succeed",
        )
        result = _celery("result", first)
        assert result.returncode == 0, result.stderr
        assert "size_bytes" in result.stdout
    finally:
        os.killpg(events.pid, signal.SIGTERM)
        events.wait(timeout=30)
    # `celery events --dump` printed the tasks live: received, started, succeeded.
    dumped = dump.read_text()
    for event in ("task received", "task started", "task succeeded"):
        assert f"] {event}: {TASK_NAME}({first})" in dumped, (event, dumped[-3000:])


def test_purge_empties_a_queue(db, user, tmp_path, redis_client):
    queue = f"purged-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
    for _ in range(2):
        _queued_conversion(user, src, queue)
    assert redis_client.llen(queue) == 2

    purged = _celery("purge", "-Q", queue, "-f")

    assert purged.returncode == 0, purged.stderr
    assert "Purged 2 messages" in purged.stdout
    assert redis_client.llen(queue) == 0
