"""tagger's engine against ``rio cogeo create``, interleaved, in fresh processes.

For each input, the tools take turns (tagger, rio-cogeo, tagger, ...) so that load from
whatever else runs on the machine hits both alike. Each conversion is a child process; its wall
time is measured around it and its peak memory (max RSS) is what ``/usr/bin/time``
reports. The first output of each tool is checked: a valid COG
(rio-cogeo's ``cog_validate``), and lossless (every pixel and the nodata mask equal the
input's).
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from bench import inputs

BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
RIO = str(Path(sys.executable).with_name("rio"))


@dataclass
class Run:
    input: str
    pixels: int
    input_mb: float
    tool: str
    run: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    output_mb: float
    load: float


def tools(variants: dict[str, list[str]]) -> dict[str, list[str]]:
    """Command templates by tool name: tagger's engine alone with its defaults, the engine
    with other options (``variants``, by name), ``manage.py convert_raster`` (the engine
    behind Django's start-up, as an operator runs it), GDAL's COG driver called directly
    with the engine's options (bench/gdal_cog.py), and what a user would run instead:
    ``rio cogeo create``."""
    engine = [PYTHON, str(BENCH_DIR / "engine_convert.py"), "{src}", "{dst}"]
    commands = {"tagger": engine}
    for name, options in variants.items():
        commands[name] = [*engine, *options]
    manage = [PYTHON, str(BENCH_DIR.parent / "manage.py"), "convert_raster", "--no-progress"]
    commands["manage.py"] = [*manage, "{src}", "{dst}"]
    commands["gdal-cog"] = [PYTHON, str(BENCH_DIR / "gdal_cog.py"), "{src}", "{dst}"]
    commands["rio-cogeo"] = [RIO, "cogeo", "create", "--quiet", "{src}", "{dst}"]
    return commands


def measure(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one child process, the latter two as
    ``/usr/bin/time`` reports them.

    Through ``time`` rather than ``wait4`` here: a child started straight from this (large)
    process would report this process's peak as its own, since Linux carries the peak RSS
    of the memory a vforked child starts in across ``exec``.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%U %S %M", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed ({done.returncode}):\n{done.stderr}")
        user, system, max_rss_kib = report.read().split()[-3:]
    return seconds, float(user) + float(system), int(max_rss_kib) / 1024


def check_output(src: Path, dst: Path) -> list[str]:
    """Problems with ``dst`` as a lossless COG of ``src`` (empty: none)."""
    valid, errors, _ = cog_validate(str(dst), quiet=True)
    problems = [f"not a valid COG: {errors}"] if not valid else []
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        if (a.width, a.height, a.count, a.dtypes) != (b.width, b.height, b.count, b.dtypes):
            return [*problems, "shape or type differs"]
        if a.crs != b.crs or not a.transform.almost_equals(b.transform):
            problems.append("georeferencing differs")
        if a.nodata != b.nodata and not (np.isnan(a.nodata or 0) and np.isnan(b.nodata or 0)):
            problems.append(f"nodata {a.nodata} became {b.nodata}")
        for row in range(0, a.height, 1024):
            window = Window(0, row, a.width, min(1024, a.height - row))
            if not np.array_equal(a.read(window=window), b.read(window=window), equal_nan=True):
                problems.append(f"pixels differ in rows {row}..{row + window.height}")
                break
    return problems


def run(names: list[str], runs: int, folder: Path, results: Path, variants: dict[str, list[str]]):
    out = folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    commands = tools(variants)
    rows: list[Run] = []
    checks: dict[tuple[str, str], list[str]] = {}
    for name in names:
        src = inputs.ensure(name, folder)
        with rasterio.open(src) as dataset:
            pixels = dataset.width * dataset.height
        for i in range(runs):
            for tool, template in commands.items():
                dst = out / f"{name}.{tool}.tif"
                dst.unlink(missing_ok=True)
                command = [part.format(src=src, dst=dst) for part in template]
                seconds, cpu, rss = measure(command)
                row = Run(
                    name,
                    pixels,
                    round(src.stat().st_size / 2**20, 1),
                    tool,
                    i + 1,
                    round(seconds, 3),
                    round(cpu, 2),
                    round(rss, 1),
                    round(dst.stat().st_size / 2**20, 2),
                    os.getloadavg()[0],
                )
                rows.append(row)
                print(
                    f"{name:10} {tool:12} run {i + 1}: {seconds:6.2f} s  cpu {cpu:6.2f} s  "
                    f"{rss:7.1f} MB  output {row.output_mb:8.2f} MB  (load {row.load:.1f})",
                    flush=True,
                )
                if i == 0:
                    checks[(name, tool)] = check_output(src, dst)
                dst.unlink()
            write(rows, checks, results, runs)
    return rows, checks


def summary(rows: list[Run], checks) -> list[dict]:
    table = []
    for name in dict.fromkeys(r.input for r in rows):
        mine = [r for r in rows if r.input == name]
        medians = {}
        for tool in dict.fromkeys(r.tool for r in mine):
            runs = [r for r in mine if r.tool == tool]
            medians[tool] = dict(
                input=name,
                pixels=runs[0].pixels,
                input_mb=runs[0].input_mb,
                tool=tool,
                runs=len(runs),
                seconds=statistics.median(r.seconds for r in runs),
                cpu_seconds=statistics.median(r.cpu_seconds for r in runs),
                peak_rss_mb=statistics.median(r.peak_rss_mb for r in runs),
                peak_rss_max_mb=max(r.peak_rss_mb for r in runs),
                output_mb=runs[0].output_mb,
                valid_lossless="yes"
                if not checks.get((name, tool))
                else "; ".join(checks[(name, tool)]),
            )
        reference, gdal = medians.get("rio-cogeo"), medians.get("gdal-cog")
        for values in medians.values():
            values["gdal_ratio"] = values["seconds"] / gdal["seconds"] if gdal else None
            values["time_ratio"] = values["seconds"] / reference["seconds"] if reference else None
            values["cpu_ratio"] = (
                values["cpu_seconds"] / reference["cpu_seconds"] if reference else None
            )
            table.append(values)
    return table


def write(rows: list[Run], checks, results: Path, runs: int) -> None:
    results.mkdir(parents=True, exist_ok=True)
    with open(results / "convert-runs.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    table = summary(rows, checks)
    with open(results / "convert.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    lines = [
        f"Medians of up to {runs} interleaved runs per tool; each conversion in a fresh "
        "process; wall and CPU time (user + system) and peak memory (max RSS) of that process. "
        "Ratios: median over rio-cogeo's (or GDAL's COG driver's) median on the same input.",
        "",
        "| input | tool | runs | wall s | × rio-cogeo | × gdal-cog | CPU s | × rio-cogeo "
        "| peak MB | output MB | valid COG, lossless |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for t in table:
        ratio = f"{t['time_ratio']:.2f}" if t["time_ratio"] is not None else ""
        cpu_ratio = f"{t['cpu_ratio']:.2f}" if t["cpu_ratio"] is not None else ""
        gdal_ratio = f"{t['gdal_ratio']:.2f}" if t["gdal_ratio"] is not None else ""
        lines.append(
            f"| {t['input']} | {t['tool']} | {t['runs']} | {t['seconds']:.2f} | {ratio} "
            f"| {gdal_ratio} "
            f"| {t['cpu_seconds']:.2f} | {cpu_ratio} | {t['peak_rss_mb']:.0f} "
            f"| {t['output_mb']:.1f} | {t['valid_lossless']} |"
        )
    (results / "convert.md").write_text("\n".join(lines) + "\n")
