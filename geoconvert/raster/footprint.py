"""Where a raster lies on the globe: its bounds in WGS 84, from the samples that project.

A raster's corners need not be on the Earth: a geostationary full disk's lie in space, a polar
grid's beyond its projection's domain, and a global grid's a half pixel past ±90°. So the
bounds are not the corners' but those of a grid of samples over the whole raster (its edges
and interior), keeping the samples that project and refining, between each one that does and
its neighbour that does not, where the Earth ends (the limb of a full disk). A pole inside the
raster takes the bounds to that pole and round every longitude.

Longitudes are the union of the short arcs between neighbouring samples, so a raster that
crosses the antimeridian has ``west > east`` (as RFC 7946 writes such bounds), and one that
goes round the globe ``west = -180, east = 180``.
"""

from __future__ import annotations

import numpy
from pyproj import Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio.crs import CRS

from .options import RasterError

SAMPLES = 129  # per side of the grid: the edges and every interior row and column
BISECTIONS = 30  # halvings of a step between a sample on the Earth and one off it
_TOLERANCE = 1e-6  # degrees

Bounds = tuple[float, float, float, float]


def wgs84_bounds(crs: CRS, bounds: Bounds) -> list[float]:
    """``bounds`` (west, south, east, north in ``crs``) as WGS 84 bounds of what in them is
    on the Earth; RasterError if nothing is."""
    to_wgs84, from_wgs84 = _transformers(crs)
    west, south, east, north = bounds
    xs, ys = numpy.meshgrid(
        numpy.linspace(west, east, SAMPLES), numpy.linspace(north, south, SAMPLES)
    )
    lon, lat = _project(to_wgs84, xs, ys)
    on_earth = numpy.isfinite(lon)
    if not on_earth.any():
        raise RasterError(
            "The raster lies entirely off the globe in its CRS: check the CRS and bounds "
            "(west, south, east, north)."
        )
    # Neighbouring samples, along rows and along columns: (lon, x, y) of each end.
    pairs = [
        ((lon[:, :-1], xs[:, :-1], ys[:, :-1]), (lon[:, 1:], xs[:, 1:], ys[:, 1:])),
        ((lon[:-1], xs[:-1], ys[:-1]), (lon[1:], xs[1:], ys[1:])),
    ]
    arcs_from, arcs_to, limb_lats = [lon[on_earth]], [lon[on_earth]], []
    for a, b in pairs:
        a_in, b_in = numpy.isfinite(a[0]), numpy.isfinite(b[0])
        arcs_from.append(a[0][a_in & b_in])
        arcs_to.append(b[0][a_in & b_in])
        for on, off, keep in ((a, b, a_in & ~b_in), (b, a, b_in & ~a_in)):
            if keep.any():
                limb_lon, limb_lat = _limb(
                    to_wgs84, on[1][keep], on[2][keep], off[1][keep], off[2][keep]
                )
                arcs_from.append(on[0][keep])
                arcs_to.append(limb_lon)
                limb_lats.append(limb_lat)
    lats = numpy.concatenate([lat[on_earth], *limb_lats])
    south_out, north_out = float(lats.min()), float(lats.max())
    lon_west, lon_east = _longitude_span(numpy.concatenate(arcs_from), numpy.concatenate(arcs_to))
    if not crs.is_geographic:  # in a geographic CRS a pole is an edge, never inside
        for pole in (90.0, -90.0):
            if _inside(from_wgs84, pole, bounds):
                lon_west, lon_east = -180.0, 180.0
                north_out, south_out = max(north_out, pole), min(south_out, pole)
    return [lon_west, max(south_out, -90.0), lon_east, min(north_out, 90.0)]


def _transformers(crs: CRS) -> tuple[Transformer, Transformer]:
    try:
        wkt = crs.to_wkt()
        return (
            Transformer.from_crs(wkt, "EPSG:4326", always_xy=True),
            Transformer.from_crs("EPSG:4326", wkt, always_xy=True),
        )
    except (CRSError, ProjError):
        raise RasterError(
            "The raster's CRS cannot be related to longitude and latitude (WGS 84)."
        ) from None


def _project(to_wgs84: Transformer, xs, ys) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Longitudes in [-180, 180] and latitudes of ``xs, ys``; NaN for points off the Earth."""
    lon, lat = to_wgs84.transform(
        numpy.asarray(xs, dtype=float), numpy.asarray(ys, dtype=float), errcheck=False
    )
    lon, lat = numpy.asarray(lon, dtype=float), numpy.asarray(lat, dtype=float)
    off = ~(numpy.isfinite(lon) & numpy.isfinite(lat) & (numpy.abs(lat) <= 90 + _TOLERANCE))
    lon = numpy.where(off, numpy.nan, lon)
    # Kept as they are within the range (a global grid's 180 is its east edge); wrapped past it.
    lon = numpy.where(numpy.abs(lon) > 180, (lon + 180) % 360 - 180, lon)
    return lon, numpy.where(off, numpy.nan, numpy.clip(lat, -90, 90))


def _limb(to_wgs84, x_in, y_in, x_out, y_out) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The last point on the Earth of each step from (x_in, y_in) to (x_out, y_out)."""
    lon, lat = _project(to_wgs84, x_in, y_in)
    for _ in range(BISECTIONS):
        x_mid, y_mid = (x_in + x_out) / 2, (y_in + y_out) / 2
        mid_lon, mid_lat = _project(to_wgs84, x_mid, y_mid)
        on = numpy.isfinite(mid_lon)
        x_in, y_in = numpy.where(on, x_mid, x_in), numpy.where(on, y_mid, y_in)
        x_out, y_out = numpy.where(on, x_out, x_mid), numpy.where(on, y_out, y_mid)
        lon, lat = numpy.where(on, mid_lon, lon), numpy.where(on, mid_lat, lat)
    return lon, lat


def _longitude_span(lon_a: numpy.ndarray, lon_b: numpy.ndarray) -> tuple[float, float]:
    """West and east of the union of the short arcs from each ``lon_a`` to its ``lon_b``."""
    step = (lon_b - lon_a + 180) % 360 - 180
    start = numpy.where(step < 0, lon_b, lon_a)
    start = (start + 180) % 360 - 180  # in [-180, 180)
    end = start + numpy.abs(step)
    # Arcs past 180 go on from -180.
    wraps = end > 180
    starts = numpy.concatenate([start, numpy.full(wraps.sum(), -180.0)])
    ends = numpy.concatenate([numpy.minimum(end, 180.0), end[wraps] - 360])
    order = numpy.argsort(starts, kind="stable")
    starts, ends = starts[order], numpy.maximum.accumulate(ends[order])
    # Gaps between the merged arcs, and the one round the back (from the last end to the
    # first start): the bounds are the circle less the largest.
    gaps = numpy.append(starts[1:] - ends[:-1], starts[0] + 360 - ends[-1])
    widest = int(numpy.argmax(gaps))
    if gaps[widest] <= _TOLERANCE:
        return -180.0, 180.0
    if widest == len(gaps) - 1:
        return float(starts[0]), float(ends[-1])
    return float(starts[widest + 1]), float(ends[widest])


def _inside(from_wgs84: Transformer, latitude: float, bounds: Bounds) -> bool:
    x, y = from_wgs84.transform(0.0, latitude, errcheck=False)
    west, south, east, north = bounds
    return bool(numpy.isfinite(x) and numpy.isfinite(y) and west < x < east and south < y < north)
