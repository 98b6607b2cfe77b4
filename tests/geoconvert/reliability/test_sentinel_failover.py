"""Broker failover with Redis Sentinel: a primary, a replica and a sentinel on this machine
(Debian's redis-server). The primary is SIGKILLed while conversions run and one waits in
the queue; the sentinel promotes the replica, and the worker and the API carry on through
the sentinel: nothing is lost, nothing runs twice."""

import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from config.celery_app import app
from tests import rasters
from tests.conftest import free_port, require
from tests.fixtures import WorkerProcess
from tests.geoconvert.api.helpers import convert, upload, wait_for_task
from tests.geoconvert.reliability.conftest import FAST_WORKER_ENV, broker, repeat
from tests.geoconvert.reliability.helpers import (
    assert_converted_once,
    logs,
    start_large_conversion,
    wait_all_mid_write,
    wait_until,
)

pytestmark = pytest.mark.slow

MASTER = "tagger"
REDIS_SERVER = shutil.which("redis-server")


class ReplicatedRedis:
    """A primary with AOF, its replica, and one sentinel watching them, each on its own
    loopback port and folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ports = {"primary": free_port(), "replica": free_port(), "sentinel": free_port()}
        self.processes: dict[str, subprocess.Popen] = {}
        self.url = f"sentinel://127.0.0.1:{self.ports['sentinel']}/0"

    def _spawn(self, name: str, *args: str) -> None:
        directory = self.folder / name
        directory.mkdir(exist_ok=True)
        self.processes[name] = subprocess.Popen(
            [REDIS_SERVER, *args, "--dir", str(directory), "--logfile", str(directory / "log")],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def client(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], socket_timeout=2)

    def start(self) -> "ReplicatedRedis":
        data = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        self._spawn("primary", "--port", str(self.ports["primary"]), *data)
        self._spawn(
            "replica",
            "--port", str(self.ports["replica"]),
            "--replicaof", "127.0.0.1", str(self.ports["primary"]),
            *data,
        )  # fmt: skip
        conf = self.folder / "sentinel.conf"
        conf.write_text(
            f"port {self.ports['sentinel']}\nbind 127.0.0.1\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.ports['primary']} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
        )
        self._spawn("sentinel", str(conf), "--sentinel")
        wait_until(self._replicating, "the replica to be in sync", 30, 0.2)
        wait_until(lambda: self.master_port() == self.ports["primary"], "the sentinel", 30, 0.2)
        # The sentinel learns of replicas from the primary's INFO, every 10 s: a primary
        # killed before it has would leave it nothing to promote.
        wait_until(self._sentinel_knows_the_replica, "the sentinel to see the replica", 30, 0.2)
        return self

    def _sentinel_knows_the_replica(self) -> bool:
        try:
            replicas = self.client("sentinel").sentinel_slaves(MASTER)
        except redis.RedisError:
            return False
        return any(
            int(r["port"]) == self.ports["replica"] and not r.get("is_sdown") for r in replicas
        )

    def wait_promoted(self, timeout: float = 90) -> None:
        try:
            wait_until(
                lambda: self.master_port() == self.ports["replica"],
                "the sentinel to promote the replica",
                timeout,
                0.2,
            )
        except AssertionError as exc:
            log = self.log_tail("sentinel")
            raise AssertionError(f"{exc}; the sentinel's log:\n{log}") from None

    def log_tail(self, name: str, lines: int = 40) -> str:
        log = self.folder / name / "log"
        return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else ""

    def _replicating(self) -> bool:
        try:
            return self.client("replica").info("replication")["master_link_status"] == "up"
        except (redis.RedisError, KeyError):
            return False

    def master_port(self) -> int | None:
        try:
            _, port = self.client("sentinel").sentinel_get_master_addr_by_name(MASTER)
            return int(port)
        except (redis.RedisError, TypeError):
            return None

    def kill(self, name: str) -> None:
        self.processes[name].kill()
        self.processes[name].wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@contextmanager
def sentinel_broker(url: str):
    """This process's publisher and control commands through the sentinel too."""
    options = app.conf.broker_transport_options
    app.conf.broker_transport_options = {**options, "master_name": MASTER}
    try:
        with broker(url):
            yield
    finally:
        app.conf.broker_transport_options = options


@pytest.fixture
def replicated_redis(tmp_path):
    require(REDIS_SERVER is not None, "redis-server is not installed (Debian: redis-server)")
    servers = ReplicatedRedis(tmp_path / "redis")
    servers.folder.mkdir()
    try:
        with sentinel_broker(servers.start().url):
            yield servers
    finally:
        servers.stop()


@repeat
def test_worker_and_api_carry_on_when_the_primary_dies(
    api, tmp_path, replicated_redis, transactional_db, run
):
    worker = WorkerProcess(
        tmp_path / "worker.log",
        extra_env={**FAST_WORKER_ENV, "REDIS_SENTINEL_MASTER": MASTER},
        concurrency=2,
        broker_url=replicated_redis.url,
        gossip=True,
    ).start()
    try:
        waiting_item = upload(api, rasters.rgb_byte_tiff(tmp_path / "waiting.tif"))
        sources = [rasters.large_noise_tiff(tmp_path / f"{n}.tif", size=5000) for n in "ab"]
        running = [start_large_conversion(api, tmp_path, src=src) for src in sources]
        wait_all_mid_write([(task_id, item_id) for _, item_id, task_id, _ in running])
        waiting = convert(api, waiting_item["id"]).json()["task_id"]
        # Replication is asynchronous: the queued message must have reached the replica.
        assert replicated_redis.client("primary").execute_command("WAIT", 1, 5000) == 1

        replicated_redis.kill("primary")
        replicated_redis.wait_promoted()

        for src, item_id, task_id, digest in running:
            assert_converted_once(item_id, task_id, src, digest, lambda: logs(worker))
        final, _ = wait_for_task(api, waiting)
        assert final["state"] == "SUCCESS", final
        # "complete" is logged just after the SUCCESS the API may already have seen.
        done = f"Conversion {waiting} complete"
        wait_until(lambda: done in worker.log(), "the worker's log to say it completed")
        assert worker.log().count(done) == 1
        # New work goes through the sentinel to the new primary.
        item = upload(api, rasters.rgb_byte_tiff(tmp_path / "after.tif"))
        final, _ = wait_for_task(api, convert(api, item["id"]).json()["task_id"])
        assert final["state"] == "SUCCESS"
        assert worker.alive
    finally:
        worker.kill()
        worker.stop()
        print(f"--- worker.log ---\n{worker.log_tail(80)}")
