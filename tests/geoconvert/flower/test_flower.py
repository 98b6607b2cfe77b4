"""Real Flower, against the real worker: a conversion shows up live in Flower's API with its
state, and Flower refuses requests without the basic-auth credentials."""

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from tests import rasters
from tests.conftest import free_port
from tests.fixtures import REPO, _database_url
from tests.geoconvert.api.helpers import convert, upload, wait_for_task

USER, PASSWORD = "ops", "flower-test-password"


def _get(url: str, auth: bool = True) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def flower(live_worker, tmp_path):
    """`celery flower` with basic auth on a free port; yields its base URL; always stopped."""
    port = free_port()
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config.celery_app", "flower",
         f"--port={port}", "--address=127.0.0.1", f"--basic-auth={USER}:{PASSWORD}"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
             "DATABASE_URL": _database_url(), "REDIS_URL": settings.CELERY_BROKER_URL},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{base}/healthcheck")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Flower did not start:\n{(tmp_path / 'flower.log').read_text()}"
                )
            time.sleep(0.2)
        # Flower learns of workers from their heartbeats and the broadcast it makes at start.
        deadline = time.monotonic() + 30
        while live_worker.node_name not in json.loads(_get(f"{base}/api/workers")[1] or b"{}"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def test_flower_sees_a_conversion_live_and_requires_credentials(flower, api, tmp_path):
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"))
    task_id = convert(api, item["id"]).json()["task_id"]
    final, _ = wait_for_task(api, task_id)
    assert final["state"] == "SUCCESS"

    # Events reach Flower asynchronously; the finished task shows up shortly.
    deadline = time.monotonic() + 30
    while True:
        code, body = _get(f"{flower}/api/task/info/{task_id}")
        info = json.loads(body) if code == 200 else {}
        if info.get("state") == "SUCCESS" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert info["state"] == "SUCCESS", (code, body)
    assert info["name"] == "geoconvert.tasks.convert_to_geo_raster"
    assert info["args"] == f"['{task_id}']"
    assert info["worker"] is not None

    code, body = _get(f"{flower}/api/tasks?limit=50")
    assert code == 200 and task_id in json.loads(body)

    for path in ("/api/tasks", f"/api/task/info/{task_id}", "/api/workers", "/"):
        assert _get(f"{flower}{path}", auth=False)[0] == 401, path
