"""Where an item's files live: ``items/<owner id>/<item id hex>/`` in the default storage,
which is files under MEDIA_ROOT (``TAGGER_STORAGE=local``, the embedded default) or keys of
an S3-compatible bucket (``TAGGER_STORAGE=s3``, through django-storages' S3Storage).

Every name in that folder is server-generated (``original``, ``geo_raster-<run>.tif``,
``thumbnail-<hash>.png``): the user's file name is data, kept in the item's ``name``, never
part of a path. A name is written once and never over: a new COG gets a new name, and the
database commit that names it is what publishes it.

The rest of the code reaches the store only through these functions, so that both backends
behave alike: names relative to the storage root in, names out.
"""

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)

ITEMS_DIR = "items"
CHUNK_BYTES = 1024 * 1024
# COG uploads: parts of this size (S3 allows 10,000 parts: 640 GB), a few in flight at once.
MULTIPART_BYTES = 64 * 1024**2
MULTIPART_THREADS = 4
CHECKSUM = "SHA256"


def item_dir(item) -> str:
    """The item's folder, relative to the storage root."""
    return f"{ITEMS_DIR}/{item.owner_id}/{item.pk.hex}"


def item_file_path(item, filename: str) -> str:
    """A file in the item's folder, relative to the storage root."""
    return f"{item_dir(item)}/{filename}"


def item_id_of(directory: Path | str) -> uuid.UUID | None:
    """The item id an item folder is named after; None for any other folder."""
    try:
        return uuid.UUID(hex=Path(directory).name)
    except ValueError:
        return None


def is_remote() -> bool:
    """True when files are objects of an S3 bucket, not files under MEDIA_ROOT."""
    return settings.TAGGER_STORAGE == "s3"


# What is stored ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredName:
    name: str  # relative to the storage root
    modified: datetime  # aware


def item_dirs(root: Path) -> Iterator[tuple[uuid.UUID, Path]]:
    """Every item folder under `root` (MEDIA_ROOT), with the item id its name holds."""
    for directory in root.glob(f"{ITEMS_DIR}/*/*"):
        item_id = item_id_of(directory)
        if item_id and directory.is_dir():
            yield item_id, directory


def stored_names(prefix: str) -> Iterator[StoredName]:
    """Every stored file whose name starts with `prefix` (a folder ends it with "/")."""
    if is_remote():
        pages = s3_client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=bucket_name(), Prefix=prefix):
            for entry in page.get("Contents", ()):
                yield StoredName(entry["Key"], entry["LastModified"])
        return
    root = Path(settings.MEDIA_ROOT)
    folder = root / prefix
    base = folder if prefix.endswith("/") else folder.parent
    for path in base.rglob("*") if base.is_dir() else ():
        name = path.relative_to(root).as_posix()
        if not name.startswith(prefix):
            continue
        try:
            if path.is_file():
                yield StoredName(name, datetime.fromtimestamp(path.stat().st_mtime, UTC))
        except FileNotFoundError:
            continue


def file_size(name: str) -> int | None:
    """The stored file's size in bytes; None when it is missing."""
    if is_remote():
        try:
            return s3_client().head_object(Bucket=bucket_name(), Key=name)["ContentLength"]
        except s3_client().exceptions.ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
    try:
        return (Path(settings.MEDIA_ROOT) / name).stat().st_size
    except FileNotFoundError:
        return None


def file_read(name: str) -> bytes | None:
    """A small stored file's content (a thumbnail); None when it is missing."""
    if is_remote():
        try:
            return s3_client().get_object(Bucket=bucket_name(), Key=name)["Body"].read()
        except s3_client().exceptions.NoSuchKey:
            return None
    try:
        return local_path(name).read_bytes()
    except FileNotFoundError:
        return None


def local_path(name: str) -> Path:
    """The file on this host's disk (local storage only)."""
    if is_remote():
        raise RuntimeError(f"{name} is an object in a bucket, not a file on this host")
    return Path(settings.MEDIA_ROOT) / name


# Writing and removing ----------------------------------------------------------------------


def file_publish(path: Path, name: str) -> None:
    """Store the finished file at `path` as `name`, whole or not at all; `path` is gone after.

    Local: a rename into MEDIA_ROOT (the caller writes `path` on the same filesystem). S3: a
    multipart upload, every part checked by the store (SHA-256), completed only once every
    part has arrived, so a killed upload leaves no object (only an unfinished upload, which
    housekeeping aborts); `path` is removed once the object is in place.
    """
    if not is_remote():
        target = local_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=MULTIPART_BYTES,
        multipart_chunksize=MULTIPART_BYTES,
        max_concurrency=MULTIPART_THREADS,
    )
    extra = {"ChecksumAlgorithm": CHECKSUM, "ContentType": _content_type(name)}
    try:
        s3_client().upload_file(
            os.fspath(path), bucket_name(), name, ExtraArgs=extra, Config=config
        )
    finally:
        Path(path).unlink(missing_ok=True)


def file_write(name: str, content: bytes) -> None:
    """Store small `content` (a thumbnail) as `name`, whole or not at all."""
    if is_remote():
        s3_client().put_object(
            Bucket=bucket_name(),
            Key=name,
            Body=content,
            ChecksumAlgorithm=CHECKSUM,
            ContentType=_content_type(name),
        )
        return
    target = local_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        partial.write_bytes(content)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def file_delete(name: str) -> None:
    """Remove a stored file; nothing happens when it is missing."""
    if is_remote():
        s3_client().delete_object(Bucket=bucket_name(), Key=name)
    else:
        local_path(name).unlink(missing_ok=True)


