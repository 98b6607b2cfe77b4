"""The outbox: an event and one delivery per subscribed endpoint, written inside the
transaction that makes the change (the conversion app's signals are sent there), so both
are committed or neither. Once committed, each delivery's task is sent; the sweep sends any
whose task was lost (webhooks.services.delivery)."""

import functools
import json
import logging

from celery import current_app
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from webhooks.models import EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent
from webhooks.selectors import (
    conversion_event_data,
    conversions_of_owner,
    webhook_endpoints_subscribed,
)

logger = logging.getLogger(__name__)

DELIVER_TASK_NAME = "webhooks.tasks.deliver_webhook"

# conversion_changed's transitions that are told; the others (create, reclaim, requeue) are
# not changes a user sees.
TRANSITION_EVENTS = {
    "claim": EventType.CONVERSION_STARTED,
    "succeed": EventType.CONVERSION_SUCCEEDED,
    "fail": EventType.CONVERSION_FAILED,
    "cancel": EventType.CONVERSION_CANCELLED,
}


def webhook_event_record(
    *,
    owner_id,
    event_type: str,
    data: dict,
    dedupe_key: str | None = None,
    endpoints: list[WebhookEndpoint] | None = None,
    manual: bool = False,
) -> WebhookEvent | None:
    """Write the event and a delivery to each of `endpoints` (default: the owner's active
    endpoints subscribed to `event_type`) in the caller's transaction, and send the
    deliveries' tasks once it commits. None when nobody is subscribed or `dedupe_key` was
    already told."""
    if endpoints is None:
        endpoints = webhook_endpoints_subscribed(owner_id=owner_id, event_type=event_type)
    if not endpoints:
        return None
    if dedupe_key and WebhookEvent.objects.filter(dedupe_key=dedupe_key).exists():
        return None
    now = timezone.now()
    payload = {
        "type": str(event_type),
        "timestamp": now.isoformat(),
        # As JSON says it (UUIDs, datetimes), so every attempt sends the same body.
        "data": json.loads(json.dumps(data, cls=DjangoJSONEncoder)),
    }
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                owner_id=owner_id, type=event_type, payload=payload, dedupe_key=dedupe_key
            )
    except IntegrityError:
        if dedupe_key:
            return None  # told by a concurrent transaction
        raise
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            event=event,
            endpoint=endpoint,
            manual=manual,
            next_attempt_at=now,
            dispatched_at=now,
        )
        for endpoint in endpoints
    )
    ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: webhook_deliveries_dispatch(ids))
    return event


def webhook_deliveries_dispatch(delivery_ids, *, countdown: float | None = None) -> int:
    """Send the delivery task of each id to the default queue; returns how many were sent.
    Never raises: with the broker down the deliveries stay due and the sweep sends them."""
    sent = 0
    for delivery_id in delivery_ids:
        try:
            current_app.send_task(
                DELIVER_TASK_NAME,
                args=[str(delivery_id)],
                queue=settings.CELERY_TASK_DEFAULT_QUEUE,
                countdown=countdown,
            )
        except Exception as exc:  # the broker is down or refuses: the sweep will retry
            logger.warning("Could not send webhook delivery %s: %s", delivery_id, exc)
            break
        sent += 1
    return sent


def _receiver(record):
    """A receiver of the conversion app's signals, run inside its transaction.

    A database error is raised, so the change and its event commit together or not at all
    (the conversion app retries transient ones). Any other error is a bug of this app: it
    is logged, and its writes undone (a savepoint), rather than allowed to fail a conversion.
    """

    @functools.wraps(record)
    def receive(sender, **kwargs):
        try:
            with transaction.atomic():
                record(**kwargs)
        except DatabaseError:
            raise
        except Exception:
            logger.exception("Webhook event of %s not recorded", kwargs)

    return receive


def _conversion_event(task_id, event_type: str, dedupe_key: str, **told) -> None:
    found = conversion_event_data(task_id=task_id)
    if found is None:
        return
    owner_id, data = found
    data |= told
    webhook_event_record(owner_id=owner_id, event_type=event_type, data=data, dedupe_key=dedupe_key)


@_receiver
def on_conversion_changed(*, task_id, transition, **kwargs) -> None:
    event_type = TRANSITION_EVENTS.get(transition)
    if event_type is not None:
        _conversion_event(task_id, event_type, f"{event_type.value}:{task_id}")


@_receiver
def on_conversions_changed(*, owner_id, task_ids, transition, **kwargs) -> None:
    """Many conversions changed together: nothing is read per conversion unless the owner
    has an endpoint subscribed to the event."""
    event_type = TRANSITION_EVENTS.get(transition)
    if event_type is None:
        return
    endpoints = webhook_endpoints_subscribed(owner_id=owner_id, event_type=event_type)
    if not endpoints:
        return
    for task_id in conversions_of_owner(owner_id=owner_id, task_ids=list(task_ids)):
        _conversion_event(task_id, event_type, f"{event_type.value}:{task_id}")


@_receiver
def on_conversion_stage_changed(*, task_id, stage, progress, **kwargs) -> None:
    # Once per stage: a run that takes over from a dead one enters the same stages again.
    event_type, status = EventType.CONVERSION_PROGRESS, str(stage)
    key = f"{event_type.value}:{task_id}:{status}"
    _conversion_event(task_id, event_type, key, status=status, progress=progress)


@_receiver
def on_batch_completed(*, batch_id, owner_id, summary, **kwargs) -> None:
    event_type = EventType.BATCH_COMPLETED
    webhook_event_record(
        owner_id=owner_id,
        event_type=event_type,
        data=summary,
        # Once per completion: a retried batch that completes again is told again.
        dedupe_key=f"{event_type.value}:{batch_id}:{summary.get('finished_at')}",
    )
