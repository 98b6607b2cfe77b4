"""Server-Sent Events under load: 500 open event streams on one ASGI web process while 10
conversions run, and what the streams do to status polling.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/tagger_bench_events \\
        .venv/bin/python -m bench.events                    # everything, about 6 minutes
    .venv/bin/python -m bench.events --users 2 --per-user 10 --wrk-seconds 3   # a quick look
    .venv/bin/python -m bench.events --rewrite              # events.md again from events.json

The stack is bench/stack.py's (its own Redis on a unix socket, database, media folder and
port; ``config.settings.production``), with the API served by **one uvicorn process**
(``uvicorn config.asgi:application``, what ``make run`` runs; the image runs the same app in
gunicorn's uvicorn workers) and a Celery worker with ``--concurrency 2`` (as ``make run``).
In this order:

1. 10 users with tokens; each uploads the input (bench/inputs.py, rgb-7071 by default) and
   starts its conversion while no worker runs: all 10 are queued together.
2. Memory: the web process's RSS (psutil) and Redis's ``connected_clients`` and
   ``used_memory``, after one stream of each kind was opened and closed (so the code a stream
   imports is loaded), then with the 500 streams open and settled. Per user: 45 streams on
   ``GET /api/v1/events``, 5 on ``GET /api/v1/tasks/{its task}/events``; 50 connect at a
   time (--open-batch).
3. Polling: bench/stack.py's wrk runs (50 connections, each endpoint, each poller waiting
   0.5-1.5 s at random, then not at all), each with the 500 streams open and without, side
   by side (which comes first alternates); the streams are closed and opened again between.
   The task polled is queued (PENDING), as no worker runs yet.
4. Events: the worker is started; every event each stream receives is timed. Latency =
   the client's receive time (``time.time()``) minus the entry id's milliseconds (Redis's
   clock at the XADD right after the worker's write commits). Client, Redis and worker run
   on this machine, on the same clock. What each stream should have got is read back from the
   users' Redis streams afterwards (the same rule as the server's: every entry after the
   stream's starting point that changes its task's data; a task stream up to the final one).

Under ASGI every request runs in a thread of its own with its own database connection, so the
benchmark sets CONN_MAX_AGE=0 (as Django asks of ASGI; the settings' 60 s leaked connections
until PostgreSQL refused more) and caps its database's connections (--db-connection-limit),
so that it cannot take a shared server's last ones; the peaks are reported.

The client is one asyncio loop in this process (raw asyncio streams, HTTP/1.1, chunked
bodies), so it competes for the 2 cores too; its own event-loop lag is measured and reported.
Results go to bench/results/events.md and events.json; docs/performance.md explains them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import inputs, stack
from bench.convert import BENCH_DIR
from bench.stack import ROOT, Client, Stack

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/tagger_bench_events"
FINISHED = {"SUCCESS", "FAILURE", "CANCELLED"}
READ_TIMEOUT = 45.0  # a heartbeat comes every 15 s: three missed is a dead stream
MAX_RECONNECTS = 5  # per stream, per opening
TARGET_P95_MS = 250


# The client ----------------------------------------------------------------------------------


@dataclass
class Event:
    id: str
    received: float  # time.time()
    task_id: str
    state: str
    progress: int
    stage: str

    @property
    def id_seconds(self) -> float:
        return int(self.id.partition("-")[0]) / 1000

    @property
    def latency_ms(self) -> float:
        return (self.received - self.id_seconds) * 1000


@dataclass
class EventStream:
    """One client's stream: ``kind`` "all" (GET /events) or "task" (GET /tasks/{id}/events)."""

    index: int
    user: int
    kind: str
    path: str
    token: str
    task_id: str = ""
    events: list[Event] = field(default_factory=list)
    heartbeats: int = 0
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    ended: bool = False  # the server ended it (a task stream after the final state)
    opened: float = 0.0
    first_event: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def last_id(self) -> str:
        return self.events[-1].id if self.events else ""

    async def run(self, port: int) -> None:
        """Read until cancelled or ended; reconnect (with Last-Event-ID) after a failure."""
        self.opened = time.time()
        failures = 0
        while not self.ended:
            try:
                await self._read_once(port)
                failures = 0
            except asyncio.CancelledError:
                raise
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                failures += 1
                if failures > MAX_RECONNECTS:
                    self.ready.set()  # given up: do not hold the others' wait
                    return
                self.reconnects += 1
                await asyncio.sleep(0.5)

    async def _read_once(self, port: int) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        try:
            resume = f"Last-Event-ID: {self.last_id()}\r\n" if self.events else ""
            writer.write(
                (
                    f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Token {self.token}\r\nAccept: text/event-stream\r\n"
                    f"{resume}\r\n"
                ).encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
            }
            if status == 204 and self.kind == "task":
                self.ended = True  # it saw the end before: nothing more to say
                self.ready.set()
                return
            if status != 200:
                raise ValueError(f"HTTP {status}")
            chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            buffer = b""
            while True:
                if chunked:
                    size_line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
                    if not size_line:
                        raise asyncio.IncompleteReadError(b"", None)
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        await reader.readline()
                        break
                    data = await asyncio.wait_for(reader.readexactly(size + 2), READ_TIMEOUT)
                    data = data[:-2]
                else:
                    data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
                    if not data:
                        break
                received = time.time()
                buffer += data
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    self._dispatch(block.decode(), received)
            if self.kind == "task":
                self.ended = True
            else:
                raise ValueError("the server ended an /events stream")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    def _dispatch(self, block: str, received: float) -> None:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                self.heartbeats += 1
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if fields.get("event") != "conversion":
            return
        data = json.loads(fields["data"])
        self.events.append(
            Event(
                id=fields["id"],
                received=received,
                task_id=data["task_id"],
                state=data["state"],
                progress=data["progress"],
                stage=data.get("status", ""),
            )
        )
        if not self.first_event:
            self.first_event = received
        self.ready.set()


