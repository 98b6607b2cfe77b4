"""CPU per tile of geoconvert.raster.render.tile_png, in this process, against an older commit's.

    .venv/bin/python -m bench.tiles_cpu COG [--before 48b966f] [--tiles 30]

Three variants take turns tile by tile, each on its own random tile of every zoom between the
TileJSON's minzoom and maxzoom (so no variant reads blocks another just cached): the render of
``--before`` (its render.py loaded beside this one), this one with its pool of open COGs and
its overview reads off, and this one as it ships. Medians of ``time.process_time()`` per zoom,
then their mean weighted by the tiles per zoom (what bench/tiles.py's cold set asks for).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import morecantile

from bench.stack import ROOT
from geoconvert.raster import render

TMS = morecantile.tms.get("WebMercatorQuad")


def load_render(commit: str):
    source = subprocess.run(
        ["git", "show", f"{commit}:geoconvert/raster/render.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # Its relative imports become absolute: the rest of the engine is this checkout's.
    source = source.replace("from .", "from geoconvert.raster.")
    path = Path(tempfile.mkdtemp()) / "render_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("render_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cog", type=Path)
    parser.add_argument("--before", default="48b966f")
    parser.add_argument("--tiles", type=int, default=30, help="per zoom and variant")
    args = parser.parse_args()
    path, before = str(args.cog), load_render(args.before)

    def switched_off(x, y, z):
        kept = render.OVERVIEW_OVERSAMPLING, render.DATASETS.max_idle
        render.OVERVIEW_OVERSAMPLING, render.DATASETS.max_idle = 0, 0
        try:
            return render.tile_png(path, x, y, z, statistics=None)
        finally:
            render.OVERVIEW_OVERSAMPLING, render.DATASETS.max_idle = kept

    variants = {
        f"before ({args.before})": lambda x, y, z: before.tile_png(path, x, y, z, statistics=None),
        "pool and overview reads off": switched_off,
        "after": lambda x, y, z: render.tile_png(path, x, y, z, statistics=None),
    }
    info = render.tile_info(path)
    zooms = range(info["minzoom"], info["maxzoom"] + 1)
    tiles = {z: list(TMS.tiles(*info["bounds"], zooms=[z])) for z in zooms}
    rng = random.Random(11)
    for tile in rng.sample(tiles[zooms[-1]], 10):  # the page cache, imports
        for draw in variants.values():
            draw(tile.x, tile.y, tile.z)
    print("| zoom | " + " | ".join(variants) + " |")
    print("|---:|" + "---:|" * len(variants))
    medians = {}
    for z in zooms:
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.tiles):
            for name, draw in variants.items():
                tile = rng.choice(tiles[z])
                started = time.process_time()
                draw(tile.x, tile.y, tile.z)
                times[name].append((time.process_time() - started) * 1000)
        medians[z] = {name: statistics.median(values) for name, values in times.items()}
        print(f"| {z} | " + " | ".join(f"{medians[z][n]:.1f}" for n in variants) + " |", flush=True)
    total = sum(len(tiles[z]) for z in zooms)
    weighted = [sum(medians[z][n] * len(tiles[z]) for z in zooms) / total for n in variants]
    print("| weighted by the tiles per zoom | " + " | ".join(f"{w:.1f}" for w in weighted) + " |")


if __name__ == "__main__":
    main()
