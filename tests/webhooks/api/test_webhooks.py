"""Registering, listing, rotating, testing and removing webhook endpoints over the API."""

import pytest
from standardwebhooks import Webhook

from webhooks.models import SUBSCRIBABLE_EVENTS, WebhookDelivery, WebhookEvent

URL = "/api/v1/webhooks/"


def test_registration_shows_the_secret_once(api, register):
    body = register(
        "https://hooks.example.org/tagger",
        ["conversion.succeeded", "conversion.failed"],
        description="CI",
    )
    assert body["secret"].startswith("whsec_")
    Webhook(body["secret"])  # a secret standardwebhooks accepts
    assert body["events"] == ["conversion.succeeded", "conversion.failed"]
    assert body["description"] == "CI" and body["is_active"] is True

    listed = api.get(URL).json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]
    assert "secret" not in listed[0]
    detail = api.get(f"{URL}{body['id']}").json()
    assert "secret" not in detail and detail["url"] == "https://hooks.example.org/tagger"


def test_without_events_every_event_but_progress_is_sent(register):
    body = register("https://hooks.example.org/")
    assert "conversion.progress" not in body["events"]
    assert set(body["events"]) == set(SUBSCRIBABLE_EVENTS) - {"conversion.progress"}


def test_unknown_event_names_are_refused_with_the_valid_ones(api):
    response = api.post(
        URL, {"url": "https://hooks.example.org/", "events": ["conversion.done"]}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_event_type"
    assert "conversion.done" in body["message"]
    assert body["valid_events"] == list(SUBSCRIBABLE_EVENTS)
    assert "conversion.succeeded" in body["message"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": "not a url"},
        {"url": "ftp://hooks.example.org/"},
        {"url": "https://hooks.example.org/", "events": []},
        {"url": "https://hooks.example.org/", "events": "conversion.started"},
    ],
)
def test_invalid_registrations_answer_400_in_the_error_shape(api, body):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) >= {"code", "message"}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_private_urls_are_refused_at_registration(api, settings, url):
    settings.TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS = False
    response = api.post(URL, {"url": url}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "webhook_url_refused"
    assert "public addresses" in body["message"]


def test_rotating_the_secret_shows_the_new_one_once(api, register):
    created = register("https://hooks.example.org/")
    response = api.post(f"{URL}{created['id']}/rotate-secret")
    assert response.status_code == 200
    rotated = response.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert rotated["secret_rotated_at"]
    assert "secret" not in api.get(f"{URL}{created['id']}").json()


def test_test_route_queues_a_webhook_test_delivery(
    api, register, django_capture_on_commit_callbacks
):
    created = register("https://hooks.example.org/", ["batch.completed"])
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(f"{URL}{created['id']}/test")
    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get(pk=response.json()["delivery_id"])
    assert delivery.event.type == "webhook.test"
    assert response.json()["webhook_id"] == delivery.event.message_id
    assert delivery.state == "PENDING" and delivery.manual
    assert len(callbacks) == 1  # its task is sent once committed


def test_delete_removes_the_endpoint(api, register):
    created = register("https://hooks.example.org/")
    assert api.delete(f"{URL}{created['id']}").status_code == 204
    assert api.get(f"{URL}{created['id']}").status_code == 404
    assert api.get(URL).json()["results"] == []


def test_deliveries_are_listed_newest_first_and_redelivered_with_the_same_webhook_id(api, register):
    created = register("https://hooks.example.org/")
    first = api.post(f"{URL}{created['id']}/test").json()
    second = api.post(f"{URL}{created['id']}/test").json()

    page = api.get(f"{URL}{created['id']}/deliveries").json()
    assert page["count"] == 2
    assert [row["id"] for row in page["results"]] == [second["delivery_id"], first["delivery_id"]]
    row = page["results"][1]
    assert row["event_type"] == "webhook.test" and row["state"] == "PENDING"
    assert row["payload"]["type"] == "webhook.test" and row["attempts"] == []

    again = api.post(f"{URL}{created['id']}/deliveries/{first['delivery_id']}/redeliver")
    assert again.status_code == 202
    assert again.json()["webhook_id"] == first["webhook_id"]
    assert again.json()["delivery_id"] != first["delivery_id"]
    assert WebhookEvent.objects.count() == 2


def test_anonymous_callers_get_401(anon_api):
    response = anon_api.post(URL, {"url": "https://hooks.example.org/"}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_another_users_webhook_is_404(api, other_api, register):
    created = register("https://hooks.example.org/")
    delivery = api.post(f"{URL}{created['id']}/test").json()["delivery_id"]
    for method, path in [
        ("get", f"{URL}{created['id']}"),
        ("delete", f"{URL}{created['id']}"),
        ("post", f"{URL}{created['id']}/rotate-secret"),
        ("post", f"{URL}{created['id']}/test"),
        ("get", f"{URL}{created['id']}/deliveries"),
        ("post", f"{URL}{created['id']}/deliveries/{delivery}/redeliver"),
    ]:
        response = getattr(other_api, method)(path)
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "not_found"
    assert other_api.get(URL).json()["results"] == []
    assert api.get(f"{URL}{created['id']}").status_code == 200


def test_a_delivery_of_another_endpoint_is_404(api, register):
    one = register("https://hooks.example.org/one")
    two = register("https://hooks.example.org/two")
    delivery = api.post(f"{URL}{one['id']}/test").json()["delivery_id"]
    response = api.post(f"{URL}{two['id']}/deliveries/{delivery}/redeliver")
    assert response.status_code == 404
