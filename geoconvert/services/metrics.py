"""The conversions' metrics, kept as running totals in the database (ConversionMetric) at
the moment each thing happens, so that a scrape reads a few rows whatever the history, and
every API process and worker counts into the same totals.

- a conversion ends (the succeed, fail and cancel transitions): `conversions_total{state}`,
  its run's `duration_seconds{outcome}`, and on success its `input_bytes`/`output_bytes`;
- a conversion is started for the first time (the claim of attempt 1): `queue_wait_seconds`;
- a run ends: the seconds it spent in each stage, `stage_seconds{stage}`.

The writes are in the transaction of what they count (a transition counted is a
transition committed), in a savepoint of their own: a failed write is logged and costs a
sample, never the transition. Changing a bucket bound needs its family's rows deleted.
"""

import logging

from django.db import DatabaseError, transaction
from django.db.models import F

from geoconvert.models import Conversion, ConversionMetric, Stage

logger = logging.getLogger(__name__)

# Up to 2 h: the hard time limit is 3900 s.
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 5400, 7200)
QUEUE_WAIT_BUCKETS = (0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
STAGE_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200)
# 1 MiB to 64 GiB, by fours.
BYTES_BUCKETS = tuple(2**20 * 4**k for k in range(9))

HISTOGRAMS = {
    "duration_seconds": DURATION_BUCKETS,
    "queue_wait_seconds": QUEUE_WAIT_BUCKETS,
    "stage_seconds": STAGE_BUCKETS,
    "input_bytes": BYTES_BUCKETS,
    "output_bytes": BYTES_BUCKETS,
}
TOTAL = "conversions_total"
# The stages' label values: their names (Stage's values are sentences).
STAGE_LABELS = {stage.value: stage.name.lower() for stage in Stage}


def bound_label(bound: float) -> str:
    """A bucket's `le` as Prometheus writes it ("5.0", "1048576.0")."""
    return repr(float(bound))


def conversion_metrics_record(task_id, transition: str, state: str) -> None:
    """Count what transition `transition` (now applied, to `state`) of conversion `task_id`
    means for the metrics. Called by conversion_transition, inside its transaction."""
    if state not in Conversion.FINISHED_STATES and transition != "claim":
        return
    _softly(_record_transition, task_id, transition, state)


def _record_transition(task_id, transition: str, state: str) -> None:
    row = (
        Conversion.objects.filter(pk=task_id)
        .values("created_at", "started_at", "finished_at", "attempts", "result", "item__size")
        .first()
    )
    if row is None:
        return
    if transition == "claim":
        if row["attempts"] == 1 and row["started_at"]:
            wait = (row["started_at"] - row["created_at"]).total_seconds()
            _observe("queue_wait_seconds", "", max(wait, 0.0))
        return
    _add(TOTAL, state, "", 1)
    if row["started_at"] and row["finished_at"]:
        seconds = (row["finished_at"] - row["started_at"]).total_seconds()
        _observe("duration_seconds", state, max(seconds, 0.0))
    if state == Conversion.State.SUCCESS:
        if row["item__size"] is not None:
            _observe("input_bytes", "", row["item__size"])
        output = (row["result"] or {}).get("size_bytes")
        if output is not None:
            _observe("output_bytes", "", output)


def conversions_unstarted_end_record(state: str, count: int) -> None:
    """`count` conversions that never started ended in `state` at once (a bulk transition:
    a batch's waiting members cancelled): counted as `count` single ends would be."""
    if count:
        _softly(_add, TOTAL, state, "", count)


def conversion_stage_seconds_record(seconds: dict[str, float]) -> None:
    """A run's seconds per stage (geoconvert.services.stages.StageClock)."""
    if seconds:
        _softly(_record_stages, seconds)


def _record_stages(seconds: dict[str, float]) -> None:
    for stage, value in seconds.items():
        _observe("stage_seconds", STAGE_LABELS.get(stage, "other"), value)


def _softly(record, *args) -> None:
    try:
        with transaction.atomic():
            record(*args)
    except DatabaseError as exc:
        logger.warning("Conversion metrics not recorded (%s): %s", record.__name__, exc)


def _observe(family: str, label: str, value: float) -> None:
    bounds = HISTOGRAMS[family]
    le = next((bound_label(b) for b in bounds if value <= b), "+Inf")
    _add(family, label, le, 1)
    _add(family, label, "sum", value)


def _add(family: str, label: str, le: str, amount: float) -> None:
    series = ConversionMetric.objects.filter(family=family, label=label, le=le)
    if not series.update(value=F("value") + amount):
        ConversionMetric.objects.bulk_create(
            [ConversionMetric(family=family, label=label, le=le)], ignore_conflicts=True
        )
        series.update(value=F("value") + amount)