def files_delete(names: Iterable[str]) -> None:
    """Remove stored files, in batches of the store's largest delete (1000 keys)."""
    if not is_remote():
        for name in names:
            file_delete(name)
        return
    batch: list[str] = []
    for name in names:
        batch.append(name)
        if len(batch) == 1000:
            _delete_objects(batch)
            batch = []
    if batch:
        _delete_objects(batch)


def item_files_delete(items) -> None:
    """Remove every stored file of the items' folders (deleted items, failed uploads)."""
    for item in items:
        if is_remote():
            files_delete(stored.name for stored in stored_names(f"{item_dir(item)}/"))
        else:
            shutil.rmtree(local_path(item_dir(item)), ignore_errors=True)


def _delete_objects(keys: list[str]) -> None:
    answer = s3_client().delete_objects(
        Bucket=bucket_name(), Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
    )
    for error in answer.get("Errors", ()):
        logger.error("Could not delete %s: %s", error.get("Key"), error.get("Message"))


# Unfinished multipart uploads (S3 only) ------------------------------------------------------


@dataclass(frozen=True)
class MultipartUpload:
    name: str
    upload_id: str
    initiated: datetime


def multipart_uploads(prefix: str = f"{ITEMS_DIR}/") -> Iterator[MultipartUpload]:
    """The bucket's unfinished multipart uploads under `prefix` (none on local storage)."""
    if not is_remote():
        return
    pages = s3_client().get_paginator("list_multipart_uploads")
    for page in pages.paginate(Bucket=bucket_name(), Prefix=prefix):
        for upload in page.get("Uploads", ()):
            yield MultipartUpload(upload["Key"], upload["UploadId"], upload["Initiated"])


def multipart_abort(upload: MultipartUpload) -> None:
    s3_client().abort_multipart_upload(
        Bucket=bucket_name(), Key=upload.name, UploadId=upload.upload_id
    )


# Reading, for HTTP and for GDAL ----------------------------------------------------------------


def presigned_url(
    name: str, *, method: str = "GET", filename: str, content_type: str, seconds: int
) -> str:
    """A URL of the store that answers GET (or HEAD) of `name`, ranges included, for
    `seconds`, with the download's file name and type."""
    operation = "head_object" if method == "HEAD" else "get_object"
    params = {"Bucket": bucket_name(), "Key": name}
    if operation == "get_object":
        from django.utils.http import content_disposition_header

        params["ResponseContentDisposition"] = content_disposition_header(True, filename)
        params["ResponseContentType"] = content_type
    return s3_client().generate_presigned_url(operation, Params=params, ExpiresIn=seconds)


def read_range(name: str, start: int, stop: int) -> Iterator[bytes]:
    """Bytes `start`..`stop` (exclusive) of the stored file, in chunks of at most CHUNK_BYTES."""
    if stop <= start:
        return
    if is_remote():
        body = s3_client().get_object(
            Bucket=bucket_name(), Key=name, Range=f"bytes={start}-{stop - 1}"
        )["Body"]
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        finally:
            body.close()
        return
    with open(local_path(name), "rb") as handle:
        handle.seek(start)
        remaining = stop - start
        while remaining:
            chunk = handle.read(min(remaining, CHUNK_BYTES))
            if not chunk:
                raise OSError(f"{name} ended before byte {stop - remaining}")
            remaining -= len(chunk)
            yield chunk


def gdal_name(name: str) -> str:
    """The name GDAL opens the stored file by: a path, or ``/vsis3/<bucket>/<key>``."""
    if is_remote():
        return f"/vsis3/{bucket_name()}/{name}"
    return os.fspath(local_path(name))


@dataclass(frozen=True)
class S3Settings:
    """How GDAL's /vsis3/ reaches the bucket: the same store django-storages writes to."""

    endpoint: str | None  # host[:port], None for AWS itself
    https: bool
    virtual_hosting: bool
    region: str | None
    access_key: str | None
    secret_key: str | None
    session_token: str | None = None  # temporary credentials (a role, STS)


def s3_settings() -> S3Settings | None:
    """The bucket's connection for GDAL; None on local storage."""
    if not is_remote():
        return None
    endpoint, https = None, True
    if settings.AWS_S3_ENDPOINT_URL:
        parts = urlsplit(settings.AWS_S3_ENDPOINT_URL)
        endpoint, https = parts.netloc, parts.scheme != "http"
    access_key, secret_key = default_storage.access_key, default_storage.secret_key
    session_token = default_storage.security_token
    if not access_key:  # boto3's own chain: the environment, ~/.aws, an instance role
        import boto3

        found = boto3.Session().get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
        access_key = frozen.access_key if frozen else None
        secret_key = frozen.secret_key if frozen else None
        session_token = frozen.token if frozen else None
    return S3Settings(
        endpoint=endpoint,
        https=https,
        virtual_hosting=settings.AWS_S3_ADDRESSING_STYLE != "path",
        region=settings.AWS_S3_REGION_NAME or s3_client().meta.region_name,
        access_key=access_key,
        secret_key=secret_key,
        session_token=session_token,
    )


# Hashes ------------------------------------------------------------------------------------


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


# The client --------------------------------------------------------------------------------


def bucket_name() -> str:
    return settings.AWS_STORAGE_BUCKET_NAME


def s3_client():
    """boto3's S3 client of the default storage (django-storages keeps one per thread)."""
    return default_storage.connection.meta.client


def _status(exc) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


_CONTENT_TYPES = {".tif": "image/tiff", ".png": "image/png"}


def _content_type(name: str) -> str:
    return _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
