"""The state machine of a conversion: every way its state can change, on one screen.

    (request)  --create-->  PENDING
    PENDING    --claim-->   PROGRESS     a worker's run takes it
    PROGRESS   --reclaim--> PROGRESS     a new run takes over from one that died
    PROGRESS   --requeue--> PENDING      the reaper: its worker went silent, attempts left
    PROGRESS   --succeed--> SUCCESS      the run published the COG
    PENDING or PROGRESS --fail-->   FAILURE
    PENDING or PROGRESS --cancel--> CANCELLED

Each change is one conditional UPDATE (it matches only from the allowed states, plus what
the caller requires: the run's claim, the heartbeat it read) and, in the same transaction,
its mirror in django-celery-results, so the admin and Flower agree with the API: both are
committed, or neither. Once committed, each change is published to the owner's event stream
(geoconvert.services.events); inside the transaction, geoconvert.signals.conversion_changed
tells the other apps (the webhooks' outbox).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from celery import current_app
from django.db import DatabaseError, transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

from geoconvert.models import Conversion
from geoconvert.services.events import conversion_event_publish, conversion_events_publish
from geoconvert.services.metrics import (
    conversion_metrics_record,
    conversions_unstarted_end_record,
)
from geoconvert.signals import conversion_changed, conversions_changed

logger = logging.getLogger(__name__)

TASK_NAME = "geoconvert.tasks.convert_to_geo_raster"
# The follow-up of a successful conversion: the COG's statistics and thumbnail.
DESCRIBE_TASK_NAME = "geoconvert.tasks.describe_geo_raster"

State = Conversion.State


class Transition(NamedTuple):
    sources: tuple[str, ...]
    target: str


TRANSITIONS = {
    "claim": Transition((State.PENDING,), State.PROGRESS),
    "reclaim": Transition((State.PROGRESS,), State.PROGRESS),
    "requeue": Transition((State.PROGRESS,), State.PENDING),
    "succeed": Transition((State.PROGRESS,), State.SUCCESS),
    "fail": Transition((State.PENDING, State.PROGRESS), State.FAILURE),
    "cancel": Transition((State.PENDING, State.PROGRESS), State.CANCELLED),
}

# Called with (state, meta) to write the mirror; the default writes it as the services do.
Mirror = Callable[[str, dict], None]


def conversion_create(**fields) -> Conversion:
    """The new conversion, PENDING, and its mirror (inside the caller's transaction)."""
    conversion = Conversion.objects.create(**fields)
    record_backend_state(conversion.task_id, State.PENDING, stage_meta(conversion.stage, 0))
    conversion_event_publish(conversion.task_id)
    conversion_changed.send(sender=Conversion, task_id=conversion.task_id, transition="create")
    return conversion


def conversion_transition(
    task_id, name: str, *, where: dict | None = None, mirror: Mirror | None = None, **fields
) -> int:
    """Apply transition `name` to conversion `task_id` if it is in one of the transition's
    source states and matches `where`, setting `fields` too; returns the rows changed
    (0: not allowed from the state it is in, or `where` no longer holds)."""
    transition = TRANSITIONS[name]
    with transaction.atomic():
        updated = Conversion.objects.filter(
            pk=task_id, state__in=transition.sources, **(where or {})
        ).update(state=transition.target, **fields)
        if updated:
            meta = _meta(task_id, transition.target, fields)
            if mirror is None:
                record_backend_state(task_id, transition.target, meta)
            else:
                mirror_softly(task_id, mirror, transition.target, meta)
            conversion_metrics_record(task_id, name, transition.target)
            conversion_event_publish(task_id)
            conversion_changed.send(sender=Conversion, task_id=task_id, transition=name)
    return updated


def conversions_cancel_waiting(task_ids: list) -> list:
    """The cancel transition for many conversions of one user still PENDING at once (a
    batch's waiting members): one UPDATE, their mirrors and counts in bulk, each one's event,
    one conversions_changed.
    Returns the ids cancelled (those no longer PENDING are left as they are)."""
    now = timezone.now()
    cancelled = []
    with transaction.atomic():
        for start in range(0, len(task_ids), 500):
            chunk = list(
                Conversion.objects.select_for_update()
                .filter(pk__in=task_ids[start : start + 500], state=State.PENDING)
                .order_by("pk")  # every multi-row lock in one order
                .values_list("pk", flat=True)
            )
            if not chunk:
                continue
            Conversion.objects.filter(pk__in=chunk, state=State.PENDING).update(
                state=State.CANCELLED, cancel_requested=True, finished_at=now
            )
            cancelled.extend(chunk)
        _mirror_bulk(cancelled, State.CANCELLED)
        conversions_unstarted_end_record(State.CANCELLED, len(cancelled))
        conversion_events_publish(cancelled)
        if cancelled:
            owner_id = Conversion.objects.values_list("owner_id", flat=True).get(pk=cancelled[0])
            conversions_changed.send(
                sender=Conversion, owner_id=owner_id, task_ids=cancelled, transition="cancel"
            )
    return cancelled


def _mirror_bulk(task_ids: list, state: str) -> None:
    """The mirrors of conversions that ended in `state` before they started, for those that
    have one (a batch member gets its mirror when it is sent): copies of the first one's
    row, as the backend itself wrote it."""
    mirrored = []
    for start in range(0, len(task_ids), 500):
        mirrored.extend(
            TaskResult.objects.filter(
                task_id__in=[str(pk) for pk in task_ids[start : start + 500]]
            ).values_list("task_id", flat=True)
        )
    if not mirrored:
        return
    first = mirrored[0]
    stage, progress = Conversion.objects.values_list("stage", "progress").get(pk=first)
    record_backend_state(first, state, stage_meta(stage, progress))
    template = TaskResult.objects.get(task_id=first)
    for start in range(1, len(mirrored), 500):
        TaskResult.objects.filter(task_id__in=mirrored[start : start + 500]).update(
            status=template.status, result=template.result, date_done=template.date_done
        )


def _meta(task_id, state: str, fields: dict) -> dict:
    if state == State.SUCCESS:
        return fields["result"]
    if "stage" in fields and "progress" in fields:
        stage, progress = fields["stage"], fields["progress"]
    else:
        stage, progress = Conversion.objects.values_list("stage", "progress").get(pk=task_id)
    error = fields.get("error")
    return stage_meta(stage, progress, error=error) if error else stage_meta(stage, progress)


def mirror_softly(task_id, mirror: Mirror, state: str, meta: dict) -> None:
    """A run's own mirror: the conversion row is the truth, so a failed copy (the database
    briefly unavailable) is logged rather than allowed to undo the transition or fail the
    run. In a savepoint, so that inside a transaction the failure leaves it usable."""
    try:
        with transaction.atomic():
            mirror(state, meta)
    except DatabaseError as exc:
        logger.warning("Could not mirror %s of %s into the result backend: %s", state, task_id, exc)


def stage_meta(stage: str, progress: int, **extra) -> dict:
    return {"stage": str(stage), "progress": progress, **extra}


def record_backend_state(task_id, state: str, meta: dict) -> None:
    """Mirror a state into django-celery-results, so the admin and Flower agree with the API."""
    request = _BackendRequest(task=TASK_NAME, args=[str(task_id)], kwargs={})
    current_app.backend.store_result(str(task_id), meta, state, request=request)


@dataclass
class _BackendRequest:
    task: str
    args: list
    kwargs: dict
    hostname: str | None = None
