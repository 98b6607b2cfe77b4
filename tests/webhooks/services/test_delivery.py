"""One attempt of a delivery, sent here to a real receiver on 127.0.0.1: the signature,
what counts as an answer (2xx, 410, a redirect, no answer) and where it may be sent."""

import socket

import pytest
from django.db import transaction

from tests.webhooks.receiver import Reply
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import addresses
from webhooks.services.delivery import (
    webhook_deliveries_sweep,
    webhook_delivery_attempt,
    webhook_delivery_redeliver,
)
from webhooks.services.endpoints import webhook_endpoint_create, webhook_endpoint_test
from webhooks.services.outbox import webhook_event_record


@pytest.fixture
def dispatched(monkeypatch):
    """The deliveries whose task would be sent (the tests here attempt them themselves)."""
    sent = []

    def record(ids, countdown=None):
        sent.extend((str(i), countdown) for i in ids)
        return len(ids)

    monkeypatch.setattr("webhooks.services.delivery.webhook_deliveries_dispatch", record)
    monkeypatch.setattr("webhooks.services.outbox.webhook_deliveries_dispatch", record)
    return sent


def _test_delivery(user, url) -> tuple[WebhookEndpoint, WebhookDelivery]:
    endpoint = webhook_endpoint_create(owner=user, url=url)
    return endpoint, webhook_endpoint_test(endpoint=endpoint)


def test_a_2xx_is_success_and_the_signature_verifies(user, receiver, dispatched):
    endpoint, delivery = _test_delivery(user, receiver.url)

    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"

    (request,) = receiver.received
    payload = request.verified(endpoint.secret)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["webhook_id"] == str(endpoint.pk)
    assert payload["timestamp"]
    assert request.webhook_id == delivery.event.message_id
    assert request.headers["content-type"] == "application/json"
    delivery.refresh_from_db()
    assert delivery.state == "SUCCEEDED" and delivery.attempts == 1
    (attempt,) = delivery.log.all()
    assert attempt.status_code == 200 and attempt.response_excerpt == "ok"
    assert attempt.duration_ms is not None and attempt.error == ""
    # Done: another task for it sends nothing.
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "skipped"
    assert len(receiver.received) == 1


def test_a_failed_attempt_is_retried_with_the_same_webhook_id(user, receiver, dispatched, settings):
    settings.TAGGER_WEBHOOK_RETRY_SECONDS = [0, 0]
    receiver.replies = [Reply(500, b"x" * 5000), Reply(503)]
    endpoint, delivery = _test_delivery(user, receiver.url)

    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"

    assert len({r.webhook_id for r in receiver.received}) == 1
    assert all(r.verified(endpoint.secret) for r in receiver.received)
    log = list(delivery.log.all())
    assert [a.status_code for a in log] == [500, 503, 200]
    assert len(log[0].response_excerpt) == 1024
    assert log[0].error == "The endpoint answered 500."
    # Each retry was sent as a delayed task (the first task is sent at commit, not here).
    assert [countdown is not None for _, countdown in dispatched] == [True, True]


def test_after_the_last_retry_the_delivery_fails(user, receiver, dispatched, settings):
    settings.TAGGER_WEBHOOK_RETRY_SECONDS = [0]
    receiver.default = Reply(500)
    _, delivery = _test_delivery(user, receiver.url)

    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.state == "FAILED" and delivery.attempts == 2
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "skipped"


def test_410_disables_the_endpoint(user, receiver, dispatched):
    receiver.default = Reply(410)
    endpoint = webhook_endpoint_create(owner=user, url=receiver.url, events=["batch.completed"])
    event = webhook_event_record(owner_id=user.pk, event_type="batch.completed", data={})
    delivery = event.deliveries.get()

    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "failed"

    endpoint.refresh_from_db()
    assert endpoint.is_active is False and "410" in endpoint.disabled_reason
    # No new events for it.
    assert webhook_event_record(owner_id=user.pk, event_type="batch.completed", data={}) is None
    # A test still goes, and an answer enables it again.
    receiver.default = Reply(204, b"")
    test = webhook_endpoint_test(endpoint=endpoint)
    assert webhook_delivery_attempt(delivery_id=test.pk) == "succeeded"
    endpoint.refresh_from_db()
    assert endpoint.is_active is True


