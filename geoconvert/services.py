"""Every state change of a conversion happens here: start, run, cancel, retry.

The API, the Celery task, the admin and the management commands all call these functions,
so the rules (one active conversion per item, what may be cancelled or retried, who holds a
running conversion) live in one place.
"""

import logging
import random
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.db.utils import InterfaceError, OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from geoconvert import raster
from geoconvert.models import STAGE_PROGRESS, Conversion, Stage
from tagger.errors import ApplicationError, Conflict, ServiceUnavailable
from tagger.models import GeoRaster, TreeItem, geo_raster_storage_path

logger = logging.getLogger(__name__)

TASK_NAME = "geoconvert.tasks.convert_to_geo_raster"
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)

STEP_STAGES = {
    raster.Step.LOAD: Stage.LOADING,
    raster.Step.ANALYZE: Stage.ANALYZING,
    raster.Step.WRITE: Stage.CREATING,
}


class ConversionFailed(ApplicationError):
    """The conversion ended FAILURE; the message says why, for the user."""


class ConversionStopped(Exception):
    """The run stopped without a result of its own: cancelled, or the conversion is held or
    finished by another run. `state` is the conversion's state as this run leaves it."""

    def __init__(self, state: str, reason: str):
        super().__init__(reason)
        self.state = state


def _setting(name):
    return settings.GEOCONVERT[name]


# Start -------------------------------------------------------------------------------


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
    for code, request in (
        ("invalid_crs", {"target_crs": target_crs}),
        ("invalid_georef", {"georef": _georef(params)}),
    ):
        try:
            raster.check_request(**request)
        except raster.RasterError as exc:
            raise ApplicationError(str(exc), code=code) from None
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
        conversion = Conversion.objects.create(
            item=item, owner_id=item.owner_id, params=params, retry_of=retry_of
        )
        _record_backend_state(conversion.task_id, "PENDING", _stage_meta(Stage.QUEUED, 0))
        # Sent only once the row is committed, so a worker never receives a task id it cannot
        # find. A broker failure raised here reaches the caller after the commit.
        transaction.on_commit(partial(_dispatch, conversion))
    return conversion, True


def _dispatch(conversion: Conversion) -> None:
    from geoconvert.tasks import convert_to_geo_raster

    try:
        convert_to_geo_raster.apply_async(
            args=[str(conversion.task_id)], task_id=str(conversion.task_id)
        )
    except (BrokerError, OSError) as exc:
        logger.warning("Could not queue conversion %s: %s", conversion.task_id, exc)
        message = (
            "The task queue is unavailable, so the conversion was not started. Try again shortly."
        )
        _finish(conversion.task_id, claim=None, state=Conversion.State.FAILURE, error=message)
        raise ServiceUnavailable(message, code="queue_unavailable") from exc


# Cancel and retry ----------------------------------------------------------------------


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
        conversion.cancel_requested = True
        fields = ["cancel_requested"]
        if conversion.state == Conversion.State.PENDING:
            conversion.state = Conversion.State.CANCELLED
            conversion.finished_at = timezone.now()
            fields += ["state", "finished_at"]
            transaction.on_commit(
                partial(
                    _record_backend_state,
                    conversion.task_id,
                    Conversion.State.CANCELLED,
                    _stage_meta(conversion.stage, conversion.progress),
                )
            )
        conversion.save(update_fields=fields)
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


# Run (called by the Celery task) ----------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """What the task tells the service about the delivery it is running."""

    task_id: str
    worker: str
    # A Celery retry of this same task: the previous run has certainly ended.
    is_retry: bool = False
    # The broker delivered this message before (worker lost, connection lost, visibility
    # timeout): the previous run may have died, or may still be running elsewhere.
    redelivered: bool = False
    # Called with (stage, progress) after each stage is saved: the task mirrors it into the
    # result backend.
    on_stage: Callable[[str, int], None] | None = None


def conversion_run(ctx: RunContext) -> dict:
    """Run one delivery of a conversion task; returns the COG's metadata on success.

    Raises ConversionFailed (FAILURE, with the reason), ConversionStopped (cancelled, or
    nothing for this run to do), or a transient database error for the task to retry.
    """
    claim = _claim(ctx)
    beat = _Heartbeat(ctx.task_id, claim)
    beat.start()
    try:
        return _convert(ctx, claim, beat)
    finally:
        beat.stop()


