"""Tiles, thumbnails and tile_info() of a finished COG, through rio-tiler.

Engine only: plain rasterio and rio-tiler, no Django, no database.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
import rio_tiler.reader
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.warp import calculate_default_transform, transform_bounds
from rio_tiler.io import Reader

from geoconvert.raster import RasterError, convert, render
from geoconvert.raster.render import thumbnail_png, tile_info, tile_png
from geoconvert.raster.statistics import UnsupportedDataType, raster_statistics
from tests import rasters

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")

SOURCES = {
    "rgb": rasters.rgb_byte_tiff,
    "uint16": rasters.uint16_multiband_tiff,
    "wide": rasters.wide_uint16_tiff,
    "palette": rasters.palette_tiff,
    "rgba": rasters.rgba_tiff,
    "grey_alpha": rasters.grey_alpha_tiff,
    "nan": rasters.float_nan_tiff,
    "dem": rasters.float_dem_tiff,
    "trap": rasters.overview_trap_tiff,
}


@pytest.fixture(scope="module")
def cogs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("render")
    return {
        name: rasters.cog(make(folder / f"{name}.tif"), folder / f"{name}.cog.tif")
        for name, make in SOURCES.items()
    }


@pytest.fixture(scope="module")
def stats(cogs) -> dict[str, dict]:
    return {name: raster_statistics(cogs[name]) for name in ("uint16", "wide", "nan", "dem")}


def decode(png: bytes) -> np.ndarray:
    """(bands, rows, cols) of a PNG; its last band is alpha."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeferencing
        with MemoryFile(png) as memory, memory.open() as image:
            assert image.driver == "PNG"
            return image.read()


def centre_tile(cog: Path, zoom: int) -> morecantile.Tile:
    lon, lat, _ = tile_info(cog)["center"]
    return WEB_MERCATOR.tile(lon, lat, zoom)


def p2_p98(statistics: dict, bands) -> list[tuple[float, float]]:
    by_band = {b["band"]: b for b in statistics["bands"]}
    return [(by_band[i]["percentile_2"], by_band[i]["percentile_98"]) for i in bands]


# --- thumbnails ------------------------------------------------------------------------


def test_thumbnail_of_a_wide_raster_keeps_its_aspect_within_max_size(cogs, stats):
    image = decode(thumbnail_png(cogs["wide"], statistics=stats["wide"]))

    bands, height, width = image.shape
    assert bands == 4  # RGB + alpha
    assert width == 512 and height <= 512
    assert width / height == pytest.approx(1800 / 450, rel=0.02)
    smaller = decode(thumbnail_png(cogs["wide"], statistics=stats["wide"], max_size=200))
    assert smaller.shape[1:] == (50, 200)


def test_thumbnail_of_uint16_is_stretched_to_the_byte_range(cogs, stats):
    for statistics in (stats["wide"], None):  # from the percentiles, or the pixels' min/max
        image = decode(thumbnail_png(cogs["wide"], statistics=statistics))

        for band in image[:3]:
            assert band.min() <= 5 and band.max() >= 250
        assert (image[3] == 255).all()


def test_thumbnail_nodata_is_transparent(cogs, stats):
    image = decode(thumbnail_png(cogs["uint16"], statistics=stats["uint16"]))

    assert image.shape == (4, 200, 300), "smaller than max_size: read at full size"
    alpha = image[3]
    assert (alpha[:10, :10] == 0).all(), "nodata 0 in the corner"
    assert (alpha[10:, :] == 255).all() and (alpha[:, 10:] == 255).all()


def test_thumbnail_nan_and_inf_are_transparent(cogs, stats):
    grey, alpha = decode(thumbnail_png(cogs["nan"], statistics=stats["nan"]))

    assert (alpha[120:180, 300:420] == 0).all()
    assert (alpha[350:352, :100] == 0).all()
    assert alpha.sum() == 255 * (500 * 400 - 60 * 120 - 2 * 100)
    assert grey[alpha > 0].min() <= 5 and grey[alpha > 0].max() >= 250


