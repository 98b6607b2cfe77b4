import uuid

from django.conf import settings
from django.db import models

from tagger.storage import item_file_path


def item_storage_path(instance: "TreeItem", filename: str) -> str:
    # Server-generated: the user's file name is data (kept in `name`), never part of a path.
    return item_file_path(instance, "original")


def geo_raster_storage_path(instance: "GeoRaster", filename: str) -> str:
    # `filename` tells runs apart: two runs of one conversion (a duplicate delivery) never
    # write, or remove, each other's output.
    return item_file_path(instance.item, filename or "geo_raster.tif")


class TreeItem(models.Model):
    class ObjectType(models.TextChoices):
        FOLDER = "folder", "Folder"
        FILE = "file", "File"
        GEO_RASTER_FILE = "geo_raster_file", "Geo-raster file"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tree_items"
    )
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    name = models.CharField(max_length=1024)
    object_type = models.CharField(max_length=32, choices=ObjectType.choices, db_index=True)
    file = models.FileField(upload_to=item_storage_path, max_length=512, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    # SHA-256 of the uploaded file, computed once when it is stored: the strong ETag of its
    # downloads, and what a signed link to it is bound to.
    file_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [models.Index(fields=("owner", "parent"))]

    def __str__(self) -> str:
        return self.name

    @property
    def is_folder(self) -> bool:
        return self.object_type == self.ObjectType.FOLDER


class GeoRaster(models.Model):
    """The Cloud-Optimized GeoTIFF made from an item, and its metadata."""

    item = models.OneToOneField(
        TreeItem, on_delete=models.CASCADE, primary_key=True, related_name="geo_raster"
    )
    file = models.FileField(upload_to=geo_raster_storage_path, max_length=512)
    crs = models.TextField(blank=True)
    bounds = models.JSONField()
    bounds_wgs84 = models.JSONField(null=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    count = models.PositiveIntegerField()
    dtypes = models.JSONField()
    nodata = models.JSONField(null=True)
    resolution = models.JSONField()
    overviews = models.JSONField(default=list)
    compression = models.CharField(max_length=32, blank=True)
    size_bytes = models.BigIntegerField()
    # SHA-256 of the COG, computed once when it is published: the strong ETag of its
    # downloads and tiles, and what signed links to it are bound to.
    sha256 = models.CharField(max_length=64, blank=True)
    # When this COG file was published (a reconversion replaces it): its Last-Modified.
    stored_at = models.DateTimeField(null=True)
    # Per-band statistics of the COG (geoconvert.raster.statistics), and its PNG preview;
    # both filled in by the follow-up task after the conversion, None/empty until then.
    statistics = models.JSONField(null=True, blank=True)
    thumbnail = models.FileField(max_length=512, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    METADATA_FIELDS = (
        "crs",
        "bounds",
        "bounds_wgs84",
        "width",
        "height",
        "count",
        "dtypes",
        "nodata",
        "resolution",
        "overviews",
        "compression",
        "size_bytes",
    )

    def __str__(self) -> str:
        return f"COG of {self.item}"

    def as_metadata(self) -> dict:
        """The metadata the API reports (`geo_raster` of an item, `result` of a task)."""
        metadata = {field: getattr(self, field) for field in self.METADATA_FIELDS}
        metadata["crs"] = self.crs or None
        metadata["compression"] = self.compression or None
        return metadata
