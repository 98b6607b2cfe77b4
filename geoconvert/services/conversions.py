"""What the API, the admin and the management commands call: start, cancel, retry.

The rules (one active conversion per item, what may be cancelled or retried) live here;
the state changes themselves go through geoconvert.services.transitions.
"""

import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from geoconvert import raster
from geoconvert.models import Conversion, ConversionBatch, Priority, Stage
from geoconvert.services.dispatch import conversion_submitted
from geoconvert.services.engine import georef_from_params
from geoconvert.services.transitions import conversion_create, conversion_transition
from tagger.errors import ApplicationError, Conflict
from tagger.models import TreeItem

logger = logging.getLogger(__name__)


def conversion_start(
    *,
    item: TreeItem,
    target_crs: str | None = None,
    crs: str | None = None,
    bounds: list[float] | None = None,
    priority: int = Priority.NORMAL,
    run_at=None,
    retry_of: Conversion | None = None,
    batch: ConversionBatch | None = None,
) -> tuple[Conversion, bool]:
    """Queue a conversion of `item`, or return the one already queued or running.

    Returns (conversion, created). Once the transaction commits, the dispatcher sends it to
    the broker if its owner's share has room (geoconvert.services.dispatch), or it waits in
    the database; a `run_at` in the future holds it until then. If the broker cannot take
    it, the conversion is marked FAILURE and ServiceUnavailable raised, so nothing is left
    PENDING that no worker will ever see.
    """
    if item.is_folder:
        raise ApplicationError("A folder cannot be converted; choose a file.", code="not_a_file")
    params = conversion_params(target_crs=target_crs, crs=crs, bounds=bounds)
    run_at = run_at_check(run_at)
    with transaction.atomic():
        # The row lock serialises concurrent requests for the same item (PostgreSQL); the
        # partial unique constraint is the guard on every database.
        item = TreeItem.objects.select_for_update().get(pk=item.pk)
        if item.object_type == TreeItem.ObjectType.GEO_RASTER_FILE:
            raise Conflict(
                "File is already converted to geo raster",
                code="already_converted",
                extra={
                    "item_id": str(item.pk),
                    "status": "COMPLETED",
                    "object_type": item.object_type,
                },
            )
        active = Conversion.objects.filter(item=item, state__in=Conversion.ACTIVE_STATES).first()
        if active is not None:
            return active, False
        conversion = conversion_create(
            item=item,
            owner_id=item.owner_id,
            params=params,
            retry_of=retry_of,
            batch=batch,
            priority=priority,
            run_at=run_at,
            stage=Stage.SCHEDULED if run_at else Stage.QUEUED,
        )
        if batch is not None:  # a member retried on its own reopens its finished batch
            ConversionBatch.objects.filter(
                pk=batch.pk, state=ConversionBatch.State.COMPLETED
            ).update(state=ConversionBatch.State.PROGRESS, finished_at=None)
        # Released only once the row is committed, so a worker never receives a task id it
        # cannot find. A broker failure raised here reaches the caller after the commit.
        transaction.on_commit(partial(conversion_submitted, conversion))
    return conversion, True


def conversion_params(**requested) -> dict:
    """What a request asks of the engine (checked), as a conversion's `params`."""
    params = {k: v for k, v in requested.items() if v is not None}
    _check_request(params)
    return params


def run_at_check(run_at):
    """`run_at` if it may be scheduled: None for a time already past (as soon as it may),
    an error beyond GEOCONVERT["MAX_SCHEDULE_DAYS"]."""
    if run_at is None:
        return None
    if timezone.is_naive(run_at):
        raise ApplicationError(
            "'run_at' needs a time zone, e.g. 2026-12-24T18:00:00Z.", code="invalid_run_at"
        )
    now = timezone.now()
    days = settings.GEOCONVERT["MAX_SCHEDULE_DAYS"]
    if run_at > now + timedelta(days=days):
        raise ApplicationError(
            f"'run_at' may be at most {days} days ahead.",
            code="invalid_run_at",
            extra={"max_run_at": (now + timedelta(days=days)).isoformat()},
        )
    return run_at if run_at > now else None


def _check_request(params: dict) -> None:
    for code, request in (
        ("invalid_crs", {"target_crs": params.get("target_crs")}),
        ("invalid_georef", {"georef": georef_from_params(params)}),
    ):
        try:
            raster.check_request(**request)
        except raster.RasterError as exc:
            raise ApplicationError(str(exc), code=code) from None


def conversion_cancel(*, conversion: Conversion) -> Conversion:
    """Cancel a queued conversion at once; ask a running one to stop.

    A running conversion notices the request at its next heartbeat or stage, removes its
    partial output and ends CANCELLED. Finished conversions cannot be cancelled.
    """
    with transaction.atomic():
        conversion = Conversion.objects.select_for_update().get(pk=conversion.pk)
        if conversion.is_finished:
            raise Conflict(
                f"Task already finished with state {conversion.state}; it cannot be cancelled.",
                code="task_finished",
                extra={
                    "task_id": str(conversion.task_id),
                    "state": conversion.state,
                    "status": conversion.stage,
                },
            )
        if conversion.state == Conversion.State.PENDING:
            conversion_transition(
                conversion.pk, "cancel", cancel_requested=True, finished_at=timezone.now()
            )
        else:
            Conversion.objects.filter(pk=conversion.pk).update(cancel_requested=True)
        conversion.refresh_from_db()
    return conversion


def conversion_retry(*, conversion: Conversion) -> Conversion:
    """Start a new attempt for a FAILED or CANCELLED conversion."""
    if conversion.state not in (Conversion.State.FAILURE, Conversion.State.CANCELLED):
        raise Conflict(
            f"Only failed or cancelled conversions can be retried; this one is {conversion.state}.",
            code="not_retryable",
            extra={"task_id": str(conversion.task_id), "state": conversion.state},
        )
    batch = conversion.batch
    if batch is not None and batch.state == ConversionBatch.State.CANCELLED:
        batch = None  # a cancelled batch stays cancelled: the new attempt runs on its own
    new, created = conversion_start(
        item=conversion.item,
        retry_of=conversion,
        batch=batch,
        priority=conversion.priority,
        **conversion.params,
    )
    if not created:
        raise Conflict(
            "A conversion of this item is already queued or running.",
            code="already_active",
            extra={"task_id": str(new.task_id), "state": new.state},
        )
    return new
