"""Throughput against the number of workers: the same folder of files converted as one batch
by 1, 2 and 3 Celery workers of one process each (separate ``celery worker`` processes, as
worker hosts run them), through the whole stack (bench/stack.py: gunicorn, Redis, the
database), with uploads and COGs in an S3 store (moto's server on loopback; ``--storage
local`` for files under MEDIA_ROOT).

Each run: a fresh folder of ``--files`` copies of one ``--size``^2 x 3 orthophoto-like input
(bench/inputs.py) is stored, N workers are started and answer a ping, then the time from the
folder's ``POST convert-to-geo-raster`` to the batch COMPLETED (polled every 50 ms) is
measured. The workers are stopped (warm: a running follow-up task finishes), what they left
queued is purged and the folder deleted. Runs interleave (1, 2, 3, 1, 2, 3, ...), so load
from whatever else runs on the machine hits every N alike; its load average is recorded.
GDAL uses one thread per conversion (GEOCONVERT_NUM_THREADS=1), so each worker process is
one core's worth of conversion: on a machine of C cores, more than C workers cannot help.

Results go to bench/results/scaling.md and scaling.json.

    .venv/bin/python -m bench.scaling [--runs 3] [--files 24] [--size 2000] [--storage s3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import time
from pathlib import Path

from bench import inputs
from bench.batches import convert, make_folder, wait_batch
from bench.convert import BENCH_DIR, PYTHON
from bench.stack import ROOT, Stack, free_port

RESULTS = BENCH_DIR / "results"
WORKERS = (1, 2, 3)
BUCKET = "tagger-bench"


class Moto:
    """moto's S3 server on a loopback port, with the bench's bucket."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "moto.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto's server did not start; see {self.log.name}"
                    ) from None
                time.sleep(0.1)
        import boto3

        boto3.client("s3", **self.credentials()).create_bucket(Bucket=BUCKET)

    def credentials(self) -> dict:
        return {
            "endpoint_url": self.url,
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench-secret",
            "region_name": "us-east-1",
        }

    def env(self) -> dict:
        return {
            "TAGGER_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": self.url,
            "AWS_S3_ADDRESSING_STYLE": "path",
            "AWS_S3_REGION_NAME": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "TAGGER_S3_DELIVERY": "proxy",
        }

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


class Workers:
    """N ``celery worker`` processes of one process each, as `make run` starts one."""

    def __init__(self, stack: Stack, count: int, label: str):
        self.stack, self.processes, self.logs = stack, [], []
        self.nodes = [f"bench{k}-{label}@{socket.gethostname()}" for k in range(count)]
        for node in self.nodes:
            log = open(stack.folder / f"worker-{node.split('@')[0]}.log", "wb")  # noqa: SIM115
            self.logs.append(log)
            command = [PYTHON, "-m", "celery", "-A", "config.celery_app", "worker"]
            command += ["--concurrency", "1", "--loglevel", "WARNING", "--hostname", node]
            self.processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=stack.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        ping = [PYTHON, "-m", "celery", "-A", "config.celery_app", "inspect", "ping", "--json"]
        ping += ["--timeout", "2", "--destination", ",".join(self.nodes)]
        deadline = time.monotonic() + timeout
        waiting = set(self.nodes)
        while waiting:
            done = subprocess.run(
                ping, cwd=ROOT, env=self.stack.env, capture_output=True, text=True
            )
            lines = done.stdout.strip().splitlines()
            try:
                waiting -= set(json.loads(lines[-1])) if lines else set()
            except ValueError:
                pass
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(waiting)} did not answer a ping")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
        for log in self.logs:
            log.close()
        # Follow-up tasks still queued would run in the next measurement.
        subprocess.run(
            [PYTHON, "-m", "celery", "-A", "config.celery_app", "purge", "-f"],
            cwd=ROOT,
            env=self.stack.env,
            capture_output=True,
        )


def measure(stack: Stack, raster: Path, count: int, workers: int, run: int) -> dict:
    client = stack.client()
    folder = make_folder(stack, raster, "bench", f"w{workers}-r{run}", count)
    pool = Workers(stack, workers, f"n{workers}r{run}")
    load = os.getloadavg()[0]
    try:
        started = time.perf_counter()
        accepted, _ = convert(client, folder)
        batch = wait_batch(client, accepted["batch_id"], lambda b: b["state"] == "COMPLETED", 0.05)
        seconds = time.perf_counter() - started
    finally:
        pool.stop()
    if batch["counts"]["SUCCESS"] != count:
        raise RuntimeError(f"batch did not convert every file: {batch['counts']}")
    status, _ = client.request("DELETE", f"/api/v1/tree-items/{folder}")
    assert status == 204, status
    row = {"workers": workers, "run": run, "seconds": seconds, "per_s": count / seconds}
    row["load"] = load
    print(f"  {workers} worker(s), run {run}: {seconds:.1f} s, {count / seconds:.2f}/s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--storage", choices=("s3", "local"), default="s3")
    args = parser.parse_args()
    folder = Path(os.environ.get("BENCH_TMP", "/tmp/tagger-bench-scaling"))
    folder.mkdir(parents=True, exist_ok=True)
    raster = inputs.rgb_imagery(folder / f"rgb-{args.size}.tif", args.size)
    os.environ["GEOCONVERT_NUM_THREADS"] = "1"
    os.environ["TAGGER_SCRATCH_DIR"] = str(folder / "scratch")
    moto = Moto(folder) if args.storage == "s3" else None
    if moto:
        os.environ.update(moto.env())
    rows = []
    try:
        with Stack(folder / "stack", start_worker=False) as stack:
            for run in range(args.runs):
                for workers in WORKERS:
                    rows.append(measure(stack, raster, args.files, workers, run))
    finally:
        if moto:
            moto.stop()
    report = {
        "database": "PostgreSQL" if os.environ.get("BENCH_DATABASE_URL") else "SQLite",
        "storage": "S3 (moto's server)" if moto else "local files",
        "cores": os.cpu_count(),
        "files": args.files,
        "size": args.size,
        "input_mb": round(raster.stat().st_size / 1e6, 1),
        "runs": rows,
    }
    write(report)


def write(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(report, indent=2))
    rows = report["runs"]
    runs = len(rows) // len(WORKERS)
    medians = {
        n: statistics.median(r["seconds"] for r in rows if r["workers"] == n) for n in WORKERS
    }
    lines = [
        f"# Workers and throughput ({report['database']}, {report['storage']}, "
        f"{report['cores']} cores; medians of {runs} runs)",
        "",
        f"A batch of {report['files']} files, each {report['size']}^2 x 3 uint8 "
        f"({report['input_mb']} MB), from the POST to the batch COMPLETED; one GDAL thread "
        "per conversion.",
        "",
        "| worker processes | runs (s) | median | conversions/s | vs 1 worker |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n in WORKERS:
        seconds = ", ".join(f"{r['seconds']:.1f}" for r in rows if r["workers"] == n)
        rate = report["files"] / medians[n]
        speedup = medians[1] / medians[n]
        lines.append(f"| {n} | {seconds} | {medians[n]:.1f} s | {rate:.2f} | {speedup:.2f}x |")
    loads = [r["load"] for r in rows]
    lines += ["", f"Load average at each start: {min(loads):.1f} to {max(loads):.1f}.", ""]
    (RESULTS / "scaling.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
