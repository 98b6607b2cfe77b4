"""Development and `make run`: debug on, a fixed insecure key unless one is given."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-local-development-key-change-me")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])

# STATIC FILES
# ------------------------------------------------------------------------------
# `make run` serves the API with uvicorn (ASGI, for the event streams), which, unlike
# runserver, serves no static files: WhiteNoise does, straight from the apps' folders.
# https://whitenoise.readthedocs.io/en/stable/django.html#using-whitenoise-in-development
MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]  # noqa: F405
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
