"""The boundary for the untrusted upload: which files GDAL may open, and how it reads them.

- Its first bytes must be the signature of a self-contained raster format (``ALLOWED_DRIVERS``)
  and GDAL may open it with that one driver only, so a VRT (even renamed ``.tif``), an archive
  or anything else that could make GDAL read other files or the network never reaches a driver.
- GDAL reads the file only through an opener that serves exactly that file, read-only; any
  other path it asks for (sidecars, .ovr, .aux.xml, ...) does not exist for it. PAM is off
  so nothing is written next to the source; network access is fenced off in ``gdal_env()``.
- A source in an S3 bucket (``/vsis3/<bucket>/<key>``, read through GDAL with the
  credentials of ``remote_env()``) is opened by that name with the one driver, and the fence
  lets GDAL reach that one object and nothing else.

Cancellation. ``should_cancel`` is asked between steps and, while the COG is written, from the
reads GDAL makes of the source and from GDAL's progress callback (``write``): each asks at
most every ``CANCEL_POLL_SECONDS`` (only on the thread that called ``convert``; reads on GDAL's
worker threads only look at the flag it sets) and, once cancelled, a read returns no bytes
and the progress callback tells GDAL to stop, so GDAL fails the copy. The opener remembers
recent reads so that it costs no more than GDAL opening the path itself (see
``_CancellableFile``; measurements in docs/performance.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from . import libgdal
from .options import COPY_ERRORS, CogOptions, ConversionCancelled, RasterError

logger = logging.getLogger(__name__)

# Only formats whose file holds all its pixels and cannot point GDAL at other files.
# Left out on purpose: VRT, GTI, MRF, HFA (.ige spill files), ENVI/EHdr (header sidecars),
# NITF/RPFTOC, netCDF/HDF5 (external links), PDF, archives (/vsizip, ...), anything HTTP.
ALLOWED_DRIVERS: tuple[str, ...] = (
    "GTiff",
    "JP2OpenJPEG",
    "PNG",
    "JPEG",
    "GIF",
    "BIGGIF",
    "BMP",
    "WEBP",
)
ALLOWED_FORMATS_TEXT = "GeoTIFF/TIFF, JPEG 2000, PNG, JPEG, GIF, BMP, WebP"

# Reads the source opener remembers, for GDAL's repeated reads (see _CancellableFile): enough
# for the 512 strips a row of COG tiles spans when rows are up to 64 KiB (21,000 RGB pixels).
RECENT_READS_MAX_BYTES = 32 * 1024**2
RECENT_READ_MAX_BYTES = 1024**2  # larger reads are not remembered

# How often should_cancel() (which may query a database) is asked while GDAL is busy.
CANCEL_POLL_SECONDS = 1.0


# GDAL's names for objects of an S3-compatible store; the only remote sources there are.
REMOTE_PREFIXES = ("/vsis3/",)


def is_remote(path: str | os.PathLike) -> bool:
    """True for a source GDAL reads from an object store (``/vsis3/...``)."""
    return os.fspath(path).startswith(REMOTE_PREFIXES)


@dataclass(frozen=True)
class S3Access:
    """How GDAL's /vsis3/ reaches a bucket (the service passes its storage's settings)."""

    endpoint: str | None = None  # host[:port]; None: AWS itself
    https: bool = True
    virtual_hosting: bool = True  # False: path-style addresses (local servers)
    region: str | None = None
    access_key: str | None = None  # None: boto3's own lookup (environment, role, ...)
    secret_key: str | None = None
    session_token: str | None = None  # with temporary credentials


def remote_env(access: S3Access | None) -> contextlib.AbstractContextManager:
    """The environment in which ``/vsis3/`` names reach the store of ``access``; enter it
    around ``convert()``, ``describe()``, statistics and rendering of objects there. None:
    nothing to set (files on disk)."""
    if access is None:
        return contextlib.nullcontext()
    return rasterio.Env(
        session=_aws_session(access),
        AWS_HTTPS="YES" if access.https else "NO",
        AWS_VIRTUAL_HOSTING="TRUE" if access.virtual_hosting else "FALSE",
        **REMOTE_HTTP,
    )


@functools.lru_cache(maxsize=8)
def _aws_session(access: S3Access):
    """One session per store (a boto3 session is built for it): tiles enter remote_env()
    on every request."""
    from rasterio.session import AWSSession

    return AWSSession(
        aws_access_key_id=access.access_key,
        aws_secret_access_key=access.secret_key,
        aws_session_token=access.session_token,
        region_name=access.region,
        endpoint_url=access.endpoint,
    )


# Reads of a remote source: a store that stalls is retried, not waited on for ever.
REMOTE_HTTP = {
    "GDAL_HTTP_TIMEOUT": 60,
    "GDAL_HTTP_CONNECTTIMEOUT": 10,
    "GDAL_HTTP_MAX_RETRY": 4,
    "GDAL_HTTP_RETRY_DELAY": 1,
}


def gdal_env(
    options: CogOptions = CogOptions(), *, source: str | os.PathLike | None = None
) -> rasterio.Env:
    """The GDAL environment every open and conversion here runs in; with a remote
    ``source``, inside ``remote_env()``, GDAL may reach that one object."""
    if source is not None and is_remote(source):
        # Suffixes GDAL's network file systems consider to exist: only the source's own name.
        network = {"CPL_VSIL_CURL_ALLOWED_EXTENSIONS": os.fspath(source).split("/", 3)[-1]}
    else:
        # No driver we allow reaches for the network; if one ever tried, /vsicurl/ would find
        # no file it is allowed to open and give up at once.
        network = {
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tagger-no-network",
            "GDAL_HTTP_TIMEOUT": 1,
            "GDAL_HTTP_CONNECTTIMEOUT": 1,
            "GDAL_HTTP_MAX_RETRY": 0,
        }
    return rasterio.Env(
        # In bytes: rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64, which counts
        # bytes (GDAL reads a small number as MB only from a config string, not here).
        GDAL_CACHEMAX=options.cache_mb * 1024**2,
        # Threads go to the COG driver's compression and overviews (NUM_THREADS creation
        # option) only: GDAL_NUM_THREADS would also decode the source in threads, one TIFF
        # handle per block, which tripled the CPU time on a 1-row-strip source and gained
        # nothing on a tiled, compressed one (2 cores, where compression already uses both).
        # Never write .aux.xml (next to the source or anywhere), never look for sidecars.
        GDAL_PAM_ENABLED="NO",
        GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
        **network,
        # A JPEG libjpeg only warns about (e.g. truncated) would otherwise become grey pixels.
        GDAL_ERROR_ON_LIBJPEG_WARNING="TRUE",
    )


class CancelWatch:
    """Asks ``should_cancel`` at most every CANCEL_POLL_SECONDS, only from the owning thread.

    Reads on any thread look at ``stopped`` and ``next_ask`` first: two attribute loads and
    a clock read are all a read costs while nothing is due (a read is a few microseconds).
    """

    def __init__(self, should_cancel: Callable[[], bool] | None) -> None:
        self._should_cancel = should_cancel
        self._owner = threading.get_ident()
        self._event = threading.Event()
        self._last_asked = -math.inf
        self._swallowed: BaseException | None = None
        self.stopped = False  # cancelled, or a read raised: every later read returns nothing
        self.next_ask = math.inf  # when reads should ask should_cancel; inf until armed

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def arm(self) -> None:
        """Let reads ask should_cancel (while the COG is written)."""
        if self._should_cancel is not None:
            self.next_ask = self._last_asked + CANCEL_POLL_SECONDS

    def disarm(self) -> None:
        self.next_ask = math.inf

    def poll(self) -> bool:
        """From a read, once ``next_ask`` has passed: True if the read should fail."""
        if not self.stopped and threading.get_ident() == self._owner:
            self._ask()
            self.next_ask = self._last_asked + CANCEL_POLL_SECONDS
        return self.stopped

    def check(self, *, force: bool = False) -> None:
        """Between steps: raise ConversionCancelled if cancelled (asks if due, or if forced)."""
        if not self._event.is_set() and self._should_cancel is not None:
            if force or time.monotonic() - self._last_asked >= CANCEL_POLL_SECONDS:
                self._ask()
        if self._event.is_set():
            raise ConversionCancelled("The conversion was cancelled.")

    def stop_for(self, exc: BaseException) -> None:
        """Keep an exception raised inside a read (GDAL would only see a failed read)."""
        if self._swallowed is None:
            self._swallowed = exc
        self.stopped = True

    def raise_swallowed(self) -> None:
        """Re-raise what a read raised (should_cancel's database error, a time limit, ...)."""
        if self._swallowed is not None:
            raise self._swallowed

    def _ask(self) -> None:
        self._last_asked = time.monotonic()
        if self._should_cancel():
            self._event.set()
            self.stopped = True


@contextlib.contextmanager
def open_source(path: Path | str, watch: CancelWatch) -> Iterator[rasterio.io.DatasetReader]:
    """Open the upload with the driver its first bytes name: a file through the single-file
    opener, an object (``is_remote``) by its name under ``gdal_env(source=...)``'s fence."""
    drivers, format_name = _identify(path)
    opener = None if is_remote(path) else _SingleFileOpener(path, watch)
    for driver in drivers:
        try:
            dataset = rasterio.open(os.fspath(path), driver=driver, opener=opener)
        except COPY_ERRORS as exc:
            watch.raise_swallowed()
            logger.info("%s could not open %s: %s", driver, Path(path).name, exc)
            continue
        with dataset:
            yield dataset
        return
    raise RasterError(
        f"The file looks like {format_name} but cannot be read: it is truncated or corrupt."
    )


# (offset, signature, drivers to try, what to call it)
_SIGNATURES: tuple[tuple[int, bytes, tuple[str, ...], str], ...] = (
    (0, b"II*\x00", ("GTiff",), "TIFF"),
    (0, b"MM\x00*", ("GTiff",), "TIFF"),
    (0, b"II+\x00", ("GTiff",), "BigTIFF"),
    (0, b"MM\x00+", ("GTiff",), "BigTIFF"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", ("JP2OpenJPEG",), "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", ("JP2OpenJPEG",), "JPEG 2000"),
    (0, b"\x89PNG\r\n\x1a\n", ("PNG",), "PNG"),
    (0, b"\xff\xd8\xff", ("JPEG",), "JPEG"),
    (0, b"GIF87a", ("GIF", "BIGGIF"), "GIF"),
    (0, b"GIF89a", ("GIF", "BIGGIF"), "GIF"),
    (0, b"BM", ("BMP",), "BMP"),
    (8, b"WEBP", ("WEBP",), "WebP"),
)
_NOT_RASTERS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "The file is a zip archive: upload the raster file itself, not an archive."),
    (b"\x1f\x8b", "The file is gzip-compressed: upload the raster file itself, uncompressed."),
    (
        b"<",
        "The file is XML or HTML (a GDAL VRT, say), not a raster tagger can read: upload a "
        f"self-contained raster file ({ALLOWED_FORMATS_TEXT}).",
    ),
)


