"""Map tiles and remote reads of a COG, behind nginx as production serves them.

    .venv/bin/python -m bench.tiles                         # everything, about 4 minutes
    .venv/bin/python -m bench.tiles --seconds 5 --repeats 1 --remote-runs 2   # a quick look
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/tagger_bench_tiles \\
        .venv/bin/python -m bench.tiles                     # PostgreSQL, as production

The stack is bench/stack.py's (its own Redis, database, media folder and port; gunicorn with
``config.settings.production``, BENCH_GUNICORN_WORKERS sync workers as docker/Dockerfile; one
Celery worker), always with nginx in front, configured with docker/nginx.conf's ``/``,
``/_protected/`` and tile locations and its tile cache (``proxy_cache_path``, the cache
folder under the stack's own): downloads are sent by nginx after X-Accel-Redirect, as
TAGGER_ACCEL_REDIRECT_PREFIX=/_protected/ asks, and tiles are kept by nginx for
TAGGER_TILE_PROXY_CACHE_SECONDS=60, as the production overlay sets it. The rgb-10000 input
(bench/inputs.py) is uploaded and converted through the stack; then, on that COG:

1. tiles, with wrk (2 threads, --connections, --seconds per run; the rounds repeated
   --repeats times, the connection counts taking turns): ``warm``, two tiles per zoom asked
   again and again, each asked once just before the run so that nginx's cache holds them;
   ``304``, the same with If-None-Match and the tile's ETag (nginx's cache answers);
   ``uncached``, the same tiles, but every request's URL made unique by a query string
   Django ignores, so that nginx's cache cannot answer and Django renders every one (the
   path before the cache, measured in the same run); ``cold``, every request a tile not
   asked for before, from every zoom between the TileJSON's minzoom and maxzoom, the COG's
   pages dropped from the page cache at the start (posix_fadvise, this file only);
   ``cold-disk``, the same with the pages dropped every 0.1 s meanwhile. nginx's access log
   gives each request's $upstream_cache_status (the share of HITs) and, per zoom, its
   $request_time; gunicorn's log the app's own time (without the wait for a free worker);
2. per zoom, in this process: which overview a tile reads, how many blocks and bytes, where
   a render's time goes (cProfile), and rio-tiler's read against the same read from the
   dataset opened at that overview alone;
3. remote reads: GDAL's /vsicurl/ opening the COG and reading one 512 x 512 window at full
   resolution and one of an overview, in fresh processes, through tests/http.py's
   CountingProxy in front of nginx; with the token header (GDAL_HTTP_HEADERS) and through a
   signed link.

Results go to bench/results/tiles.md and tiles.json; docs/performance.md explains them.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import warnings
from pathlib import Path

import morecantile
import rasterio
from numpy.ma import getmaskarray
from rasterio.windows import Window

from bench import inputs, stack
from bench.convert import BENCH_DIR, PYTHON
from bench.stack import GUNICORN_THREADS, GUNICORN_WORKERS, ROOT, Stack
from tests.http import conf_block, conf_directive

NGINX_CONF = ROOT / "docker" / "nginx.conf"
WRK_THREADS = 2
WARM_TILES_PER_ZOOM = 2
UNCACHED_ROUNDS = 200  # the uncached set: the warm tiles this many times, each URL its own
WINDOW = 512  # the remote reads' window, pixels a side
REMOTE_OVERVIEW = 2  # the overview level of the second window (0 is the first overview)
TMS = morecantile.tms.get("WebMercatorQuad")
# The sets of tiles each round asks for (its order turns from one round to the next).
KINDS = ("warm", "304", "uncached", "cold", "cold-disk")
# Asked again before each warm and 304 run: nginx's cache holds them throughout the run.
CACHED_KINDS = ("warm", "304")
TILE_LOCATION = "location ~ ^/api/v1/tree-items/[^/]+/tiles/ {"
CACHE_PATH = "/var/cache/nginx/tagger-tiles"
# The production overlay's (docker/docker-compose.prod.yml)
TILE_PROXY_CACHE_SECONDS = 60
COLD_KINDS = ("cold", "cold-disk")


# The stack ---------------------------------------------------------------------------------


class TileStack(Stack):
    """bench.stack.Stack with nginx serving downloads from docker/nginx.conf's
    ``/_protected/`` location and keeping tiles in its tile cache as in production, and
    access logs: nginx's (every request, its status, bytes, time and cache status) and
    gunicorn's (the app's time of each request)."""

    ACCESS_LOG = "nginx-access.log"

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.env["TAGGER_ACCEL_REDIRECT_PREFIX"] = "/_protected/"
        self.env["TAGGER_TILE_PROXY_CACHE_SECONDS"] = str(TILE_PROXY_CACHE_SECONDS)
        # Path, status, microseconds from the request read to the response sent (gunicorn's
        # own arguments come after, on its command line, and do not name a format).
        self.env["GUNICORN_CMD_ARGS"] = "--access-logformat '%(U)s %(s)s %(D)s'"

    @property
    def access_log(self) -> Path:
        return self.folder / self.ACCESS_LOG

    @property
    def gunicorn_log(self) -> Path:
        return self.folder / "gunicorn.log"

    @property
    def tile_cache(self) -> Path:
        return self.folder / "tile-cache"

    def _nginx_conf(self) -> Path:
        """docker/nginx.conf's maps, its tile cache and its ``/``, ``/_protected/``, tile and
        range-error locations; the upstream, the alias and the cache folder pointed at this
        stack's gunicorn, media folder and folder."""
        conf = NGINX_CONF.read_text()
        cache = conf_directive(conf, "proxy_cache_path")
        if not cache.startswith(f"proxy_cache_path {CACHE_PATH} "):
            raise RuntimeError(f"docker/nginx.conf's proxy_cache_path is not {CACHE_PATH}")
        cache = cache.replace(CACHE_PATH, str(self.tile_cache), 1)
        tiles = conf_block(conf, TILE_LOCATION)
        if "proxy_cache tagger_tiles;" not in tiles:
            raise RuntimeError("docker/nginx.conf's tile location does not use its cache")
        protected = conf_block(conf, "location /_protected/ {")
        if "alias /data/media/;" not in protected:
            raise RuntimeError("docker/nginx.conf's /_protected/ has no alias /data/media/")
        protected = protected.replace("alias /data/media/;", f"alias {self.env['MEDIA_ROOT']}/;")
        maps = "\n".join(
            conf_block(conf, opening)
            for opening in ("map $http_x_forwarded_proto ", "map $sent_http_content_range ")
        )
        locations = "\n".join(
            [
                tiles,
                conf_block(conf, "location / {"),
                protected,
                conf_block(conf, "location @range_not_satisfiable {"),
            ]
        )
        path = self.folder / "nginx.conf"
        temp = self.folder / "nginx-temp"
        temp.mkdir()
        path.write_text(
            f"""daemon off;
worker_processes 1;
pid {self.folder}/nginx.pid;
error_log {self.folder}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    log_format bench
        '$request_method\\t$request_uri\\t$status\\t$bytes_sent\\t$request_time\\t$http_range'
        '\\t$upstream_cache_status';
    access_log {self.access_log} bench;
    {cache}
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    {maps}
    upstream tagger_backend {{ server 127.0.0.1:{self.gunicorn_port}; }}
    server {{
        listen 127.0.0.1:{self.port};
        client_max_body_size 2g;
        proxy_request_buffering off;
        proxy_read_timeout 300s;
        {locations}
    }}
}}
"""
        )
        return path


