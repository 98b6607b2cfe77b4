"""A periodic task through the real path: the `default` queue and a worker process."""

import pytest
from django.utils import timezone

from geoconvert.tasks import reap_stale_conversions
from tests.factories import ConversionFactory

pytestmark = pytest.mark.usefixtures("live_worker")


def test_reaper_runs_on_the_default_queue_and_fails_dead_conversions(user, settings):
    long_ago = timezone.now() - timezone.timedelta(hours=1)
    # As a worker that died mid-run leaves it (created directly: nothing is dispatched).
    conversion = ConversionFactory(
        item__owner=user,
        running=True,
        started_at=long_ago,
        heartbeat_at=long_ago,
        attempts=settings.GEOCONVERT["MAX_ATTEMPTS"],
    )

    result = reap_stale_conversions.apply_async()
    summary = result.get(timeout=60)

    assert summary == {"requeued": [], "failed": [str(conversion.task_id)], "cancelled": []}
    assert result.state == "SUCCESS"
    conversion.refresh_from_db()
    assert conversion.state == "FAILURE" and "stopped answering" in conversion.error