class Streams:
    """A set of open streams: opened together, closed together."""

    def __init__(self, port: int, specs: list[dict]):
        self.port = port
        self.streams = [EventStream(index=i, **spec) for i, spec in enumerate(specs)]
        self.tasks: list[asyncio.Task] = []

    async def open(self, timeout: float, batch: int) -> float:
        """Seconds until every stream has its first event (the current state); ``batch``
        streams connect at a time (0: all at once)."""
        started = time.time()
        batch = batch or len(self.streams)
        try:
            for i in range(0, len(self.streams), batch):
                group = self.streams[i : i + batch]
                self.tasks += [asyncio.create_task(s.run(self.port)) for s in group]
                left = timeout - (time.time() - started)
                await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in group)), left)
        except TimeoutError:
            waiting = sum(not s.ready.is_set() for s in self.streams)
            raise RuntimeError(
                f"{waiting} streams had no first event after {timeout:.0f} s"
            ) from None
        return time.time() - started

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def loop_lag(samples: list[float], stop: asyncio.Event, interval: float = 0.01) -> None:
    """How late this process's own event loop wakes (ms): its share of the latency."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(interval)
        samples.append((time.perf_counter() - before - interval) * 1000)


# The server side -----------------------------------------------------------------------------


class Probe:
    """psutil and Redis INFO of the running stack."""

    def __init__(self, stack_: Stack):
        import psutil
        import redis

        self.web = psutil.Process(stack_.web_process.pid)
        self.redis = redis.Redis(unix_socket_path=str(stack_.folder / "redis.sock"))
        self.stack = stack_

    def web_memory(self) -> dict:
        info = self.web.memory_full_info()
        return dict(rss=info.rss, uss=info.uss, threads=self.web.num_threads())

    def web_cpu(self) -> float:
        times = self.web.cpu_times()
        return times.user + times.system

    def worker_cpu(self) -> float:
        import psutil

        total = 0.0
        for p in self.stack.processes:
            if "celery" in p.args and "worker" in p.args and p.poll() is None:
                main = psutil.Process(p.pid)
                for process in [main, *main.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        times = process.cpu_times()
                        total += times.user + times.system
        return total

    def redis_info(self) -> dict:
        clients = self.redis.info("clients")
        memory = self.redis.info("memory")
        readers = [c for c in self.redis.client_list() if c.get("name") == "tagger-event-stream"]
        return dict(
            connected_clients=clients["connected_clients"],
            event_stream_readers=len(readers),
            used_memory=memory["used_memory"],
        )

    async def quiet(self, counter: ConnectionCounter | None, timeout: float = 60) -> float:
        """Wait until the web process is idle (under 5% of a core over 1 s, at most one
        database connection): the requests wrk left queued are served before what comes next
        is measured. Returns the seconds waited."""
        started = time.time()
        while time.time() - started < timeout:
            cpu = self.web_cpu()
            await asyncio.sleep(1)
            idle = self.web_cpu() - cpu < 0.05
            if idle and (counter is None or await asyncio.to_thread(counter.now) <= 1):
                break
        return time.time() - started

    async def readers_gone(self, timeout: float = 30) -> float | None:
        """Seconds until no event-stream reader is left in Redis after the clients closed."""
        started = time.time()
        while time.time() - started < timeout:
            if (await asyncio.to_thread(self.redis_info))["event_stream_readers"] == 0:
                return time.time() - started
            await asyncio.sleep(0.2)
        return None


class ConnectionCounter:
    """PostgreSQL connections to the stack's database, sampled every 0.2 s in a thread:
    the most seen since the last ``take()``."""

    def __init__(self, url: str):
        import psycopg2

        self.name = url.rsplit("/", 1)[1]
        self.connection = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
        self.connection.autocommit = True
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def now(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.name])
            return cursor.fetchone()[0]

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, self.now())

    def take(self) -> int:
        peak, self.peak = self.peak, 0
        return peak

    def limit(self, connections: int) -> None:
        """Cap the database's connections, so that this benchmark cannot take a shared
        server's last ones: past the cap the web process gets errors, other clients none."""
        with self.connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{self.name}" CONNECTION LIMIT {int(connections)}')

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.connection.close()