class LogTail:
    """The lines a log gained since the last call."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_lines(self) -> list[str]:
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return complete.decode(errors="replace").splitlines()


TILE_PATH = re.compile(r"/tiles/(\d+)/(\d+)/(\d+)\.png")


def nginx_records(lines: list[str]) -> list[dict]:
    records = []
    for line in lines:
        method, uri, status, sent, seconds, byte_range, cache = line.split("\t")
        records.append(
            dict(
                method=method,
                uri=uri,
                status=int(status),
                bytes=int(sent),
                ms=float(seconds) * 1000,
                range=byte_range,
                cache=cache,  # HIT, MISS, EXPIRED...; "-" where no cache is asked
            )
        )
    return records


def gunicorn_records(lines: list[str]) -> list[dict]:
    records = []
    for line in lines:
        match = re.fullmatch(r"(/\S*) (\d{3}) (\d+)", line.strip())
        if match:
            records.append(dict(uri=match[1], status=int(match[2]), ms=int(match[3]) / 1000))
    return records


# Tiles ------------------------------------------------------------------------------------


def tiles_by_zoom(bounds: list[float], minzoom: int, maxzoom: int) -> dict[int, list]:
    west, south, east, north = bounds
    return {z: list(TMS.tiles(west, south, east, north, [z])) for z in range(minzoom, maxzoom + 1)}


def cold_lists(by_zoom: dict[int, list], weights: list[float], seed: int = 7) -> list[list]:
    """Disjoint lists of tiles, one per weight and as long as its share of every zoom's
    (shuffled) tiles; each list takes every zoom in turn (as a map zooming in does) until
    that zoom's share runs out."""
    rng = random.Random(seed)
    shares: list[dict[int, list]] = [{} for _ in weights]
    bounds = [sum(weights[:i]) / sum(weights) for i in range(len(weights) + 1)]
    for z, tiles in by_zoom.items():
        tiles = tiles[:]
        rng.shuffle(tiles)
        for i in range(len(weights)):
            shares[i][z] = tiles[round(bounds[i] * len(tiles)) : round(bounds[i + 1] * len(tiles))]
    lists = []
    for share in shares:
        ordered, depth = [], 0
        while any(depth < len(t) for t in share.values()):
            ordered += [t[depth] for t in share.values() if depth < len(t)]
            depth += 1
        lists.append(ordered)
    return lists


def warm_set(by_zoom: dict[int, list]) -> list:
    """A few tiles of every zoom, from the middle of the raster."""
    chosen = []
    for tiles in by_zoom.values():
        middle = len(tiles) // 2
        chosen += tiles[middle : middle + WARM_TILES_PER_ZOOM]
    return chosen


# Each thread takes its share of a list of requests (line i goes to thread i mod threads) and
# walks it once; past its end it starts again and counts the repeats. The report adds what
# wrk's text summary does not: exact percentiles, statuses, repeats.
WRK_LUA = r"""
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[2])
  local conditional = args[3] == "etag"
  requests = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then
      local path, etag = line:match("^([^\t]+)\t?(.*)$")
      local headers = {}
      for name, value in pairs(wrk.headers) do headers[name] = value end
      if conditional then headers["If-None-Match"] = etag end
      table.insert(requests, wrk.format("GET", path, headers))
    end
    i = i + 1
  end
  sent = 0; repeats = 0; s200 = 0; s204 = 0; s304 = 0; other = 0
end

function request()
  sent = sent + 1
  if sent > #requests then repeats = repeats + 1 end
  return requests[(sent - 1) % #requests + 1]
end

function response(status, headers, body)
  if status == 200 then s200 = s200 + 1
  elseif status == 204 then s204 = s204 + 1
  elseif status == 304 then s304 = s304 + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local t = {repeats = 0, s200 = 0, s204 = 0, s304 = 0, other = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(t) do t[name] = t[name] + (thread:get(name) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.2f, "p95_ms": %.2f, ' ..
    '"p99_ms": %.2f, "max_ms": %.2f, "status_200": %d, "status_204": %d, "status_304": %d, ' ..
    '"status_other": %d, "socket_errors": %d, "timeouts": %d, "repeats": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, t.s200, t.s204, t.s304, t.other,
    e.connect + e.read + e.write + e.timeout, e.timeout, t.repeats))
end
"""


