"""Where an item's files live in MEDIA_ROOT: ``items/<owner id>/<item id hex>/``.

Every name in that folder is server-generated (``original``, ``geo_raster-<run>.tif``): the
user's file name is data, kept in the item's ``name``, never part of a path.
"""

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

ITEMS_DIR = "items"
CHUNK_BYTES = 1024 * 1024


def item_dir(item) -> str:
    """The item's folder, relative to MEDIA_ROOT."""
    return f"{ITEMS_DIR}/{item.owner_id}/{item.pk.hex}"


def item_file_path(item, filename: str) -> str:
    """A file in the item's folder, relative to MEDIA_ROOT."""
    return f"{item_dir(item)}/{filename}"


def item_dirs(root: Path) -> Iterator[tuple[uuid.UUID, Path]]:
    """Every item folder under `root` (MEDIA_ROOT), with the item id its name holds."""
    for directory in root.glob(f"{ITEMS_DIR}/*/*"):
        item_id = item_id_of(directory)
        if item_id and directory.is_dir():
            yield item_id, directory


def item_id_of(directory: Path) -> uuid.UUID | None:
    """The item id an item folder is named after; None for any other folder."""
    try:
        return uuid.UUID(hex=directory.name)
    except ValueError:
        return None


def sha256_of_chunks(chunks: Iterable[bytes]) -> str:
    """The hex SHA-256 of a file's content, given as chunks (an upload's ``chunks()``)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def sha256_of_path(path: Path) -> str:
    """The hex SHA-256 of a file on disk, read in bounded chunks."""
    with open(path, "rb") as handle:
        return sha256_of_chunks(iter(lambda: handle.read(CHUNK_BYTES), b""))
