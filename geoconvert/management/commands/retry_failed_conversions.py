import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from geoconvert.management.commands._output import EXIT_FAILED, EXIT_USAGE, duration, shorten, table
from geoconvert.selectors import conversion_retry_candidates
from geoconvert.services.conversions import conversion_retry
from tagger.errors import ApplicationError
from tagger.selectors import as_uuid


class Command(BaseCommand):
    help = (
        "Re-dispatch failed conversions as new attempts (the same service as the API's and "
        "the admin's retry). Only the latest conversion of each item, and only one not "
        "retried before. Exit code 0 when every selected conversion was retried (or would "
        "be, with --dry-run), 1 when some were refused, 2 on bad arguments."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            help="only conversions created within this long (e.g. 30m, 7d; 0 for all); "
            "default 24h, or all with --item, --task or --batch",
        )
        parser.add_argument("--item", metavar="ID", help="only conversions of this item")
        parser.add_argument("--task", metavar="ID", help="only this conversion (task id)")
        parser.add_argument("--batch", metavar="ID", help="only members of this folder batch")
        parser.add_argument(
            "--include-cancelled", action="store_true", help="retry cancelled conversions too"
        )
        parser.add_argument("--limit", type=int, help="retry at most this many, oldest first")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would be retried; change nothing"
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print JSON instead of a table"
        )

    def handle(
        self, *args, since, item, task, batch, include_cancelled, limit, dry_run, as_json, **options
    ):
        for name, value in (("--item", item), ("--task", task), ("--batch", batch)):
            if value is not None and as_uuid(value) is None:
                raise CommandError(f"{name} must be a UUID, not {value!r}.", returncode=EXIT_USAGE)
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.", returncode=EXIT_USAGE)
        window = duration(since or ("0" if item or task or batch else "24h"))
        candidates = list(
            conversion_retry_candidates(
                since=timezone.now() - window if window.total_seconds() else None,
                item_id=item,
                task_id=task,
                batch_id=batch,
                include_cancelled=include_cancelled,
                limit=limit,
            )
        )
        results = []
        for conversion in candidates:
            outcome = {
                "task_id": str(conversion.task_id),
                "item_id": str(conversion.item_id),
                "item": conversion.item.name,
                "state": conversion.state,
                "error": conversion.error or None,
                "new_task_id": None,
            }
            if dry_run:
                outcome["action"] = "would retry"
            else:
                try:
                    new = conversion_retry(conversion=conversion)
                    outcome.update(action="retried", new_task_id=str(new.task_id))
                except ApplicationError as exc:
                    outcome.update(action="refused", reason=exc.message)
            results.append(outcome)

        refused = [r for r in results if r["action"] == "refused"]
        verb = "would be retried" if dry_run else "retried"
        summary = {
            "selected": len(results),
            "retried": sum(r["action"] == "retried" for r in results),
            "would_retry": sum(r["action"] == "would retry" for r in results),
            "refused": len(refused),
            "dry_run": dry_run,
        }
        if as_json:
            self.stdout.write(json.dumps({"summary": summary, "conversions": results}, indent=2))
        else:
            if results:
                self.stdout.write(
                    table(
                        ["TASK", "STATE", "ITEM", "ACTION", "NEW TASK / REASON", "ERROR"],
                        [
                            [
                                r["task_id"],
                                r["state"],
                                shorten(r["item"], 30),
                                r["action"],
                                r.get("reason") or r["new_task_id"] or "",
                                shorten(r["error"] or "", 40),
                            ]
                            for r in results
                        ],
                    )
                )
            done = summary["would_retry"] if dry_run else summary["retried"]
            self.stdout.write(
                f"{len(results)} conversion(s) selected, {done} {verb}, {len(refused)} refused"
                + (" (dry run: nothing changed)." if dry_run else ".")
            )
        if refused:
            raise CommandError(
                f"{len(refused)} conversion(s) could not be retried.", returncode=EXIT_FAILED
            )
