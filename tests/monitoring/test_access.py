"""Who may read `/metrics`: loopback clients when no token is set (`make run`), else only
the bearer of TAGGER_METRICS_TOKEN; production settings require the token."""

import subprocess
import sys

import pytest
from django.test import Client, override_settings

from tests.config.test_production import _production_env
from tests.fixtures import REPO

pytestmark = pytest.mark.django_db


def test_open_on_loopback_without_a_token():
    for address in ("127.0.0.1", "::1"):
        response = Client(REMOTE_ADDR=address).get("/metrics")
        assert response.status_code == 200, address
        assert response["Content-Type"].startswith("text/plain; version=")
        assert b"tagger_conversions_total" in response.content


def test_refused_to_other_clients_without_a_token():
    response = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    assert response.status_code == 403
    assert b"tagger_" not in response.content


@override_settings(TAGGER_METRICS_TOKEN="s3cret-metrics-token")
def test_with_a_token_only_its_bearer_reads_them_even_on_loopback():
    client = Client(REMOTE_ADDR="127.0.0.1")
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert (
        client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-metrics-token").status_code == 401
    )
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    ok = Client(REMOTE_ADDR="10.1.2.3").get(
        "/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token"
    )
    assert ok.status_code == 200
    assert b"tagger_conversions_total" in ok.content


def test_openmetrics_when_asked_for():
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response = Client().get("/metrics", HTTP_ACCEPT=accept)
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.endswith(b"# EOF\n")


def test_only_get():
    assert Client().post("/metrics").status_code == 405


def _in_production(tmp_path, code: str, **env) -> subprocess.CompletedProcess:
    script = (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from django.test import Client\n" + code
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO, env=_production_env(tmp_path, **env), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_production_needs_the_token_from_loopback_too(tmp_path):
    result = _in_production(
        tmp_path,
        "c = Client(REMOTE_ADDR='127.0.0.1', HTTP_HOST='localhost')\n"
        "print(c.get('/metrics').status_code)\n"
        "print(c.get('/metrics', HTTP_AUTHORIZATION='Bearer nope').status_code)\n"
        "r = c.get('/metrics', HTTP_AUTHORIZATION='Bearer prod-token')\n"
        "print(r.status_code, b'tagger_conversions_total' in r.content)\n",
        TAGGER_METRICS_TOKEN="prod-token",
    )
    assert result.returncode == 0, result.stderr
    # Not redirected to HTTPS either: Prometheus scrapes the backend over the compose network.
    assert result.stdout.split("\n")[:3] == ["401", "403", "200 True"]


def test_production_refuses_to_start_without_the_token(tmp_path):
    env = _production_env(tmp_path)
    env.pop("TAGGER_METRICS_TOKEN")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "TAGGER_METRICS_TOKEN" in result.stderr