def wrk(
    port: int,
    token: str,
    lines: list[str],
    folder: Path,
    *,
    connections: int,
    seconds: int,
    conditional: bool,
) -> dict:
    script, listing = folder / "tiles.lua", folder / f"requests-{uuid.uuid4().hex[:8]}.txt"
    script.write_text(f'wrk.headers["Authorization"] = "Token {token}"\n' + WRK_LUA)
    listing.write_text("\n".join(lines) + "\n")
    threads = min(WRK_THREADS, connections)
    done = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
            str(listing),
            str(threads),
            "etag" if conditional else "plain",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    listing.unlink()
    out = done.stdout
    result = json.loads(out[out.index("JSON ") + 5 :].splitlines()[0])
    result["distinct"] = len(lines)
    result["load"] = os.getloadavg()[0]
    return result


def drop_from_page_cache(path: Path) -> None:
    """Evict this one file's pages (not the machine's: others run here too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@contextlib.contextmanager
def kept_out_of_page_cache(path: Path, interval: float = 0.1):
    """Meanwhile, the file's pages are dropped every ``interval`` seconds: its reads go to
    the disk, as for a COG the page cache no longer holds."""
    stop = threading.Event()

    def evict() -> None:
        while not stop.wait(interval):
            drop_from_page_cache(path)

    thread = threading.Thread(target=evict, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def resident_share(path: Path) -> float | None:
    """The share of the file in the page cache (util-linux's fincore), or None."""
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return int(out[0]) / int(out[1])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def cpu_seconds(stack_: Stack, name: str = "gunicorn") -> float:
    """CPU time (user + system) so far of one of the stack's processes (gunicorn, nginx)
    and its children (workers)."""
    import psutil

    master = next(p for p in stack_.processes if name in p.args)
    processes = [psutil.Process(master.pid)]
    processes += processes[0].children()
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def wait_until_idle(stack_: Stack, timeout: float = 15) -> None:
    """Until gunicorn has finished the renders a run left behind: when wrk stops, requests
    already passed on are still rendered (nginx does not abort a cacheable response on the
    client's close), and would steal the next run's CPU and fill its logs."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(stack_)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_seconds(stack_)
        if now - before < 0.01:
            return
        before = now


def disk_read_bytes(path: Path) -> int:
    """Bytes read so far from the disk holding ``path`` (the whole device's, others' too)."""
    device = os.stat(path).st_dev
    major, minor = os.major(device), os.minor(device)
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        if int(fields[0]) == major and int(fields[1]) == minor:
            return int(fields[5]) * 512
    return 0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)  # nearest rank
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def by_zoom_latency(records: list[dict]) -> dict[int, dict]:
    zooms: dict[int, list[float]] = {}
    for record in records:
        match = TILE_PATH.search(record["uri"])
        if match:
            zooms.setdefault(int(match[1]), []).append(record["ms"])
    return {
        z: dict(n=len(ms), p50_ms=percentile(ms, 50), p95_ms=percentile(ms, 95))
        for z, ms in sorted(zooms.items())
    }


# What one tile reads, in this process ------------------------------------------------------


class _TrackedFile(io.FileIO):
    """A file that notes the offset and length of every read GDAL makes through it."""

    reads: list[tuple[int, int]] = []

    def read(self, size: int = -1) -> bytes:
        position = self.tell()
        data = super().read(size)
        self.reads.append((position, len(data or b"")))
        return data

    def readinto(self, buffer) -> int:
        position = self.tell()
        n = super().readinto(buffer)
        self.reads.append((position, n or 0))
        return n


def _level_name(level: int | None) -> str:
    return "full resolution" if level is None else f"overview {level} (1/{2 ** (level + 1)})"


def _block_index(path: Path) -> tuple[list[int], list[tuple[int, int, int | None]]]:
    """Every block of every level of the COG as (offset, size, overview level or None for
    full resolution), sorted."""
    blocks = []
    with rasterio.open(path) as dataset:
        levels = [None, *range(len(dataset.overviews(1)))]
    for level in levels:
        kwargs = {} if level is None else {"overview_level": level}
        with rasterio.open(path, **kwargs) as dataset:
            rows, cols = (-(-n // 512) for n in (dataset.height, dataset.width))
            for j in range(rows):
                for i in range(cols):
                    offset = dataset.get_tag_item(f"BLOCK_OFFSET_{i}_{j}", "TIFF", bidx=1)
                    size = dataset.get_tag_item(f"BLOCK_SIZE_{i}_{j}", "TIFF", bidx=1)
                    if offset and size:
                        blocks.append((int(offset), int(size), level))
    blocks.sort()
    return [b[0] for b in blocks], blocks


def tile_reads(path: Path, by_zoom: dict[int, list]) -> dict[int, dict]:
    """Per zoom, for the tile in the middle: the levels and blocks read, the bytes GDAL read
    from the file (the header's included), cProfile's split of a warm render, and rio-tiler's
    read of the tile as the app does it against the same read from the dataset opened at the
    overview level it uses (OVERVIEW_LEVEL), with whether the pixels are the same."""
    from rio_tiler.io import Reader

    from geoconvert.raster import render
    from geoconvert.raster.statistics import cog_env

    starts, blocks = _block_index(path)
    report = {}
    for z, tiles in by_zoom.items():
        tile = tiles[len(tiles) // 2]
        _TrackedFile.reads = []
        with cog_env(), rasterio.open(path, opener=_TrackedFile) as dataset:
            with Reader(str(path), dataset=dataset) as reader:
                reader.tile(tile.x, tile.y, tile.z)
        levels: dict[int | None, set] = {}
        outside = 0  # headers, IFDs and their tile offset and size arrays
        for position, n in _TrackedFile.reads:
            k = bisect.bisect_right(starts, position) - 1
            if k >= 0 and position < blocks[k][0] + blocks[k][1]:
                levels.setdefault(blocks[k][2], set()).add(blocks[k][0])
            else:
                outside += n

        # cold: this file's pages dropped first; warm: the same tile again and again
        middle = len(tiles) // 2
        cold, warm = [], []
        for other in tiles[max(0, middle - 2) : middle + 3]:
            drop_from_page_cache(path)
            started = time.perf_counter()
            render.tile_png(path, other.x, other.y, other.z, statistics=None)
            cold.append((time.perf_counter() - started) * 1000)
        for _ in range(20):
            started = time.perf_counter()
            render.tile_png(path, tile.x, tile.y, tile.z, statistics=None)
            warm.append((time.perf_counter() - started) * 1000)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(20):
            render.tile_png(path, tile.x, tile.y, tile.z, statistics=None)
        profile.disable()
        with cog_env():
            level = max(levels, key=lambda k: len(levels[k])) if levels else None
            direct = _direct_overview_read(path, tile, level)
        report[z] = dict(
            tile=f"{tile.z}/{tile.x}/{tile.y}",
            levels={_level_name(level): len(offsets) for level, offsets in levels.items()},
            **direct,
            bytes_read=sum(n for _, n in _TrackedFile.reads),
            header_bytes=outside,
            file_reads=len(_TrackedFile.reads),
            render_cold_ms=statistics.median(cold),
            render_warm_ms=statistics.median(warm),
            stages_ms=_stages(profile, runs=20),
        )
        print(f"zoom {z}: {report[z]}", flush=True)
    return report


def _direct_overview_read(path: Path, tile, level: int | None, runs: int = 20) -> dict:
    from rio_tiler.errors import NoOverviewWarning
    from rio_tiler.io import Reader

    def read(**options):
        with warnings.catch_warnings():
            # "k only": a dataset of that level and no coarser overviews, which rio-tiler
            # warns about.
            warnings.simplefilter("ignore", NoOverviewWarning)
            with rasterio.open(path, **options) as dataset, Reader(str(path), dataset=dataset) as r:
                return r.tile(tile.x, tile.y, tile.z).array

    options = {} if level is None else {"overview_level": f"{level} only"}
    timings: dict[str, list[float]] = {"as_app_read_ms": [], "opened_at_level_read_ms": []}
    for _ in range(runs):
        for key, kwargs in (("as_app_read_ms", {}), ("opened_at_level_read_ms", options)):
            started = time.perf_counter()
            read(**kwargs)
            timings[key].append((time.perf_counter() - started) * 1000)
    a, b = read(), read(**options)
    same = bool((a.data == b.data).all() and (getmaskarray(a) == getmaskarray(b)).all())
    return {
        **{key: statistics.median(values) for key, values in timings.items()},
        "opened_at_level_same_pixels": same,
        "opened_at_level_mean_abs_difference": float(abs(a.data.astype(float) - b.data).mean()),
    }


# (file name ending, function name) of the stages of render.tile_png
STAGES = {
    "open": ("rasterio/__init__.py", "open"),
    "read + warp": ("rio_tiler/reader.py", "read"),
    "PNG": ("geoconvert/raster/render.py", "_png"),
    "total": ("geoconvert/raster/render.py", "tile_png"),
}


def _stages(profile: cProfile.Profile, runs: int) -> dict[str, float]:
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    found = {}
    for stage, (ending, name) in STAGES.items():
        cumulative = [
            value[3]
            for (file, _, fn), value in stats.items()
            if file.endswith(ending) and fn == name
        ]
        if cumulative:
            found[stage] = max(cumulative) / runs * 1000
    return found


# Remote reads ------------------------------------------------------------------------------


def remote_read(url: str, what: str) -> dict:
    """In a fresh process: open ``/vsicurl/url`` and read a window (``what``: open, full,
    overview). Run as ``python -m bench.tiles _remote-read URL WHAT``."""
    options = {"overview_level": REMOTE_OVERVIEW} if what == "overview" else {}
    started = time.perf_counter()
    with rasterio.open(f"/vsicurl/{url}", **options) as dataset:
        opened = time.perf_counter()
        shape = None
        if what != "open":
            window = Window(
                (dataset.width - WINDOW) // 2, (dataset.height - WINDOW) // 2, WINDOW, WINDOW
            )
            shape = list(dataset.read(window=window).shape)
        finished = time.perf_counter()
        size = [dataset.width, dataset.height]
    return dict(
        open_ms=(opened - started) * 1000,
        read_ms=(finished - opened) * 1000,
        total_ms=(finished - started) * 1000,
        shape=shape,
        level_size=size,
    )


def remote_reads(stack_: TileStack, item_id: str, cog_size: int, runs: int) -> dict:
    from tests.http import CountingProxy

    client = stack_.client()
    status, link = client.request(
        "POST",
        f"/api/v1/tree-items/{item_id}/download-link",
        json.dumps({"variant": "geo_raster"}).encode(),
        {"Content-Type": "application/json"},
    )
    if status != 201:
        raise RuntimeError(f"download-link failed: {status} {link}")
    proxy = CountingProxy(("127.0.0.1", stack_.port))
    # The link names the host nginx passed on (Host: $host, no port); sent to the proxy's.
    signed = urllib.parse.urlsplit(link["url"])
    signed_url = f"{proxy.url}{signed.path}?{signed.query}"
    header_url = f"{proxy.url}/api/v1/tree-items/{item_id}/download?variant=geo_raster"
    env = {**os.environ, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    modes = {
        "token header": (header_url, {"GDAL_HTTP_HEADERS": f"Authorization: Token {stack_.token}"}),
        "signed link": (signed_url, {}),
    }
    log = LogTail(stack_.access_log)
    runs_by_case: dict[tuple[str, str], list[dict]] = {}
    try:
        for i in range(runs):
            for mode, (url, extra) in modes.items():
                for what in ("open", "full", "overview"):
                    log.new_lines()
                    proxy.reset()
                    done = subprocess.run(
                        [PYTHON, "-m", "bench.tiles", "_remote-read", url, what],
                        cwd=ROOT,
                        env={**env, **extra},
                        capture_output=True,
                        text=True,
                    )
                    if done.returncode:
                        raise RuntimeError(f"remote read failed:\n{done.stderr[-3000:]}")
                    time.sleep(0.3)  # the proxy's pumps and nginx's log catch up
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    requests = nginx_records(log.new_lines())
                    result.update(
                        proxy_bytes=proxy.sent_to_client,
                        requests=len(requests),
                        statuses=sorted({r["status"] for r in requests}),
                        methods=[f"{r['method']} {r['range']}" for r in requests],
                        nginx_body_bytes=sum(r["bytes"] for r in requests),
                        request_ms=[r["ms"] for r in requests],
                    )
                    runs_by_case.setdefault((mode, what), []).append(result)
                    print(
                        f"remote {mode:12} {what:8} run {i + 1}: {result['requests']} requests, "
                        f"{result['proxy_bytes']:,} bytes, open {result['open_ms']:.0f} ms, "
                        f"read {result['read_ms']:.0f} ms",
                        flush=True,
                    )
    finally:
        proxy.close()
    cases = []
    for (mode, what), results in runs_by_case.items():
        per_request = [ms for r in results for ms in r["request_ms"]]
        cases.append(
            dict(
                mode=mode,
                what=what,
                runs=len(results),
                requests=statistics.median(r["requests"] for r in results),
                bytes=statistics.median(r["proxy_bytes"] for r in results),
                share_of_cog=statistics.median(r["proxy_bytes"] for r in results) / cog_size,
                open_ms=statistics.median(r["open_ms"] for r in results),
                read_ms=statistics.median(r["read_ms"] for r in results),
                total_ms=statistics.median(r["total_ms"] for r in results),
                request_p50_ms=percentile(per_request, 50),
                statuses=sorted({s for r in results for s in r["statuses"]}),
                methods=results[0]["methods"],
                level_size=results[0]["level_size"],
                raw=results,
            )
        )
    return dict(link_as_returned=link["url"].split("?")[0], port=stack_.port, cases=cases)


# The run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    # Tiles and downloads are measured behind nginx, as production serves them.
    stack.PROXY = "nginx"
    os.environ["BENCH_ACCESS_LOG"] = "1"  # gunicorn's access log into gunicorn.log
    big = inputs.ensure("rgb-10000", args.folder)
    report: dict = {
        "note": args.note,
        "gunicorn": f"{GUNICORN_WORKERS} sync workers x {GUNICORN_THREADS} threads",
        "database": "PostgreSQL" if os.environ.get("BENCH_DATABASE_URL") else "SQLite",
        "machine": machine(),
        "load_at_start": os.getloadavg(),
        "versions": versions(),
        "tile_proxy_cache_seconds": TILE_PROXY_CACHE_SECONDS,
        "wrk": dict(
            threads=WRK_THREADS,
            seconds=args.seconds,
            repeats=args.repeats,
            connections=args.connections,
        ),
    }
    with TileStack(args.folder / "tiles-stack") as stack_:
        client = stack_.client()
        item_id = client.upload(big)
        task_id, _, started = client.convert(item_id)
        report["conversion_s"] = client.wait(task_id, started, 0.2)
        wait_for_follow_up(client, item_id)
        media = Path(stack_.env["MEDIA_ROOT"])
        cog = next(media.glob(f"items/*/{uuid.UUID(item_id).hex}/geo_raster-*.tif"))
        next(media.glob(f"items/*/{uuid.UUID(item_id).hex}/original")).unlink()
        with rasterio.open(cog) as dataset:
            report["cog"] = dict(
                bytes=cog.stat().st_size,
                size=[dataset.width, dataset.height],
                overviews=dataset.overviews(1),
                blocks=dataset.block_shapes[0],
                compression=dataset.compression.value if dataset.compression else None,
            )
        status, tilejson = client.request("GET", f"/api/v1/tree-items/{item_id}/tilejson.json")
        if status != 200:
            raise RuntimeError(f"tilejson: {status} {tilejson}")
        report["tilejson"] = {k: tilejson[k] for k in ("minzoom", "maxzoom", "bounds")}
        report["tilejson"]["tiles"] = tilejson["tiles"][0].split("?")[0]
        by_zoom = tiles_by_zoom(tilejson["bounds"], tilejson["minzoom"], tilejson["maxzoom"])
        report["tiles_in_bounds"] = {z: len(t) for z, t in by_zoom.items()}
        print(f"COG {report['cog']}, tiles per zoom {report['tiles_in_bounds']}", flush=True)

        def path(tile) -> str:
            return f"/api/v1/tree-items/{item_id}/tiles/{tile.z}/{tile.x}/{tile.y}.png"

        warm = warm_set(by_zoom)
        plain = [path(t) for t in warm]

        def fill_cache() -> dict[str, str]:
            """Each warm tile once, as wrk asks for it (the same Authorization: the same
            cache key): nginx's cache holds them for TILE_PROXY_CACHE_SECONDS. Their ETags,
            and a check the route works."""
            etags = {}
            for tile_path in plain:
                connection = client.connection
                connection.request("GET", tile_path, headers=client.headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200 or response.headers["Content-Type"] != "image/png":
                    raise RuntimeError(f"tile {tile_path}: {response.status}")
                etags[tile_path] = response.headers["ETag"]
            return etags

        etags = fill_cache()
        conditional = [f"{p}\t{etags[p]}" for p in plain]
        # Side by side: the connection counts take turns, and so do the sets within a round.
        rounds = [c for _ in range(args.repeats) for c in args.connections]
        # A run's share of the cold tiles follows what it can ask for: one connection keeps
        # one core busy, more keep them all busy.
        weights = [min(c, os.cpu_count() or 1) for c in rounds for _ in COLD_KINDS]
        # Never a warm tile: nginx's cache holds those.
        unasked = {z: [t for t in tiles if t not in warm] for z, tiles in by_zoom.items()}
        colds = iter(cold_lists(unasked, weights))

        nginx_log, app_log = LogTail(stack_.access_log), LogTail(stack_.gunicorn_log)
        runs = []
        for i, connections in enumerate(rounds):
            for kind in KINDS[i % len(KINDS) :] + KINDS[: i % len(KINDS)]:
                if kind in COLD_KINDS:
                    drop_from_page_cache(cog)
                    before = resident_share(cog)
                    lines = [path(t) for t in next(colds)]
                elif kind == "uncached":
                    # Never the same URL twice (more than a run can ask for): every request
                    # misses nginx's cache and is rendered by Django.
                    run_id = uuid.uuid4().hex[:8]
                    lines = [
                        f"{p}?bench={run_id}-{n}" for n in range(UNCACHED_ROUNDS) for p in plain
                    ]
                else:
                    fill_cache()
                    lines = plain if kind == "warm" else conditional
                evicting = kept_out_of_page_cache(cog) if kind == "cold-disk" else None
                nginx_log.new_lines()
                app_log.new_lines()
                cpu, disk = cpu_seconds(stack_), disk_read_bytes(cog)
                proxy_cpu = cpu_seconds(stack_, "nginx")
                with evicting or contextlib.nullcontext():
                    result = wrk(
                        stack_.port,
                        stack_.token,
                        lines,
                        args.folder,
                        connections=connections,
                        seconds=args.seconds,
                        conditional=kind == "304",
                    )
                cpu = cpu_seconds(stack_) - cpu
                proxy_cpu = cpu_seconds(stack_, "nginx") - proxy_cpu
                wait_until_idle(stack_)
                time.sleep(0.5)  # nginx's log catches up
                result.update(
                    app_cpu_ms_per_request=cpu * 1000 / max(1, result["requests"]),
                    proxy_cpu_ms_per_request=proxy_cpu * 1000 / max(1, result["requests"]),
                    disk_read_mb=(disk_read_bytes(cog) - disk) / 2**20,
                    kind=kind,
                    connections=connections,
                    round=i + 1,
                    nginx=nginx_records(nginx_log.new_lines()),
                    app=gunicorn_records(app_log.new_lines()),
                )
                if kind in COLD_KINDS:
                    result["resident_before"] = before
                    result["resident_after"] = resident_share(cog)
                result["cache"] = dict(
                    collections.Counter(
                        r["cache"] for r in result["nginx"] if TILE_PATH.search(r["uri"])
                    )
                )
                tile_requests = sum(result["cache"].values())
                result["hit_share"] = result["cache"].get("HIT", 0) / max(1, tile_requests)
                runs.append(result)
                print(
                    f"{kind:4} c={connections:2} round {i + 1}: "
                    + ", ".join(
                        f"{k} {result[k]}"
                        for k in (
                            "requests",
                            "rps",
                            "p50_ms",
                            "p95_ms",
                            "p99_ms",
                            "repeats",
                            "status_other",
                            "socket_errors",
                            "hit_share",
                            "load",
                        )
                    ),
                    flush=True,
                )
        report["runs"] = summarize_runs(runs)
        report["wrk_runs"] = [
            {k: v for k, v in r.items() if k not in ("nginx", "app")} for r in runs
        ]
        report["per_zoom_http"] = per_zoom_http(runs)
        report["tile_reads"] = tile_reads(cog, by_zoom)
        report["remote"] = remote_reads(stack_, item_id, report["cog"]["bytes"], args.remote_runs)
    report["load_at_end"] = os.getloadavg()
    write(report, args.results)
    return report


def wait_for_follow_up(client, item_id: str, timeout: float = 600) -> None:
    """Until the statistics and thumbnail are recorded: the worker is idle afterwards, and
    the tiles' ETags (which say whether statistics were there) no longer change."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, item = client.request("GET", f"/api/v1/tree-items/{item_id}")
        if status == 200 and (item.get("geo_raster") or {}).get("statistics"):
            if client.request("GET", f"/api/v1/tree-items/{item_id}/thumbnail.png")[0] == 200:
                return
        time.sleep(0.5)
    raise RuntimeError("the statistics and thumbnail did not come; see worker.log")


def summarize_runs(runs: list[dict]) -> list[dict]:
    """Per (kind, connections): the median of each figure over the rounds, and the runs."""
    rows = []
    for kind, connections in dict.fromkeys((r["kind"], r["connections"]) for r in runs):
        mine = [r for r in runs if r["kind"] == kind and r["connections"] == connections]
        row = dict(kind=kind, connections=connections, rounds=len(mine))
        for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "requests"):
            row[key] = statistics.median(r[key] for r in mine)
        for key in (
            "status_200",
            "status_204",
            "status_304",
            "status_other",
            "socket_errors",
            "timeouts",
            "repeats",
        ):
            row[key] = sum(r[key] for r in mine)
        row["distinct"] = [r["distinct"] for r in mine]
        app = [a["ms"] for r in mine for a in r["app"] if TILE_PATH.search(a["uri"])]
        row["app_p50_ms"], row["app_p95_ms"] = percentile(app, 50), percentile(app, 95)
        row["load"] = [round(r["load"], 2) for r in mine]
        row["app_cpu_ms_per_request"] = statistics.median(r["app_cpu_ms_per_request"] for r in mine)
        row["proxy_cpu_ms_per_request"] = statistics.median(
            r["proxy_cpu_ms_per_request"] for r in mine
        )
        cache = collections.Counter()
        for r in mine:
            cache.update(r["cache"])
        row["cache"] = dict(cache)
        row["hit_share"] = cache.get("HIT", 0) / max(1, sum(cache.values()))
        row["disk_read_mb"] = [round(r["disk_read_mb"], 1) for r in mine]
        row["resident_before"] = [r.get("resident_before") for r in mine]
        row["resident_after"] = [r.get("resident_after") for r in mine]
        rows.append(row)
    return rows


def per_zoom_http(runs: list[dict]) -> dict:
    """Per kind and connections, per zoom: nginx's time (the client's but for loopback) and
    the app's, pooled over the rounds."""
    table = {}
    for kind, connections in dict.fromkeys((r["kind"], r["connections"]) for r in runs):
        mine = [r for r in runs if r["kind"] == kind and r["connections"] == connections]
        nginx = by_zoom_latency([x for r in mine for x in r["nginx"]])
        app = by_zoom_latency([x for r in mine for x in r["app"]])
        table[f"{kind} @ {connections}"] = {
            z: dict(
                n=nginx[z]["n"],
                nginx_p50_ms=nginx[z]["p50_ms"],
                nginx_p95_ms=nginx[z]["p95_ms"],
                app_p50_ms=app.get(z, {}).get("p50_ms"),
                app_p95_ms=app.get(z, {}).get("p95_ms"),
            )
            for z in nginx
        }
    return table


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "?",
    )
    memory = next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return f"{os.cpu_count()} vCPUs ({model}), {int(memory) // 2**20} GB RAM"


