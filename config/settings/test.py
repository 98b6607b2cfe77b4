"""The test suite: real database and Redis as given by DATABASE_URL / REDIS_URL."""

import os

# The suite's S3 run (TAGGER_STORAGE=s3) uses the bucket of the local S3 server that
# tests/conftest.py starts (moto's server mode); these name it before base reads them.
if os.environ.get("TAGGER_STORAGE", "").strip().lower() == "s3":
    for _name, _value in {
        "AWS_STORAGE_BUCKET_NAME": "tagger-test",
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": "tagger-test-key",
        "AWS_SECRET_ACCESS_KEY": "tagger-test-secret",
        # Downloads are streamed by Django, so the test client reads them as on local
        # storage; tests/tagger/test_storage_s3.py checks the redirects.
        "TAGGER_S3_DELIVERY": "proxy",
    }.items():
        os.environ.setdefault(_name, _value)

from .base import *  # noqa: E402, F403
from .base import DATABASES, VAR_DIR, env  # noqa: E402

SECRET_KEY = env("DJANGO_SECRET_KEY", default="test-only-secret-key")
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "test-media")
TAGGER_SCRATCH_DIR = env.path("TAGGER_SCRATCH_DIR", default=VAR_DIR / "test-scratch")
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
