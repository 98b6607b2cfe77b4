"""Small, deterministic test rasters, written with rasterio into a folder the test owns.

Every generator takes the path to write and returns it, so a test reads
``src = rasters.rgb_byte_tiff(tmp_path / "rgb.tif")``. Content is seeded gradients
plus noise: it compresses like real imagery, and a lost or shifted pixel shows.
No generator leaves a sidecar (.aux.xml) next to its file.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin

__all__ = [
    "antimeridian_tiff",
    "assert_same_pixels",
    "bad_overviews_tiff",
    "cog",
    "complex_tiff",
    "empty_file",
    "float_dem_tiff",
    "float_nan_nodata_tiff",
    "float_nan_tiff",
    "gcps_only_tiff",
    "gdal_band_type",
    "geostationary_full_disk_tiff",
    "geostationary_space_tiff",
    "global_edges_tiff",
    "grey_alpha_tiff",
    "huge_header_tiff",
    "jp2",
    "jp2_supported",
    "jpeg",
    "masked_rgb_tiff",
    "overview_trap_tiff",
    "palette_png",
    "palette_tiff",
    "polar_beyond_the_horizon_tiff",
    "random_bytes",
    "rgb_byte_tiff",
    "rgba_png",
    "rgba_tiff",
    "text_file",
    "truncated_jpeg",
    "truncated_png",
    "truncated_tiff",
    "uint16_multiband_tiff",
    "ungeoreferenced_png",
    "vrt_referencing",
    "wide_uint16_tiff",
    "zip_file",
]

UTM33N = "EPSG:32633"
PALETTE = {
    0: (0, 0, 0, 0),
    1: (34, 139, 34, 255),
    2: (65, 105, 225, 255),
    3: (210, 180, 140, 255),
    4: (220, 20, 60, 255),
    5: (255, 215, 0, 255),
}


def _surface(height: int, width: int, *, seed: int, scale: float = 255.0) -> np.ndarray:
    """Smooth gradient with a ripple and some noise, in [0, scale]."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype("float64")
    wave = np.sin(cols / 37.0 + seed) * np.cos(rows / 23.0)
    base = (rows / max(height - 1, 1) + cols / max(width - 1, 1)) / 2.0
    value = 0.7 * base + 0.2 * (wave + 1) / 2 + 0.1 * rng.random((height, width))
    return np.clip(value, 0.0, 1.0) * scale


def _write(path: Path, data: np.ndarray, **profile) -> Path:
    """Write a (bands, rows, cols) array with no sidecar and no georeferencing warning."""
    count, height, width = data.shape
    colormap = profile.pop("colormap", None)
    descriptions = profile.pop("descriptions", None)
    mask = profile.pop("mask", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(GDAL_PAM_ENABLED="NO", GDAL_TIFF_INTERNAL_MASK="YES"):
            with rasterio.open(
                path, "w", width=width, height=height, count=count, dtype=data.dtype, **profile
            ) as dst:
                dst.write(data)
                if colormap is not None:
                    dst.write_colormap(1, colormap)
                for band, text in enumerate(descriptions or (), start=1):
                    dst.set_band_description(band, text)
                if mask is not None:
                    dst.write_mask(mask)
    return path


def rgb_byte_tiff(path: Path) -> Path:
    """1100x900 RGB uint8 GeoTIFF in UTM 33N: big enough that the COG gets overviews."""
    height, width = 900, 1100
    data = np.stack([_surface(height, width, seed=s) for s in (1, 2, 3)]).astype("uint8")
    return _write(
        path,
        data,
        driver="GTiff",
        crs=UTM33N,
        transform=from_origin(500_000, 5_000_000, 10, 10),
        tiled=True,
        compress="deflate",
        photometric="RGB",
    )


def large_noise_tiff(path: Path, size: int = 2500) -> Path:
    """size x size RGB uint8 noise, uncompressed: noise compresses slowly, so converting it
    takes a few seconds on one thread, long enough to be interrupted mid-write."""
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, (3, size, size), dtype="uint8")
    return _write(
        path,
        data,
        driver="GTiff",
        crs=UTM33N,
        transform=from_origin(500_000, 5_000_000, 1, 1),
        tiled=True,
    )


