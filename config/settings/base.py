"""Settings shared by every environment; each value comes from the environment (or `.env`)."""

from pathlib import Path

import environ
import xstatic.pkg.leaflet
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
env.read_env(BASE_DIR / ".env")

# GENERAL
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/ref/settings/
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# DATABASES
# ------------------------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
# Without DATABASE_URL tagger runs on an embedded SQLite file under var/.
def database(config: dict) -> dict:
    """A database setting from django-environ's `config` (DATABASE_URL), with what every
    process needs of it. Production reads DATABASE_URL as required and uses this too."""
    config["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    config["CONN_HEALTH_CHECKS"] = True
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # The API, the worker and beat write concurrently: WAL lets readers proceed during a
        # write and IMMEDIATE transactions avoid lock-upgrade deadlocks (without them, the
        # dispatcher's writes from several processes get "database is locked" at once).
        config["OPTIONS"] = {
            # Seconds a write waits for another writer's lock before "database is locked".
            "timeout": env.float("SQLITE_BUSY_TIMEOUT", default=30.0),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        config["CONN_MAX_AGE"] = 0
    return config


DATABASES = {
    "default": database(env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"))
}

# APPS
# ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "corsheaders",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_celery_beat",
    "tagger",
    "geoconvert",
    "workspace",
    "webhooks",
]

MIDDLEWARE = [
    # First, so that it counts every response, those of the other middleware too.
    "monitoring.http.HttpMetricsMiddleware",
    # The request's id (X-Request-ID) on its log lines, its tasks' lines and its response.
    "tagger.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
# Both `/path` and `/path/` answer directly (the API routes accept either), so no redirect.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# CACHES
# ------------------------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-cache-url
# Throttling counts requests in this cache. The default is per process; production should
# set CACHE_URL=redis://... so every API process shares the counts.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# STATIC AND MEDIA
# ------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
# Leaflet, for the workspace's map, from the xstatic-leaflet package: static/leaflet/...
STATICFILES_DIRS = [("leaflet", xstatic.pkg.leaflet.BASE_DIR)]
# Uploaded originals and converted COGs. Never served directly: downloads go through the
# API, which checks ownership.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")
MEDIA_URL = "media/"
# Where uploads and COGs are kept (tagger/storage.py): "local", files under MEDIA_ROOT (the
# embedded default), or "s3", any S3-compatible object store through django-storages, so that
# worker hosts need no shared disk (docs/scaling.md). Credentials and region come from the
# environment as boto3 reads them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), or from these.
TAGGER_STORAGE = env.str("TAGGER_STORAGE", default="local").strip().lower()
if TAGGER_STORAGE not in ("local", "s3"):
    raise ValueError(f"TAGGER_STORAGE must be 'local' or 's3', not {TAGGER_STORAGE!r}")
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
AWS_S3_ADDRESSING_STYLE = env.str("AWS_S3_ADDRESSING_STYLE", default="") or None
AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="") or None
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="") or None
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="") or None
if TAGGER_STORAGE == "s3" and not AWS_STORAGE_BUCKET_NAME:
    raise ValueError("TAGGER_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME")
# On S3, downloads and signed links answer with a redirect to a presigned URL valid this long
# (the store then serves the bytes and their ranges). "proxy": Django streams them from the
# store instead, for stores the clients cannot reach.
TAGGER_S3_DELIVERY = env.str("TAGGER_S3_DELIVERY", default="redirect").strip().lower()
if TAGGER_S3_DELIVERY not in ("redirect", "proxy"):
    raise ValueError(f"TAGGER_S3_DELIVERY must be redirect or proxy, not {TAGGER_S3_DELIVERY!r}")
