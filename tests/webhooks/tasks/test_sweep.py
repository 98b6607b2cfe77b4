"""The sweep (beat, every 10 s): a worker killed while it delivers leaves a lease that runs
out, and the event still arrives, with the same webhook-id, through another worker."""

import pytest
from django_celery_beat.models import PeriodicTask

from tests.conftest import EmbeddedRedis
from tests.fixtures import WorkerProcess
from tests.geoconvert.reliability.conftest import broker
from tests.webhooks.receiver import wait_until
from webhooks.models import WebhookDelivery
from webhooks.services.delivery import LOST
from webhooks.services.endpoints import webhook_endpoint_create, webhook_endpoint_test
from webhooks.tasks import sweep_webhook_deliveries


@pytest.fixture
def private_broker(transactional_db):
    """A Redis of this test's own, so that only its workers (which it kills) take tasks."""
    server = EmbeddedRedis()
    with broker(server.start()):
        yield server
    server.stop()


@pytest.fixture
def start_worker(private_broker, tmp_path):
    started = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(
            tmp_path / f"worker-{len(started)}.log", concurrency=1, broker_url=private_broker.url
        )
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


def test_a_worker_killed_while_it_delivers_still_gets_the_event_through(
    user, receiver, start_worker
):
    first = start_worker()
    receiver.replies = [receiver.hold()]  # the first attempt never gets its answer
    endpoint = webhook_endpoint_create(owner=user, url=receiver.url)
    delivery = webhook_endpoint_test(endpoint=endpoint)
    wait_until(lambda: len(receiver.received) == 1, "the first attempt to reach the receiver")

    first.kill()  # SIGKILL, mid-request: no code of the worker runs
    receiver.release_all()
    start_worker()

    def arrived():
        sweep_webhook_deliveries.delay()  # what beat does every 10 s
        delivery.refresh_from_db()
        return delivery.state == "SUCCEEDED"

    wait_until(arrived, "the event to arrive through the sweep", timeout=90, interval=0.5)
    first_try, second_try = receiver.received
    assert first_try.webhook_id == second_try.webhook_id == delivery.event.message_id
    assert second_try.verified(endpoint.secret)["type"] == "webhook.test"
    log = list(delivery.log.all())
    assert [(a.number, a.status_code) for a in log] == [(1, None), (2, 200)]
    assert log[0].error == LOST
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 2


def test_the_sweep_is_on_beats_schedule(db, settings):
    task = PeriodicTask.objects.get(task="webhooks.tasks.sweep_webhook_deliveries")
    assert task.interval.every == 10 and task.interval.period == "seconds"
    assert task.queue == settings.CELERY_TASK_DEFAULT_QUEUE and task.enabled