def test_thumbnail_of_a_palette_keeps_its_colours(cogs):
    image = decode(thumbnail_png(cogs["palette"], statistics=None))

    assert image.shape[0] == 4
    rgba = {tuple(int(v) for v in pixel) for pixel in image.reshape(4, -1).T}
    shown = {colour for colour in rgba if colour[3] > 0}
    assert shown <= {colour for code, colour in rasters.PALETTE.items() if code != 0}
    assert len(shown) == 5, "every class is drawn"
    assert (image[3, :10, :10] == 0).all(), "class 0 (nodata, palette alpha 0) is transparent"


def test_thumbnail_of_rgba_uses_the_alpha_band_as_alpha(cogs):
    image = decode(thumbnail_png(cogs["rgba"], statistics=None, max_size=640))

    with rasterio.open(cogs["rgba"]) as dataset:
        colour, alpha = dataset.read([1, 2, 3]), dataset.read(4)
    assert image.shape == (4, 480, 640), "RGB + alpha, alpha never a colour band"
    np.testing.assert_array_equal(image[3], alpha)  # partial alpha (128) kept
    visible = alpha > 0
    np.testing.assert_array_equal(image[:3][:, visible], colour[:, visible])


def test_thumbnail_of_grey_and_alpha_is_grey_with_alpha(cogs):
    image = decode(thumbnail_png(cogs["grey_alpha"], statistics=None))

    with rasterio.open(cogs["grey_alpha"]) as dataset:
        grey, alpha = dataset.read()
    assert image.shape == (2, 300, 400)
    np.testing.assert_array_equal(image[1], alpha)
    np.testing.assert_array_equal(image[0][alpha > 0], grey[alpha > 0])


def test_thumbnail_reads_the_overviews(cogs):
    grey, _ = decode(thumbnail_png(cogs["trap"], statistics=None, max_size=256))

    assert (grey == 200).all(), "the overview's value, not the full resolution's 50"


# --- tiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("tilesize", [256, 512])
def test_tile_equals_a_direct_rio_tiler_read_with_the_same_stretch(cogs, stats, tilesize):
    cog, statistics = cogs["uint16"], stats["uint16"]
    tile = centre_tile(cog, tile_info(cog)["maxzoom"])

    image = decode(tile_png(cog, *tile, statistics=statistics, tilesize=tilesize))

    with Reader(str(cog)) as reader:
        expected = reader.tile(*tile, tilesize=tilesize, indexes=(1, 2, 3))
    expected.rescale(in_range=p2_p98(statistics, (1, 2, 3)))
    assert image.shape == (4, tilesize, tilesize)
    np.testing.assert_array_equal(image[3], expected.mask)
    assert (image[3] == 0).any() and (image[3] == 255).any(), "the tile holds the nodata corner"
    visible = image[3] > 0
    np.testing.assert_array_equal(image[:3][:, visible], expected.data[:, visible])


def test_byte_tiles_are_not_stretched(cogs):
    cog = cogs["rgb"]
    tile = centre_tile(cog, tile_info(cog)["maxzoom"])

    image = decode(tile_png(cog, *tile, statistics=None))

    with Reader(str(cog)) as reader:
        expected = reader.tile(*tile)
    assert image.shape == (4, 256, 256)
    np.testing.assert_array_equal(image[:3], expected.data)
    np.testing.assert_array_equal(image[3], expected.mask)


def test_float_tile_is_stretched_from_the_percentiles(cogs, stats):
    cog, statistics = cogs["dem"], stats["dem"]
    tile = centre_tile(cog, tile_info(cog)["maxzoom"])

    grey, alpha = decode(tile_png(cog, *tile, statistics=statistics))

    with Reader(str(cog)) as reader:
        expected = reader.tile(*tile)
    expected.rescale(in_range=p2_p98(statistics, (1,)))
    np.testing.assert_array_equal(alpha, expected.mask)
    np.testing.assert_array_equal(grey[alpha > 0], expected.data[0][alpha > 0])


