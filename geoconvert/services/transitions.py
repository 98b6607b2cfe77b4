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

from geoconvert.models import Conversion, Stage
from geoconvert.services.events import conversion_event_publish
from geoconvert.services.metrics import conversion_metrics_record
from geoconvert.signals import conversion_changed

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
    record_backend_state(conversion.task_id, State.PENDING, stage_meta(Stage.QUEUED, 0))
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