def _claim(ctx: RunContext) -> uuid.UUID:
    """Take the conversion for this run with a conditional update, or explain why not."""
    claim = uuid.uuid4()
    now = timezone.now()
    max_attempts = _setting("MAX_ATTEMPTS")
    holdable = Conversion.objects.filter(
        pk=ctx.task_id, cancel_requested=False, attempts__lt=max_attempts
    )
    taken = _retrying_db(
        holdable.filter(state=Conversion.State.PENDING).update,
        state=Conversion.State.PROGRESS,
        claim=claim,
        worker=ctx.worker,
        started_at=now,
        heartbeat_at=now,
        attempts=_plus_one(),
        stage=Stage.STARTING,
        progress=0,
    )
    if not taken:
        # Redelivered after a crash, retried, or re-sent by hand or by the reaper.
        taken = _reclaim(ctx, holdable, claim)
    if taken:
        _mirror(ctx, Stage.STARTING, 0)
        return claim
    return _explain_unclaimed(ctx)


def _reclaim(ctx: RunContext, holdable, claim) -> int:
    """Take over a PROGRESS conversion from a run that ended without finishing it.

    After a Celery retry the previous run has ended. After any other delivery it may not
    have (a duplicate message): it is presumed alive while its heartbeat is fresh, so wait
    until the heartbeat is older than the stale threshold before taking over, or before
    deciding anything else about it (cancelled, out of attempts). The wait allows twice the
    threshold, so a run that died just before this delivery is always seen stale in time.
    """
    stale_after = _setting("HEARTBEAT_STALE_SECONDS")
    deadline = time.monotonic() + 2 * stale_after + _setting("HEARTBEAT_SECONDS")
    while True:
        now = timezone.now()
        running = holdable.filter(state=Conversion.State.PROGRESS)
        if not ctx.is_retry:
            running = running.filter(heartbeat_at__lt=_stale_before(now))
        taken = _retrying_db(
            running.update,
            claim=claim,
            worker=ctx.worker,
            heartbeat_at=now,
            attempts=_plus_one(),
            stage=Stage.STARTING,
            progress=0,
            started_at=now,
        )
        if taken or ctx.is_retry or time.monotonic() > deadline:
            return taken
        if not _alive(ctx.task_id):
            return 0
        time.sleep(min(1.0, stale_after / 4))


def _stale_before(now):
    return now - timedelta(seconds=_setting("HEARTBEAT_STALE_SECONDS"))


def _alive(task_id) -> bool:
    """A run holds the conversion and its heartbeat is fresh."""
    return Conversion.objects.filter(
        pk=task_id,
        state=Conversion.State.PROGRESS,
        heartbeat_at__gte=_stale_before(timezone.now()),
    ).exists()


def _explain_unclaimed(ctx: RunContext):
    conversion = Conversion.objects.filter(pk=ctx.task_id).first()
    if conversion is None:
        raise ConversionStopped("GONE", "The item or conversion was deleted before it ran.")
    if conversion.state == Conversion.State.PROGRESS and not ctx.is_retry and _alive(ctx.task_id):
        # A duplicate delivery while the run holding it is alive: leave it alone.
        raise ConversionStopped(conversion.state, "Already running elsewhere.")
    if conversion.state in Conversion.ACTIVE_STATES and conversion.cancel_requested:
        # Either never started, or its run died: what that run left behind goes too.
        _remove_leftovers(conversion.item)
        _finish(conversion.task_id, claim=None, state=Conversion.State.CANCELLED)
        raise ConversionStopped(Conversion.State.CANCELLED, "Cancelled before it ran.")
    if conversion.state == Conversion.State.CANCELLED:
        raise ConversionStopped(Conversion.State.CANCELLED, "Cancelled before it ran.")
    if conversion.state in Conversion.ACTIVE_STATES and conversion.attempts >= _setting(
        "MAX_ATTEMPTS"
    ):
        message = (
            f"The conversion was started {conversion.attempts} times and its worker stopped "
            "each time before finishing (it may have run out of memory or been killed). "
            "Check the worker logs and the file, then retry."
        )
        _remove_leftovers(conversion.item)
        _finish(conversion.task_id, claim=None, state=Conversion.State.FAILURE, error=message)
        raise ConversionFailed(message, code="attempts_exhausted")
    raise ConversionStopped(conversion.state, f"Already {conversion.state.lower()} elsewhere.")