def test_tiles_outside_the_raster_are_none_without_reading_pixels(
    monkeypatch: pytest.MonkeyPatch, cogs
):
    cog = cogs["uint16"]
    inside = centre_tile(cog, 12)

    with monkeypatch.context() as patched:
        for name in ("part", "read"):
            patched.setattr(rio_tiler.reader, name, lambda *a, **k: pytest.fail("pixels read"))
        assert tile_png(cog, inside.x + 5, inside.y, 12, statistics=None) is None
    assert tile_png(cog, inside.x + 5, inside.y, 12, statistics=None) is None
    assert tile_png(cog, 0, 0, 3, statistics=None) is None
    assert tile_png(cog, -1, 0, 3, statistics=None) is None, "no such tile"
    assert tile_png(cog, 8, 0, 3, statistics=None) is None, "no such tile"
    assert tile_png(cog, 0, 0, 99, statistics=None) is None, "no such zoom"
    assert tile_png(cog, *inside, statistics=None) is not None


def test_low_zoom_tiles_read_an_overview_not_the_full_resolution(cogs):
    cog = cogs["trap"]  # full resolution 50, overviews 200
    info = tile_info(cog)

    low = decode(tile_png(cog, *centre_tile(cog, info["minzoom"]), statistics=None))
    full = decode(tile_png(cog, *centre_tile(cog, info["maxzoom"] + 1), statistics=None))

    assert set(np.unique(low[0][low[1] > 0])) == {200}
    assert set(np.unique(full[0][full[1] > 0])) == {50}


@pytest.mark.parametrize("name", ["rgb", "uint16", "palette", "rgba", "grey_alpha", "nan"])
@pytest.mark.parametrize("tilesize", [256, 512])
def test_overview_zoom_tiles_look_like_rio_tilers_own(cogs, stats, name, tilesize):
    """Read from the overview alone, a tile's pixels may move by a fraction of a pixel against
    rio-tiler's read through the full resolution (nearest neighbour from another grid); what
    is drawn, and where it is transparent, stays the same."""
    cog = cogs[name]
    info = tile_info(cog)
    for zoom in range(info["minzoom"], info["maxzoom"]):
        tile = centre_tile(cog, zoom)
        statistics = stats.get(name)
        ours = decode(tile_png(cog, *tile, statistics=statistics, tilesize=tilesize))
        render.OVERVIEW_OVERSAMPLING, kept = 0, render.OVERVIEW_OVERSAMPLING
        try:
            theirs = decode(tile_png(cog, *tile, statistics=statistics, tilesize=tilesize))
        finally:
            render.OVERVIEW_OVERSAMPLING = kept
        assert ours.shape == theirs.shape
        alpha_agrees = (ours[-1] == theirs[-1]).mean()
        assert alpha_agrees > 0.97, (zoom, alpha_agrees)
        both = (ours[-1] > 0) & (theirs[-1] > 0)
        difference = np.abs(ours[:-1].astype(int) - theirs[:-1].astype(int))[:, both]
        assert np.median(difference) <= 8, (zoom, np.median(difference))


@pytest.mark.parametrize("name", ["rgb", "palette", "grey_alpha", "uint16", "nan"])
def test_tile_pngs_hold_what_gdals_png_driver_would_write(cogs, stats, name, monkeypatch):
    cog = cogs[name]
    tile = centre_tile(cog, tile_info(cog)["maxzoom"] - 1)
    ours = tile_png(cog, *tile, statistics=stats.get(name))

    monkeypatch.setattr(
        render, "_encode_png", lambda image: image.render(img_format="PNG", ZLEVEL=1)
    )
    gdals = tile_png(cog, *tile, statistics=stats.get(name))

    np.testing.assert_array_equal(decode(ours), decode(gdals))


