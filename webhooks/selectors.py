"""Reads: the caller's endpoints and deliveries, and what the outbox and the sweep need."""

from datetime import datetime, timedelta

from django.db.models import Prefetch, Q, QuerySet

from geoconvert.models import Conversion
from tagger.errors import NotFound
from tagger.selectors import as_uuid
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


def webhook_endpoint_list(*, user) -> QuerySet[WebhookEndpoint]:
    """The caller's own endpoints, newest first."""
    return WebhookEndpoint.objects.filter(owner=user)


def webhook_endpoint_get(*, user, endpoint_id) -> WebhookEndpoint:
    """One of the caller's endpoints; a foreign or unknown id is the same 404."""
    endpoint_uuid = as_uuid(endpoint_id)
    endpoint = endpoint_uuid and webhook_endpoint_list(user=user).filter(pk=endpoint_uuid).first()
    if not endpoint:
        raise NotFound("Webhook not found.")
    return endpoint


def webhook_delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """An endpoint's deliveries, newest first, with their event and attempts."""
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related(Prefetch("log", queryset=WebhookAttempt.objects.order_by("number")))
        .order_by("-created_at", "-pk")
    )


def webhook_delivery_get(*, endpoint: WebhookEndpoint, delivery_id) -> WebhookDelivery:
    delivery_uuid = as_uuid(delivery_id)
    delivery = (
        delivery_uuid and webhook_delivery_list(endpoint=endpoint).filter(pk=delivery_uuid).first()
    )
    if not delivery:
        raise NotFound("Delivery not found.")
    return delivery


def conversions_of_owner(*, owner_id, task_ids: list) -> list:
    """Of `task_ids`, those of the owner's conversions that still exist."""
    found = []
    for start in range(0, len(task_ids), 500):
        found.extend(
            Conversion.objects.filter(
                owner_id=owner_id, pk__in=task_ids[start : start + 500]
            ).values_list("pk", flat=True)
        )
    return found


def webhook_endpoints_subscribed(*, owner_id, event_type: str) -> list[WebhookEndpoint]:
    """The owner's active endpoints that receive `event_type` (a user has a few endpoints;
    the list of events is read here rather than by a JSON lookup SQLite lacks)."""
    endpoints = WebhookEndpoint.objects.filter(owner_id=owner_id, is_active=True)
    return [endpoint for endpoint in endpoints if event_type in endpoint.events]


def webhook_deliveries_due(*, now: datetime, grace_seconds: float, limit: int) -> list:
    """Ids of pending deliveries that are due, not held by a live lease, and whose task was
    not sent within the last `grace_seconds` (none was, or it was lost)."""
    sent_before = now - timedelta(seconds=grace_seconds)
    rows = (
        WebhookDelivery.objects.filter(
            state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=sent_before))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)
    )
    return list(rows[:limit])


def conversion_event_data(*, task_id) -> tuple[int, dict] | None:
    """The owner of conversion `task_id` and what a webhook tells of it; None if it is gone."""
    conversion = Conversion.objects.filter(pk=task_id).first()
    if conversion is None:
        return None
    success = conversion.state == Conversion.State.SUCCESS
    failure = conversion.state == Conversion.State.FAILURE
    batch_id = getattr(conversion, "batch_id", None)
    return conversion.owner_id, {
        "task_id": str(conversion.task_id),
        "item_id": str(conversion.item_id),
        "batch_id": str(batch_id) if batch_id is not None else None,
        "state": conversion.state,
        "status": str(conversion.stage),
        "progress": conversion.progress,
        "error": (conversion.error or None) if failure else None,
        "result": conversion.result if success else None,
        "attempts": conversion.attempts,
        "created_at": _iso(conversion.created_at),
        "started_at": _iso(conversion.started_at),
        "finished_at": _iso(conversion.finished_at),
    }


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None
