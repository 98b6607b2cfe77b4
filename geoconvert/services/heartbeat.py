"""The heartbeat of a running conversion: proof that its run is alive, and its ear for cancel."""

import logging
import threading

from django.db import DatabaseError, connection
from django.utils import timezone

from geoconvert.models import Conversion

logger = logging.getLogger(__name__)


class Heartbeat:
    """A background thread that records the run is alive and notices cancel requests.

    One conditional UPDATE per interval: it matches only while this run holds the claim and
    no cancel was requested, so zero rows means "stop". The engine polls `should_stop`.
    """

    def __init__(self, task_id, claim, *, interval: float):
        self.task_id = task_id
        self.claim = claim
        self.interval = interval
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{task_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def should_stop(self) -> bool:
        return self._lost.is_set()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    alive = Conversion.objects.filter(
                        pk=self.task_id,
                        claim=self.claim,
                        cancel_requested=False,
                        state=Conversion.State.PROGRESS,
                    ).update(heartbeat_at=timezone.now())
                except DatabaseError as exc:
                    # Transient: the next beat tries again; the final write is retried too.
                    logger.warning("Heartbeat of %s failed: %s", self.task_id, exc)
                    connection.close()
                    continue
                if not alive:
                    self._lost.set()
                    return
        finally:
            connection.close()
