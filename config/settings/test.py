"""The test suite: real database and Redis as given by DATABASE_URL / REDIS_URL."""

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR, env

SECRET_KEY = env("DJANGO_SECRET_KEY", default="test-only-secret-key")
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "test-media")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the Celery worker the integration tests start is another process.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

# Cancel requests and dead runs are noticed within a second in tests.
GEOCONVERT = {
    **GEOCONVERT,  # noqa: F405
    "HEARTBEAT_SECONDS": env.float("GEOCONVERT_HEARTBEAT_SECONDS", default=0.5),
    "HEARTBEAT_STALE_SECONDS": env.float("GEOCONVERT_HEARTBEAT_STALE_SECONDS", default=5.0),
}

# The tests' receivers listen on 127.0.0.1; retries, timeouts and leases take seconds.
TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS", default=True)
TAGGER_WEBHOOK_TIMEOUT_SECONDS = env.float("TAGGER_WEBHOOK_TIMEOUT_SECONDS", default=2.0)
TAGGER_WEBHOOK_RETRY_SECONDS = env.list(
    "TAGGER_WEBHOOK_RETRY_SECONDS", cast=float, default=[0.5, 0.5, 0.5, 0.5]
)
TAGGER_WEBHOOK_LEASE_SECONDS = env.float("TAGGER_WEBHOOK_LEASE_SECONDS", default=5.0)
TAGGER_WEBHOOK_SWEEP_GRACE_SECONDS = env.float("TAGGER_WEBHOOK_SWEEP_GRACE_SECONDS", default=1.0)