def rgb_nodata_tiff(path: Path) -> Path:
    """1301x777 RGB uint8 GeoTIFF in UTM 33N, striped, nodata 0 over a hole and a border:
    odd sides, so each overview level's size is rounded down."""
    height, width = 777, 1301
    data = np.stack([_surface(height, width, seed=s) + 1 for s in (40, 41, 42)])
    data = np.clip(data, 1, 255).astype("uint8")
    data[:, 300:420, 500:777] = 0
    data[:, :, :33] = 0
    return _write(
        path,
        data,
        driver="GTiff",
        crs=UTM33N,
        transform=from_origin(450_000, 5_020_000, 2, 2),
        nodata=0,
        photometric="RGB",
    )


def masked_rgb_tiff(path: Path) -> Path:
    """600x500 RGB uint8 GeoTIFF with an internal per-dataset mask (a hole and a border)."""
    height, width = 500, 600
    data = np.stack([_surface(height, width, seed=s) for s in (4, 5, 6)]).astype("uint8")
    mask = np.full((height, width), 255, dtype="uint8")
    mask[:, :40] = 0
    mask[200:260, 300:380] = 0
    return _write(
        path,
        data,
        driver="GTiff",
        crs=UTM33N,
        transform=from_origin(400_000, 5_100_000, 5, 5),
        tiled=True,
        compress="deflate",
        mask=mask,
    )


def uint16_multiband_tiff(path: Path) -> Path:
    """300x200, 4 band uint16 (B, G, R, NIR) in EPSG:4326, nodata 0, striped, band names."""
    height, width = 200, 300
    data = np.stack([_surface(height, width, seed=s, scale=12_000) + 1 for s in (7, 8, 9, 10)])
    data = data.astype("uint16")
    data[:, :10, :10] = 0
    return _write(
        path,
        data,
        driver="GTiff",
        crs="EPSG:4326",
        transform=from_origin(10.0, 50.0, 1e-4, 1e-4),
        nodata=0,
        descriptions=["blue", "green", "red", "nir"],
    )


def float_dem_tiff(path: Path) -> Path:
    """512x400 float32 elevation in UTM 33N with nodata -9999 over a lake and a corner."""
    height, width = 400, 512
    data = (_surface(height, width, seed=11, scale=1800.0) + 200.0).astype("float32")[None]
    data[0, 100:140, 200:260] = -9999
    data[0, -20:, -20:] = -9999
    return _write(
        path,
        data,
        driver="GTiff",
        crs=UTM33N,
        transform=from_origin(450_000, 5_200_000, 30, 30),
        nodata=-9999,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="lzw",
    )


def float_nan_nodata_tiff(path: Path) -> Path:
    """300x260 float64 in EPSG:3857 with NaN as nodata over a stripe."""
    height, width = 260, 300
    data = _surface(height, width, seed=12, scale=1.0)[None]
    data[0, 50:70, :] = np.nan
    return _write(
        path,
        data,
        driver="GTiff",
        crs="EPSG:3857",
        transform=from_origin(1_000_000, 6_000_000, 20, 20),
        nodata=float("nan"),
    )


def _classes(height: int, width: int, *, seed: int) -> np.ndarray:
    return (_surface(height, width, seed=seed, scale=5.999)).astype("uint8")[None]


def palette_tiff(path: Path) -> Path:
    """700x600 paletted uint8 land-cover GeoTIFF (classes 0-5, 0 is nodata) with overviews."""
    height, width = 600, 700
    data = _classes(height, width, seed=13)
    data[0, :30, :30] = 0
    return _write(
        path,
        data,
        driver="GTiff",
        crs="EPSG:4326",
        transform=from_origin(5.0, 45.0, 1e-3, 1e-3),
        nodata=0,
        photometric="palette",
        colormap=PALETTE,
        tiled=True,
    )