# --- the open COGs kept between tiles --------------------------------------------------


def test_a_tile_from_a_kept_cog_is_the_same_png(cogs, monkeypatch: pytest.MonkeyPatch):
    cog = cogs["rgb"]
    tile = centre_tile(cog, tile_info(cog)["maxzoom"] - 1)
    render.DATASETS.clear()
    first = tile_png(cog, *tile, statistics=None)

    monkeypatch.setattr(
        render, "open_cog", lambda *a, **k: pytest.fail("opened again instead of kept")
    )
    assert tile_png(cog, *tile, statistics=None) == first
    assert len(render.DATASETS) == 1


def test_a_replaced_file_is_read_afresh(tmp_path: Path):
    path = tmp_path / "item.tif"
    bright = rasters.cog(rasters.rgb_byte_tiff(tmp_path / "rgb.tif"), tmp_path / "bright.tif")
    trap = rasters.cog(rasters.overview_trap_tiff(tmp_path / "trap.tif"), tmp_path / "trap.cog")
    path.write_bytes(bright.read_bytes())
    tile = centre_tile(path, tile_info(path)["maxzoom"])
    before = decode(tile_png(path, *tile, statistics=None))

    trap.replace(path)  # a new file under the same name: a new inode, size, mtime
    tile = centre_tile(path, tile_info(path)["maxzoom"] + 1)
    after = decode(tile_png(path, *tile, statistics=None))

    assert before.shape[0] == 4 and after.shape[0] == 2, "RGB before, grey after"
    assert set(np.unique(after[0][after[1] > 0])) == {50}


def test_a_version_names_the_content_without_a_stat(cogs):
    cog = cogs["uint16"]
    tile = centre_tile(cog, tile_info(cog)["maxzoom"])
    render.DATASETS.clear()

    one = tile_png(cog, *tile, statistics=None, version="hash-1")
    two = tile_png(cog, *tile, statistics=None, version="hash-2")

    assert one == two
    assert len(render.DATASETS) == 1, "hash-1's dataset was closed when hash-2 came"


