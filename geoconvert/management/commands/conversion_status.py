import json

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from geoconvert.management.commands._output import age, shorten, table
from geoconvert.models import Conversion
from geoconvert.selectors import conversion_list_all, conversion_state_counts

DEFAULT_STATES = ("PENDING", "PROGRESS", "FAILURE")


class Command(BaseCommand):
    help = (
        "Show what is queued, running and failed, with stage and progress. Running "
        "conversions whose heartbeat is older than GEOCONVERT_HEARTBEAT_STALE_SECONDS are "
        "flagged SILENT (their worker is probably gone). Exit code 0."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--state",
            action="append",
            choices=Conversion.State.values,
            metavar="STATE",
            help="only this state (repeatable; one of "
            f"{', '.join(Conversion.State.values)}); "
            f"default: {', '.join(DEFAULT_STATES)}",
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=50,
            help="at most this many conversions, newest first (default 50)",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print JSON instead of a table"
        )

    def handle(self, *args, state=None, limit=50, as_json=False, **options):
        states = state or DEFAULT_STATES
        now = timezone.now()
        counts = conversion_state_counts()
        rows = [_row(c, now) for c in conversion_list_all(states=states, limit=limit)]
        if as_json:
            body = {"counts": counts, "states": list(states), "conversions": rows}
            self.stdout.write(json.dumps(body, indent=2))
            return
        self.stdout.write("  ".join(f"{name} {n}" for name, n in counts.items()))
        if not rows:
            self.stdout.write(f"No conversions in {', '.join(states)}.")
            return
        headers = ["TASK", "STATE", "STAGE", "PROGRESS", "TRIES", "ITEM", "OWNER", "AGE",
                   "HEARTBEAT", "NOTE"]  # fmt: skip
        lines = [
            [
                r["task_id"],
                r["state"] + (" SILENT" if r["silent"] else ""),
                r["stage"],
                f"{r['progress']}%",
                r["attempts"],
                shorten(r["item"], 30),
                r["owner"],
                age(timezone.timedelta(seconds=r["age_seconds"])),
                _seconds(r["heartbeat_age_seconds"]),
                shorten(r["error"] or ("cancel requested" if r["cancel_requested"] else ""), 50),
            ]
            for r in rows
        ]
        self.stdout.write("")
        self.stdout.write(table(headers, lines))


def _row(conversion, now) -> dict:
    stale_after = settings.GEOCONVERT["HEARTBEAT_STALE_SECONDS"]
    beat_age = (now - conversion.heartbeat_at).total_seconds() if conversion.heartbeat_at else None
    return {
        "task_id": str(conversion.task_id),
        "state": conversion.state,
        "stage": conversion.stage,
        "progress": conversion.progress,
        "attempts": conversion.attempts,
        "item_id": str(conversion.item_id),
        "item": conversion.item.name,
        "owner": conversion.owner.get_username(),
        "worker": conversion.worker or None,
        "created_at": conversion.created_at.isoformat(),
        "age_seconds": round((now - conversion.created_at).total_seconds(), 1),
        "heartbeat_age_seconds": round(beat_age, 1) if beat_age is not None else None,
        # Running, but its worker stopped reporting: probably dead (the reaper will act).
        "silent": conversion.state == "PROGRESS" and (beat_age is None or beat_age > stale_after),
        "cancel_requested": conversion.cancel_requested,
        "error": conversion.error or None,
    }


def _seconds(value: float | None) -> str:
    return age(timezone.timedelta(seconds=value)) if value is not None else "-"
