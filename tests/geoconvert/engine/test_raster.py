"""The conversion engine alone: plain rasterio, no Django, no database.

Runs as ``pytest -p no:django tests/geoconvert/engine`` and under pytest-django alike.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rio_cogeo.cogeo import cog_validate

from geoconvert import raster
from geoconvert.raster import (
    CogOptions,
    ConversionCancelled,
    Georef,
    Limits,
    RasterError,
    Step,
    convert,
    describe,
)
from geoconvert.raster import overviews as raster_overviews
from geoconvert.raster import plan as raster_plan
from geoconvert.raster import source as raster_source
from tests import rasters

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

NEAR_TRENTO = Georef(crs="EPSG:4326", bounds=(11.0, 46.0, 11.1, 46.1))


@pytest.fixture
def src_dir(tmp_path: Path) -> Path:
    path = tmp_path / "uploads"
    path.mkdir()
    return path


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "cogs"
    path.mkdir()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_valid_cog(path: Path) -> None:
    is_valid, errors, warnings = cog_validate(str(path), quiet=True)
    assert is_valid and not errors, errors


def convert_checked(src: Path, out_dir: Path, **kwargs) -> tuple[Path, raster.RasterInfo]:
    """Convert, then check what every successful conversion promises."""
    src_hash, src_files = sha256(src), listing(src.parent)
    dst = out_dir / "result.tif"
    info = convert(src, dst, **kwargs)
    assert listing(out_dir) == ["result.tif"], "only the COG is left in the output folder"
    assert sha256(src) == src_hash and listing(src.parent) == src_files, "source untouched"
    assert_valid_cog(dst)
    assert info == describe(dst)
    json.dumps(info.as_dict(), allow_nan=False)
    return dst, info


def assert_same_georeferencing(src: Path, cog: Path) -> None:
    with rasterio.open(src) as a, rasterio.open(cog) as b:
        assert a.crs == b.crs
        assert a.transform.almost_equals(b.transform)
        assert a.colorinterp == b.colorinterp
        assert a.descriptions == b.descriptions
        if a.nodata is not None and math.isnan(a.nodata):
            assert math.isnan(b.nodata)
        else:
            assert a.nodata == b.nodata


# --- inputs that convert ----------------------------------------------------------------

GEOREFERENCED = {
    "rgb_byte_tiff": ("rgb.tif", rasters.rgb_byte_tiff),
    "masked_rgb_tiff": ("masked.tif", rasters.masked_rgb_tiff),
    "uint16_multiband_tiff": ("bands.tif", rasters.uint16_multiband_tiff),
    "float_dem_tiff": ("dem.tif", rasters.float_dem_tiff),
    "float_nan_nodata_tiff": ("nan.tif", rasters.float_nan_nodata_tiff),
    "palette_tiff": ("landcover.tif", rasters.palette_tiff),
    "jp2": ("ortho.jp2", rasters.jp2),
}


@pytest.mark.parametrize("kind", GEOREFERENCED)
def test_georeferenced_rasters_convert_losslessly(kind: str, src_dir: Path, out_dir: Path):
    name, make = GEOREFERENCED[kind]
    if kind == "jp2" and not rasters.jp2_supported():
        pytest.skip("GDAL here has no JP2OpenJPEG driver")
    src = make(src_dir / name)

    cog, info = convert_checked(src, out_dir)

    rasters.assert_same_pixels(src, cog)  # bands, dtypes, masks and nodata, colour table
    assert_same_georeferencing(src, cog)
    with rasterio.open(src) as original:
        assert info.width == original.width and info.height == original.height
        assert info.count == original.count and info.dtypes == list(original.dtypes)


def test_output_is_tiled_compressed_with_overviews(src_dir: Path, out_dir: Path):
    cog, info = convert_checked(rasters.rgb_byte_tiff(src_dir / "rgb.tif"), out_dir)

    with rasterio.open(cog) as dataset:
        assert dataset.block_shapes == [(512, 512)] * 3
        assert dataset.overviews(1) == [2, 4]
        structure = dataset.tags(ns="IMAGE_STRUCTURE")
        assert structure["COMPRESSION"] == "DEFLATE" and structure["PREDICTOR"] == "2"
    assert info.overviews == [2, 4]
    assert info.compression == "DEFLATE"
    assert info.crs == "EPSG:32633"
    assert info.bounds == [500_000, 4_991_000, 511_000, 5_000_000]
    assert info.resolution == [10, 10]
    assert info.size_bytes == cog.stat().st_size
    west, south, east, north = info.bounds_wgs84
    assert 14.9 < west < east < 15.2 and 45.0 < south < north < 45.2


def test_large_rasters_keep_gdals_compressed_temporary_overviews(
    monkeypatch: pytest.MonkeyPatch, src_dir: Path, out_dir: Path
):
    monkeypatch.setattr(raster_plan, "UNCOMPRESSED_OVERVIEWS_MAX_BYTES", 0)
    src = rasters.rgb_byte_tiff(src_dir / "rgb.tif")

    cog, info = convert_checked(src, out_dir)

    rasters.assert_same_pixels(src, cog)
    assert info.overviews == [2, 4]


def test_internal_mask_is_kept(src_dir: Path, out_dir: Path):
    src = rasters.masked_rgb_tiff(src_dir / "masked.tif")

    cog, _ = convert_checked(src, out_dir)

    with rasterio.open(cog) as dataset:
        assert dataset.mask_flag_enums[0] == [MaskFlags.per_dataset]
        assert (dataset.dataset_mask() == 0).sum() == 500 * 40 + 60 * 80


def test_palette_keeps_colours_and_overviews_use_nearest(src_dir: Path, out_dir: Path):
    src = rasters.palette_tiff(src_dir / "landcover.tif")

    cog, info = convert_checked(src, out_dir)

    assert info.overviews == [2]
    with rasterio.open(src) as original, rasterio.open(cog, overview_level=0) as overview:
        assert overview.colormap(1)[1] == rasters.PALETTE[1]
        # Nearest picks source pixels; an average of class codes would invent other classes.
        np.testing.assert_array_equal(overview.read(1), original.read(1)[::2, ::2])
        assert "PREDICTOR" not in overview.tags(ns="IMAGE_STRUCTURE")


def test_nan_nodata_is_reported_json_safe(src_dir: Path, out_dir: Path):
    _, info = convert_checked(rasters.float_nan_nodata_tiff(src_dir / "nan.tif"), out_dir)

    assert info.nodata == "nan"
    assert json.loads(json.dumps(info.as_dict(), allow_nan=False))["nodata"] == "nan"


def test_zstd_and_other_options_are_honoured(src_dir: Path, out_dir: Path):
    src = rasters.float_dem_tiff(src_dir / "dem.tif")
    options = CogOptions(compression="zstd", level=3, blocksize=256, num_threads="1", cache_mb=32)

    cog, info = convert_checked(src, out_dir, options=options)

    rasters.assert_same_pixels(src, cog)
    assert info.compression == "ZSTD"
    with rasterio.open(cog) as dataset:
        assert dataset.block_shapes == [(256, 256)]
        assert dataset.overviews(1) == [2]
        assert dataset.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"


def test_the_block_cache_is_cache_mb_mebibytes(src_dir: Path, out_dir: Path):
    # rasterio passes an integer GDAL_CACHEMAX to GDAL as bytes: 64 would be a 64-byte cache.
    from rasterio._env import get_gdal_config

    seen = []
    convert(
        rasters.rgb_byte_tiff(src_dir / "rgb.tif"),
        out_dir / "cog.tif",
        options=CogOptions(cache_mb=48),
        progress=lambda step: seen.append((step, get_gdal_config("GDAL_CACHEMAX"))),
    )

    # Every step but the first (reported before the source is opened) runs in gdal_env().
    during = [cache for step, cache in seen if step != Step.LOAD]
    assert during and set(during) == {48 * 1024**2}


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "JPEG"},
        {"compression": "WEBP"},
        {"level": 40},
        {"blocksize": 100},
        {"overview_resampling": "sharpest"},
        {"num_threads": 0},
    ],
)
def test_lossy_or_nonsense_options_are_refused(options: dict):
    with pytest.raises(ValueError):
        CogOptions(**options)


# --- georeferencing ---------------------------------------------------------------------


def test_gcps_only_raster_is_warped_to_the_gcp_crs(src_dir: Path, out_dir: Path):
    src = rasters.gcps_only_tiff(src_dir / "scan.tif")

    cog, info = convert_checked(src, out_dir)

    with rasterio.open(cog) as dataset:
        assert dataset.crs == CRS.from_epsg(4326)
        assert not dataset.gcps[0]
        # No nodata to mark what lies outside the rotated scan: an alpha band does.
        assert dataset.colorinterp == (ColorInterp.gray, ColorInterp.alpha)
        assert 0 < (dataset.read(2) == 0).mean() < 0.3
    west, south, east, north = info.bounds
    assert west == pytest.approx(10.0, abs=0.01) and east == pytest.approx(10.42, abs=0.01)
    assert south == pytest.approx(45.70, abs=0.01) and north == pytest.approx(46.02, abs=0.01)


@pytest.mark.parametrize(
    "make", [rasters.ungeoreferenced_png, rasters.palette_png, rasters.rgba_png, rasters.jpeg]
)
def test_georef_from_the_request_places_a_plain_image(
    make: Callable[[Path], Path], src_dir: Path, out_dir: Path
):
    src = make(src_dir / "picture")

    cog, info = convert_checked(src, out_dir, georef=NEAR_TRENTO)

    rasters.assert_same_pixels(src, cog)  # incl. the PNG palette and the RGBA alpha
    assert info.crs == "EPSG:4326"
    assert info.bounds == pytest.approx([11.0, 46.0, 11.1, 46.1])
    with rasterio.open(src) as original, rasterio.open(cog) as dataset:
        assert dataset.colorinterp == original.colorinterp


def test_plain_image_without_georef_is_refused(src_dir: Path, out_dir: Path):
    src = rasters.ungeoreferenced_png(src_dir / "picture.png")

    with pytest.raises(RasterError, match="crs and bounds"):
        convert(src, out_dir / "result.tif")
    assert listing(out_dir) == []


def test_sidecar_files_are_never_read(src_dir: Path, out_dir: Path):
    src = rasters.ungeoreferenced_png(src_dir / "picture.png")
    (src_dir / "picture.pgw").write_text("10\n0\n0\n-10\n500000\n5000000\n")
    (src_dir / "picture.png.aux.xml").write_text(
        "<PAMDataset><SRS>EPSG:4326</SRS>"
        "<GeoTransform>11, 0.001, 0, 46, 0, -0.001</GeoTransform></PAMDataset>"
    )

    with pytest.raises(RasterError, match="no georeferencing"):
        convert(src, out_dir / "result.tif")


def test_georef_for_an_already_georeferenced_file_is_refused(src_dir: Path, out_dir: Path):
    src = rasters.rgb_byte_tiff(src_dir / "rgb.tif")

    with pytest.raises(RasterError, match="already georeferenced"):
        convert(src, out_dir / "result.tif", georef=NEAR_TRENTO)
    assert listing(out_dir) == []


def test_georef_for_a_gcp_file_is_refused(src_dir: Path, out_dir: Path):
    src = rasters.gcps_only_tiff(src_dir / "scan.tif")

    with pytest.raises(RasterError, match="ground control points"):
        convert(src, out_dir / "result.tif", georef=NEAR_TRENTO)


@pytest.mark.parametrize(
    "georef, message",
    [
        (Georef("EPSG:999999", (0, 0, 1, 1)), "not a coordinate reference system"),
        (Georef("my favourite projection", (0, 0, 1, 1)), "not a coordinate reference system"),
        (Georef("", (0, 0, 1, 1)), "must be a CRS"),
        (Georef("EPSG:4326", (11.1, 46.0, 11.0, 46.1)), "west < east"),
        (Georef("EPSG:4326", (11.0, 46.1, 11.1, 46.0)), "south < north"),
        (Georef("EPSG:4326", (11.0, 46.0, 11.1, float("nan"))), "four numbers"),
        (Georef("EPSG:4326", (11.0, 46.0, 11.1)), "four numbers"),
        (Georef("EPSG:4326", (0, 0, 256, 256)), "not on the globe"),
    ],
)
def test_bad_georef_is_refused_before_anything_is_read(
    georef: Georef, message: str, src_dir: Path, out_dir: Path
):
    src = rasters.ungeoreferenced_png(src_dir / "picture.png")
    steps: list[Step] = []

    with pytest.raises(RasterError, match=message):
        convert(src, out_dir / "result.tif", georef=georef, progress=steps.append)
    assert steps == []
    assert listing(out_dir) == []


def test_target_crs_reprojects_with_an_alpha_band(src_dir: Path, out_dir: Path):
    src = rasters.rgb_byte_tiff(src_dir / "rgb.tif")
    source_info_wgs84 = convert(src, out_dir / "plain.tif").bounds_wgs84
    (out_dir / "plain.tif").unlink()

    cog, info = convert_checked(src, out_dir, target_crs="EPSG:3857")

    assert info.crs == "EPSG:3857"
    assert info.bounds_wgs84 == pytest.approx(source_info_wgs84, abs=1e-3)
    with rasterio.open(cog) as dataset:
        assert dataset.colorinterp[-1] == ColorInterp.alpha
        assert dataset.count == 4 and dataset.overviews(1) == [2, 4]


def test_target_crs_keeps_nodata(src_dir: Path, out_dir: Path):
    src = rasters.float_dem_tiff(src_dir / "dem.tif")

    cog, info = convert_checked(src, out_dir, target_crs="EPSG:3857")

    assert info.crs == "EPSG:3857" and info.nodata == -9999 and info.count == 1
    with rasterio.open(cog) as dataset:
        data = dataset.read(1)
        valid = data[data != -9999]
        assert valid.min() >= 200 and valid.max() <= 2000  # bilinear: no overshoot


def test_target_crs_keeps_palette_classes(src_dir: Path, out_dir: Path):
    src = rasters.palette_tiff(src_dir / "landcover.tif")

    cog, info = convert_checked(src, out_dir, target_crs="EPSG:3857")

    with rasterio.open(cog) as dataset:
        assert dataset.colormap(1)[4] == rasters.PALETTE[4]
        assert set(np.unique(dataset.read(1))) <= set(rasters.PALETTE)


def test_georef_and_target_crs_together(src_dir: Path, out_dir: Path):
    src = rasters.rgba_png(src_dir / "picture.png")

    _, info = convert_checked(src, out_dir, georef=NEAR_TRENTO, target_crs="EPSG:3857")

    assert info.crs == "EPSG:3857" and info.count == 4
    assert info.bounds_wgs84 == pytest.approx([11.0, 46.0, 11.1, 46.1], abs=1e-3)


@pytest.mark.parametrize("target_crs", ["EPSG:999999", "nonsense", ""])
def test_unknown_target_crs_is_refused(target_crs: str, src_dir: Path, out_dir: Path):
    src = rasters.rgb_byte_tiff(src_dir / "rgb.tif")

    with pytest.raises(RasterError, match="target CRS"):
        convert(src, out_dir / "result.tif", target_crs=target_crs)
    assert listing(out_dir) == []


# --- hostile and broken inputs ----------------------------------------------------------

REFUSED = {
    "empty": (rasters.empty_file, "upload.tif", "empty"),
    "text": (rasters.text_file, "upload.tif", "not a raster format tagger can read"),
    "random": (rasters.random_bytes, "upload.tif", "not a raster format tagger can read"),
    "zip": (rasters.zip_file, "upload.zip", "zip archive"),
    "truncated": (rasters.truncated_tiff, "upload.tif", "truncated or corrupt"),
    "truncated_png": (rasters.truncated_png, "upload.png", "truncated or corrupt"),
    "truncated_jpeg": (rasters.truncated_jpeg, "upload.jpg", "truncated or corrupt"),
    "huge": (rasters.huge_header_tiff, "upload.tif", r"1,000,000 x 1,000,000 pixels"),
    "vrt_passwd_as_tif": (
        lambda path: rasters.vrt_referencing(path, "/etc/passwd"),
        "upload.tif",
        "not a raster tagger can read",
    ),
    "vrt_passwd": (
        lambda path: rasters.vrt_referencing(path, "/etc/passwd"),
        "upload.vrt",
        "not a raster tagger can read",
    ),
    "vrt_network": (
        lambda path: rasters.vrt_referencing(path, "/vsicurl/http://127.0.0.1:9/x.tif"),
        "upload.tif",
        "not a raster tagger can read",
    ),
}


@pytest.mark.parametrize("kind", REFUSED)
def test_hostile_or_broken_input_is_refused_cleanly(kind: str, src_dir: Path, out_dir: Path):
    make, name, message = REFUSED[kind]
    src = make(src_dir / name)
    src_hash, src_files = sha256(src), listing(src_dir)
    # Plain images need a georef to get as far as reading their pixels.
    georef = NEAR_TRENTO if name.endswith((".png", ".jpg")) else None

    with pytest.raises(RasterError, match=message) as caught:
        convert(src, out_dir / "result.tif", georef=georef)

    text = str(caught.value)
    assert "root:" not in text and str(src_dir) not in text and str(out_dir) not in text
    # GDAL's own message (paths, maybe file content) is not chained into the traceback either.
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert listing(out_dir) == []
    assert sha256(src) == src_hash and listing(src_dir) == src_files


def test_vrt_pointing_at_a_real_raster_is_still_refused(src_dir: Path, out_dir: Path):
    target = rasters.rgb_byte_tiff(src_dir / "elsewhere.tif")
    src = rasters.vrt_referencing(src_dir / "innocent.tif", str(target))

    with pytest.raises(RasterError):
        convert(src, out_dir / "result.tif")
    assert listing(out_dir) == []


def test_huge_header_fails_fast_stating_size_and_limit(src_dir: Path, out_dir: Path):
    src = rasters.huge_header_tiff(src_dir / "huge.tif")
    started = time.monotonic()

    with pytest.raises(RasterError) as caught:
        convert(src, out_dir / "result.tif")

    assert time.monotonic() - started < 2
    assert "1,000,000 x 1,000,000" in str(caught.value)
    assert "1,000,000,000 pixels" in str(caught.value)


def test_byte_limit_states_size_and_limit(src_dir: Path, out_dir: Path):
    src = rasters.uint16_multiband_tiff(src_dir / "bands.tif")
    limits = Limits(max_uncompressed_bytes=100_000)

    with pytest.raises(RasterError, match=r"468\.8 KiB .* at most 97\.7 KiB"):
        convert(src, out_dir / "result.tif", limits=limits)


def test_limits_apply_to_the_reprojected_size(src_dir: Path, out_dir: Path):
    src = rasters.rgb_byte_tiff(src_dir / "rgb.tif")
    limits = Limits(max_pixels=1100 * 900)

    convert(src, out_dir / "plain.tif", limits=limits)
    with pytest.raises(RasterError, match="pixels"):
        convert(src, out_dir / "warped.tif", limits=limits, target_crs="EPSG:3857")


def test_failed_conversion_leaves_an_existing_dst_alone(src_dir: Path, out_dir: Path):
    src = rasters.truncated_tiff(src_dir / "broken.tif")
    dst = out_dir / "result.tif"
    dst.write_bytes(b"the previous COG")

    with pytest.raises(RasterError):
        convert(src, dst)
    assert dst.read_bytes() == b"the previous COG"
    assert listing(out_dir) == ["result.tif"]


def test_dst_equal_to_src_is_refused(src_dir: Path):
    src = rasters.rgb_byte_tiff(src_dir / "rgb.tif")
    src_hash = sha256(src)

    with pytest.raises(ValueError, match="differ"):
        convert(src, src)
    with pytest.raises(ValueError, match="differ"):
        convert(src, src_dir / "." / "rgb.tif")
    assert sha256(src) == src_hash and listing(src_dir) == ["rgb.tif"]


def test_allowed_drivers_open_no_other_files():
    assert "VRT" not in raster.ALLOWED_DRIVERS
    assert {d for _, _, drivers, _ in raster_source._SIGNATURES for d in drivers} == set(
        raster.ALLOWED_DRIVERS
    )
    assert set(raster.ALLOWED_DRIVERS) <= {
        "GTiff", "JP2OpenJPEG", "PNG", "JPEG", "GIF", "BIGGIF", "BMP", "WEBP"
    }  # fmt: skip


# --- progress and cancellation ----------------------------------------------------------


class CancelSwitch:
    """A should_cancel that records who asked, and when, and answers as told."""

    def __init__(self, answer: Callable[[CancelSwitch], bool]) -> None:
        self.answer = answer
        self.steps: list[Step] = []
        self.calls: list[tuple[list[Step], bool]] = []  # (steps so far, asked while writing)
        self.threads: set[int] = set()

    def progress(self, step: Step) -> None:
        self.steps.append(step)

    def __call__(self) -> bool:
        self.threads.add(threading.get_ident())
        while_writing = any(f.function == "_write_cog" for f in inspect.stack(context=0))
        self.calls.append((list(self.steps), while_writing))
        return self.answer(self)


@pytest.fixture
def poll_every_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ask should_cancel on every read: small test rasters are written in far under 1 s."""
    monkeypatch.setattr(raster_source, "CANCEL_POLL_SECONDS", 0.0)


