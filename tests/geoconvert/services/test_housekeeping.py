"""The periodic housekeeping services, called directly: the stale-conversion reaper, the
orphaned-file sweep, the result cleanup and the registration of beat's schedule."""

import os
import uuid
from pathlib import Path

import pytest
from celery import current_app
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

import geoconvert.tasks  # noqa: F401  (registers the tasks, as the worker's autodiscovery does)
import webhooks.tasks  # noqa: F401
from geoconvert.beat import PERIODIC_TASKS, periodic_tasks_register
from geoconvert.models import Conversion
from geoconvert.services.conversions import conversion_start
from geoconvert.services.housekeeping import conversion_reap_stale, orphan_files_remove
from tagger.services import item_create
from tests.geoconvert.api.helpers import broker_dispatches


@pytest.fixture
def running(user, settings):
    """A PROGRESS conversion whose last heartbeat was `age` seconds ago."""
    stale_after = settings.GEOCONVERT["HEARTBEAT_STALE_SECONDS"]

    def make(*, silent_for: float, attempts=1, **fields):
        item = item_create(owner=user, name="a.tif", file=ContentFile(b"x"))
        conversion, _ = conversion_start(item=item)
        beat = timezone.now() - timezone.timedelta(seconds=silent_for)
        Conversion.objects.filter(pk=conversion.pk).update(
            state="PROGRESS",
            stage="Creating georeferenced file",
            progress=40,
            claim=uuid.uuid4(),
            worker="gone@host",
            started_at=beat,
            heartbeat_at=beat,
            attempts=attempts,
            **fields,
        )
        return conversion

    make.stale_after = stale_after
    return make


def _backend_state(conversion) -> str:
    return TaskResult.objects.get(task_id=str(conversion.task_id)).status


def test_reaper_requeues_silent_conversions_with_attempts_left(
    running, django_capture_on_commit_callbacks
):
    silent = running(silent_for=running.stale_after + 5, attempts=1)
    alive = running(silent_for=0)

    with django_capture_on_commit_callbacks(execute=False) as dispatches:
        summary = conversion_reap_stale()

    assert summary.as_dict() == {"requeued": [str(silent.task_id)], "failed": [], "cancelled": []}
    # It waits in the database again, and the dispatcher runs once the requeue commits.
    assert len(broker_dispatches(dispatches)) == 1
    silent.refresh_from_db(), alive.refresh_from_db()
    assert silent.queued_at is None
    assert (silent.state, silent.stage, silent.progress, silent.claim) == (
        "PENDING",
        "Waiting in queue",
        0,
        None,
    )
    assert silent.attempts == 1  # counted when a worker claims it again
    assert _backend_state(silent) == "PENDING"
    assert alive.state == "PROGRESS" and alive.claim is not None


def test_reaper_fails_silent_conversions_out_of_attempts(running, settings):
    silent = running(
        silent_for=running.stale_after + 5, attempts=settings.GEOCONVERT["MAX_ATTEMPTS"]
    )

    summary = conversion_reap_stale()

    assert summary.failed == [str(silent.task_id)]
    silent.refresh_from_db()
    assert silent.state == "FAILURE" and silent.finished_at
    assert "each time its worker stopped answering" in silent.error
    assert silent.progress == 40  # where it got to stays visible
    assert _backend_state(silent) == "FAILURE"


def test_reaper_cancels_silent_conversions_asked_to_stop(running):
    silent = running(silent_for=running.stale_after + 5, cancel_requested=True)
    assert conversion_reap_stale().cancelled == [str(silent.task_id)]
    silent.refresh_from_db()
    assert silent.state == "CANCELLED"
    assert _backend_state(silent) == "CANCELLED"


def test_reaper_judges_by_the_time_it_is_given(running):
    silent = running(silent_for=1)
    assert conversion_reap_stale().as_dict() == {"requeued": [], "failed": [], "cancelled": []}
    later = timezone.now() + timezone.timedelta(seconds=running.stale_after + 5)
    assert conversion_reap_stale(now=later).requeued == [str(silent.task_id)]


def _age(path: Path, seconds: float) -> Path:
    then = timezone.now().timestamp() - seconds
    os.utime(path, (then, then))
    return path


