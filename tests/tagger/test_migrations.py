"""Data migrations: rows stored before a migration get what it adds."""

import hashlib
import importlib
from pathlib import Path

import pytest
from django.apps import apps

from tagger.models import GeoRaster, TreeItem
from tests.factories import GeoRasterFactory, TreeItemFactory

hashes = importlib.import_module("tagger.migrations.0002_file_validators_statistics")


@pytest.mark.local_storage  # the migration ran before tagger could store files in a bucket
def test_files_stored_before_hashes_existed_are_hashed_once(db, settings, tmp_path):
    item = TreeItemFactory(content=b"an upload from before", file_sha256="")
    geo_raster = GeoRasterFactory(sha256="", stored_at=None)
    cog_path = Path(settings.MEDIA_ROOT) / geo_raster.file.name
    cog_path.parent.mkdir(parents=True, exist_ok=True)
    cog_path.write_bytes(b"a COG from before")

    hashes.hash_stored_files(apps, None)

    assert (
        TreeItem.objects.get(pk=item.pk).file_sha256
        == hashlib.sha256(b"an upload from before").hexdigest()
    )
    migrated = GeoRaster.objects.get(pk=geo_raster.pk)
    assert migrated.sha256 == hashlib.sha256(b"a COG from before").hexdigest()
    assert migrated.stored_at == migrated.created_at
