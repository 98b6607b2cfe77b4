"""Wait until the hosts in DATABASE_URL and REDIS_URL accept TCP connections.

Compose's `depends_on: condition: service_healthy` covers a fresh `up`; this covers the
rest (a restarted database, a stack started without compose). Gives up after
WAIT_FOR_SERVICES_TIMEOUT seconds (default 60) with a message naming what is missing.
"""

import os
import socket
import sys
import time
from urllib.parse import urlsplit

DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379}


def endpoints() -> list[tuple[str, str, int]]:
    found = []
    for name in ("DATABASE_URL", "REDIS_URL"):
        url = urlsplit(os.environ.get(name, ""))
        if url.hostname and url.scheme in DEFAULT_PORTS:
            found.append((name, url.hostname, url.port or DEFAULT_PORTS[url.scheme]))
    return found


def main() -> int:
    deadline = time.monotonic() + float(os.environ.get("WAIT_FOR_SERVICES_TIMEOUT", "60"))
    for name, host, port in endpoints():
        while True:
            try:
                socket.create_connection((host, port), timeout=2).close()
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    print(f"{name}: {host}:{port} does not answer ({exc})", file=sys.stderr)
                    return 1
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