def test_redirects_are_not_followed(user, receiver, dispatched):
    receiver.replies = [Reply(302, headers={"location": receiver.url + "/elsewhere"})]
    _, delivery = _test_delivery(user, receiver.url)

    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"

    assert [r.path for r in receiver.received] == ["/hook"]
    attempt = delivery.log.get()
    assert attempt.status_code == 302
    assert "Redirects are not followed" in attempt.error


def test_an_endpoint_that_does_not_answer_in_time_is_a_failed_attempt(
    user, receiver, dispatched, settings
):
    settings.TAGGER_WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.replies = [receiver.hold()]
    _, delivery = _test_delivery(user, receiver.url)

    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"

    attempt = delivery.log.get()
    assert attempt.status_code is None
    assert attempt.error == "No answer within 0.5 s."


def test_a_connection_refused_is_a_failed_attempt(user, dispatched):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, delivery = _test_delivery(user, f"http://127.0.0.1:{port}/")
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    assert "ConnectError" in delivery.log.get().error


def test_a_private_address_is_refused_at_delivery_too(user, receiver, dispatched, settings):
    _, delivery = _test_delivery(user, receiver.url)  # registered while allowed
    settings.TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS = False

    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"

    assert receiver.received == []
    assert "127.0.0.1, a loopback address" in delivery.log.get().error


def _resolving(monkeypatch, table: dict) -> list:
    """Names in `table` resolve to its addresses (an address literal to itself); returns
    the names looked up."""
    looked_up = []

    def getaddrinfo(host, port, *args, **kwargs):
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table.get(host, host), port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


def test_a_host_that_resolves_to_a_private_address_at_delivery_is_refused(
    user, receiver, dispatched, settings, monkeypatch
):
    """DNS rebinding: public when registered, loopback when sent."""
    settings.TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS = False
    _resolving(monkeypatch, {"hooks.example.com": "93.184.215.14"})
    url = f"http://hooks.example.com:{receiver.server.server_port}/hook"
    _, delivery = _test_delivery(user, url)

    _resolving(monkeypatch, {"hooks.example.com": "127.0.0.1"})
    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"

    assert receiver.received == []
    assert "resolves to 127.0.0.1, a loopback address" in delivery.log.get().error


def test_the_delivery_connects_to_the_address_it_checked(
    user, receiver, dispatched, settings, monkeypatch
):
    """No second lookup: the request goes to the checked address, naming the URL's host."""
    settings.TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS = False
    looked_up = _resolving(monkeypatch, {"hooks.example.com": "127.0.0.1"})
    monkeypatch.setattr(addresses, "_refusal", lambda address: None)
    url = f"http://hooks.example.com:{receiver.server.server_port}/hook"
    endpoint, delivery = _test_delivery(user, url)
    looked_up.clear()

    assert webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"

    assert looked_up.count("hooks.example.com") == 1

    (request,) = receiver.received
    assert request.headers["host"] == f"hooks.example.com:{receiver.server.server_port}"
    assert request.verified(endpoint.secret)["type"] == "webhook.test"


def test_a_redelivery_carries_the_same_webhook_id(user, receiver, dispatched):
    _, delivery = _test_delivery(user, receiver.url)
    webhook_delivery_attempt(delivery_id=delivery.pk)

    again = webhook_delivery_redeliver(delivery=delivery)
    assert webhook_delivery_attempt(delivery_id=again.pk) == "succeeded"

    first, second = receiver.received
    assert first.webhook_id == second.webhook_id == delivery.event.message_id
    assert again.redelivery_of == delivery and again.log.get().number == 1


def test_the_sweep_sends_due_deliveries_whose_task_was_not_taken(
    user, dispatched, settings, django_capture_on_commit_callbacks
):
    settings.TAGGER_WEBHOOK_SWEEP_GRACE_SECONDS = 3600
    with django_capture_on_commit_callbacks(execute=False):  # the broker was down
        with transaction.atomic():
            _, delivery = _test_delivery(user, "http://127.0.0.1:9/")
    assert webhook_deliveries_sweep() == 0  # its task may still be on its way

    settings.TAGGER_WEBHOOK_SWEEP_GRACE_SECONDS = 0
    assert webhook_deliveries_sweep() == 1
    assert dispatched == [(str(delivery.pk), None)]
    # Not again within the grace period, nor while a worker holds it.
    settings.TAGGER_WEBHOOK_SWEEP_GRACE_SECONDS = 3600
    assert webhook_deliveries_sweep() == 0
