"""The conversion state machine, run in-process against the real database and engine."""

from pathlib import Path

import pytest
from django.core.files import File
from django_celery_results.models import TaskResult

from geoconvert.models import Conversion
from geoconvert.services.conversions import conversion_cancel, conversion_retry, conversion_start
from geoconvert.services.run import ConversionFailed, ConversionStopped, RunContext, conversion_run
from tagger.errors import ApplicationError, Conflict
from tagger.models import TreeItem
from tagger.services import item_create
from tests import rasters
from tests.storage import folder_names


@pytest.fixture(autouse=True)
def _no_heartbeat(settings):
    """These tests run inside the test's transaction, which the heartbeat thread (a
    connection of its own) could not see; and nothing is sent to the broker, since
    on-commit callbacks never run here. Heartbeats are tested through the real worker."""
    settings.GEOCONVERT = {**settings.GEOCONVERT, "HEARTBEAT_SECONDS": 3600}


def _file_item(user, path: Path) -> TreeItem:
    with open(path, "rb") as fh:
        return item_create(owner=user, name=path.name, file=File(fh, name=path.name))


def _run(task_id, stages=None, **kwargs):
    on_stage = (
        (lambda stage, progress: stages.append((str(stage), progress)))
        if stages is not None
        else None
    )
    return conversion_run(
        RunContext(task_id=str(task_id), worker="test", on_stage=on_stage, **kwargs)
    )


@pytest.fixture
def raster_item(user, tmp_path):
    return _file_item(user, rasters.rgb_byte_tiff(tmp_path / "rgb.tif"))


def test_run_reports_every_stage_in_order(raster_item):
    conversion, created = conversion_start(item=raster_item)
    assert created and conversion.state == "PENDING" and conversion.stage == "Waiting in queue"
    stages = []
    result = _run(conversion.task_id, stages)
    assert stages == [
        ("Starting conversion", 0),
        ("Loading file", 10),
        ("Analyzing file", 20),
        ("Creating georeferenced file", 40),
        ("Updating database", 80),
        ("Conversion complete", 100),
    ]
    conversion.refresh_from_db()
    assert conversion.state == "SUCCESS" and conversion.progress == 100
    assert conversion.attempts == 1 and conversion.result == result
    assert conversion.started_at <= conversion.finished_at
    raster_item.refresh_from_db()
    assert raster_item.object_type == "geo_raster_file"
    assert raster_item.geo_raster.as_metadata() == result


def test_start_returns_the_active_conversion(raster_item):
    first, created = conversion_start(item=raster_item)
    second, created_again = conversion_start(item=raster_item)
    assert created and not created_again and second.pk == first.pk
    assert TaskResult.objects.get(task_id=str(first.task_id)).status == "PENDING"


def test_start_refuses_folders_and_converted_items(user, raster_item):
    folder = item_create(owner=user, name="folder")
    with pytest.raises(ApplicationError) as folder_error:
        conversion_start(item=folder)
    assert folder_error.value.code == "not_a_file"
    conversion, _ = conversion_start(item=raster_item)
    _run(conversion.task_id)
    with pytest.raises(Conflict) as conflict:
        conversion_start(item=raster_item)
    assert conflict.value.extra["status"] == "COMPLETED"


def test_a_second_delivery_of_a_finished_conversion_does_nothing(raster_item):
    conversion, _ = conversion_start(item=raster_item)
    _run(conversion.task_id)
    with pytest.raises(ConversionStopped) as stopped:
        _run(conversion.task_id, redelivered=True)
    assert stopped.value.state == "SUCCESS"
    conversion.refresh_from_db()
    assert conversion.attempts == 1 and conversion.state == "SUCCESS"


def test_cancel_of_a_queued_conversion_is_final(raster_item):
    conversion, _ = conversion_start(item=raster_item)
    conversion_cancel(conversion=conversion)
    conversion.refresh_from_db()
    assert conversion.state == "CANCELLED" and conversion.finished_at
    with pytest.raises(ConversionStopped) as stopped:
        _run(conversion.task_id)
    assert stopped.value.state == "CANCELLED"
    raster_item.refresh_from_db()
    assert raster_item.object_type == "file"
    with pytest.raises(Conflict):
        conversion_cancel(conversion=conversion)


def test_cancel_requested_while_running_is_honoured_at_the_next_stage(raster_item):
    conversion, _ = conversion_start(item=raster_item)
    stages = []

    def cancel_after_loading(stage, progress):
        stages.append(str(stage))
        if str(stage) == "Loading file":
            conversion_cancel(conversion=Conversion.objects.get(pk=conversion.pk))

    with pytest.raises(ConversionStopped) as stopped:
        conversion_run(
            RunContext(task_id=str(conversion.task_id), worker="t", on_stage=cancel_after_loading)
        )
    assert stopped.value.state == "CANCELLED"
    conversion.refresh_from_db()
    assert conversion.state == "CANCELLED" and conversion.progress == 10
    assert stages == ["Starting conversion", "Loading file"]
    assert folder_names(str(Path(raster_item.file.name).parent)) == ["original"]


def test_a_bad_raster_fails_with_its_reason_and_can_be_retried(user, tmp_path):
    item = _file_item(user, rasters.text_file(tmp_path / "notes.csv"))
    conversion, _ = conversion_start(item=item)
    with pytest.raises(ConversionFailed) as failed:
        _run(conversion.task_id)
    conversion.refresh_from_db()
    assert conversion.state == "FAILURE" and conversion.error == str(failed.value)
    assert conversion.progress == 10, "a failed conversion keeps the progress it reached"
    retry = conversion_retry(conversion=conversion)
    assert retry.pk != conversion.pk and retry.retry_of_id == conversion.pk
    with pytest.raises(Conflict):
        conversion_retry(conversion=retry)


def test_attempts_are_capped(raster_item, settings):
    conversion, _ = conversion_start(item=raster_item)
    Conversion.objects.filter(pk=conversion.pk).update(attempts=settings.GEOCONVERT["MAX_ATTEMPTS"])
    with pytest.raises(ConversionFailed) as failed:
        _run(conversion.task_id, redelivered=True)
    assert "times" in str(failed.value)
    conversion.refresh_from_db()
    assert conversion.state == "FAILURE"


def test_invalid_request_crs_is_refused_at_once(raster_item):
    with pytest.raises(ApplicationError) as error:
        conversion_start(item=raster_item, target_crs="EPSG:999999")
    assert error.value.code == "invalid_crs"
    assert not Conversion.objects.exists()


@pytest.mark.django_db
def test_a_member_of_a_cancelled_batch_retried_alone_runs_outside_it(user, tmp_path):
    # As the admin's retry action and retry_failed_conversions do.
    from geoconvert.services.batches import batch_cancel, batch_start

    folder = item_create(owner=user, name="survey")
    for name in ("a.tif", "b.tif"):
        path = rasters.rgb_byte_tiff(tmp_path / name)
        with open(path, "rb") as fh:
            item_create(owner=user, name=name, parent=folder, file=File(fh, name=name))
    batch = batch_cancel(batch=batch_start(folder=folder))
    member = batch.conversions.first()

    retried = conversion_retry(conversion=member)

    assert retried.batch_id is None and retried.retry_of_id == member.pk
    batch.refresh_from_db()
    assert batch.state == "CANCELLED"
    assert set(batch.conversions.values_list("state", flat=True)) == {"CANCELLED"}
