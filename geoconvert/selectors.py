from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery

from geoconvert.models import Conversion
from tagger.errors import NotFound
from tagger.models import TreeItem
from tagger.selectors import as_uuid


def conversion_list(*, user, state: str | None = None) -> QuerySet[Conversion]:
    """The caller's own conversions, newest first."""
    conversions = Conversion.objects.filter(owner=user)
    if state:
        conversions = conversions.filter(state=state)
    return conversions


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


def conversion_retry_candidates(
    *,
    since=None,
    item_id=None,
    task_id=None,
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
    return conversions[:limit] if limit else conversions