def _convert(ctx: RunContext, claim: uuid.UUID, beat: "_Heartbeat") -> dict:
    conversion = Conversion.objects.select_related("item").get(pk=ctx.task_id)
    logger.info(
        "Conversion %s claimed (attempt %s%s)",
        ctx.task_id,
        conversion.attempts,
        ", redelivered" if ctx.redelivered else "",
    )
    item = conversion.item
    params = conversion.params
    media_root = Path(settings.MEDIA_ROOT)
    dst_name = geo_raster_storage_path(GeoRaster(item=item), f"geo_raster-{claim.hex[:12]}.tif")
    dst = media_root / dst_name
    dst.parent.mkdir(parents=True, exist_ok=True)
    # A run killed mid-write (SIGKILL, OOM) left its partial files behind; this run holds the
    # claim, so whatever is not the original or a finished result is debris.
    _remove_leftovers(item)

    def on_step(step: raster.Step) -> None:
        _set_stage(ctx, claim, STEP_STAGES[step])

    georef = _georef(params)
    try:
        info = raster.convert(
            item.file.path,
            dst,
            target_crs=params.get("target_crs"),
            georef=georef,
            options=cog_options(),
            limits=raster_limits(),
            progress=on_step,
            should_cancel=beat.should_stop,
        )
    except raster.ConversionCancelled:
        raise _stopped(ctx, claim) from None
    except raster.RasterError as exc:
        if not _finish(ctx.task_id, claim=claim, state=Conversion.State.FAILURE, error=str(exc)):
            raise _stopped(ctx, claim) from None
        raise ConversionFailed(str(exc), code="invalid_raster") from None
    except _Lost:
        raise _stopped(ctx, claim) from None
    except TRANSIENT_DB_ERRORS:
        raise
    except Exception as exc:
        logger.exception("Conversion %s failed unexpectedly", ctx.task_id)
        message = (
            "The conversion failed because of an internal error. "
            "The operators have the details; retry later."
        )
        if not _finish(
            ctx.task_id,
            claim=claim,
            state=Conversion.State.FAILURE,
            error=message,
            tb=traceback.format_exc(),
        ):
            raise _stopped(ctx, claim) from exc
        raise ConversionFailed(message, code="internal_error") from exc

    try:
        _set_stage(ctx, claim, Stage.UPDATING)
        result = info.as_dict()
        _retrying_db(_save_result, ctx.task_id, claim, item.pk, dst_name, result)
    except _Lost:
        dst.unlink(missing_ok=True)
        raise _stopped(ctx, claim) from None
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    _mirror(ctx, Stage.COMPLETE, 100)
    logger.info("Conversion %s complete", ctx.task_id)
    return result


@transaction.atomic
def _save_result(task_id, claim, item_id, dst_name: str, result: dict) -> None:
    """The final write: only the run holding the claim may make the item a geo-raster."""
    conversion = (
        Conversion.objects.select_for_update()
        .filter(pk=task_id, claim=claim, state=Conversion.State.PROGRESS, cancel_requested=False)
        .first()
    )
    if conversion is None:
        raise _Lost()
    GeoRaster.objects.update_or_create(
        item_id=item_id,
        defaults={"file": dst_name, **{k: v for k, v in result.items()}},
    )
    TreeItem.objects.filter(pk=item_id).update(
        object_type=TreeItem.ObjectType.GEO_RASTER_FILE, updated_at=timezone.now()
    )
    conversion.state = Conversion.State.SUCCESS
    conversion.stage = Stage.COMPLETE
    conversion.progress = 100
    conversion.result = result
    conversion.finished_at = timezone.now()
    conversion.save(update_fields=["state", "stage", "progress", "result", "finished_at"])


def _remove_leftovers(item: TreeItem) -> None:
    """Delete what dead runs left in the item's folder: anything but the original upload and
    the finished geo-raster. Every name in that folder is server-generated."""
    folder = (Path(settings.MEDIA_ROOT) / geo_raster_storage_path(GeoRaster(item=item), "")).parent
    keep = {Path(item.file.name).name}
    finished = GeoRaster.objects.filter(item=item).values_list("file", flat=True)
    keep.update(Path(name).name for name in finished)
    for path in folder.glob("*") if folder.is_dir() else ():
        if path.name not in keep and path.is_file():
            logger.info("Removing leftover %s of conversion of item %s", path.name, item.pk)
            path.unlink(missing_ok=True)


def _stopped(ctx: RunContext, claim) -> ConversionStopped:
    """Why a run that held the claim stopped early: a cancel request, or a lost claim."""
    conversion = Conversion.objects.filter(pk=ctx.task_id).first()
    if conversion is None:
        return ConversionStopped("GONE", "The item or conversion was deleted while it ran.")
    if conversion.cancel_requested and conversion.claim == claim:
        _finish(ctx.task_id, claim=claim, state=Conversion.State.CANCELLED)
        return ConversionStopped(Conversion.State.CANCELLED, "Cancelled while running.")
    return ConversionStopped(conversion.state, "Another run took over this conversion.")


