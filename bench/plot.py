"""docs/performance-convert.png: wall time and peak memory against input size, per tool,
from bench/results/convert.csv (medians)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"tagger": "#1b7837", "tagger-zstd": "#7fbf7b", "rio-cogeo": "#762a83"}
KINDS = (("rgb", "o", "-", "RGB uint8"), ("dem", "s", "--", "DEM float32"))


def run(results: Path, docs: Path) -> None:
    with open(results / "convert.csv") as file:
        rows = list(csv.DictReader(file))
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(11, 4.4))
    for tool in dict.fromkeys(r["tool"] for r in rows):
        for kind, marker, style, label in KINDS:
            mine = sorted(
                (r for r in rows if r["tool"] == tool and r["input"].startswith(kind)),
                key=lambda r: int(r["pixels"]),
            )
            if not mine:
                continue
            mpx = [int(r["pixels"]) / 1e6 for r in mine]
            colour = COLOURS.get(tool, "grey")
            name = f"{tool}, {label}"
            time_ax.plot(
                mpx,
                [float(r["seconds"]) for r in mine],
                marker=marker,
                linestyle=style,
                color=colour,
                label=name,
            )
            memory_ax.plot(
                mpx,
                [float(r["peak_rss_mb"]) for r in mine],
                marker=marker,
                linestyle=style,
                color=colour,
                label=name,
            )
    time_ax.set(title="Conversion wall time (median)", xlabel="input, megapixels", ylabel="seconds")
    memory_ax.set(
        title="Peak memory of the converting process (median)",
        xlabel="input, megapixels",
        ylabel="max RSS, MB",
    )
    memory_ax.axhline(300, color="grey", linewidth=0.8, linestyle=":")
    memory_ax.text(1, 320, "300 MB target", color="grey", fontsize=8)
    for ax in (time_ax, memory_ax):
        ax.grid(alpha=0.3)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
    time_ax.legend(fontsize=7)
    fig.tight_layout()
    docs.mkdir(exist_ok=True)
    fig.savefig(docs / "performance-convert.png", dpi=110)
    print(docs / "performance-convert.png")
