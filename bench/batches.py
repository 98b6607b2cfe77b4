"""Folder batches and fair sharing, through the whole stack (bench/stack.py: gunicorn, one
Celery worker of two processes, Redis, the database), as production runs it.

Measured:

1. submitting a folder of 10,000 files: the POST's latency, the time until the batch's first
   member starts, and cancelling the batch (all three by the client);
2. throughput: N tiny files converted as one batch POST against N single POSTs in a loop,
   from the first request to the last SUCCESS, interleaved;
3. fairness: user A's batch of tiny files is running; user B submits one conversion. How long
   until B's starts and ends, with the dispatcher's share (GEOCONVERT_USER_MAX_QUEUED=4) and,
   in a second stack, with a share so large that every conversion is in the broker at once
   (what tagger did before the dispatcher: one FIFO queue). B submits twice: as a single
   conversion comes (normal lane), then in the batch's own (low) lane, where priority does
   not help it.

Results go to bench/results/batches.md and batches.json.

    .venv/bin/python -m bench.batches [--runs 3] [--files 10000] [--small 200] [--fair 300]
    .venv/bin/python -m bench.batches --only-fairness --fair 1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from bench.convert import BENCH_DIR
from bench.stack import Client, Stack, tiny_raster

RESULTS = BENCH_DIR / "results"

MAKE_FOLDER = """
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from tagger.services import item_create
owner = get_user_model().objects.get(username={username!r})
data = open({raster!r}, "rb").read()
folder = item_create(owner=owner, name={name!r})
for i in range({count}):
    item_create(owner=owner, name=f"{{i}}.tif", parent=folder, file=ContentFile(data))
print(folder.pk)
"""

MAKE_USER = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
u = get_user_model().objects.create_user({username!r})
print(Token.objects.create(user=u).key)
"""


def make_folder(stack: Stack, raster: Path, username: str, name: str, count: int) -> str:
    code = MAKE_FOLDER.format(username=username, raster=str(raster), name=name, count=count)
    return stack._manage("shell", "-c", code).strip().splitlines()[-1]


def make_user(stack: Stack, username: str) -> Client:
    token = stack._manage("shell", "-c", MAKE_USER.format(username=username))
    return Client(stack.port, token.strip().splitlines()[-1])


def post(client: Client, path: str, body: dict | None = None) -> tuple[int, dict, float]:
    started = time.perf_counter()
    status, data = client.request(
        "POST", path, json.dumps(body or {}).encode(), {"Content-Type": "application/json"}
    )
    return status, data, time.perf_counter() - started


def convert(client: Client, item_id: str, body: dict | None = None) -> tuple[dict, float]:
    status, data, seconds = post(
        client, f"/api/v1/tree-items/{item_id}/convert-to-geo-raster", body
    )
    if status != 202:
        raise RuntimeError(f"convert failed: {status} {data}")
    return data, seconds


