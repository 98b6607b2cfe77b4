"""Folder batches: convert every file of a folder's subtree as one batch of ordinary
conversions, and follow, cancel and retry them together.

Members are created in bulk and wait in the database; the dispatcher sends them to the
broker as their owner's share allows (geoconvert.services.dispatch), so a 10,000-file
folder costs a few bulk INSERTs, not 10,000 messages, mirrors or events. A batch's state
moves on with its members (`on_conversion_changed`, inside each member's transition):
PROGRESS at the first start, COMPLETED when the last one ends.
"""

import logging
import uuid
from functools import partial

from django.db import transaction
from django.utils import timezone

from geoconvert.models import Conversion, ConversionBatch, Priority, Stage
from geoconvert.selectors import batch_summary
from geoconvert.services.conversions import conversion_cancel, conversion_params, run_at_check
from geoconvert.services.db import retrying_db
from geoconvert.services.dispatch import conversions_release_softly
from geoconvert.services.transitions import conversions_cancel_waiting
from geoconvert.signals import batch_completed
from tagger.errors import ApplicationError, Conflict
from tagger.models import TreeItem
from tagger.selectors import folder_files

logger = logging.getLogger(__name__)

State = Conversion.State
BatchState = ConversionBatch.State
CHUNK = 500


def batch_start(
    *,
    folder: TreeItem,
    recursive: bool = True,
    target_crs: str | None = None,
    crs: str | None = None,
    bounds: list[float] | None = None,
    priority: int = Priority.LOW,
    run_at=None,
) -> ConversionBatch:
    """A batch converting each file under `folder` that is neither converted nor converting."""
    if not folder.is_folder:
        raise ApplicationError("Only a folder can be converted as a batch.", code="not_a_folder")
    params = conversion_params(target_crs=target_crs, crs=crs, bounds=bounds)
    run_at = run_at_check(run_at)
    files = folder_files(folder=folder, recursive=recursive)
    if not any(row["object_type"] != TreeItem.ObjectType.FOLDER for row in files):
        where = "its subtree" if recursive else "it"
        raise ApplicationError(
            f"The folder holds no files to convert ({where} has none).", code="empty_folder"
        )
    with transaction.atomic():
        batch = ConversionBatch.objects.create(
            owner_id=folder.owner_id,
            folder=folder,
            recursive=recursive,
            params=params,
            priority=priority,
            run_at=run_at,
        )
        candidates = [row["pk"] for row in files if row["object_type"] == TreeItem.ObjectType.FILE]
        active = _active_items(candidates)
        created = _members_create(
            batch, [(item_id, None) for item_id in candidates if item_id not in active]
        )
        batch.total = len(created)
        batch.skipped = len(files) - len(created) - _folders(files)
        if not created:
            batch.state, batch.finished_at = BatchState.COMPLETED, timezone.now()
        batch.save(update_fields=("total", "skipped", "state", "finished_at"))
        if not created:
            _tell_completed(batch)
    logger.info(
        "Batch %s: %s conversions of folder %s (%s skipped)",
        batch.pk,
        batch.total,
        folder.pk,
        batch.skipped,
    )
    return batch


def _members_create(batch: ConversionBatch, members: list[tuple]) -> list:
    """Bulk-create the batch's conversions of (item id, the conversion it retries); returns
    the ids created. A file a concurrent request has just started
    is left out, not an error: the partial unique constraint turns its row into a no-op."""
    stage = Stage.SCHEDULED if batch.run_at and batch.run_at > timezone.now() else Stage.QUEUED
    rows = [
        Conversion(
            task_id=uuid.uuid4(),
            item_id=item_id,
            owner_id=batch.owner_id,
            params=batch.params,
            batch=batch,
            retry_of_id=retry_of,
            priority=batch.priority,
            run_at=batch.run_at if stage == Stage.SCHEDULED else None,
            stage=stage,
        )
        for item_id, retry_of in members
    ]
    Conversion.objects.bulk_create(rows, batch_size=CHUNK, ignore_conflicts=True)
    wanted = [row.task_id for row in rows]
    created = []
    for start in range(0, len(wanted), CHUNK):
        created.extend(
            Conversion.objects.filter(pk__in=wanted[start : start + CHUNK]).values_list(
                "pk", flat=True
            )
        )
    # Neither a result-backend mirror nor an event yet: a member becomes a Celery task when
    # the dispatcher sends it (which records both), and until then the batch's counts and
    # the database tell its state.
    transaction.on_commit(partial(conversions_release_softly, owner_ids=[batch.owner_id]))
    return created


def _folders(files: list[dict]) -> int:
    return sum(1 for row in files if row["object_type"] == TreeItem.ObjectType.FOLDER)


def _active_items(item_ids: list) -> set:
    active = set()
    for start in range(0, len(item_ids), CHUNK):
        active.update(
            Conversion.objects.filter(
                item_id__in=item_ids[start : start + CHUNK], state__in=Conversion.ACTIVE_STATES
            ).values_list("item_id", flat=True)
        )
    return active