def _identify(path: Path | str) -> tuple[tuple[str, ...], str]:
    """Which allowed drivers may open ``path``, from its first bytes."""
    if is_remote(path):
        head = libgdal.read_head(os.fspath(path), 16)
    else:
        with open(path, "rb") as file:
            head = file.read(16)
    if not head:
        raise RasterError("The file is empty.")
    for offset, signature, drivers, name in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            if drivers == ("WEBP",) and not head.startswith(b"RIFF"):
                continue
            return drivers, name
    for signature, message in _NOT_RASTERS:
        if head.lstrip().startswith(signature):
            raise RasterError(message)
    raise RasterError(
        f"The file is not a raster format tagger can read (allowed: {ALLOWED_FORMATS_TEXT})."
    )


class _SingleFileOpener:
    """rasterio opener serving one file, read-only; any other path GDAL asks for is absent."""

    def __init__(self, path: Path, watch: CancelWatch) -> None:
        self._path = os.fspath(path)
        self._watch = watch

    def __call__(self, path: str, mode: str = "rb", **kwargs: Any) -> _CancellableFile:
        if os.fspath(path) != self._path:
            raise FileNotFoundError(path)
        if set(mode) - set("rb"):
            raise PermissionError("the source is read-only")
        return _CancellableFile(self._path, self._watch)