def test_progress_steps_are_reported_once_each_in_order(src_dir: Path, out_dir: Path):
    switch = CancelSwitch(lambda s: False)

    convert_checked(
        rasters.rgb_byte_tiff(src_dir / "rgb.tif"),
        out_dir,
        progress=switch.progress,
        should_cancel=switch,
    )

    assert switch.steps == [Step.LOAD, Step.ANALYZE, Step.WRITE]


def test_should_cancel_is_asked_sparingly_and_only_on_the_calling_thread(
    src_dir: Path, out_dir: Path
):
    asked_at: list[float] = []
    switch = CancelSwitch(lambda s: asked_at.append(time.monotonic()) or False)

    convert(rasters.rgb_byte_tiff(src_dir / "rgb.tif"), out_dir / "r.tif", should_cancel=switch)

    # Once before starting, then at most every CANCEL_POLL_SECONDS while working (it may hit
    # a database), and once more, whenever that falls, before the result is published.
    poll = raster_source.CANCEL_POLL_SECONDS
    assert 2 <= len(asked_at) <= 2 + (asked_at[-1] - asked_at[0]) / poll
    gaps = [later - earlier for earlier, later in itertools.pairwise(asked_at[:-1])]
    assert all(gap >= poll for gap in gaps)
    assert switch.threads == {threading.get_ident()}


