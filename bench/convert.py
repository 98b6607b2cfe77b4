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
    peak_rss_mb: float
    output_mb: float


def tools(extra_engine_options: list[str]) -> dict[str, list[str]]:
    return {
        "tagger": [
            PYTHON,
            str(BENCH_DIR / "engine_convert.py"),
            "{src}",
            "{dst}",
            *extra_engine_options,
        ],
        # What a user would run instead, with its defaults.
        "rio-cogeo": [RIO, "cogeo", "create", "--quiet", "{src}", "{dst}"],
    }


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process, as ``/usr/bin/time`` reports them.

    Through ``time`` rather than ``wait4`` here: a child started straight from this (large)
    process would report this process's peak as its own, since Linux carries the peak RSS
    of the memory a vforked child starts in across ``exec``.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%M", *command],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed ({done.returncode}):\n{done.stderr}")
        max_rss_kib = int(report.read().split()[-1])
    return seconds, max_rss_kib / 1024


def check_output(src: Path, dst: Path) -> list[str]:
    """Problems with ``dst`` as a lossless COG of ``src`` (empty: none)."""
    valid, errors, _ = cog_validate(str(dst), quiet=True)
    problems = [f"not a valid COG: {errors}"] if not valid else []
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        if (a.width, a.height, a.count, a.dtypes) != (b.width, b.height, b.count, b.dtypes):
            return problems + ["shape or type differs"]
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


def run(names: list[str], runs: int, folder: Path, results: Path, engine_options: list[str]):
    out = folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    commands = tools(engine_options)
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
                seconds, rss = measure(command)
                row = Run(
                    name,
                    pixels,
                    round(src.stat().st_size / 2**20, 1),
                    tool,
                    i + 1,
                    round(seconds, 3),
                    round(rss, 1),
                    round(dst.stat().st_size / 2**20, 2),
                )
                rows.append(row)
                print(
                    f"{name:10} {tool:9} run {i + 1}: {seconds:6.2f} s  {rss:7.1f} MB  "
                    f"output {row.output_mb:8.2f} MB  (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                if i == 0:
                    checks[(name, tool)] = check_output(src, dst)
                dst.unlink()
    write(rows, checks, results, runs)
    return rows, checks


def summary(rows: list[Run], checks) -> list[dict]:
    table = []
    names = list(dict.fromkeys(r.input for r in rows))
    for name in names:
        mine = [r for r in rows if r.input == name]
        med = {}
        for tool in ("tagger", "rio-cogeo"):
            runs = [r for r in mine if r.tool == tool]
            med[tool] = dict(
                seconds=statistics.median(r.seconds for r in runs),
                rss=statistics.median(r.peak_rss_mb for r in runs),
                rss_max=max(r.peak_rss_mb for r in runs),
                output=runs[0].output_mb,
                runs=len(runs),
                ok="yes" if not checks.get((name, tool)) else "; ".join(checks[(name, tool)]),
            )
        table.append(
            dict(
                input=name,
                pixels=mine[0].pixels,
                input_mb=mine[0].input_mb,
                **{
                    "tagger_s": med["tagger"]["seconds"],
                    "rio_cogeo_s": med["rio-cogeo"]["seconds"],
                    "time_ratio": med["tagger"]["seconds"] / med["rio-cogeo"]["seconds"],
                    "tagger_rss_mb": med["tagger"]["rss"],
                    "tagger_rss_max_mb": med["tagger"]["rss_max"],
                    "rio_cogeo_rss_mb": med["rio-cogeo"]["rss"],
                    "tagger_out_mb": med["tagger"]["output"],
                    "rio_cogeo_out_mb": med["rio-cogeo"]["output"],
                    "runs": med["tagger"]["runs"],
                    "tagger_valid_lossless": med["tagger"]["ok"],
                    "rio_cogeo_valid_lossless": med["rio-cogeo"]["ok"],
                },
            )
        )
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
        f"Medians of {runs} interleaved runs per tool; each conversion in a fresh process; "
        "peak memory = max RSS of that process.",
        "",
        "| input | pixels | input MB | tagger s | rio-cogeo s | ratio | tagger peak MB "
        "| rio-cogeo peak MB | tagger output MB | rio-cogeo output MB | valid + lossless |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for t in table:
        ok = (
            "yes"
            if t["tagger_valid_lossless"] == t["rio_cogeo_valid_lossless"] == "yes"
            else (
                f"tagger: {t['tagger_valid_lossless']}; rio-cogeo: {t['rio_cogeo_valid_lossless']}"
            )
        )
        lines.append(
            f"| {t['input']} | {t['pixels']:,} | {t['input_mb']:.0f} | {t['tagger_s']:.2f} "
            f"| {t['rio_cogeo_s']:.2f} | {t['time_ratio']:.2f} | {t['tagger_rss_mb']:.0f} "
            f"| {t['rio_cogeo_rss_mb']:.0f} | {t['tagger_out_mb']:.1f} | {t['rio_cogeo_out_mb']:.1f} "
            f"| {ok} |"
        )
    (results / "convert.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
