"""Fair sharing: which waiting conversions enter the broker, and when.

A conversion is created PENDING with `queued_at` null: it waits in the database. The
dispatcher (`conversions_release`) sends waiting conversions to the broker:

- at most GEOCONVERT["USER_MAX_QUEUED"] of a user's conversions are in the broker at once
  (sent and not yet started), so one user's 10,000 files never stand in front of everyone;
  the high lane has a share of its own (the same size), so a user's urgent conversion is
  never stuck behind their own batch;
- across users in turn, one conversion per user per round, the user whose conversion has
  waited longest first;
- a user's own in their lanes' order (high, normal, low), oldest first;
- not before a conversion's `run_at`.

It runs once a request's transaction commits, when a worker starts or ends a conversion (a
place in the broker is free), and from beat every few seconds (scheduled conversions, and
anything a crash left waiting). The database row is the truth: a conversion is sent only by
the transaction whose conditional UPDATE set its `queued_at`, and should a process die
between the send and the commit, the worker's claim rule (PENDING -> PROGRESS once) makes
the second message harmless.
"""

import logging
from dataclasses import asdict, dataclass, field

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from geoconvert.models import BROKER_PRIORITY, Conversion, Priority, Stage
from geoconvert.services.events import conversion_event_publish
from geoconvert.services.transitions import (
    DESCRIBE_TASK_NAME,
    TASK_NAME,
    conversion_transition,
    record_backend_state,
    stage_meta,
)
from tagger.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

QUEUE_UNAVAILABLE = (
    "The task queue is unavailable, so the conversion was not started. Try again shortly."
)

State = Conversion.State


@dataclass
class ReleaseSummary:
    sent: list[str] = field(default_factory=list)
    # Set when the broker refused a message: the pass stopped there (the rest stay waiting).
    broker_error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def waiting_conversions(now=None):
    """Conversions waiting in the database that may be sent now."""
    now = now or timezone.now()
    return Conversion.objects.filter(state=State.PENDING, queued_at__isnull=True).filter(
        Q(run_at__isnull=True) | Q(run_at__lte=now)
    )


def conversions_release(*, owner_ids=None, now=None) -> ReleaseSummary:
    """Send waiting conversions to the broker, as far as each user's share allows."""
    now = now or timezone.now()
    cap = settings.GEOCONVERT["USER_MAX_QUEUED"]
    waiting = waiting_conversions(now)
    if owner_ids is not None:
        waiting = waiting.filter(owner_id__in=list(owner_ids))
    # Users in turn, the one whose conversion has waited longest first.
    owners = list(
        waiting.order_by()
        .values("owner_id")
        .annotate(oldest=Min("created_at"))
        .order_by("oldest")
        .values_list("owner_id", flat=True)
    )
    summary = ReleaseSummary()
    if not owners:
        return summary
    in_broker = {
        (row["owner_id"], row["high"]): row["n"]
        for row in Conversion.objects.filter(
            owner_id__in=owners, state=State.PENDING, queued_at__isnull=False
        )
        .values("owner_id", high=Q(priority=Priority.HIGH))
        .annotate(n=Count("pk"))
    }
    queues = {}
    for owner in owners:
        queue = []
        for high, lanes in ((True, [Priority.HIGH]), (False, [Priority.NORMAL, Priority.LOW])):
            room = cap - in_broker.get((owner, high), 0)
            if room > 0:
                queue.extend(
                    waiting.filter(owner_id=owner, priority__in=lanes)
                    .order_by("priority", "created_at")
                    .values_list("pk", flat=True)[:room]
                )
        if queue:
            queues[owner] = queue
    # Round-robin: each user's first, then each user's second, ...
    for turn in range(max((len(q) for q in queues.values()), default=0)):
        for owner, queue in queues.items():
            if turn >= len(queue):
                continue
            try:
                if conversion_send(queue[turn], owner_id=owner, cap=cap):
                    summary.sent.append(str(queue[turn]))
            except (BrokerError, OSError) as exc:
                logger.warning("The broker refused a conversion; the rest wait: %s", exc)
                summary.broker_error = str(exc)
                return summary
    return summary