class _Lost(Exception):
    """This run no longer holds the conversion (cancelled, deleted, or taken over)."""


def _set_stage(ctx: RunContext, claim, stage: Stage) -> None:
    progress = STAGE_PROGRESS[stage]
    updated = _retrying_db(
        lambda: Conversion.objects.filter(
            pk=ctx.task_id,
            claim=claim,
            state=Conversion.State.PROGRESS,
            cancel_requested=False,
        ).update(stage=stage, progress=progress, heartbeat_at=timezone.now())
    )
    if not updated:
        raise _Lost()
    _mirror(ctx, stage, progress)


def _mirror(ctx: RunContext, stage: str, progress: int) -> None:
    """Copy a stage into the result backend. The conversion row is the truth, so a failed
    copy (database briefly unavailable) is logged, not allowed to fail the conversion."""
    if ctx.on_stage is None:
        return
    try:
        ctx.on_stage(stage, progress)
    except DatabaseError as exc:
        logger.warning("Could not mirror stage of %s into the result backend: %s", ctx.task_id, exc)


def _finish(task_id, *, claim, state: str, error: str = "", tb: str = "") -> int:
    """Mark a conversion finished (FAILURE or CANCELLED), keeping the stage and progress it
    reached, and mirror that into the result backend. Returns 0 when `claim` no longer holds
    it (another run took over, or it already finished): then nothing is written."""
    conversions = Conversion.objects.filter(pk=task_id, state__in=Conversion.ACTIVE_STATES)
    if claim is not None:
        conversions = conversions.filter(claim=claim)
    updated = _retrying_db(
        lambda: conversions.update(
            state=state, error=error, traceback=tb, finished_at=timezone.now()
        )
    )
    if updated:
        stage, progress = Conversion.objects.values_list("stage", "progress").get(pk=task_id)
        meta = _stage_meta(stage, progress, error=error) if error else _stage_meta(stage, progress)
        _record_backend_state(task_id, state, meta)
    return updated


# Helpers -----------------------------------------------------------------------------------


def cog_options() -> raster.CogOptions:
    return raster.CogOptions(
        compression=_setting("COMPRESSION"),
        level=_setting("LEVEL"),
        predictor=_setting("PREDICTOR"),
        blocksize=_setting("BLOCKSIZE"),
        overview_resampling=_setting("OVERVIEW_RESAMPLING"),
        num_threads=_setting("NUM_THREADS"),
        cache_mb=_setting("CACHE_MB"),
    )


def raster_limits() -> raster.Limits:
    return raster.Limits(
        max_pixels=_setting("MAX_PIXELS"),
        max_uncompressed_bytes=_setting("MAX_UNCOMPRESSED_BYTES"),
    )


def _georef(params: dict) -> raster.Georef | None:
    if params.get("crs") is None and params.get("bounds") is None:
        return None
    return raster.Georef(crs=params.get("crs"), bounds=tuple(params.get("bounds") or ()))


def _plus_one():
    return F("attempts") + 1


def _stage_meta(stage: str, progress: int, **extra) -> dict:
    return {"stage": str(stage), "progress": progress, **extra}


def _record_backend_state(task_id, state: str, meta: dict) -> None:
    """Mirror a state into django-celery-results, so the admin and Flower agree with the API."""
    request = _BackendRequest(task=TASK_NAME, args=[str(task_id)], kwargs={})
    current_app.backend.store_result(str(task_id), meta, state, request=request)


@dataclass
class _BackendRequest:
    task: str
    args: list
    kwargs: dict
    hostname: str | None = None


def _retrying_db(write: Callable[..., int], *args, tries: int = 3, **kwargs):
    """Run a database write, retrying transient failures with exponential backoff and
    jitter (outside a transaction only: inside one the whole transaction must be retried)."""
    for attempt in range(tries):
        try:
            return write(*args, **kwargs)
        except TRANSIENT_DB_ERRORS as exc:
            if attempt == tries - 1 or connection.in_atomic_block:
                raise
            close_old_connections()
            connection.close()
            delay = min(4.0, 0.25 * 2**attempt) * (0.5 + random.random())
            logger.warning(
                "Database write failed (attempt %s of %s), retrying in %.2fs: %s",
                attempt + 1,
                tries,
                delay,
                exc,
            )
            time.sleep(delay)
    return None