def batch_cancel(*, batch: ConversionBatch) -> ConversionBatch:
    """Cancel every member that has not finished: the waiting ones at once, the running ones
    at their next heartbeat (the usual cancel).

    The waiting ones' transaction locks the batch, then its members; a worker's transition
    locks a member, then the batch. PostgreSQL breaks such a deadlock by aborting one side:
    this transaction is then run again from the start (retrying_db), and a worker's task
    retries its own (TRANSIENT_DB_ERRORS)."""
    retrying_db(_batch_cancel_waiting, batch.pk)
    # The running ones as any cancel: each stops at its next heartbeat.
    for conversion in Conversion.objects.filter(batch=batch, state=State.PROGRESS):
        try:
            conversion_cancel(conversion=conversion)
        except Conflict:  # it finished meanwhile
            pass
    batch.refresh_from_db()
    return batch


def _batch_cancel_waiting(batch_id) -> None:
    with transaction.atomic():
        batch = ConversionBatch.objects.select_for_update().get(pk=batch_id)
        if batch.is_finished:
            raise Conflict(
                f"The batch has already finished ({batch.state}); there is nothing to cancel.",
                code="batch_finished",
                extra={"batch_id": str(batch.pk), "state": batch.state},
            )
        ConversionBatch.objects.filter(pk=batch.pk).update(
            state=BatchState.CANCELLED, finished_at=timezone.now()
        )
        # Waiting and queued members at once, in bulk; a queued one's message is dropped
        # by the worker's claim rule.
        waiting = list(
            Conversion.objects.filter(batch=batch, state=State.PENDING).values_list("pk", flat=True)
        )
        conversions_cancel_waiting(waiting)
        transaction.on_commit(partial(conversions_release_softly, owner_ids=[batch.owner_id]))


def batch_retry(*, batch: ConversionBatch) -> tuple[ConversionBatch, int]:
    """Retry the batch's failed members (their latest attempts), in bulk as the batch was
    made; returns (batch, retried). Files converted or converting again meanwhile are left."""
    with transaction.atomic():
        batch = ConversionBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.state == BatchState.CANCELLED:
            raise Conflict(
                "A cancelled batch cannot be retried.",
                code="batch_cancelled",
                extra={"batch_id": str(batch.pk), "state": batch.state},
            )
        failed = list(
            Conversion.objects.filter(batch=batch, state=State.FAILURE, retries__isnull=True)
            .exclude(item__object_type=TreeItem.ObjectType.GEO_RASTER_FILE)
            .values_list("item_id", "pk")
        )
        active = _active_items([item_id for item_id, _ in failed])
        created = _members_create(
            batch, [(item_id, pk) for item_id, pk in failed if item_id not in active]
        )
        if created:
            ConversionBatch.objects.filter(pk=batch.pk).update(
                state=BatchState.PROGRESS, finished_at=None
            )
    batch.refresh_from_db()
    return batch, len(created)


# Following the members -----------------------------------------------------------------


def on_conversion_changed(sender, task_id, transition: str, **kwargs) -> None:
    """A member started or ended: move its batch on (inside the member's transaction)."""
    if transition not in ("claim", "succeed", "fail", "cancel"):
        return
    batch_id = Conversion.objects.filter(pk=task_id).values_list("batch_id", flat=True).first()
    if batch_id is None:
        return
    if transition == "claim":
        ConversionBatch.objects.filter(pk=batch_id, state=BatchState.PENDING).update(
            state=BatchState.PROGRESS, started_at=timezone.now()
        )
        return
    batch_complete_if_done(batch_id)


def batch_complete_if_done(batch_id) -> bool:
    """Mark the batch COMPLETED once no member is active. The batch's row lock orders the
    members' last transitions, so the last one to commit sees the others finished."""
    with transaction.atomic():
        batch = ConversionBatch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.is_finished:
            return False
        if Conversion.objects.filter(
            batch_id=batch_id, state__in=Conversion.ACTIVE_STATES
        ).exists():
            return False
        now = timezone.now()
        ConversionBatch.objects.filter(pk=batch_id).update(
            state=BatchState.COMPLETED, finished_at=now, started_at=batch.started_at or now
        )
        batch.refresh_from_db()
        _tell_completed(batch)
    return True


def _tell_completed(batch: ConversionBatch) -> None:
    batch_completed.send(
        sender=ConversionBatch,
        batch_id=batch.pk,
        owner_id=batch.owner_id,
        summary=batch_summary(batch=batch),
    )


def batches_complete_finished() -> list[str]:
    """Complete the open batches all of whose members have finished (beat's safety net for
    a transition whose hook did not run)."""
    open_batches = ConversionBatch.objects.filter(
        state__in=(BatchState.PENDING, BatchState.PROGRESS)
    ).exclude(conversions__state__in=Conversion.ACTIVE_STATES)
    return [
        str(pk) for pk in open_batches.values_list("pk", flat=True) if batch_complete_if_done(pk)
    ]
