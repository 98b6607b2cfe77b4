"""Redis dies (SIGKILL, as a crash or the OOM killer does) and stays away for a while, over
TCP and over a unix socket, first while the stack is idle, then while it converts.

The worker, beat and Flower run as `make run` and compose run them (gossip and mingle on),
against a private Redis with its append-only file on. Throughout:
- the three processes stay up, reconnect, and go on working;
- a conversion that was running ends SUCCESS exactly once, and one that was queued runs;
- during the outage the API refuses new conversions (503) and serves reads from the database.

The 60-second outages are marked slow (`make test-slow`).
"""

import base64
import json
import time
import urllib.request

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from tests import rasters
from tests.conftest import EmbeddedRedis, free_port
from tests.fixtures import CeleryProcess, WorkerProcess
from tests.geoconvert.api.helpers import convert, upload, wait_for_task
from tests.geoconvert.reliability.conftest import FAST_WORKER_ENV, broker, repeat
from tests.geoconvert.reliability.helpers import (
    assert_converted_once,
    logs,
    start_large_conversion,
    wait_all_mid_write,
    wait_mid_write,
    wait_until,
)

REAPER = "Reap stale conversions"
FLOWER_LOGIN = "ops:broker-crash-test"
REAPER_RECEIVED = "Task geoconvert.tasks.reap_stale_conversions["


@pytest.fixture(params=["tcp", "unix"])
def crashable_redis(request):
    server = EmbeddedRedis(persistent=True, tcp=request.param == "tcp")
    with broker(server.start()):
        yield server
    server.stop()


