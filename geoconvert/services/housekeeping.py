"""What beat runs to keep conversions and files tidy: the reaper of conversions whose worker
went silent, and the sweep of files that crashed runs and interrupted uploads left behind.
The schedule itself is in geoconvert.beat."""

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from geoconvert.models import Conversion, Stage
from geoconvert.services.run import stale_before
from geoconvert.services.transitions import conversion_transition
from tagger.models import GeoRaster, TreeItem
from tagger.storage import (
    ITEMS_DIR,
    files_delete,
    is_remote,
    item_dirs,
    item_id_of,
    multipart_abort,
    multipart_uploads,
    stored_names,
)

logger = logging.getLogger(__name__)

SILENT = "its worker stopped answering"


@dataclass(frozen=True)
class ReapSummary:
    requeued: list[str]
    failed: list[str]
    cancelled: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def conversion_reap_stale(*, now=None) -> ReapSummary:
    """Deal with running conversions whose worker has gone silent.

    A PROGRESS conversion whose heartbeat is older than HEARTBEAT_STALE_SECONDS has lost its
    worker (killed, out of memory, host gone). It is re-queued as a new delivery of the same
    task while it has attempts left, ends CANCELLED if a cancel was asked, and otherwise ends
    FAILURE. Each change is conditional on the claim and heartbeat read, so a run that
    comes back to life (or another reaper) is never overruled.
    """
    now = now or timezone.now()
    cutoff = stale_before(now)
    stale = Conversion.objects.filter(state=Conversion.State.PROGRESS).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    summary = ReapSummary(requeued=[], failed=[], cancelled=[])
    for conversion in stale:
        outcome = _reap(conversion, now)
        if outcome:
            getattr(summary, outcome).append(str(conversion.task_id))
    return summary


def _reap(conversion: Conversion, now) -> str | None:
    """Which list of the summary the conversion goes to, or None if it moved meanwhile."""
    same_run = {"claim": conversion.claim, "heartbeat_at": conversion.heartbeat_at}
    max_attempts = settings.GEOCONVERT["MAX_ATTEMPTS"]
    if conversion.cancel_requested:
        done = conversion_transition(conversion.pk, "cancel", where=same_run, finished_at=now)
        return "cancelled" if done else None
    if conversion.attempts >= max_attempts:
        message = (
            f"The conversion was started {conversion.attempts} times and each time "
            f"{SILENT} before finishing (it may have run out of memory or been killed). "
            "Check the worker logs and the file, then retry."
        )
        done = conversion_transition(
            conversion.pk, "fail", where=same_run, error=message, finished_at=now
        )
        return "failed" if done else None
    requeued = conversion_transition(
        conversion.pk,
        "requeue",
        where=same_run,
        claim=None,
        worker="",
        stage=Stage.QUEUED,
        progress=0,
        heartbeat_at=None,
        # Waits in the database again, first in its lane: the dispatcher sends it (at once
        # if its owner's share has room: the requeue's on-commit release).
        queued_at=None,
    )
    if not requeued:
        return None
    logger.warning(
        "Conversion %s: %s; re-queued (attempt %s of %s done)",
        conversion.task_id,
        SILENT,
        conversion.attempts,
        max_attempts,
    )
    return "requeued"


@dataclass(frozen=True)
class OrphanSummary:
    partial_files: list[str]
    item_dirs: list[str]
    objects: list[str] = field(default_factory=list)  # S3: unreferenced objects removed
    multipart_uploads: list[str] = field(default_factory=list)  # S3: unfinished ones aborted

    def as_dict(self) -> dict:
        return asdict(self)