def load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def create_users(stack_: Stack, count: int) -> list[dict]:
    code = (
        "import json; from django.contrib.auth import get_user_model; "
        "from rest_framework.authtoken.models import Token; U = get_user_model(); "
        "print(json.dumps([{'id': u.pk, 'token': Token.objects.create(user=u).key} "
        f"for u in (U.objects.create_user(f'events-{{i}}') for i in range({count}))]))"
    )
    return json.loads(stack_._manage("shell", "-c", code).strip().splitlines()[-1])


def stream_specs(users: list[dict], per_user: int, task_per_user: int) -> list[dict]:
    specs = []
    for n, user in enumerate(users):
        for i in range(per_user):
            if i < task_per_user:
                path, kind = f"/api/v1/tasks/{user['task_id']}/events", "task"
            else:
                path, kind = "/api/v1/events", "all"
            specs.append(
                dict(user=n, kind=kind, path=path, token=user["token"], task_id=user["task_id"])
            )
    return specs


# Checking what each stream got ---------------------------------------------------------------


def live_events(stream: EventStream) -> tuple[list[Event], list[Event]]:
    """A stream's events after the first (the current state on connect): those read from
    Redis, and those sent from the database at a heartbeat, which carry the id the stream had
    read up to (no newer than one already sent): their id says nothing of their age."""
    fresh, catch_up = [], []
    newest = _key(stream.events[0].id) if stream.events else (0, 0)
    for event in stream.events[1:]:
        if _key(event.id) <= newest:
            catch_up.append(event)
        else:
            fresh.append(event)
            newest = _key(event.id)
    return fresh, catch_up


