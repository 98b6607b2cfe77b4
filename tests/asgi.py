"""What the tests' ASGI live server runs (tests/fixtures.py, `asgi_live_server`): tagger's
ASGI application, with the static files served beside it as runserver and Django's own
live server do, so a browser gets the pages' CSS and scripts without collectstatic."""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from config.asgi import application as django_application

application = ASGIStaticFilesHandler(django_application)