class _CancellableFile:
    """The source as GDAL sees it: read-only, failing once cancelled, remembering recent reads.

    GDAL reads an uncompressed striped TIFF (its default layout, common in uploads) without
    its block cache: every 512-pixel-wide tile the COG driver writes re-reads whole strips,
    ~26 times over the conversion. Serving those repeats from the bytes already read keeps
    the opener no slower than GDAL's own reads (it pays a Python call per read).
    """

    def __init__(self, path: str, watch: CancelWatch) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._size = os.fstat(self._fd).st_size
        self._position = 0
        self._watch = watch
        self._recent: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._recent_bytes = 0

    def __enter__(self) -> _CancellableFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._recent.clear()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        watch = self._watch
        try:
            if watch.stopped or (_monotonic() >= watch.next_ask and watch.poll()):
                return b""  # a short read: GDAL fails the block, and so the copy
            if size < 0:
                size = max(self._size - self._position, 0)
            key = (self._position, size)
            data = self._recent.get(key)
            if data is None:
                data = os.pread(self._fd, size, self._position)
                if size <= RECENT_READ_MAX_BYTES:
                    self._remember(key, data)
            else:
                self._recent.move_to_end(key)
            self._position += len(data)
            return data
        except BaseException as exc:  # raised through GDAL it would be printed and lost
            watch.stop_for(exc)
            return b""

    def _remember(self, key: tuple[int, int], data: bytes) -> None:
        self._recent[key] = data
        self._recent_bytes += len(data)
        while self._recent_bytes > RECENT_READS_MAX_BYTES:
            _, dropped = self._recent.popitem(last=False)
            self._recent_bytes -= len(dropped)


_monotonic = time.monotonic  # read() runs hundreds of thousands of times: one global lookup
