"""scripts/supervise, which keeps the worker, beat and Flower of `make run` running."""

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUPERVISE = REPO / "scripts" / "supervise"


def start(tmp_path, command: str, **env) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "supervise.log"
    process = subprocess.Popen(
        [str(SUPERVISE), "demo", "bash", "-c", command],
        stdout=open(log, "wb"),  # noqa: SIM115 - the child owns it
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
    )
    return process, log


def wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_process_that_exits_is_started_again_with_a_growing_delay(tmp_path):
    runs = tmp_path / "runs"
    process, log = start(tmp_path, f"echo run >> {runs}; exit 3", SUPERVISE_MAX_DELAY="2")
    try:
        wait_for(lambda: runs.exists() and len(runs.read_text().split()) >= 3)
        text = log.read_text()
        assert "[supervise] demo exited with status 3 after 0 s; starting it again in 1 s" in text
        assert "starting it again in 2 s" in text
        assert "starting it again in 4 s" not in text  # capped by SUPERVISE_MAX_DELAY
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_killed_process_is_named_by_its_signal(tmp_path):
    process, log = start(tmp_path, "kill -KILL $$")
    try:
        wait_for(lambda: "was killed by SIGKILL" in log.read_text())
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_sigterm_stops_the_process_and_the_supervisor(tmp_path):
    pidfile = tmp_path / "child.pid"
    process, log = start(tmp_path, f"echo $$ > {pidfile}; exec sleep 600")
    wait_for(pidfile.exists)
    wait_for(lambda: pidfile.read_text().strip() != "")
    child = int(pidfile.read_text())

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=15) == 128 + signal.SIGTERM
    assert not Path(f"/proc/{child}").exists()
    assert "starting it again" not in log.read_text()
