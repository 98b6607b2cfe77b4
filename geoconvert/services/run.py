"""The worker's path for one delivery of a conversion task, top to bottom:
claim the conversion, run the engine under a heartbeat, publish the COG, or stop.

The Celery task (geoconvert.tasks) builds a RunContext and calls ``conversion_run``.
"""

import logging
import math
import shutil
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from geoconvert import raster
from geoconvert.models import STAGE_PROGRESS, Conversion, Stage
from geoconvert.services.db import TRANSIENT_DB_ERRORS, retrying_db
from geoconvert.services.engine import (
    STEP_STAGES,
    cog_options,
    georef_from_params,
    raster_limits,
    storage_env,
)
from geoconvert.services.events import conversion_event_publish
from geoconvert.services.heartbeat import Heartbeat
from geoconvert.services.transitions import conversion_transition, mirror_softly
from geoconvert.signals import conversion_stage_changed
from tagger.errors import ApplicationError
from tagger.logs import log_bind
from tagger.models import GeoRaster, TreeItem, geo_raster_storage_path
from tagger.services import geo_raster_publish
from tagger.storage import (
    file_delete,
    file_publish,
    files_delete,
    gdal_name,
    is_remote,
    item_dir,
    local_path,
    sha256_of_path,
    stored_names,
)

logger = logging.getLogger(__name__)

# While the COG is written, progress moves from the CREATING stage's towards the UPDATING
# stage's as GDAL reports the write's fraction; a write is saved only once progress has risen
# by WRITE_PROGRESS_STEP and WRITE_PROGRESS_SECONDS have passed since the last save: at most
# (79 - 40) // 4 = 9 more writes a conversion, and none for one written in under a second.
WRITE_PROGRESS_STEP = 4
WRITE_PROGRESS_SECONDS = 1.0
# The ETA waits for a rate worth extrapolating: a tenth of the write, done in a second or
# more (so the first throttled save during the write usually carries one; earlier ones, and
# a write too quick to need one, do not).
ETA_MIN_FRACTION = 0.1
ETA_MIN_SECONDS = 1.0
# What follows the write (describe the COG, hash it, publish) as a share of the write's time;
# measured at about 3% of it.
AFTER_WRITE_SHARE = 0.05

INTERNAL_ERROR = (
    "The conversion failed because of an internal error. The operators have the details; "
    "retry later."
)


class ConversionFailed(ApplicationError):
    """The conversion ended FAILURE; the message says why, for the user."""


class ConversionStopped(Exception):
    """The run stopped without a result of its own: cancelled, or the conversion is held or
    finished by another run. `state` is the conversion's state as this run leaves it."""

    def __init__(self, state: str, reason: str):
        super().__init__(reason)
        self.state = state


class _Lost(Exception):
    """This run no longer holds the conversion (cancelled, deleted, or taken over)."""


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
    # Called with (stage, progress) after each progress write (each stage, and a few during
    # the COG's write): the task mirrors it into the result backend.
    on_stage: Callable[[str, int], None] | None = None

    def mirror(self, state: str, meta: dict) -> None:
        """How this run's transitions reach the result backend: through the task."""
        if self.on_stage is None:
            return
        if state == Conversion.State.SUCCESS:
            # Celery records SUCCESS itself, with the task's return value.
            self.on_stage(Stage.COMPLETE, STAGE_PROGRESS[Stage.COMPLETE])
        else:
            self.on_stage(meta["stage"], meta["progress"])


def _setting(name):
    return settings.GEOCONVERT[name]


def conversion_run(ctx: RunContext) -> dict:
    """Run one delivery of a conversion task; returns the COG's metadata on success.

    Raises ConversionFailed (FAILURE, with the reason), ConversionStopped (cancelled, or
    nothing for this run to do), or a transient database error for the task to retry.
    """
    claim = _claim(ctx)
    beat = Heartbeat(ctx.task_id, claim, interval=_setting("HEARTBEAT_SECONDS"))
    beat.start()
    try:
        return _convert(ctx, claim, beat)
    finally:
        beat.stop()


# Claim --------------------------------------------------------------------------------------


def _claim(ctx: RunContext) -> uuid.UUID:
    """Take the conversion for this run with a conditional update, or explain why not."""
    claim = uuid.uuid4()
    taken = retrying_db(
        conversion_transition,
        ctx.task_id,
        "claim",
        where=_holdable(),
        mirror=ctx.mirror,
        worker=ctx.worker,
        started_at=timezone.now(),
        **_claim_fields(claim),
    )
    # Redelivered after a crash, retried, or re-sent by hand or by the reaper.
    if taken or _reclaim(ctx, claim):
        return claim
    return _explain_unclaimed(ctx)


