"""GDAL's COG driver called directly with the options tagger's engine gives it by default:
``gdal_cog.py SRC DST``, what ``gdal_translate -of COG -co ...`` runs (the image has no GDAL
command-line tools; rasterio's copy is the same GDALCreateCopy call).

The engine's own choices that are not creation options come along, so that the two differ
only in their pipelines: GDAL_CACHEMAX, no PAM sidecar, the temporary overview file left
uncompressed when small enough (geoconvert.raster.plan.temporary_file_config).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rasterio  # noqa: E402
import rasterio.shutil  # noqa: E402

from geoconvert.raster import CogOptions  # noqa: E402


def main(src: str, dst: str) -> None:
    options = CogOptions()
    creation = {
        "COMPRESS": options.compression,
        "LEVEL": options.level or 1,
        "PREDICTOR": "YES" if options.predictor else "NO",
        "BLOCKSIZE": options.blocksize,
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "OVERVIEWS": "IGNORE_EXISTING",
        "NUM_THREADS": options.num_threads,
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.Env(
        GDAL_CACHEMAX=options.cache_mb * 1024**2,
        GDAL_PAM_ENABLED="NO",
        COG_TMP_COMPRESSION="NONE",
    ):
        rasterio.shutil.copy(src, dst, driver="COG", **creation)


if __name__ == "__main__":
    main(*sys.argv[1:])
