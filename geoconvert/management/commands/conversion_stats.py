import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from geoconvert.management.commands._output import age, duration, shorten, table
from geoconvert.selectors import conversion_stats


class Command(BaseCommand):
    help = (
        "What the conversions requested in a recent period did: counts per state, median and "
        "95th percentile of run durations and queue waits, the slowest runs and the most "
        "frequent failure reasons. For operators without Prometheus. Exit code 0."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            default="24h",
            help="conversions requested in this last period: 30m, 24h, 7d... (default 24h)",
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=5,
            help="slowest runs and failure reasons to list (default 5)",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print JSON instead of text"
        )

    def handle(self, *args, since="24h", limit=5, as_json=False, **options):
        period = duration(since)
        stats = conversion_stats(since=timezone.now() - period, limit=limit)
        if as_json:
            body = {**stats, "since": stats["since"].isoformat(), "period": since}
            self.stdout.write(json.dumps(body, indent=2))
            return
        write = self.stdout.write
        write(f"Conversions requested since {stats['since']:%Y-%m-%d %H:%M} UTC ({since}): "
              f"{stats['total']}")  # fmt: skip
        write("  ".join(f"{name} {n}" for name, n in stats["counts"].items()))
        write("")
        for label, key, what in (
            ("run duration", "duration_seconds", "finished"),
            ("queue wait", "queue_wait_seconds", "started"),
        ):
            summary = stats[key]
            write(f"{label:<13}p50 {_seconds(summary['p50']):<8}p95 {_seconds(summary['p95']):<8}"
                  f"({summary['count']} {what})")  # fmt: skip
        if stats["slowest"]:
            write("")
            write("Slowest:")
            rows = [[r["task_id"], r["state"], _seconds(r["seconds"]), shorten(r["item"], 40),
                     r["owner"]] for r in stats["slowest"]]  # fmt: skip
            write(table(["TASK", "STATE", "DURATION", "ITEM", "OWNER"], rows))
        if stats["failure_reasons"]:
            write("")
            write("Most frequent failure reasons:")
            rows = [[r["count"], shorten(r["reason"], 100)] for r in stats["failure_reasons"]]
            write(table(["COUNT", "REASON"], rows))


def _seconds(value: float | None) -> str:
    """1.4s under a minute, else as `age` writes it (3m, 2h)."""
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 60 else age(timezone.timedelta(seconds=value))
