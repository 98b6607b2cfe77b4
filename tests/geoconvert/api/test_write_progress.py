"""Progress inside the write as a client polling the task status sees it: a real worker,
the real API, a conversion that takes seconds to write.

The worker runs on a private Redis with the reliability tests' slow-write settings (one GDAL
thread, DEFLATE level 9), so 5000 px of noise spends seconds in "Creating georeferenced file";
the session's worker, at the fast defaults, writes it in about one.
"""

import itertools
import time

import pytest

from geoconvert.models import Stage
from tests import rasters
from tests.conftest import EmbeddedRedis
from tests.fixtures import WorkerProcess
from tests.geoconvert.api.helpers import convert, task_status, upload
from tests.geoconvert.reliability.conftest import FAST_WORKER_ENV, broker


@pytest.fixture
def slow_worker(transactional_db, tmp_path):
    server = EmbeddedRedis()
    with broker(server.start()):
        worker = WorkerProcess(
            tmp_path / "worker.log",
            extra_env=FAST_WORKER_ENV,
            concurrency=1,
            broker_url=server.url,
        )
        try:
            yield worker.start()
        finally:
            worker.stop()
            print(f"--- worker log ---\n{worker.log_tail(80)}")  # shown if the test failed
    server.stop()


def test_progress_moves_during_the_write_and_an_eta_appears(api, tmp_path, slow_worker):
    item = upload(api, rasters.large_noise_tiff(tmp_path / "noise.tif", size=5000))
    response = convert(api, item["id"])
    assert response.status_code == 202, response.content
    task_id = response.json()["task_id"]

    seen = []  # every distinct (state, status, progress, eta_seconds) polled
    deadline = time.monotonic() + 120
    while not seen or seen[-1][0] not in ("SUCCESS", "FAILURE", "CANCELLED"):
        assert time.monotonic() < deadline, seen
        body = task_status(api, task_id)
        snapshot = (body["state"], body["status"], body["progress"], body["eta_seconds"])
        if not seen or seen[-1] != snapshot:
            seen.append(snapshot)
        time.sleep(0.1)

    assert seen[-1][:3] == ("SUCCESS", Stage.COMPLETE, 100), seen
    assert seen[-1][3] is None
    progress = [p for _, _, p, _ in seen]
    assert all(a <= b for a, b in itertools.pairwise(progress)), seen
    writing = [(p, eta) for state, status, p, eta in seen if status == Stage.CREATING]
    assert any(40 < p < 80 for p, _ in writing), seen
    assert all(40 <= p < 80 for p, _ in writing), seen
    # No estimate until the write has a rate; then a countdown that never goes negative.
    running = [eta for state, _, _, eta in seen if state == "PROGRESS"]
    assert running[0] is None, seen
    estimates = [eta for eta in running if eta is not None]
    assert estimates, seen
    assert all(isinstance(eta, int) and eta >= 0 for eta in estimates), seen
