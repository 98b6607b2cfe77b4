"""A conversion writes its progress once per stage plus a heartbeat, and while the COG is
written a few throttled writes more, no more.

The run happens in this process (``conversion_run`` as the Celery task calls it) on a real
raster; every UPDATE of the conversion table is counted, on every thread's connection (the
heartbeat has its own).
"""

import itertools
import math
import re
import threading
import time
from datetime import timedelta

import pytest
from django.db.backends.signals import connection_created
from django.utils import timezone

from geoconvert.models import Conversion, Stage
from geoconvert.services import run
from tests import rasters
from tests.factories import ConversionFactory, TreeItemFactory

HEARTBEAT_SECONDS = 0.05
UPDATE = re.compile(r'^\s*UPDATE\s+"?geoconvert_conversion"?\s+SET\s+(.*?)\s+WHERE', re.I | re.S)


class ConversionUpdates:
    """Counts UPDATEs of geoconvert_conversion on every connection opened from now on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.heartbeats = 0
        self.others: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        match = UPDATE.match(sql)
        if match:
            columns = re.findall(r'"(\w+)"\s*=', match.group(1))
            with self.lock:
                if columns == ["heartbeat_at"]:
                    self.heartbeats += 1
                else:
                    self.others.append(", ".join(columns))
        return execute(sql, params, many, context)

    def attach(self, sender, connection, **kwargs):
        connection.execute_wrappers.append(self)


@pytest.fixture
def updates(settings):
    settings.GEOCONVERT = {**settings.GEOCONVERT, "HEARTBEAT_SECONDS": HEARTBEAT_SECONDS}
    counter = ConversionUpdates()
    connection_created.connect(counter.attach)
    from django.db import connection

    connection.execute_wrappers.append(counter)
    yield counter
    connection.execute_wrappers.remove(counter)
    connection_created.disconnect(counter.attach)


def test_one_write_per_stage_and_a_bounded_heartbeat(transactional_db, user, tmp_path, updates):
    src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")
    item = TreeItemFactory(owner=user, name="rgb.tif", content=src.read_bytes())
    conversion = ConversionFactory(item=item)
    mirrored = []
    updates.others.clear()  # only the run's writes count

    started = time.monotonic()
    run.conversion_run(
        run.RunContext(
            task_id=str(conversion.task_id),
            worker="test",
            on_stage=lambda stage, progress: mirrored.append(stage),
        )
    )
    elapsed = time.monotonic() - started

    conversion.refresh_from_db()
    assert conversion.state == Conversion.State.SUCCESS
    # The claim, one write per stage the engine reports, "updating", and the final write.
    assert len(updates.others) == 1 + 3 + 1 + 1, updates.others
    # The result backend hears of each stage once.
    assert mirrored == [
        Stage.STARTING,
        Stage.LOADING,
        Stage.ANALYZING,
        Stage.CREATING,
        Stage.UPDATING,
        Stage.COMPLETE,
    ]
    assert updates.heartbeats <= math.ceil(elapsed / HEARTBEAT_SECONDS) + 1


def test_the_write_moves_progress_towards_80_in_a_few_writes_with_an_eta(
    transactional_db, user, tmp_path, updates, settings
):
    # One thread at DEFLATE's slowest level: 5000 px of noise takes seconds to write.
    settings.GEOCONVERT = {**settings.GEOCONVERT, "LEVEL": 9, "NUM_THREADS": 1}
    src = rasters.large_noise_tiff(tmp_path / "noise.tif", size=5000)
    item = TreeItemFactory(owner=user, name="noise.tif", content=src.read_bytes())
    # A previous run's estimate, which the claim must forget.
    conversion = ConversionFactory(item=item, eta_at=timezone.now() + timedelta(hours=1))
    seen = []  # (stage, progress, eta_at as saved, when), at each progress write

    def on_stage(stage, progress):
        eta_at = Conversion.objects.values_list("eta_at", flat=True).get(pk=conversion.pk)
        seen.append((stage, progress, eta_at, timezone.now()))

    updates.others.clear()
    run.conversion_run(
        run.RunContext(task_id=str(conversion.task_id), worker="test", on_stage=on_stage)
    )

    conversion.refresh_from_db()
    assert conversion.state == Conversion.State.SUCCESS
    during = [(p, eta, at) for stage, p, eta, at in seen if stage == Stage.CREATING][1:]
    progress = [p for p, _, _ in during]
    assert [(s, p) for s, p, _, _ in seen] == [
        (Stage.STARTING, 0),
        (Stage.LOADING, 10),
        (Stage.ANALYZING, 20),
        (Stage.CREATING, 40),
        *((Stage.CREATING, p) for p in progress),
        (Stage.UPDATING, 80),
        (Stage.COMPLETE, 100),
    ]
    assert 2 <= len(progress) <= 10, progress
    assert all(40 < p < 80 for p in progress), progress
    assert all(a < b for a, b in itertools.pairwise(progress)), progress
    # The extra writes are those and only those.
    assert len(updates.others) == 1 + 3 + 1 + 1 + len(progress), updates.others
    # No ETA from the previous run, none before the write has a rate, then one ahead.
    assert all(eta is None for _, _, eta, _ in seen[:4])
    etas = [(eta, at) for _, eta, at in during if eta is not None]
    assert etas, during
    assert all(eta >= at for eta, at in etas)
