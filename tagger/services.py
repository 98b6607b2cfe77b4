import logging

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from tagger.errors import ApplicationError, PayloadTooLarge
from tagger.models import GeoRaster, TreeItem
from tagger.selectors import item_subtree_ids
from tagger.storage import item_files_delete, sha256_of_chunks

logger = logging.getLogger(__name__)


def _validate_parent(*, owner, parent: TreeItem | None, item: TreeItem | None = None) -> None:
    if parent is None:
        return
    if parent.owner_id != owner.pk:
        # Callers resolve parents through the owner's selector; this is a second guard.
        raise ApplicationError("Parent not found.", code="invalid_parent")
    if not parent.is_folder:
        raise ApplicationError("The parent must be a folder.", code="invalid_parent")
    if item is not None and parent.pk in item_subtree_ids(item=item):
        raise ApplicationError(
            "An item cannot be moved into itself or its own descendants.", code="invalid_parent"
        )


def _validate_name(name: str) -> str:
    if not name or not name.strip():
        raise ApplicationError("The name must not be empty.", code="invalid_name")
    if "\x00" in name:
        raise ApplicationError("The name must not contain NUL characters.", code="invalid_name")
    return name


def item_create(
    *, owner, name: str, parent: TreeItem | None = None, file: UploadedFile | None = None
) -> TreeItem:
    """A folder, or a file when `file` is given. The upload is stored under a
    server-generated path; `name` is kept as given."""
    _validate_name(name)
    _validate_parent(owner=owner, parent=parent)
    if file is not None and file.size > settings.TAGGER_MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(
            f"The upload is {file.size} bytes; the limit is "
            f"{settings.TAGGER_MAX_UPLOAD_BYTES} bytes."
        )
    item = TreeItem(
        owner=owner,
        name=name,
        parent=parent,
        object_type=TreeItem.ObjectType.FILE if file is not None else TreeItem.ObjectType.FOLDER,
        size=file.size if file is not None else None,
    )
    if file is not None:
        # Hashed once here, then never again: the downloads' ETag.
        item.file_sha256 = sha256_of_chunks(file.chunks())
        file.seek(0)
        item.file.save("original", file, save=False)
    try:
        with transaction.atomic():
            item.save(force_insert=True)
    except BaseException:
        _remove_item_dirs([item])
        raise
    return item


@transaction.atomic
def item_update(*, item: TreeItem, data: dict) -> TreeItem:
    """Rename and/or move an item. `data` may hold `name` and `parent` (None = root)."""
    fields = []
    if "name" in data:
        item.name = _validate_name(data["name"])
        fields.append("name")
    if "parent" in data:
        _validate_parent(owner=item.owner, parent=data["parent"], item=item)
        item.parent = data["parent"]
        fields.append("parent")
    if fields:
        item.save(update_fields=[*fields, "updated_at"])
    return item


@transaction.atomic
def item_delete(*, item: TreeItem) -> None:
    """Delete the item and its subtree, and (once committed) their files.

    A conversion still running for a deleted item loses its claim at its next heartbeat
    and cleans up after itself.
    """
    items = list(TreeItem.objects.filter(pk__in=item_subtree_ids(item=item)))
    TreeItem.objects.filter(pk__in=[i.pk for i in items]).delete()
    transaction.on_commit(lambda: _remove_item_dirs(items))


@transaction.atomic
def geo_raster_publish(*, item_id, file_name: str, sha256: str, metadata: dict) -> None:
    """Make the item a geo-raster file whose COG is `file_name` (a name in the storage), of
    content hash `sha256`, described by `metadata` (GeoRaster.METADATA_FIELDS). The statistics
    and thumbnail of a previous COG no longer apply and are cleared."""
    GeoRaster.objects.update_or_create(
        item_id=item_id,
        defaults={
            "file": file_name,
            "sha256": sha256,
            "stored_at": timezone.now(),
            "statistics": None,
            "thumbnail": "",
            **metadata,
        },
    )
    TreeItem.objects.filter(pk=item_id).update(
        object_type=TreeItem.ObjectType.GEO_RASTER_FILE, updated_at=timezone.now()
    )


def _remove_item_dirs(items) -> None:
    try:
        item_files_delete(items)
    except Exception:  # the store is down: housekeeping removes them later
        logger.warning("Could not remove the files of %s items now", len(items), exc_info=True)


def geo_raster_describe_save(
    *, item_id, sha256: str, statistics: dict, thumbnail_name: str
) -> bool:
    """Record the statistics and thumbnail computed from the COG of hash `sha256`; False (and
    nothing written) when the item now has another COG, or none."""
    return bool(
        GeoRaster.objects.filter(item_id=item_id, sha256=sha256).update(
            statistics=statistics, thumbnail=thumbnail_name
        )
    )