def palette_png(path: Path) -> Path:
    """320x240 paletted PNG with no georeferencing (PNG keeps none without sidecars)."""
    return _write(path, _classes(240, 320, seed=14), driver="PNG", colormap=PALETTE)


def ungeoreferenced_png(path: Path) -> Path:
    """256x256 RGB PNG with no georeferencing."""
    data = np.stack([_surface(256, 256, seed=s) for s in (15, 16, 17)]).astype("uint8")
    return _write(path, data, driver="PNG")


def rgba_png(path: Path) -> Path:
    """256x200 RGBA PNG whose alpha hides the left quarter; no georeferencing."""
    data = np.stack([_surface(200, 256, seed=s) for s in (18, 19, 20)] + [np.full((200, 256), 255)])
    data = data.astype("uint8")
    data[3, :, :64] = 0
    return _write(path, data, driver="PNG")


def jpeg(path: Path) -> Path:
    """300x200 RGB JPEG with no georeferencing."""
    data = np.stack([_surface(200, 300, seed=s) for s in (21, 22, 23)]).astype("uint8")
    return _write(path, data, driver="JPEG", QUALITY=90)


def jp2_supported() -> bool:
    with rasterio.Env() as env:
        return "JP2OpenJPEG" in env.drivers()


def jp2(path: Path) -> Path:
    """300x240 lossless RGB JPEG2000 in UTM 33N (georeferenced through its GeoJP2 box)."""
    data = np.stack([_surface(240, 300, seed=s) for s in (24, 25, 26)]).astype("uint8")
    return _write(
        path,
        data,
        driver="JP2OpenJPEG",
        crs=UTM33N,
        transform=from_origin(300_000, 4_900_000, 2, 2),
        QUALITY=100,
        REVERSIBLE=True,
    )


def gcps_only_tiff(path: Path) -> Path:
    """400x300 uint8 GeoTIFF georeferenced only by 4 corner GCPs in EPSG:4326 (slightly rotated)."""
    height, width = 300, 400
    gcps = [
        GroundControlPoint(row=0, col=0, x=10.00, y=46.00),
        GroundControlPoint(row=0, col=width, x=10.40, y=46.02),
        GroundControlPoint(row=height, col=width, x=10.42, y=45.72),
        GroundControlPoint(row=height, col=0, x=10.02, y=45.70),
    ]
    data = _surface(height, width, seed=27).astype("uint8")[None]
    _write(path, data, driver="GTiff")
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "r+") as dst:
        dst.gcps = (gcps, CRS.from_epsg(4326))
    return path


