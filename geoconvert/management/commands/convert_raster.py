import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from geoconvert import raster
from geoconvert.management.commands._output import EXIT_FAILED, EXIT_USAGE
from geoconvert.models import STAGE_PROGRESS, Stage
from geoconvert.services.engine import STEP_STAGES, cog_options, raster_limits

INTERRUPTED = 130  # what a shell reports for Ctrl-C


class Command(BaseCommand):
    # A conversion of one local file needs no URLconf, admin or model checks: skipping them
    # keeps the command's start-up to Django's own and the engine's imports.
    requires_system_checks = []
    help = (
        "Convert a local raster file to a Cloud-Optimized GeoTIFF, synchronously, with the "
        "engine, options and limits the worker uses (GEOCONVERT_* settings). Shows a progress "
        "bar on a terminal. Exit code 0 on success, 1 when the file cannot be converted, "
        "2 on bad arguments, 130 when interrupted."
    )

    def add_arguments(self, parser):
        parser.add_argument("src", help="the raster to convert")
        parser.add_argument("dst", help="where to write the COG (replaced if it exists)")
        parser.add_argument("--target-crs", help="reproject to this CRS, e.g. EPSG:3857")
        parser.add_argument("--crs", help="CRS of a raster without georeferencing (with --bounds)")
        parser.add_argument(
            "--bounds",
            nargs=4,
            type=float,
            metavar=("W", "S", "E", "N"),
            help="bounds of a raster without georeferencing, in --crs",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="print the result's metadata as JSON",
        )
        parser.add_argument(
            "--progress",
            action="store_true",
            default=None,
            help="draw the progress bar even when stderr is not a terminal",
        )
        parser.add_argument(
            "--no-progress",
            action="store_false",
            dest="progress",
            help="never draw the progress bar",
        )

    def handle(self, *args, src, dst, target_crs, crs, bounds, as_json, progress, **options):
        src_path, dst_path = Path(src), Path(dst)
        if not src_path.is_file():
            raise CommandError(f"{src} is not a file.", returncode=EXIT_USAGE)
        if not dst_path.parent.is_dir():
            raise CommandError(f"{dst_path.parent} is not a directory.", returncode=EXIT_USAGE)
        if bool(crs) != bool(bounds):
            raise CommandError("--crs and --bounds go together.", returncode=EXIT_USAGE)
        georef = raster.Georef(crs=crs, bounds=tuple(bounds)) if crs else None
        show = self.stderr.isatty() if progress is None else progress
        bar = _ProgressBar(self.stderr) if show else None

        started = time.monotonic()
        try:
            info = raster.convert(
                src_path,
                dst_path,
                target_crs=target_crs,
                georef=georef,
                options=cog_options(),
                limits=raster_limits(),
                progress=(lambda step: bar.show(STEP_STAGES[step])) if bar else None,
            )
        except raster.RasterError as exc:
            if bar:
                bar.end()
            raise CommandError(str(exc), returncode=EXIT_FAILED) from None
        except KeyboardInterrupt:
            if bar:
                bar.end()
            raise CommandError(
                "Interrupted; nothing was written.", returncode=INTERRUPTED
            ) from None
        seconds = time.monotonic() - started
        if bar:
            bar.show(Stage.COMPLETE)
            bar.end()

        if as_json:
            self.stdout.write(
                json.dumps({**info.as_dict(), "seconds": round(seconds, 3)}, indent=2)
            )
            return
        self.stdout.write(
            f"Wrote {dst_path} in {seconds:.2f}s: {info.width}x{info.height} px, "
            f"{info.count} band(s) {', '.join(sorted(set(info.dtypes)))}, "
            f"{info.size_bytes} bytes, {info.compression or 'uncompressed'}, "
            f"overviews {info.overviews or 'none'}, CRS {info.crs or 'none'}"
        )


class _ProgressBar:
    """One line, redrawn in place: [#######.............]  40% Creating georeferenced file"""

    WIDTH = 30

    def __init__(self, out):
        self.out = out

    def show(self, stage: Stage) -> None:
        percent = STAGE_PROGRESS[stage]
        filled = self.WIDTH * percent // 100
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.out.write(f"\r[{bar}] {percent:3d}% {stage.value:<30}", ending="")
        self.out.flush()

    def end(self) -> None:
        self.out.write("")
