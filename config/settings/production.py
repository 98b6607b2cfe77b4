"""Production: secrets are required, HTTPS is assumed (behind a TLS-terminating proxy)."""

from .base import *  # noqa: F403
from .base import DATABASES, LOGGING, MIDDLEWARE, broker_transport_options, database, env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
# localhost too: the containers' health checks ask http://localhost/api/v1/health.
ALLOWED_HOSTS = [*env.list("DJANGO_ALLOWED_HOSTS"), "localhost"]
DATABASES["default"] = database(env.db("DATABASE_URL"))
CELERY_BROKER_URL = env("REDIS_URL")
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)

# SECURITY
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# The health check is plain HTTP from inside the container, and Prometheus scrapes the
# backend on the compose network: neither must be redirected.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/?$", r"^metrics/?$"]
# False only for a local, plain-HTTP compose stack (docker/docker-compose.yml).
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# STATIC FILES
# ------------------------------------------------------------------------------
# https://whitenoise.readthedocs.io/en/stable/django.html
# The admin's static files are served by the app itself (collected into the image), so no
# web server has to share a volume with it.
_AFTER_SECURITY = MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1
MIDDLEWARE = [
    *MIDDLEWARE[:_AFTER_SECURITY],
    "whitenoise.middleware.WhiteNoiseMiddleware",
    *MIDDLEWARE[_AFTER_SECURITY:],
]
STORAGES = {
    **STORAGES,  # noqa: F405 - local files or S3, as TAGGER_STORAGE says
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# MONITORING
# ------------------------------------------------------------------------------
# Prometheus sends it as a bearer token; `/metrics` answers nothing else here.
TAGGER_METRICS_TOKEN = env("TAGGER_METRICS_TOKEN")

# LOGGING
# ------------------------------------------------------------------------------
# JSON lines, for a log collector (LOG_FORMAT=text to read them by eye).
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT

# FLOWER
# ------------------------------------------------------------------------------
# Flower can revoke tasks and shows their arguments: never without a login here.
FLOWER_REQUIRE_AUTH = True
