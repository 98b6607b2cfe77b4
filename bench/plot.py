"""docs/performance-convert.png: time and peak memory against input size, from convert.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"tagger": "#1b7837", "rio-cogeo": "#762a83"}


def run(results: Path, docs: Path) -> None:
    with open(results / "convert.csv") as file:
        rows = list(csv.DictReader(file))
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, marker, label in (("rgb", "o", "RGB uint8"), ("dem", "s", "DEM float32")):
        mine = sorted(
            (r for r in rows if r["input"].startswith(kind)), key=lambda r: int(r["pixels"])
        )
        if not mine:
            continue
        mpx = [int(r["pixels"]) / 1e6 for r in mine]
        for tool, key in (("tagger", "tagger"), ("rio-cogeo", "rio_cogeo")):
            time_ax.plot(
                mpx,
                [float(r[f"{key}_s"]) for r in mine],
                marker=marker,
                color=COLOURS[tool],
                linestyle="-" if kind == "rgb" else "--",
                label=f"{tool}, {label}",
            )
            memory_ax.plot(
                mpx,
                [float(r[f"{key}_rss_mb"]) for r in mine],
                marker=marker,
                color=COLOURS[tool],
                linestyle="-" if kind == "rgb" else "--",
                label=f"{tool}, {label}",
            )
    time_ax.set(
        title="Conversion wall time (median)", xlabel="input size, megapixels", ylabel="seconds"
    )
    memory_ax.set(
        title="Peak memory of the converting process (median)",
        xlabel="input size, megapixels",
        ylabel="max RSS, MB",
    )
    memory_ax.axhline(300, color="grey", linewidth=0.8, linestyle=":")
    memory_ax.text(2, 310, "300 MB target", color="grey", fontsize=8)
    for ax in (time_ax, memory_ax):
        ax.grid(alpha=0.3)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
    time_ax.legend(fontsize=8)
    fig.tight_layout()
    docs.mkdir(exist_ok=True)
    fig.savefig(docs / "performance-convert.png", dpi=110)
    print(docs / "performance-convert.png")
