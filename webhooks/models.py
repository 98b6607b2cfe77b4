"""Webhooks: the endpoints users register, the events written to the outbox inside the
transaction of each change, one delivery per endpoint and event, and each attempt's log."""

import uuid

from django.conf import settings
from django.db import models


class EventType(models.TextChoices):
    CONVERSION_STARTED = "conversion.started"
    CONVERSION_PROGRESS = "conversion.progress"
    CONVERSION_SUCCEEDED = "conversion.succeeded"
    CONVERSION_FAILED = "conversion.failed"
    CONVERSION_CANCELLED = "conversion.cancelled"
    BATCH_COMPLETED = "batch.completed"
    # Sent by POST /webhooks/{id}/test only; nobody subscribes to it.
    WEBHOOK_TEST = "webhook.test"


# What an endpoint may subscribe to.
SUBSCRIBABLE_EVENTS = tuple(t.value for t in EventType if t != EventType.WEBHOOK_TEST)
# What an endpoint registered without `events` receives: every event but the opt-in ones.
OPT_IN_EVENTS = (EventType.CONVERSION_PROGRESS.value,)
DEFAULT_EVENTS = tuple(t for t in SUBSCRIBABLE_EVENTS if t not in OPT_IN_EVENTS)


class WebhookEndpoint(models.Model):
    """A URL of a user's that receives the events it subscribes to, signed with its secret."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=255, blank=True)
    # Event types (EventType values) this endpoint receives.
    events = models.JSONField(default=list)
    # Standard Webhooks' `whsec_<base64>`: kept to sign, shown to the user only when created
    # or rotated.
    secret = models.CharField(max_length=100, editable=False)
    # False once the endpoint answered 410 Gone: it gets no new events (a test or a
    # redelivery still goes, and a 2xx to one enables it again).
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("owner", "is_active"))]

    def __str__(self) -> str:
        return self.url


class WebhookEvent(models.Model):
    """One event, written in the transaction of the change it describes (the outbox)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_events"
    )
    type = models.CharField(max_length=64, choices=EventType.choices)
    # The body every delivery sends: {"type", "timestamp", "data"}.
    payload = models.JSONField()
    # Events that must be told once (a conversion's start, each stage of it) carry a key;
    # a second event with the same key is not written.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.type} {self.message_id}"

    @property
    def message_id(self) -> str:
        """The `webhook-id` header: the same on every attempt and redelivery."""
        return f"msg_{self.id.hex}"


class WebhookDelivery(models.Model):
    """An event on its way to one endpoint: retried on a schedule until a 2xx, a 410 or the
    end of the schedule. A worker sends an attempt only while it holds the lease."""

    class State(models.TextChoices):
        PENDING = "PENDING"
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # A test or a redelivery: asked for by a person, so sent to a disabled endpoint too.
    manual = models.BooleanField(default=False)
    redelivery_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="redeliveries"
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the next attempt is due (null once finished).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the task for the next attempt was sent (or, for a delayed one, is due to arrive):
    # the sweep sends it again only if it has not been taken some time after that.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # The attempt in flight: who holds it, until when (a killed worker's lease runs out).
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=("state", "next_attempt_at"))]

    def __str__(self) -> str:
        return f"{self.event.type} to {self.endpoint.url} ({self.state})"


class WebhookAttempt(models.Model):
    """One try of a delivery: what the endpoint answered, or why nothing was."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    # Null while in flight; an attempt whose worker died is closed by the next one.
    finished_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # The first kilobyte of the answer's body.
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ("number",)
        constraints = [
            models.UniqueConstraint(fields=("delivery", "number"), name="one_attempt_per_number")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error or '...'}"
