import uuid

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from tagger.errors import NotFound
from tagger.models import GeoRaster, TreeItem


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


def folder_files(*, folder: TreeItem, recursive: bool = True) -> list[dict]:
    """`pk` and `object_type` of the items under `folder` (its children; with `recursive`
    its whole subtree), folder by folder: one query per level of the tree."""
    rows, frontier = [], [folder.pk]
    while frontier:
        level = []
        for start in range(0, len(frontier), 500):
            level.extend(
                TreeItem.objects.filter(parent_id__in=frontier[start : start + 500])
                .order_by("name")
                .values("pk", "object_type")
            )
        rows.extend(level)
        folders = [row["pk"] for row in level if row["object_type"] == TreeItem.ObjectType.FOLDER]
        frontier = folders if recursive else []
    return rows


def as_uuid(value) -> uuid.UUID | None:
    """The UUID in `value`, or None when it is not one (such ids simply match nothing)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def user_get(*, user_id):
    """A user by primary key, whoever asks (for user grants); None when there is none."""
    User = get_user_model()
    try:
        return User.objects.filter(pk=User._meta.pk.to_python(user_id)).first()
    except (ValueError, ValidationError):
        return None


def item_owner(*, item_id):
    """The owner of an item, whoever asks (for signed links); 404 when it is gone."""
    item = TreeItem.objects.select_related("owner").filter(pk=item_id).first()
    if item is None:
        raise NotFound("Item not found.")
    return item.owner


def geo_raster_get(*, user, item_id) -> GeoRaster:
    """The COG of one of the caller's items; 404 for a foreign or unknown item, or one that
    is not converted (yet)."""
    item = item_get(user=user, item_id=item_id)
    geo_raster = getattr(item, "geo_raster", None)
    if item.object_type != TreeItem.ObjectType.GEO_RASTER_FILE or geo_raster is None:
        raise NotFound("This item has no geo-raster yet; convert it first.")
    return geo_raster
