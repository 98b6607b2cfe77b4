"""Running management commands in tests: in-process, and as a real `manage.py` process."""

import os
import subprocess
import sys
from io import StringIO

from django.core.management import call_command
from django.core.management.base import CommandError

from tests.fixtures import REPO, _database_url


def run(*args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `manage.py <args>`, run in-process."""
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def run_process(*args, env: dict | None = None, timeout: float = 120):
    """`manage.py <args>` as its own process on the test database (CompletedProcess)."""
    from django.conf import settings

    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": _database_url(),
            "REDIS_URL": settings.CELERY_BROKER_URL,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            **(env or {}),
        },
    )
