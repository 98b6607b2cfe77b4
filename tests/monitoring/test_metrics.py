"""`/metrics`: what each family counts, after activity a test makes in the database, the
broker and the API; and who may read it."""

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from geoconvert.models import Conversion, ConversionMetric, Stage
from geoconvert.services.metrics import conversion_stage_seconds_record
from geoconvert.services.stages import StageClock
from geoconvert.services.transitions import conversion_transition
from monitoring.workers import worker_presence_record, worker_presence_remove
from tests.factories import ConversionFactory, TreeItemFactory
from tests.monitoring.helpers import scrape, value

pytestmark = pytest.mark.django_db

MiB = 2**20


def _finished(state, *, seconds: float, waited: float, item=None, **fields):
    """A conversion requested `waited` s before its first run, which took `seconds`: moved
    through the transitions as the services move it."""
    now = timezone.now()
    started = now - timedelta(seconds=seconds)
    conversion = ConversionFactory(**({"item": item} if item else {}), **fields)
    # created_at is auto_now_add: back-dated by an update.
    created_at = started - timedelta(seconds=waited)
    Conversion.objects.filter(pk=conversion.pk).update(created_at=created_at)
    conversion_transition(conversion.pk, "claim", started_at=started, attempts=1)
    name = {"SUCCESS": "succeed", "FAILURE": "fail", "CANCELLED": "cancel"}[state]
    if state == "SUCCESS":
        # The COG is half the upload's size.
        fields = {"result": {"size_bytes": item.size // 2}, "stage": Stage.COMPLETE}
    else:
        fields = {}
    conversion_transition(conversion.pk, name, finished_at=now, **fields)
    return conversion


@pytest.fixture
def activity(user):
    """Two successes (3 MiB and 40 MiB uploads), a failure, a cancel, one running and two
    queued conversions, and the stage times of one run."""
    for size, seconds in ((3 * MiB, 4), (40 * MiB, 90)):
        item = TreeItemFactory(owner=user, size=size)
        _finished(Conversion.State.SUCCESS, seconds=seconds, waited=2, item=item)
    _finished(Conversion.State.FAILURE, seconds=0.5, waited=20, item__owner=user)
    _finished(Conversion.State.CANCELLED, seconds=7, waited=0.2, item__owner=user)
    running = ConversionFactory(item__owner=user)
    conversion_transition(running.pk, "claim", started_at=timezone.now(), attempts=1)
    ConversionFactory(item__owner=user)
    queued = ConversionFactory(item__owner=user)
    Conversion.objects.filter(pk=queued.pk).update(
        created_at=timezone.now() - timedelta(minutes=45)
    )
    conversion_stage_seconds_record({Stage.STARTING: 0.05, Stage.LOADING: 0.3, Stage.CREATING: 3.0})


def test_conversion_counts_and_gauges(activity):
    m = scrape(Client())
    assert value(m, "tagger_conversions_total", state="SUCCESS") == 2
    assert value(m, "tagger_conversions_total", state="FAILURE") == 1
    assert value(m, "tagger_conversions_total", state="CANCELLED") == 1
    assert value(m, "tagger_conversions_in_progress") == 1
    assert value(m, "tagger_conversions_queued", priority="normal", where="waiting") == 2
    assert value(m, "tagger_conversions_queued", priority="low", where="scheduled") == 0
    assert 44 * 60 < value(m, "tagger_conversion_oldest_queued_seconds") < 50 * 60


def test_duration_and_queue_wait_histograms(activity):
    m = scrape(Client())
    success = {"outcome": "SUCCESS"}
    assert value(m, "tagger_conversion_duration_seconds_count", **success) == 2
    assert value(m, "tagger_conversion_duration_seconds_bucket", le="5.0", **success) == 1
    assert value(m, "tagger_conversion_duration_seconds_bucket", le="120.0", **success) == 2
    assert value(m, "tagger_conversion_duration_seconds_bucket", le="7200.0", **success) == 2
    assert value(m, "tagger_conversion_duration_seconds_sum", **success) == pytest.approx(94, 0.01)
    failure = {"outcome": "FAILURE"}
    assert value(m, "tagger_conversion_duration_seconds_bucket", le="1.0", **failure) == 1
    # Started: 4 finished and the running one (whose wait is the factory's, about 0 s).
    assert value(m, "tagger_conversion_queue_wait_seconds_count") == 5
    assert value(m, "tagger_conversion_queue_wait_seconds_bucket", le="0.5") == 2
    assert value(m, "tagger_conversion_queue_wait_seconds_bucket", le="5.0") == 4
    assert value(m, "tagger_conversion_queue_wait_seconds_bucket", le="+Inf") == 5


def test_stage_and_size_histograms(activity):
    m = scrape(Client())
    assert value(m, "tagger_conversion_stage_seconds_count", stage="creating") == 1
    assert value(m, "tagger_conversion_stage_seconds_bucket", stage="creating", le="1.0") == 0
    assert value(m, "tagger_conversion_stage_seconds_bucket", stage="creating", le="5.0") == 1
    assert value(m, "tagger_conversion_stage_seconds_sum", stage="loading") == pytest.approx(0.3)
    assert value(m, "tagger_conversion_input_bytes_count") == 2
    assert value(m, "tagger_conversion_input_bytes_bucket", le=str(float(4 * MiB))) == 1
    assert value(m, "tagger_conversion_input_bytes_sum") == 43 * MiB
    assert value(m, "tagger_conversion_output_bytes_sum") == 43 * MiB // 2


def test_an_empty_database_still_answers_every_family(db):
    m = scrape(Client())
    assert value(m, "tagger_conversions_total", state="SUCCESS") == 0
    assert value(m, "tagger_conversion_queue_wait_seconds_count") == 0
    assert value(m, "tagger_conversion_oldest_queued_seconds") == 0
    assert value(m, "tagger_conversion_input_bytes_count") == 0


def test_queue_length_is_read_from_redis(redis_client, monkeypatch):
    # Queues no worker consumes (a test's worker may be running), of every priority.
    from monitoring import collectors

    names = [f"test-queue-{n}-{uuid.uuid4().hex[:6]}" for n in range(2)]
    monkeypatch.setattr(collectors, "declared_queues", lambda: names)
    redis_client.lpush(names[0], b"{}", b"{}")
    redis_client.lpush(f"{names[0]}\x06\x163", b"{}")  # kombu's list of priority 3
    try:
        m = scrape(Client())
    finally:
        redis_client.delete(names[0], f"{names[0]}\x06\x163")
    assert value(m, "tagger_queue_length", queue=names[0]) == 3
    assert value(m, "tagger_queue_length", queue=names[1]) == 0


def test_queue_length_of_the_declared_queues(redis_client):
    m = scrape(Client())
    assert value(m, "tagger_queue_length", queue="geo_processing") is not None
    assert value(m, "tagger_queue_length", queue="default") is not None


def test_workers_online_counts_recent_presences(redis_client):
    from monitoring.workers import PRESENCE_KEY, PRESENCE_STALE_SECONDS

    # Another test's live worker may be present too: counted relative to it.
    before = value(scrape(Client()), "tagger_workers_online")
    worker_presence_record("a@test-host")
    worker_presence_record("b@test-host")
    # A worker that stopped reporting a while ago is not online.
    long_ago = timezone.now().timestamp() - 2 * PRESENCE_STALE_SECONDS
    redis_client.zadd(PRESENCE_KEY, {"gone@test-host": long_ago})
    try:
        assert value(scrape(Client()), "tagger_workers_online") == before + 2
        worker_presence_remove("b@test-host")
        assert value(scrape(Client()), "tagger_workers_online") == before + 1
    finally:
        redis_client.zrem(PRESENCE_KEY, "a@test-host", "b@test-host", "gone@test-host")


def test_beat_last_run(db):
    from django_celery_beat.models import PeriodicTask

    when = timezone.now() - timedelta(minutes=3)
    PeriodicTask.objects.update(last_run_at=when)
    m = scrape(Client())
    assert value(m, "tagger_beat_last_run_timestamp_seconds") == pytest.approx(when.timestamp())


def test_http_requests_by_route_method_and_status(api, anon_api):
    def count(**labels):
        return value(scrape(Client()), "tagger_http_requests_total", **labels) or 0

    before_ok = count(route="api:tree-item-list", method="GET", status=200)
    before_401 = count(route="api:tree-item-list", method="GET", status=401)
    for _ in range(3):
        assert api.get("/api/v1/tree-items/").status_code == 200
    anon_api.get("/api/v1/tree-items/")
    anon_api.get(f"/api/v1/tree-items/{TreeItemFactory().pk}/")
    anon_api.get("/no/such/path")
    assert count(route="api:tree-item-list", method="GET", status=200) == before_ok + 3
    assert count(route="api:tree-item-list", method="GET", status=401) == before_401 + 1
    m = scrape(Client())
    # The pattern's name, never the path: item ids do not become series.
    assert value(
        m, "tagger_http_requests_total", route="api:tree-item-detail", method="GET", status=401
    )
    assert value(m, "tagger_http_requests_total", route="unmatched", method="GET", status=404)
    assert not [key for key in m if any("/" in v and k == "route" for k, v in key[1])]
    assert value(
        m, "tagger_http_request_duration_seconds_count", route="api:tree-item-list", method="GET"
    )


def test_no_label_names_a_task_a_user_or_a_host(activity, redis_client):
    worker_presence_record("a@test-host")
    m = scrape(Client())
    worker_presence_remove("a@test-host")
    labels = {name for key, pairs in m if key.startswith("tagger_") for name, _ in pairs}
    assert labels <= {"state", "outcome", "stage", "priority", "where", "queue", "route", "method",
                      "status", "le"}  # fmt: skip


def test_stage_clock_times_each_stage_once_whatever_progress_repeats():
    now = [0.0]
    clock = StageClock(clock=lambda: now[0])
    reports = [(Stage.STARTING, 0), (Stage.LOADING, 1), (Stage.CREATING, 3),
               (Stage.CREATING, 5), (Stage.UPDATING, 10), (Stage.COMPLETE, 10.5)]  # fmt: skip
    for stage, at in reports:
        now[0] = at
        clock.enter(stage)
    now[0] = 11
    assert clock.stop() == {
        Stage.STARTING: 1, Stage.LOADING: 2, Stage.CREATING: 7, Stage.UPDATING: 0.5,
    }  # fmt: skip


def test_totals_only_grow(activity):
    """Counters: a deleted conversion stays counted, and a second claim of the same conversion
    (a requeued run) is not a second queue wait."""
    Conversion.objects.filter(state="SUCCESS").delete()
    running = Conversion.objects.get(state="PROGRESS")
    conversion_transition(running.pk, "requeue")
    conversion_transition(running.pk, "claim", started_at=timezone.now(), attempts=2)
    m = scrape(Client())
    assert value(m, "tagger_conversions_total", state="SUCCESS") == 2
    assert value(m, "tagger_conversion_queue_wait_seconds_count") == 5


def test_a_failed_metric_write_never_fails_the_transition(user, monkeypatch):
    from django.db import DatabaseError

    from geoconvert.services import metrics

    def broken(*args):
        raise DatabaseError("disk full")

    monkeypatch.setattr(metrics, "_add", broken)
    conversion = ConversionFactory(item__owner=user)
    assert conversion_transition(conversion.pk, "cancel", finished_at=timezone.now()) == 1
    assert Conversion.objects.get(pk=conversion.pk).state == "CANCELLED"
    assert not ConversionMetric.objects.exists()
