"""GDAL's COG driver called directly with the options tagger's engine gives it by default:
``gdal_cog.py SRC DST``, what ``gdal_translate -of COG -co ...`` runs (the image has no GDAL
command-line tools; rasterio's copy is the same GDALCreateCopy call).

The creation options and the temporary-file setting are the engine's own
(geoconvert.raster.plan), with its GDAL cache and no PAM sidecar, so that the two differ only
in what the engine adds around the driver: its source opener, progress, footprint and
validation.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rasterio  # noqa: E402
import rasterio.shutil  # noqa: E402

from geoconvert.raster import CogOptions  # noqa: E402
from geoconvert.raster.plan import Plan, creation_options, temporary_file_config  # noqa: E402


def main(src: str, dst: str) -> None:
    options = CogOptions()
    with rasterio.Env(GDAL_CACHEMAX=options.cache_mb * 1024**2, GDAL_PAM_ENABLED="NO"):
        with rasterio.open(src) as dataset:
            plan = Plan(dataset, None, dataset.width, dataset.height)
            creation = creation_options(plan, options)
            with rasterio.Env(**temporary_file_config(plan, dataset.dtypes)):
                rasterio.shutil.copy(dataset, dst, driver="COG", **creation)


if __name__ == "__main__":
    main(*sys.argv[1:])
