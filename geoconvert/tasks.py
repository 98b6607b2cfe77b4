"""The Celery tasks: each takes primitive ids and calls a service."""

import logging

from celery import shared_task
from celery.exceptions import Ignore
from kombu.exceptions import OperationalError as BrokerError

from geoconvert.selectors import conversion_log_fields
from geoconvert.services.batches import batches_complete_finished
from geoconvert.services.db import TRANSIENT_DB_ERRORS
from geoconvert.services.describe import geo_raster_describe
from geoconvert.services.dispatch import conversions_release
from geoconvert.services.housekeeping import conversion_reap_stale, orphan_files_remove
from geoconvert.services.metrics import conversion_stage_seconds_record
from geoconvert.services.run import ConversionStopped, RunContext, conversion_run
from geoconvert.services.stages import StageClock
from geoconvert.services.transitions import DESCRIBE_TASK_NAME, TASK_NAME
from tagger.logs import log_bind

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name=TASK_NAME,
    acks_late=True,
    # Transient infrastructure errors only; a bad raster fails at once (ConversionFailed).
    autoretry_for=(*TRANSIENT_DB_ERRORS, BrokerError),
    max_retries=3,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
)
def convert_to_geo_raster(self, task_id: str) -> dict:
    """Convert the item of conversion `task_id` to a Cloud-Optimized GeoTIFF."""
    request = self.request
    clock = StageClock()

    def on_stage(stage, progress):
        clock.enter(stage)
        self.update_state(state="PROGRESS", meta={"stage": str(stage), "progress": progress})

    ctx = RunContext(
        task_id=task_id,
        worker=request.hostname or "",
        is_retry=request.retries > 0,
        redelivered=bool((request.delivery_info or {}).get("redelivered")),
        on_stage=on_stage,
    )
    # The rest of this task's lines (Celery's own "succeeded" too) say which item, user and
    # attempt they are about; the task's end (task_postrun) unbinds them.
    log_bind(**conversion_log_fields(task_id=task_id))
    try:
        return conversion_run(ctx)
    except ConversionStopped as stop:
        logger.info("Conversion %s: this run stops (%s)", task_id, stop)
        if stop.state == "CANCELLED":
            # Flower knows no CANCELLED state; "revoked" is its word for it.
            self.send_event("task-revoked", terminated=False, signum=None, expired=False)
        # The service has recorded the outcome; Celery must not overwrite it.
        raise Ignore() from None
    finally:
        conversion_stage_seconds_record(clock.stop())


@shared_task(name="geoconvert.tasks.reap_stale_conversions")
def reap_stale_conversions() -> dict:
    """Re-queue or fail conversions whose worker went silent (run by beat)."""
    return conversion_reap_stale().as_dict()


@shared_task(name="geoconvert.tasks.release_conversions")
def release_conversions() -> dict:
    """Send waiting and due scheduled conversions to the broker as each user's share allows,
    and complete batches whose members have all ended (run by beat every few seconds)."""
    summary = conversions_release().as_dict()
    summary["batches_completed"] = batches_complete_finished()
    return summary


@shared_task(name="geoconvert.tasks.remove_orphaned_files")
def remove_orphaned_files() -> dict:
    """Delete leftover partial files and directories of deleted items (run by beat)."""
    return orphan_files_remove().as_dict()


@shared_task(
    name=DESCRIBE_TASK_NAME,
    autoretry_for=TRANSIENT_DB_ERRORS,
    max_retries=3,
    retry_backoff=2,
)
def describe_geo_raster(item_id: str) -> dict:
    """Statistics and thumbnail of an item's COG: linked to each conversion's task, so it
    runs once the conversion has succeeded (and never when it did not)."""
    log_bind(item_id=item_id)
    return geo_raster_describe(item_id=item_id).as_dict()
