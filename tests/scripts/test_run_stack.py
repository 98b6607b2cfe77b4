"""`make run`'s stack (scripts/run-stack) on the embedded defaults, in a copy of the
checkout: a worker that dies is started again, and the API stays up meanwhile."""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, require

REPO = Path(__file__).resolve().parents[2]
# What `make run` needs of a checkout: every top-level Python package (the apps and config;
# a new app is picked up without listing it here), the scripts and the entry points.
PACKAGES = tuple(
    path.name
    for path in sorted(REPO.iterdir())
    if (path / "__init__.py").is_file() and path.name not in {"tests", "bench"}
)
COPIED = (*PACKAGES, "scripts", "manage.py", "flowerconfig.py")


@pytest.fixture
def stack(tmp_path):
    require((REPO / ".venv" / "bin" / "honcho").exists(), "needs `make install` (.venv)")
    checkout = tmp_path / "tagger"
    checkout.mkdir()
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, checkout / name)
    (checkout / ".venv").symlink_to(REPO / ".venv")
    port, flower_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    log = open(tmp_path / "stack.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        ["scripts/run-stack"],
        cwd=checkout,
        env={**env, "PORT": str(port), "FLOWER_PORT": str(flower_port)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.base = f"http://127.0.0.1:{port}"
    process.log = lambda: (tmp_path / "stack.log").read_text(errors="replace")
    process.checkout = checkout
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        print(process.log()[-6000:])


def health(base: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{base}/api/v1/health", timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def wait_for(predicate, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


def worker_pids(checkout: Path) -> list[int]:
    """The celery worker main process run by the stack's supervisor (not the supervisor)."""
    (pidfile,) = checkout.glob("var/stacks/*/worker.pid")
    supervisor = pidfile.read_text().strip()
    children = subprocess.run(["pgrep", "-P", supervisor], capture_output=True, text=True)
    return [int(pid) for pid in children.stdout.split()]


def test_a_worker_that_dies_is_started_again_and_the_api_stays_up(stack):
    wait_for(lambda: (health(stack.base) or {}).get("workers") == 1, "the stack to be up")
    (first,) = wait_for(lambda: worker_pids(stack.checkout), "the worker's pid")

    os.kill(first, signal.SIGKILL)

    wait_for(lambda: "[supervise] worker was killed by SIGKILL" in stack.log(), "the log line")
    assert stack.poll() is None, "the stack stopped"
    assert health(stack.base) is not None, "the API went down with the worker"
    wait_for(lambda: worker_pids(stack.checkout) not in ([], [first]), "a new worker")
    wait_for(lambda: (health(stack.base) or {}).get("workers") == 1, "the new worker to answer")


def status_of(url: str) -> int:
    """The status of a GET, redirects not followed."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_the_workspace_and_its_static_files_are_served(stack):
    """uvicorn serves no static files itself: under `make run` WhiteNoise does."""
    wait_for(lambda: health(stack.base), "the API to answer")
    assert status_of(f"{stack.base}/") == 302  # to the sign-in page
    assert status_of(f"{stack.base}/login/") == 200
    for asset in ("workspace/workspace.js", "workspace/workspace.css", "leaflet/leaflet.js"):
        assert status_of(f"{stack.base}/static/{asset}") == 200, asset
