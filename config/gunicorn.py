"""gunicorn's configuration of the image's web process (`gunicorn ... --config config/gunicorn.py`).

The API's HTTP metrics are counted in each worker process; prometheus-client's multiprocess
mode keeps them in files under PROMETHEUS_MULTIPROC_DIR, which `/metrics` adds up, so a
scrape answered by any worker counts the requests of all of them. The directory is emptied
when gunicorn starts (counts from a previous run are not this run's) and a worker that exits
is marked dead (its live gauges go; its counts stay in the totals).
https://prometheus.github.io/client_python/multiprocess/
"""

import os
import shutil
from pathlib import Path

# Set before the workers import the app: prometheus-client picks its storage at import.
METRICS_DIR = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/tagger-metrics"))


def on_starting(server):
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
    METRICS_DIR.mkdir(parents=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