TAGGER_S3_PRESIGN_SECONDS = env.int("TAGGER_S3_PRESIGN_SECONDS", default=600)
# Where a worker writes a COG before uploading it to the store (s3 only: on local storage the
# COG is written beside the original). It needs about the largest output plus its overviews.
TAGGER_SCRATCH_DIR = env.path("TAGGER_SCRATCH_DIR", default=VAR_DIR / "scratch")
_S3_OPTIONS = {
    "bucket_name": AWS_STORAGE_BUCKET_NAME,
    "endpoint_url": AWS_S3_ENDPOINT_URL,
    "addressing_style": AWS_S3_ADDRESSING_STYLE,
    "region_name": AWS_S3_REGION_NAME,
    "access_key": AWS_ACCESS_KEY_ID,
    "secret_key": AWS_SECRET_ACCESS_KEY,
    "signature_version": "s3v4",
    # Names are server-generated and unique; an existing key is never written over.
    "file_overwrite": False,
    "default_acl": None,
    "querystring_auth": True,
    "querystring_expire": TAGGER_S3_PRESIGN_SECONDS,
    # Every upload is checked end to end by the store (a SHA-256 per part when multipart).
    "object_parameters": {"ChecksumAlgorithm": "SHA256"},
}
STORAGES = {
    "default": (
        {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _S3_OPTIONS}
        if TAGGER_STORAGE == "s3"
        else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    ),
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# https://docs.djangoproject.com/en/5.2/ref/settings/#file-upload-max-memory-size
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = env("FILE_UPLOAD_TEMP_DIR", default=None)
# Largest accepted upload (bytes); larger requests get 413 before the body is stored.
TAGGER_MAX_UPLOAD_BYTES = env.int("TAGGER_MAX_UPLOAD_BYTES", default=2 * 1024**3)
FILE_UPLOAD_HANDLERS = [
    "tagger.api.uploads.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# DOWNLOADS, LINKS AND TILES
# ------------------------------------------------------------------------------
# Set behind nginx (the production overlay does): after Django has checked access, a download is
# answered with `X-Accel-Redirect: <prefix><file>` and nginx sends the bytes (ranges too)
# from its `internal` location of that prefix (docker/nginx.conf). Empty: Django sends them.
TAGGER_ACCEL_REDIRECT_PREFIX = env("TAGGER_ACCEL_REDIRECT_PREFIX", default="") or None
# How long the signed tile URLs in a TileJSON document stay valid (seconds).
TAGGER_TILE_LINK_SECONDS = env.int("TAGGER_TILE_LINK_SECONDS", default=24 * 3600)
# Where nginx caches rendered tiles (docker/nginx.conf's tile location; the production overlay
# sets 60): tiles answered to credentials nginx keys its cache on (a tile token in the URL,
# an Authorization header) carry `X-Accel-Expires: <seconds>`, never beyond the token's
# expiry, and nginx answers the same request with the same credentials from its cache for
# that long. It is also how long a revoked token or a deleted item's tiles stay served.
# 0: no X-Accel-Expires, nothing cached.
TAGGER_TILE_PROXY_CACHE_SECONDS = env.int("TAGGER_TILE_PROXY_CACHE_SECONDS", default=0)
# Open COGs each process keeps idle for the next tile (geoconvert.raster.pool): a map asks
# for dozens of tiles of one COG, and the open, its header reads and GDAL's cached blocks of
# it then serve them all. 0: every tile opens and closes its COG.
TAGGER_TILE_OPEN_DATASETS = env.int("TAGGER_TILE_OPEN_DATASETS", default=32)
# On: a tile at an overview zoom is warped from the overview it needs, opened alone; off,
# from the full-resolution dataset, whose warped VRT's overviews GDAL builds for each tile
# (~2x the time).
TAGGER_TILE_OVERVIEW_READS = env.bool("TAGGER_TILE_OVERVIEW_READS", default=True)

# WORKSPACE
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/topics/auth/default/#module-django.contrib.auth.views
# The browser workspace at / (workspace/): its sign-in page, and where signing in and out lead.
LOGIN_URL = "workspace:login"
LOGIN_REDIRECT_URL = "workspace:home"
LOGOUT_REDIRECT_URL = "workspace:login"
# A basemap under the rasters on the workspace's map: an XYZ URL template such as
# "https://tile.openstreetmap.org/{z}/{x}/{y}.png", with its attribution (HTML). Empty by
# default: the map then shows the rasters alone and needs no internet access.
TAGGER_MAP_BASEMAP_URL = env("TAGGER_MAP_BASEMAP_URL", default="")
TAGGER_MAP_BASEMAP_ATTRIBUTION = env("TAGGER_MAP_BASEMAP_ATTRIBUTION", default="")

# CORS
# ------------------------------------------------------------------------------
# https://github.com/adamchainz/django-cors-headers
# Browser apps on these origins (e.g. "https://maps.example.org") may read downloads, signed
# links and tiles: geotiff.js, OpenLayers and Leaflet send Range and read Content-Range;
# and follow conversions (the event streams and their links).
CORS_ALLOWED_ORIGINS = env.list("TAGGER_CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = (
    r"^/api/v1/(tree-items/[^/]+/"
    r"(download|download-link|tilejson\.json|thumbnail\.png|tiles/\d+/\d+/\d+(@2x)?\.png)"
    r"|events(/link)?|tasks/[^/]+/events)/?$"
)
CORS_ALLOW_METHODS = ("GET", "HEAD", "OPTIONS", "POST")
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "last-event-id",
    "range",
)
CORS_EXPOSE_HEADERS = (
    "accept-ranges",
    "content-disposition",
    "content-length",
    "content-range",
    "etag",
    "last-modified",
)
CORS_PREFLIGHT_MAX_AGE = 3600

# DJANGO REST FRAMEWORK
# ------------------------------------------------------------------------------
# https://www.django-rest-framework.org/api-guide/settings/
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": (
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ),
    "DEFAULT_PERMISSION_CLASSES": ("rest_framework.permissions.IsAuthenticated",),
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "DEFAULT_FILTER_BACKENDS": ("django_filters.rest_framework.DjangoFilterBackend",),
    "DEFAULT_SCHEMA_CLASS": "tagger.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "tagger.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# Conversions one user may request per period (429 beyond it), e.g. "60/min", "1000/day".