def test_cancel_before_start(src_dir: Path, out_dir: Path):
    switch = CancelSwitch(lambda s: True)

    with pytest.raises(ConversionCancelled):
        convert(
            rasters.rgb_byte_tiff(src_dir / "rgb.tif"),
            out_dir / "result.tif",
            progress=switch.progress,
            should_cancel=switch,
        )
    assert switch.steps == []
    assert listing(out_dir) == []


def test_cancel_before_write(poll_every_read, src_dir: Path, out_dir: Path):
    switch = CancelSwitch(lambda s: Step.ANALYZE in s.steps)

    with pytest.raises(ConversionCancelled):
        convert(
            rasters.rgb_byte_tiff(src_dir / "rgb.tif"),
            out_dir / "result.tif",
            progress=switch.progress,
            should_cancel=switch,
        )
    assert switch.steps == [Step.LOAD, Step.ANALYZE]
    assert listing(out_dir) == []


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"target_crs": "EPSG:3857"}, {"georef": NEAR_TRENTO, "make": rasters.rgba_png}],
    ids=["plain", "reprojected", "georef"],
)
def test_cancel_while_writing_aborts_the_write(
    kwargs: dict, poll_every_read, src_dir: Path, out_dir: Path
):
    make = kwargs.pop("make", rasters.rgb_byte_tiff)
    src = make(src_dir / "upload")
    src_hash = sha256(src)

    def once_writing(switch: CancelSwitch) -> bool:
        # True on the first question asked after WRITE began, never again: only a check
        # inside the write can catch it.
        return Step.WRITE in switch.steps and sum(Step.WRITE in s for s, _ in switch.calls) == 1

    switch = CancelSwitch(once_writing)

    with pytest.raises(ConversionCancelled):
        convert(
            src, out_dir / "result.tif", progress=switch.progress, should_cancel=switch, **kwargs
        )

    steps_then, while_writing = next(call for call in switch.calls if Step.WRITE in call[0])
    assert while_writing, "the write itself noticed the cancel"
    assert switch.threads == {threading.get_ident()}
    assert listing(out_dir) == [], "no partial COG, no .ovr.tmp"
    assert sha256(src) == src_hash