def versions() -> dict:
    import rio_tiler

    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return dict(
        gdal=rasterio.__gdal_version__,
        rasterio=rasterio.__version__,
        rio_tiler=rio_tiler.__version__,
        nginx=nginx.split("/")[-1],
        wrk=(wrk_version.split() or ["?"])[1],
    )


# The report -------------------------------------------------------------------------------


def _ms(value) -> str:
    return "" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def write(report: dict, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "tiles.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    cog, tj, w, v = report["cog"], report["tilejson"], report["wrk"], report["versions"]
    lines = [
        f"gunicorn {report['gunicorn']} (`config.settings.production`), behind nginx "
        f"{v['nginx']} (1 worker process; docker/nginx.conf's `/`, `/_protected/` and tile "
        "locations and its tile cache: downloads by X-Accel-Redirect, tiles kept by nginx for "
        f"TAGGER_TILE_PROXY_CACHE_SECONDS={report.get('tile_proxy_cache_seconds', '?')} s), "
        f"{report['database']}, Redis on a unix "
        "socket, one Celery worker (idle while measuring). "
        f"{report['machine']}, shared: load average {report['load_at_start'][0]:.1f} at the "
        f"start, {report['load_at_end'][0]:.1f} at the end"
        + (f"; {report['note']}" if report.get("note") else "")
        + f". GDAL {v['gdal']}, rasterio {v['rasterio']}, rio-tiler {v['rio_tiler']}, "
        f"wrk {v['wrk']}.",
        "",
        f"The COG: rgb-10000 converted through the stack in {report['conversion_s']:.1f} s; "
        f"{cog['bytes']:,} bytes, {cog['size'][0]}x{cog['size'][1]} x 3 uint8, "
        f"{cog['compression']}, {cog['blocks'][0]} px blocks, overviews {cog['overviews']}. "
        f"TileJSON: zooms {tj['minzoom']}–{tj['maxzoom']}; tiles touching the bounds per zoom: "
        + ", ".join(f"z{z} {n}" for z, n in report["tiles_in_bounds"].items())
        + ".",
        "",
        f"## Tiles: wrk, {w['threads']} threads, {w['seconds']} s per run, "
        f"{w['repeats']} round(s) of {', '.join(KINDS)} per connection count",
        "",
        "Medians over the rounds (statuses, errors, cache statuses and repeats: sums); "
        "latencies are wrk's. *warm* and *304*: the warm tiles asked once just before the run, "
        "so nginx's cache holds them; *uncached*: the same tiles, each request's URL made "
        "unique by a query string (`?bench=<n>`, ignored by Django) so that nginx's cache "
        "cannot answer: Django renders every one, as before the cache. *HITs* is the share of "
        "tile requests nginx's access log says its cache answered (`$upstream_cache_status`). "
        "*app* is gunicorn's own time for the requests that reached it (from the request read "
        "to the response sent: no wait for a free worker), pooled over the rounds; *CPU/req* "
        "the CPU time of gunicorn's processes, and of nginx's, over the run divided by the "
        "requests; *disk MB* what the disk holding the COG read during each run (the whole "
        "device: other jobs' reads too); *repeats* the requests past the end of a run's list "
        "of distinct URLs (warm and 304 repeat their tiles by design).",
        "",
        "| set | connections | requests/s | p50 ms | p95 ms | p99 ms | max ms | HITs "
        "| app p50 / p95 ms | CPU/req ms gunicorn / nginx | disk MB | 200 / 204 / 304 / other "
        "| socket errors | repeats | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|",
    ]
    targets = {"warm": 50, "cold": 150, "cold-disk": 150}
    for r in report["runs"]:
        target = targets.get(r["kind"])
        verdict = ""
        if target:
            met = "met" if r["p95_ms"] <= target else "**missed**"
            verdict = f"p95 ≤ {target} ms: {met}"
        described = {
            "warm": f"warm ({len(report['tiles_in_bounds']) * WARM_TILES_PER_ZOOM} tiles)",
            "304": "304 (If-None-Match)",
            "uncached": f"uncached: the warm tiles, never the same URL (distinct: "
            f"{', '.join(map(str, r['distinct']))})",
            "cold": f"cold (distinct: {', '.join(map(str, r['distinct']))})",
            "cold-disk": "cold, the COG's pages dropped every 0.1 s (distinct: "
            f"{', '.join(map(str, r['distinct']))})",
        }[r["kind"]]
        lines.append(
            f"| {described} | {r['connections']} | {r['rps']:.0f} | {_ms(r['p50_ms'])} "
            f"| {_ms(r['p95_ms'])} | {_ms(r['p99_ms'])} | {_ms(r['max_ms'])} "
            f"| {r['hit_share']:.1%} "
            f"| {_ms(r['app_p50_ms'])} / {_ms(r['app_p95_ms'])} "
            f"| {_ms(r['app_cpu_ms_per_request'])} / {_ms(r['proxy_cpu_ms_per_request'])} "
            f"| {', '.join(f'{d:.0f}' for d in r['disk_read_mb'])} "
            f"| {r['status_200']} / {r['status_204']} / {r['status_304']} / {r['status_other']} "
            f"| {r['socket_errors']} | {'' if r['kind'] in CACHED_KINDS else r['repeats']} "
            f"| {verdict} |"
        )
    for kind in COLD_KINDS:
        rows = [r for r in report["runs"] if r["kind"] == kind]
        shares = [s for r in rows for s in r["resident_before"] + r["resident_after"]]
        if rows and None not in shares:
            before = max(s for r in rows for s in r["resident_before"])
            after = ", ".join(f"{s:.0%}" for r in rows for s in r["resident_after"])
            lines.append(
                f"\n{kind}: at most {before:.0%} of the COG in the page cache at the start of "
                f"a run (fincore), {after} at the end."
            )

    lines += [
        "",
        "## Per zoom, over HTTP",
        "",
        "Pooled over the rounds: requests, then p50 / p95 ms of nginx's `$request_time` (what "
        "a client on loopback waits), then in brackets the app's p50 / p95 ms.",
        "",
    ]
    kinds = list(report["per_zoom_http"])
    lines.append("| zoom | " + " | ".join(kinds) + " |")
    lines.append("|---:|" + "---|" * len(kinds))
    for z in report["tiles_in_bounds"]:
        cells = []
        for k in kinds:
            c = report["per_zoom_http"][k].get(z)
            cells.append(
                f"{c['n']}: {_ms(c['nginx_p50_ms'])} / {_ms(c['nginx_p95_ms'])} "
                f"({_ms(c['app_p50_ms'])} / {_ms(c['app_p95_ms'])})"
                if c
                else ""
            )
        lines.append(f"| {z} | " + " | ".join(cells) + " |")

    reads = report["tile_reads"]
    lines += [
        "",
        "## Per zoom, one tile in this process",
        "",
        "The tile in the middle of each zoom: the level GDAL read for rio-tiler's "
        "`Reader.tile()` through the full dataset and how many of its blocks, the bytes read "
        "from the file (through a Python opener that notes every read); a render "
        "(`geoconvert.raster.render.tile_png`, in this process: its pool of open COGs and its "
        "overview reads on) cold (the COG's pages dropped before each; median of 5 tiles) and "
        "warm (median of 20), the warm one split by cProfile; `Reader.tile()` through the full "
        "dataset (GDAL picks the overview through the warped VRT's own overviews: how the app "
        "read before it opened the overview itself) against the same read from the dataset "
        "opened at that overview alone (`OVERVIEW_LEVEL=k only`), medians of 20.",
        "",
        "| zoom | level read (blocks) | bytes read | render cold / warm ms "
        "| warm: open / read+warp / PNG ms | Reader.tile() full dataset / opened at the "
        "level ms "
        "| same pixels |",
        "|---:|---|---:|---:|---|---|---|",
    ]
    for z in report["tiles_in_bounds"]:
        t = reads[z]
        levels = ", ".join(f"{name} ({n})" for name, n in t["levels"].items())
        stages = t["stages_ms"]
        split = " / ".join(_ms(stages.get(s)) for s in ("open", "read + warp", "PNG"))
        same = (
            "yes"
            if t["opened_at_level_same_pixels"]
            else f"no (mean difference {t['opened_at_level_mean_abs_difference']:.2f})"
        )
        lines.append(
            f"| {z} | {levels} | {t['bytes_read'] / 1024:.0f} KiB "
            f"| {_ms(t['render_cold_ms'])} / {_ms(t['render_warm_ms'])} | {split} "
            f"| {_ms(t['as_app_read_ms'])} / {_ms(t['opened_at_level_read_ms'])} | {same} |"
        )
    header_kib = statistics.median(t["header_bytes"] for t in reads.values()) / 1024
    lines += [
        "",
        f"Besides the blocks, a tile reads {header_kib:.0f} KiB of the file's headers (median "
        "over the zooms; the IFDs and their block offset and size arrays) in "
        f"{statistics.median(t['file_reads'] for t in reads.values()):.0f} reads.",
    ]

    remote = report["remote"]
    lines += [
        "",
        f"## Remote reads: GDAL /vsicurl/ through nginx, {remote['cases'][0]['runs']} runs each "
        "in fresh processes, medians",
        "",
        "`GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`; bytes are what the server sent (headers "
        "included), counted by tests/http.py's CountingProxy in front of nginx; requests are "
        "nginx's access-log lines. *open*: `rasterio.open` only; *full*: open, then the "
        f"centred {WINDOW}x{WINDOW} window at full resolution; *overview*: opened at overview "
        f"level {REMOTE_OVERVIEW} (1/{2 ** (REMOTE_OVERVIEW + 1)}), its centred "
        f"{WINDOW}x{WINDOW} window.",
        "",
        "| auth | read | HTTP requests | bytes sent | of the COG | open ms | read ms "
        "| total ms | per request p50 ms (nginx) | statuses |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in remote["cases"]:
        lines.append(
            f"| {c['mode']} | {c['what']} | {c['requests']:g} | {c['bytes']:,.0f} "
            f"| {c['share_of_cog']:.3%} | {_ms(c['open_ms'])} | {_ms(c['read_ms'])} "
            f"| {_ms(c['total_ms'])} | {_ms(c['request_p50_ms'])} "
            f"| {', '.join(map(str, c['statuses']))} |"
        )
    lines += ["", "The requests of one run of each (method, Range):", ""]
    for c in remote["cases"]:
        lines.append(f"- {c['mode']}, {c['what']}: " + "; ".join(f"`{m}`" for m in c["methods"]))
    lines += [
        "",
        f"The signed link as the API returned it, nginx listening on port {remote['port']}: "
        f"`{remote['link_as_returned']}?variant=geo_raster&token=...`.",
    ]
    text = "\n".join(lines) + "\n"
    (results / "tiles.md").write_text(text)
    print(text)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_remote-read":
        print(json.dumps(remote_read(sys.argv[2], sys.argv[3])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=6, help="per wrk run")
    parser.add_argument("--repeats", type=int, default=2, help="rounds per connection count")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[20, 1],
        help="wrk connections, comma-separated (default 20,1)",
    )
    parser.add_argument("--remote-runs", type=int, default=5, help="remote reads per case")
    parser.add_argument("--folder", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--note", default="", help="said of the machine in tiles.md")
    parser.add_argument(
        "--rewrite",
        action="store_true",
        help="only write tiles.md again from tiles.json (with --note, if given)",
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.rewrite:
        report = json.loads((args.results / "tiles.json").read_text())
        report["note"] = args.note or report.get("note", "")
        write(report, args.results)
    else:
        run(args)


if __name__ == "__main__":
    main()