class _Heartbeat:
    """A background thread that records the run is alive and notices cancel requests.

    One conditional UPDATE per interval: it matches only while this run holds the claim and
    no cancel was requested, so zero rows means "stop". The engine polls `should_stop`.
    """

    def __init__(self, task_id, claim):
        self.task_id = task_id
        self.claim = claim
        self.interval = _setting("HEARTBEAT_SECONDS")
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{task_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def should_stop(self) -> bool:
        return self._lost.is_set()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    alive = Conversion.objects.filter(
                        pk=self.task_id,
                        claim=self.claim,
                        cancel_requested=False,
                        state=Conversion.State.PROGRESS,
                    ).update(heartbeat_at=timezone.now())
                except DatabaseError as exc:
                    # Transient: the next beat tries again; the final write is retried too.
                    logger.warning("Heartbeat of %s failed: %s", self.task_id, exc)
                    connection.close()
                    continue
                if not alive:
                    self._lost.set()
                    return
        finally:
            connection.close()


# Housekeeping (periodic tasks run by beat; see geoconvert.tasks) ---------------------------


@dataclass(frozen=True)
class ReapSummary:
    requeued: list[str]
    failed: list[str]
    cancelled: list[str]

    def as_dict(self) -> dict:
        return {"requeued": self.requeued, "failed": self.failed, "cancelled": self.cancelled}


def conversion_reap_stale(*, now=None) -> ReapSummary:
    """Deal with running conversions whose worker has gone silent.

    A PROGRESS conversion whose heartbeat is older than HEARTBEAT_STALE_SECONDS has lost its
    worker (killed, out of memory, host gone). It is re-queued as a new delivery of the same
    task while it has attempts left, ends CANCELLED if a cancel was asked, and otherwise ends
    FAILURE. Each change is conditional on the claim and heartbeat read, so a run that
    comes back to life (or another reaper) is never overruled.
    """
    now = now or timezone.now()
    cutoff = _stale_before(now)
    stale = Conversion.objects.filter(state=Conversion.State.PROGRESS).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    requeued, failed, cancelled = [], [], []
    for conversion in stale:
        task_id = str(conversion.task_id)
        same_run = Conversion.objects.filter(
            pk=conversion.pk,
            state=Conversion.State.PROGRESS,
            claim=conversion.claim,
            heartbeat_at=conversion.heartbeat_at,
        )
        silent = "its worker stopped answering"
        if conversion.cancel_requested:
            if same_run.update(state=Conversion.State.CANCELLED, finished_at=now):
                _record_backend_state(
                    task_id,
                    Conversion.State.CANCELLED,
                    _stage_meta(conversion.stage, conversion.progress),
                )
                cancelled.append(task_id)
        elif conversion.attempts < _setting("MAX_ATTEMPTS"):
            if same_run.update(
                state=Conversion.State.PENDING,
                claim=None,
                worker="",
                stage=Stage.QUEUED,
                progress=0,
                heartbeat_at=None,
            ):
                logger.warning(
                    "Conversion %s: %s; re-queued (attempt %s of %s done)",
                    task_id,
                    silent,
                    conversion.attempts,
                    _setting("MAX_ATTEMPTS"),
                )
                _record_backend_state(task_id, "PENDING", _stage_meta(Stage.QUEUED, 0))
                try:
                    # At once when called outside a transaction, as the periodic task does.
                    transaction.on_commit(partial(_dispatch, conversion))
                    requeued.append(task_id)
                except ServiceUnavailable:  # _dispatch marked it FAILURE
                    failed.append(task_id)
        else:
            message = (
                f"The conversion was started {conversion.attempts} times and each time "
                f"{silent} before finishing (it may have run out of memory or been killed). "
                "Check the worker logs and the file, then retry."
            )
            if same_run.update(state=Conversion.State.FAILURE, error=message, finished_at=now):
                _record_backend_state(
                    task_id,
                    Conversion.State.FAILURE,
                    _stage_meta(conversion.stage, conversion.progress, error=message),
                )
                failed.append(task_id)
    return ReapSummary(requeued=requeued, failed=failed, cancelled=cancelled)


@dataclass(frozen=True)
class OrphanSummary:
    partial_files: list[str]
    item_dirs: list[str]

    def as_dict(self) -> dict:
        return {"partial_files": self.partial_files, "item_dirs": self.item_dirs}


def orphan_files_remove(*, min_age_seconds: float | None = None, now=None) -> OrphanSummary:
    """Remove what crashed runs and interrupted uploads leave under MEDIA_ROOT: `.*.partial`
    files of the engine, and item directories whose item no longer exists.

    Only files older than `min_age_seconds` (GEOCONVERT["ORPHAN_MIN_AGE_SECONDS"]) are
    touched, and never the partial files of an item that is being converted: an upload
    is written before its row commits, and a large conversion writes for a long time.
    Paths in the summary are relative to MEDIA_ROOT.
    """
    root = Path(settings.MEDIA_ROOT)
    if min_age_seconds is None:
        min_age_seconds = _setting("ORPHAN_MIN_AGE_SECONDS")
    cutoff = (now or timezone.now()).timestamp() - min_age_seconds
    item_dirs = {}
    for directory in root.glob("items/*/*"):
        item_id = _uuid_or_none(directory.name)
        if item_id and directory.is_dir():
            item_dirs[item_id] = directory
    existing = set(TreeItem.objects.filter(pk__in=item_dirs).values_list("pk", flat=True))
    converting = set(
        Conversion.objects.filter(
            item_id__in=existing,
            state__in=Conversion.ACTIVE_STATES,
        ).values_list("item_id", flat=True)
    )

    removed_dirs = []
    for item_id, directory in item_dirs.items():
        if item_id not in existing and _newest_mtime(directory) < cutoff:
            shutil.rmtree(directory, ignore_errors=True)
            removed_dirs.append(str(directory.relative_to(root)))
    removed_partials = []
    for leftover in root.rglob(".*.partial*"):
        item_id = _uuid_or_none(leftover.parent.name)
        if item_id in converting or not leftover.is_file():
            continue
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
                removed_partials.append(str(leftover.relative_to(root)))
        except FileNotFoundError:
            continue
    if removed_dirs or removed_partials:
        logger.info(
            "Removed %s orphaned item directories and %s partial files",
            len(removed_dirs),
            len(removed_partials),
        )
    return OrphanSummary(partial_files=sorted(removed_partials), item_dirs=sorted(removed_dirs))


def _uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(hex=text)
    except ValueError:
        return None


def _newest_mtime(directory: Path) -> float:
    times = [directory.stat().st_mtime]
    times += [p.stat().st_mtime for p in directory.rglob("*") if p.exists()]
    return max(times)


@dataclass(frozen=True)
class PeriodicTaskSpec:
    task: str
    every_seconds: int | None = None
    crontab: str | None = None  # "minute hour day_of_month month_of_year day_of_week"
    description: str = ""


# Beat's schedule (django-celery-beat): registered by `migrate`, then edited in the admin.
PERIODIC_TASKS = {
    "Clean up expired task results": PeriodicTaskSpec(
        task="celery.backend_cleanup",
        crontab="0 4 * * *",
        description="Deletes task results older than CELERY_RESULT_EXPIRES.",
    ),
    "Reap stale conversions": PeriodicTaskSpec(
        task="geoconvert.tasks.reap_stale_conversions",
        every_seconds=60,
        description="Re-queues or fails conversions whose worker stopped sending heartbeats.",
    ),
    "Remove orphaned files": PeriodicTaskSpec(
        task="geoconvert.tasks.remove_orphaned_files",
        every_seconds=3600,
        description="Deletes leftover .partial files and directories of deleted items.",
    ),
}


def periodic_tasks_register() -> list[str]:
    """Create the periodic tasks that do not exist yet; returns their names.

    Existing ones are left as they are, so what an operator changed in the admin (schedule,
    enabled) survives every `migrate`.
    """
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    created = []
    for name, spec in PERIODIC_TASKS.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        schedule = {}
        if spec.every_seconds:
            schedule["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=spec.every_seconds, period=IntervalSchedule.SECONDS
            )
        else:
            minute, hour, day_of_month, month_of_year, day_of_week = spec.crontab.split()
            schedule["crontab"], _ = CrontabSchedule.objects.get_or_create(
                minute=minute,
                hour=hour,
                day_of_month=day_of_month,
                month_of_year=month_of_year,
                day_of_week=day_of_week,
                timezone="UTC",
            )
        # A run that could not start before the next one is due is dropped, not piled up.
        expires = spec.every_seconds or 12 * 3600
        PeriodicTask.objects.create(
            name=name,
            task=spec.task,
            queue="default",
            expire_seconds=expires,
            description=spec.description,
            **schedule,
        )
        created.append(name)
    return created
