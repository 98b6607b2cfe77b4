import math

from django.db.models import (
    Case,
    Count,
    Exists,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from geoconvert.models import Conversion, ConversionBatch, ConversionMetric, Priority
from tagger.errors import NotFound
from tagger.models import TreeItem
from tagger.selectors import as_uuid


def conversion_list(*, user, state: str | None = None) -> QuerySet[Conversion]:
    """The caller's own conversions, newest first."""
    conversions = Conversion.objects.filter(owner=user)
    if state:
        conversions = conversions.filter(state=state)
    return conversions


def batch_list(*, user) -> QuerySet[ConversionBatch]:
    """The caller's own batches, newest first."""
    return ConversionBatch.objects.filter(owner=user)


def batch_get(*, user, batch_id) -> ConversionBatch:
    """One of the caller's batches; a foreign or unknown id is the same 404."""
    batch_uuid = as_uuid(batch_id)
    batch = batch_uuid and batch_list(user=user).filter(pk=batch_uuid).first()
    if not batch:
        raise NotFound("Batch not found.")
    return batch


def batch_summary(*, batch: ConversionBatch) -> dict:
    """The batch as the API shows it: its counts and progress from one aggregate query over
    its members (never a scan of task results)."""
    return batch_summaries(batches=[batch])[0]


def batch_summaries(*, batches) -> list[dict]:
    """``batch_summary`` of each batch, from one aggregate query grouped by batch over its
    members as they stand: each file's latest attempt (a retried member counts once, as its
    retry)."""
    State = Conversion.State
    batches = list(batches)
    rows = (
        Conversion.objects.filter(batch__in=batches, retries__isnull=True)
        .order_by()
        .values("batch_id")
        .annotate(
            **{state: Count("pk", filter=Q(state=state)) for state in State.values},
            running_progress=Sum("progress", filter=Q(state__in=Conversion.ACTIVE_STATES)),
        )
    )
    by_batch = {row.pop("batch_id"): row for row in rows}
    empty = {state: 0 for state in State.values}
    return [_batch_summary(batch, dict(by_batch.get(batch.pk, empty))) for batch in batches]


def _batch_summary(batch: ConversionBatch, counts: dict) -> dict:
    running = counts.pop("running_progress", None) or 0
    members = sum(counts.values())
    finished = sum(counts[state] for state in Conversion.FINISHED_STATES)
    progress = 100 if members == 0 else math.floor((finished * 100 + running) / members)
    return {
        "batch_id": str(batch.pk),
        "folder_id": str(batch.folder_id) if batch.folder_id else None,
        "state": batch.state,
        "priority": Priority(batch.priority).label,
        "run_at": batch.run_at.isoformat() if batch.run_at else None,
        "total": batch.total,
        "skipped": batch.skipped,
        "counts": counts,
        "progress": progress,
        "created_at": batch.created_at.isoformat(),
        "started_at": batch.started_at.isoformat() if batch.started_at else None,
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
    }


def conversion_log_fields(*, task_id) -> dict:
    """What a conversion's log lines say about it: item, user, and the attempt a run of it
    now would be (the run binds the attempt it claims)."""
    row = (
        Conversion.objects.filter(pk=as_uuid(task_id))
        .values("item_id", "owner_id", "attempts")
        .first()
    )
    if row is None:
        return {}
    return {
        "item_id": str(row["item_id"]),
        "user_id": row["owner_id"],
        "attempt": row["attempts"] + 1,
    }


def conversion_get(*, user, task_id) -> Conversion:
    """One of the caller's conversions; a foreign or unknown task id is the same 404."""
    task_uuid = as_uuid(task_id)
    conversion = task_uuid and conversion_list(user=user).filter(pk=task_uuid).first()
    if not conversion:
        raise NotFound("Task not found.")
    return conversion


def conversion_event_fields(
    *, owner_id, task_ids: list, active: bool, fields: tuple[str, ...]
) -> list[dict]:
    """`fields` of the owner's conversions among `task_ids`, and with `active` of every
    unfinished one too, oldest first (what an event stream sends on connect)."""
    wanted = Q(pk__in=task_ids)
    if active:
        wanted |= Q(state__in=Conversion.ACTIVE_STATES)
    rows = Conversion.objects.filter(wanted, owner_id=owner_id).order_by("created_at")
    return list(rows.values(*fields))


def conversion_active_for_item(*, item: TreeItem) -> Conversion | None:
    return Conversion.objects.filter(item=item, state__in=Conversion.ACTIVE_STATES).first()


def items_with_latest_conversion(items: QuerySet[TreeItem], *fields: str) -> QuerySet[TreeItem]:
    """`items` annotated with their latest conversion's `fields`, as `latest_<field>`
    (None for an item never converted)."""
    latest = Conversion.objects.filter(item=OuterRef("pk")).order_by("-created_at")
    return items.annotate(
        **{f"latest_{field}": Subquery(latest.values(field)[:1]) for field in fields}
    )


def item_with_latest_conversion(*, user, item_id) -> TreeItem:
    """The caller's item, annotated with its latest conversion's fields (`latest_*`), in one
    query: the conversion-status endpoint is polled."""
    fields = ("task_id", "state", "stage", "progress", "error", "cancel_requested")
    items = items_with_latest_conversion(TreeItem.objects.filter(owner=user), *fields)
    item_uuid = as_uuid(item_id)
    item = item_uuid and items.filter(pk=item_uuid).first()
    if not item:
        raise NotFound("Item not found.")
    return item


# For operators (admin, management commands): every user's conversions. ------------------


def conversion_list_all(*, states=None, limit: int | None = None) -> QuerySet[Conversion]:
    """Conversions of every user, newest first, with item and owner joined."""
    conversions = Conversion.objects.select_related("item", "owner")
    if states:
        conversions = conversions.filter(state__in=states)
    return conversions[:limit] if limit else conversions


def conversion_state_counts() -> dict[str, int]:
    """How many conversions are in each state (every state present, zero or not)."""
    counts = dict(Conversion.objects.order_by().values_list("state").annotate(n=Count("pk")))
    return {state: counts.get(state, 0) for state in Conversion.State.values}


def conversion_pending_counts(*, now=None) -> dict[tuple[str, str], int]:
    """PENDING conversions by (lane, where): "broker" (sent, waiting for a worker), "waiting"
    (in the database, behind their owner's share) or "scheduled" (their run_at is ahead).
    Every pair present, zero or not."""
    now = now or timezone.now()
    where = Case(
        When(queued_at__isnull=False, then=Value("broker")),
        When(run_at__gt=now, then=Value("scheduled")),
        default=Value("waiting"),
    )
    rows = (
        Conversion.objects.filter(state=Conversion.State.PENDING)
        .order_by()
        .annotate(where=where)
        .values("priority", "where")
        .annotate(n=Count("pk"))
    )
    counts = {(Priority(row["priority"]).label, row["where"]): row["n"] for row in rows}
    return {
        (lane.label, w): counts.get((lane.label, w), 0)
        for lane in Priority
        for w in ("broker", "waiting", "scheduled")
    }


def conversion_retry_candidates(
    *,
    since=None,
    item_id=None,
    task_id=None,
    batch_id=None,
    include_cancelled: bool = False,
    limit: int | None = None,
) -> QuerySet[Conversion]:
    """Failed (optionally cancelled) conversions that are the latest of their item and were
    not retried yet, oldest first: what `retry_failed_conversions` re-dispatches."""
    states = [Conversion.State.FAILURE]
    if include_cancelled:
        states.append(Conversion.State.CANCELLED)
    newer = Conversion.objects.filter(item=OuterRef("item"), created_at__gt=OuterRef("created_at"))
    conversions = (
        Conversion.objects.filter(state__in=states)
        .exclude(Exists(newer))
        .exclude(Exists(Conversion.objects.filter(retry_of=OuterRef("pk"))))
        .select_related("item", "owner")
        .order_by("created_at")
    )
    if since is not None:
        conversions = conversions.filter(created_at__gte=since)
    if item_id is not None:
        conversions = conversions.filter(item_id=as_uuid(item_id))
    if task_id is not None:
        conversions = conversions.filter(pk=as_uuid(task_id))
    if batch_id is not None:
        conversions = conversions.filter(batch_id=as_uuid(batch_id))
    return conversions[:limit] if limit else conversions


# For monitoring (/metrics): the running totals, and what is waiting now. ---------------


def conversion_metric_values() -> dict[tuple[str, str, str], float]:
    """Every running total of geoconvert.services.metrics: {(family, label, le): value}."""
    rows = ConversionMetric.objects.values_list("family", "label", "le", "value")
    return {(family, label, le): value for family, label, le, value in rows}


def conversion_oldest_queued_at(*, now=None):
    """Since when the conversion waiting longest has waited: its request, or its run_at for
    a scheduled one whose time has come; one still scheduled is not waiting (None when none
    waits)."""
    now = now or timezone.now()
    pending = Conversion.objects.filter(state=Conversion.State.PENDING).exclude(run_at__gt=now)
    return pending.aggregate(oldest=Min(Coalesce("run_at", "created_at")))["oldest"]


def conversion_stats(*, since, limit: int = 5) -> dict:
    """What the conversions requested since `since` did (`conversion_stats`): counts per
    state, the median and 95th percentile of run durations and queue waits, the `limit`
    slowest runs and the `limit` most frequent failure reasons. Computed here from the rows,
    for operators without Prometheus."""
    rows = list(
        Conversion.objects.filter(created_at__gte=since)
        .order_by()
        .values(
            "task_id", "state", "created_at", "started_at", "finished_at", "error",
            "item__name", "owner__username",
        )
    )  # fmt: skip
    counts = {state: 0 for state in Conversion.State.values}
    reasons: dict[str, int] = {}
    runs, waits = [], []
    for row in rows:
        counts[row["state"]] += 1
        if row["started_at"]:
            waits.append((row["started_at"] - row["created_at"]).total_seconds())
            if row["finished_at"] and row["state"] in Conversion.FINISHED_STATES:
                runs.append(((row["finished_at"] - row["started_at"]).total_seconds(), row))
        if row["state"] == Conversion.State.FAILURE:
            reason = " ".join(row["error"].split()) or "(no reason recorded)"
            reasons[reason] = reasons.get(reason, 0) + 1
    runs.sort(key=lambda run: run[0], reverse=True)
    durations = sorted(seconds for seconds, _ in runs)
    return {
        "since": since,
        "total": len(rows),
        "counts": counts,
        "duration_seconds": _summary(durations),
        "queue_wait_seconds": _summary(sorted(waits)),
        "slowest": [
            {
                "task_id": str(row["task_id"]),
                "state": row["state"],
                "seconds": round(seconds, 1),
                "item": row["item__name"],
                "owner": row["owner__username"],
            }
            for seconds, row in runs[:limit]
        ],
        "failure_reasons": [
            {"reason": reason, "count": n}
            for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        ],
    }


def _summary(values: list[float]) -> dict:
    """Count, median and 95th percentile (nearest rank) of sorted `values`."""

    def rank(q: float):
        return round(values[max(0, math.ceil(q * len(values)) - 1)], 1) if values else None

    return {"count": len(values), "p50": rank(0.5), "p95": rank(0.95)}