def expected_ids(
    entries: list[tuple[str, dict]], start: str, task_id: str | None
) -> list[tuple[str, tuple]]:
    """The entries a stream that started at entry ``start`` should send, as (id, (task,
    state, progress)): each one after it that changes its task's data (the server skips
    repeats), only ``task_id``'s and up to its final state for a task stream."""
    last: dict[str, dict] = {}
    out = []
    for entry_id, data in entries:
        task = str(data["task_id"])
        if task_id and task != task_id:
            continue
        after = _key(entry_id) > _key(start)
        if after and last.get(task) != data:
            out.append((entry_id, (task, data["state"], data["progress"])))
            if task_id and data["state"] in FINISHED:
                break
        last[task] = data
    return out


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def check_streams(streams: list[EventStream], redis_client, users: list[dict]) -> dict:
    """Each stream's events against the users' Redis streams. An entry counts as delivered
    when its id came, or when a heartbeat's database comparison sent the same state."""
    entries = {}
    for n, user in enumerate(users):
        raw = redis_client.xrange(f"tagger:events:{user['id']}")
        entries[n] = [(i.decode(), json.loads(f[b"data"])) for i, f in raw]
    exact, missing, extra, duplicates, by_database = 0, 0, 0, 0, 0
    got, want, samples = [], [], []
    for s in streams:
        if not s.events:
            missing += 1
            samples.append(dict(stream=s.index, kind=s.kind, errors=s.errors[-3:]))
            continue
        # The first event is the current state, with the stream's starting entry as its id.
        start = s.events[0].id
        fresh, catch_up = live_events(s)
        ids = [e.id for e in fresh]
        expected = expected_ids(entries[s.user], start, s.task_id if s.kind == "task" else None)
        expected_set = {i for i, _ in expected}
        caught = {(e.task_id, e.state, e.progress) for e in catch_up}
        lost = [i for i, content in expected if i not in ids and content not in caught]
        got.append(len(fresh) + len(catch_up))
        want.append(len(expected))
        duplicates += len(ids) - len(set(ids))
        by_database += len(catch_up)
        missing += len(lost)
        extra += len(set(ids) - expected_set)
        ok = ids == [i for i, _ in expected]
        exact += ok
        if not ok and len(samples) < 8:
            samples.append(
                dict(
                    stream=s.index,
                    kind=s.kind,
                    got=ids,
                    from_database=[(e.id, e.state, e.progress) for e in catch_up],
                    expected=[i for i, _ in expected],
                    lost=lost,
                    errors=s.errors[-3:],
                )
            )
    return dict(
        streams=len(streams),
        exact=exact,
        missing_events=missing,
        extra_events=extra,
        duplicate_events=duplicates,
        from_database=by_database,
        events_got=_spread(got),
        events_expected=_spread(want),
        entries_per_user=_spread([len(e) for e in entries.values()]),
        samples=samples,
    )


def _spread(values: list[float]) -> dict:
    if not values:
        return {}
    return dict(
        min=min(values), median=statistics.median(values), max=max(values), total=sum(values)
    )


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)  # nearest rank
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def distribution(values: list[float]) -> dict:
    return dict(
        count=len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=max(values) if values else None,
    )


# The run ------------------------------------------------------------------------------------