# Fair sharing (geoconvert/services/dispatch.py), not this rate, protects the workers: it
# only has to stop a runaway client, and lets a scripted loop over a few hundred files pass.
GEOCONVERT_CONVERT_RATE = env("GEOCONVERT_CONVERT_RATE", default="600/min")
SPECTACULAR_SETTINGS = {
    "TITLE": "tagger API",
    "DESCRIPTION": (
        "A tree of items and background conversion of rasters to Cloud-Optimized GeoTIFFs."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `state`: each its own enum in the schema.
    "ENUM_NAME_OVERRIDES": {
        "TaskStateEnum": "geoconvert.models.Conversion.State",
        "BatchStateEnum": "geoconvert.models.ConversionBatch.State",
    },
}

# CELERY
# ------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
# Without REDIS_URL, `make run` and the tests start an embedded Redis on this socket.
REDIS_URL = env("REDIS_URL", default=f"redis+socket://{VAR_DIR / 'redis.sock'}")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
# Where conversion events are streamed (geoconvert/services/events.py): the broker's Redis
# unless set. A sentinel:// URL uses REDIS_SENTINEL_MASTER as the broker does.
TAGGER_EVENTS_REDIS_URL = env("TAGGER_EVENTS_REDIS_URL", default=REDIS_URL)
REDIS_SENTINEL_MASTER = env("REDIS_SENTINEL_MASTER", default="mymaster")
# A comment line on every open event stream this often, so proxies keep it open.
TAGGER_EVENTS_HEARTBEAT_SECONDS = env.float("TAGGER_EVENTS_HEARTBEAT_SECONDS", default=15.0)
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = env.int("CELERY_RESULT_EXPIRES", default=7 * 24 * 3600)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
# Conversions (long, memory-hungry) and light tasks (beat's housekeeping) have queues of
# their own, so housekeeping never waits behind a queue of large rasters. The queue names
# are spelled here only: a worker started without -Q consumes every queue below, and a
# deployment can run separate workers for each (`-Q geo_processing`, `-Q default`).
CONVERSION_QUEUE = "geo_processing"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = tuple(
    Queue(name, routing_key=name) for name in (CONVERSION_QUEUE, CELERY_TASK_DEFAULT_QUEUE)
)
CELERY_TASK_ROUTES = {
    "geoconvert.tasks.convert_to_geo_raster": {"queue": CONVERSION_QUEUE},
    "geoconvert.tasks.reap_stale_conversions": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "geoconvert.tasks.release_conversions": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    # Memory-bounded and seconds long: beside housekeeping, not behind a queue of conversions.
    "geoconvert.tasks.describe_geo_raster": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "geoconvert.tasks.remove_orphaned_files": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "celery.backend_cleanup": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "webhooks.tasks.deliver_webhook": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "webhooks.tasks.sweep_webhook_deliveries": {"queue": CELERY_TASK_DEFAULT_QUEUE},
}
# No STARTED state: a conversion records PROGRESS itself once it holds the work, and a
# duplicate delivery must not overwrite a finished task's state in the backend.
CELERY_TASK_TRACK_STARTED = False
# Fail fast when the broker is down: the API answers 503 instead of hanging.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.25,
    "interval_max": 0.5,
}
CELERY_TASK_ACKS_LATE = True
# A worker killed mid-task (OOM, SIGKILL) gives the message back to the queue.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.int("CELERY_WORKER_MAX_TASKS_PER_CHILD", default=1000)
# Sized for the largest rasters the pixel cap admits.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3900)
# Events let Flower (and `celery events`) follow tasks live: sent, received, started,
# succeeded/failed/revoked. (The same as starting the worker with `-E`.)
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The worker logs through Django's LOGGING (JSON lines in production, with each task's
# context), not a root handler of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's consumer, except that it survives a Redis broker that dies (config/celery_consumer.py).
CELERY_WORKER_CONSUMER = "config.celery_consumer:Consumer"


