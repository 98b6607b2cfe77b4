import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Under ASGI every request runs in a thread of its own, so a persistent connection would
# outlive its thread unused: the web process closes its connections after each request
# (https://docs.djangoproject.com/en/5.2/ref/databases/#persistent-connections). The
# workers, which are not served from here, keep CONN_MAX_AGE's default.
os.environ.setdefault("CONN_MAX_AGE", "0")
application = get_asgi_application()