def truncated_tiff(path: Path, size: int = 512) -> Path:
    """A valid size x size RGB uncompressed striped GeoTIFF cut off halfway through its pixels.

    The header and tags are intact, so it opens; reading the lower half fails.
    """
    data = np.stack([_surface(size, size, seed=s) for s in (28, 29, 30)]).astype("uint8")
    _write(
        path,
        data,
        driver="GTiff",
        crs=UTM33N,
        transform=from_origin(500_000, 5_000_000, 1, 1),
        tiled=False,
        blockysize=16,
        interleave="pixel",
    )
    with rasterio.open(path) as src:
        first_row_offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    full = path.read_bytes()
    pixel_bytes = size * size * 3
    assert len(full) >= first_row_offset + pixel_bytes, "pixel data must follow the header"
    path.write_bytes(full[: first_row_offset + pixel_bytes // 2])
    return path


def truncated_png(path: Path) -> Path:
    """An RGB PNG cut off halfway: its header reads, its pixels do not."""
    ungeoreferenced_png(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def truncated_jpeg(path: Path) -> Path:
    """A JPEG cut off halfway (libjpeg only warns, and would pad with grey)."""
    jpeg(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def huge_header_tiff(path: Path) -> Path:
    """A ~500 byte sparse GeoTIFF whose header claims 1,000,000 x 1,000,000 pixels."""
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=1_000_000,
            height=1_000_000,
            count=1,
            dtype="uint8",
            crs="EPSG:4326",
            transform=from_origin(0, 10, 1e-5, 1e-5),
            tiled=False,
            blockysize=1_000_000,
            SPARSE_OK=True,
        ):
            pass
    assert path.stat().st_size < 10_000
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def text_file(path: Path) -> Path:
    path.write_text("name,lon,lat\nsummit,10.5,46.2\nhut,10.4,46.1\n")
    return path


def random_bytes(path: Path, size: int = 64 * 1024) -> Path:
    path.write_bytes(np.random.default_rng(31).bytes(size))
    return path


def zip_file(path: Path) -> Path:
    """A zip archive holding a valid GeoTIFF: archives are refused, not unpacked."""
    buffer = io.BytesIO()
    inner = uint16_multiband_tiff(path.with_name(path.name + ".inner.tif"))
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(inner, "inside.tif")
    inner.unlink()
    path.write_bytes(buffer.getvalue())
    return path


def vrt_referencing(path: Path, target: str) -> Path:
    """A GDAL VRT whose only source is ``target`` (e.g. /etc/passwd or a /vsicurl/ URL).

    Name it ``.tif`` to check that a renamed VRT is refused as well.
    """
    path.write_text(
        f"""<VRTDataset rasterXSize="64" rasterYSize="64">
  <SRS>EPSG:4326</SRS>
  <GeoTransform>0, 1, 0, 0, 0, -1</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="0">{target}</SourceFilename>
      <SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="64" ySize="64"/>
      <DstRect xOff="0" yOff="0" xSize="64" ySize="64"/>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""
    )
    return path


def assert_same_pixels(src: Path, cog: Path) -> None:
    """Full-resolution bands, nodata-aware masks and colour table of ``cog`` equal ``src``'s."""
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(src) as a, rasterio.open(cog) as b:
        assert (a.width, a.height, a.count) == (b.width, b.height, b.count)
        assert a.dtypes == b.dtypes
        np.testing.assert_array_equal(a.read(), b.read())
        np.testing.assert_array_equal(a.dataset_mask(), b.dataset_mask())
        if a.count == 1 and a.colorinterp[0].name == "palette":
            # A TIFF colour table always has 2**bits entries: compare those the source has.
            source_colours, cog_colours = a.colormap(1), b.colormap(1)
            assert {k: cog_colours[k] for k in source_colours} == source_colours


# --- finished COGs, for the readers of a conversion's output (statistics, tiles) ---------


def cog(src: Path, dst: Path, **creation) -> Path:
    """``src`` copied through GDAL's COG driver (256 px blocks unless told, overviews)."""
    import rasterio.shutil  # only these helpers need it

    creation = {"BLOCKSIZE": 256, "COMPRESS": "DEFLATE", **creation}
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        rasterio.shutil.copy(src, dst, driver="COG", **creation)
    return dst


def rgba_tiff(path: Path) -> Path:
    """640x480 RGBA uint8 GeoTIFF in UTM 33N: alpha 0 on the left quarter, 128 on a band
    across the middle, 255 elsewhere."""
    height, width = 480, 640
    colour = [_surface(height, width, seed=s) for s in (32, 33, 34)]
    alpha = np.full((height, width), 255)
    alpha[200:280, :] = 128
    alpha[:, :160] = 0
    return _write(
        path,
        np.stack([*colour, alpha]).astype("uint8"),
        driver="GTiff",
        crs=UTM33N,
        transform=from_origin(520_000, 5_010_000, 4, 4),
        tiled=True,
        photometric="RGB",
        ALPHA="YES",
    )


def grey_alpha_tiff(path: Path) -> Path:
    """400x300 grey + alpha uint8 GeoTIFF in EPSG:4326, alpha 0 on the top 50 rows."""
    height, width = 300, 400
    alpha = np.full((height, width), 255)
    alpha[:50] = 0
    return _write(
        path,
        np.stack([_surface(height, width, seed=35), alpha]).astype("uint8"),
        driver="GTiff",
        crs="EPSG:4326",
        transform=from_origin(7.0, 46.0, 1e-4, 1e-4),
        ALPHA="YES",
    )


def float_nan_tiff(path: Path) -> Path:
    """500x400 float32 in EPSG:3857, no nodata declared: NaN over a block, +-inf in a row."""
    height, width = 400, 500
    data = (_surface(height, width, seed=36, scale=40.0) - 10.0).astype("float32")[None]
    data[0, 120:180, 300:420] = np.nan
    data[0, 350, :100] = np.inf
    data[0, 351, :100] = -np.inf
    return _write(
        path,
        data,
        driver="GTiff",
        crs="EPSG:3857",
        transform=from_origin(1_100_000, 5_900_000, 15, 15),
        tiled=True,
    )


def wide_uint16_tiff(path: Path) -> Path:
    """1800x450, 3 band uint16 in UTM 33N, values ~1000..9000: wide, and more than one
    window of a small read."""
    height, width = 450, 1800
    data = np.stack([_surface(height, width, seed=s, scale=8000) + 1000 for s in (37, 38, 39)])
    return _write(
        path,
        data.astype("uint16"),
        driver="GTiff",
        crs=UTM33N,
        transform=from_origin(600_000, 5_050_000, 10, 10),
        tiled=True,
    )


def overview_trap_tiff(path: Path) -> Path:
    """1024x1024 uint8 GeoTIFF in UTM 33N whose pixels are all 50 but whose overviews (2, 4,
    8, 16) are all 200: a read shows which level it came from. The COG driver keeps
    existing overviews, so ``cog()`` of it is a COG with the same trap."""
    return bad_overviews_tiff(path, [2, 4, 8, 16])


# --- footprints that leave the Earth (geoconvert.raster.footprint) ----------------------------

GEOSTATIONARY = CRS.from_proj4("+proj=geos +h=35785831 +lon_0=0 +sweep=y +ellps=WGS84 +units=m")
# Half the width of the full disk seen from geostationary orbit, in the projection's metres.
FULL_DISK = 5_434_177.81
NORTH_POLE_ORTHO = CRS.from_proj4("+proj=ortho +lat_0=90 +lon_0=0 +R=6371000 +units=m")
PACIFIC_MERCATOR = CRS.from_epsg(3832)  # WGS 84 / PDC Mercator, lon_0 = 150


def _footprint_tiff(path: Path, crs: CRS, bounds: tuple[float, float, float, float]) -> Path:
    size = 400
    west, south, east, north = bounds
    return _write(
        path,
        _surface(size, size, seed=13).astype("uint8")[np.newaxis],
        driver="GTiff",
        crs=crs,
        transform=from_origin(west, north, (east - west) / size, (north - south) / size),
        tiled=True,
    )


def geostationary_full_disk_tiff(path: Path) -> Path:
    """400x400 uint8, the Earth seen from geostationary orbit over 0°E: the corners (and
    everything outside the disk) lie in space."""
    return _footprint_tiff(path, GEOSTATIONARY, (-FULL_DISK, -FULL_DISK, FULL_DISK, FULL_DISK))


def geostationary_space_tiff(path: Path) -> Path:
    """400x400 uint8 in the geostationary projection, wholly beyond the disk's north-east
    limb: nothing in it is on the Earth."""
    return _footprint_tiff(path, GEOSTATIONARY, (4.2e6, 4.2e6, 5.4e6, 5.4e6))


def polar_beyond_the_horizon_tiff(path: Path) -> Path:
    """400x400 uint8 in an orthographic projection over the North Pole, 8,000 km a side from
    the pole: past 6,371 km (the equator, the horizon) its corners are off the Earth."""
    return _footprint_tiff(path, NORTH_POLE_ORTHO, (-8e6, -8e6, 8e6, 8e6))


def antimeridian_tiff(path: Path) -> Path:
    """400x400 uint8 around Fiji in WGS 84 / PDC Mercator (centred on 150°E): 168°E to
    174°W, across the antimeridian."""
    return _footprint_tiff(path, PACIFIC_MERCATOR, (2e6, -1e6, 4e6, 1e6))


def global_edges_tiff(path: Path) -> Path:
    """400x200 uint8 global grid in EPSG:4326 whose outer pixel edges lie half a pixel past
    ±180° and ±90°, as cell-centred global models write them."""
    height, width = 200, 400
    half_lon, half_lat = 360 / (width - 1) / 2, 180 / (height - 1) / 2
    return _write(
        path,
        _surface(height, width, seed=14).astype("uint8")[np.newaxis],
        driver="GTiff",
        crs=CRS.from_epsg(4326),
        transform=from_origin(-180 - half_lon, 90 + half_lat, 2 * half_lon, 2 * half_lat),
    )


# --- sources the COG must not copy (overviews, band types) --------------------------------


def bad_overviews_tiff(path: Path, factors: list[int], bands: int = 1) -> Path:
    """1024x1024 uint8 in UTM 33N, pixels all 50, with its own overviews at ``factors`` (in
    that order, as the file lists them) all 200: a COG that reused them would show it."""
    size = 1024
    _write(
        path,
        np.full((bands, size, size), 200, dtype="uint8"),
        driver="GTiff",
        crs=UTM33N,
        transform=from_origin(500_000, 5_000_000, 10, 10),
        tiled=True,
    )
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "r+") as dst:
        dst.build_overviews(factors, rasterio.enums.Resampling.nearest)
        dst.write(np.full((bands, size, size), 50, dtype="uint8"))  # overviews not rebuilt
    return path


# GDAL's complex band types: (numpy type of one part, bytes of a sample).
COMPLEX_TYPES = {
    "CInt16": ("<i2", 4),
    "CInt32": ("<i4", 8),
    "CFloat32": ("<f4", 8),
    "CFloat64": ("<f8", 16),
}


def complex_tiff(path: Path, gdal_type: str) -> Path:
    """300x200 single-band GeoTIFF of GDAL type ``gdal_type`` (one of COMPLEX_TYPES) in
    EPSG:4326, as SAR single-look complex data comes: seeded real and imaginary parts whose
    magnitudes need the whole type (numpy has no complex integers, so the parts are written
    raw and GDAL copies them through a VRT)."""
    part, sample = COMPLEX_TYPES[gdal_type]
    height, width = 200, 300
    rng = np.random.default_rng(15)
    big = 30_000 if part == "<i2" else 2_000_000_000
    parts = rng.integers(-big, big, size=(height, width, 2)).astype(part)
    raw = path.with_suffix(".raw")
    parts.tofile(raw)
    vrt = path.with_suffix(".vrt")
    vrt.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>EPSG:4326</SRS>'
        "<GeoTransform>10, 0.001, 0, 46, 0, -0.001</GeoTransform>"
        f'<VRTRasterBand dataType="{gdal_type}" band="1" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativetoVRT="0">{raw}</SourceFilename><ImageOffset>0</ImageOffset>'
        f"<PixelOffset>{sample}</PixelOffset><LineOffset>{sample * width}</LineOffset>"
        "<ByteOrder>LSB</ByteOrder></VRTRasterBand></VRTDataset>"
    )
    import rasterio.shutil

    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        rasterio.shutil.copy(vrt, path, driver="GTiff")
    raw.unlink()
    vrt.unlink()
    return path


def gdal_band_type(path: Path) -> str:
    """GDAL's own name of band 1's type (rasterio reads CInt32 as complex64, so its dtypes
    cannot tell): from the VRT that GDAL writes to describe the file."""
    import rasterio.shutil

    vrt = path.with_name(f".{path.name}.type.vrt")
    try:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"):
            rasterio.shutil.copy(path, vrt, driver="VRT")
        return vrt.read_text().split('dataType="', 1)[1].split('"', 1)[0]
    finally:
        vrt.unlink(missing_ok=True)