async def run_async(args: argparse.Namespace) -> dict:
    stack.WRK_SECONDS = args.wrk_seconds
    big = inputs.ensure(args.input, args.folder)
    report: dict = dict(
        note=args.note,
        input=args.input,
        input_mb=round(big.stat().st_size / 1e6, 1),
        server="one uvicorn process (config.asgi:application, h11, asyncio loop)",
        worker_concurrency=args.concurrency,
        database="PostgreSQL" if os.environ.get("BENCH_DATABASE_URL") else "SQLite",
        users=args.users,
        streams=args.users * args.per_user,
        task_streams=args.users * args.task_per_user,
        conversions=args.users,
        machine=f"{os.cpu_count()} CPUs",
        load=dict(start=load()),
    )
    print(f"load {load()}; starting the stack", flush=True)
    stack_ = Stack(
        args.folder / "events-stack",
        server="uvicorn",
        start_worker=False,
        worker_concurrency=args.concurrency,
    )
    # Django asks for persistent connections to be off under ASGI: each request runs in a
    # thread of its own there, and each thread's connection outlives it. With the settings'
    # 60 s, one uvicorn process polled by wrk had PostgreSQL's 100 connections used up
    # within seconds ("too many clients already").
    stack_.env["CONN_MAX_AGE"] = str(args.conn_max_age)
    report["conn_max_age"] = args.conn_max_age
    report["open_batch"] = args.open_batch
    database = os.environ.get("BENCH_DATABASE_URL", "")
    with stack_, contextlib.ExitStack() as cleanup:
        probe = Probe(stack_)
        counter = None
        if database.startswith(("postgres://", "postgresql://")):
            counter = ConnectionCounter(database)
            cleanup.callback(counter.close)
            if args.db_connection_limit:
                counter.limit(args.db_connection_limit)
        report["db_connection_limit"] = args.db_connection_limit
        report["db_connections_peak"] = {}

        def peak(phase: str) -> None:
            if counter is not None:
                report["db_connections_peak"][phase] = counter.take()

        users = create_users(stack_, args.users)
        for user in users:
            client = Client(stack_.port, user["token"])
            user["item_id"] = client.upload(big)
            user["task_id"], _, _ = client.convert(user["item_id"])
        print(f"{len(users)} conversions queued", flush=True)
        specs = stream_specs(users, args.per_user, args.task_per_user)

        # Warm-up: one stream of each kind, and a few polls, so RSS_0 has their code loaded.
        warm = Streams(stack_.port, [specs[0], specs[-1]])
        await warm.open(30, 0)
        await warm.close()
        poller = Client(stack_.port, users[0]["token"])
        for _ in range(20):
            poller.request("GET", f"/api/v1/tasks/{users[0]['task_id']}/status")
            poller.request("GET", f"/api/v1/tree-items/{users[0]['item_id']}/conversion-status")
        poller.connection.close()
        await probe.readers_gone()
        await asyncio.sleep(2)
        peak("uploads and warm-up")

        # Memory, before and with the streams.
        memory: dict = dict(before=probe.web_memory(), redis_before=probe.redis_info())
        streams = Streams(stack_.port, specs)
        memory["open_seconds"] = await streams.open(args.open_timeout, args.open_batch)
        peak("opening the streams")
        await asyncio.sleep(args.settle)
        memory["with"] = probe.web_memory()
        memory["redis_with"] = probe.redis_info()
        n = len(specs)
        memory["rss_per_stream_kib"] = (memory["with"]["rss"] - memory["before"]["rss"]) / n / 1024
        memory["uss_per_stream_kib"] = (memory["with"]["uss"] - memory["before"]["uss"]) / n / 1024
        memory["redis_per_stream_bytes"] = (
            memory["redis_with"]["used_memory"] - memory["redis_before"]["used_memory"]
        ) / n
        memory["open_errors"] = sum(len(x.errors) for x in streams.streams)
        memory["reopened_rss"] = []
        memory["readers_released_s"] = []
        report["memory"] = memory
        print(f"memory: {json.dumps(memory)}", flush=True)

        # Polling, with the streams and without, side by side.
        report["polling"] = []
        if not args.skip_polling:
            task_path = f"/api/v1/tasks/{users[0]['task_id']}/status"
            item_path = f"/api/v1/tree-items/{users[0]['item_id']}/conversion-status"
            configs = [
                (name, path, interval)
                for name, path in (
                    ("tasks/{id}/status", task_path),
                    ("conversion-status", item_path),
                )
                for interval in stack.POLL_INTERVALS_MS
            ]
            is_open = True
            for i, (name, path, interval) in enumerate(configs):
                order = (True, False) if i % 2 == 0 else (False, True)
                for with_streams in order:
                    if with_streams != is_open:
                        if with_streams:
                            streams = Streams(stack_.port, specs)
                            await streams.open(args.open_timeout, args.open_batch)
                            await asyncio.sleep(args.settle)
                            memory["reopened_rss"].append(probe.web_memory()["rss"])
                        else:
                            await streams.close()
                            memory["readers_released_s"].append(await probe.readers_gone())
                        is_open = with_streams
                    report.setdefault("quiet_waits_s", []).append(await probe.quiet(counter))
                    peak("between polling runs")
                    cpu = probe.web_cpu()
                    stats = await asyncio.to_thread(
                        stack.wrk, stack_.port, users[0]["token"], path, args.folder, interval
                    )
                    stats["web_cpu_per_request_ms"] = (
                        (probe.web_cpu() - cpu) / max(1, stats["requests"]) * 1000
                    )
                    stats["stream_errors"] = (
                        sum(len(s.errors) for s in streams.streams) if with_streams else 0
                    )
                    if counter is not None:
                        stats["db_connections_peak"] = counter.take()
                    row = dict(endpoint=name, interval_ms=interval, streams=with_streams, **stats)
                    report["polling"].append(row)
                    print(
                        f"polling {'with' if with_streams else 'without'} streams: {row}",
                        flush=True,
                    )
            if not is_open:
                streams = Streams(stack_.port, specs)
                await streams.open(args.open_timeout, args.open_batch)
                await asyncio.sleep(args.settle)
        report.setdefault("quiet_waits_s", []).append(await probe.quiet(counter))
        errors_before = sum(len(x.errors) for x in streams.streams)
        peak("before the events")

        # Events, while the conversions run.
        lag: list[float] = []
        stop = asyncio.Event()
        lag_task = asyncio.create_task(loop_lag(lag, stop))
        loads: list[list[float]] = []
        cpu0 = (probe.web_cpu(), os.times())
        rss_peak = threads_peak = 0
        started = time.time()
        await asyncio.to_thread(stack_.start_worker)
        worker_cpu0 = 0.0  # the worker did not exist before
        done_at = None
        deadline = time.monotonic() + args.timeout
        tasks = {u["task_id"] for u in users}
        while time.monotonic() < deadline:
            loads.append(load())
            web_now = probe.web_memory()
            rss_peak = max(rss_peak, web_now["rss"])
            threads_peak = max(threads_peak, web_now["threads"])
            finished = {
                e.task_id
                for s in streams.streams
                if s.kind == "all"
                for e in s.events
                if e.state in FINISHED
            }
            # Each stream saw its user's conversion end (or gave up, which the report counts).
            all_seen = all(
                any(e.state in FINISHED for e in s.events) or s.ended or t.done()
                for s, t in zip(streams.streams, streams.tasks, strict=True)
            )
            if finished >= tasks and all_seen:
                done_at = time.time()
                break
            await asyncio.sleep(1)
        if done_at is None:
            raise RuntimeError(
                f"the conversions or the streams did not finish in {args.timeout:.0f} s; "
                f"see {stack_.folder / 'worker.log'}"
            )
        await asyncio.sleep(2)  # anything late still counts
        web_cpu = probe.web_cpu() - cpu0[0]
        worker_cpu = probe.worker_cpu() - worker_cpu0
        client_times = os.times()
        client_cpu = (client_times.user + client_times.system) - (cpu0[1].user + cpu0[1].system)
        stop.set()
        await lag_task
        peak("events")
        check = check_streams(streams.streams, probe.redis, users)
        await streams.close()
        memory["readers_released_s"].append(await probe.readers_gone())

        final = {}
        for user in users:
            _, data = Client(stack_.port, user["token"]).request(
                "GET", f"/api/v1/tasks/{user['task_id']}/status"
            )
            final[data["state"]] = final.get(data["state"], 0) + 1

        # Timed: what came from Redis after the first event (the current state on connect).
        fresh = {s.index: live_events(s)[0] for s in streams.streams}
        live = [e for events_ in fresh.values() for e in events_]
        latencies = [e.latency_ms for e in live]
        by_kind = {
            kind: distribution(
                [e.latency_ms for s in streams.streams if s.kind == kind for e in fresh[s.index]]
            )
            for kind in ("all", "task")
        }
        spread: dict[tuple, list[float]] = {}
        for s in streams.streams:
            for e in fresh[s.index]:
                spread.setdefault((s.user, e.id), []).append(e.latency_ms)
        first_reader = [min(v) for v in spread.values()]
        last_reader = [max(v) for v in spread.values()]
        conversions = []
        for n in range(len(users)):
            ids = [
                e
                for s in streams.streams
                if s.user == n and s.kind == "all"
                for e in fresh[s.index]
            ]
            if ids:
                conversions.append(max(e.id_seconds for e in ids) - min(e.id_seconds for e in ids))
        seconds = done_at - started
        report["events"] = dict(
            seconds=seconds,
            events=len(live),
            entries=len(spread),
            latency_ms=distribution(latencies),
            latency_ms_by_kind=by_kind,
            first_reader_ms=distribution(first_reader),
            last_reader_ms=distribution(last_reader),
            client_loop_lag_ms=distribution(lag),
            check=check,
            errors=sum(len(s.errors) for s in streams.streams) - errors_before,
            error_samples=sorted({e for s in streams.streams for e in s.errors})[:10],
            reconnects=sum(s.reconnects for s in streams.streams),
            heartbeats=sum(s.heartbeats for s in streams.streams),
            task_streams_ended=sum(s.ended for s in streams.streams if s.kind == "task"),
            final_states=final,
            conversion_seconds=_spread(conversions),
            web_cpu_s=web_cpu,
            web_cpu_share=web_cpu / seconds,
            worker_cpu_s=worker_cpu,
            client_cpu_s=client_cpu,
            web_rss_peak=rss_peak,
            web_threads_peak=threads_peak,
            load=dict(min=min(x[0] for x in loads), max=max(x[0] for x in loads)),
        )
        report["load"]["end"] = load()
        print(json.dumps(report["events"], indent=1), flush=True)
    return report


