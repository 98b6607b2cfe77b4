"""The webhooks admin: endpoints and deliveries read-only (never a secret), each attempt's
log, and "send again" for staff with the change permission."""

import pytest
from django.contrib.auth.models import Permission

from tests.factories import UserFactory
from webhooks.models import WebhookDelivery
from webhooks.services.endpoints import webhook_endpoint_create, webhook_endpoint_test

DELIVERIES = "/admin/webhooks/webhookdelivery/"


@pytest.fixture
def delivery(user):
    endpoint = webhook_endpoint_create(owner=user, url="https://hooks.example.org/")
    sent = webhook_endpoint_test(endpoint=endpoint)
    sent.log.create(number=1, started_at=sent.created_at, status_code=500, error="boom")
    return sent


def _staff(*codenames):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label="webhooks", codename__in=codenames)
    )
    return staff


def test_the_pages_render_without_the_secret(client, delivery):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    endpoint = delivery.endpoint
    for url in [
        "/admin/webhooks/webhookendpoint/",
        f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/",
        DELIVERIES,
        f"{DELIVERIES}{delivery.pk}/change/",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert endpoint.secret not in response.content.decode(), url
    page = client.get(f"{DELIVERIES}{delivery.pk}/change/").content.decode()
    assert delivery.event.message_id in page and "boom" in page  # the attempt's log


def test_send_again_redelivers_the_same_event(client, delivery):
    client.force_login(_staff("view_webhookdelivery", "change_webhookdelivery"))
    assert "send_again" in client.get(DELIVERIES).content.decode()

    client.post(DELIVERIES, {"action": "send_again", "_selected_action": [str(delivery.pk)]})

    again = WebhookDelivery.objects.exclude(pk=delivery.pk).get()
    assert again.event_id == delivery.event_id and again.redelivery_of_id == delivery.pk
    assert again.state == "PENDING" and again.manual


def test_staff_who_may_only_view_cannot_send_again(client, delivery):
    client.force_login(_staff("view_webhookdelivery"))
    assert "send_again" not in client.get(DELIVERIES).content.decode()
    client.post(DELIVERIES, {"action": "send_again", "_selected_action": [str(delivery.pk)]})
    assert WebhookDelivery.objects.count() == 1