def _holdable() -> dict:
    return {"cancel_requested": False, "attempts__lt": _setting("MAX_ATTEMPTS")}


def _claim_fields(claim: uuid.UUID) -> dict:
    return {
        "claim": claim,
        "heartbeat_at": timezone.now(),
        "attempts": F("attempts") + 1,
        "stage": Stage.STARTING,
        "progress": 0,
        "eta_at": None,  # a previous run's estimate says nothing of this one
    }


def _reclaim(ctx: RunContext, claim: uuid.UUID) -> int:
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
        where = _holdable()
        if not ctx.is_retry:
            where["heartbeat_at__lt"] = stale_before(timezone.now())
        taken = retrying_db(
            conversion_transition,
            ctx.task_id,
            "reclaim",
            where=where,
            mirror=ctx.mirror,
            worker=ctx.worker,
            started_at=timezone.now(),
            **_claim_fields(claim),
        )
        if taken or ctx.is_retry or time.monotonic() > deadline:
            return taken
        if not _alive(ctx.task_id):
            return 0
        time.sleep(min(1.0, stale_after / 4))


def stale_before(now):
    """Heartbeats older than this belong to runs presumed dead."""
    return now - timedelta(seconds=_setting("HEARTBEAT_STALE_SECONDS"))


def _alive(task_id) -> bool:
    """A run holds the conversion and its heartbeat is fresh."""
    return Conversion.objects.filter(
        pk=task_id,
        state=Conversion.State.PROGRESS,
        heartbeat_at__gte=stale_before(timezone.now()),
    ).exists()


def _explain_unclaimed(ctx: RunContext):
    conversion = Conversion.objects.filter(pk=ctx.task_id).first()
    if conversion is None:
        raise ConversionStopped("GONE", "The item or conversion was deleted before it ran.")
    active = conversion.state in Conversion.ACTIVE_STATES
    if conversion.state == Conversion.State.PROGRESS and not ctx.is_retry and _alive(ctx.task_id):
        # A duplicate delivery while the run holding it is alive: leave it alone.
        raise ConversionStopped(conversion.state, "Already running elsewhere.")
    if active and conversion.cancel_requested:
        # Either never started, or its run died: what that run left behind goes too.
        remove_leftovers(conversion.item)
        _end(ctx.task_id, "cancel")
        raise ConversionStopped(Conversion.State.CANCELLED, "Cancelled before it ran.")
    if conversion.state == Conversion.State.CANCELLED:
        raise ConversionStopped(Conversion.State.CANCELLED, "Cancelled before it ran.")
    if active and conversion.attempts >= _setting("MAX_ATTEMPTS"):
        message = (
            f"The conversion was started {conversion.attempts} times and its worker stopped "
            "each time before finishing (it may have run out of memory or been killed). "
            "Check the worker logs and the file, then retry."
        )
        remove_leftovers(conversion.item)
        _end(ctx.task_id, "fail", error=message)
        raise ConversionFailed(message, code="attempts_exhausted")
    raise ConversionStopped(conversion.state, f"Already {conversion.state.lower()} elsewhere.")


# Convert and publish ---------------------------------------------------------------------