def broker_transport_options(broker_url: str) -> dict:
    """kombu's transport options for `broker_url`.

    Redis re-delivers an unacknowledged message after the visibility timeout. With acks_late
    a conversion is acknowledged only when it ends, so the timeout must outlast the hard
    time limit or a long conversion would be delivered to a second worker while running.

    Redis Sentinel: REDIS_URL=sentinel://host1:26379;sentinel://host2:26379/0 names the
    sentinels, which tell every process where the current primary is (after a failover too).
    https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html
    """
    options = {
        "visibility_timeout": env.int(
            "CELERY_VISIBILITY_TIMEOUT", default=CELERY_TASK_TIME_LIMIT + 600
        ),
    }
    if broker_url.startswith("sentinel://"):
        options["master_name"] = REDIS_SENTINEL_MASTER
        if env("REDIS_SENTINEL_PASSWORD", default=""):
            options["sentinel_kwargs"] = {"password": env("REDIS_SENTINEL_PASSWORD")}
    return options


CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)
# django-celery-beat's database scheduler, without its habit of re-creating the result
# cleanup entry at start (see geoconvert/beat.py): the schedule is edited in the admin.
CELERY_BEAT_SCHEDULER = "geoconvert.beat:DatabaseScheduler"

# FLOWER
# ------------------------------------------------------------------------------
# https://flower.readthedocs.io/en/latest/auth.html
# When true, Flower refuses to start without a login (see flowerconfig.py).
FLOWER_REQUIRE_AUTH = env.bool("FLOWER_REQUIRE_AUTH", default=False)

# MONITORING
# ------------------------------------------------------------------------------
# https://prometheus.github.io/client_python/
# `/metrics` (monitoring/views.py): with a token, only `Authorization: Bearer <token>` is
# answered; without one, only clients on the loopback interface. Production requires it.
TAGGER_METRICS_TOKEN = env("TAGGER_METRICS_TOKEN", default="")

