"""Sending a delivery: one attempt at a time under a lease, signed as the Standard Webhooks
spec says, retried on TAGGER_WEBHOOK_RETRY_SECONDS until a 2xx, a 410 (the endpoint is
disabled) or the end of the schedule; the sweep re-sends deliveries whose task was lost."""

import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import httpx2
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.selectors import webhook_deliveries_due
from webhooks.services.addresses import BlockedUrl, webhook_url_target
from webhooks.services.outbox import webhook_deliveries_dispatch

logger = logging.getLogger(__name__)

State = WebhookDelivery.State
EXCERPT_BYTES = 1024
JITTER = 0.2
# A retry due within this is sent as a delayed task; later ones are left to the sweep (a
# delayed message must arrive well within the broker's visibility timeout).
COUNTDOWN_MAX_SECONDS = 600
# A task may arrive a little before its countdown ends.
EARLY_SECONDS = 1.0
SWEEP_BATCH = 500
LOST = "No answer recorded: the worker sending this attempt stopped; sent again."
USER_AGENT = "tagger-webhooks/1 (Standard Webhooks)"


@dataclass(frozen=True)
class Answer:
    status_code: int | None = None
    duration_ms: int | None = None
    excerpt: str = ""
    error: str = ""


def webhook_delivery_attempt(*, delivery_id) -> str:
    """Send the next attempt of delivery `delivery_id` if it is due and nobody holds it;
    returns what happened ("succeeded", "retry", "failed", "skipped")."""
    token = uuid.uuid4()
    attempt = _claim(delivery_id, token)
    if attempt is None:
        return "skipped"
    delivery = attempt.delivery
    endpoint = delivery.endpoint
    if not endpoint.is_active and not delivery.manual:
        answer = Answer(error=f"The endpoint is disabled: {endpoint.disabled_reason}")
        return _finish(attempt, token, answer, retry=False)
    answer = _send(endpoint, delivery.event.message_id, delivery.event.payload)
    if answer.status_code is not None and 200 <= answer.status_code < 300:
        return _finish(attempt, token, answer, succeeded=True)
    if answer.status_code == 410:
        return _finish(
            attempt, token, answer, retry=False, disable="The endpoint answered 410 Gone."
        )
    return _finish(attempt, token, answer, retry=True)


def _claim(delivery_id, token) -> WebhookAttempt | None:
    """Take the delivery for one attempt (a conditional UPDATE: due, pending, and no live
    lease), and open that attempt's log row; None when it is not ours to send."""
    now = timezone.now()
    with transaction.atomic():
        claimed = (
            WebhookDelivery.objects.filter(
                pk=delivery_id,
                state=State.PENDING,
                next_attempt_at__lte=now + timedelta(seconds=EARLY_SECONDS),
            )
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(
                lease_token=token,
                lease_until=now + timedelta(seconds=settings.TAGGER_WEBHOOK_LEASE_SECONDS),
                attempts=F("attempts") + 1,
            )
        )
        if not claimed:
            return None
        delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
        # An attempt still open was its sender's last act: that worker died.
        WebhookAttempt.objects.filter(delivery=delivery, finished_at__isnull=True).update(
            finished_at=now, error=LOST
        )
        return WebhookAttempt.objects.create(
            delivery=delivery, number=delivery.attempts, started_at=now
        )


