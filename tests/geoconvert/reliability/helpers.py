"""What the fault tests wait for and check."""

import hashlib
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from rio_cogeo.cogeo import cog_validate

from geoconvert.models import Conversion, Stage
from tagger.models import GeoRaster, TreeItem
from tests import rasters
from tests.storage import folder_names, local_copy, stored_sha256


def start_large_conversion(api, tmp_path, size: int = 2500, src: Path | None = None):
    """Upload a raster that takes seconds to convert (`src`, or one made in `tmp_path`) and
    ask for its conversion."""
    from tests.geoconvert.api.helpers import convert, upload

    src = src or rasters.large_noise_tiff(tmp_path / "large.tif", size=size)
    item = upload(api, src)
    digest = stored_sha256(TreeItem.objects.get(pk=item["id"]).file.name)
    response = convert(api, item["id"])
    assert response.status_code == 202, response.content
    return src, item["id"], response.json()["task_id"], digest


def logs(*workers) -> str:
    return "\n".join(w.log_path.read_text(errors="replace") for w in workers)


def wait_until(predicate, what: str, timeout: float = 120, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def item_folder(item_id) -> str:
    """The item's folder, as a storage name."""
    return str(Path(TreeItem.objects.get(pk=item_id).file.name).parent)


def folder_files(item_id) -> list[str]:
    return folder_names(item_folder(item_id))


def working_files(item_id) -> list[str]:
    """What the item's runs are writing: its folder's files and, on S3, where the workers
    (of this host) write a COG before uploading it."""
    scratch = Path(settings.TAGGER_SCRATCH_DIR) / TreeItem.objects.get(pk=item_id).pk.hex
    return folder_files(item_id) + sorted(p.name for p in scratch.glob("*"))


def wait_mid_write(task_id, item_id, attempt: int) -> None:
    """Until run number `attempt` of the conversion is writing its COG (a partial file is on
    disk), so a kill now interrupts the write."""
    wait_all_mid_write([(task_id, item_id)], attempt)


def wait_all_mid_write(conversions, attempt: int = 1) -> None:
    """Until every (task_id, item_id) of `conversions` is writing at the same moment: waiting
    for one after the other could see the first finish while the second was awaited."""

    def writing(task_id, item_id):
        conversion = Conversion.objects.get(pk=task_id)
        if conversion.is_finished:
            raise AssertionError(f"{task_id} ended {conversion.state}: {conversion.error}")
        return (
            conversion.attempts == attempt
            and conversion.stage == Stage.CREATING
            and any(name.endswith(".partial") for name in working_files(item_id))
        )

    ids = ", ".join(str(task_id) for task_id, _ in conversions)
    wait_until(
        lambda: all([writing(*conversion) for conversion in conversions]),
        f"attempt {attempt} of {ids} to be writing",
    )


def wait_finished(task_id, timeout: float = 120) -> Conversion:
    return wait_until(
        lambda: Conversion.objects.filter(pk=task_id, state__in=Conversion.FINISHED_STATES).first(),
        f"conversion {task_id} to finish",
        timeout=timeout,
    )


def assert_converted_once(item_id, task_id, src: Path, original_digest: str, logs) -> None:
    """SUCCESS exactly once: one result row, one COG equal to the source, nothing else on disk,
    the original untouched, and one run (of the workers' `logs()`) that completed it."""
    done = f"Conversion {task_id} complete"
    wait_until(lambda: done in logs(), "the worker's log to say it completed")
    conversion = Conversion.objects.get(pk=task_id)
    assert conversion.state == Conversion.State.SUCCESS, (conversion.state, conversion.error)
    assert 1 <= conversion.attempts <= settings.GEOCONVERT["MAX_ATTEMPTS"]
    assert Conversion.objects.filter(item_id=item_id).count() == 1
    assert GeoRaster.objects.filter(item_id=item_id).count() == 1
    item = TreeItem.objects.get(pk=item_id)
    assert item.object_type == TreeItem.ObjectType.GEO_RASTER_FILE
    # The original and the one COG its metadata row points at: no partial file, no other run's
    # (beside the thumbnail the follow-up task writes, or is writing).
    files = [
        name for name in folder_files(item_id) if not name.lstrip(".").startswith("thumbnail-")
    ]
    assert files == sorted(["original", Path(item.geo_raster.file.name).name])
    assert stored_sha256(item.file.name) == original_digest
    cog = local_copy(item.geo_raster.file.name)
    valid, errors, _ = cog_validate(str(cog))
    assert valid, errors
    rasters.assert_same_pixels(src, cog)
    assert item.geo_raster.size_bytes == cog.stat().st_size
    assert logs().count(done) == 1


WORKER_APPLICATION_NAME = "tagger-worker-under-test"


def worker_database_env() -> dict:
    """Extra env for a worker whose database connections a test will break."""
    from tests.fixtures import _database_url

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        # A locked database answers "database is locked" after this long, not 30 s.
        return {"SQLITE_BUSY_TIMEOUT": "0.2"}
    # Names the worker's connections, so the test breaks those and not its own.
    return {"DATABASE_URL": f"{_database_url()}?application_name={WORKER_APPLICATION_NAME}"}


@contextmanager
def database_outage():
    """The database refuses the worker's writes until the block ends.

    SQLite: this process holds an exclusive lock (BEGIN EXCLUSIVE), so every other writer
    gets "database is locked" once its busy timeout passes; readers are unaffected (WAL).
    PostgreSQL: the worker's connections are terminated and the database refuses new ones.
    """
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        lock = sqlite3.connect(db["NAME"], isolation_level=None, timeout=30)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    import psycopg2

    admin = psycopg2.connect(
        dbname="postgres",
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
    )
    admin.autocommit = True
    name = db["NAME"]
    with admin.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s",
            [name, WORKER_APPLICATION_NAME],
        )
    try:
        yield
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
