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
        stale_after = timezone.timedelta(seconds=settings.GEOCONVERT["HEARTBEAT_STALE_SECONDS"])
        counts = conversion_state_counts()
        rows = []
        for c in conversion_list_all(states=states, limit=limit):
            beat_age = now - c.heartbeat_at if c.heartbeat_at else None
            rows.append(
                {
                    "task_id": str(c.task_id),
                    "state": c.state,
                    "stage": c.stage,
                    "progress": c.progress,
                    "attempts": c.attempts,
                    "item_id": str(c.item_id),
                    "item": c.item.name,
                    "owner": c.owner.get_username(),
                    "worker": c.worker or None,
                    "created_at": c.created_at.isoformat(),
                    "heartbeat_age_seconds": round(beat_age.total_seconds(), 1)
                    if beat_age
                    else None,
                    "silent": c.state == "PROGRESS"
                    and (beat_age is None or beat_age > stale_after),
                    "cancel_requested": c.cancel_requested,
                    "error": c.error or None,
                }
            )
        if as_json:
            self.stdout.write(
                json.dumps(
                    {"counts": counts, "states": list(states), "conversions": rows}, indent=2
                )
            )
            return
        self.stdout.write("  ".join(f"{name} {n}" for name, n in counts.items()))
        if not rows:
            self.stdout.write(f"No conversions in {', '.join(states)}.")
            return
        self.stdout.write("")
        self.stdout.write(
            table(
                [
                    "TASK",
                    "STATE",
                    "STAGE",
                    "PROGRESS",
                    "TRIES",
                    "ITEM",
                    "OWNER",
                    "AGE",
                    "HEARTBEAT",
                    "NOTE",
                ],
                [
                    [
                        r["task_id"],
                        r["state"] + (" SILENT" if r["silent"] else ""),
                        r["stage"],
                        f"{r['progress']}%",
                        r["attempts"],
                        shorten(r["item"], 30),
                        r["owner"],
                        age(now - timezone.datetime.fromisoformat(r["created_at"])),
                        age(timezone.timedelta(seconds=r["heartbeat_age_seconds"]))
                        if r["heartbeat_age_seconds"] is not None
                        else "-",
                        shorten(
                            r["error"] or ("cancel requested" if r["cancel_requested"] else ""), 50
                        ),
                    ]
                    for r in rows
                ],
            )
        )
