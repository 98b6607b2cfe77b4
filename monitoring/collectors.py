"""What `/metrics` reads at each scrape, so every API process, and every worker, agrees.

The conversions' totals are read from the database, where geoconvert.services.metrics keeps
them as conversions start and end, whichever process runs them; what is queued and running
is counted from the conversions themselves. The queues come from the broker's Redis, the
workers from the presence each worker keeps there (monitoring.workers), beat from its
schedule's last run. No label names a task, a user or a host: the series are few and fixed.
"""

import logging

import redis
from django.db import DatabaseError
from django.utils import timezone
from kombu.transport.redis import PRIORITY_STEPS
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from geoconvert import selectors
from geoconvert.health import beat_last_run_at, declared_queues
from geoconvert.models import Conversion, Stage
from geoconvert.services import metrics
from geoconvert.services.stages import UNTIMED
from monitoring.workers import broker_redis, workers_online

logger = logging.getLogger(__name__)

# (family, its doc, its label, the label's values always shown): geoconvert.services.metrics
# keeps the totals.
HISTOGRAM_FAMILIES = (
    ("duration_seconds", "Seconds from a run's start to the conversion's end, by outcome.",
     "outcome", Conversion.FINISHED_STATES),
    ("stage_seconds", "Seconds a run spent in each stage.", "stage",
     tuple(metrics.STAGE_LABELS[s] for s in Stage if s not in UNTIMED)),
    ("queue_wait_seconds", "Seconds from the request to the first start "
     "(tagger schedules nothing for later).", None, ("",)),
    ("input_bytes", "Bytes of the uploads converted successfully.", None, ("",)),
    ("output_bytes", "Bytes of the COGs made.", None, ("",)),
)  # fmt: skip


def _histogram(
    values: dict, family: str, doc: str, label: str | None, shown
) -> HistogramMetricFamily:
    histogram = HistogramMetricFamily(
        f"tagger_conversion_{family}", doc, labels=[label] if label else []
    )
    bounds = metrics.HISTOGRAMS[family]
    seen = {key[1] for key in values if key[0] == family}
    for value in sorted(set(shown) | seen):
        cumulative, buckets = 0.0, []
        for le in [*map(metrics.bound_label, bounds), "+Inf"]:
            cumulative += values.get((family, value, le), 0.0)
            buckets.append((le, cumulative))
        histogram.add_metric(
            [value] if label else [], buckets, sum_value=values.get((family, value, "sum"), 0.0)
        )
    return histogram


class ConversionCollector(Collector):
    """The conversions, from the database: four small queries per scrape, however many
    conversions there have been."""

    def collect(self):
        try:
            yield from self._families()
        except DatabaseError as exc:
            # The API's own metrics still answer; the conversions' are missing from this scrape.
            logger.warning("Conversion metrics unavailable: %s", exc)

    def _families(self):
        counts = selectors.conversion_state_counts()
        yield GaugeMetricFamily(
            "tagger_conversions_in_progress",
            "Conversions a worker is running now.",
            value=counts[Conversion.State.PROGRESS],
        )
        queued = GaugeMetricFamily(
            "tagger_conversions_queued",
            "Conversions requested and not started: in the broker, waiting in the database "
            "for their owner's share, or scheduled.",
            labels=["priority", "where"],
        )
        for (lane, where), n in selectors.conversion_pending_counts().items():
            queued.add_metric([lane, where], n)
        yield queued
        oldest = selectors.conversion_oldest_queued_at()
        yield GaugeMetricFamily(
            "tagger_conversion_oldest_queued_seconds",
            "How long the conversion waiting longest has waited (0 when none waits).",
            value=(timezone.now() - oldest).total_seconds() if oldest else 0.0,
        )

        values = selectors.conversion_metric_values()
        total = CounterMetricFamily(
            "tagger_conversions", "Conversions that ended, by final state.", labels=["state"]
        )
        for state in Conversion.FINISHED_STATES:
            total.add_metric([state], values.get((metrics.TOTAL, state, ""), 0.0))
        yield total
        for family in HISTOGRAM_FAMILIES:
            yield _histogram(values, *family)


class InfrastructureCollector(Collector):
    """The queues (Redis), the workers online and beat's last run."""

    def collect(self):
        lengths = queue_lengths()
        if lengths is not None:
            family = GaugeMetricFamily(
                "tagger_queue_length", "Messages waiting in each Celery queue.", labels=["queue"]
            )
            for name, length in lengths.items():
                family.add_metric([name], length)
            yield family
        online = workers_online()
        if online is not None:
            yield GaugeMetricFamily(
                "tagger_workers_online", "Celery workers that reported in recently.", value=online
            )
        try:
            last = beat_last_run_at()
        except DatabaseError as exc:
            logger.warning("Beat's last run unavailable: %s", exc)
        else:
            yield GaugeMetricFamily(
                "tagger_beat_last_run_timestamp_seconds",
                "When beat last sent a periodic task (Unix time; 0 if never).",
                value=last.timestamp() if last else 0.0,
            )


def queue_lengths() -> dict[str, int] | None:
    """LLEN of each declared queue in the broker's Redis (a queue's lists of every priority
    added up, as kombu keeps them); None when Redis does not answer."""
    names = declared_queues()
    # kombu's redis transport: priority 0 in the queue's own list, the others in
    # "<queue>\x06\x16<priority>" (kombu.transport.redis, PRIORITY_STEPS and sep).
    keys = {name: [name, *(f"{name}\x06\x16{p}" for p in PRIORITY_STEPS if p)] for name in names}
    try:
        pipe = broker_redis().pipeline(transaction=False)
        for name in names:
            for key in keys[name]:
                pipe.llen(key)
        replies = iter(pipe.execute())
    except (redis.RedisError, OSError) as exc:
        logger.warning("Queue lengths unavailable: %s", exc)
        return None
    return {name: sum(next(replies) for _ in keys[name]) for name in names}
