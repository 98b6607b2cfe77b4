import json

import pytest
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from geoconvert.beat import PERIODIC_TASKS
from tests.geoconvert.api.helpers import queue_paused
from tests.geoconvert.commands.helpers import run, run_process


@pytest.fixture
def worker(celery_worker, db):
    return celery_worker


def test_all_checks_pass_with_a_real_worker(worker):
    code, out, _ = run("check_celery")

    assert code == 0, out
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["OK"] * 5
    by_name = {
        name: line
        for line in lines
        for name in ("database", "broker", "result backend", "workers", "beat schedule")
        if line[6:].startswith(name)
    }
    assert len(by_name) == 5
    assert f"{worker.node_name} [default, geo_processing]" in by_name["workers"]
    assert f"{len(PERIODIC_TASKS)} periodic tasks enabled" in by_name["beat schedule"]
    assert not TaskResult.objects.filter(task_id__startswith="check-celery-").exists()


def test_json_output(worker):
    code, out, _ = run("check_celery", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    workers = next(c for c in data["checks"] if c["name"] == "workers")
    assert workers["workers"][worker.node_name] == ["default", "geo_processing"]


def test_fails_when_no_worker_consumes_the_conversion_queue(worker):
    with queue_paused(worker, "geo_processing"):
        code, out, err = run("check_celery")
    assert code == 1
    assert "FAIL  workers" in out and "no worker consumes geo_processing" in out
    assert "1 check(s) failed: workers." in err


def test_fails_when_a_periodic_task_is_disabled(worker):
    PeriodicTask.objects.filter(name="Reap stale conversions").update(enabled=False)
    code, out, _ = run("check_celery")
    assert code == 1
    assert "disabled in the admin: Reap stale conversions" in out


@pytest.mark.django_db(transaction=True)
def test_fails_when_the_broker_is_unreachable():
    # Port 9 (discard) on localhost: nothing listens there.
    result = run_process(
        "check_celery", "--timeout", "1", env={"REDIS_URL": "redis://127.0.0.1:9/0"}
    )

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("OK    database")
    assert lines[1].startswith("FAIL  broker          unreachable (redis://127.0.0.1:9/0)")
    assert lines[3] == "FAIL  workers         not asked: the broker is unreachable"
    assert "check(s) failed: broker, workers." in result.stderr


def test_help():
    result = run_process("check_celery", "--help")
    assert result.returncode == 0 and "tasks stay PENDING" in " ".join(result.stdout.split())
