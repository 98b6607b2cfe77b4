"""Log lines: JSON in production, text under `make run`, and every line of a conversion
says its task, item, user and attempt, and the API request that asked for it."""

import json
import logging
import logging.config
import re
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.test import Client

from tagger.logs import ContextFilter, log_context, request_id_of
from tests import rasters
from tests.config.test_production import _production_env
from tests.fixtures import REPO, WorkerProcess
from tests.geoconvert.api.helpers import upload, wait_for_task
from tests.geoconvert.reliability.helpers import wait_until

CONTEXT = {"request_id": "req-1", "task_id": "t-1", "item_id": "i-1", "user_id": 7, "attempt": 2}


def _formatted(name: str, message: str = "hello %s", args=("world",)) -> str:
    configurator = logging.config.DictConfigurator(settings.LOGGING)
    formatter = configurator.configure_formatter(dict(settings.LOGGING["formatters"][name]))
    record = logging.LogRecord("geoconvert.x", logging.INFO, __file__, 1, message, args, None)
    ContextFilter().filter(record)
    return formatter.format(record)


def test_json_lines_carry_the_bound_context():
    with log_context(**CONTEXT):
        line = json.loads(_formatted("json"))
    assert line["message"] == "hello world"
    assert line["level"] == "INFO" and line["logger"] == "geoconvert.x"
    assert {k: line[k] for k in CONTEXT} == CONTEXT
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line["timestamp"])


def test_json_lines_outside_any_context_have_the_same_keys():
    line = json.loads(_formatted("json"))
    assert all(line[k] is None for k in CONTEXT)


def test_text_lines_stay_readable():
    assert _formatted("text").endswith("INFO geoconvert.x: hello world")
    with log_context(task_id="t-1", attempt=1):
        assert _formatted("text").endswith("hello world [task_id=t-1 attempt=1]")


def test_celerys_received_line_gets_the_task_id_from_its_arguments():
    record = logging.LogRecord(
        "celery.worker.strategy", logging.INFO, __file__, 1,
        "Task %(name)s[%(id)s] received", ({"name": "x", "id": "abc"},), None,
    )  # fmt: skip
    ContextFilter().filter(record)
    assert record.task_id == "abc"


def test_production_logs_json_lines(tmp_path):
    script = (
        "import logging, django; django.setup()\n"
        "logging.getLogger('geoconvert.test').warning('disk %s', 'full')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO, env=_production_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(row) for row in result.stderr.splitlines() if row.startswith("{")]
    assert line["message"] == "disk full" and line["level"] == "WARNING"
    assert set(CONTEXT) <= set(line)


@pytest.mark.parametrize(
    "given, kept",
    [("3f2a9c4e-1d2b-4c5d-9e8f-001122334455", True), ("a1b2c3", True), ("bad id\n", False),
     ("x" * 200, False), (None, False)],
)  # fmt: skip
def test_request_id_is_the_callers_when_it_looks_like_one(given, kept):
    chosen = request_id_of(given)
    assert (chosen == given) is kept
    if not kept:
        assert re.fullmatch(r"[0-9a-f]{32}", chosen)


def test_the_request_id_is_answered_and_on_the_requests_lines(db):
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    handler = Keep()
    handler.addFilter(ContextFilter())
    logging.getLogger("django.request").addHandler(handler)
    try:
        response = Client().get("/api/v1/no-such-route", HTTP_X_REQUEST_ID="req-404")
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    assert response.status_code == 404
    assert response["X-Request-ID"] == "req-404"
    assert [r.request_id for r in seen] == ["req-404"]
    generated = Client().get("/api/v1/health")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


def _conversion_lines(log: str, task_id: str) -> list[str]:
    return [line for line in log.splitlines() if task_id in line]


def test_a_conversions_worker_lines_carry_its_context_and_the_request_id(
    live_worker, api, user, tmp_path
):
    item = upload(api, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"))
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    response = api.post(
        f"/api/v1/tree-items/{item['id']}/convert-to-geo-raster", {}, format="json",
        HTTP_X_REQUEST_ID=request_id,
    )  # fmt: skip
    assert response.status_code == 202 and response["X-Request-ID"] == request_id
    task_id = response.json()["task_id"]
    assert wait_for_task(api, task_id)[0]["state"] == "SUCCESS"
    # "complete" is logged just after SUCCESS commits; Celery's "succeeded" just after that.
    wait_until(lambda: "succeeded" in "".join(_conversion_lines(live_worker.log(), task_id)),
               "the worker's last line of the conversion")  # fmt: skip

    lines = _conversion_lines(live_worker.log(), task_id)
    ours = [line for line in lines if "] received" not in line]
    assert len(ours) >= 3, lines  # claimed, complete, succeeded
    for line in ours:
        for field in (f"request_id={request_id}", f"task_id={task_id}",
                      f"item_id={item['id']}", f"user_id={user.pk}", "attempt=1"):  # fmt: skip
            assert field in line, (field, line)
    # The follow-up task the conversion's task sent carries the request's id too.
    wait_until(
        lambda: [
            line for line in live_worker.log().splitlines()
            if f"request_id={request_id}" in line and "describe_geo_raster" in line
        ],
        "the follow-up task's lines with the request id",
    )  # fmt: skip


def test_a_worker_in_json_logs_one_object_a_line_with_the_context(transactional_db, user, tmp_path):
    """A worker of its own, LOG_FORMAT=json, on a queue of its own; the task is sent as the
    API sends it, while a request id is bound."""
    from django.core.files.base import ContentFile
    from django.db import transaction

    from config.celery_app import app
    from geoconvert.services.transitions import TASK_NAME, conversion_create
    from tagger.services import item_create

    queue = f"json-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(tmp_path / "worker.log", concurrency=1, extra_env={"LOG_FORMAT": "json"})
    worker.args += ["-Q", queue]
    worker.start()
    try:
        src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
        item = item_create(owner=user, name="rgb.tif", file=ContentFile(src.read_bytes()))
        with transaction.atomic():
            conversion = conversion_create(item=item, owner_id=user.pk, params={})
        task_id = str(conversion.task_id)
        with log_context(request_id="req-json-1"):
            app.send_task(TASK_NAME, args=[task_id], task_id=task_id, queue=queue)

        def done() -> list[dict]:
            rows = [json.loads(r) for r in worker.log().splitlines() if r.startswith("{")]
            mine = [r for r in rows if r.get("task_id") == task_id]
            return mine if any("succeeded" in r["message"] for r in mine) else []

        lines = wait_until(done, "the conversion's lines", timeout=120)
    finally:
        worker.stop()
    ours = [r for r in lines if " received" not in r["message"]]
    assert len(ours) >= 3
    for row in ours:
        assert row["request_id"] == "req-json-1", row
        assert row["item_id"] == str(item.pk) and row["user_id"] == user.pk, row
        assert row["attempt"] == 1, row