def run(args: argparse.Namespace) -> dict:
    report = asyncio.run(run_async(args))
    write(report, args.results)
    return report


# The write-up --------------------------------------------------------------------------------


def _ms(value) -> str:
    return "" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.1f}")


def _mib(value) -> str:
    return f"{value / 2**20:.1f}"


def write(report: dict, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "events.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "events.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    m, e = report["memory"], report.get("events")
    lines = [
        f"{report['server']}; Celery worker --concurrency {report['worker_concurrency']}; "
        f"{report['database']}; Redis on a unix socket. {report['users']} users, "
        f"{report['streams']} streams ({report['streams'] - report['task_streams']} on "
        f"`/api/v1/events`, {report['task_streams']} on `/api/v1/tasks/{{id}}/events`), "
        f"{report['conversions']} conversions of {report['input']} ({report['input_mb']} MB) "
        f"queued together. {report['machine']}; load average at the start "
        f"{report['load']['start'][0]:.2f}, at the end {report['load'].get('end', [0])[0]:.2f}."
        + (f" {report['note']}" if report.get("note") else ""),
        "",
    ]
    if e:
        lat, c = e["latency_ms"], e["check"]
        lines += [
            "Latency: client receive time − the entry id's milliseconds (same machine clock).",
            "",
            "| events | p50 ms | p95 ms | p99 ms | max ms | target p95 |",
            "|---|---:|---:|---:|---:|---|",
            f"| all, {lat['count']} | {_ms(lat['p50'])} | {_ms(lat['p95'])} "
            f"| {_ms(lat['p99'])} | {_ms(lat['max'])} | ≤ {TARGET_P95_MS} ms: "
            f"**{'met' if (lat['p95'] or math.inf) <= TARGET_P95_MS else 'missed'}** |",
        ]
        for kind, label in (("all", "`/events` streams"), ("task", "task streams")):
            d = e["latency_ms_by_kind"][kind]
            lines.append(
                f"| {label}, {d['count']} | {_ms(d['p50'])} | {_ms(d['p95'])} "
                f"| {_ms(d['p99'])} | {_ms(d['max'])} | |"
            )
        for key, label in (
            ("first_reader_ms", "first stream of each entry"),
            ("last_reader_ms", "last stream of each entry"),
        ):
            d = e[key]
            lines.append(
                f"| {label}, {d['count']} entries | {_ms(d['p50'])} | {_ms(d['p95'])} "
                f"| {_ms(d['p99'])} | {_ms(d['max'])} | |"
            )
        d = e["client_loop_lag_ms"]
        lines += [
            f"| the client's own loop lag (10 ms sleeps) | {_ms(d['p50'])} | {_ms(d['p95'])} "
            f"| {_ms(d['p99'])} | {_ms(d['max'])} | |",
            "",
            f"- {e['events']} events in {e['seconds']:.0f} s ({e['entries']} entries fanned out); "
            f"load average {e['load']['min']:.2f}–{e['load']['max']:.2f} during it; "
            f"each conversion {e['conversion_seconds']['min']:.1f}–"
            f"{e['conversion_seconds']['max']:.1f} s from its first to its last event; final "
            f"states {e['final_states']}.",
            f"- Per stream: got {c['events_got']['min']}–{c['events_got']['max']} "
            f"(median {c['events_got']['median']}) events after the first, expected "
            f"{c['events_expected']['min']}–{c['events_expected']['max']}; "
            f"**{c['exact']} of {c['streams']}** exactly as expected (ids and order); "
            f"**{c['missing_events']} lost** (neither its id nor its state came), "
            f"{c['extra_events']} unexpected, {c['duplicate_events']} duplicated, "
            f"{c.get('from_database', 0)} sent from the database at a heartbeat instead of "
            "from Redis (their id is the last one read, so they are not timed); "
            f"{e['task_streams_ended']} task streams ended by the server after the final state.",
            f"- Errors: {e['errors']}, reconnects: {e['reconnects']}"
            + (f" ({'; '.join(e['error_samples'])})" if e["error_samples"] else "")
            + ".",
            f"- CPU during the events: web {e['web_cpu_s']:.1f} s ({e['web_cpu_share'] * 100:.0f}% "
            f"of a core), worker {e['worker_cpu_s']:.1f} s, this client {e['client_cpu_s']:.1f} s; "
            f"web RSS peak {_mib(e['web_rss_peak'])} MiB, threads peak "
            f"{e.get('web_threads_peak', '?')}.",
            "",
        ]
    n = report["streams"]
    clients = [m[k]["connected_clients"] for k in ("redis_before", "redis_with")]
    lines += [
        "| memory | before | with the streams | per stream |",
        "|---|---:|---:|---:|",
        f"| web process RSS (MiB) | {_mib(m['before']['rss'])} | {_mib(m['with']['rss'])} "
        f"| **{m['rss_per_stream_kib']:.0f} KiB** |",
        f"| web process USS (MiB) | {_mib(m['before']['uss'])} | {_mib(m['with']['uss'])} "
        f"| {m['uss_per_stream_kib']:.0f} KiB |",
        f"| web process threads | {m['before'].get('threads', '?')} "
        f"| {m['with'].get('threads', '?')} | |",
        f"| Redis `connected_clients` | {clients[0]} | {clients[1]} "
        f"| {(clients[1] - clients[0]) / n:.2f} |",
        f"| Redis `used_memory` (MiB) | {_mib(m['redis_before']['used_memory'])} "
        f"| {_mib(m['redis_with']['used_memory'])} "
        f"| {m['redis_per_stream_bytes'] / 1024:.1f} KiB |",
        "",
        f"- {n} streams had their first event {m['open_seconds']:.1f} s after the first "
        f"connected ({report.get('open_batch') or n} connecting at a time); "
        f"{m.get('open_errors', 0)} errors while opening.",
        f"- PostgreSQL connections to the bench database, most at once (CONN_MAX_AGE="
        f"{report.get('conn_max_age')}, database CONNECTION LIMIT "
        f"{report.get('db_connection_limit') or 'none'}): "
        + ", ".join(f"{k} {v}" for k, v in report.get("db_connections_peak", {}).items())
        + ".",
        "- RSS after each re-opening of the streams (MiB): "
        + (", ".join(_mib(x) for x in m["reopened_rss"]) or "none")
        + "; Redis readers gone after the clients closed (s): "
        + ", ".join("never" if x is None else f"{x:.1f}" for x in m["readers_released_s"])
        + ".",
        "",
    ]
    if report["polling"]:
        lines += [
            f"Polling: bench/stack.py's wrk, {stack.WRK_CONNECTIONS} connections, "
            f"{report['polling'][0]['seconds']:.0f} s per run, on the same one uvicorn process.",
            "",
            "| endpoint | each poller waits | 500 streams | requests/s | p50 ms | p90 ms | p99 ms "
            "| max ms | non-2xx | socket errors | web CPU/req ms | DB connections | load |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in report["polling"]:
            wait = (
                f"{s['interval_ms'] / 2000:g}–{s['interval_ms'] * 3 / 2000:g} s"
                if s["interval_ms"]
                else "nothing"
            )
            lines.append(
                f"| `{s['endpoint']}` | {wait} | {'open' if s['streams'] else '—'} "
                f"| {s['rps']:.0f} | {s['p50_ms']:.1f} | {s['p90_ms']:.1f} | {s['p99_ms']:.1f} "
                f"| {s['max_ms']:.1f} | {s['non2xx']} | {s['socket_errors']} "
                f"| {s['web_cpu_per_request_ms']:.1f} | {s.get('db_connections_peak', '')} "
                f"| {s['load']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", default="rgb-7071", choices=sorted(inputs.INPUTS))
    parser.add_argument("--users", type=int, default=10, help="one conversion each")
    parser.add_argument("--per-user", type=int, default=50, help="streams per user")
    parser.add_argument("--task-per-user", type=int, default=5, help="of them, task streams")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's, as make run")
    parser.add_argument("--wrk-seconds", type=int, default=20, help="per polling run")
    parser.add_argument("--skip-polling", action="store_true")
    parser.add_argument("--settle", type=float, default=5.0, help="s after opening the streams")
    parser.add_argument("--open-timeout", type=float, default=120.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="for the conversions")
    parser.add_argument(
        "--conn-max-age", type=int, default=0, help="CONN_MAX_AGE (0: as Django asks of ASGI)"
    )
    parser.add_argument(
        "--open-batch", type=int, default=50, help="streams connecting at a time (0: all)"
    )
    parser.add_argument(
        "--db-connection-limit",
        type=int,
        default=75,
        help="CONNECTION LIMIT of the bench database (0: none), to spare a shared server",
    )
    parser.add_argument("--folder", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--note", default="", help="said of the machine in events.md")
    parser.add_argument("--rewrite", action="store_true", help="events.md from events.json")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.rewrite:
        report = json.loads((args.results / "events.json").read_text())
        (args.results / "events.md").write_text(markdown(report))
        print(markdown(report))
        return
    os.environ.setdefault("BENCH_DATABASE_URL", DEFAULT_DATABASE)
    try:
        run(args)
    except RuntimeError as exc:
        sys.exit(f"bench.events: {exc}")


if __name__ == "__main__":
    main()