def test_the_kept_cogs_are_bounded(cogs, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(render.DATASETS, "max_idle", 2)
    render.DATASETS.clear()
    for name in ("rgb", "uint16", "palette", "dem"):
        tile_png(cogs[name], *centre_tile(cogs[name], 12), statistics=None)
    assert len(render.DATASETS) == 2


# --- tile_info -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rgb", "uint16", "palette", "nan"])
def test_tile_info_bounds_and_zooms(cogs, name):
    cog = cogs[name]

    info = tile_info(cog)

    with rasterio.open(cog) as dataset:
        bounds = transform_bounds(dataset.crs, "EPSG:4326", *dataset.bounds, densify_pts=21)
        affine, _, _ = calculate_default_transform(
            dataset.crs, "EPSG:3857", dataset.width, dataset.height, *dataset.bounds
        )
    assert info["bounds"] == pytest.approx(list(bounds), abs=1e-9)
    west, south, east, north = info["bounds"]
    lon, lat, zoom = info["center"]
    assert west < lon < east and south < lat < north
    assert 0 <= info["minzoom"] <= zoom <= info["maxzoom"] <= 24
    # maxzoom's resolution is the one nearest the raster's own, in Web Mercator metres.
    resolution = max(abs(affine.a), abs(affine.e))
    at_maxzoom = WEB_MERCATOR.matrix(info["maxzoom"]).cellSize
    assert resolution / 2 < at_maxzoom < resolution * 2
    # minzoom shows the whole raster in a tile or two.
    extent = max(east - west, north - south)
    assert extent <= 2 * 360 / 2 ** info["minzoom"]
    assert isinstance(info["minzoom"], int) and isinstance(info["maxzoom"], int)
    assert all(math.isfinite(v) for v in info["bounds"] + info["center"])


# --- what cannot be read ---------------------------------------------------------------


def test_unreadable_files_raise_raster_errors(tmp_path: Path):
    text = rasters.text_file(tmp_path / "notes.tif")
    for call in (
        lambda p: thumbnail_png(p, statistics=None),
        lambda p: tile_png(p, 0, 0, 0, statistics=None),
        tile_info,
    ):
        with pytest.raises(RasterError, match="cannot be read"):
            call(text)
        with pytest.raises(RasterError, match="cannot be read"):
            call(tmp_path / "missing.tif")


# --- partly transparent alpha bands ----------------------------------------------------


def alpha_tiff(path: Path, colour: np.ndarray, **profile) -> Path:
    """64x64 GeoTIFF of ``colour`` bands plus an alpha band: 0 on the left 16 columns, 128 on
    the next 16, 255 beyond."""
    opaque = np.iinfo(colour.dtype).max
    alpha = np.full((64, 64), opaque, dtype=colour.dtype)
    alpha[:, 16:32] = 128 * (opaque // 255)  # 128 once scaled to 0..255
    alpha[:, :16] = 0
    colormap = profile.pop("colormap", None)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=64,
            height=64,
            count=len(colour) + 1,
            dtype=colour.dtype,
            crs="EPSG:4326",
            transform=rasterio.transform.from_origin(9.0, 45.0, 1e-4, 1e-4),
            ALPHA="YES",
            **profile,
        ) as dst:
            dst.write(np.concatenate([colour, alpha[None]]))
            if colormap:
                dst.write_colormap(1, colormap)
    return path


def test_partly_transparent_palette_pixels_keep_colour_and_alpha(tmp_path: Path):
    codes = np.full((1, 64, 64), 2, dtype="uint8")
    tiff = alpha_tiff(tmp_path / "p.tif", codes, photometric="palette", colormap=rasters.PALETTE)

    red, green, blue, alpha = decode(thumbnail_png(tiff, statistics=None))

    assert (alpha[:, :16] == 0).all() and (alpha[:, 16:32] == 128).all()
    assert (alpha[:, 32:] == 255).all()
    shown = np.unique(np.stack([red, green, blue])[:, alpha > 0], axis=1)
    assert shown.T.tolist() == [list(rasters.PALETTE[2][:3])]


def test_partly_transparent_uint16_pixels_are_stretched_like_the_rest(tmp_path: Path):
    ramp = np.tile(np.linspace(1000, 5000, 64, dtype="uint16"), (3, 64, 1))
    tiff = alpha_tiff(tmp_path / "u.tif", ramp, photometric="RGB")
    stats = raster_statistics(tiff)

    image = decode(thumbnail_png(tiff, statistics=stats))

    assert (image[3][:, :16] == 0).all() and (image[3][:, 16:32] == 128).all()
    with Reader(str(tiff)) as reader:
        expected = reader.read(indexes=(1, 2, 3))
    expected.array.mask = False  # stretched everywhere, to compare the partly transparent
    expected.rescale(in_range=p2_p98(stats, (1, 2, 3)))
    np.testing.assert_array_equal(image[:3][:, :, 16:], expected.data[:, :, 16:])
    assert (image[:3][:, :, 17:32] > 0).all(), "not blackened (column 16 is the 2nd percentile)"


@pytest.mark.parametrize("gdal_type", ["CInt16", "CFloat64"])
def test_complex_rasters_are_refused_with_a_message(gdal_type: str, tmp_path: Path):
    cog = tmp_path / "slc.cog.tif"
    convert(rasters.complex_tiff(tmp_path / "slc.tif", gdal_type), cog)

    for draw in (
        lambda: tile_png(cog, 0, 0, 0, statistics=None),
        lambda: thumbnail_png(cog, statistics=None),
    ):
        with pytest.raises(UnsupportedDataType, match="complex numbers"):
            draw()
