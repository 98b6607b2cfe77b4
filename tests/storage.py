"""Reading and writing what tagger stored, in tests, on either backend (files under MEDIA_ROOT
or objects of the S3 run's bucket), through tagger.storage and boto3 as the code does."""

import hashlib
import tempfile
from pathlib import Path

from tagger import storage


def local_copy(name: str) -> Path:
    """A path on this host holding the stored file `name`: the file itself on local storage,
    a fresh download of the object on S3."""
    if not storage.is_remote():
        return storage.local_path(name)
    folder = Path(tempfile.mkdtemp(prefix="tagger-stored-"))
    target = folder / Path(name).name
    storage.s3_client().download_file(storage.bucket_name(), name, str(target))
    return target


def stored_bytes(name: str) -> bytes:
    content = storage.file_read(name)
    assert content is not None, f"{name} is not stored"
    return content


def stored_sha256(name: str) -> str:
    return hashlib.sha256(stored_bytes(name)).hexdigest()


def stored_exists(name: str) -> bool:
    return storage.file_size(name) is not None


def folder_names(folder: str) -> list[str]:
    """The base names of the files stored under the folder `folder` (a storage name)."""
    return sorted(Path(s.name).name for s in storage.stored_names(f"{folder.rstrip('/')}/"))


def store_bytes(name: str, content: bytes) -> None:
    storage.file_write(name, content)