def wait_batch(client: Client, batch_id: str, done, interval: float = 0.01, timeout: float = 900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = client.request("GET", f"/api/v1/batches/{batch_id}")
        if done(body):
            return body
        time.sleep(interval)
    raise RuntimeError(f"batch {batch_id} timed out: {body}")


def wait_task(client: Client, task_id: str, states, interval: float = 0.01, timeout: float = 900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = client.request("GET", f"/api/v1/tasks/{task_id}/status")
        if body["state"] in states:
            return body
        time.sleep(interval)
    raise RuntimeError(f"task {task_id} timed out: {body}")


def files_of(client: Client, folder_id: str) -> list[str]:
    ids, page = [], f"/api/v1/tree-items/?parent={folder_id}"
    while page:
        _, body = client.request("GET", page)
        ids += [item["id"] for item in body["results"]]
        page = body["next"] and body["next"].split("://", 1)[1].split("/", 1)[1]
        page = page and "/" + page
    return ids


def submit_big(stack: Stack, client: Client, raster: Path, runs: int, count: int) -> dict:
    rows = []
    for run in range(runs):
        folder = make_folder(stack, raster, "bench", f"big-{run}", count)
        started = time.perf_counter()
        accepted, posted = convert(client, folder)
        first = wait_batch(
            client,
            accepted["batch_id"],
            lambda b: b["counts"]["PROGRESS"] or b["counts"]["SUCCESS"] or b["counts"]["FAILURE"],
        )
        first_start = time.perf_counter() - started
        status, cancelled, cancel_seconds = post(
            client, f"/api/v1/batches/{accepted['batch_id']}/cancel"
        )
        rows.append(
            {
                "total": accepted["total"],
                "post_s": posted,
                "first_start_s": first_start,
                "cancel_s": cancel_seconds,
                "cancelled": cancelled["counts"]["CANCELLED"],
            }
        )
        assert first["total"] == count and status == 200
        print(f"  big batch run {run}: {rows[-1]}", flush=True)
    return {
        "runs": rows,
        **{
            k: statistics.median(r[k] for r in rows)
            for k in ("post_s", "first_start_s", "cancel_s")
        },
    }


def throughput(stack: Stack, client: Client, raster: Path, runs: int, count: int) -> dict:
    rows = {"batch": [], "singles": []}
    for run in range(runs):
        for how in ("batch", "singles"):
            folder = make_folder(stack, raster, "bench", f"{how}-{run}", count)
            started = time.perf_counter()
            if how == "batch":
                accepted, _ = convert(client, folder)
                wait_batch(client, accepted["batch_id"], lambda b: b["state"] == "COMPLETED", 0.05)
            else:
                tasks = [convert(client, item)[0]["task_id"] for item in files_of(client, folder)]
                for task_id in tasks:
                    wait_task(client, task_id, ("SUCCESS", "FAILURE"), 0.05)
            seconds = time.perf_counter() - started
            rows[how].append(seconds)
            print(
                f"  {how} of {count}, run {run}: {seconds:.1f} s ({count / seconds:.1f}/s)",
                flush=True,
            )
    batch, singles = statistics.median(rows["batch"]), statistics.median(rows["singles"])
    return {
        "files": count,
        "batch_s": rows["batch"],
        "singles_s": rows["singles"],
        "batch_median_s": batch,
        "singles_median_s": singles,
        "batch_per_s": count / batch,
        "singles_per_s": count / singles,
    }


def fairness(label: str, share: int, raster: Path, runs: int, count: int, folder: Path) -> dict:
    os.environ["GEOCONVERT_USER_MAX_QUEUED"] = str(share)
    rows = []
    with Stack(folder / f"fair-{share}", worker_concurrency=2) as stack:
        a = stack.client()
        b = make_user(stack, "b")
        (b_folder,) = [make_folder(stack, raster, "b", "b", 2 * runs)]
        b_items = files_of(b, b_folder)
        for run in range(runs):
            big = make_folder(stack, raster, "bench", f"a-{run}", count)
            accepted, _ = convert(a, big)
            wait_batch(a, accepted["batch_id"], lambda x: x["counts"]["SUCCESS"] >= 10, 0.05)
            row = {}
            # B's single conversion as it comes (normal), then one in the batch's own lane.
            for n, lane in enumerate(("normal", "low")):
                started = time.perf_counter()
                task, _ = convert(b, b_items[2 * run + n], {"priority": lane})
                wait_task(b, task["task_id"], ("PROGRESS", "SUCCESS"), 0.01)
                row[f"b_{lane}_start_s"] = time.perf_counter() - started
                wait_task(b, task["task_id"], ("SUCCESS",), 0.01)
                row[f"b_{lane}_end_s"] = time.perf_counter() - started
            _, body = a.request("GET", f"/api/v1/batches/{accepted['batch_id']}")
            post(a, f"/api/v1/batches/{accepted['batch_id']}/cancel")
            row["a_done_by_then"] = body["counts"]["SUCCESS"]
            rows.append(row)
            print(f"  fairness ({label}) run {run}: {rows[-1]}", flush=True)
    return {
        "label": label,
        "share": share,
        "batch_files": count,
        "runs": rows,
        **{
            f"b_{lane}_{edge}_median_s": statistics.median(r[f"b_{lane}_{edge}_s"] for r in rows)
            for lane in ("normal", "low")
            for edge in ("start", "end")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--fair", type=int, default=300)
    parser.add_argument(
        "--only-fairness", action="store_true", help="the fairness runs alone (batches-fair.md)"
    )
    args = parser.parse_args()
    folder = Path(os.environ.get("BENCH_TMP", "/tmp/tagger-bench-batches"))
    folder.mkdir(parents=True, exist_ok=True)
    raster = tiny_raster(folder / "tiny.tif")
    report = {"database": "postgresql" if os.environ.get("BENCH_DATABASE_URL") else "sqlite"}
    if args.only_fairness:
        report["fair"] = fairness("dispatcher, share 4", 4, raster, args.runs, args.fair, folder)
        report["fifo"] = fairness(
            "one FIFO (share 1,000,000)", 1_000_000, raster, args.runs, args.fair, folder
        )
        write_fairness(report, "batches-fair")
        return
    os.environ["GEOCONVERT_USER_MAX_QUEUED"] = "4"
    with Stack(folder / "main", worker_concurrency=2) as stack:
        client = stack.client()
        print("submitting big batches", flush=True)
        report["big"] = submit_big(stack, client, raster, args.runs, args.files)
        print("throughput", flush=True)
        report["throughput"] = throughput(stack, client, raster, args.runs, args.small)
    print("fairness", flush=True)
    report["fair"] = fairness("dispatcher, share 4", 4, raster, args.runs, args.fair, folder)
    report["fifo"] = fairness(
        "one FIFO (share 1,000,000)", 1_000_000, raster, args.runs, args.fair, folder
    )
    write(report)


def write(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batches.json").write_text(json.dumps(report, indent=2))
    big, tp, fair, fifo = report["big"], report["throughput"], report["fair"], report["fifo"]
    lines = [
        f"# Batches and fair sharing ({report['database']}; medians of {len(big['runs'])} runs)",
        "",
        f"| {big['runs'][0]['total']}-file folder | median |",
        "| --- | --- |",
        f"| POST convert-to-geo-raster (202) | {big['post_s']:.2f} s |",
        f"| POST to the first member's start | {big['first_start_s']:.2f} s |",
        f"| POST batches/{{id}}/cancel | {big['cancel_s']:.2f} s |",
        "",
        f"| {tp['files']} tiny files, first request to last SUCCESS | median | per second |",
        "| --- | --- | --- |",
        f"| one batch POST | {tp['batch_median_s']:.1f} s | {tp['batch_per_s']:.1f} |",
        f"| {tp['files']} single POSTs | {tp['singles_median_s']:.1f} s "
        f"| {tp['singles_per_s']:.1f} |",
        "",
        *_fairness_table(fair, fifo),
    ]
    (RESULTS / "batches.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _fairness_table(fair: dict, fifo: dict) -> list[str]:
    lines = [
        f"| user B's one conversion behind user A's {fair['batch_files']}-file batch "
        "| B starts | B ends |",
        "| --- | --- | --- |",
    ]
    for result in (fair, fifo):
        for lane in ("normal", "low"):
            lines.append(
                f"| {result['label']}, B {lane} | {result[f'b_{lane}_start_median_s']:.2f} s "
                f"| {result[f'b_{lane}_end_median_s']:.2f} s |"
            )
    return [*lines, ""]


def write_fairness(report: dict, name: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    fair = report["fair"]
    lines = [
        f"# Fair sharing ({report['database']}; medians of {len(fair['runs'])} runs)",
        "",
        *_fairness_table(fair, report["fifo"]),
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
