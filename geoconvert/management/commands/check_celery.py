import json

from django.core.management.base import BaseCommand, CommandError

from geoconvert import health
from geoconvert.management.commands._output import EXIT_FAILED


class Command(BaseCommand):
    help = (
        "Check what conversions need, one line per check: the database, the broker, the "
        "result backend (a probe result is written and removed), the workers (ping, and "
        "which queues they consume) and beat's schedule. Run it when tasks stay PENDING. "
        "Exit code 0 when every check passes, 1 otherwise."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout",
            type=float,
            default=2.0,
            help="seconds to wait for the broker and the workers (default 2)",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print JSON instead of lines"
        )

    def handle(self, *args, timeout, as_json, **options):
        checks = [health.check_database(migrations=True), health.check_broker(timeout)]
        broker_ok = checks[-1].ok
        checks.append(health.check_result_backend())
        if broker_ok:
            checks.append(health.check_workers(timeout))
        else:
            checks.append(health.Check("workers", False, "not asked: the broker is unreachable"))
        checks.append(health.check_beat_schedule())

        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "ok": all(c.ok for c in checks),
                        "checks": [
                            {"name": c.name, "ok": c.ok, "detail": c.detail, **c.data}
                            for c in checks
                        ],
                    },
                    indent=2,
                )
            )
        else:
            width = max(len(c.name) for c in checks)
            for check in checks:
                status = self.style.SUCCESS("OK  ") if check.ok else self.style.ERROR("FAIL")
                self.stdout.write(f"{status}  {check.name.ljust(width)}  {check.detail}")
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise CommandError(
                f"{len(failed)} check(s) failed: {', '.join(failed)}.", returncode=EXIT_FAILED
            )
