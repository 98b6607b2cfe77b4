"""Container health checks: exit 0 when the service does its job.

python docker/healthcheck.py backend   ->  http://localhost:8000/api/v1/health answers 200
python docker/healthcheck.py flower    ->  http://localhost:5555[/FLOWER_URL_PREFIX]/healthcheck
python docker/healthcheck.py beat      ->  beat ran a periodic task in the last
                                           BEAT_SILENT_SECONDS (600): a beat whose process
                                           is up but no longer sends anything is unhealthy
"""

import os
import sys
import urllib.request


def url_for(service: str) -> str:
    if service == "backend":
        return "http://localhost:8000/api/v1/health"
    if service == "flower":
        prefix = os.environ.get("FLOWER_URL_PREFIX", "").strip("/")
        return f"http://localhost:5555/{prefix + '/' if prefix else ''}healthcheck"
    raise SystemExit(f"unknown service {service!r}")


def beat_is_sending(max_silence: float) -> bool:
    """Beat records each periodic task's last run in the database (synced every few
    minutes); the reaper alone runs every minute."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    django.setup()
    from django.db.models import Max
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    last = PeriodicTask.objects.filter(enabled=True).aggregate(last=Max("last_run_at"))["last"]
    if last is None or (timezone.now() - last).total_seconds() > max_silence:
        print(f"beat has sent nothing since {last}", file=sys.stderr)
        return False
    return True


def main() -> int:
    if sys.argv[1] == "beat":
        return 0 if beat_is_sending(float(os.environ.get("BEAT_SILENT_SECONDS", 600))) else 1
    url = url_for(sys.argv[1])
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:  # URLError and HTTPError (a 503 from /api/v1/health) included
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
