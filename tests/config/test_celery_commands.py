"""The `celery` commands operators use beside the worker: they load Django first."""

import json
import os
import subprocess
import sys
import uuid

from django_celery_results.models import TaskResult

from tests.fixtures import REPO, _database_url


def _celery(*args) -> subprocess.CompletedProcess:
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config.celery_app", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
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
