"""/api/v1/health: database, broker and workers, for load balancers and compose."""

from contextlib import contextmanager

import pytest

from config.celery_app import app
from tests.conftest import EmbeddedRedis


@contextmanager
def broker_at(url: str):
    """Point the Celery app at another broker for the block (a real one, or a dead port)."""
    old_url, old_pool = app.conf.broker_url, app._pool
    app.conf.broker_url, app._pool = url, None
    try:
        yield
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app._pool = old_url, old_pool


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/health/"])
def test_ok_with_a_worker(anon_api, celery_worker, db, path):
    response = anon_api.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body == {"status": "ok", "database": "ok", "broker": "ok", "workers": body["workers"]}
    assert body["workers"] >= 1


def test_no_worker_is_degraded_not_down(anon_api, db):
    empty = EmbeddedRedis()
    try:
        with broker_at(empty.start()):
            response = anon_api.get("/api/v1/health")
    finally:
        empty.stop()
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "database": "ok", "broker": "ok", "workers": 0}


def test_broker_down_is_503_and_says_nothing_sensitive(anon_api, db):
    with broker_at("redis://:s3cret@127.0.0.1:9/0"):
        response = anon_api.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json() == {
        "code": "unavailable",
        "message": "The database or the broker is down.",
        "status": "unavailable",
        "database": "ok",
        "broker": "unavailable",
        "workers": None,
    }
    assert b"127.0.0.1" not in response.content and b"s3cret" not in response.content


def test_a_bad_token_does_not_matter(anon_api, celery_worker, db):
    anon_api.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert anon_api.get("/api/v1/health").status_code == 200
