"""Counts that stay exact across processes: requests spread over four gunicorn workers, and
conversions run by two worker processes, are each counted once by any scrape."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from tests import rasters
from tests.conftest import free_port
from tests.fixtures import REPO, _database_url
from tests.geoconvert.api.helpers import convert, upload, wait_for_task
from tests.monitoring.helpers import samples, value

REQUESTS = 60


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    """The image's web command: gunicorn, uvicorn workers, config/gunicorn.py; 4 workers."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "DJANGO_ALLOWED_HOSTS": "*",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.asgi:application",
         "--config", "config/gunicorn.py", "--worker-class", "uvicorn_worker.UvicornWorker",
         "--workers", "4", "--bind", f"127.0.0.1:{port}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/metrics", timeout=5).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((tmp_path / "gunicorn.log").read_text()) from None
            time.sleep(0.2)
    yield url, tmp_path / "metrics"
    proc.terminate()
    proc.wait(30)
    log.close()


def _status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code


def _scrape(url: str) -> dict:
    return samples(urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode())


def test_requests_over_four_gunicorn_workers_are_counted_exactly(gunicorn):
    url, metrics_dir = gunicorn
    labels = {"route": "api:tree-item-list", "method": "GET", "status": "401"}
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(_status, [f"{url}/api/v1/tree-items/"] * REQUESTS))
    assert statuses == [401] * REQUESTS
    # Several processes answered (one file of counts each), and every scrape, whichever
    # worker answers it, adds them all up.
    assert len(list(metrics_dir.glob("counter_*.db"))) > 1
    for _ in range(4):
        assert value(_scrape(url), "tagger_http_requests_total", **labels) == REQUESTS
        assert value(_scrape(url), "tagger_http_request_duration_seconds_count",
                     route="api:tree-item-list", method="GET") == REQUESTS  # fmt: skip


def test_conversions_over_two_worker_processes_are_counted_exactly(live_worker, api, tmp_path):
    from django.test import Client

    assert live_worker.concurrency == 2
    tasks = []
    for n in range(4):
        item = upload(api, rasters.rgb_byte_tiff(tmp_path / f"rgb-{n}.tif"))
        response = convert(api, item["id"])
        assert response.status_code == 202, response.content
        tasks.append(response.json()["task_id"])
    for task_id in tasks:
        body, _ = wait_for_task(api, task_id)
        assert body["state"] == "SUCCESS", body

    m = samples(Client().get("/metrics").content.decode())
    assert value(m, "tagger_conversions_total", state="SUCCESS") == 4
    assert value(m, "tagger_conversion_duration_seconds_count", outcome="SUCCESS") == 4
    assert value(m, "tagger_conversion_queue_wait_seconds_count") == 4
    for stage in ("starting", "loading", "analyzing", "creating", "updating"):
        assert value(m, "tagger_conversion_stage_seconds_count", stage=stage) == 4, stage
    assert value(m, "tagger_conversion_input_bytes_count") == 4
    assert value(m, "tagger_conversions_in_progress") == 0
    # The live worker keeps its presence while it runs.
    assert value(m, "tagger_workers_online") >= 1