def conversion_send(task_id, *, owner_id, cap: int | None = None) -> bool:
    """Send one waiting conversion if its owner's share has room: claim it (set queued_at)
    and send it in one transaction, so a refused send leaves it waiting. Returns whether it
    was sent; raises the broker's error."""
    now = timezone.now()
    with transaction.atomic():
        # Serialises the dispatchers working on one user's share (PostgreSQL row lock).
        list(get_user_model().objects.select_for_update().filter(pk=owner_id).values("pk"))
        row = (
            Conversion.objects.filter(pk=task_id, state=State.PENDING, queued_at__isnull=True)
            .values("item_id", "priority", "stage", "batch_id")
            .first()
        )
        if row is None:
            return False
        if cap is not None and _in_broker(owner_id, high=row["priority"] == Priority.HIGH) >= cap:
            return False
        claimed = Conversion.objects.filter(
            pk=task_id, state=State.PENDING, queued_at__isnull=True
        ).update(queued_at=now, stage=Stage.QUEUED)
        if not claimed:
            return False
        if row["stage"] != Stage.QUEUED or row["batch_id"] is not None:
            # A scheduled conversion's stage changed; a batch member becomes a Celery task
            # only now (batch_start records neither its mirror nor an event).
            record_backend_state(task_id, State.PENDING, stage_meta(Stage.QUEUED, 0))
            conversion_event_publish(task_id)
        _send_task(task_id, item_id=row["item_id"], priority=row["priority"])
    return True


def _in_broker(owner_id, *, high: bool) -> int:
    """The owner's conversions sent and not yet started, in the high lane or the others."""
    lanes = Q(priority=Priority.HIGH) if high else ~Q(priority=Priority.HIGH)
    return Conversion.objects.filter(
        lanes, owner_id=owner_id, state=State.PENDING, queued_at__isnull=False
    ).count()


def _send_task(task_id, *, item_id, priority: int) -> None:
    """The conversion's message (by name: the services never import the task module)."""
    current_app.send_task(
        TASK_NAME,
        args=[str(task_id)],
        task_id=str(task_id),
        priority=BROKER_PRIORITY[priority],
        # Celery sends this when the conversion's task returns (SUCCESS) only.
        link=current_app.signature(DESCRIBE_TASK_NAME, args=[str(item_id)], immutable=True),
    )


def conversion_submitted(conversion: Conversion) -> None:
    """After a request's transaction has committed: release its owner's waiting
    conversions, which sends this one at once if the owner's share has room.

    If the broker refuses this conversion, it ends FAILURE and ServiceUnavailable is
    raised, so nothing is left PENDING that no worker will ever see and the client hears it
    now. A scheduled conversion, or one behind the owner's share, waits.
    """
    summary = conversions_release(owner_ids=[conversion.owner_id])
    if not summary.broker_error:
        return
    row = Conversion.objects.filter(pk=conversion.pk).values("queued_at", "run_at").first()
    if row is None or row["queued_at"] is not None:
        return
    if row["run_at"] is not None and row["run_at"] > timezone.now():
        return
    logger.warning("Could not queue conversion %s: %s", conversion.task_id, summary.broker_error)
    conversion_transition(
        conversion.task_id, "fail", error=QUEUE_UNAVAILABLE, finished_at=timezone.now()
    )
    raise ServiceUnavailable(QUEUE_UNAVAILABLE, code="queue_unavailable")


def conversions_release_softly(**kwargs) -> None:
    """conversions_release for a worker's on-commit hook: a failure is logged, never the
    worker's (beat's next pass sends what this one could not)."""
    try:
        conversions_release(**kwargs)
    except Exception:
        logger.exception("The dispatcher failed; beat's next pass will release the rest")


# A place in the broker is free once a conversion starts; an end may free one too (a queued
# conversion cancelled or failed).
_RELEASING = ("claim", "requeue", "succeed", "fail", "cancel")


def on_conversion_changed(sender, task_id, transition: str, **kwargs) -> None:
    """Once a start or an end commits, release waiting conversions (every user's: this is
    the dispatcher's pass "on every finish")."""
    if transition not in _RELEASING:
        return
    transaction.on_commit(conversions_release_softly)
