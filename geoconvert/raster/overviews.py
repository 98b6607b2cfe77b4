"""Overviews built each from the level above, for the COG driver to copy as they are.

GDAL's COG driver computes the overviews of a multi-band raster with its multi-band
resampler, which goes back to the full-resolution source for them: the engine's opener is
asked for 4 times the file (docs/performance.md), against 2 times this way. Here the source is
read once for the first level (half size, AVERAGE), each further level is resampled from the
one above it (a quarter of the pixels each time), all into uncompressed tiled files next to
the partial output; a VRT over the source lists them as its overviews, and the COG driver,
told ``OVERVIEWS=FORCE_USE_EXISTING``, reads the source once more for full resolution and
compresses every tile of every level once. The levels have the COG driver's own sizes
(halved, rounded down, until both sides fit in a block), and AVERAGE from the level above
gives the same pixels GDAL gives, nodata and alpha included.

Used only where the COG driver's own pass would do more (``cascades``): several bands,
AVERAGE, a raster larger than a block (else it has no overviews), no warp (the driver warps
into a file of its own first), no mask band (GDAL's per-dataset masks have overviews of
their own), no complex data.
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import rasterio.shutil
from rasterio.enums import MaskFlags

from . import libgdal
from .options import is_complex

# Past this many bytes of levels, their files are ZSTD level 1, bounding scratch disk.
UNCOMPRESSED_LEVELS_MAX_BYTES = 2 * 1024**3


def cascades(dataset, creation: dict[str, Any]) -> bool:
    """Whether building the overviews here does less work than the COG driver would."""
    return (
        bool(level_sizes(dataset.width, dataset.height, int(creation["BLOCKSIZE"])))
        and "TARGET_SRS" not in creation
        and dataset.count >= 2
        and creation.get("OVERVIEW_RESAMPLING") == "AVERAGE"
        and creation.get("OVERVIEWS") == "IGNORE_EXISTING"
        and not any(is_complex(dtype) for dtype in dataset.dtypes)
        and dataset.mask_flag_enums[0] != [MaskFlags.per_dataset]
    )


def level_sizes(width: int, height: int, blocksize: int) -> list[tuple[int, int]]:
    """The overview sizes the COG driver makes: halved until both sides fit in a block."""
    sizes = []
    while width > blocksize or height > blocksize:
        width, height = max(width // 2, 1), max(height // 2, 1)
        sizes.append((width, height))
    return sizes


@contextlib.contextmanager
def with_overviews(
    dataset,
    partial: Path,
    blocksize: int,
    bytes_per_pixel: int,
    progress: Callable[[float], bool],
) -> Iterator[str]:
    """The name of a VRT over ``dataset`` whose bands have the overviews built here; its
    files sit beside ``partial`` (named after it) and are removed on leaving."""
    sizes = level_sizes(dataset.width, dataset.height, blocksize)
    levels = [partial.with_name(f"{partial.name}.level{n}.tmp") for n in range(1, len(sizes) + 1)]
    vrt = partial.with_name(f"{partial.name}.vrt.tmp")
    try:
        _build_levels(dataset, sizes, levels, blocksize, bytes_per_pixel, progress)
        rasterio.shutil.copy(dataset, vrt, driver="VRT")
        _list_overviews(vrt, levels)
        yield os.fspath(vrt)
    finally:
        for path in (vrt, *levels):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _build_levels(dataset, sizes, levels, blocksize, bytes_per_pixel, progress) -> None:
    # Each level reads the one above: weigh progress by the pixels read.
    reads = [dataset.width * dataset.height] + [w * h for w, h in sizes[:-1]]
    total = sum(reads)
    large = sum(w * h for w, h in sizes) * bytes_per_pixel > UNCOMPRESSED_LEVELS_MAX_BYTES
    creation = {
        "TILED": "YES",
        "BLOCKXSIZE": blocksize,
        "BLOCKYSIZE": blocksize,
        "INTERLEAVE": "PIXEL",
        "BIGTIFF": "IF_SAFER",
        **({"COMPRESS": "ZSTD", "ZSTD_LEVEL": 1} if large else {}),
    }
    # "-ovr NONE": from full resolution, never from the upload's own overviews.
    arguments = ["-of", "GTiff", "-r", "average", "-ovr", "NONE"]
    for key, value in creation.items():
        arguments += ["-co", f"{key}={value}"]
    name, driver, done = dataset.name, dataset.driver, 0
    for (width, height), level, read in zip(sizes, levels, reads, strict=True):
        start, share = done / total, read / total
        libgdal.translate(
            name,
            driver,
            level,
            arguments=[*arguments, "-outsize", str(width), str(height)],
            progress=lambda fraction, start=start, share=share: progress(start + share * fraction),
        )
        name, driver, done = os.fspath(level), "GTiff", done + read


def _list_overviews(vrt: Path, levels: list[Path]) -> None:
    """Give each band of the VRT the levels' same band as its overviews, in order."""
    tree = ET.parse(vrt)
    for band in tree.getroot().findall("VRTRasterBand"):
        for level in levels:
            overview = ET.SubElement(band, "Overview")
            ET.SubElement(overview, "SourceFilename", relativeToVRT="0").text = os.fspath(level)
            ET.SubElement(overview, "SourceBand").text = band.get("band")
    tree.write(vrt, encoding="UTF-8")