def test_describe_an_existing_cog(src_dir: Path, out_dir: Path):
    cog = out_dir / "dem.tif"
    convert(rasters.float_dem_tiff(src_dir / "dem.tif"), cog)

    info = describe(cog).as_dict()

    assert json.loads(json.dumps(info, allow_nan=False)) == info
    assert info["nodata"] == -9999 and info["dtypes"] == ["float32"]
    assert info["crs"] == "EPSG:32633"


def test_an_error_in_should_cancel_while_writing_is_raised_as_is(
    poll_every_read, src_dir: Path, out_dir: Path
):
    def flaky(switch: CancelSwitch) -> bool:
        if Step.WRITE in switch.steps:
            raise ConnectionError("database went away")
        return False

    switch = CancelSwitch(flaky)

    # Not misreported as a corrupt raster: GDAL only saw a failed read.
    with pytest.raises(ConnectionError, match="database went away"):
        convert(
            rasters.rgb_byte_tiff(src_dir / "rgb.tif"),
            out_dir / "result.tif",
            progress=switch.progress,
            should_cancel=switch,
        )
    assert switch.calls[-1][1], "raised from inside the write"
    assert listing(out_dir) == []


# --- what the source carries that a COG must not: its overviews, its band type ----------------


@pytest.mark.parametrize("bands", [1, 3], ids=["one-band", "rgb"])
@pytest.mark.parametrize("factors", [[4, 2, 8, 16], [1, 2, 4]], ids=["unsorted", "factor-1"])
def test_the_cog_has_its_own_overviews_whatever_the_source_has(
    factors: list[int], bands: int, src_dir: Path, out_dir: Path
):
    # One band: GDAL's COG driver builds the overviews; several: geoconvert.raster.overviews.
    src = rasters.bad_overviews_tiff(src_dir / "bad.tif", factors, bands)
    with rasterio.open(src) as dataset:
        assert dataset.overviews(1) == factors  # the source keeps them as written

    cog, info = convert_checked(src, out_dir)

    assert info.overviews == sorted(info.overviews) and min(info.overviews) >= 2
    with rasterio.open(cog) as dataset:
        for level in range(len(info.overviews)):
            with rasterio.open(cog, overview_level=level) as overview:
                # Computed from the full resolution (all 50), not the source's (all 200).
                assert np.unique(overview.read()).tolist() == [50], level
        assert np.unique(dataset.read()).tolist() == [50]


