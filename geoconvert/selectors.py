from django.db.models import OuterRef, QuerySet, Subquery

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


def conversion_active_for_item(*, item: TreeItem) -> Conversion | None:
    return Conversion.objects.filter(item=item, state__in=Conversion.ACTIVE_STATES).first()


def item_with_latest_conversion(*, user, item_id) -> TreeItem:
    """The caller's item, annotated with its latest conversion's fields (`latest_*`), in one
    query: the conversion-status endpoint is polled."""
    latest = Conversion.objects.filter(item=OuterRef("pk")).order_by("-created_at")
    fields = ("task_id", "state", "stage", "progress", "error", "cancel_requested")
    items = TreeItem.objects.filter(owner=user).annotate(
        **{f"latest_{field}": Subquery(latest.values(field)[:1]) for field in fields}
    )
    item_uuid = as_uuid(item_id)
    item = item_uuid and items.filter(pk=item_uuid).first()
    if not item:
        raise NotFound("Item not found.")
    return item
