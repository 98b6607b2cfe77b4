"""A worker on S3 storage with no access to MEDIA_ROOT: it reads the original through
/vsis3/, writes the COG to its own scratch folder and uploads it. Killed mid-write, the
conversion still ends SUCCESS exactly once, with nothing left in the bucket, in unfinished
uploads or in scratch. Runs on every run of the suite, on a bucket of its own (moto's server,
a real process)."""

import os
import signal

from geoconvert.services.housekeeping import orphan_files_remove
from tagger import storage
from tagger.models import GeoRaster, TreeItem
from tests import s3server
from tests.geoconvert.reliability.helpers import (
    assert_converted_once,
    logs,
    start_large_conversion,
    wait_finished,
    wait_mid_write,
    wait_until,
)


def test_a_worker_without_shared_disk_killed_mid_write_converts_once(
    api, tmp_path, start_worker, s3_bucket, settings, run=0
):
    scratch = tmp_path / "scratch"
    settings.TAGGER_SCRATCH_DIR = scratch  # where the tests look for the worker's partial
    worker = start_worker(
        **s3server.process_environment(s3_bucket.endpoint, s3_bucket.name),
        MEDIA_ROOT=str(tmp_path / "no-media-here"),
        TAGGER_SCRATCH_DIR=str(scratch),
    )
    src, item_id, task_id, digest = start_large_conversion(api, tmp_path)

    wait_mid_write(task_id, item_id, attempt=1)
    (child,) = worker.pool_pids()
    os.kill(child, signal.SIGKILL)

    conversion = wait_finished(task_id)
    assert conversion.attempts == 2, logs(worker)
    assert_converted_once(item_id, task_id, src, digest, lambda: logs(worker))
    item = TreeItem.objects.select_related("geo_raster").get(pk=item_id)
    assert item.geo_raster.file.name.startswith(storage.item_dir(item))
    assert not (tmp_path / "no-media-here").exists()
    assert list(scratch.rglob("*.tif*")) == []
    listed = s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name)
    assert listed.get("Uploads", []) == []
    # Once the follow-up task has named its thumbnail, every object is one an item names.
    wait_until(lambda: GeoRaster.objects.get(item_id=item_id).thumbnail, "the thumbnail")
    assert orphan_files_remove(min_age_seconds=0).objects == []
