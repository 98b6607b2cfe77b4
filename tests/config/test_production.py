"""Production settings: Django's deployment checklist passes, and Flower needs a login."""

import os
import secrets
import subprocess
import sys

import pytest

from config.flower import FlowerWithoutLogin, require_login
from tests.fixtures import REPO


def _production_env(tmp_path, **extra) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        "DJANGO_ALLOWED_HOSTS": "tagger.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "redis://127.0.0.1:1/0",  # never contacted
        "TAGGER_METRICS_TOKEN": secrets.token_urlsafe(32),
        **extra,
    }
    env.pop("FLOWER_BASIC_AUTH", None)
    env.pop("FLOWER_AUTH", None)
    return env


def test_production_settings_pass_check_deploy_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=_production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output


def test_flower_refuses_to_start_in_production_without_a_login(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config.celery_app",
            "flower",
            "--port=0",
            "--address=127.0.0.1",
        ],
        cwd=REPO,
        env=_production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Refusing to start Flower without a login" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("required", "basic_auth", "auth", "refused"),
    [
        (True, [], "", True),
        (True, None, "", True),
        (True, ["admin:s3cret"], "", False),
        (True, [], r".*@example\.com", False),
        (False, [], "", False),
    ],
)
def test_login_is_required_only_where_settings_say(settings, required, basic_auth, auth, refused):
    settings.FLOWER_REQUIRE_AUTH = required
    if refused:
        with pytest.raises(FlowerWithoutLogin):
            require_login(basic_auth=basic_auth, auth=auth)
    else:
        require_login(basic_auth=basic_auth, auth=auth)


@pytest.mark.parametrize("settings_module", ["config.settings.production", "config.settings.test"])
def test_a_sentinel_redis_url_configures_the_sentinel_transport(tmp_path, settings_module):
    env = _production_env(
        tmp_path,
        DJANGO_SETTINGS_MODULE=settings_module,
        REDIS_URL="sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/0",
        REDIS_SENTINEL_MASTER="tagger-primary",
    )
    env.pop("CELERY_BROKER_URL", None)
    script = (
        "import django; django.setup(); from config.celery_app import app; "
        "print(app.conf.broker_url); print(app.conf.broker_transport_options['master_name'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    url, master = result.stdout.split()
    assert url.startswith("sentinel://127.0.0.1:26379") and master == "tagger-primary"
