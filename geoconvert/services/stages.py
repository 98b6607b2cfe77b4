"""How long each run spends in each stage, for `tagger_conversion_stage_seconds`.

The run reports its stages through RunContext.on_stage (the same callback that mirrors them
into the result backend); a StageClock times them and the task records them once, when the
run ends, whatever the outcome (geoconvert.services.metrics).
"""

import time

from geoconvert.models import Stage

# Not timed: QUEUED is the queue wait (measured from the conversion's own times), COMPLETE is
# where a run ends.
UNTIMED = (Stage.QUEUED, Stage.COMPLETE)


class StageClock:
    """Seconds per stage of one run, from the stages reported in the order they happen."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._stage: str | None = None
        self._since = 0.0
        self.seconds: dict[str, float] = {}

    def enter(self, stage: str) -> None:
        if stage == self._stage:  # progress within a stage
            return
        now = self._clock()
        self._close(now)
        self._stage, self._since = stage, now

    def stop(self) -> dict[str, float]:
        self._close(self._clock())
        self._stage = None
        return self.seconds

    def _close(self, now: float) -> None:
        if self._stage is not None and self._stage not in UNTIMED:
            self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + now - self._since