def _convert(ctx: RunContext, claim: uuid.UUID, beat: Heartbeat) -> dict:
    conversion = Conversion.objects.select_related("item").get(pk=ctx.task_id)
    log_bind(attempt=conversion.attempts)
    logger.info(
        "Conversion %s claimed (attempt %s%s)",
        ctx.task_id,
        conversion.attempts,
        ", redelivered" if ctx.redelivered else "",
    )
    item = conversion.item
    # A name of its own for this run's COG: publishing it is the commit that names it.
    dst_name = geo_raster_storage_path(GeoRaster(item=item), f"geo_raster-{claim.hex[:12]}.tif")
    # A run killed mid-write (SIGKILL, OOM) left its partial files behind; this run holds the
    # claim, so whatever is not the original or a finished result is debris.
    remove_leftovers(item)
    # Written beside the original on local storage (then renamed into place); on S3, in this
    # host's scratch folder, then uploaded.
    dst = _scratch_dir(item) / Path(dst_name).name if is_remote() else local_path(dst_name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    info = _run_engine(ctx, claim, beat, item, dst, conversion.params)
    stored = False
    try:
        _set_stage(ctx, claim, Stage.UPDATING)
        result = info.as_dict()
        sha256 = sha256_of_path(dst)
        if is_remote():
            file_publish(dst, dst_name)  # multipart, checksummed; no object unless complete
            stored = True
        retrying_db(_publish, ctx, claim, item.pk, dst_name, sha256, result)
    except BaseException as exc:
        dst.unlink(missing_ok=True)
        if stored:
            _delete_softly(dst_name)
        if isinstance(exc, _Lost):
            raise _stopped(ctx, claim) from None
        raise
    logger.info("Conversion %s complete", ctx.task_id)
    return result


def _run_engine(ctx: RunContext, claim, beat: Heartbeat, item, dst: Path, params: dict):
    """The engine's result, or the run's outcome raised: each kind of engine failure maps to
    one way of ending the conversion."""
    progress = _Progress(ctx, claim)
    try:
        with storage_env():
            return _engine_convert(item, dst, params, progress, beat)
    except (raster.ConversionCancelled, _Lost):
        raise _stopped(ctx, claim) from None
    except raster.RasterError as exc:
        _fail(ctx, claim, str(exc))
        raise ConversionFailed(str(exc), code="invalid_raster") from None
    except TRANSIENT_DB_ERRORS:
        raise
    except Exception as exc:
        logger.exception("Conversion %s failed unexpectedly", ctx.task_id)
        _fail(ctx, claim, INTERNAL_ERROR, tb=traceback.format_exc())
        raise ConversionFailed(INTERNAL_ERROR, code="internal_error") from exc


def _engine_convert(item, dst: Path, params: dict, progress: "_Progress", beat: Heartbeat):
    return raster.convert(
        gdal_name(item.file.name),  # the original is only ever read
        dst,
        target_crs=params.get("target_crs"),
        georef=georef_from_params(params),
        options=cog_options(),
        limits=raster_limits(),
        progress=progress.step,
        write_progress=progress.write,
        should_cancel=beat.should_stop,
    )


def _scratch_dir(item) -> Path:
    return Path(settings.TAGGER_SCRATCH_DIR) / item.pk.hex


def _delete_softly(name: str) -> None:
    """Remove an object this run stored but did not publish; housekeeping removes it
    later if the store cannot be reached now."""
    try:
        file_delete(name)
    except Exception:
        logger.warning("Could not remove unpublished %s; housekeeping will", name, exc_info=True)


def _fail(ctx: RunContext, claim, message: str, tb: str = "") -> None:
    """End FAILURE, if this run still holds the conversion; else say why it stopped."""
    if not _end(ctx.task_id, "fail", claim=claim, error=message, traceback=tb):
        raise _stopped(ctx, claim)


def _publish(ctx: RunContext, claim, item_id, dst_name: str, sha256: str, result: dict) -> None:
    """The final write: only the run holding the claim may make the item a geo-raster."""
    with transaction.atomic():
        succeeded = conversion_transition(
            ctx.task_id,
            "succeed",
            where={"claim": claim, "cancel_requested": False},
            mirror=ctx.mirror,
            stage=Stage.COMPLETE,
            progress=100,
            result=result,
            finished_at=timezone.now(),
        )
        if not succeeded:
            raise _Lost()
        geo_raster_publish(item_id=item_id, file_name=dst_name, sha256=sha256, metadata=result)


# Stages and stopping ---------------------------------------------------------------------


class _Progress:
    """The engine's reports as the conversion's progress: a write per step and, while the COG
    is written, a few throttled writes moving from 40 towards 80 with an estimated end."""

    def __init__(self, ctx: RunContext, claim) -> None:
        self._ctx, self._claim = ctx, claim
        self._saved_progress = 0
        self._saved_at = self._write_started = time.monotonic()

    def step(self, step: raster.Step) -> None:
        stage = STEP_STAGES[step]
        _set_stage(self._ctx, self._claim, stage)
        self._saved_progress, self._saved_at = STAGE_PROGRESS[stage], time.monotonic()
        if step is raster.Step.WRITE:
            self._write_started = self._saved_at

    def write(self, fraction: float) -> None:
        now = time.monotonic()
        low, high = STAGE_PROGRESS[Stage.CREATING], STAGE_PROGRESS[Stage.UPDATING]
        # Below high: 80 means the write is over and the COG is being published.
        progress = min(low + math.floor(fraction * (high - low)), high - 1)
        if (
            progress - self._saved_progress < WRITE_PROGRESS_STEP
            or now - self._saved_at < WRITE_PROGRESS_SECONDS
        ):
            return
        eta_at = self._eta_at(fraction, now - self._write_started)
        _save_progress(self._ctx, self._claim, Stage.CREATING, progress, eta_at=eta_at)
        self._saved_progress, self._saved_at = progress, now

    @staticmethod
    def _eta_at(fraction: float, elapsed: float):
        """Linear in the write's fraction since it began, plus a share for what follows.

        GDAL's fraction covers the overviews first (about a fifth of it, at a faster pace)
        and then the tiles, so early estimates run early; each save refines it (5000 px at
        level 9: the end put at 4.3, 5.0, 5.1, 5.4, 5.6 s, against 5.5 s).
        """
        if fraction < ETA_MIN_FRACTION or elapsed < ETA_MIN_SECONDS:
            return None
        write_seconds = elapsed / fraction
        remaining = write_seconds - elapsed + AFTER_WRITE_SHARE * write_seconds
        return timezone.now() + timedelta(seconds=remaining)


def _set_stage(ctx: RunContext, claim, stage: Stage) -> None:
    _save_progress(ctx, claim, stage, STAGE_PROGRESS[stage], new_stage=True)


def _save_progress(
    ctx: RunContext, claim, stage: Stage, progress: int, *, new_stage: bool = False, **fields
) -> None:
    """Save how far the run has got, only while it holds the claim and no cancel is asked;
    raises _Lost otherwise. `fields`: what else the write carries (the ETA). A `new_stage`
    is told to the other apps (conversion_stage_changed) in the write's transaction."""

    def write() -> int:
        with transaction.atomic():
            updated = Conversion.objects.filter(
                pk=ctx.task_id,
                claim=claim,
                state=Conversion.State.PROGRESS,
                cancel_requested=False,
            ).update(stage=stage, progress=progress, heartbeat_at=timezone.now(), **fields)
            if updated and new_stage:
                conversion_stage_changed.send(
                    sender=Conversion, task_id=ctx.task_id, stage=stage, progress=progress
                )
        return updated

    updated = retrying_db(write)
    if not updated:
        raise _Lost()
    conversion_event_publish(ctx.task_id)
    mirror_softly(
        ctx.task_id, ctx.mirror, Conversion.State.PROGRESS, {"stage": stage, "progress": progress}
    )


def _end(task_id, name: str, *, claim=None, error: str = "", traceback: str = "") -> int:
    """End the conversion FAILURE or CANCELLED, keeping the stage and progress it reached;
    with `claim`, only while that run holds it. Returns 0 when nothing was changed."""
    where = {"claim": claim} if claim is not None else {}
    return retrying_db(
        conversion_transition,
        task_id,
        name,
        where=where,
        error=error,
        traceback=traceback,
        finished_at=timezone.now(),
    )


def _stopped(ctx: RunContext, claim) -> ConversionStopped:
    """Why a run that held the claim stopped early: a cancel request, or a lost claim."""
    conversion = Conversion.objects.filter(pk=ctx.task_id).first()
    if conversion is None:
        return ConversionStopped("GONE", "The item or conversion was deleted while it ran.")
    if conversion.cancel_requested and conversion.claim == claim:
        _end(ctx.task_id, "cancel", claim=claim)
        return ConversionStopped(Conversion.State.CANCELLED, "Cancelled while running.")
    return ConversionStopped(conversion.state, "Another run took over this conversion.")


def remove_leftovers(item: TreeItem) -> None:
    """Delete what dead runs left in the item's folder (files under MEDIA_ROOT or objects of
    the bucket) and in this host's scratch folder for it: anything but the original upload
    and the finished geo-raster. Every name in that folder is server-generated."""
    keep = {item.file.name}
    for names in GeoRaster.objects.filter(item=item).values_list("file", "thumbnail"):
        keep.update(name for name in names if name)
    leftovers = [s.name for s in stored_names(f"{item_dir(item)}/") if s.name not in keep]
    for name in leftovers:
        logger.info("Removing leftover %s of conversion of item %s", name, item.pk)
    files_delete(leftovers)
    scratch = _scratch_dir(item)
    if scratch.is_dir():
        shutil.rmtree(scratch, ignore_errors=True)