# WEBHOOKS
# ------------------------------------------------------------------------------
# https://www.standardwebhooks.com/ (docs/webhooks.md)
# Endpoint URLs whose host resolves to a private, loopback, link-local, multicast, reserved
# or unspecified address are refused, at registration and again at each delivery. True
# allows them (a development machine whose receiver runs on localhost).
TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("TAGGER_WEBHOOK_ALLOW_PRIVATE_URLS", default=False)
# Seconds an endpoint has to answer (connecting, sending, and each read of the answer).
TAGGER_WEBHOOK_TIMEOUT_SECONDS = env.float("TAGGER_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# The waits before each retry of a failed delivery (about a day in all), each with up to
# 20% jitter; after the last one the delivery is marked FAILED.
TAGGER_WEBHOOK_RETRY_SECONDS = env.list(
    "TAGGER_WEBHOOK_RETRY_SECONDS",
    cast=float,
    default=[5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600],
)
# How long a worker holds a delivery while it sends an attempt; a worker killed mid-attempt
# leaves a lease that runs out, and the sweep sends the delivery again. Longer than the
# timeout, so a live worker's attempt is never sent twice at once.
TAGGER_WEBHOOK_LEASE_SECONDS = env.float("TAGGER_WEBHOOK_LEASE_SECONDS", default=60.0)
# The sweep (beat, every 10 s) re-sends the task of a due delivery not taken this long after
# its task was sent (the broker was down at commit, the message was lost with its worker).
TAGGER_WEBHOOK_SWEEP_GRACE_SECONDS = env.float("TAGGER_WEBHOOK_SWEEP_GRACE_SECONDS", default=30.0)

# GEOCONVERT
# ------------------------------------------------------------------------------
# The conversion engine's options and limits: each GEOCONVERT_* variable that is set
# overrides the engine's own default (geoconvert.raster.CogOptions and Limits, where every
# default is defined); unset ones are left out. See docs/configuration.md.
_ENGINE_SETTINGS = {
    "MAX_PIXELS": env.int,
    "MAX_UNCOMPRESSED_BYTES": env.int,
    "COMPRESSION": env.str,
    "LEVEL": env.int,
    "PREDICTOR": env.bool,
    "BLOCKSIZE": env.int,
    "OVERVIEW_RESAMPLING": env.str,
    # A number of threads, or ALL_CPUS.
    "NUM_THREADS": lambda name: (lambda v: int(v) if v.isdigit() else v)(env.str(name)),
    "CACHE_MB": env.int,
}
GEOCONVERT = {
    key: read(f"GEOCONVERT_{key}")
    for key, read in _ENGINE_SETTINGS.items()
    if env.str(f"GEOCONVERT_{key}", default="") != ""
}
# How the conversions run, around the engine.
GEOCONVERT |= {
    # Attempts before a conversion that keeps failing transiently (or killing its worker)
    # is marked FAILED.
    "MAX_ATTEMPTS": env.int("GEOCONVERT_MAX_ATTEMPTS", default=3),
    # How often a running conversion re-reads its cancel flag and records a heartbeat.
    "HEARTBEAT_SECONDS": env.float("GEOCONVERT_HEARTBEAT_SECONDS", default=2.0),
    # A running conversion whose heartbeat is older than this is presumed dead: a redelivered
    # message may take it over, and the reaper fails or re-queues it.
    "HEARTBEAT_STALE_SECONDS": env.float("GEOCONVERT_HEARTBEAT_STALE_SECONDS", default=30.0),
    # Leftover `.partial` files and directories of deleted items are removed once older
    # than this; longer than the hard time limit, so a running conversion's file is safe.
    "ORPHAN_MIN_AGE_SECONDS": env.int(
        "GEOCONVERT_ORPHAN_MIN_AGE_SECONDS", default=max(6 * 3600, CELERY_TASK_TIME_LIMIT + 600)
    ),
    # Fair sharing: at most this many of one user's conversions are in the broker at once;
    # the rest wait in the database and are released across users in turn.
    "USER_MAX_QUEUED": env.int("GEOCONVERT_USER_MAX_QUEUED", default=4),
    # How far ahead a conversion may be scheduled (`run_at`).
    "MAX_SCHEDULE_DAYS": env.int("GEOCONVERT_MAX_SCHEDULE_DAYS", default=30),
}

# LOGGING
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/topics/logging/
# https://nhairs.github.io/python-json-logger/
# "text" (readable; `make run`) or "json" (one JSON object a line; production's default).
# Each line carries the API request's id and, for a conversion, its task id, item id,
# user id and attempt (tagger/logs.py).
LOG_FORMAT = env("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "tagger.logs.ContextFilter"}},
    "formatters": {
        "text": {
            "()": "tagger.logs.TextFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s %(item_id)s "
            "%(user_id)s %(attempt)s %(process)d",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"rasterio": {"level": "WARNING"}},
}
