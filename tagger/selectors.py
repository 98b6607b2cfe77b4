import uuid

from django.db.models import QuerySet

from tagger.errors import NotFound
from tagger.models import TreeItem


def item_list(*, user) -> QuerySet[TreeItem]:
    """The caller's own items, with their COG metadata joined."""
    return TreeItem.objects.filter(owner=user).select_related("geo_raster")


def item_get(*, user, item_id) -> TreeItem:
    """One of the caller's items; a foreign or unknown id is the same 404."""
    item_uuid = as_uuid(item_id)
    item = item_uuid and item_list(user=user).filter(pk=item_uuid).first()
    if not item:
        raise NotFound("Item not found.")
    return item


def item_subtree_ids(*, item: TreeItem) -> list:
    """Ids of the item and all its descendants, breadth first."""
    ids, frontier = [item.pk], [item.pk]
    while frontier:
        frontier = list(
            TreeItem.objects.filter(parent_id__in=frontier).values_list("pk", flat=True)
        )
        ids.extend(frontier)
    return ids


def as_uuid(value) -> uuid.UUID | None:
    """The UUID in `value`, or None when it is not one (such ids simply match nothing)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None