# --- multi-band overviews, each level from the one above (geoconvert.raster.overviews) ---

LEVEL_BY_LEVEL = {
    "rgb": rasters.rgb_byte_tiff,
    "rgb-nodata-odd-sides": rasters.rgb_nodata_tiff,
    "rgba": rasters.rgba_tiff,
    "uint16-wide": rasters.wide_uint16_tiff,
}


@pytest.fixture
def levels_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources whose overviews ``overviews.with_overviews`` built (it still runs)."""
    built: list[str] = []
    real = raster_overviews.with_overviews

    def recording(dataset, *args, **kwargs):
        built.append(dataset.name)
        return real(dataset, *args, **kwargs)

    monkeypatch.setattr(raster_overviews, "with_overviews", recording)
    return built


@pytest.mark.parametrize("kind", LEVEL_BY_LEVEL)
def test_multiband_overviews_are_built_level_by_level_with_gdals_own_pixels(
    kind: str, levels_built: list[str], src_dir: Path, out_dir: Path, tmp_path: Path
):
    src = LEVEL_BY_LEVEL[kind](src_dir / "upload.tif")

    cog, info = convert_checked(src, out_dir)

    assert len(levels_built) == 1, "this raster's overviews were built here"
    rasters.assert_same_pixels(src, cog)
    # What GDAL's COG driver makes of the same source, each level from full resolution.
    reference = rasters.cog(
        src, tmp_path / "gdal.tif", BLOCKSIZE=512, OVERVIEW_RESAMPLING="AVERAGE"
    )
    with rasterio.open(reference) as gdals:
        assert info.overviews == gdals.overviews(1) and info.overviews
    for level in range(len(info.overviews)):
        with (
            rasterio.open(cog, overview_level=level) as ours,
            rasterio.open(reference, overview_level=level) as gdals,
        ):
            assert ours.shape == gdals.shape, level
            np.testing.assert_array_equal(ours.read(), gdals.read())
            np.testing.assert_array_equal(ours.dataset_mask(), gdals.dataset_mask())


@pytest.mark.parametrize(
    "make",
    [rasters.masked_rgb_tiff, rasters.overview_trap_tiff, rasters.palette_tiff],
    ids=["mask-band", "one-band", "palette"],
)
def test_gdals_cog_driver_builds_the_overviews_it_does_as_well(
    make, levels_built: list[str], src_dir: Path, out_dir: Path
):
    src = make(src_dir / "upload.tif")

    cog, info = convert_checked(src, out_dir)

    assert info.overviews and levels_built == []
    rasters.assert_same_pixels(src, cog)


def test_large_levels_are_compressed_on_disk_and_give_the_same_cog(
    monkeypatch: pytest.MonkeyPatch, levels_built: list[str], src_dir: Path, out_dir: Path
):
    src = rasters.rgb_byte_tiff(src_dir / "rgb.tif")
    plain, _ = convert_checked(src, out_dir)
    plain = plain.rename(src_dir / "plain.tif")
    monkeypatch.setattr(raster_overviews, "UNCOMPRESSED_LEVELS_MAX_BYTES", 0)

    cog, info = convert_checked(src, out_dir)

    assert len(levels_built) == 2 and info.overviews == [2, 4]
    for level in range(len(info.overviews)):
        with (
            rasterio.open(cog, overview_level=level) as compressed,
            rasterio.open(plain, overview_level=level) as uncompressed,
        ):
            np.testing.assert_array_equal(compressed.read(), uncompressed.read())


def test_the_source_is_read_once_for_all_its_overviews(
    monkeypatch: pytest.MonkeyPatch, src_dir: Path, out_dir: Path
):
    src = rasters.large_noise_tiff(src_dir / "noise.tif")
    read: list[int] = []
    real_read = raster_source._CancellableFile.read

    def counting(self, size: int = -1) -> bytes:
        data = real_read(self, size)
        read.append(len(data))
        return data

    monkeypatch.setattr(raster_source._CancellableFile, "read", counting)

    convert_checked(src, out_dir)

    # Once for the first level, once for full resolution; the rest from the levels.
    assert sum(read) <= 2.05 * src.stat().st_size, sum(read) / src.stat().st_size


def test_a_source_that_breaks_while_its_levels_are_built_leaves_nothing(
    levels_built: list[str], src_dir: Path, out_dir: Path
):
    src = rasters.truncated_tiff(src_dir / "cut.tif", size=1200)

    with pytest.raises(RasterError, match="truncated or corrupt"):
        convert(src, out_dir / "result.tif")

    assert len(levels_built) == 1
    assert listing(out_dir) == [], "no partial COG, no level, no VRT"


def test_level_sizes_are_the_cog_drivers():
    assert raster_overviews.level_sizes(10_000, 10_000, 512) == [
        (5000, 5000),
        (2500, 2500),
        (1250, 1250),
        (625, 625),
        (312, 312),
    ]
    assert raster_overviews.level_sizes(1301, 777, 512) == [(650, 388), (325, 194)]
    assert raster_overviews.level_sizes(512, 512, 512) == []
    assert raster_overviews.level_sizes(4000, 3, 512)[-1] == (500, 1)


@pytest.mark.parametrize("gdal_type", list(rasters.COMPLEX_TYPES))
def test_complex_rasters_convert_losslessly_keeping_their_type(
    gdal_type: str, src_dir: Path, out_dir: Path
):
    src = rasters.complex_tiff(src_dir / "slc.tif", gdal_type)

    cog, info = convert_checked(src, out_dir)

    assert rasters.gdal_band_type(cog) == rasters.gdal_band_type(src) == gdal_type
    assert info.overviews == []  # 300 x 200 px: no overview below one 512 px block
    with rasterio.open(src) as a, rasterio.open(cog) as b:
        assert np.array_equal(a.read(), b.read())
        assert b.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"


def test_complex_int16_is_sized_at_four_bytes_a_sample(src_dir: Path, out_dir: Path):
    src = rasters.complex_tiff(src_dir / "slc.tif", "CInt16")

    with pytest.raises(RasterError, match=r"234.4 KiB .* at most 200.0 KiB"):
        convert(src, out_dir / "result.tif", limits=Limits(max_uncompressed_bytes=200 * 1024))
    assert listing(out_dir) == []


def test_a_written_file_that_is_not_a_valid_cog_is_not_kept(
    monkeypatch, src_dir: Path, out_dir: Path
):
    """The validator has the last word: what it finds wrong is named, nothing is left, and an
    existing dst stays as it was. (rio-cogeo's validator stands in for a GDAL that wrote
    something else: the engine's own writes are always valid.)"""
    src = rasters.rgb_byte_tiff(src_dir / "rgb.tif")
    (out_dir / "result.tif").write_bytes(b"the previous COG")
    judged = []

    def invalid(path, **kwargs):
        judged.append(Path(path).name)
        return False, ["Overviews should be sorted"], []

    monkeypatch.setattr("rio_cogeo.cogeo.cog_validate", invalid)

    with pytest.raises(RasterError, match="not a valid Cloud-Optimized GeoTIFF.*Overviews should"):
        convert(src, out_dir / "result.tif")
    assert judged and judged[0].endswith(".partial")
    assert listing(out_dir) == ["result.tif"]
    assert (out_dir / "result.tif").read_bytes() == b"the previous COG"