def _finish(
    attempt: WebhookAttempt,
    token,
    answer: Answer,
    *,
    succeeded: bool = False,
    retry: bool = False,
    disable: str = "",
) -> str:
    """Record the attempt and the delivery's next step, only while our lease holds."""
    delivery = attempt.delivery
    now = timezone.now()
    schedule = settings.TAGGER_WEBHOOK_RETRY_SECONDS
    fields = {
        "lease_token": None,
        "lease_until": None,
        "last_status_code": answer.status_code,
        "last_error": answer.error,
    }
    delay = None
    if succeeded:
        outcome = "succeeded"
        fields |= {"state": State.SUCCEEDED, "finished_at": now, "next_attempt_at": None}
    elif retry and delivery.attempts <= len(schedule):
        outcome = "retry"
        delay = schedule[delivery.attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)
        due = now + timedelta(seconds=delay)
        # A delayed task is sent below for a near retry; a far one is the sweep's.
        dispatched_at = due if delay <= COUNTDOWN_MAX_SECONDS else None
        fields |= {"next_attempt_at": due, "dispatched_at": dispatched_at}
    else:
        outcome = "failed"
        fields |= {"state": State.FAILED, "finished_at": now, "next_attempt_at": None}
    with transaction.atomic():
        updated = WebhookDelivery.objects.filter(pk=delivery.pk, lease_token=token).update(**fields)
        WebhookAttempt.objects.filter(pk=attempt.pk, finished_at__isnull=True).update(
            finished_at=now,
            status_code=answer.status_code,
            duration_ms=answer.duration_ms,
            response_excerpt=answer.excerpt,
            error=answer.error,
        )
        if updated and disable:
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
                is_active=False, disabled_reason=disable, disabled_at=now
            )
        elif updated and succeeded and not delivery.endpoint.is_active:
            # Someone sent a test or a redelivery to a disabled endpoint, and it answered.
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
                is_active=True, disabled_reason="", disabled_at=None
            )
    if not updated:
        logger.warning(
            "Webhook delivery %s: lease lost during attempt %s", delivery.pk, attempt.number
        )
        return "skipped"
    if delay is not None and delay <= COUNTDOWN_MAX_SECONDS:
        webhook_deliveries_dispatch([delivery.pk], countdown=delay)
    return outcome


def _send(endpoint: WebhookEndpoint, message_id: str, payload: dict) -> Answer:
    """POST the payload to the endpoint, signed; never follows a redirect."""
    body = json.dumps(payload, separators=(",", ":"))
    started = time.monotonic()
    try:
        target = webhook_url_target(endpoint.url)
    except BlockedUrl as exc:
        return Answer(error=exc.message)
    moment = timezone.now()
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(endpoint.secret).sign(message_id, moment, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    url, extensions = httpx2.URL(endpoint.url), {}
    if target.address is not None:
        # Connect to the address that was checked, naming the host as the URL does.
        headers["host"] = url.netloc.decode("ascii")
        url = url.copy_with(host=target.address)
        if target.scheme == "https":
            extensions["sni_hostname"] = target.host
    timeout = settings.TAGGER_WEBHOOK_TIMEOUT_SECONDS
    try:
        with (
            httpx2.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST", url, content=body.encode(), headers=headers, extensions=extensions
            ) as response,
        ):
            excerpt = _excerpt(response, deadline=started + timeout)
    except httpx2.TimeoutException:
        return Answer(duration_ms=_ms(started), error=f"No answer within {timeout:g} s.")
    except httpx2.HTTPError as exc:
        return Answer(duration_ms=_ms(started), error=f"{type(exc).__name__}: {exc}")
    error = ""
    if 300 <= response.status_code < 400:
        location = response.headers.get("location", "")
        error = f"Redirects are not followed (to {location or 'nowhere'})."
    elif not 200 <= response.status_code < 300:
        error = f"The endpoint answered {response.status_code}."
    return Answer(response.status_code, _ms(started), excerpt, error)


def _excerpt(response, *, deadline: float) -> str:
    """The first kilobyte of the body, or what came of it by `deadline` (a body that
    trickles must not outlast the lease); the rest is not read."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= EXCERPT_BYTES or time.monotonic() > deadline:
            break
    return data[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def webhook_deliveries_sweep() -> int:
    """Send again the task of each due delivery that was not taken in time (its task was
    lost with a killed worker or never reached a broker that was down, or its retry is
    too far off for a delayed task); returns how many were sent."""
    now = timezone.now()
    due = webhook_deliveries_due(
        now=now, grace_seconds=settings.TAGGER_WEBHOOK_SWEEP_GRACE_SECONDS, limit=SWEEP_BATCH
    )
    if not due:
        return 0
    WebhookDelivery.objects.filter(pk__in=due).update(dispatched_at=now)
    return webhook_deliveries_dispatch(due)


@transaction.atomic
def webhook_delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery's event to its endpoint again (the same webhook-id), as a new
    delivery with a log of its own; sent even to a disabled endpoint."""
    now = timezone.now()
    again = WebhookDelivery.objects.create(
        event_id=delivery.event_id,
        endpoint_id=delivery.endpoint_id,
        manual=True,
        redelivery_of=delivery,
        next_attempt_at=now,
        dispatched_at=now,
    )
    transaction.on_commit(lambda: webhook_deliveries_dispatch([again.pk]))
    return again
