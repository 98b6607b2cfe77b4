"""What the API, the admin and the management commands call: start, cancel, retry.

The rules (one active conversion per item, what may be cancelled or retried) live here;
the state changes themselves go through geoconvert.services.transitions.
"""

import logging
from functools import partial

from celery import current_app
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from geoconvert import raster
from geoconvert.models import Conversion
from geoconvert.services.engine import georef_from_params
from geoconvert.services.transitions import (
    DESCRIBE_TASK_NAME,
    TASK_NAME,
    conversion_create,
    conversion_transition,
)
from tagger.errors import ApplicationError, Conflict, ServiceUnavailable
from tagger.models import TreeItem

logger = logging.getLogger(__name__)

QUEUE_UNAVAILABLE = (
    "The task queue is unavailable, so the conversion was not started. Try again shortly."
)


def conversion_start(
    *,
    item: TreeItem,
    target_crs: str | None = None,
    crs: str | None = None,
    bounds: list[float] | None = None,
    retry_of: Conversion | None = None,
) -> tuple[Conversion, bool]:
    """Queue a conversion of `item`, or return the one already queued or running.

    Returns (conversion, created). The task is sent once the transaction commits; if the
    broker cannot take it, the conversion is marked FAILURE and ServiceUnavailable raised,
    so nothing is left PENDING that no worker will ever see.
    """
    if item.is_folder:
        raise ApplicationError("A folder cannot be converted; choose a file.", code="not_a_file")
    params = {
        k: v
        for k, v in {"target_crs": target_crs, "crs": crs, "bounds": bounds}.items()
        if v is not None
    }
    _check_request(params)
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
            item=item, owner_id=item.owner_id, params=params, retry_of=retry_of
        )
        # Sent only once the row is committed, so a worker never receives a task id it cannot
        # find. A broker failure raised here reaches the caller after the commit.
        transaction.on_commit(partial(conversion_dispatch, conversion))
    return conversion, True


def _check_request(params: dict) -> None:
    for code, request in (
        ("invalid_crs", {"target_crs": params.get("target_crs")}),
        ("invalid_georef", {"georef": georef_from_params(params)}),
    ):
        try:
            raster.check_request(**request)
        except raster.RasterError as exc:
            raise ApplicationError(str(exc), code=code) from None


def conversion_dispatch(conversion: Conversion) -> None:
    """Send the conversion's task to the broker (by name: the services never import the
    task module). If the broker cannot take it, the conversion ends FAILURE."""
    try:
        current_app.send_task(
            TASK_NAME,
            args=[str(conversion.task_id)],
            task_id=str(conversion.task_id),
            # Celery sends this when the conversion's task returns (SUCCESS) only.
            link=current_app.signature(
                DESCRIBE_TASK_NAME, args=[str(conversion.item_id)], immutable=True
            ),
        )
    except (BrokerError, OSError) as exc:
        logger.warning("Could not queue conversion %s: %s", conversion.task_id, exc)
        conversion_transition(
            conversion.task_id, "fail", error=QUEUE_UNAVAILABLE, finished_at=timezone.now()
        )
        raise ServiceUnavailable(QUEUE_UNAVAILABLE, code="queue_unavailable") from exc


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
    new, created = conversion_start(item=conversion.item, retry_of=conversion, **conversion.params)
    if not created:
        raise Conflict(
            "A conversion of this item is already queued or running.",
            code="already_active",
            extra={"task_id": str(new.task_id), "state": new.state},
        )
    return new
