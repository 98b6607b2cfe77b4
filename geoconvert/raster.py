"""Turn one uploaded raster file into a Cloud-Optimized GeoTIFF, with plain rasterio.

No Django here: the service calls ``convert()`` and maps ``Step``s, ``RasterError`` and
``ConversionCancelled`` onto its models. The engine can be run, tested and benchmarked alone.

Safety. An upload is hostile until proven otherwise:
- Its first bytes must be the signature of a self-contained raster format (``ALLOWED_DRIVERS``)
  and GDAL may open it with that one driver only, so a VRT (even renamed ``.tif``), an archive
  or anything else that could make GDAL read other files or the network never reaches a driver.
- GDAL reads the file only through an opener that serves exactly that file, read-only; any
  other path it asks for (sidecars, .ovr, .aux.xml, ...) does not exist for it. PAM is off
  so nothing is written next to the source; network access is fenced off in ``gdal_env()``.
- Size limits are checked from the header, before any pixel is read.
- Messages in ``RasterError`` are ours: GDAL's own text (which names server paths) is only logged.

Output. One pass through GDAL's COG driver (no intermediate GeoTIFF as rio-cogeo makes):
tiled, lossless, overviews, CRS, geotransform, nodata, masks and colour table kept. It is
written to ``.<dst name>.<uuid>.partial`` in dst's folder and moved into place with
``os.replace`` only when complete; on any error or cancel every partial file is removed.

Cancellation. ``should_cancel`` is asked between steps and, while the COG is written, from the
reads GDAL makes of the source: the opener's ``read()`` asks at most every
``CANCEL_POLL_SECONDS`` (only on the thread that called ``convert``; reads on GDAL's worker
threads only look at the flag it sets) and, once cancelled, returns no bytes, so GDAL fails
the copy.
Its cost, measured with GDAL 3.10 on 2 busy cores (so CPU time, several runs): GDAL reads an
uncompressed 1-row-strip GeoTIFF without its block cache, re-reading each strip ~26 times
while writing (10000x10000x3 uint8, 300 MB: 260k reads, 7.4 GB). Through a plain Python file
that cost ~2 us a read more than GDAL's own reads, ~10% of the conversion's CPU; the opener
therefore serves repeated reads from the bytes it read last (``RECENT_READS_MAX_BYTES``),
which made it as fast as opening the path (8.5-9.1 s vs 8.6-9.6 s of CPU; a tiled DEFLATE
source 9.7-10.3 s vs 10.2-10.5 s) for at most 32 MiB more memory (peak RSS ~150 MB in all).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio._err import CPLE_BaseError  # what rasterio.shutil.copy raises; no public alias
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError
from rasterio.transform import from_bounds
from rasterio.warp import calculate_default_transform, transform_bounds

__all__ = [
    "check_request",
    "ALLOWED_DRIVERS",
    "CogOptions",
    "ConversionCancelled",
    "Georef",
    "Limits",
    "RasterError",
    "RasterInfo",
    "Step",
    "convert",
    "describe",
    "gdal_env",
]

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

# The largest temporary overview file the COG driver may write uncompressed (it is faster).
UNCOMPRESSED_OVERVIEWS_MAX_BYTES = 2 * 1024**3

# Reads the source opener remembers, for GDAL's repeated reads (see _CancellableFile): enough
# for the 512 strips a row of COG tiles spans when rows are up to 64 KiB (21,000 RGB pixels).
RECENT_READS_MAX_BYTES = 32 * 1024**2
RECENT_READ_MAX_BYTES = 1024**2  # larger reads are not remembered

# How often should_cancel() (which may query a database) is asked while GDAL is busy.
CANCEL_POLL_SECONDS = 1.0

LOSSLESS_COMPRESSIONS = ("DEFLATE", "ZSTD", "LZW", "NONE")
_LEVELS = {"DEFLATE": range(1, 13), "ZSTD": range(1, 23)}
_FAST_LEVEL = 1  # for DEFLATE and ZSTD alike, when CogOptions.level is None
_OVERVIEW_RESAMPLINGS = (
    "NEAREST",
    "AVERAGE",
    "BILINEAR",
    "CUBIC",
    "CUBICSPLINE",
    "LANCZOS",
    "MODE",
    "RMS",
    "GAUSS",
)
_GDAL_ERRORS = (RasterioError, CPLE_BaseError)
# rasterio raises SystemError("Unknown GDAL Error") when GDAL fails without saying why, as
# its PNG driver does on a truncated file.
_COPY_ERRORS = (*_GDAL_ERRORS, SystemError)


class RasterError(Exception):
    """The input cannot be converted. ``str(exc)`` tells a person what to do about it."""


class ConversionCancelled(Exception):
    """``should_cancel()`` said so; nothing was left behind."""


class Step(enum.Enum):
    """Reported through ``progress`` when each begins, once each, in this order."""

    LOAD = "load"
    ANALYZE = "analyze"
    WRITE = "write"


@dataclass(frozen=True)
class CogOptions:
    """How the COG is written. Defaults aim at lossless output any GeoTIFF reader opens, fast.

    DEFLATE rather than ZSTD: every GeoTIFF reader (libtiff, GDAL of any age, QGIS, ArcGIS,
    geotiff.js) decodes DEFLATE, while ZSTD needs GDAL >= 2.3 built with it. Level 1 with a
    predictor was measured at ~0.4x the time of ``rio cogeo create`` and ~35% smaller files;
    higher levels cost much more time for a few percent. ZSTD level 1 is faster still
    (~0.33x) for deployments whose clients all read it.
    """

    compression: str = "DEFLATE"
    level: int | None = None  # None: 1, the fast level (see above); ignored by LZW and NONE
    predictor: bool = True  # PREDICTOR=YES: 2 for integers, 3 for floats; never on palettes
    blocksize: int = 512
    # None: NEAREST for paletted rasters (an average of class codes is a wrong class),
    # AVERAGE otherwise: it anti-aliases, ignores nodata, and unlike CUBIC (GDAL's COG default)
    # never rings past the data's range at edges, which matters for DEMs and nodata borders.
    overview_resampling: str | None = None
    num_threads: int | str = "ALL_CPUS"  # threads compressing tiles and computing overviews
    cache_mb: int = 64  # GDAL_CACHEMAX for the conversion: bounds its memory

    def __post_init__(self) -> None:
        if self.compression.upper() not in LOSSLESS_COMPRESSIONS:
            raise ValueError(
                f"compression must be one of {LOSSLESS_COMPRESSIONS}, not {self.compression!r}"
            )
        levels = _LEVELS.get(self.compression.upper())
        if self.level is not None and levels is not None and self.level not in levels:
            raise ValueError(
                f"{self.compression} level must be in {levels.start}..{levels.stop - 1}"
            )
        if not (64 <= self.blocksize <= 4096 and self.blocksize % 16 == 0):
            raise ValueError("blocksize must be a multiple of 16 between 64 and 4096")
        if (
            self.overview_resampling
            and self.overview_resampling.upper() not in _OVERVIEW_RESAMPLINGS
        ):
            raise ValueError(f"overview_resampling must be one of {_OVERVIEW_RESAMPLINGS}")
        threads = str(self.num_threads).upper()
        if threads != "ALL_CPUS" and not (threads.isdigit() and int(threads) >= 1):
            raise ValueError("num_threads must be a positive int or 'ALL_CPUS'")
        if self.cache_mb < 16:
            raise ValueError("cache_mb must be at least 16")


@dataclass(frozen=True)
class Limits:
    """Refuse rasters larger than this, judged from the header before any pixel is read."""

    max_pixels: int = 1_000_000_000  # width * height
    max_uncompressed_bytes: int = 16 * 1024**3  # width * height * sum of bytes per band sample


@dataclass(frozen=True)
class Georef:
    """Where a raster without georeferencing lies, as the user gave it."""

    crs: str
    bounds: tuple[float, float, float, float]  # west, south, east, north in crs


@dataclass(frozen=True)
class RasterInfo:
    """Metadata of a finished COG; ``as_dict()`` survives ``json.dumps(allow_nan=False)``."""

    crs: str | None  # "EPSG:xxxx" when it has an EPSG code, else WKT
    bounds: list[float]  # west, south, east, north in crs
    bounds_wgs84: list[float]  # same in EPSG:4326, edges densified
    width: int
    height: int
    count: int
    dtypes: list[str]
    nodata: float | str | None  # NaN and infinities as "nan", "inf", "-inf", as gdalinfo -json does
    resolution: list[float]
    overviews: list[int]  # decimation factors of band 1
    compression: str | None
    size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gdal_env(options: CogOptions = CogOptions()) -> rasterio.Env:
    """The GDAL environment every open and conversion here runs in."""
    return rasterio.Env(
        GDAL_CACHEMAX=options.cache_mb,
        # Threads go to the COG driver's compression and overviews (NUM_THREADS creation
        # option) only: GDAL_NUM_THREADS would also decode the source in threads, one TIFF
        # handle per block, which tripled the CPU time on a 1-row-strip source and gained
        # nothing on a tiled, compressed one (2 cores, where compression already uses both).
        # Never write .aux.xml (next to the source or anywhere), never look for sidecars.
        GDAL_PAM_ENABLED="NO",
        GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
        # No driver we allow reaches for the network; if one ever tried, /vsicurl/ would find
        # no file it is allowed to open and give up at once.
        CPL_VSIL_CURL_ALLOWED_EXTENSIONS=".tagger-no-network",
        GDAL_HTTP_TIMEOUT=1,
        GDAL_HTTP_CONNECTTIMEOUT=1,
        GDAL_HTTP_MAX_RETRY=0,
        # A JPEG libjpeg only warns about (e.g. truncated) would otherwise become grey pixels.
        GDAL_ERROR_ON_LIBJPEG_WARNING="TRUE",
    )


# --- conversion -------------------------------------------------------------------------


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    target_crs: str | None = None,
    georef: Georef | None = None,
    options: CogOptions = CogOptions(),
    limits: Limits = Limits(),
    progress: Callable[[Step], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> RasterInfo:
    """Write ``src`` as a COG at ``dst`` and describe the result.

    Raises ``RasterError`` for input that cannot be converted, ``ConversionCancelled`` when
    ``should_cancel()`` returned true; in both cases dst is untouched and no partial file stays.
    """
    src_path, dst_path = Path(src).absolute(), Path(dst).absolute()
    _check_paths(src_path, dst_path)
    dst_crs = _parse_crs(target_crs, "target CRS") if target_crs is not None else None
    georef_crs = _check_georef(georef) if georef is not None else None
    report = progress or (lambda step: None)
    watch = _CancelWatch(should_cancel)

    partial = dst_path.with_name(f".{dst_path.name}.{uuid.uuid4().hex}.partial")
    try:
        watch.check()
        report(Step.LOAD)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with gdal_env(options), _open_source(src_path, watch) as dataset:
                _check_limits(dataset.width, dataset.height, dataset.dtypes, limits)
                watch.check()
                report(Step.ANALYZE)
                with _planned(dataset, georef, georef_crs, dst_crs) as plan:
                    _check_limits(plan.width, plan.height, dataset.dtypes, limits)
                    creation_options = _creation_options(plan, options)
                    watch.check()
                    report(Step.WRITE)
                    with rasterio.Env(**_temporary_file_config(plan, dataset.dtypes)):
                        _write_cog(plan.dataset, partial, creation_options, watch)
            watch.check(force=True)
            info = describe(partial)
        os.replace(partial, dst_path)
        return _with_size(info, dst_path)
    except BaseException:
        _remove_partials(partial)
        raise


def check_request(*, target_crs: str | None = None, georef: Georef | None = None) -> None:
    """Validate what a request asks for, without touching any file: RasterError if wrong."""
    if target_crs is not None:
        _parse_crs(target_crs, "target CRS")
    if georef is not None:
        _check_georef(georef)


def describe(path: str | os.PathLike) -> RasterInfo:
    """Metadata of an existing COG (one this module wrote)."""
    path = Path(path)
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            dataset = rasterio.open(path, driver="GTiff")
        except _GDAL_ERRORS as exc:
            logger.info("describe(%s) failed: %s", path.name, exc)
            raise RasterError("The converted file cannot be read back.") from None
        with dataset:
            return _describe_dataset(dataset, path)


def _check_paths(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise FileNotFoundError(f"source is not a file: {src}")
    if dst == src or (dst.exists() and os.path.samefile(src, dst)):
        raise ValueError("dst must differ from src: the source is never overwritten")
    if dst.is_dir():
        raise IsADirectoryError(f"dst is a directory: {dst}")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"dst's folder does not exist: {dst.parent}")


def _write_cog(
    dataset, partial: Path, creation_options: dict[str, Any], watch: _CancelWatch
) -> None:
    watch.arm()
    try:
        rasterio.shutil.copy(dataset, partial, driver="COG", **creation_options)
    except _COPY_ERRORS as exc:
        watch.raise_swallowed()
        if watch.cancelled:
            raise ConversionCancelled("The conversion was cancelled.") from None
        logger.info("COG write failed: %s", exc)
        raise RasterError(
            "The raster data is truncated or corrupt: its pixels could not all be read."
        ) from None
    finally:
        watch.disarm()
    watch.raise_swallowed()
    if watch.cancelled:  # GDAL may have finished reading just as the flag went up
        raise ConversionCancelled("The conversion was cancelled.")


def _temporary_file_config(plan: _Plan, dtypes: tuple[str, ...]) -> dict[str, str]:
    """Leave the COG driver's temporary overview file uncompressed when it is small enough.

    GDAL compresses it with ZSTD at its default level 9 and then decodes it again for the
    final copy: measured, that was half the CPU of a whole conversion (4000x4000x3 uint8:
    3.5 s with it, 1.65 s without). Uncompressed it takes a third of the raw pixel size on
    disk, so past UNCOMPRESSED_OVERVIEWS_MAX_BYTES GDAL's default stands, bounding disk use.
    """
    raw_bytes = plan.width * plan.height * (sum(numpy.dtype(d).itemsize for d in dtypes) + 1)
    if raw_bytes // 3 > UNCOMPRESSED_OVERVIEWS_MAX_BYTES:
        return {}
    return {"COG_TMP_COMPRESSION": "NONE"}


def _remove_partials(partial: Path) -> None:
    # GDAL's COG driver keeps its overviews in "<partial>.ovr.tmp" (and warps into other
    # "<partial>.*.tmp" files); the uuid in the name makes the prefix ours alone.
    for leftover in partial.parent.glob(f"{partial.name}*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _with_size(info: RasterInfo, path: Path) -> RasterInfo:
    return RasterInfo(**{**info.as_dict(), "size_bytes": path.stat().st_size})


# --- opening the source -----------------------------------------------------------------

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


def _identify(path: Path) -> tuple[tuple[str, ...], str]:
    """Which allowed drivers may open ``path``, from its first bytes."""
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


@contextlib.contextmanager
def _open_source(path: Path, watch: _CancelWatch) -> Iterator[rasterio.io.DatasetReader]:
    drivers, format_name = _identify(path)
    source = _SingleFileOpener(path, watch)
    for driver in drivers:
        try:
            dataset = rasterio.open(os.fspath(path), driver=driver, opener=source)
        except _COPY_ERRORS as exc:
            watch.raise_swallowed()
            logger.info("%s could not open %s: %s", driver, path.name, exc)
            continue
        with dataset:
            yield dataset
        return
    raise RasterError(
        f"The file looks like {format_name} but cannot be read: it is truncated or corrupt."
    )


class _CancelWatch:
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


class _SingleFileOpener:
    """rasterio opener serving one file, read-only; any other path GDAL asks for is absent."""

    def __init__(self, path: Path, watch: _CancelWatch) -> None:
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

    def __init__(self, path: str, watch: _CancelWatch) -> None:
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


_monotonic = time.monotonic


def _check_limits(width: int, height: int, dtypes: tuple[str, ...], limits: Limits) -> None:
    pixels = width * height
    if pixels > limits.max_pixels:
        raise RasterError(
            f"The raster is {width:,} x {height:,} pixels ({pixels:,} pixels); "
            f"tagger converts at most {limits.max_pixels:,} pixels."
        )
    sample_bytes = sum(numpy.dtype(d).itemsize for d in dtypes)
    size = pixels * sample_bytes
    if size > limits.max_uncompressed_bytes:
        raise RasterError(
            f"The raster holds {_human_bytes(size)} of pixel data uncompressed "
            f"({width:,} x {height:,} pixels x {len(dtypes)} bands); "
            f"tagger converts at most {_human_bytes(limits.max_uncompressed_bytes)}."
        )


def _human_bytes(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# --- georeferencing ---------------------------------------------------------------------


def _parse_crs(text: str, what: str) -> CRS:
    if not isinstance(text, str) or not text.strip() or len(text) > 20_000:
        raise RasterError(f"The {what} must be a CRS such as 'EPSG:4326'.")
    try:
        crs = CRS.from_user_input(text.strip())
    except (CRSError, ValueError):
        shown = text.strip()[:80]
        raise RasterError(
            f"The {what} {shown!r} is not a coordinate reference system GDAL knows."
        ) from None
    if not (crs.is_geographic or crs.is_projected):
        raise RasterError(f"The {what} must be a geographic or projected CRS.")
    return crs


def _check_georef(georef: Georef) -> CRS:
    crs = _parse_crs(georef.crs, "CRS")
    bounds = georef.bounds
    if (
        len(bounds) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds)
        or not all(math.isfinite(v) for v in bounds)
    ):
        raise RasterError("The bounds must be four numbers: west, south, east, north.")
    west, south, east, north = bounds
    if not (west < east and south < north):
        raise RasterError(
            "The bounds must be west, south, east, north with west < east and south < north."
        )
    _wgs84_bounds(crs, bounds)  # raises if they are off the globe
    return crs


def _is_georeferenced(dataset) -> bool:
    return dataset.crs is not None and dataset.transform != Affine.identity()


@dataclass(frozen=True)
class _Plan:
    """What to hand the COG driver: a georeferenced dataset and, maybe, where to warp it."""

    dataset: Any
    warp_to: CRS | None
    width: int  # of the output
    height: int


@contextlib.contextmanager
def _planned(
    dataset, georef: Georef | None, georef_crs: CRS | None, dst_crs: CRS | None
) -> Iterator[_Plan]:
    """Georeference ``dataset`` (from its CRS, its GCPs or the request) and plan any warp."""
    gcps, gcp_crs = dataset.gcps
    if _is_georeferenced(dataset):
        if georef is not None:
            raise RasterError(
                "The file is already georeferenced: leave out crs and bounds, "
                "or remove the georeferencing from the file."
            )
        yield _plan(dataset, dst_crs)
    elif gcps and gcp_crs is not None:
        if georef is not None:
            raise RasterError(
                "The file is already georeferenced by ground control points: "
                "leave out crs and bounds."
            )
        # GDAL's warper fits a transform to the GCPs; without target_crs it stays in theirs.
        yield _plan(dataset, dst_crs or gcp_crs, gcps=(gcps, gcp_crs))
    elif georef is not None:
        with _with_georef(dataset, georef, georef_crs) as georeferenced:
            yield _plan(georeferenced, dst_crs)
    else:
        raise RasterError(
            "The file has no georeferencing (no CRS and geotransform, no ground control "
            "points): give its crs and bounds (west, south, east, north) with the upload."
        )


def _plan(dataset, dst_crs: CRS | None, gcps: tuple[list, CRS] | None = None) -> _Plan:
    if dst_crs is None:
        return _Plan(dataset, None, dataset.width, dataset.height)
    # Size the warped output now, to hold it to the limits before anything is written.
    try:
        if gcps is not None:
            _, width, height = calculate_default_transform(
                gcps[1], dst_crs, dataset.width, dataset.height, gcps=gcps[0]
            )
        else:
            _, width, height = calculate_default_transform(
                dataset.crs, dst_crs, dataset.width, dataset.height, *dataset.bounds
            )
    except _GDAL_ERRORS as exc:
        logger.info("no warp to %s: %s", dst_crs, exc)
        raise RasterError(f"The raster cannot be reprojected to {_crs_text(dst_crs)}.") from None
    return _Plan(dataset, dst_crs, width, height)


@contextlib.contextmanager
def _with_georef(dataset, georef: Georef, crs: CRS):
    """A VRT over ``dataset`` that carries the requested CRS and bounds; pixels untouched."""
    vrt_path = f"/vsimem/tagger-{uuid.uuid4().hex}.vrt"
    try:
        # The VRT driver's CreateCopy keeps band types, nodata, masks and the colour table;
        # its source is the opener's path, so its reads stay cancellable.
        rasterio.shutil.copy(dataset, vrt_path, driver="VRT")
        with rasterio.open(vrt_path, "r+", driver="VRT") as vrt:
            vrt.crs = crs
            vrt.transform = from_bounds(*georef.bounds, dataset.width, dataset.height)
        with rasterio.open(vrt_path, driver="VRT") as vrt:
            yield vrt
    finally:
        with contextlib.suppress(*_GDAL_ERRORS):
            rasterio.shutil.delete(vrt_path, driver="VRT")


def _is_paletted(dataset) -> bool:
    return dataset.count >= 1 and dataset.colorinterp[0] == ColorInterp.palette


def _creation_options(plan: _Plan, options: CogOptions) -> dict[str, Any]:
    paletted = _is_paletted(plan.dataset)
    compression = options.compression.upper()
    predictor = (
        options.predictor
        and compression != "NONE"
        and not paletted
        and not any(d.startswith("complex") for d in plan.dataset.dtypes)
    )
    resampling = options.overview_resampling or ("NEAREST" if paletted else "AVERAGE")
    creation: dict[str, Any] = {
        "COMPRESS": compression,
        "PREDICTOR": "YES" if predictor else "NO",
        "BLOCKSIZE": options.blocksize,
        "OVERVIEW_RESAMPLING": resampling.upper(),
        # Regenerate overviews rather than reuse the upload's (maybe partial, maybe nearest).
        "OVERVIEWS": "IGNORE_EXISTING",
        "NUM_THREADS": str(options.num_threads).upper(),
        "BIGTIFF": "IF_SAFER",
    }
    if compression in _LEVELS:
        creation["LEVEL"] = options.level if options.level is not None else _FAST_LEVEL
    if plan.warp_to is not None:
        # The COG driver warps itself (into a temporary tiled file next to the output), ~3x
        # faster than reading a WarpedVRT whose overviews it would compute chunk by chunk.
        # Nodata is kept; without nodata it adds an alpha band for the area outside the
        # source (as gdalwarp -dstalpha does), which also carries a source mask or alpha.
        # Nearest for palettes (class codes must stay codes), bilinear otherwise: smooth,
        # no overshoot, cheaper than cubic.
        creation["TARGET_SRS"] = plan.warp_to.to_wkt()
        creation["WARP_RESAMPLING"] = "NEAREST" if paletted else "BILINEAR"
    return creation


# --- describing -------------------------------------------------------------------------


def _crs_text(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()


def _json_number(value: float | None) -> float | str | None:
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _wgs84_bounds(crs: CRS, bounds: tuple[float, float, float, float]) -> list[float]:
    try:
        west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    except _GDAL_ERRORS:
        west = south = east = north = math.nan
    tolerance = 1e-6
    if not all(math.isfinite(v) for v in (west, south, east, north)) or not (
        -90 - tolerance <= south <= north <= 90 + tolerance
    ):
        raise RasterError(
            "The raster's bounds are not on the globe in its CRS: check the CRS and bounds "
            "(west, south, east, north)."
        )
    return [west, max(south, -90.0), east, min(north, 90.0)]


def _describe_dataset(dataset, path: Path) -> RasterInfo:
    corners = [
        dataset.transform @ xy
        for xy in ((0, 0), (dataset.width, 0), (0, dataset.height), (dataset.width, dataset.height))
    ]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    bounds = (min(xs), min(ys), max(xs), max(ys))
    if dataset.crs is not None:
        crs_text = _crs_text(dataset.crs)
        bounds_wgs84 = _wgs84_bounds(dataset.crs, bounds)
    else:
        crs_text, bounds_wgs84 = None, []
    return RasterInfo(
        crs=crs_text,
        bounds=[float(v) for v in bounds],
        bounds_wgs84=[float(v) for v in bounds_wgs84],
        width=dataset.width,
        height=dataset.height,
        count=dataset.count,
        dtypes=list(dataset.dtypes),
        nodata=_json_number(dataset.nodata),
        resolution=[float(v) for v in dataset.res],
        overviews=[int(f) for f in dataset.overviews(1)],
        compression=dataset.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION"),
        size_bytes=path.stat().st_size,
    )