def _old_file(path: Path) -> Path:
    path.write_bytes(b"leftover")
    return _age(path, 7200)


@pytest.mark.local_storage  # the bucket's sweep: tests/tagger/test_storage_s3.py
def test_orphan_sweep(user, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    kept = item_create(owner=user, name="kept.tif", file=ContentFile(b"x"))
    kept_dir = Path(kept.file.path).parent
    busy = item_create(owner=user, name="busy.tif", file=ContentFile(b"x"))
    conversion_start(item=busy)
    busy_dir = Path(busy.file.path).parent

    old_partial = _old_file(kept_dir / ".geo_raster.tif.0a1b.partial")
    old_overview = _old_file(kept_dir / ".geo_raster.tif.0a1b.partial.ovr.tmp")
    fresh_partial = kept_dir / ".geo_raster.tif.2c3d.partial"
    fresh_partial.write_bytes(b"writing")
    busy_partial = _old_file(busy_dir / ".geo_raster.tif.4e5f.partial")

    orphan_dir = tmp_path / "items" / str(user.pk) / uuid.uuid4().hex
    orphan_dir.mkdir(parents=True)
    _old_file(orphan_dir / "original")
    _age(orphan_dir, 7200)
    uploading_dir = tmp_path / "items" / str(user.pk) / uuid.uuid4().hex
    uploading_dir.mkdir()
    (uploading_dir / "original").write_bytes(b"row not committed yet")
    stranger = tmp_path / "items" / str(user.pk) / "not-an-item"
    stranger.mkdir()

    summary = orphan_files_remove(min_age_seconds=3600)

    assert summary.item_dirs == [str(orphan_dir.relative_to(tmp_path))]
    assert sorted(summary.partial_files) == sorted(
        str(p.relative_to(tmp_path)) for p in (old_partial, old_overview)
    )
    assert not orphan_dir.exists() and not old_partial.exists() and not old_overview.exists()
    for path in (fresh_partial, busy_partial, uploading_dir, stranger, Path(kept.file.path)):
        assert path.exists(), path


def test_expired_task_results_are_cleaned_up(db, settings):
    old, recent = (
        TaskResult.objects.create(task_id=f"t-{n}", status="SUCCESS") for n in ("old", "recent")
    )
    TaskResult.objects.filter(pk=old.pk).update(
        date_done=timezone.now() - timezone.timedelta(seconds=settings.CELERY_RESULT_EXPIRES + 60)
    )

    current_app.tasks["celery.backend_cleanup"].apply().get()

    assert list(TaskResult.objects.values_list("task_id", flat=True)) == ["t-recent"]


def test_periodic_tasks_are_registered_on_the_default_queue(db):
    rows = {t.name: t for t in PeriodicTask.objects.filter(name__in=PERIODIC_TASKS)}
    assert set(rows) == set(PERIODIC_TASKS)
    for name, row in rows.items():
        assert row.task == PERIODIC_TASKS[name].task
        assert row.task in current_app.tasks  # a real task the worker knows
        assert row.queue == "default" and row.enabled
    assert rows["Reap stale conversions"].interval.every == 60
    assert rows["Clean up expired task results"].crontab.hour == "4"


def test_registration_is_idempotent_and_keeps_admin_edits(db):
    reaper = PeriodicTask.objects.get(name="Reap stale conversions")
    reaper.interval, _ = IntervalSchedule.objects.get_or_create(every=300, period="seconds")
    reaper.enabled = False
    reaper.save()
    PeriodicTask.objects.filter(name="Remove orphaned files").delete()

    call_command("migrate", verbosity=0)  # post_migrate registers what is missing
    assert periodic_tasks_register() == []

    reaper.refresh_from_db()
    assert reaper.interval.every == 300 and not reaper.enabled
    assert PeriodicTask.objects.filter(name="Remove orphaned files").count() == 1
    assert PeriodicTask.objects.filter(name__in=PERIODIC_TASKS).count() == len(PERIODIC_TASKS)


def test_beat_does_not_recreate_its_own_cleanup_entry(db):
    from geoconvert.beat import DatabaseScheduler

    scheduler = DatabaseScheduler(app=current_app, lazy=True)
    scheduler.install_default_entries({})
    assert not PeriodicTask.objects.filter(name="celery.backend_cleanup").exists()