class Stack:
    """A worker with two processes, as `make run` starts it, beat sending the reaper every
    second, and Flower: all on `redis`."""

    def __init__(self, redis: EmbeddedRedis, folder):
        self.redis = redis
        self.worker = WorkerProcess(
            folder / "worker.log",
            extra_env=FAST_WORKER_ENV,
            concurrency=2,
            broker_url=redis.url,
            gossip=True,
        )
        self.beat = CeleryProcess(
            ["beat", "--scheduler", "geoconvert.beat:DatabaseScheduler", "--max-interval", "1",
             "--loglevel", "INFO", "--pidfile=", "-s", str(folder / "beat-schedule")],
            folder / "beat.log",
            broker_url=redis.url,
        )  # fmt: skip
        self.flower_port = free_port()
        self.flower = CeleryProcess(
            [
                "flower",
                f"--port={self.flower_port}",
                "--address=127.0.0.1",
                f"--basic-auth={FLOWER_LOGIN}",
            ],
            folder / "flower.log",
            broker_url=redis.url,
        )
        self.processes = {"worker": self.worker, "beat": self.beat, "flower": self.flower}

    def start(self) -> "Stack":
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=1, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.filter(name=REAPER).update(interval=interval, expire_seconds=None)
        PeriodicTasks.update_changed()
        self.worker.start()
        self.beat.spawn()
        self.flower.spawn()
        wait_until(lambda: self.flower_get("/healthcheck") is not None, "Flower to answer", 60, 0.2)
        return self

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.stop()
            print(f"--- {process.log_path.name} ---\n{process.log_tail(60)}")

    def flower_get(self, path: str):
        request = urllib.request.Request(f"http://127.0.0.1:{self.flower_port}{path}")
        token = base64.b64encode(FLOWER_LOGIN.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.read()
        except OSError:
            return None

    def assert_alive(self) -> None:
        exited = {name: p.proc.returncode for name, p in self.processes.items() if not p.alive}
        assert not exited, f"exited: {exited}\n" + "\n".join(
            f"--- {name} ---\n{p.log_tail(40)}" for name, p in self.processes.items()
        )

    def crash_broker(self, outage: float, during=None) -> None:
        """SIGKILL Redis, call `during()` while it is down, start it again after `outage` s."""
        self.redis.crash()
        started = time.monotonic()
        if during is not None:
            during()
        time.sleep(max(0.0, outage - (time.monotonic() - started)))
        self.redis.start()

    def assert_working(self, api, tmp_path, name: str) -> None:
        """After the broker is back: each process is up and does its job again."""
        self.assert_alive()
        reaper_runs = self.worker.log().count(REAPER_RECEIVED)
        item = upload(api, rasters.rgb_byte_tiff(tmp_path / f"{name}.tif"))
        task_id = convert(api, item["id"]).json()["task_id"]
        final, _ = wait_for_task(api, task_id)
        assert final["state"] == "SUCCESS"
        wait_until(
            lambda: self.worker.log().count(REAPER_RECEIVED) > reaper_runs,
            "beat to send the reaper again",
            60,
            interval=0.2,
        )
        wait_until(
            lambda: (
                json.loads(self.flower_get(f"/api/task/info/{task_id}") or b"{}").get("state")
                == "SUCCESS"
            ),
            "Flower to see the new conversion",
            60,
            interval=0.5,
        )
        self.assert_alive()


@pytest.fixture
def stack(crashable_redis, transactional_db, tmp_path):
    stack = Stack(crashable_redis, tmp_path)
    try:
        yield stack.start()
    finally:
        stack.stop()


def api_answers_from_the_database(api, new_item_id, item_id, task_id):
    """While the broker is down: a new conversion is refused and nothing is left queued;
    reads are served from the database."""
    refused = convert(api, new_item_id)
    assert refused.status_code == 503, refused.content
    assert refused.json()["code"] == "queue_unavailable"
    status = api.get(f"/api/v1/tree-items/{new_item_id}/conversion-status").json()
    assert status["status"] == "FAILED"
    assert api.get(f"/api/v1/tasks/{task_id}/status").status_code == 200
    assert api.get("/api/v1/tasks/").status_code == 200
    assert api.get("/api/v1/tree-items/").status_code == 200
    assert api.get(f"/api/v1/tree-items/{item_id}/conversion-status").status_code == 200
    assert api.get(f"/api/v1/tree-items/{item_id}/download").status_code == 200


OUTAGES = [2, 10, pytest.param(60, marks=pytest.mark.slow)]


@repeat
@pytest.mark.parametrize("outage", OUTAGES, ids=lambda s: f"{s}s")
def test_stack_rides_out_a_broker_crash(api, tmp_path, stack, outage, run):
    # Idle: nothing running.
    before = upload(api, rasters.rgb_byte_tiff(tmp_path / "before.tif"))
    done, _ = wait_for_task(api, convert(api, before["id"]).json()["task_id"])
    refused = upload(api, rasters.rgb_byte_tiff(tmp_path / "refused.tif"))
    stack.crash_broker(
        outage,
        during=lambda: api_answers_from_the_database(
            api, refused["id"], before["id"], done["task_id"]
        ),
    )
    stack.assert_working(api, tmp_path, "after-idle")

    # Busy: one conversion writing (for seconds: it goes on while the broker is down), while
    # the worker's other process waits for work (a BRPOP is pending on the connection).
    refused = upload(api, rasters.rgb_byte_tiff(tmp_path / "refused-busy.tif"))
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path, size=5000)
    wait_mid_write(task_id, item_id, attempt=1)
    stack.crash_broker(
        outage,
        during=lambda: api_answers_from_the_database(api, refused["id"], item_id, task_id),
    )
    assert_converted_once(item_id, task_id, src, digest, lambda: logs(stack.worker))
    stack.assert_working(api, tmp_path, "after-busy")

    # Full: both processes convert, and a third conversion waits in Redis's queue.
    waiting_item = upload(api, rasters.rgb_byte_tiff(tmp_path / "waiting.tif"))
    sources = [rasters.large_noise_tiff(tmp_path / f"{n}.tif", size=5000) for n in ("a", "b")]
    running = [start_large_conversion(api, tmp_path, src=src) for src in sources]
    wait_all_mid_write([(task_id, item_id) for _, item_id, task_id, _ in running])
    waiting = convert(api, waiting_item["id"]).json()["task_id"]
    stack.crash_broker(outage)

    for src, item_id, task_id, digest in running:
        assert_converted_once(item_id, task_id, src, digest, lambda: logs(stack.worker))
    final, _ = wait_for_task(api, waiting)
    assert final["state"] == "SUCCESS", final
    # The run logs "complete" just after its SUCCESS is committed, which the API may see first.
    done = f"Conversion {waiting} complete"
    wait_until(lambda: done in stack.worker.log(), "the worker's log to say it completed")
    assert stack.worker.log().count(done) == 1
    stack.assert_working(api, tmp_path, "after-full")
