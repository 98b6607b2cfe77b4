"""Registering, rotating, testing and removing a user's webhook endpoints."""

import base64
import secrets

from django.db import transaction
from django.utils import timezone

from tagger.errors import ApplicationError
from webhooks.models import (
    DEFAULT_EVENTS,
    SUBSCRIBABLE_EVENTS,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
)
from webhooks.services.addresses import webhook_url_target
from webhooks.services.outbox import webhook_event_record

SECRET_BYTES = 32


def webhook_secret_new() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def webhook_events_validate(events: list[str] | None) -> list[str]:
    """The event types, without repeats and in a stable order; DEFAULT_EVENTS when none are
    given. Raises an error listing the valid types for an unknown one."""
    if events is None:
        return list(DEFAULT_EVENTS)
    unknown = sorted({event for event in events if event not in SUBSCRIBABLE_EVENTS})
    if unknown or not events:
        what = f"Unknown event type(s): {', '.join(unknown)}." if unknown else "No event types."
        raise ApplicationError(
            f"{what} Valid event types: {', '.join(SUBSCRIBABLE_EVENTS)}.",
            code="invalid_event_type",
            extra={"valid_events": list(SUBSCRIBABLE_EVENTS)},
        )
    return [event for event in SUBSCRIBABLE_EVENTS if event in events]


@transaction.atomic
def webhook_endpoint_create(
    *, owner, url: str, events: list[str] | None = None, description: str = ""
) -> WebhookEndpoint:
    """A new endpoint with a new secret (the caller shows it once)."""
    webhook_url_target(url)
    return WebhookEndpoint.objects.create(
        owner=owner,
        url=url,
        events=webhook_events_validate(events),
        description=description,
        secret=webhook_secret_new(),
    )


@transaction.atomic
def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret, used from the next attempt on (the caller shows it once)."""
    endpoint.secret = webhook_secret_new()
    endpoint.secret_rotated_at = timezone.now()
    endpoint.save(update_fields=["secret", "secret_rotated_at"])
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """The endpoint, its deliveries and their log; nothing more is sent to it."""
    endpoint.delete()


@transaction.atomic
def webhook_endpoint_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event to this endpoint only, through the normal delivery path."""
    event = webhook_event_record(
        owner_id=endpoint.owner_id,
        event_type=EventType.WEBHOOK_TEST,
        data={"webhook_id": str(endpoint.pk), "message": "A test event from tagger."},
        endpoints=[endpoint],
        manual=True,
    )
    return event.deliveries.get()
