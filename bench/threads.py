"""What a conversion costs with every worker process busy: CPU seconds and wall time per
conversion, by the COG write's thread count.

    .venv/bin/python -m bench.threads                       # rgb-5000, 3 rounds
    .venv/bin/python -m bench.threads --input rgb-10000 --rounds 5 --threads 1,auto,3

Each round starts ``--processes`` (default: the worker's default concurrency, 2) conversions
of the same input at once, each in its own ``bench/engine_convert.py`` process (the engine
alone, as one worker process runs it), once per thread setting of ``--threads``: a number,
``ALL_CPUS``, or ``auto``, what a worker gives each conversion
(geoconvert.services.engine.threads_per_process). The order of the settings turns round
between rounds. CPU time is each process's user + system time
(``os.wait4``). Results: bench/results/threads.md and threads.json; see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import inputs  # noqa: E402


def _threads_auto(processes: int) -> int:
    # The worker's rule, without Django: the same function the service calls.
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    django.setup()
    from geoconvert.services.engine import available_cores, threads_per_process

    return threads_per_process(available_cores(), processes)


def _round(src: Path, out: Path, threads: str, processes: int) -> dict:
    """``processes`` conversions at once: their wall times and CPU seconds."""
    started = time.monotonic()
    procs = {}
    for index in range(processes):
        dst = out / f"{threads}-{index}.tif"
        dst.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "engine_convert.py"),
                str(src),
                str(dst),
                f"num_threads={threads}",
            ]  # fmt: skip
        )
        procs[proc.pid] = (proc, time.monotonic())
    walls, cpus = [], []
    while procs:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in procs:
            continue
        proc, began = procs.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"engine_convert.py failed ({proc.returncode}) with {threads}")
        walls.append(time.monotonic() - began)
        cpus.append(usage.ru_utime + usage.ru_stime)
    return {
        "threads": threads,
        "batch_wall_s": time.monotonic() - started,
        "wall_s": walls,
        "cpu_s": cpus,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", default="rgb-5000", choices=sorted(inputs.INPUTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", default="1,auto,ALL_CPUS", help="comma-separated")
    parser.add_argument("--folder", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    src = inputs.ensure(args.input, args.folder)
    out = args.folder / "threads"
    out.mkdir(parents=True, exist_ok=True)
    auto = str(_threads_auto(args.processes))
    settings = list(dict.fromkeys(auto if t == "auto" else t for t in args.threads.split(",")))
    runs = []
    for number in range(args.rounds):
        shift = number % len(settings)
        for threads in settings[shift:] + settings[:shift]:
            runs.append(_round(src, out, threads, args.processes))
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for threads in settings:
        mine = [r for r in runs if r["threads"] == threads]
        summary[threads] = {
            "cpu_s_per_conversion": statistics.median(c for r in mine for c in r["cpu_s"]),
            "wall_s_per_conversion": statistics.median(w for r in mine for w in r["wall_s"]),
            "batch_wall_s": statistics.median(r["batch_wall_s"] for r in mine),
        }
    first = summary[settings[0]]
    lines = [
        f"# Threads per conversion, {args.processes} conversions at once ({args.input})",
        "",
        f"{args.rounds} rounds, {os.cpu_count()} CPUs, load average at the end: "
        f"{os.getloadavg()[0]:.2f}. Medians over every conversion of every round.",
        "",
        "| threads | CPU s / conversion | wall s / conversion | wall s for the batch |",
        "|---|---|---|---|",
    ]
    for threads, row in summary.items():
        label = f"{threads} (auto)" if threads == auto else threads
        lines.append(
            f"| {label} | {row['cpu_s_per_conversion']:.2f} | "
            f"{row['wall_s_per_conversion']:.2f} | {row['batch_wall_s']:.2f} |"
        )
    lines += ["", f"Against {settings[0]} thread(s), side by side in the same rounds:", ""]
    for threads, row in list(summary.items())[1:]:
        cpu = row["cpu_s_per_conversion"] / first["cpu_s_per_conversion"]
        wall = row["batch_wall_s"] / first["batch_wall_s"]
        lines.append(f"- {threads}: CPU {cpu:.2f}x, batch wall {wall:.2f}x")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "threads.json").write_text(
        json.dumps({"runs": runs, "summary": summary}, indent=1)
    )
    (args.results / "threads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
