"""Worker hosts with no shared disk (scripts/worker-hosts): three network namespaces, each
running a worker that reaches Redis, the database and the S3 store only over its link to
this machine. A folder's batch of 30 conversions spreads over them; one host is lost
mid-batch (its worker SIGKILLed mid-write, its namespace deleted) and every conversion
still ends SUCCESS exactly once, with nothing left in the bucket that no item names."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rio_cogeo.cogeo import cog_validate

from geoconvert.models import Conversion, Stage
from geoconvert.services.housekeeping import conversion_reap_stale, orphan_files_remove
from tagger.models import GeoRaster, TreeItem
from tests import rasters, s3server
from tests.conftest import require
from tests.fixtures import REPO, _process_env
from tests.geoconvert.api.helpers import convert, upload
from tests.geoconvert.reliability.helpers import wait_until
from tests.storage import local_copy

pytestmark = pytest.mark.slow

SCRIPT = REPO / "scripts" / "worker-hosts"
# Names and a network of the test's own, beside any hosts an operator has up.
NAME = "tgtest"
NET = "10.231.250"
BRIDGE_ADDRESS = f"{NET}.1"
BUCKET = "tagger-hosts"
HOSTS = 3
FILES = 30
WORKER_ENV = {
    # A dead run is noticed within about a second and a half (as the reliability tests).
    "GEOCONVERT_HEARTBEAT_SECONDS": "0.25",
    "GEOCONVERT_HEARTBEAT_STALE_SECONDS": "1.5",
    # One GDAL thread each: three hosts share this machine's cores.
    "GEOCONVERT_NUM_THREADS": "1",
    "GEOCONVERT_LEVEL": "9",
    "CELERY_WORKER_CONCURRENCY": "1",
    "WORKER_HOSTS_CELERY_ARGS": "--without-gossip --without-mingle",
}


def namespaces_unavailable() -> str:
    """Why this machine cannot make network namespaces ("" when it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare"):
        if not shutil.which(tool):
            return f"`{tool}` is not installed"
    probe = f"{NAME}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


class WorkerHosts:
    """scripts/worker-hosts with the test's environment and state folder."""

    def __init__(self, folder: Path, env: dict):
        self.folder = folder
        self.env = {
            **env,
            "WORKER_HOSTS_DIR": str(folder),
            "WORKER_HOSTS_NAME": NAME,
            "WORKER_HOSTS_NET": NET,
        }

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"worker-hosts {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def host(self, k: int) -> Path:
        return self.folder / f"host{k}"

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")
            for path in sorted(self.folder.glob("host*/worker.log*"))
        )


@pytest.fixture
def s3_settings(settings):
    """This process (the API, the reaper, housekeeping) on the test's bucket."""

    def use(endpoint: str) -> dict:
        env = {
            "TAGGER_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_ADDRESSING_STYLE": "path",
            "AWS_S3_REGION_NAME": s3server.REGION,
            "AWS_ACCESS_KEY_ID": s3server.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": s3server.SECRET_KEY,
            "TAGGER_S3_DELIVERY": "proxy",
        }
        settings.TAGGER_STORAGE = "s3"
        settings.AWS_STORAGE_BUCKET_NAME = BUCKET
        settings.AWS_S3_ENDPOINT_URL = endpoint
        settings.AWS_S3_ADDRESSING_STYLE = "path"
        settings.AWS_S3_REGION_NAME = s3server.REGION
        settings.TAGGER_S3_DELIVERY = "proxy"
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": BUCKET,
                    "endpoint_url": endpoint,
                    "addressing_style": "path",
                    "region_name": s3server.REGION,
                    "access_key": s3server.ACCESS_KEY,
                    "secret_key": s3server.SECRET_KEY,
                    "signature_version": "s3v4",
                    "file_overwrite": False,
                    "default_acl": None,
                    "object_parameters": {"ChecksumAlgorithm": "SHA256"},
                },
            },
        }
        settings.GEOCONVERT = {**settings.GEOCONVERT, "HEARTBEAT_STALE_SECONDS": 1.5}
        return env

    return use


@pytest.fixture
def worker_hosts(transactional_db, settings, s3_settings, tmp_path):
    """Three worker hosts up, and the S3 store (moto's server) on the bridge's address."""
    require(not (reason := namespaces_unavailable()), reason)
    require(
        not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
        "worker hosts need a database server: run with DATABASE_URL=postgres://...",
    )
    hosts = WorkerHosts(tmp_path / "hosts", {**_process_env(), **WORKER_ENV})
    store = None
    try:
        hosts("network")
        store = s3server.MotoServer(host=BRIDGE_ADDRESS)
        s3server.create_bucket(store.start(), BUCKET)
        hosts.env.update(s3_settings(store.url))
        hosts("up", str(HOSTS))
        hosts.store = store
        yield hosts
    finally:
        try:
            hosts("down")
        finally:
            if store is not None:
                store.stop()
            for k in range(1, HOSTS + 1):
                log = hosts.host(k) / "worker.log"
                if log.exists():  # shown by pytest when the test failed
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
                    print(f"--- host{k} ---\n{tail}")


