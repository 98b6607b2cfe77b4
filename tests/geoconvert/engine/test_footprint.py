"""geoconvert.raster.footprint: WGS 84 bounds of rasters whose corners leave the Earth, and
the conversions that use them (convert's RasterInfo, render's TileJSON facts and tiles)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from geoconvert.raster import RasterError, convert, render
from geoconvert.raster.footprint import wgs84_bounds
from tests import rasters
from tests.geoconvert.engine.test_raster import convert_checked, listing


@pytest.fixture
def src_dir(tmp_path: Path) -> Path:
    (tmp_path / "uploads").mkdir()
    return tmp_path / "uploads"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    (tmp_path / "cogs").mkdir()
    return tmp_path / "cogs"


def assert_on_the_globe(bounds: list[float]) -> None:
    assert len(bounds) == 4 and all(math.isfinite(v) for v in bounds)
    west, south, east, north = bounds
    assert -180 <= west <= 180 and -180 <= east <= 180
    assert -90 <= south < north <= 90


def contains(bounds: list[float], inner: tuple[float, float, float, float]) -> bool:
    """Whether ``bounds`` (west > east across the antimeridian) hold ``inner``."""
    west, south, east, north = bounds
    i_west, i_south, i_east, i_north = inner
    span = (east - west) % 360 or 360
    return (
        south <= i_south
        and i_north <= north
        and (i_west - west) % 360 <= span
        and (i_east - west) % 360 <= span
    )


def test_a_geostationary_full_disk_converts_to_the_disk_it_shows(src_dir: Path, out_dir: Path):
    src = rasters.geostationary_full_disk_tiff(src_dir / "disk.tif")

    cog, info = convert_checked(src, out_dir)

    rasters.assert_same_pixels(src, cog)
    assert_on_the_globe(info.bounds_wgs84)
    # Seen from 35,786 km over 0°E the disk reaches 81.3° from the sub-satellite point.
    assert contains(info.bounds_wgs84, (-81.2, -81.2, 81.2, 81.2))
    assert contains([-81.4, -81.4, 81.4, 81.4], tuple(info.bounds_wgs84))
    disk = rasters.FULL_DISK
    assert info.bounds == pytest.approx([-disk, -disk, disk, disk])


def test_a_polar_grid_with_corners_past_the_horizon_converts(src_dir: Path, out_dir: Path):
    src = rasters.polar_beyond_the_horizon_tiff(src_dir / "arctic.tif")

    _, info = convert_checked(src, out_dir)

    west, south, east, north = info.bounds_wgs84
    # The pole is inside: every longitude, up to 90°N; the horizon is the equator.
    assert (west, east, north) == (-180.0, 180.0, 90.0)
    assert -0.01 <= south <= 0.05


def test_a_grid_across_the_antimeridian_has_west_beyond_east(src_dir: Path, out_dir: Path):
    src = rasters.antimeridian_tiff(src_dir / "fiji.tif")

    _, info = convert_checked(src, out_dir)

    assert_on_the_globe(info.bounds_wgs84)
    west, south, east, north = info.bounds_wgs84
    to_wgs84 = Transformer.from_crs(rasters.PACIFIC_MERCATOR.to_wkt(), "EPSG:4326", always_xy=True)
    (west_lon, east_lon), (south_lat, north_lat) = to_wgs84.transform([2e6, 4e6], [-1e6, 1e6])
    assert west == pytest.approx(west_lon) and west > 160
    assert east == pytest.approx((east_lon + 180) % 360 - 180) and east < -170
    assert (south, north) == pytest.approx((south_lat, north_lat))


def test_a_global_grid_past_the_poles_and_the_antimeridian_is_the_whole_globe(
    src_dir: Path, out_dir: Path
):
    src = rasters.global_edges_tiff(src_dir / "global.tif")

    _, info = convert_checked(src, out_dir)

    assert info.bounds_wgs84 == [-180.0, -90.0, 180.0, 90.0]


def test_a_raster_wholly_off_the_globe_is_refused_and_leaves_nothing(src_dir: Path, out_dir: Path):
    src = rasters.geostationary_space_tiff(src_dir / "space.tif")

    with pytest.raises(RasterError, match="entirely off the globe"):
        convert(src, out_dir / "result.tif")
    assert listing(out_dir) == []


@pytest.mark.parametrize(
    "crs, bounds, expected",
    [
        # A grid from 0° to 360°: the whole globe.
        (CRS.from_epsg(4326), (0, -90, 360, 90), [-180, -90, 180, 90]),
        # Past -180°: the part beyond wraps to the east.
        (CRS.from_epsg(4326), (-200, 0, -170, 10), [160, 0, -170, 10]),
        # Web Mercator's square: its latitudes end at 85.05°.
        (
            CRS.from_epsg(3857),
            (-20037508.34, -20037508.34, 20037508.34, 20037508.34),
            [-180, -85.0511, 180, 85.0511],
        ),
        # The South Pole inside an Antarctic grid.
        (CRS.from_epsg(3031), (-4e6, -4e6, 4e6, 4e6), [-180, -90, 180, -41.03]),
    ],
)
def test_bounds_of_grids_round_the_globe(crs, bounds, expected):
    assert wgs84_bounds(crs, bounds) == pytest.approx(expected, abs=0.01)


def test_bounds_of_an_ordinary_grid_are_its_densified_edges():
    utm = CRS.from_epsg(32632)
    bounds = (600_000, 5_000_000, 700_000, 5_100_000)

    assert wgs84_bounds(utm, bounds) == pytest.approx(
        list(transform_bounds(utm, "EPSG:4326", *bounds, densify_pts=200)), abs=1e-6
    )


def test_tilejson_facts_and_tiles_of_a_full_disk(src_dir: Path, out_dir: Path):
    cog = out_dir / "disk.tif"
    info = convert(rasters.geostationary_full_disk_tiff(src_dir / "disk.tif"), cog)

    facts = render.tile_info(cog)

    assert facts["bounds"] == info.bounds_wgs84
    assert facts["center"][:2] == pytest.approx([0, 0], abs=1e-6)
    # z2 x2 y1 is 0°E-90°E, 0°N-66.5°N: inside the disk, drawn. x0 (180°W-90°W) is not.
    inside = np.asarray(Image.open(io.BytesIO(render.tile_png(cog, 2, 1, 2, statistics=None))))
    assert (inside[..., -1] == 255).mean() > 0.5
    outside = render.tile_png(cog, 0, 1, 2, statistics=None)
    assert outside is None or not np.asarray(Image.open(io.BytesIO(outside)))[..., -1].any()


def test_tilejson_centre_of_a_grid_across_the_antimeridian(src_dir: Path, out_dir: Path):
    cog = out_dir / "fiji.tif"
    info = convert(rasters.antimeridian_tiff(src_dir / "fiji.tif"), cog)

    facts = render.tile_info(cog)

    west, _, east, _ = info.bounds_wgs84
    assert facts["bounds"] == info.bounds_wgs84
    middle = facts["center"][0]
    assert middle == pytest.approx((west + (east + 360 - west) / 2 + 180) % 360 - 180)
    assert middle > west or middle < east  # between them, across 180°
