"""The Celery tasks of webhooks: each takes primitive ids and calls a service."""

from celery import shared_task

from webhooks.services.delivery import webhook_deliveries_sweep, webhook_delivery_attempt
from webhooks.services.outbox import DELIVER_TASK_NAME


@shared_task(name=DELIVER_TASK_NAME, acks_late=True)
def deliver_webhook(delivery_id: str) -> str:
    """Send the next attempt of a webhook delivery (its retries send this task again)."""
    return webhook_delivery_attempt(delivery_id=delivery_id)


@shared_task(name="webhooks.tasks.sweep_webhook_deliveries")
def sweep_webhook_deliveries() -> int:
    """Send again the deliveries whose task was lost or is due from far off (run by beat)."""
    return webhook_deliveries_sweep()