def _host(conversion: Conversion) -> str:
    return conversion.worker.partition("@")[0]


def _writing_on(k: int, hosts: WorkerHosts) -> Conversion | None:
    """A conversion host k is writing now (its COG is in the host's scratch folder)."""
    conversion = Conversion.objects.filter(
        state=Conversion.State.PROGRESS, stage=Stage.CREATING, worker__startswith=f"host{k}@"
    ).first()
    scratch = hosts.host(k) / "scratch" / (conversion.item_id.hex if conversion else "-")
    return conversion if conversion and scratch.is_dir() and any(scratch.iterdir()) else None


def test_a_batch_spreads_over_three_hosts_and_survives_losing_one(api, tmp_path, worker_hosts):
    hosts = worker_hosts
    # The hosts reach this machine only at the bridge's address: not its loopback.
    for port in (5432, 6379):
        inside = [
            "ip", "netns", "exec", f"{NAME}-host1", sys.executable, "-c",
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)",
        ]  # fmt: skip
        assert subprocess.run(inside, capture_output=True).returncode != 0, port
    with socket.create_connection((BRIDGE_ADDRESS, hosts.store.port), timeout=2):
        pass

    src = rasters.large_noise_tiff(tmp_path / "noise.tif", size=1500)
    folder = api.post("/api/v1/tree-items/", {"name": "survey"}, format="json").json()
    for i in range(FILES):
        upload(api, src, name=f"{i:02}.tif", parent=folder["id"])
    accepted = convert(api, folder["id"]).json()
    assert accepted["total"] == FILES, accepted
    batch = Conversion.objects.filter(batch_id=accepted["batch_id"])

    def every_host_converted_and_host2_writing():
        done = {_host(c) for c in batch.filter(state=Conversion.State.SUCCESS)}
        return done >= {f"host{k}" for k in range(1, HOSTS + 1)} and _writing_on(2, hosts)

    victim = wait_until(
        every_host_converted_and_host2_writing, "every host to convert one, host2 to write"
    )
    hosts("lose", "2")

    # Beat's reaper (every minute in production) finds the conversion whose heartbeat stopped.
    wait_until(
        lambda: str(victim.pk) in conversion_reap_stale().requeued,
        "the reaper to re-queue the lost host's conversion",
        interval=0.25,
    )
    wait_until(
        lambda: not batch.filter(state__in=Conversion.ACTIVE_STATES).exists(),
        "the batch to finish",
        timeout=300,
    )

    conversions = list(batch)
    assert len(conversions) == FILES
    assert {c.state for c in conversions} == {Conversion.State.SUCCESS}, [
        (c.state, c.error) for c in conversions if c.state != Conversion.State.SUCCESS
    ]
    # Each host converted some; host2's before it was lost.
    assert {_host(c) for c in conversions} == {"host1", "host2", "host3"}
    victim.refresh_from_db()
    assert victim.attempts == 2 and _host(victim) in ("host1", "host3")
    # Exactly once: one conversion, one COG per file, each completed by one run.
    items = TreeItem.objects.filter(parent_id=folder["id"])
    assert items.count() == FILES
    assert {i.object_type for i in items} == {TreeItem.ObjectType.GEO_RASTER_FILE}
    assert GeoRaster.objects.filter(item__in=items).count() == FILES
    logs = hosts.logs()
    for conversion in conversions:
        assert logs.count(f"Conversion {conversion.task_id} complete") == 1, conversion.task_id
    cog = local_copy(GeoRaster.objects.get(item_id=victim.item_id).file.name)
    assert cog_validate(str(cog))[0]
    rasters.assert_same_pixels(src, cog)

    # Housekeeping as beat runs it, once the follow-up tasks have stored every thumbnail.
    wait_until(
        lambda: not GeoRaster.objects.filter(item__in=items, thumbnail="").exists(),
        "every thumbnail",
        timeout=120,
    )
    orphan_files_remove(min_age_seconds=0)
    s3 = hosts.store.client()
    stored = {
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for entry in page.get("Contents", ())
    }
    named = set(TreeItem.objects.exclude(file="").values_list("file", flat=True))
    for names in GeoRaster.objects.values_list("file", "thumbnail"):
        named.update(name for name in names if name)
    assert stored == named
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    # Nothing went through a disk the hosts share: their media folders stayed empty, and only
    # the lost host's scratch holds anything (the COG it was writing when it died).
    for k in range(1, HOSTS + 1):
        assert not any((hosts.host(k) / "media").iterdir()), k
        leftovers = [p for p in (hosts.host(k) / "scratch").rglob("*") if p.is_file()]
        assert bool(leftovers) == (k == 2), (k, leftovers)