def orphan_files_remove(*, min_age_seconds: float | None = None, now=None) -> OrphanSummary:
    """Remove what crashed runs and interrupted uploads leave under MEDIA_ROOT: `.*.partial`
    files of the engine, and item directories whose item no longer exists.

    Only files older than `min_age_seconds` (GEOCONVERT["ORPHAN_MIN_AGE_SECONDS"]) are
    touched, and never the partial files of an item that is being converted: an upload
    is written before its row commits, and a large conversion writes for a long time.
    Paths in the summary are relative to MEDIA_ROOT.

    On S3 (TAGGER_STORAGE=s3) the same rule runs over the bucket: objects that no item
    names (a deleted item's, a killed run's upload, a COG replaced by a newer one) are
    deleted, and unfinished multipart uploads (a worker killed mid-upload) are aborted.
    """
    if min_age_seconds is None:
        min_age_seconds = settings.GEOCONVERT["ORPHAN_MIN_AGE_SECONDS"]
    cutoff = (now or timezone.now()).timestamp() - min_age_seconds
    if is_remote():
        return _orphan_objects_remove(cutoff)
    root = Path(settings.MEDIA_ROOT)
    directories = dict(item_dirs(root))
    existing = set(TreeItem.objects.filter(pk__in=directories).values_list("pk", flat=True))
    converting = set(
        Conversion.objects.filter(
            item_id__in=existing, state__in=Conversion.ACTIVE_STATES
        ).values_list("item_id", flat=True)
    )
    removed_dirs = _remove_dirs(root, directories, existing, cutoff)
    removed_partials = _remove_partials(root, converting, cutoff)
    if removed_dirs or removed_partials:
        logger.info(
            "Removed %s orphaned item directories and %s partial files",
            len(removed_dirs),
            len(removed_partials),
        )
    return OrphanSummary(partial_files=sorted(removed_partials), item_dirs=sorted(removed_dirs))


def _remove_dirs(root: Path, directories: dict, existing: set, cutoff: float) -> list[str]:
    removed = []
    for item_id, directory in directories.items():
        if item_id not in existing and _newest_mtime(directory) < cutoff:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(str(directory.relative_to(root)))
    return removed


def _remove_partials(root: Path, converting: set, cutoff: float) -> list[str]:
    removed = []
    for leftover in root.rglob(".*.partial*"):
        if item_id_of(leftover.parent) in converting or not leftover.is_file():
            continue
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
                removed.append(str(leftover.relative_to(root)))
        except FileNotFoundError:
            continue
    return removed


def _newest_mtime(directory: Path) -> float:
    times = [directory.stat().st_mtime]
    times += [p.stat().st_mtime for p in directory.rglob("*") if p.exists()]
    return max(times)


def _orphan_objects_remove(cutoff: float) -> OrphanSummary:
    objects = [o for o in stored_names(f"{ITEMS_DIR}/") if o.modified.timestamp() < cutoff]
    uploads = [u for u in multipart_uploads() if u.initiated.timestamp() < cutoff]
    item_ids = {item_id_of(PurePosixPath(o.name).parent) for o in objects}
    item_ids |= {item_id_of(PurePosixPath(u.name).parent) for u in uploads}
    item_ids.discard(None)
    # An item being converted may be uploading its COG (an upload's clock is the store's):
    # its objects and uploads wait for the next sweep.
    busy = set(
        Conversion.objects.filter(
            item_id__in=item_ids, state__in=Conversion.ACTIVE_STATES
        ).values_list("item_id", flat=True)
    )
    originals = TreeItem.objects.filter(pk__in=item_ids).exclude(file="")
    named = set(originals.values_list("file", flat=True))
    for names in GeoRaster.objects.filter(item_id__in=item_ids).values_list("file", "thumbnail"):
        named.update(name for name in names if name)

    def idle(name: str) -> bool:
        return item_id_of(PurePosixPath(name).parent) not in busy

    removed = [o.name for o in objects if o.name not in named and idle(o.name)]
    files_delete(removed)
    aborted = []
    for upload in uploads:
        if idle(upload.name):
            multipart_abort(upload)
            aborted.append(upload.name)
    if removed or aborted:
        logger.info(
            "Removed %s unreferenced objects and aborted %s unfinished uploads",
            len(removed),
            len(aborted),
        )
    return OrphanSummary(
        partial_files=[], item_dirs=[], objects=sorted(removed), multipart_uploads=sorted(aborted)
    )
